"""The one governed write path: every change to table data a user makes goes through here.

`lk.write/delete/update/merge`, transactions, ingestion (crawl, ingest, streams) and batch job
outputs all use `GovernedWriter`; it authorises the write at the gate, checks the data against
the user's view of the table (so errors name only columns the user can see), narrows deletes
and updates to the rows the user sees, and commits through the catalog protocol with the audit
record queued in the ratifying store transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import pyarrow as pa

from catalog.data import check_schema, to_arrow
from catalog.errors import AccessDenied
from catalog.store import TableInfo
from catalog.txn import Transaction, check_write_args
from catalog.writes import Precheck, check_known, columns_in
from governance.gate import Audit, Gate
from governance.policy.engine import ViewSpec
from governance.principal import Principal
from governance.rowsafe import ALLOWED, unsafe


class GovernedWriter:
    """Writes for one principal, each its own atomic commit, or inside a transaction `tx`."""

    def __init__(self, gate: Gate, principal: Principal, tx: Transaction | None = None):
        self.gate = gate
        self.principal = principal
        self.tx = tx

    @property
    def user(self) -> str:
        return self.principal.name

    # the writes --------------------------------------------------------------------------------
    def write(
        self,
        table: str,
        data: Any,
        *,
        mode: str = "append",
        schema_mode: str | None = None,
        where: str | None = None,
    ) -> None:
        """Append (needs insert) or overwrite (needs insert and delete, and the whole table)."""
        check_write_args(mode, schema_mode, where)
        data = to_arrow(data)
        action = "write" if mode == "append" else "overwrite"

        def go(audit: Audit) -> None:
            needs = ["insert"] if mode == "append" else ["insert", "delete"]
            t = self._authorize(table, needs, data.schema.names)
            view = self._view(t, need_select=mode == "overwrite")
            self._check_data(t, view, data.schema, "insert", schema_mode)
            if mode == "overwrite":
                self._need_whole(t, view, "overwrite")
            audit.rows = getattr(data, "num_rows", None)
            self._tx(audit).write(t.name, data, mode, schema_mode=schema_mode, where=where)
            self._evolved(t, data.schema, schema_mode)

        self.gate.run(self.principal, action, f"{mode} {table}", go, table=table)

    def append_once(
        self,
        table: str,
        data: Any,
        *,
        app_txns: Sequence[tuple[str, int]],
        precheck: Precheck | None = None,
        schema_mode: str | None = None,
        params: Mapping[str, Any] | None = None,
        statement: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> bool:
        """A governed exactly-once append (needs insert); False if `precheck` found it done."""
        data = to_arrow(data)

        def go(audit: Audit) -> bool:
            t = self._authorize(table, ["insert"], data.schema.names)
            view = self._view(t, need_select=False)
            self._check_data(t, view, data.schema, "insert", schema_mode)
            audit.rows = getattr(data, "num_rows", None)
            done = self._tx(audit).append_once(
                t.name,
                data,
                app_txns=app_txns,
                precheck=precheck,
                schema_mode=schema_mode,
                params=params,
                metadata=metadata,
            )
            self._evolved(t, data.schema, schema_mode)
            return done

        return self.gate.run(
            self.principal, "write", statement or f"append {table}", go, table=table
        )

    def delete(self, table: str, where: str | None = None) -> dict[str, Any]:
        """Delete matching rows (needs delete); a filtered user deletes only rows they see."""

        def go(audit: Audit) -> dict[str, Any]:
            t = self._authorize(table, ["delete"])
            view = self._view(t, need_select=True)
            self._check_reads(t, view, [where], "the predicate names")
            metrics = self._tx(audit).delete(t.name, _narrow(view, where))
            audit.rows = metrics.get("num_deleted_rows")
            return metrics

        return self.gate.run(
            self.principal, "delete", f"DELETE FROM {table} WHERE {where}", go, table=table
        )

    def update(
        self, table: str, set: Mapping[str, str], where: str | None = None
    ) -> dict[str, Any]:
        """Set columns to SQL expressions on matching rows (needs update on each column)."""

        def go(audit: Audit) -> dict[str, Any]:
            t = self._authorize(table, ["update"])
            view = self._view(t, need_select=True)
            self._check_columns(t, view, list(set or {}), "update")
            reads = [*(str(v) for v in (set or {}).values()), where]
            self._check_reads(t, view, reads, "the update names")
            metrics = self._tx(audit).update(t.name, set, _narrow(view, where))
            audit.rows = metrics.get("num_updated_rows")
            return metrics

        statement = f"UPDATE {table} SET {dict(set or {})} WHERE {where}"
        return self.gate.run(self.principal, "update", statement, go, table=table)

    def merge(
        self, table: str, source: Any, on: str | Sequence[str], **actions: Any
    ) -> dict[str, Any]:
        """Upsert (needs insert and update, delete if an action deletes, and the whole table)."""
        source = to_arrow(source)
        if isinstance(source, pa.RecordBatchReader):
            source = source.read_all()

        def go(audit: Audit) -> dict[str, Any]:
            deletes = "delete" in [v for v in actions.values() if isinstance(v, str)]
            needs = ["insert", "update"] + (["delete"] if deletes else [])
            t = self._authorize(table, needs, source.schema.names)
            view = self._view(t, need_select=True)
            self._need_whole(t, view, "merge into")
            self._check_data(t, view, source.schema, "insert", None)
            return self._tx(audit).merge(t.name, source, on, **actions)

        return self.gate.run(self.principal, "merge", f"MERGE INTO {table}", go, table=table)

    # checks ------------------------------------------------------------------------------------
    def _tx(self, audit: Audit) -> Transaction:
        if self.tx is not None:
            return self.tx
        return self.gate.catalog.implicit(self.user, audit=audit.slot)

    def _authorize(self, table: str, actions: list[str], names: Sequence[str] = ()) -> _Table:
        """The table, if the user may do `actions` on it. Its catalog entry is the cached one
        (writes are frequent), whose version may predate a schema change made elsewhere:
        stricter, never looser (a newer column is one the user does not know of); when the
        data names a column that entry lacks, the entry is read again."""
        t = self._lookup(table, actions, cached=True)
        have = {c.lower() for c in t.columns}
        if any(n.lower() not in have for n in names):
            t = self._lookup(table, actions, cached=False)
        return t

    def _lookup(self, table: str, actions: list[str], *, cached: bool) -> _Table:
        info = self.gate.lookup(self.principal, table, cached=cached)
        for action in actions:
            self.gate.require(self.principal, action, info.full_name)
        return _Table(info, self.gate.schema(info))  # the schema once per operation

    def _evolved(self, t: _Table, data: pa.Schema, schema_mode: str | None) -> None:
        # A schema change made here: the cached entry names the old version.
        if schema_mode == "merge" and any(n not in t.columns for n in data.names):
            self.gate.catalog.forget(t.info)

    def _view(self, t: _Table, *, need_select: bool) -> ViewSpec | None:
        """The user's view (None: the whole table, or no select grant). Inserting needs no
        select grant (describe is enough to know the columns); changing or replacing existing
        rows does."""
        try:
            return self.gate.view(self.principal, t.info, t.columns)
        except AccessDenied:
            if need_select:
                raise AccessDenied(
                    f"{self.user} may not change rows of {t.name} they cannot select"
                ) from None
            return None

    def _check_data(
        self,
        t: _Table,
        view: ViewSpec | None,
        data: pa.Schema,
        action: str,
        schema_mode: str | None,
    ) -> None:
        """The data fits the table as the user knows it, so every error names only columns
        they may know of: a hidden column fails exactly like one that does not exist."""
        p = self.principal
        known = {c.lower() for c in self.gate.known_columns(p, t.info, t.columns)}
        visible = pa.schema([f for f in t.schema if f.name.lower() in known])
        new = [n for n in data.names if n.lower() not in known]
        if schema_mode == "merge" and new:
            # Adding columns defines the table's schema: it takes alter, and seeing all of the
            # table (a column the user lacks may exist: it must not matter whether it does).
            self.gate.require(p, "alter", t.name)
            if not self.gate.whole(p, t.info, t.columns):
                raise AccessDenied(
                    f"{self.user} may only add columns to {t.name} with access to all of it"
                )
            check_schema(pa.schema([f for f in data if f.name.lower() in known]), visible, t.name)
        else:
            check_schema(data, visible, t.name)
        self._check_columns(t, view, [n for n in data.names if n.lower() in known], action)
        if any(not f.nullable and f.name.lower() not in known for f in t.schema):
            raise AccessDenied(
                f"{self.user} may not {action} into {t.name}: it needs values "
                f"{self.user} cannot see"
            )

    def _check_columns(
        self, t: _Table, view: ViewSpec | None, columns: list[str], action: str
    ) -> None:
        if view is not None:
            # Exactly what the writer says of a column that does not exist.
            check_known(columns, view.columns, t.name, f"{action} of")
        for c in columns:
            if not self.gate.allowed(self.principal, f"{t.name}.{c}", action):
                raise AccessDenied(f"{self.user} may not {action} column {c!r} of {t.name}")

    def _check_reads(
        self, t: _Table, view: ViewSpec | None, sqls: list[str | None], what: str
    ) -> None:
        """Predicates and values may only use columns the user fully sees (no mask, no cell
        filter, not hidden): a value over hidden data would reveal it. Where the user sees
        only some rows, only expressions that cannot fail on any value (`rowsafe`)."""
        used = [c for sql in sqls for c in columns_in(sql)]
        if view is None:
            return
        check_known(used, view.columns, t.name, what)
        clear = {c.lower() for c in view.prunable}
        if not {c.lower() for c in used} <= clear:
            raise AccessDenied(
                f"{self.user} may only filter and compute on columns they fully see in {t.name}"
            )
        if view.row_cond:
            types = {f.name: f.type for f in t.schema}
            if any(sql and unsafe(sql, types) for sql in sqls):
                raise AccessDenied(
                    f"{self.user} sees only some rows of {t.name}: a delete or update "
                    f"predicate or value may use only {ALLOWED}"
                )

    def _need_whole(self, t: _Table, view: ViewSpec | None, what: str) -> None:
        if view is not None and not self.gate.whole(self.principal, t.info, t.columns):
            raise AccessDenied(f"{self.user} may only {what} {t.name} with access to all of it")


class _Table(NamedTuple):
    """A table a write acts on: its catalog entry, and its schema as the write began."""

    info: TableInfo
    schema: pa.Schema

    @property
    def name(self) -> str:
        return self.info.full_name

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)


def _narrow(view: ViewSpec | None, where: str | None) -> str | None:
    """The predicate a filtered user's delete or update runs with: only rows they see, and
    their own predicate evaluated on those rows alone (CASE evaluates THEN only where WHEN
    holds), so it can never fail on, or reveal, a hidden row."""
    if view is None or not view.row_cond:
        return where
    if not where:
        return f"({view.row_cond})"
    return f"CASE WHEN ({view.row_cond}) THEN ({where}) ELSE FALSE END"
