"""Catalog metadata for SQL: information_schema views, SHOW and DESCRIBE, from the Lakeward
catalog and filtered to what the user may describe (never DuckDB's own catalog)."""

from __future__ import annotations

import re

from sqlglot import exp

from catalog.errors import TableNotFound
from governance.context import QueryContext

META_INFO = "lake_information_schema"

COLUMNS = {
    "schemata": ("catalog_name", "schema_name", "comment"),
    "tables": ("table_catalog", "table_schema", "table_name", "table_type", "comment"),
    "columns": (
        "table_catalog",
        "table_schema",
        "table_name",
        "column_name",
        "ordinal_position",
        "data_type",
        "is_nullable",
    ),
}

_SHOW_TABLES = re.compile(
    r"^\s*show\s+(?:all\s+)?tables(?:\s+(?:from|in)\s+([A-Za-z_]\w*))?\s*;?\s*$", re.I
)
_SHOW_DBS = re.compile(r"^\s*show\s+(?:databases|schemas)\s*;?\s*$", re.I)
_DESCRIBE = re.compile(
    r"^\s*(?:describe|desc)\s+(?:table\s+)?([A-Za-z_]\w*)\.([A-Za-z_]\w*)\s*;?\s*$", re.I
)


def rewrite_statement(sql: str) -> str:
    """SHOW TABLES / SHOW DATABASES / DESCRIBE db.t as queries over information_schema."""
    if m := _SHOW_TABLES.match(sql):
        where = f" WHERE table_schema = '{m.group(1).lower()}'" if m.group(1) else ""
        return (
            "SELECT table_schema AS database, table_name AS name, table_type, comment "
            f"FROM information_schema.tables{where} ORDER BY 1, 2"
        )
    if _SHOW_DBS.match(sql):
        return "SELECT schema_name AS database, comment FROM information_schema.schemata ORDER BY 1"
    if m := _DESCRIBE.match(sql):
        db, table = m.group(1).lower(), m.group(2).lower()
        return (
            "SELECT column_name, data_type AS column_type, is_nullable AS null "
            "FROM information_schema.columns "
            f"WHERE table_schema = '{db}' AND table_name = '{table}' ORDER BY ordinal_position"
        )
    return sql


def is_information_schema(node: exp.Table) -> bool:
    return (node.db or "").lower() == "information_schema" and not node.args.get("catalog")


def relation_sql(name: str, ctx: QueryContext) -> str:
    """A VALUES relation for one information_schema view, as the user may see it."""
    view = name.lower()
    if view not in COLUMNS:
        raise TableNotFound(
            f"table information_schema.{name} not found; there are schemata, tables and columns"
        )
    rows = ctx.describe(view)
    cols = COLUMNS[view]
    names = ", ".join(f'"{c}"' for c in cols)
    if not rows:
        nulls = ", ".join(
            f'CAST(NULL AS {"BIGINT" if c == "ordinal_position" else "VARCHAR"}) AS "{c}"'
            for c in cols
        )
        return f"SELECT {nulls} WHERE false"
    values = ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows)
    return f"SELECT * FROM (VALUES {values}) AS v({names})"


def _literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"
