"""Regenerate governance/duckdb_builtins_generated.py from the installed DuckDB.

The validator's function allowlist is checked against this snapshot of DuckDB's built-in
functions and system views; pyproject pins the DuckDB it was generated from. After upgrading
DuckDB, run this, review the diff (new functions must be classified in governance/functions.py)
and commit both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb

TARGET = Path(__file__).resolve().parents[1] / "governance" / "duckdb_builtins_generated.py"

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def _tuple_source(items: set[str]) -> str:
    quoted = [json.dumps(i) for i in sorted(items)]
    return f"({quoted[0]},)" if len(quoted) == 1 else f"({', '.join(quoted)})"


def render_snapshot() -> str:
    """Source of the generated module, read from a private in-memory DuckDB with no extensions."""

    con = duckdb.connect(":memory:", config={"autoload_known_extensions": False})
    try:
        functions = con.execute(
            "SELECT DISTINCT lower(function_name), function_type, schema_name "
            "FROM duckdb_functions() WHERE internal"
        ).fetchall()
        views = con.execute(
            "SELECT DISTINCT schema_name, lower(view_name) FROM duckdb_views() WHERE internal"
        ).fetchall()
        version = con.execute("SELECT library_version FROM pragma_version()").fetchone()[0]
    finally:
        con.close()

    kinds: dict[str, set[str]] = {}
    pg_catalog: set[str] = set()
    for name, kind, schema in functions:
        if not _IDENTIFIER.match(name):
            continue  # operators such as '+' or '~~' are never called by name
        kinds.setdefault(name, set()).add(kind)
        if schema == "pg_catalog":
            pg_catalog.add(name)
    views_by_schema: dict[str, set[str]] = {}
    for schema, name in views:
        views_by_schema.setdefault(schema, set()).add(name)

    q = json.dumps
    out = [
        f'"""DuckDB {version} built-in functions and system views: GENERATED, do not edit.',
        "",
        "Regenerate with `python scripts/generate_duckdb_builtins.py`, then review the diff.",
        '"""',
        "",
        f"DUCKDB_VERSION = {q(version)}",
        "",
        "# name -> kinds (scalar, aggregate, window, macro, table, table_macro, pragma)",
        "FUNCTIONS: dict[str, tuple[str, ...]] = {",
        *(f"    {q(n)}: {_tuple_source(ks)}," for n, ks in sorted(kinds.items())),
        "}",
        "",
        "# Postgres-compatibility macros in the pg_catalog schema",
        "PG_CATALOG_FUNCTIONS = frozenset(",
        "    {",
        *(f"        {q(n)}," for n in sorted(pg_catalog)),
        "    }",
        ")",
        "",
        "# schema -> internal views; those of main and pg_catalog are reachable unqualified",
        "SYSTEM_VIEWS: dict[str, frozenset[str]] = {",
    ]
    for schema, names in sorted(views_by_schema.items()):
        out += [f"    {q(schema)}: frozenset(", "        {"]
        out += [f"            {q(n)}," for n in sorted(names)]
        out += ["        }", "    ),"]
    out += ["}", ""]
    return "\n".join(out)


def main() -> None:
    """Rewrite the generated module from the installed DuckDB."""
    target = TARGET
    tmp = target.with_suffix(".tmp")
    tmp.write_text(render_snapshot())
    tmp.replace(target)
    print(f"wrote {target}; review the diff before committing")


if __name__ == "__main__":
    main()
