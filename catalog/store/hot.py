"""Hand-written SQL for the commit hot path (lock, ratify, pointers).

SQLAlchemy Core costs ~100 us per statement to build and compile; a commit runs several, so these
few are plain `text()` with typed parameters. They are portable SQL (SQLite >= 3.35 and
PostgreSQL both have ON CONFLICT and RETURNING) except for the clock: lock leases are compared
with the database server's clock on PostgreSQL, so holders on hosts with skewed clocks agree on
when a lease ran out; SQLite is one file on one host, whose clock the caller passes as `:now`.
"""

from __future__ import annotations

import functools

import sqlalchemy as sa

from catalog.store import schema as s

_TS = sa.DateTime(timezone=True)
_NOW = {"postgresql": "clock_timestamp()", "sqlite": ":now"}
_EXPIRES = {
    "postgresql": "clock_timestamp() + make_interval(secs => :lease_s)",
    "sqlite": ":expires",
}


def _clocked(sql: str) -> dict[str, sa.TextClause]:
    out = {}
    for dialect in _NOW:
        stmt = sa.text(sql.format(now=_NOW[dialect], expires=_EXPIRES[dialect]))
        if dialect == "sqlite":
            stmt = stmt.bindparams(
                *(sa.bindparam(n, type_=_TS) for n in ("now", "expires") if f":{n}" in str(stmt))
            )
        out[dialect] = stmt
    return out


# Take the table's lock if it is free (or already ours) and read the ratified version, in one
# statement: on PostgreSQL an UPDATE that waited for a concurrent ratify re-reads the row it
# updates, so the version returned is never older than the lock.
LOCK = _clocked(
    "UPDATE tables SET lock_token = :token, lock_owner = :owner, lock_expires = {expires} "
    "WHERE id = :table_id AND (lock_token IS NULL OR lock_token = :token) RETURNING version"
)

HOLDER = {
    d: stmt.columns(
        sa.column("token", sa.String),
        sa.column("owner", sa.String),
        sa.column("expired", sa.Boolean),
        sa.column("txn_state", sa.String),
        sa.column("txn_last_active", _TS),
        sa.column("txn_timeout_s", sa.Float),
    )
    for d, stmt in _clocked(
        "SELECT t.lock_token AS token, t.lock_owner AS owner, t.lock_expires < {now} AS expired, "
        "x.state AS txn_state, x.last_active AS txn_last_active, x.timeout_s AS txn_timeout_s "
        "FROM tables t LEFT JOIN transactions x ON x.id = t.lock_token WHERE t.id = :table_id"
    ).items()
}

STEAL = _clocked(
    "UPDATE tables SET lock_token = :token, lock_owner = :owner, lock_expires = {expires} "
    "WHERE id = :table_id AND lock_token = :old_token RETURNING version"
)

RENEW = {
    d: stmt.bindparams(sa.bindparam("tokens", expanding=True))
    for d, stmt in _clocked(
        "UPDATE tables SET lock_expires = {expires} WHERE lock_token IN :tokens "
        "RETURNING lock_token"
    ).items()
}

UNLOCK = sa.text(
    "UPDATE tables SET lock_token = NULL, lock_owner = NULL, lock_expires = NULL "
    "WHERE lock_token = :token"
)

POINTER = sa.text("SELECT version FROM tables WHERE id = :table_id")

NEXT_SEQ = sa.text(
    "UPDATE lake_meta SET value = value + 1 WHERE key = 'commit_seq' RETURNING value"
)

CLOSE_TXN = sa.text(
    "UPDATE transactions SET state = 'COMMITTED', ended_at = :now, last_active = :now "
    "WHERE id = :txn_id AND state = 'ACTIVE'"
).bindparams(sa.bindparam("now", type_=_TS))

# The pointer moves only from the version the writer started on and only while its lock stands
# (a takeover after the lease ran out makes this commit fail); the same statement releases it.
MOVE = sa.text(
    "UPDATE tables SET version = :new, lock_token = NULL, lock_owner = NULL, lock_expires = NULL "
    "WHERE id = :table_id AND version = :expected AND lock_token = :token"
)

# The sequence number NEXT_SEQ just drew in the same transaction, so all of ratify's statements
# can be sent at once (one round trip on PostgreSQL).
ADD_COMMIT = sa.text(
    'INSERT INTO commits (table_id, version, seq, txn_id, "user", operation, committed_at, params) '
    "VALUES (:table_id, :version, (SELECT value FROM lake_meta WHERE key = 'commit_seq'), "
    ":txn_id, :user, :operation, :now, :params)"
).bindparams(sa.bindparam("now", type_=_TS), sa.bindparam("params", type_=sa.JSON))

_TABLE_COLUMNS = (
    sa.column("id", sa.Integer),
    sa.column("database", sa.String),
    sa.column("name", sa.String),
    sa.column("location", sa.String),
    sa.column("table_type", sa.String),
    sa.column("schema_json", sa.String),
    sa.column("partition_by", sa.JSON),
    sa.column("description", sa.String),
    sa.column("tags", sa.JSON),
    sa.column("owner", sa.String),
    sa.column("created_at", _TS),
    sa.column("version", sa.BigInteger),
    sa.column("prop_key", sa.String),
    sa.column("prop_value", sa.String),
)
# A table and its properties in one statement: one row per property (one with NULLs if none).
_TABLE_SELECT = (
    "SELECT t.id, t.database, t.name, t.location, t.table_type, t.schema_json, t.partition_by, "
    "t.description, t.tags, t.owner, t.created_at, t.version, p.key AS prop_key, "
    "p.value AS prop_value FROM tables t LEFT JOIN table_properties p ON p.table_id = t.id"
)
TABLE_BY_NAME = sa.text(_TABLE_SELECT + " WHERE t.database = :database AND t.name = :name").columns(
    *_TABLE_COLUMNS
)


