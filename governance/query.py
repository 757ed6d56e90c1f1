"""The rewrite pipeline: parse and validate, then each pass in order, then emit (sqlglot-optimizer
style)."""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache
from sqlglot import exp

from catalog.errors import LakeError
from catalog.store import TableInfo
from governance.context import QueryContext, TableRead, TimeTravel
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

Ref = tuple[str, str, TimeTravel | None]  # a catalog table reference: database, table, travel


@dataclass(frozen=True)
class _Checked:
    tree: exp.Expression  # shared: copied before any pass changes it
    # The catalog table references in tree order, or None when resolving the text raises (the
    # pipeline then raises it in its usual order) or it reads information_schema (never cached).
    refs: tuple[Ref, ...] | None


def _references(tree: exp.Expression) -> tuple[Ref, ...] | None:
    """The catalog tables a validated tree names: resolve, with a lookup that only records."""
    ctx = QueryContext(
        user="",
        lookup=lambda db, name: (db, name),  # type: ignore[arg-type, return-value]
        snapshot=lambda info, travel: None,  # type: ignore[arg-type, return-value]
    )
    try:
        resolved = resolve(tree.copy(), ctx)
    except LakeError:
        return None
    refs = []
    for node in resolved.find_all(exp.Table):
        if META_INFO in node.meta:
            return None
        if META_TABLE in node.meta:
            db, name = node.meta[META_TABLE]
            refs.append((db, name, node.meta.get(META_TRAVEL)))
    return tuple(refs)


@functools.lru_cache(maxsize=1024)
def _checked(sql: str) -> _Checked:
    # Parsing and validating depend on the text alone; dashboards repeat their queries, so the
    # validated tree is kept (errors are not cached, they are raised afresh). Result columns are
    # named here, from the text alone, before any pass rewrites it.
    tree = name_columns(validate(parse_query(rewrite_statement(sql))))
    return _Checked(tree, _references(tree))


def checked_query(sql: str) -> exp.Expression:
    """The parsed, validated tree of `sql`: a private copy the later passes may change."""
    return _checked(sql).tree.copy()


@dataclass(frozen=True)
class CompiledQuery:
    sql: str
    reads: tuple[TableRead, ...]


_compiled: LRUCache = LRUCache(2048)
_compiled_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every compiled query (and validated text)."""
    with _compiled_lock:
        _compiled.clear()
    _checked.cache_clear()


def _memo_lookup(ctx: QueryContext) -> QueryContext:
    """ctx whose lookups ask once per table however often the query names it (and several
    tables in one go when ctx can)."""
    seen: dict[tuple[str, str], TableInfo] = {}

    def lookup(db: str, name: str) -> TableInfo:
        key = (db, name)
        if key not in seen:
            seen[key] = ctx.lookup(db, name)
        return seen[key]

    def lookup_all(keys: list[tuple[str, str]]) -> list[TableInfo]:
        wanted = [k for k in dict.fromkeys(keys) if k not in seen]
        if wanted and ctx.lookup_all is not None:
            seen.update(zip(wanted, ctx.lookup_all(wanted), strict=True))
        return [lookup(*k) for k in keys]

    return dataclasses.replace(ctx, lookup=lookup, lookup_all=lookup_all)


def _cache_key(sql: str, refs: tuple[Ref, ...], ctx: QueryContext) -> tuple | None:
    """What a compiled query depends on: the text, the user, the policy and each table version.
    Looks the tables up and pins their versions (kept in ctx for the passes)."""
    assert ctx.lookup_all is not None  # set by _memo_lookup
    infos = ctx.lookup_all([(db, name) for db, name, _ in refs])
    ctx.pinned = ctx.pin(list({i.id: i for i in infos}.values()))
    if any(t for _, t in ctx.pinned.values()):
        return None
    parts = tuple(
        (
            info.id,
            info.location,
            # created_at tells apart a table dropped and re-created with the same id and place.
            info.created_at,
            ctx.pinned[info.id][0],
            repr(travel),
        )
        for info, (_, _, travel) in zip(infos, refs, strict=True)
    )
    return (sql, ctx.user, ctx.cache_key, parts)


def compile_query(sql: str, ctx: QueryContext, passes: list[Pass] | None = None) -> CompiledQuery:
    """Turn user SQL into the DuckDB SQL that runs, with what it reads.

    The result is cached by (text, user, policy version, table versions): everything it depends
    on, so a hit is exactly what a fresh compile would give. A hit costs the table lookups and
    one pin of their versions: the tree is neither copied nor resolved again.
    """
    if not isinstance(sql, str):
        parse_query(sql)  # raises the error for a query that is not text
    checked = _checked(sql)
    ctx = _memo_lookup(ctx)
    chain = passes or PASSES
    key = None
    if chain is PASSES and ctx.cache_key and checked.refs is not None:
        key = _cache_key(sql, checked.refs, ctx)
        if key is not None:
            with _compiled_lock:
                hit = _compiled.get(key)
            if hit is not None:
                return hit
    expression = checked.tree.copy()
    for p in chain:
        expression = p(expression, ctx)
    compiled = CompiledQuery(emit(expression), tuple(ctx.reads))
    if key is not None:
        with _compiled_lock:
            _compiled[key] = compiled
    return compiled
