"""SQLAlchemy backend of the metadata store: SQLite by default, PostgreSQL with the same code."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from catalog.errors import DatabaseExists, TableExists, TransactionError
from catalog.store import hot
from catalog.store import schema as s
from catalog.store.base import (
    CommitInfo,
    DatabaseInfo,
    MetadataStore,
    PolicyRecord,
    Ratify,
    TableInfo,
    TxnInfo,
)
from catalog.store.connections import Connections


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every time in the store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class SqlStore(MetadataStore):
    """Metadata store on any SQLAlchemy database (tested on SQLite; written for PostgreSQL too)."""

    def __init__(self, url: str):
        self.url = url
        self._db = Connections(url)
        self._write, self._read = self._db.write, self._db.read
        with self._write() as conn:
            s.migrate(conn)

    # audit -------------------------------------------------------------------------------------
    def audit_append(self, record: dict[str, Any]) -> int:
        """Durably queue one audit record (committed before this returns)."""
        with self._write() as conn:
            res = conn.execute(hot.AUDIT_ADD, {"at": utcnow(), "record": record})
            return int(res.lastrowid or 0)

    def audit_pending(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        q = (
            sa.select(s.audit_pending.c.seq, s.audit_pending.c.record)
            .order_by(s.audit_pending.c.seq)
            .limit(limit)
        )
        with self._read() as conn:
            return [(int(seq), dict(rec)) for seq, rec in conn.execute(q).all()]

    def audit_forget(self, upto_seq: int) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(s.audit_pending).where(s.audit_pending.c.seq <= upto_seq))

    # policy ------------------------------------------------------------------------------------
    def policy(self) -> PolicyRecord | None:
        q = sa.select(s.policies).order_by(s.policies.c.seq.desc()).limit(1)
        with self._read() as conn:
            row = conn.execute(q).first()
        if row is None:
            return None
        return PolicyRecord(
            int(row.seq),
            row.version,
            row.csv,
            row.model,
            row.source,
            row.installed_by,
            _aware(row.installed_at),
        )

    def policy_seq(self) -> int:
        with self._read() as conn:
            return int(conn.execute(hot.POLICY_SEQ).scalar() or 0)

    def install_policy(
        self, record: PolicyRecord, *, expect_seq: int, audit: dict[str, Any] | None = None
    ) -> int:
        with self._write() as conn:
            seq = conn.execute(hot.POLICY_CAS, {"expect": expect_seq}).scalar()
            if seq is None:
                return 0
            conn.execute(
                sa.insert(s.policies).values(
                    seq=int(seq),
                    version=record.version,
                    csv=record.csv,
                    model=record.model,
                    source=record.source,
                    installed_by=record.installed_by,
                    installed_at=utcnow(),
                )
            )
            if audit is not None:
                conn.execute(hot.AUDIT_ADD, {"at": utcnow(), "record": audit})
            return int(seq)

    def close(self) -> None:
        self._db.close()

    # databases ---------------------------------------------------------------------------
    def create_database(self, info: DatabaseInfo) -> None:
        with self._write() as conn:
            if conn.execute(
                sa.select(s.databases.c.name).where(s.databases.c.name == info.name)
            ).first():
                raise DatabaseExists(f"database {info.name!r} already exists")
            conn.execute(
                sa.insert(s.databases).values(
                    name=info.name,
                    description=info.description,
                    owner=info.owner,
                    tags=dict(info.tags),
                    created_at=utcnow(),
                )
            )

    def _db_info(self, row: Any) -> DatabaseInfo:
        return DatabaseInfo(
            row.name, row.description, row.owner, dict(row.tags or {}), _aware(row.created_at)
        )

    def get_database(self, name: str) -> DatabaseInfo | None:
        with self._read() as conn:
            row = conn.execute(sa.select(s.databases).where(s.databases.c.name == name)).first()
        return self._db_info(row) if row else None

    def list_databases(self) -> list[DatabaseInfo]:
        with self._read() as conn:
            rows = conn.execute(sa.select(s.databases).order_by(s.databases.c.name)).all()
        return [self._db_info(r) for r in rows]

    def drop_database(self, name: str) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(s.databases).where(s.databases.c.name == name))

    # tables ------------------------------------------------------------------------------
    def _table_info(self, row: Any, props: dict[str, str] | None = None) -> TableInfo:
        return TableInfo(
            id=row.id,
            database=row.database,
            name=row.name,
            location=row.location,
            table_type=row.table_type,
            schema_json=row.schema_json,
            partition_by=tuple(row.partition_by or ()),
            description=row.description,
            tags=dict(row.tags or {}),
            owner=row.owner,
            created_at=_aware(row.created_at),
            version=int(row.version),
            properties=props or {},
        )

    def _props(self, conn: sa.Connection, table_id: int) -> dict[str, str]:
        rows = conn.execute(
            sa.select(s.properties.c.key, s.properties.c.value).where(
                s.properties.c.table_id == table_id
            )
        ).all()
        return {k: v for k, v in rows}

    def create_table(self, info: TableInfo, user: str, operation: str) -> TableInfo:
        """Insert the table and ratify its existing versions in one transaction."""
        with self._write() as conn:
            exists = conn.execute(
                sa.select(s.tables.c.id).where(
                    (s.tables.c.database == info.database) & (s.tables.c.name == info.name)
                )
            ).first()
            if exists:
                raise TableExists(f"table {info.full_name!r} already exists")
            now = utcnow()
            table_id = conn.execute(
                sa.insert(s.tables).values(
                    database=info.database,
                    name=info.name,
                    location=info.location,
                    table_type=info.table_type,
                    schema_json=info.schema_json,
                    partition_by=list(info.partition_by),
                    description=info.description,
                    tags=dict(info.tags),
                    owner=info.owner,
                    created_at=now,
                    version=info.version,
                )
            ).inserted_primary_key[0]
            for key, value in info.properties.items():
                conn.execute(
                    sa.insert(s.properties).values(table_id=table_id, key=key, value=value)
                )
            seq = self._next_seq(conn)
            conn.execute(
                sa.insert(s.commits),
                [
                    dict(
                        table_id=table_id,
                        version=v,
                        seq=seq,
                        txn_id="",
                        user=user,
                        operation=operation if v == info.version else "ADOPTED",
                        committed_at=now,
                        params={},
                    )
                    for v in range(0, info.version + 1)
                ],
            )
            row = conn.execute(sa.select(s.tables).where(s.tables.c.id == table_id)).one()
            return self._table_info(row, self._props(conn, table_id))

    def get_table(self, database: str, name: str) -> TableInfo | None:
        with self._read() as conn:
            row = conn.execute(hot.TABLE_BY_NAME, {"database": database, "name": name}).first()
            if row is None:
                return None
            props = {k: v for k, v in conn.execute(hot.PROPS, {"table_id": row.id}).all()}
            return self._table_info(row, props)

    def get_table_by_id(self, table_id: int) -> TableInfo | None:
        with self._read() as conn:
            row = conn.execute(sa.select(s.tables).where(s.tables.c.id == table_id)).first()
            return self._table_info(row, self._props(conn, row.id)) if row else None

    def list_tables(self, database: str | None = None) -> list[TableInfo]:
        q = sa.select(s.tables).order_by(s.tables.c.database, s.tables.c.name)
        if database is not None:
            q = q.where(s.tables.c.database == database)
        with self._read() as conn:
            return [self._table_info(r) for r in conn.execute(q).all()]

    def drop_table(self, table_id: int) -> None:
        with self._write() as conn:
            for t in (s.commits, s.locks, s.properties):
                conn.execute(sa.delete(t).where(t.c.table_id == table_id))
            conn.execute(sa.delete(s.tables).where(s.tables.c.id == table_id))

    def update_table(self, table_id: int, **fields: Any) -> None:
        props = fields.pop("properties", None)
        with self._write() as conn:
            if fields:
                conn.execute(sa.update(s.tables).where(s.tables.c.id == table_id).values(**fields))
            for key, value in (props or {}).items():
                conn.execute(
                    sa.delete(s.properties).where(
                        (s.properties.c.table_id == table_id) & (s.properties.c.key == key)
                    )
                )
                if value is not None:
                    conn.execute(
                        sa.insert(s.properties).values(table_id=table_id, key=key, value=str(value))
                    )

    # versions ----------------------------------------------------------------------------
    def pointers(self, table_ids: Iterable[int]) -> dict[int, int]:
        ids = list(table_ids)
        with self._read() as conn:
            if len(ids) == 1:
                v = conn.execute(hot.POINTER, {"table_id": ids[0]}).scalar()
                return {} if v is None else {ids[0]: int(v)}
            rows = conn.execute(
                sa.select(s.tables.c.id, s.tables.c.version).where(s.tables.c.id.in_(ids))
            ).all()
        return {r.id: int(r.version) for r in rows}

    def current_seq(self) -> int:
        with self._read() as conn:
            return int(
                conn.execute(
                    sa.select(s.meta.c.value).where(s.meta.c.key == "commit_seq")
                ).scalar_one()
            )

    def versions_at(self, table_ids: Iterable[int], seq: int) -> dict[int, int]:
        ids = list(table_ids)
        q = (
            sa.select(s.commits.c.table_id, sa.func.max(s.commits.c.version))
            .where(s.commits.c.table_id.in_(ids) & (s.commits.c.seq <= seq))
            .group_by(s.commits.c.table_id)
        )
        with self._read() as conn:
            return {tid: int(v) for tid, v in conn.execute(q).all()}

    def commits(self, table_id: int, limit: int | None = None) -> list[CommitInfo]:
        q = (
            sa.select(s.commits)
            .where(s.commits.c.table_id == table_id)
            .order_by(s.commits.c.version.desc())
        )
        if limit:
            q = q.limit(limit)
        with self._read() as conn:
            rows = conn.execute(q).all()
        return [
            CommitInfo(
                r.table_id,
                int(r.version),
                int(r.seq),
                r.txn_id,
                r.user,
                r.operation,
                _aware(r.committed_at),
                dict(r.params or {}),
            )
            for r in rows
        ]

    def version_at_time(self, table_id: int, when: datetime) -> int | None:
        q = sa.select(sa.func.max(s.commits.c.version)).where(
            (s.commits.c.table_id == table_id) & (s.commits.c.committed_at <= when)
        )
        with self._read() as conn:
            v = conn.execute(q).scalar()
        return None if v is None else int(v)

    def _next_seq(self, conn: sa.Connection) -> int:
        # One counter row: its row lock orders every ratification, so a snapshot taken between
        # two commits sees all of one and none of the other (also on PostgreSQL).
        conn.execute(
            sa.update(s.meta).where(s.meta.c.key == "commit_seq").values(value=s.meta.c.value + 1)
        )
        return int(
            conn.execute(sa.select(s.meta.c.value).where(s.meta.c.key == "commit_seq")).scalar_one()
        )

    def ratify(
        self,
        moves: list[Ratify],
        txn_id: str,
        user: str,
        lock_token: str,
        close_txn: bool,
        audit: dict[str, Any] | None = None,
    ) -> int:
        """Move every pointer or none: the commit point of a Lakeward write or transaction.

        `audit`, if given, is queued in the same store transaction: the write and its audit
        record commit together or not at all.
        """
        from catalog.errors import CommitConflict

        with self._write() as conn:
            now = utcnow()
            if (
                close_txn
                and conn.execute(hot.CLOSE_TXN, {"now": now, "txn_id": txn_id}).rowcount != 1
            ):
                raise TransactionError(
                    f"transaction {txn_id} is no longer active (aborted after its idle timeout "
                    "or cancelled); nothing was committed"
                )
            seq = int(conn.execute(hot.NEXT_SEQ).scalar_one())
            rows = []
            for m in moves:
                # The pointer moves only from the version we started on and only while our lock
                # still stands: a takeover after a lease expiry makes this commit fail.
                moved = conn.execute(
                    hot.MOVE,
                    {
                        "new": m.new,
                        "table_id": m.table_id,
                        "expected": m.expected,
                        "token": lock_token,
                    },
                ).rowcount
                if moved != 1:
                    raise CommitConflict(
                        "lost the table lock before commit (lease expired) or the table changed; retry"
                    )
                rows += [
                    {
                        "table_id": m.table_id,
                        "version": v,
                        "seq": seq,
                        "txn_id": txn_id,
                        "user": user,
                        "operation": op,
                        "now": now,
                        "params": json.loads(json.dumps(p, default=str)) if p else {},
                    }
                    for v, op, p in m.operations
                ]
            if rows:
                conn.execute(hot.ADD_COMMIT, rows)
            if audit is not None:
                conn.execute(hot.AUDIT_ADD, {"at": now, "record": audit})
            conn.execute(hot.UNLOCK, {"token": lock_token})
        return seq

    # transactions ------------------------------------------------------------------------
    def _txn(self, row: Any) -> TxnInfo:
        return TxnInfo(
            row.id,
            row.user,
            row.state,
            _aware(row.started_at),
            _aware(row.last_active),
            float(row.timeout_s),
            int(row.snapshot_seq),
        )

    def begin_txn(self, txn_id: str, user: str, timeout_s: float) -> TxnInfo:
        with self._write() as conn:
            seq = int(
                conn.execute(
                    sa.select(s.meta.c.value).where(s.meta.c.key == "commit_seq")
                ).scalar_one()
            )
            now = utcnow()
            conn.execute(
                sa.insert(s.transactions).values(
                    id=txn_id,
                    user=user,
                    state="ACTIVE",
                    started_at=now,
                    last_active=now,
                    timeout_s=timeout_s,
                    snapshot_seq=seq,
                )
            )
            return self._txn(
                conn.execute(sa.select(s.transactions).where(s.transactions.c.id == txn_id)).one()
            )

    def get_txn(self, txn_id: str) -> TxnInfo | None:
        with self._read() as conn:
            row = conn.execute(
                sa.select(s.transactions).where(s.transactions.c.id == txn_id)
            ).first()
        return self._txn(row) if row else None

    def touch_txn(self, txn_id: str, timeout_s: float | None = None) -> TxnInfo:
        """Record activity (and optionally a new idle timeout); refuses a transaction past its timeout."""
        with self._write() as conn:
            row = conn.execute(
                sa.select(s.transactions).where(s.transactions.c.id == txn_id)
            ).first()
            if row is None:
                raise TransactionError(f"no transaction {txn_id}")
            info = self._txn(row)
            now = utcnow()
            if info.state == "ABORTED":
                raise TransactionError(
                    f"transaction {txn_id} was aborted: idle past its {info.timeout_s:g} s timeout or "
                    "its table lock was taken over; start a new one"
                )
            if info.state != "ACTIVE":
                raise TransactionError(f"transaction {txn_id} is {info.state}")
            if now > info.last_active + timedelta(seconds=info.timeout_s):
                conn.execute(
                    sa.update(s.transactions)
                    .where(s.transactions.c.id == txn_id)
                    .values(state="ABORTED", ended_at=now)
                )
                raise TransactionError(
                    f"transaction {txn_id} was idle longer than its {info.timeout_s:g} s timeout and "
                    "was aborted; start a new one"
                )
            values: dict[str, Any] = {"last_active": now}
            if timeout_s is not None:
                values["timeout_s"] = timeout_s
            conn.execute(
                sa.update(s.transactions).where(s.transactions.c.id == txn_id).values(**values)
            )
            conn.execute(
                sa.update(s.locks)
                .where(s.locks.c.token == txn_id)
                .values(expires_at=now + timedelta(seconds=values.get("timeout_s", info.timeout_s)))
            )
        return self.get_txn(txn_id)  # type: ignore[return-value]

    def end_txn(self, txn_id: str, state: str) -> None:
        with self._write() as conn:
            conn.execute(
                sa.update(s.transactions)
                .where((s.transactions.c.id == txn_id) & (s.transactions.c.state == "ACTIVE"))
                .values(state=state, ended_at=utcnow())
            )
            conn.execute(sa.delete(s.locks).where(s.locks.c.token == txn_id))

    def expired_txns(self) -> list[TxnInfo]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(s.transactions).where(s.transactions.c.state == "ACTIVE")
            ).all()
        now = utcnow()
        infos = [self._txn(r) for r in rows]
        return [t for t in infos if now > t.last_active + timedelta(seconds=t.timeout_s)]

    def active_txns(self) -> list[TxnInfo]:
        """Explicit transactions still ACTIVE (expired ones too, until reaped)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(s.transactions).where(s.transactions.c.state == "ACTIVE")
            ).all()
        return [self._txn(r) for r in rows]

    # locks -------------------------------------------------------------------------------
    def try_lock(
        self, table_id: int, token: str, owner: str, lease_s: float
    ) -> tuple[str | None, int | None]:
        """Take the table's write lock.

        Returns (None, pointer) when taken (pointer None if the table is gone, lock not kept),
        else (holder's token, None).
        """
        now = utcnow()
        with self._write() as conn:
            args = {
                "table_id": table_id,
                "token": token,
                "owner": owner,
                "now": now,
                "expires": now + timedelta(seconds=lease_s),
            }
            if conn.execute(hot.LOCK, args).rowcount != 1:
                holder = conn.execute(hot.HOLDER, {"table_id": table_id}).scalar()
                if holder != token:
                    return holder, None
            pointer = conn.execute(hot.POINTER, {"table_id": table_id}).scalar()
            if pointer is None:
                conn.execute(hot.DROP_LOCK, {"table_id": table_id})
                return None, None
            return None, int(pointer)

    def steal_lock(
        self, table_id: int, old_token: str, token: str, owner: str, lease_s: float
    ) -> bool:
        now = utcnow()
        with self._write() as conn:
            res = conn.execute(
                sa.update(s.locks)
                .where((s.locks.c.table_id == table_id) & (s.locks.c.token == old_token))
                .values(
                    token=token,
                    owner=owner,
                    acquired_at=now,
                    expires_at=now + timedelta(seconds=lease_s),
                )
            )
            if res.rowcount == 1:
                conn.execute(
                    sa.update(s.transactions)
                    .where(
                        (s.transactions.c.id == old_token) & (s.transactions.c.state == "ACTIVE")
                    )
                    .values(state="ABORTED", ended_at=now)
                )
            return res.rowcount == 1

    def unlock(self, token: str, table_ids: Iterable[int] | None = None) -> None:
        with self._write() as conn:
            q = sa.delete(s.locks).where(s.locks.c.token == token)
            if table_ids is not None:
                q = q.where(s.locks.c.table_id.in_(list(table_ids)))
            conn.execute(q)

    def lock_holder(self, table_id: int) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(s.locks).where(s.locks.c.table_id == table_id)).first()
        if row is None:
            return None
        return {"token": row.token, "owner": row.owner, "expires_at": _aware(row.expires_at)}

    # retention ---------------------------------------------------------------------------
    def prune_commits(self, table_id: int, below_version: int) -> int:
        with self._write() as conn:
            return conn.execute(
                sa.delete(s.commits).where(
                    (s.commits.c.table_id == table_id) & (s.commits.c.version < below_version)
                )
            ).rowcount

    def oldest_commit(self, table_id: int) -> CommitInfo | None:
        q = (
            sa.select(s.commits)
            .where(s.commits.c.table_id == table_id)
            .order_by(s.commits.c.version)
            .limit(1)
        )
        with self._read() as conn:
            r = conn.execute(q).first()
        if r is None:
            return None
        return CommitInfo(
            r.table_id,
            int(r.version),
            int(r.seq),
            r.txn_id,
            r.user,
            r.operation,
            _aware(r.committed_at),
            dict(r.params or {}),
        )

    def prune_transactions(self, ended_before: datetime) -> int:
        with self._write() as conn:
            return conn.execute(
                sa.delete(s.transactions).where(
                    (s.transactions.c.state != "ACTIVE")
                    & (s.transactions.c.ended_at < ended_before)
                )
            ).rowcount

    def row_counts(self) -> dict[str, int]:
        with self._read() as conn:
            return {
                t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for t in s.metadata.sorted_tables
            }
