"""Resolve every table reference to a catalog table or a CTE; refuse anything else.

Catalog tables are always written `database.table`; an unqualified name can only be a CTE in an
enclosing WITH, so a CTE never shadows a catalog table and a catalog table never hides behind a
CTE name. The resolved `TableInfo` and any time travel are stored in the node's `meta`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlglot import exp

from catalog.errors import SQLError, TableNotFound
from governance.context import QueryContext, TimeTravel
from governance.passes.metadata import META_INFO, is_information_schema

META_TABLE = "lake_table"
META_TRAVEL = "lake_time_travel"


def _cte_names_in_scope(node: exp.Expression) -> set[str]:
    names: set[str] = set()
    inside: exp.CTE | None = None  # the CTE whose body we are walking up out of
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.CTE):
            inside = parent
        with_ = parent.args.get("with_") or parent.args.get("with")
        if isinstance(with_, exp.With):
            for cte in with_.expressions:
                # A non-recursive CTE does not see itself; recursive ones do.
                if cte is inside and not with_.args.get("recursive"):
                    continue
                names.add(cte.alias_or_name.lower())
        parent = parent.parent
    return names


def _time_travel(node: exp.Table) -> TimeTravel | None:
    version = node.args.get("version")
    if version is None:
        return None
    kind = str(version.this).upper()
    value = version.expression
    if isinstance(value, exp.Cast):
        value = value.this
    if not isinstance(value, exp.Literal):
        raise SQLError(f"{kind} AS OF needs a constant")
    if kind == "VERSION":
        if value.is_string or not value.this.isdigit():
            raise SQLError("VERSION AS OF needs a non-negative integer")
        return TimeTravel(version=int(value.this))
    if kind == "TIMESTAMP":
        try:
            ts = datetime.fromisoformat(value.this)
        except ValueError:
            raise SQLError(f"TIMESTAMP AS OF needs an ISO timestamp, got {value.this!r}") from None
        return TimeTravel(timestamp=ts if ts.tzinfo else ts.replace(tzinfo=UTC))
    raise SQLError(f"unsupported time travel {kind} AS OF")


def resolve(expression: exp.Expression, ctx: QueryContext) -> exp.Expression:
    """Annotate each catalog table reference with its TableInfo; TableNotFound for unknown names."""
    for node in list(expression.find_all(exp.Table)):
        if not isinstance(node.this, exp.Identifier):
            continue  # table functions are the validator's business
        name = node.name.lower()
        if node.args.get("catalog"):
            raise TableNotFound(
                f"table {node.sql(dialect='duckdb')} not found; name tables as database.table"
            )
        if not node.args.get("db"):
            if name in _cte_names_in_scope(node):
                if node.args.get("version") is not None:
                    raise SQLError("time travel applies to catalog tables, not to CTEs")
                continue
            raise TableNotFound(f"table {node.name!r} not found; name tables as database.table")
        if is_information_schema(node):
            if node.args.get("version") is not None:
                raise SQLError("time travel applies to catalog tables, not to information_schema")
            node.meta[META_INFO] = name
            continue
        info = ctx.lookup(node.db.lower(), name)
        node.meta[META_TABLE] = info
        node.meta[META_TRAVEL] = _time_travel(node)
    return expression
