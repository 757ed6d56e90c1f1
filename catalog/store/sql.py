"""SQLAlchemy backend of the metadata store: SQLite by default, PostgreSQL with the same code."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from catalog.errors import CommitConflict, DatabaseExists, TableExists, TransactionError
from catalog.store import hot
from catalog.store import schema as s
from catalog.store.base import (
    CommitInfo,
    DatabaseInfo,
    LockHolder,
    MetadataStore,
    PolicyRecord,
    Ratify,
    TableInfo,
    TxnInfo,
)
from catalog.store.connections import Connections


def _lost() -> CommitConflict:
    return CommitConflict(
        "lost the table lock before commit (lease expired) or the table changed; retry"
    )


def _inactive(txn_id: str) -> TransactionError:
    return TransactionError(
        f"transaction {txn_id} is no longer active (aborted after its idle timeout or "
        "cancelled); nothing was committed"
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every time in the store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class SqlStore(MetadataStore):
    """Metadata store on SQLite or PostgreSQL through SQLAlchemy (both run the same tests)."""

    def __init__(self, url: str):
        self._db = Connections(url)
        self.url = self._db.url
        self._write, self._read = self._db.write, self._db.read
        self._dialect = self._db.dialect
        try:
            if self._db.schema_version("lake_meta") != s.SCHEMA_VERSION:
                self._db.migrate(s.migrate)
        except BaseException:
            self._db.close()
            raise

    @property
    def closed(self) -> bool:
        return self._db.closed

    def _clock(self, lease_s: float = 0.0) -> dict[str, Any]:
        # Parameters of the lease statements (hot.LOCK & co): the caller's clock on SQLite.
        now = utcnow()
        return {"now": now, "expires": now + timedelta(seconds=lease_s), "lease_s": lease_s}

    # audit -------------------------------------------------------------------------------------
    def audit_append(self, record: dict[str, Any]) -> int:
        """Durably queue one audit record (committed before this returns); its sequence number."""
        return int(self._db.change(hot.AUDIT_ADD, {"at": utcnow(), "record": record})[0][0])

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
        rows = self._db.fetch(hot.LATEST_POLICY)
        if not rows:
            return None
        row = rows[0]
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
        rows = self._db.fetch(hot.POLICY_SEQ)
        return int(rows[0][0] or 0) if rows else 0

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
        rows = self._db.fetch(hot.DATABASE_BY_NAME, {"name": name})
        return self._db_info(rows[0]) if rows else None

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
        rows = self._db.fetch(hot.TABLE_BY_NAME, {"database": database, "name": name})
        return self._table_infos(rows).get((database, name))

    def get_tables(self, names: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TableInfo]:
        pairs = list(dict.fromkeys(names))
        if not pairs:
            return {}
        params = {}
        for i, (database, name) in enumerate(pairs):
            params[f"d{i}"], params[f"n{i}"] = database, name
        return self._table_infos(self._db.fetch(hot.tables_by_names(len(pairs)), params))

    def _table_infos(self, rows: list[Any]) -> dict[tuple[str, str], TableInfo]:
        # TABLE_BY_NAME's rows: one per property of each table (one with NULLs if none).
        by_id: dict[int, list[Any]] = {}
        for r in rows:
            by_id.setdefault(r.id, []).append(r)
        out = {}
        for group in by_id.values():
            props = {r.prop_key: r.prop_value for r in group if r.prop_key is not None}
            info = self._table_info(group[0], props)
            out[(info.database, info.name)] = info
        return out

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

    def locked_tables(self) -> list[TableInfo]:
        infos = self._table_infos(self._db.fetch(hot.LOCKED_TABLES)).values()
        return sorted(infos, key=lambda info: info.id)

    def drop_table(self, table_id: int) -> None:
        with self._write() as conn:
            for t in (s.commits, s.properties):
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
        if len(ids) == 1:
            rows = self._db.fetch(hot.POINTER, {"table_id": ids[0]})
            return {ids[0]: int(rows[0][0])} if rows else {}
        with self._read() as conn:
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
        now = utcnow()
        ops = {
            m.table_id: [
                {
                    "version": v,
                    "operation": op,
                    "params": json.loads(json.dumps(p, default=str)) if p else {},
                }
                for v, op, p in m.operations
            ]
            for m in moves
        }
        tail = [(hot.UNLOCK, {"token": lock_token})]
        if audit is not None:
            tail.insert(0, (hot.AUDIT_ADD, {"at": now, "record": audit}))
        if self._dialect == "postgresql":
            return self._ratify_pg(moves, txn_id, user, lock_token, close_txn, now, ops, tail)
        steps: list[tuple[sa.TextClause, dict[str, Any]]] = []
        if close_txn:
            steps.append((hot.CLOSE_TXN, {"now": now, "txn_id": txn_id}))
        steps.append((hot.NEXT_SEQ, {}))
        for m in moves:
            move = {
                "new": m.new,
                "table_id": m.table_id,
                "expected": m.expected,
                "token": lock_token,
            }
            steps.append((hot.MOVE, move))
        for m in moves:
            for row in ops[m.table_id]:
                common = {"table_id": m.table_id, "txn_id": txn_id, "user": user, "now": now}
                steps.append((hot.ADD_COMMIT, {**common, **row}))
        first_move = 2 if close_txn else 1

        def check(results: list[tuple[int, Any]]) -> None:
            if close_txn and results[0][0] != 1:
                raise _inactive(txn_id)
            if any(n != 1 for n, _ in results[first_move : first_move + len(moves)]):
                raise _lost()

        try:
            results = self._db.atomic(steps + tail, check)
        except sa.exc.IntegrityError as e:
            raise _lost() from e  # another commit already holds one of these versions
        return int(results[first_move - 1][1][0])

    def _ratify_pg(
        self,
        moves: list[Ratify],
        txn_id: str,
        user: str,
        lock_token: str,
        close_txn: bool,
        now: datetime,
        ops: dict[int, list[dict[str, Any]]],
        tail: list[tuple[sa.TextClause, dict[str, Any]]],
    ) -> int:
        """ratify in one round trip: every check is a constraint violation (see hot.PG_*)."""
        import psycopg

        if close_txn:
            steps = [(hot.PG_CLOSE_AND_SEQ, {"now": now, "txn_id": txn_id})]
        else:
            steps = [(hot.NEXT_SEQ, {})]
        for m in moves:
            assert ops[m.table_id], "a move always has operations"  # else nothing checks it
            args = {"new": m.new, "table_id": m.table_id, "expected": m.expected}
            who = {"token": lock_token, "txn_id": txn_id, "user": user, "now": now}
            steps.append((hot.PG_MOVE_AND_RECORD, {**args, **who, "ops": ops[m.table_id]}))
        try:
            results = self._db.atomic(steps + tail)
        except psycopg.errors.NotNullViolation as e:
            raise (_inactive(txn_id) if e.diag.table_name == "lake_meta" else _lost()) from e
        except psycopg.IntegrityError as e:
            raise _lost() from e  # another commit already holds one of these versions
        return int(results[0][1][0])

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
        now = utcnow()
        args = {"id": txn_id, "user": user, "now": now, "timeout_s": timeout_s}
        with self._db.single() as conn:
            seq = int(conn.execute(hot.BEGIN_TXN, args).scalar_one())
        return TxnInfo(txn_id, user, "ACTIVE", now, now, float(timeout_s), seq)

    def get_txn(self, txn_id: str) -> TxnInfo | None:
        with self._read() as conn:
            row = conn.execute(
                sa.select(s.transactions).where(s.transactions.c.id == txn_id)
            ).first()
        return self._txn(row) if row else None

    def touch_txn(self, txn_id: str, timeout_s: float | None = None) -> TxnInfo:
        """Record activity (and optionally a new idle timeout); refuses a transaction past its timeout."""
        args = {"txn_id": txn_id, "now": utcnow(), "timeout_s": timeout_s}
        with self._db.single() as conn:
            row = conn.execute(hot.TOUCH_TXN[self._dialect], args).first()
        if row is not None:
            return self._txn(row)
        # Not active, or idle too long: find out which, and abort it in the second case.
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
            timed_out = now > info.last_active + timedelta(seconds=info.timeout_s)
            if timed_out:  # committed below, then refused: raising here would roll it back
                conn.execute(
                    sa.update(s.transactions)
                    .where(s.transactions.c.id == txn_id)
                    .values(state="ABORTED", ended_at=now)
                )
                conn.execute(hot.UNLOCK, {"token": txn_id})
            else:
                values: dict[str, Any] = {"last_active": now}
                if timeout_s is not None:
                    values["timeout_s"] = timeout_s
                conn.execute(
                    sa.update(s.transactions).where(s.transactions.c.id == txn_id).values(**values)
                )
        if timed_out:
            raise TransactionError(
                f"transaction {txn_id} was idle longer than its {info.timeout_s:g} s timeout and "
                "was aborted; start a new one"
            )
        return self.get_txn(txn_id)  # type: ignore[return-value]

    def end_txn(self, txn_id: str, state: str) -> None:
        with self._write() as conn:
            conn.execute(
                sa.update(s.transactions)
                .where((s.transactions.c.id == txn_id) & (s.transactions.c.state == "ACTIVE"))
                .values(state=state, ended_at=utcnow())
            )
            conn.execute(hot.UNLOCK, {"token": txn_id})

    def expired_txns(self) -> list[TxnInfo]:
        rows = self._db.fetch(hot.ACTIVE_TXNS)
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
    ) -> tuple[int | None, LockHolder | None]:
        args = {"table_id": table_id, "token": token, "owner": owner}
        while True:
            with self._db.single() as conn:
                version = conn.execute(
                    hot.LOCK[self._dialect], {**args, **self._clock(lease_s)}
                ).scalar()
            if version is not None:
                return int(version), None
            with self._read() as conn:
                holder = self._holder(conn, table_id)
            if holder is None:
                return None, None
            if holder.token:
                return None, holder
            # Released between the two statements (PostgreSQL, READ COMMITTED): try again.

    def _holder(self, conn: sa.Connection, table_id: int) -> LockHolder | None:
        """None: no such table; a holder with an empty token: the lock is free."""
        row = conn.execute(
            hot.HOLDER[self._dialect], {"table_id": table_id, **self._clock()}
        ).first()
        if row is None:
            return None
        idle_until = None
        if row.txn_last_active is not None:
            idle_until = _aware(row.txn_last_active) + timedelta(seconds=float(row.txn_timeout_s))
        return LockHolder(
            row.token or "", row.owner or "", bool(row.expired), row.txn_state, idle_until
        )

    def steal_lock(
        self, table_id: int, old_token: str, token: str, owner: str, lease_s: float
    ) -> int | None:
        args = {"table_id": table_id, "old_token": old_token, "token": token, "owner": owner}
        with self._write() as conn:
            version = conn.execute(
                hot.STEAL[self._dialect], {**args, **self._clock(lease_s)}
            ).scalar()
            if version is None:
                return None
            conn.execute(
                sa.update(s.transactions)
                .where((s.transactions.c.id == old_token) & (s.transactions.c.state == "ACTIVE"))
                .values(state="ABORTED", ended_at=utcnow())
            )
            return int(version)

    def renew_locks(self, tokens: Iterable[str], lease_s: float) -> set[str]:
        tokens = list(tokens)
        if not tokens:
            return set()
        with self._db.single() as conn:
            rows = conn.execute(
                hot.RENEW[self._dialect], {"tokens": tokens, **self._clock(lease_s)}
            ).all()
        return {r[0] for r in rows}

    def unlock(self, token: str, table_ids: Iterable[int] | None = None) -> None:
        with self._db.single() as conn:
            if table_ids is None:
                conn.execute(hot.UNLOCK, {"token": token})
                return
            conn.execute(
                sa.update(s.tables)
                .where((s.tables.c.lock_token == token) & s.tables.c.id.in_(list(table_ids)))
                .values(lock_token=None, lock_owner=None, lock_expires=None)
            )

    def lock_holder(self, table_id: int) -> LockHolder | None:
        with self._read() as conn:
            holder = self._holder(conn, table_id)
        return holder if holder is not None and holder.token else None

    # named leases ------------------------------------------------------------------------
    def take_lease(self, name: str, owner: str, lease_s: float) -> bool:
        with self._db.single() as conn:
            args = {"name": name, "owner": owner, **self._clock(lease_s)}
            return conn.execute(hot.LEASE_TAKE[self._dialect], args).first() is not None

    def drop_lease(self, name: str, owner: str) -> None:
        with self._db.single() as conn:
            conn.execute(hot.LEASE_DROP, {"name": name, "owner": owner})

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

    # identity ----------------------------------------------------------------------------
    def catalog_id(self) -> int:
        return int(self._db.fetch(hot.CATALOG_ID)[0][0])