@functools.cache
def tables_by_names(n: int) -> sa.TextClause:
    """TABLE_BY_NAME for `n` tables at once (parameters :d0, :n0, :d1, :n1, ...): one statement
    however many tables a query names, all read in one snapshot."""
    pairs = ", ".join(f"(:d{i}, :n{i})" for i in range(n))
    return sa.text(_TABLE_SELECT + f" WHERE (t.database, t.name) IN (VALUES {pairs})").columns(
        *_TABLE_COLUMNS
    )


BEGIN_TXN = sa.text(
    'INSERT INTO transactions (id, "user", state, started_at, last_active, timeout_s, '
    "snapshot_seq) SELECT :id, :user, 'ACTIVE', :now, :now, :timeout_s, value FROM lake_meta "
    "WHERE key = 'commit_seq' RETURNING snapshot_seq"
).bindparams(sa.bindparam("now", type_=_TS))

# Record activity of a transaction that is still within its idle timeout (else no row).
_FRESH = {
    "postgresql": "last_active + make_interval(secs => timeout_s) >= :now",
    "sqlite": "julianday(last_active) + timeout_s / 86400.0 >= julianday(:now)",
}
TOUCH_TXN = {
    d: sa.text(
        "UPDATE transactions SET last_active = :now, timeout_s = coalesce(:timeout_s, timeout_s) "
        f"WHERE id = :txn_id AND state = 'ACTIVE' AND {fresh} "
        'RETURNING id, "user", state, started_at, last_active, timeout_s, snapshot_seq'
    )
    .bindparams(sa.bindparam("now", type_=_TS), sa.bindparam("timeout_s", type_=sa.Float))
    .columns(
        sa.column("id", sa.String),
        sa.column("user", sa.String),
        sa.column("state", sa.String),
        sa.column("started_at", _TS),
        sa.column("last_active", _TS),
        sa.column("timeout_s", sa.Float),
        sa.column("snapshot_seq", sa.BigInteger),
    )
    for d, fresh in _FRESH.items()
}


AUDIT_ADD = sa.text(
    "INSERT INTO audit_pending (at, record) VALUES (:at, :record) RETURNING seq"
).bindparams(sa.bindparam("at", type_=_TS), sa.bindparam("record", type_=sa.JSON))


# PostgreSQL ratifies in one message ending in COMMIT, so its checks are constraint violations
# that abort the transaction: a transaction no longer ACTIVE adds NULL to the commit counter
# (lake_meta.value is NOT NULL), a pointer that did not move leaves commits.table_id NULL.
PG_CLOSE_AND_SEQ = sa.text(
    "WITH closed AS (UPDATE transactions SET state = 'COMMITTED', ended_at = :now, "
    "last_active = :now WHERE id = :txn_id AND state = 'ACTIVE' RETURNING 1 AS one) "
    "UPDATE lake_meta SET value = value + (SELECT one FROM closed) WHERE key = 'commit_seq' "
    "RETURNING value"
).bindparams(sa.bindparam("now", type_=_TS))

PG_MOVE_AND_RECORD = sa.text(
    "WITH moved AS (UPDATE tables SET version = :new, lock_token = NULL, lock_owner = NULL, "
    "lock_expires = NULL WHERE id = :table_id AND version = :expected AND lock_token = :token "
    "RETURNING id) "
    'INSERT INTO commits (table_id, version, seq, txn_id, "user", operation, committed_at, params) '
    "SELECT (SELECT id FROM moved), v.version, "
    "(SELECT value FROM lake_meta WHERE key = 'commit_seq'), :txn_id, :user, v.operation, :now, "
    "v.params FROM jsonb_to_recordset(CAST(:ops AS jsonb)) "
    "AS v(version bigint, operation text, params json)"
).bindparams(sa.bindparam("now", type_=_TS))

# What opening a lake and its first query read (compiled once, not per call: see
# Connections.fetch).
CATALOG_ID = sa.text("SELECT value FROM lake_meta WHERE key = 'catalog_id'")


def _typed(sql: str, table: sa.Table) -> sa.TextClause:
    # A text() statement over every column of `table`, typed by it (compiling a select() costs
    # ~0.5 ms the first time in a process, text() next to nothing).
    cols = ", ".join(f'"{c.name}"' for c in table.columns)
    return sa.text(sql.format(cols=cols)).columns(
        *(sa.column(c.name, c.type) for c in table.columns)
    )


LATEST_POLICY = _typed("SELECT {cols} FROM policies ORDER BY seq DESC LIMIT 1", s.policies)
ACTIVE_TXNS = _typed("SELECT {cols} FROM transactions WHERE state = 'ACTIVE'", s.transactions)
DATABASE_BY_NAME = _typed("SELECT {cols} FROM databases WHERE name = :name", s.databases)
LOCKED_TABLES = sa.text(_TABLE_SELECT + " WHERE t.lock_token IS NOT NULL").columns(*_TABLE_COLUMNS)

POLICY_SEQ = sa.text("SELECT value FROM lake_meta WHERE key = 'policy_seq'")

POLICY_CAS = sa.text(
    "UPDATE lake_meta SET value = value + 1 WHERE key = 'policy_seq' AND value = :expect "
    "RETURNING value"
)

# Named leases: take (or renew) when free, expired or already ours, in one statement.
LEASE_TAKE = _clocked(
    "INSERT INTO leases (name, owner, expires_at) VALUES (:name, :owner, {expires}) "
    "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at "
    "WHERE leases.owner = excluded.owner OR leases.expires_at < {now} RETURNING owner"
)
LEASE_DROP = sa.text("DELETE FROM leases WHERE name = :name AND owner = :owner")
