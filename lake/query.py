"""`lk.sql` and `lk.explain`: compile with the governance passes, run on the locked engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from catalog.errors import (
    AccessDenied,
    InvalidArgument,
    LakeError,
    TableNotAccessible,
    TableNotFound,
)
from catalog.snapshot import Snapshot
from catalog.store import TableInfo
from governance.audit import TABLE as AUDIT_TABLE
from governance.context import QueryContext, TableRead, TimeTravel
from governance.query import CompiledQuery, compile_query

if TYPE_CHECKING:
    from catalog.txn import Transaction
    from lake.lake import Lake


@dataclass(frozen=True)
class Explain:
    """The SQL that runs for a user's query, and what it reads."""

    sql: str
    reads: tuple[TableRead, ...]

    def __str__(self) -> str:
        lines = [self.sql, ""]
        for r in self.reads:
            # File counts under a row filter would tell how hidden rows are spread: left out.
            files = "" if r.row_filtered else f": {r.files_scanned}/{r.files_total} files"
            lines.append(f"-- {r.table.full_name} v{r.version}{files}")
            lines += [f"--   rule {rule}" for rule in r.rules]
        return "\n".join(lines)

    @property
    def rules(self) -> list[str]:
        """Every policy rule that applied, as 'file:line kind ...'."""
        return [rule for r in self.reads for rule in r.rules]


def _context(lk: Lake, user: str, tx: Transaction | None) -> QueryContext:
    if not user or not isinstance(user, str):
        raise InvalidArgument("queries run for a user: pass user=")
    cat = lk.catalog
    pinned: dict[int, tuple[int, bool]] = {}

    def pin(infos: list[TableInfo]) -> dict[int, tuple[int, bool]]:
        if tx is not None:
            for info in infos:
                pinned[info.id] = tx.read_version(info)
            return pinned
        governed = [i.id for i in infos if i.table_type == "GOVERNED"]
        pointers = cat.store.pointers(governed) if governed else {}
        for info in infos:
            v = pointers[info.id] if info.id in pointers else cat.current_version(info)
            pinned[info.id] = (v, False)
        return pinned

    def snapshot(info: TableInfo, travel: TimeTravel | None) -> Snapshot:
        if travel is not None:
            v = cat.version_as_of(info, version=travel.version, timestamp=travel.timestamp)
            return cat.snapshot(info, v)
        v, tentative = pinned[info.id]
        return cat.snapshot(info, v, tentative=tentative)

    def lookup(db: str, name: str) -> TableInfo:
        return cat.table(f"{db}.{name}")

    def lookup_visible(db: str, name: str) -> TableInfo:
        # Missing and not-describable tables fail alike, so existence never leaks.
        hidden = TableNotAccessible(f"table {db}.{name} does not exist or you may not use it")
        try:
            info = lookup(db, name)
        except TableNotFound:
            raise hidden from None
        if not lk.policy.may_describe(user, info):
            raise hidden
        return info

    return QueryContext(
        user=user,
        lookup=lookup_visible if lk.policy.engine else lookup,
        snapshot=snapshot,
        pin=pin,
        access=lk.access,
        describe=lambda view: lk.policy.information_schema(user, view),
        cache_key="" if tx is not None else (lk.policy.version or "open"),
    )


def compile_for(lk: Lake, query: str, user: str, tx: Transaction | None = None) -> CompiledQuery:
    """Compile a user's query to the governed DuckDB SQL."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgument("query must be a non-empty SQL string")
    return compile_query(query, _context(lk, user, tx))


def run_sql(lk: Lake, query: str, user: str, tx: Transaction | None = None) -> pa.Table:
    """Run a read-only query as `user` and return the result; audited, allowed or not."""
    try:
        compiled = compile_for(lk, query, user, tx)
        if any(r.table.full_name == AUDIT_TABLE for r in compiled.reads) and lk.audit.flush():
            compiled = compile_for(lk, query, user, tx)  # include what was just flushed
        lk.engine.allow(r.table.location for r in compiled.reads)
        result = lk.engine.run(compiled.sql)
    except LakeError as e:
        decision = "denied" if isinstance(e, AccessDenied) else "error"
        lk.audit.record(
            user if isinstance(user, str) else "",
            "sql",
            str(query)[:10000],
            decision,
            reason=str(e),
        )
        raise
    lk.audit.record(
        user,
        "sql",
        query[:10000],
        "allowed",
        tables=[(r.table.full_name, r.version) for r in compiled.reads],
        rules=[rule for r in compiled.reads for rule in r.rules],
        rows=result.num_rows,
    )
    return result


def explain(lk: Lake, query: str, user: str) -> Explain:
    """What `run_sql` would run for `user`, and the policy rules that shaped it."""
    compiled = compile_for(lk, query, user)
    return Explain(compiled.sql, compiled.reads)
