"""The rewrite pipeline: parse, then each pass in order, then emit (sqlglot-optimizer style)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from governance.context import QueryContext, TableRead
from governance.passes.parse import parse_query
from governance.passes.resolve import resolve
from governance.passes.scan import emit, scan
from governance.passes.validate import validate

Pass = Callable[[exp.Expression, QueryContext], exp.Expression]

PASSES: list[Pass] = [
    lambda e, ctx: validate(e),
    resolve,
    scan,
]


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    reads: tuple[TableRead, ...]


def compile_query(sql: str, ctx: QueryContext, passes: list[Pass] | None = None) -> CompiledQuery:
    """Turn user SQL into the DuckDB SQL that runs, with what it reads."""
    expression = parse_query(sql)
    for p in passes or PASSES:
        expression = p(expression, ctx)
    return CompiledQuery(emit(expression), tuple(ctx.reads))
