"""The rewrite pipeline: parse and validate, then each pass in order, then emit (sqlglot-optimizer
style)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from governance.context import QueryContext, TableRead
from governance.passes.metadata import rewrite_statement
from governance.passes.parse import parse_query
from governance.passes.resolve import resolve
from governance.passes.scan import emit, scan
from governance.passes.validate import validate

Pass = Callable[[exp.Expression, QueryContext], exp.Expression]

PASSES: list[Pass] = [
    resolve,
    scan,
]


@functools.lru_cache(maxsize=1024)
def _checked(sql: str) -> exp.Expression:
    # Parsing and validating depend on the text alone; dashboards repeat their queries, so the
    # validated tree is kept (errors are not cached, they are raised afresh).
    return validate(parse_query(sql))


def checked_query(sql: str) -> exp.Expression:
    """The parsed, validated tree of `sql`: a private copy the later passes may change."""
    return _checked(sql).copy()


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    reads: tuple[TableRead, ...]


def compile_query(sql: str, ctx: QueryContext, passes: list[Pass] | None = None) -> CompiledQuery:
    """Turn user SQL into the DuckDB SQL that runs, with what it reads."""
    expression = checked_query(rewrite_statement(sql) if isinstance(sql, str) else sql)
    for p in passes or PASSES:
        expression = p(expression, ctx)
    return CompiledQuery(emit(expression), tuple(ctx.reads))
