"""Transactions over governed tables: catalog-managed commits (see docs/transactions.md).

Each write becomes a tentative Delta commit made by delta-rs while the writer holds the table's
lock; the commit point is one metadata-store transaction that moves every touched table's
pointer (`MetadataStore.ratify`). Readers use only ratified versions; a lock taker rolls back
anything past the pointer, which is all a crash can leave behind.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import sqlglot
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError, SchemaMismatchError
from sqlglot import exp
from sqlglot.errors import ParseError

from catalog import locks, recovery, storage, writes
from catalog.data import to_arrow
from catalog.errors import (
    CommitConflict,
    InvalidArgument,
    LakeError,
    SchemaMismatch,
    SQLError,
    TableNotFound,
    TransactionError,
)
from catalog.settings import Settings
from catalog.store import MetadataStore, Ratify, TableInfo


class Tables(Protocol):
    """What a transaction needs of the catalog (`catalog.catalog.Catalog` is one)."""

    store: MetadataStore
    settings: Settings

    def table(self, name: str, *, cached: bool = False) -> TableInfo: ...
    def forget(self, info: TableInfo) -> None: ...
    def writer_table(self, location: str, pointer: int) -> DeltaTable: ...
    def after_commit(self, info: TableInfo, dt: DeltaTable, old: int, new: int) -> None: ...


# Operations that rewrite files without changing a single row: a transaction that read the
# table before one of them committed still read exactly the current rows.
ROW_NEUTRAL = frozenset({"OPTIMIZE"})


@dataclass
class _Locked:
    info: TableInfo
    pointer: int  # ratified version when the lock was taken
    dt: DeltaTable
    changed_since_snapshot: bool
    ops: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)


class Transaction:
    """A unit of work over one or more governed tables: all of it commits, or none of it.

    Use as `with lk.transaction(user=...) as tx:` or explicitly with `commit()` / `cancel()`.
    Reads inside see the snapshot taken at `begin` plus the transaction's own writes.
    """

    def __init__(
        self, catalog: Tables, user: str, *, timeout_s: float | None = None, implicit: bool = False
    ):
        if not user or not isinstance(user, str):
            raise InvalidArgument("a transaction needs the user it acts for")
        self.catalog = catalog
        self.user = user
        self.id = uuid.uuid4().hex
        self.implicit = implicit
        self.timeout_s = float(timeout_s or catalog.settings.txn_timeout_s)
        self.snapshot_seq: int | None = None
        if not implicit:
            self.snapshot_seq = catalog.store.begin_txn(self.id, user, self.timeout_s).snapshot_seq
        self.state = "ACTIVE"
        # An audit record to queue inside the ratifying store transaction (lake sets it).
        self.audit_record: dict[str, Any] | None = None
        self._locked: dict[int, _Locked] = {}
        self._read: set[int] = set()

    # context manager -------------------------------------------------------------------------
    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.state != "ACTIVE":
            return
        if exc_type is None:
            self.commit()
        else:
            self.cancel()

    # state -----------------------------------------------------------------------------------
    def _check_active(self) -> None:
        if self.state != "ACTIVE":
            raise TransactionError(f"transaction {self.id} is {self.state}")
        if not self.implicit:
            try:
                self.catalog.store.touch_txn(self.id)
            except TransactionError:
                self._abandon("ABORTED")
                raise

    def extend(self, timeout_s: float | None = None) -> None:
        """Keep the transaction alive (Lake Formation's ExtendTransaction); optionally a new timeout."""
        if self.implicit:
            return
        self._check_active()
        self.catalog.store.touch_txn(self.id, timeout_s)
        if timeout_s:
            self.timeout_s = float(timeout_s)

    # reads -----------------------------------------------------------------------------------
    def read_version(self, info: TableInfo) -> tuple[int, bool]:
        """(version, tentative) this transaction reads of a table; tentative = own writes."""
        self._read.add(info.id)
        locked = self._locked.get(info.id)
        if locked is not None and locked.ops:
            return locked.ops[-1][0], True
        if self.snapshot_seq is None:
            return self.catalog.store.pointers([info.id])[info.id], False
        v = self.catalog.store.versions_at([info.id], self.snapshot_seq).get(info.id)
        if v is None:
            raise TransactionError(
                f"table {info.full_name} did not exist when the transaction began"
            )
        return v, False

    # locking ---------------------------------------------------------------------------------
    def _lock(self, info: TableInfo, reads_table: bool) -> _Locked:
        locked = self._locked.get(info.id)
        if locked is None:
            if info.table_type != "GOVERNED":
                raise InvalidArgument(
                    f"{info.full_name} is an external table and read-only in Lakeward; register it "
                    "with governed=True to write it"
                )
            s = self.catalog.settings
            pointer = locks.acquire(
                self.catalog.store, info.id, self.id, s.write_lease_s, s.lock_wait_s
            )
            if pointer is None:
                self.catalog.forget(info)
                raise TableNotFound(f"table {info.full_name} was dropped")
            try:
                dt = self.catalog.writer_table(info.location, pointer, self._still_ours)
                changed = False
                if self.snapshot_seq is not None:
                    at_snap = self.catalog.store.versions_at([info.id], self.snapshot_seq).get(
                        info.id
                    )
                    changed = at_snap != pointer and _changes_rows(
                        self.catalog, info.id, at_snap, pointer
                    )
            except BaseException:
                self.catalog.store.unlock(self.id, [info.id])
                raise
            locked = _Locked(info, pointer, dt, changed)
            self._locked[info.id] = locked
        if locked.changed_since_snapshot and (reads_table or info.id in self._read):
            raise CommitConflict(
                f"{info.full_name} was changed by another commit after this transaction began; "
                "retry the transaction"
            )
        return locked

    def _run(
        self,
        name: str,
        operation: str,
        params: dict[str, Any],
        reads_table: bool,
        fn: Callable[[DeltaTable, CommitProperties], Any],
    ) -> Any:
        self._check_active()
        try:
            locked = self._lock(self.catalog.table(name, cached=True), reads_table)
        except TableNotFound:
            # The cached entry may name a dropped table; a fresh lookup decides.
            locked = self._lock(self.catalog.table(name), reads_table)
        info = locked.info
        before = locked.dt.version()
        props = CommitProperties(
            custom_metadata={
                "lakeward.user": self.user,
                "lakeward.txn": self.id,
                "lakeward.operation": operation,
            },
            max_commit_retries=0,
        )
        try:
            locks.check(self.catalog.store, self.id)  # fencing: never write past a lost lease
            result = fn(locked.dt, props)
        except BaseException as e:
            self._undo_to(locked, before)
            if self.implicit:
                self._abandon("CANCELLED")
            translated = _translate(e, info.full_name, operation)
            if translated is e:
                raise
            raise translated from e
        after = locked.dt.version()
        if after != before:
            for v in range(before + 1, after + 1):
                locked.ops.append((v, operation, params if v == after else {}))
        if self.implicit:
            self.commit()
        return result

    def _holds_lock(self, table_id: int) -> bool:
        # Rolling back is only ours to do while the lock is: after a takeover the versions past
        # our pointer may be someone else's ratified commits.
        return locks.holds(self.catalog.store, table_id, self.id)

    def _still_ours(self) -> bool:
        return locks.valid(self.catalog.store, self.id)

    def _undo_to(self, locked: _Locked, version: int) -> None:
        if self._holds_lock(locked.info.id):
            recovery.rollback_past(locked.info.location, version, self._still_ours)
            locked.dt = storage.open_delta(locked.info.location, version)

    # writes ----------------------------------------------------------------------------------
    def write(
        self,
        name: str,
        data: Any,
        mode: str = "append",
        *,
        schema_mode: str | None = None,
        where: str | None = None,
    ) -> None:
        """Append or overwrite rows; `where` limits an overwrite to matching rows (replaceWhere).

        Table columns the data lacks are written as NULL.
        """
        check_write_args(mode, schema_mode, where)
        table = to_arrow(data)
        if mode == "append":
            self.append_once(name, table, schema_mode=schema_mode)
            return

        def op(dt: DeltaTable, props: CommitProperties) -> None:
            writes.overwrite(dt, props, table, table=name, where=where, schema_mode=schema_mode)

        self._run(name, "OVERWRITE", {"mode": mode}, True, op)

    def append_once(
        self,
        name: str,
        data: Any,
        *,
        app_txns: Sequence[tuple[str, int]] = (),
        precheck: writes.Precheck | None = None,
        schema_mode: str | None = None,
        params: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        operation: str = "WRITE",
    ) -> bool:
        """The one exactly-once append: add `data` and record Delta application transactions
        `app_txns` [(app_id, version)] in the same commit (recorded as `operation`).

        `precheck(dt)` runs under the table lock on the ratified version the commit follows;
        False means "already there": nothing is written and this returns False. Streams, the
        crawler, batch job outputs and the audit flusher all append through here.
        """
        if schema_mode not in (None, "merge"):
            raise InvalidArgument(f"schema_mode must be None or 'merge', not {schema_mode!r}")
        table = to_arrow(data)

        def op(dt: DeltaTable, props: CommitProperties) -> bool:
            return writes.append(
                dt,
                props,
                table,
                table=name,
                app_txns=app_txns,
                precheck=precheck,
                schema_mode=schema_mode,
                metadata=metadata,
            )

        # Only a precheck reads the table; a blind append never conflicts with a snapshot.
        reads = precheck is not None
        return bool(self._run(name, operation, {"mode": "append", **(params or {})}, reads, op))

    def delete(self, name: str, where: str | None = None) -> dict[str, Any]:
        """Delete the rows matching `where` (a SQL predicate); all rows when None."""
        _check_predicate(where)

        def op(dt: DeltaTable, props: CommitProperties) -> dict[str, Any]:
            return writes.delete(dt, props, where, table=name)

        return self._run(name, "DELETE", {"where": where}, True, op)

    def update(self, name: str, set: Mapping[str, str], where: str | None = None) -> dict[str, Any]:
        """Set columns to SQL expressions (`{"amount": "amount * 2"}`) on rows matching `where`."""
        if not set or not isinstance(set, Mapping):
            raise InvalidArgument("update needs set={'column': 'SQL expression', ...}")
        _check_predicate(where)
        for expr in set.values():
            _check_predicate(str(expr))

        def op(dt: DeltaTable, props: CommitProperties) -> dict[str, Any]:
            return writes.update(dt, props, set, where, table=name)

        return self._run(name, "UPDATE", {"set": dict(set), "where": where}, True, op)

    def merge(
        self,
        name: str,
        source: Any,
        on: str | Sequence[str],
        *,
        when_matched: str | Mapping[str, str] | None = "update",
        when_not_matched: str | Mapping[str, str] | None = "insert",
        when_not_matched_by_source: str | None = None,
    ) -> dict[str, Any]:
        """Upsert `source` into the table, matching rows on key columns (or a predicate over t. and s.).

        when_matched: "update" (all columns), {"col": "s.col + t.col"}, "delete" or None.
        when_not_matched: "insert" (all columns), {"col": "s.col"} or None.
        when_not_matched_by_source: "delete" or None.
        """
        src = to_arrow(source)
        if isinstance(src, pa.RecordBatchReader):
            src = src.read_all()
        predicate = writes.merge_predicate(src, on)
        writes.check_merge_actions(when_matched, when_not_matched, when_not_matched_by_source)

        def op(dt: DeltaTable, props: CommitProperties) -> dict[str, Any]:
            return writes.merge(
                dt,
                props,
                src,
                predicate,
                table=name,
                when_matched=when_matched,
                when_not_matched=when_not_matched,
                when_not_matched_by_source=when_not_matched_by_source,
            )

        return self._run(name, "MERGE", {"on": predicate}, True, op)

    def run_maintenance(
        self,
        name: str,
        operation: str,
        params: dict[str, Any],
        fn: Callable[[DeltaTable, CommitProperties], Any],
    ) -> Any:
        """Run a table-maintenance commit (compact, ...) under the same protocol."""
        return self._run(name, operation, params, True, fn)

    # end -------------------------------------------------------------------------------------
    def commit(self) -> None:
        """Make every write of this transaction visible at once, or none (raises CommitConflict)."""
        if self.state != "ACTIVE":
            raise TransactionError(f"transaction {self.id} is {self.state}")
        moves = [
            Ratify(t.info.id, t.pointer, t.ops[-1][0], tuple(t.ops))
            for t in self._locked.values()
            if t.ops
        ]
        audit = self.audit_record if moves else None
        if audit is not None:
            audit["tables"] = [
                {"table": t.info.full_name, "version": t.ops[-1][0]}
                for t in self._locked.values()
                if t.ops
            ]
        try:
            if moves:
                locks.check(self.catalog.store, self.id)  # fencing; ratify also checks the token
            if moves or not self.implicit:
                self.catalog.store.ratify(
                    moves, self.id, self.user, self.id, close_txn=not self.implicit, audit=audit
                )
            if audit is not None:
                audit["queued"] = True
            if not moves and self._locked:
                self.catalog.store.unlock(self.id)
        except BaseException:
            self._abandon("ABORTED")
            raise
        locks.released(self.catalog.store, self.id)
        self.state = "COMMITTED"
        for t in self._locked.values():
            if t.ops:
                self.catalog.after_commit(t.info, t.dt, t.pointer, t.ops[-1][0])
        self._locked.clear()

    def cancel(self) -> None:
        """Roll back every write of this transaction (Lake Formation's CancelTransaction)."""
        if self.state != "ACTIVE":
            return
        self._abandon("CANCELLED")

    def _abandon(self, state: str) -> None:
        for t in self._locked.values():
            if t.ops and self._holds_lock(t.info.id):
                with contextlib.suppress(OSError, CommitConflict):  # the next holder rolls back
                    recovery.rollback_past(t.info.location, t.pointer, self._still_ours)
        self._locked.clear()
        if self.implicit:
            self.catalog.store.unlock(self.id)
        else:
            self.catalog.store.end_txn(self.id, state)
        locks.released(self.catalog.store, self.id)
        self.state = state


def _changes_rows(catalog: Tables, table_id: int, old: int | None, new: int) -> bool:
    """Whether a ratified commit after version `old`, up to `new`, changed the table's rows."""
    if old is None or new < old:
        return True
    since = [c for c in catalog.store.commits(table_id, new - old) if c.version > old]
    return len(since) != new - old or any(c.operation not in ROW_NEUTRAL for c in since)


def check_write_args(mode: str, schema_mode: str | None, where: str | None) -> None:
    """InvalidArgument for a write mode, schema mode or where= that makes no sense."""
    if mode not in ("append", "overwrite"):
        raise InvalidArgument(f"mode must be 'append' or 'overwrite', not {mode!r}")
    if schema_mode not in (None, "merge"):
        raise InvalidArgument(f"schema_mode must be None or 'merge', not {schema_mode!r}")
    if where is not None and mode != "overwrite":
        raise InvalidArgument("where= applies only to mode='overwrite'")


def _check_predicate(sql: str | None) -> None:
    if sql is None:
        return
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidArgument("a predicate must be a non-empty SQL string")
    try:
        tree = sqlglot.parse_one(sql, read="duckdb", into=exp.Condition)
    except ParseError as e:
        raise SQLError(
            f"cannot parse {sql!r}: {e.errors[0]['description'] if e.errors else e}"
        ) from None
    if tree.find(exp.Select, exp.Subquery):
        raise SQLError("predicates and update expressions may not contain subqueries")


def _translate(e: BaseException, table: str, operation: str) -> BaseException:
    if isinstance(e, LakeError):
        return e
    if isinstance(e, CommitFailedError):
        return CommitConflict(f"concurrent commit on {table}; retry ({e})")
    if isinstance(e, (SchemaMismatchError, DeltaError)) or type(e) is Exception:
        msg = str(e).replace("Generic DeltaTable error: ", "").replace("External error: ", "")
        writes_data = operation in ("WRITE", "OVERWRITE", "MERGE")
        if writes_data and ("Schema" in msg or "cast" in msg.lower()):
            return SchemaMismatch(f"data does not match the schema of {table}: {msg}")
        return SQLError(f"{operation} on {table} failed: {msg}")
    return e
