"""The one checkpoint: every operation is authorised and audited here, and nowhere else.

`Gate.run(principal, action, statement, fn)` is how every governed operation runs (queries,
explain, writes, catalog changes, crawl and ingest, maintenance, policy changes, jobs): the
decisions it needs are asked of the gate inside `fn`, and the gate audits the outcome (allowed,
denied or error) with the principal, how it was authenticated and the client's address. A write
queues its record inside the very store transaction that ratifies it (`Audit.slot`).

Messages that reach a user never reveal what the user may not see: a table the user may not
describe fails exactly like a missing one (`lookup`), and paths of the lake's files are cut out
of every error (`scrub`).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from catalog.catalog import Catalog
from catalog.errors import (
    AccessDenied,
    DatabaseNotFound,
    LakeError,
    PolicyError,
    TableNotAccessible,
    TableNotFound,
)
from catalog.names import split_name
from catalog.store import TableInfo
from governance.audit import AuditLog, make_record
from governance.locations import owned_paths
from governance.policy.engine import PolicyEngine, ViewSpec
from governance.policy.resources import POLICY
from governance.policy.state import PolicyState
from governance.principal import Principal

T = TypeVar("T")

# The policy engine of the operation running in this context (see Gate.engine).
_IN_FORCE: contextvars.ContextVar[tuple[Gate, PolicyEngine | None] | None] = contextvars.ContextVar(
    "lakeward_policy_in_force", default=None
)

# A grant of any of these on a database lets its holder know the database exists.
_DATABASE_ACTIONS = ("describe", "select", "create", "insert", "alter", "drop")

# What a user is told of a policy that cannot be used (its text and file are the policy's).
BROKEN_POLICY = (
    "the policy in force has errors, so nothing is allowed until it is fixed; an administrator "
    "can find them with `lake policy check`"
)


def hidden_table(name: str) -> TableNotAccessible:
    """The one error for a table that is missing or that the user may not know of."""
    return TableNotAccessible(f"table {name} does not exist or you may not use it")


def hidden_database(name: str) -> TableNotAccessible:
    """The one error for a database that is missing or that the user may not know of."""
    return TableNotAccessible(f"database {name} does not exist or you may not use it")


@dataclass
class Audit:
    """The audit record of one operation in progress.

    `slot` is the record itself: the catalog transaction that commits the operation queues it
    in its ratifying store transaction (and marks it queued); `rows` and `rules` go into it as
    the operation learns them. `tables` is for operations that commit nothing.
    """

    slot: dict[str, Any]
    tables: list[tuple[str, int]] = field(default_factory=list)

    @property
    def rows(self) -> int | None:
        return self.slot.get("rows")

    @rows.setter
    def rows(self, value: int | None) -> None:
        self.slot["rows"] = value

    @property
    def rules(self) -> list[str]:
        return self.slot.setdefault("rules", [])

    @rules.setter
    def rules(self, value: list[str]) -> None:
        self.slot["rules"] = list(value)

    @property
    def queued(self) -> bool:
        return bool(self.slot.get("queued"))


class Gate:
    """Decisions and audit for one lake: its catalog, the policy in force, its audit trail."""

    def __init__(self, catalog: Catalog, policy: PolicyState, audit: AuditLog):
        self.catalog = catalog
        self.policy = policy
        self.audit = audit
        self._scrub_cache: tuple[tuple[str, ...], re.Pattern[str] | None] = ((), None)

    # decisions ---------------------------------------------------------------------------------
    def engine(self) -> PolicyEngine | None:
        """The policy engine in force (None: the catalog has no policy; governance is off).

        Inside an operation (`run`) it is the one read when the operation began: every decision
        of one operation is made under one policy version, and the catalog is asked once."""
        held = _IN_FORCE.get()
        return held[1] if held is not None and held[0] is self else self.policy.engine()

    @property
    def governed(self) -> bool:
        return self.engine() is not None

    def allowed(self, p: Principal, resource: str, action: str) -> bool:
        """May `p` do `action` on `resource`? The owner and the system may do anything, and so
        may everyone on a catalog without a policy."""
        if p.privileged:
            return True
        engine = self.engine()
        return engine is None or engine.allowed(p.name, resource, action)

    def require(self, p: Principal, action: str, resource: str, what: str | None = None) -> None:
        """AccessDenied unless `p` may do `action` on `resource` (named `what` in the message)."""
        if not self.allowed(p, resource, action):
            raise AccessDenied(f"{p.name} may not {action} {what or resource}")

    def view(self, p: Principal, info: TableInfo, columns: list[str]) -> ViewSpec | None:
        """The user's view of a table (None: the whole table); AccessDenied without a select
        grant."""
        engine = None if p.privileged else self.engine()
        if engine is None:
            return None
        return engine.view(p.name, info.full_name, columns)

    def may_describe(self, p: Principal, info: TableInfo) -> bool:
        """May `p` know this table exists (a select view on it, or describe)?"""
        engine = None if p.privileged else self.engine()
        if engine is None:
            return True
        try:
            engine.view(p.name, info.full_name, self.columns(info))
            return True
        except AccessDenied:
            return engine.allowed(p.name, info.full_name, "describe")

    def may_describe_database(self, p: Principal, name: str) -> bool:
        """May `p` know this database exists (any grant on it, or a table of it they may
        describe)?"""
        if any(self.allowed(p, name, a) for a in _DATABASE_ACTIONS):
            return True
        return any(self.may_describe(p, i) for i in self.catalog.list_tables(name))

    def schema(self, info: TableInfo) -> pa.Schema:
        """The table's schema at the entry's version (a writer's cached entry may be older
        than the table: see `GovernedWriter`; its snapshot is cached, so this is cheap). An
        entry so old that its version's log has been cleaned up reads the current one."""
        try:
            return self.catalog.snapshot(info, info.version).schema
        except LakeError:
            return self.catalog.snapshot(info).schema

    def columns(self, info: TableInfo) -> list[str]:
        """The table's columns now, in table order."""
        return list(self.schema(info).names)

    def known_columns(
        self, p: Principal, info: TableInfo, columns: list[str] | None = None
    ) -> list[str]:
        """The columns of a table `p` may know of, in table order: those of their view, or
        with no select grant (describe only) those they may describe. Every answer and error
        about a table's columns names only these. (`columns`: the table's, if known.)"""
        columns = self.columns(info) if columns is None else columns
        try:
            view = self.view(p, info, columns)
        except AccessDenied:
            return [c for c in columns if self.allowed(p, f"{info.full_name}.{c}", "describe")]
        return columns if view is None else list(view.columns)

    def whole(self, p: Principal, info: TableInfo, columns: list[str] | None = None) -> bool:
        """Whether `p` sees all of a table: every row, every column, every cell, no mask. Only
        then may answers hold numbers about its files, or operations replace its rows."""
        columns = self.columns(info) if columns is None else columns
        try:
            view = self.view(p, info, columns)
        except AccessDenied:
            return False  # describe only: they know the columns, not the rows
        return view is None or (
            not view.row_cond
            and not view.masks
            and not view.cell_cond
            and list(view.columns) == columns
        )

    def lookup(self, p: Principal, name: str, *, cached: bool = False) -> TableInfo:
        """The table `name` as `p` may know it: a table the user may not describe raises the
        same TableNotAccessible as a missing one (both an AccessDenied and a TableNotFound)."""
        try:
            info = self.catalog.table(name, cached=cached)
        except TableNotFound:
            info = None
        return self._known(p, name, info)

    def lookup_all(self, p: Principal, names: list[str]) -> list[TableInfo]:
        """`lookup` of several tables (in order: the first that fails raises), read from the
        catalog in one statement."""
        found = self.catalog.tables(names)
        return [self._known(p, name, found.get(name)) for name in names]

    def _known(self, p: Principal, name: str, info: TableInfo | None) -> TableInfo:
        if info is None:
            if p.privileged or not self.governed:
                raise TableNotFound(f"table {'.'.join(split_name(name))} not found")
            # The name as the catalog writes it (lower case), exactly as for a hidden table.
            raise hidden_table(_shown(name).lower())
        if not self.may_describe(p, info):
            raise hidden_table(info.full_name)
        return info

    def lookup_database(self, p: Principal, name: str) -> None:
        """DatabaseNotFound, or under a policy the uniform error, unless `p` may know of it."""
        try:
            self.catalog.get_database(name)
        except DatabaseNotFound:
            if p.privileged or not self.governed:
                raise
            raise hidden_database(_shown(name).lower()) from None
        if not p.privileged and self.governed and not self.may_describe_database(p, name):
            raise hidden_database(_shown(name).lower())

    @contextlib.contextmanager
    def one_policy(self) -> Iterator[None]:
        """Every decision inside is made under one policy version, read once when it begins
        (inside `run` already; nested, the outer one holds)."""
        held = _IN_FORCE.get()
        if held is not None and held[0] is self:
            yield
            return
        token = _IN_FORCE.set((self, self.policy.engine()))
        try:
            yield
        finally:
            _IN_FORCE.reset(token)

    # the checkpoint ----------------------------------------------------------------------------
    def run(
        self,
        p: Principal,
        action: str,
        statement: str,
        fn: Callable[[Audit], T],
        *,
        table: str | None = None,
    ) -> T:
        """Run one operation for `p`, audited as `action` whatever its outcome.

        `fn(audit)` does the work, asking this gate for every decision; it may hand
        `audit.slot` to the transaction that commits it. Errors raised to a user are scrubbed of
        the lake's paths.
        """
        audit = Audit(self.audit_record(p, action, statement, "allowed"))
        try:
            with self.one_policy():
                result = fn(audit)
        except AccessDenied as e:
            self._refused(p, action, statement, "denied", e, table)
            raise self.scrub(e, p) from None
        except LakeError as e:
            self._refused(p, action, statement, "error", e, table)
            raise self.scrub(e, p) from None
        except Exception as e:
            self._refused(p, action, statement, "error", e, table)
            if p.privileged:
                raise
            # Not one of ours: its text may hold anything (paths of the lake's files).
            raise self.scrub(LakeError(f"{type(e).__name__}: {e}"), p) from None
        if not audit.queued:
            self.record(
                p,
                action,
                statement,
                "allowed",
                tables=audit.tables,
                rows=audit.rows,
                rules=audit.rules,
            )
        else:
            self.audit.started()
        return result

    def _refused(
        self,
        p: Principal,
        action: str,
        statement: str,
        decision: str,
        e: Exception,
        table: str | None,
    ) -> None:
        self.record(
            p,
            action,
            statement,
            decision,
            tables=[(table, -1)] if table else [],
            reason=str(e),
        )

    def audit_record(
        self, p: Principal, action: str, statement: str, decision: str
    ) -> dict[str, Any]:
        """An audit record not yet written, e.g. to queue inside a store transaction."""
        return make_record(
            p.name, action, statement[:10000], decision, auth=p.auth, client=p.client
        )

    def record(
        self,
        p: Principal,
        action: str,
        statement: str,
        decision: str,
        *,
        tables: Iterable[tuple[str, int]] = (),
        rules: Iterable[str] = (),
        rows: int | None = None,
        reason: str = "",
    ) -> None:
        """Append one audit record now (fails closed: AccessDenied if it cannot be written)."""
        self.audit.record(
            p.name,
            action,
            statement[:10000],
            decision,
            tables=tables,
            rules=rules,
            rows=rows,
            reason=reason,
            auth=p.auth,
            client=p.client,
        )

    # messages ----------------------------------------------------------------------------------
    def owned(self) -> list[tuple[str, str]]:
        """The lake's own files (kind, path or URL): its root, table folders, metadata store and
        policy folder (`governance.locations`: never a readable location)."""
        installed = self.policy.installed()
        return owned_paths(
            self.catalog.root,
            self.catalog.store.url,
            (t.location for t in self.catalog.list_tables()),
            installed.source if installed else "",
        )

    def scrub(self, e: LakeError, p: Principal) -> LakeError:
        """`e` as a user may see it (admins see all): the lake's files cut out of its message,
        and nothing of a policy that cannot be used."""
        if p.privileged:
            return e
        if isinstance(e, PolicyError) and not self._may_read_policy(p):
            return PolicyError(BROKEN_POLICY)
        text = str(e)
        pattern = self._paths()
        if pattern is None or not pattern.search(text):
            return e
        clean = pattern.sub("<lake>", text)
        try:
            out = type(e)(clean)
        except TypeError:  # an error type with its own constructor: keep the type's base
            out = LakeError(clean)
        return out

    def _may_read_policy(self, p: Principal) -> bool:
        try:
            return any(self.allowed(p, POLICY, a) for a in ("describe", "alter"))
        except PolicyError:
            return False

    def _paths(self) -> re.Pattern[str] | None:
        own = tuple(
            sorted(
                {o for _, o in self.owned() if o} | _spellings(self.catalog.root),
                key=len,
                reverse=True,
            )
        )
        if self._scrub_cache[0] != own:
            alternatives = "|".join(re.escape(o.rstrip("/")) for o in own)
            self._scrub_cache = (own, re.compile(f"(?:{alternatives})" + r"[^\s'\"),;]*"))
        return self._scrub_cache[1]


def _spellings(root: Path | str) -> set[str]:
    """The ways an error may name the lake's root: an object-store prefix as it is, a folder
    as given and as resolved."""
    if isinstance(root, str):
        return {root}
    return {str(root), str(root.resolve())}


def _shown(name: str) -> str:
    # Echo a name the user typed only when it is a plain name (no paths, no quotes).
    return name if re.fullmatch(r"[A-Za-z0-9_.]{1,200}", str(name)) else "(that name)"
