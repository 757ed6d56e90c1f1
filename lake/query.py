"""`lk.sql` and `lk.explain`: compile with the governance passes, run on the locked engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from catalog.errors import InvalidArgument
from catalog.snapshot import Snapshot
from catalog.store import TableInfo
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
            lines.append(
                f"-- {r.table.full_name} v{r.version}: {r.files_scanned}/{r.files_total} files"
                + (f"; rules: {', '.join(r.rules)}" if r.rules else "")
            )
        return "\n".join(lines)


def _context(lk: Lake, user: str, tx: Transaction | None) -> QueryContext:
    if not user or not isinstance(user, str):
        raise InvalidArgument("queries run for a user: pass user=")
    cat = lk.catalog
    pinned: dict[int, tuple[int, bool]] = {}

    def pin(infos: list[TableInfo]) -> None:
        if tx is not None:
            for info in infos:
                pinned[info.id] = tx.read_version(info)
            return
        governed = [i.id for i in infos if i.table_type == "GOVERNED"]
        pointers = cat.store.pointers(governed) if governed else {}
        for info in infos:
            v = pointers[info.id] if info.id in pointers else cat.current_version(info)
            pinned[info.id] = (v, False)

    def snapshot(info: TableInfo, travel: TimeTravel | None) -> Snapshot:
        if travel is not None:
            v = cat.version_as_of(info, version=travel.version, timestamp=travel.timestamp)
            return cat.snapshot(info, v)
        v, tentative = pinned[info.id]
        return cat.snapshot(info, v, tentative=tentative)

    def lookup(db: str, name: str) -> TableInfo:
        return cat.table(f"{db}.{name}")

    return QueryContext(user=user, lookup=lookup, snapshot=snapshot, pin=pin, access=lk.access)


def compile_for(lk: Lake, query: str, user: str, tx: Transaction | None = None) -> CompiledQuery:
    """Compile a user's query to the governed DuckDB SQL."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgument("query must be a non-empty SQL string")
    return compile_query(query, _context(lk, user, tx))


def run_sql(lk: Lake, query: str, user: str, tx: Transaction | None = None) -> pa.Table:
    """Run a read-only query as `user` and return the result."""
    compiled = compile_for(lk, query, user, tx)
    lk.engine.allow(r.table.location for r in compiled.reads)
    return lk.engine.run(compiled.sql)


def explain(lk: Lake, query: str, user: str) -> Explain:
    """What `run_sql` would run, without running it."""
    compiled = compile_for(lk, query, user)
    return Explain(compiled.sql, compiled.reads)
