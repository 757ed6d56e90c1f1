"""Hand-written SQL for the commit hot path (lock, ratify, pointers).

SQLAlchemy Core costs ~100 us per statement to build and compile; a commit runs seven of them, so
these few are plain `text()` with typed parameters. They are portable SQL (SQLite >= 3.35 and
PostgreSQL both have ON CONFLICT and RETURNING).
"""

from __future__ import annotations

import sqlalchemy as sa

_TS = sa.DateTime(timezone=True)

LOCK = sa.text(
    "INSERT INTO table_locks (table_id, token, owner, acquired_at, expires_at) "
    "VALUES (:table_id, :token, :owner, :now, :expires) ON CONFLICT DO NOTHING"
).bindparams(sa.bindparam("now", type_=_TS), sa.bindparam("expires", type_=_TS))

HOLDER = sa.text("SELECT token FROM table_locks WHERE table_id = :table_id")

POINTER = sa.text("SELECT version FROM tables WHERE id = :table_id")

DROP_LOCK = sa.text("DELETE FROM table_locks WHERE table_id = :table_id")

NEXT_SEQ = sa.text(
    "UPDATE lake_meta SET value = value + 1 WHERE key = 'commit_seq' RETURNING value"
)

CLOSE_TXN = sa.text(
    "UPDATE transactions SET state = 'COMMITTED', ended_at = :now, last_active = :now "
    "WHERE id = :txn_id AND state = 'ACTIVE'"
).bindparams(sa.bindparam("now", type_=_TS))

MOVE = sa.text(
    "UPDATE tables SET version = :new WHERE id = :table_id AND version = :expected "
    "AND EXISTS (SELECT 1 FROM table_locks WHERE table_id = :table_id AND token = :token)"
)

ADD_COMMIT = sa.text(
    'INSERT INTO commits (table_id, version, seq, txn_id, "user", operation, committed_at, params) '
    "VALUES (:table_id, :version, :seq, :txn_id, :user, :operation, :now, :params)"
).bindparams(sa.bindparam("now", type_=_TS), sa.bindparam("params", type_=sa.JSON))

UNLOCK = sa.text("DELETE FROM table_locks WHERE token = :token")

TABLE_BY_NAME = sa.text(
    "SELECT id, database, name, location, table_type, schema_json, partition_by, description, "
    "tags, owner, created_at, version FROM tables WHERE database = :database AND name = :name"
).columns(
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
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("version", sa.BigInteger),
)

PROPS = sa.text("SELECT key, value FROM table_properties WHERE table_id = :table_id")

AUDIT_ADD = sa.text("INSERT INTO audit_pending (at, record) VALUES (:at, :record)").bindparams(
    sa.bindparam("at", type_=_TS), sa.bindparam("record", type_=sa.JSON)
)

POLICY_SEQ = sa.text("SELECT value FROM lake_meta WHERE key = 'policy_seq'")

POLICY_CAS = sa.text(
    "UPDATE lake_meta SET value = value + 1 WHERE key = 'policy_seq' AND value = :expect "
    "RETURNING value"
)
