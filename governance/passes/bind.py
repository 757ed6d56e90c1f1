"""Bind each catalog table reference to the snapshot it reads and the user's view of it.

The versions of all tables are pinned at once, then each resolved reference gets its snapshot
(`META_SNAPSHOT`) and the view its user may read (`META_VIEW`, AccessDenied without a grant), so
the guard pass can reason about every table of the query before the scan pass emits them.
"""

from __future__ import annotations

from sqlglot import exp

from catalog.snapshot import Snapshot
from governance.access import View
from governance.context import QueryContext
from governance.passes.resolve import META_TABLE, META_TRAVEL

META_SNAPSHOT = "lake_snapshot"
META_VIEW = "lake_view"


def bind(expression: exp.Expression, ctx: QueryContext) -> exp.Expression:
    """Attach snapshot and view to every resolved catalog table (in tree order)."""
    tables = [t for t in expression.find_all(exp.Table) if META_TABLE in t.meta]
    if ctx.pinned is None:
        ctx.pinned = ctx.pin([t.meta[META_TABLE] for t in tables])
    for node in tables:
        bound(node, ctx)
    return expression


def bound(node: exp.Table, ctx: QueryContext) -> tuple[Snapshot, View]:
    """The snapshot and view of one resolved reference (computed once, kept in its meta)."""
    if META_VIEW not in node.meta:
        info = node.meta[META_TABLE]
        snapshot = ctx.snapshot(info, node.meta.get(META_TRAVEL))
        node.meta[META_SNAPSHOT] = snapshot
        node.meta[META_VIEW] = ctx.access.view(ctx.user, info, snapshot)
    return node.meta[META_SNAPSHOT], node.meta[META_VIEW]
