"""Wiring the policy folder into a lake: `lk.policy`, governed writes, audit of reloads."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from catalog.errors import AccessDenied, LakeError, PolicyError, SQLError
from catalog.store import TableInfo
from governance.access import Access, OpenAccess
from governance.governed import PolicyAccess
from governance.policy.engine import PolicyEngine, ViewSpec

if TYPE_CHECKING:
    from lake.lake import Lake


class Policy:
    """The lake's policy folder. Without one, governance is off and every user sees everything
    (like Lake Formation before it is switched on); with one, everything is denied by default."""

    def __init__(self, lk: Lake, folder: Path | None):
        self.lk = lk
        self.folder = folder
        self.engine: PolicyEngine | None = None
        if folder is not None:
            self.engine = PolicyEngine(folder, self._table_lookup, on_reload=self._reloaded)

    @property
    def access(self) -> Access:
        return PolicyAccess(self.engine) if self.engine else OpenAccess()

    @property
    def version(self) -> str:
        return self.engine.version if self.engine else ""

    def reload(self) -> str:
        """Re-read the policy folder now; returns the new policy version (PolicyError if bad)."""
        if self.engine is None:
            raise PolicyError("this lake has no policy folder; pass policy= to lake.connect")
        try:
            return self.engine.reload()
        except PolicyError as e:
            self.lk.audit.record(
                "lakeward", "policy_reload", str(self.folder), "error", reason=str(e)
            )
            raise

    def _reloaded(self, version: str) -> None:
        audit = getattr(self.lk, "audit", None)
        if audit is not None:
            audit.record(
                "lakeward",
                "policy_reload",
                str(self.folder),
                "allowed",
                reason=f"version {version}",
            )

    def _table_lookup(self, name: str) -> tuple[list[str], dict[str, dict[str, str]]] | None:
        parts = name.split(".")
        if len(parts) < 2:
            return None
        try:
            info = self.lk.catalog.table(".".join(parts[:2]), cached=True)
            columns = list(self.lk.catalog.snapshot(info, info.version).schema.names)
            db_tags = self.lk.catalog.database_tags(info.database)
        except LakeError:
            return None
        return columns, {info.database: db_tags, info.full_name: dict(info.tags)}

    def allowed(self, user: str, resource: str, action: str) -> bool:
        """May `user` do `action` on `resource`? Always True without a policy folder."""
        return True if self.engine is None else self.engine.allowed(user, resource, action)

    def may_describe(self, user: str, info: TableInfo) -> bool:
        """May the user know this table exists (a select view or a describe grant)?"""
        if self.engine is None:
            return True
        try:
            columns = list(self.lk.catalog.snapshot(info, info.version).schema.names)
            self.engine.view(user, info.full_name, columns)  # cached per user and table
            return True
        except AccessDenied:
            return self.allowed(user, info.full_name, "describe")

    def describable_columns(self, user: str, info: TableInfo, columns: list[str]) -> set[str]:
        """Columns the user may know of: those they can select, else all (a describe grant)."""
        if self.engine is None:
            return set(columns)
        try:
            return set(self.engine.view(user, info.full_name, columns).columns)
        except AccessDenied:
            return {c for c in columns if self.allowed(user, f"{info.full_name}.{c}", "describe")}

    def information_schema(self, user: str, view: str) -> list[tuple]:
        """Rows of an information_schema view as `user` may see them."""
        return _describe_rows(self, user, view)

    def view(self, user: str, table: str) -> ViewSpec | None:
        """The user's view of a table (None without a policy; AccessDenied if none)."""
        if self.engine is None:
            return None
        info = self.lk.catalog.table(table)
        return self.engine.view(
            user, info.full_name, list(self.lk.catalog.snapshot(info).schema.names)
        )


def _describe_rows(policy: Policy, user: str, view: str) -> list[tuple]:
    cat = policy.lk.catalog
    if view == "schemata":
        dbs = {i.database for i in cat.list_tables() if policy.may_describe(user, i)}
        return [
            ("lake", d.name, d.description)
            for d in cat.list_databases()
            if d.name in dbs or policy.allowed(user, d.name, "describe")
        ]
    out: list[tuple] = []
    for info in cat.list_tables():
        if not policy.may_describe(user, info):
            continue
        if view == "tables":
            out.append(
                (
                    "lake",
                    info.database,
                    info.name,
                    "BASE TABLE" if info.table_type == "GOVERNED" else "EXTERNAL",
                    info.description,
                )
            )
            continue
        schema = cat.snapshot(info).schema
        shown = policy.describable_columns(user, info, list(schema.names))
        for pos, f in enumerate((f for f in schema if f.name in shown), start=1):
            out.append(
                (
                    "lake",
                    info.database,
                    info.name,
                    f.name,
                    pos,
                    str(f.type),
                    "YES" if f.nullable else "NO",
                )
            )
    return out


def _columns_in(sql: str) -> set[str]:
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except ParseError as e:
        raise SQLError(
            f"cannot parse {sql!r}: {e.errors[0]['description'] if e.errors else e}"
        ) from None
    return {c.name.lower() for c in tree.find_all(exp.Column)}


def authorize_write(
    policy: Policy,
    user: str,
    table: str,
    actions: Iterable[str],
    *,
    columns: Iterable[str] = (),
    reads: Iterable[str] = (),
    where: str | None = None,
) -> str | None:
    """Check a write against the policy; returns the WHERE to use (narrowed to visible rows).

    `columns` are written, `reads` are SQL expressions the write evaluates over stored values.
    """
    if policy.engine is None:
        return where
    full = policy.lk.catalog.table(table).full_name
    for action in actions:
        if not policy.allowed(user, full, action):
            raise AccessDenied(f"{user} may not {action} {full}")
    try:
        view = policy.view(user, full)
    except AccessDenied:
        view = None
    clear = {c.lower() for c in view.prunable} if view else set()
    visible = {c.lower() for c in view.columns} if view else set()
    for c in columns:
        if not policy.allowed(user, f"{full}.{c}", next(iter(actions), "insert")) or (
            view is not None and c.lower() not in visible
        ):
            raise AccessDenied(f"{user} may not write column {c!r} of {full}")
    used: set[str] = set()
    for sql in [*reads, *([where] if where else [])]:
        used |= _columns_in(sql)
    if used and (view is None or not used <= clear):
        # A predicate or value over hidden, masked or cell-filtered data would reveal it.
        raise AccessDenied(
            f"{user} may only filter and compute on columns they fully see in {full}"
        )
    if view is not None and view.row_cond:
        return f"({view.row_cond})" + (f" AND ({where})" if where else "")
    return where
