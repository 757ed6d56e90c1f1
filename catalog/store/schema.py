"""Metadata store tables (SQLAlchemy Core) and their versioned migrations."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import sqlalchemy as sa

metadata = sa.MetaData()

meta = sa.Table(
    "lake_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

databases = sa.Table(
    "databases",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("owner", sa.String(255), nullable=False, default=""),
    sa.Column("tags", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

tables = sa.Table(
    "tables",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("database", sa.String(255), sa.ForeignKey("databases.name"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("table_type", sa.String(16), nullable=False),
    sa.Column("schema_json", sa.Text, nullable=False),
    sa.Column("partition_by", sa.JSON, nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("tags", sa.JSON, nullable=False, default=dict),
    sa.Column("owner", sa.String(255), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    # The table's write lock lives on its row, so taking it also reads the ratified version,
    # and ratifying releases it, each in one statement.
    sa.Column("lock_token", sa.String(64), nullable=True),
    sa.Column("lock_owner", sa.String(255), nullable=True),
    sa.Column("lock_expires", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("database", "name", name="uq_tables_name"),
    sa.Index("ix_tables_lock_token", "lock_token"),
)

commits = sa.Table(
    "commits",
    metadata,
    sa.Column("table_id", sa.Integer, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("txn_id", sa.String(64), nullable=False),
    sa.Column("user", sa.String(255), nullable=False),
    sa.Column("operation", sa.String(64), nullable=False),
    sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("params", sa.JSON, nullable=False, default=dict),
    sa.PrimaryKeyConstraint("table_id", "version", name="pk_commits"),
    sa.Index("ix_commits_seq", "table_id", "seq"),
)

transactions = sa.Table(
    "transactions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user", sa.String(255), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_active", sa.DateTime(timezone=True), nullable=False),
    sa.Column("timeout_s", sa.Float, nullable=False),
    sa.Column("snapshot_seq", sa.BigInteger, nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_transactions_state", "state"),
)

properties = sa.Table(
    "table_properties",
    metadata,
    sa.Column("table_id", sa.Integer, nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("table_id", "key", name="pk_table_properties"),
)

audit_pending = sa.Table(
    "audit_pending",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("record", sa.JSON, nullable=False),
    # Never reuse a sequence number: the Delta table remembers the last one it holds.
    sqlite_autoincrement=True,
)

# The policy in force for every client of the catalog (contract rule 14): the newest row.
policies = sa.Table(
    "policies",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("csv", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=True),
    sa.Column("source", sa.Text, nullable=False, default=""),
    sa.Column("installed_by", sa.String(255), nullable=False),
    sa.Column("installed_at", sa.DateTime(timezone=True), nullable=False),
)

# Named leases (e.g. "compact:<table id>": one compactor per table across hosts), renewed by
# their holder while it works; free once expired.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

V1 = (meta, databases, tables, commits, transactions)


def _v1(conn: sa.Connection) -> None:
    for t in V1:
        t.create(conn, checkfirst=True)
    conn.execute(sa.insert(meta).values(key="commit_seq", value=0))


def _v2(conn: sa.Connection) -> None:
    properties.create(conn, checkfirst=True)


def _v3(conn: sa.Connection) -> None:
    audit_pending.create(conn, checkfirst=True)


def _v4(conn: sa.Connection) -> None:
    # Locks move from their own table (v1-v3) onto the table rows.
    insp = sa.inspect(conn)
    have = {c["name"] for c in insp.get_columns("tables")}
    for col in (tables.c.lock_token, tables.c.lock_owner, tables.c.lock_expires):
        if col.name not in have:
            ddl = col.type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f"ALTER TABLE tables ADD COLUMN {col.name} {ddl}"))
    if "ix_tables_lock_token" not in {i["name"] for i in insp.get_indexes("tables")}:
        sa.Index("ix_tables_lock_token", tables.c.lock_token).create(conn)
    if insp.has_table("table_locks"):
        conn.execute(
            sa.text(
                "UPDATE tables SET "
                "lock_token = (SELECT token FROM table_locks l WHERE l.table_id = tables.id), "
                "lock_owner = (SELECT owner FROM table_locks l WHERE l.table_id = tables.id), "
                "lock_expires = (SELECT expires_at FROM table_locks l WHERE l.table_id = tables.id)"
            )
        )
        conn.execute(sa.text("DROP TABLE table_locks"))


def _v5(conn: sa.Connection) -> None:
    # Who this catalog is: a lake root remembers it, so it never opens another catalog silently.
    conn.execute(sa.insert(meta).values(key="catalog_id", value=secrets.randbits(62)))


def _v6(conn: sa.Connection) -> None:
    policies.create(conn, checkfirst=True)
    # The installed policy's sequence: installing is a compare-and-set on this row.
    conn.execute(sa.insert(meta).values(key="policy_seq", value=0))


def _v7(conn: sa.Connection) -> None:
    leases.create(conn, checkfirst=True)


# Append only: a migration, once released, never changes; index + 1 is the schema version.
MIGRATIONS: list[Callable[[sa.Connection], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sa.Connection) -> int:
    """Bring the store schema up to SCHEMA_VERSION inside the caller's transaction."""
    insp = sa.inspect(conn)
    current = 0
    if insp.has_table(meta.name):
        row = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).first()
        current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"metadata store schema v{current} is newer than this Lakeward (v{SCHEMA_VERSION}); "
            "upgrade Lakeward"
        )
    for step in MIGRATIONS[current:]:
        step(conn)
    if current == 0:
        conn.execute(sa.insert(meta).values(key="schema_version", value=SCHEMA_VERSION))
    elif current < SCHEMA_VERSION:
        conn.execute(
            sa.update(meta).where(meta.c.key == "schema_version").values(value=SCHEMA_VERSION)
        )
    return SCHEMA_VERSION
