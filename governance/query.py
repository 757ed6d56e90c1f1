"""The rewrite pipeline: parse and validate, then each pass in order, then emit (sqlglot-optimizer
style)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from governance.context import QueryContext, TableRead
from governance.passes.bind import bind
from governance.passes.guard import guard
from governance.passes.metadata import META_INFO, rewrite_statement
from governance.passes.names import name_columns
from governance.passes.parse import parse_query
from governance.passes.resolve import META_TABLE, META_TRAVEL, resolve
from governance.passes.scan import emit, scan
from governance.passes.validate import validate

Pass = Callable[[exp.Expression, QueryContext], exp.Expression]

PASSES: list[Pass] = [
    resolve,
    bind,
    guard,
    scan,
]


@functools.lru_cache(maxsize=1024)
def _checked(sql: str) -> exp.Expression:
    # Parsing and validating depend on the text alone; dashboards repeat their queries, so the
    # validated tree is kept (errors are not cached, they are raised afresh). Result columns are
    # named here, from the text alone, before any pass rewrites it.
    return name_columns(validate(parse_query(sql)))


def checked_query(sql: str) -> exp.Expression:
    """The parsed, validated tree of `sql`: a private copy the later passes may change."""
    return _checked(sql).copy()


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    reads: tuple[TableRead, ...]


_compiled: dict[tuple, CompiledQuery] = {}


def _cache_key(sql: str, expression: exp.Expression, ctx: QueryContext) -> tuple | None:
    """What a compiled query depends on: the text, the user, the policy and each table version."""
    if not ctx.cache_key:
        return None
    nodes = list(expression.find_all(exp.Table))
    if any(META_INFO in n.meta for n in nodes):
        return None  # information_schema reflects the live catalog
    tables = [n for n in nodes if META_TABLE in n.meta]
    ctx.pinned = ctx.pin([n.meta[META_TABLE] for n in tables])
    if any(t for _, t in ctx.pinned.values()):
        return None
    parts = tuple(
        (
            n.meta[META_TABLE].id,
            n.meta[META_TABLE].location,
            # created_at tells apart a table dropped and re-created with the same id and place.
            n.meta[META_TABLE].created_at,
            ctx.pinned[n.meta[META_TABLE].id][0],
            repr(n.meta.get(META_TRAVEL)),
        )
        for n in tables
    )
    return (sql, ctx.user, ctx.cache_key, parts)


def compile_query(sql: str, ctx: QueryContext, passes: list[Pass] | None = None) -> CompiledQuery:
    """Turn user SQL into the DuckDB SQL that runs, with what it reads.

    The result is cached by (text, user, policy version, table versions): everything it depends
    on, so a hit is exactly what a fresh compile would give.
    """
    expression = checked_query(rewrite_statement(sql) if isinstance(sql, str) else sql)
    chain = passes or PASSES
    key = None
    if chain is PASSES:
        expression = resolve(expression, ctx)
        chain = PASSES[1:]
        key = _cache_key(sql, expression, ctx)
        if key is not None and key in _compiled:
            return _compiled[key]
    for p in chain:
        expression = p(expression, ctx)
    compiled = CompiledQuery(emit(expression), tuple(ctx.reads))
    if key is not None:
        if len(_compiled) > 2048:
            _compiled.clear()
        _compiled[key] = compiled
    return compiled
