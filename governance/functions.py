"""Which DuckDB functions a Lakeward query may call: an allowlist, deny by default.

The allowlist starts from a frozen snapshot of DuckDB's own catalog of built-in scalar, aggregate,
window and (scalar) macro functions, `governance/_duckdb_catalog.py`, and removes every function
that reveals engine state or the host environment, touches files, has side effects or runs SQL
given as text. The snapshot is frozen on purpose: a DuckDB upgrade must not silently allow the
functions it adds. Regenerate it after upgrading and review the diff:

    python -m governance.functions

Table functions are never called as scalars; in FROM only `unnest`, `range` and
`generate_series` are allowed (see `FROM_TABLE_FUNCTIONS`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from governance import _duckdb_catalog as snapshot

# Reasons complete the sentence "function f() is not allowed: it ...".
ENGINE_STATE = "reveals engine or session state"
ENVIRONMENT = "reveals the host environment"
FILES = "reads files or external data"
SIDE_EFFECTS = "changes engine state or has side effects"
SQL_AS_TEXT = "runs or inspects SQL given as text"
ENGINE_CATALOG = "reads the engine's own catalog, not Lakeward's"
INTERNAL = "is engine-internal"
COLLATION = "is collation plumbing (use the COLLATE clause instead)"
TABLE_FUNCTION = "is a table function"

_DENIED: dict[str, str] = {
    # Engine and session state: settings, names, ids, version, variables.
    "current_setting": ENGINE_STATE,
    "getvariable": ENGINE_STATE,
    "version": ENGINE_STATE,
    "user": ENGINE_STATE,
    "session_user": ENGINE_STATE,
    "in_search_path": ENGINE_STATE,
    "txid_current": ENGINE_STATE,
    "get_block_size": ENGINE_STATE,
    "which_secret": ENGINE_STATE,
    "parse_duckdb_log_message": ENGINE_STATE,
    # stats() exposes storage statistics (e.g. min/max of a whole column), past any row filter.
    "stats": ENGINE_STATE,
    "vector_type": INTERNAL,
    # index_key() reads the index of any named table, bypassing name resolution.
    "index_key": ENGINE_CATALOG,
    # Sequences, the random seed, logging, sleeping (a cheap denial of service), checkpoints.
    "nextval": SIDE_EFFECTS,
    "currval": SIDE_EFFECTS,
    "setval": SIDE_EFFECTS,
    "setseed": SIDE_EFFECTS,
    "write_log": SIDE_EFFECTS,
    "sleep_ms": SIDE_EFFECTS,
    "pg_sleep": SIDE_EFFECTS,
    "checkpoint": SIDE_EFFECTS,
    "force_checkpoint": SIDE_EFFECTS,
    # SQL inside a string is a way around this validator.
    "query": SQL_AS_TEXT,
    "query_table": SQL_AS_TEXT,
    "json_serialize_sql": SQL_AS_TEXT,
    "json_deserialize_sql": SQL_AS_TEXT,
    "json_serialize_plan": SQL_AS_TEXT,
    "json_execute_serialized_sql": SQL_AS_TEXT,
    # getenv exists only in the CLI; the path helpers follow the host's conventions ('system'
    # separator) and Lakeward users have no files to name.
    "getenv": ENVIRONMENT,
    "path_join": ENVIRONMENT,
    "parse_path": ENVIRONMENT,
    "parse_dirname": ENVIRONMENT,
    "parse_dirpath": ENVIRONMENT,
    "parse_filename": ENVIRONMENT,
    "glob": FILES,
}

# Families, including functions of extensions that are not in the snapshot (iceberg_scan, ...), so
# that a refusal names the right reason and a regenerated snapshot cannot let one through.
_DENIED_PREFIXES: tuple[tuple[str, str], ...] = (
    ("__", INTERNAL),
    ("current_", ENGINE_STATE),
    ("duckdb_", ENGINE_CATALOG),
    ("pragma_", ENGINE_CATALOG),
    ("pg_", ENGINE_CATALOG),
    ("has_", ENGINE_CATALOG),
    ("inet_", ENVIRONMENT),
    ("read_", FILES),
    ("parquet_", FILES),
    ("sniff_", FILES),
    ("iceberg_", FILES),
    ("delta_", FILES),
    ("postgres_", FILES),
    ("mysql_", FILES),
    ("sqlite_", FILES),
    ("enable_", SIDE_EFFECTS),
    ("disable_", SIDE_EFFECTS),
    ("icu_", COLLATION),
    ("collate_", COLLATION),
)
_DENIED_SUFFIXES: tuple[tuple[str, str], ...] = (("_scan", FILES), ("_attach", SIDE_EFFECTS))
_PREFIXES = tuple(p for p, _ in _DENIED_PREFIXES)
_SUFFIXES = tuple(s for s, _ in _DENIED_SUFFIXES)

# The clock is not engine state; these are exempt from the "current_" family.
_PREFIX_EXEMPT = frozenset({"current_date", "current_localtime", "current_localtimestamp"})

# Keywords DuckDB parses like function calls but does not list in duckdb_functions().
SYNTAX_FUNCTIONS = frozenset(
    {
        "cast",
        "try_cast",
        "extract",
        "exists",
        "coalesce",
        "ifnull",
        "columns",
        "unpack",
        "try",
        "grouping",
        "grouping_id",
        "unnest",
    }
)

# The only table functions allowed, and only in FROM / JOIN / LATERAL.
FROM_TABLE_FUNCTIONS = frozenset({"unnest", "range", "generate_series"})

_CALLABLE_KINDS = frozenset({"scalar", "aggregate", "window", "macro"})


def refusal_reason(name: str) -> str | None:
    """Why calling function `name` (lower-case) is refused, or None if nothing is known against it.

    None does not mean allowed: a name absent from the snapshot is simply unknown.
    """
    if name in _DENIED:
        return _DENIED[name]
    in_family = name.startswith(_PREFIXES) or name.endswith(_SUFFIXES)
    if in_family and name not in _PREFIX_EXEMPT:
        for prefix, reason in _DENIED_PREFIXES:
            if name.startswith(prefix):
                return reason
        for suffix, reason in _DENIED_SUFFIXES:
            if name.endswith(suffix):
                return reason
    if name in snapshot.PG_CATALOG_FUNCTIONS:
        return ENGINE_CATALOG
    kinds = snapshot.FUNCTIONS.get(name)
    if kinds is not None and not _CALLABLE_KINDS.intersection(kinds):
        return TABLE_FUNCTION
    return None


def _build_allowlist() -> frozenset[str]:
    callable_names = (
        name for name, kinds in snapshot.FUNCTIONS.items() if _CALLABLE_KINDS.intersection(kinds)
    )
    return frozenset(n for n in callable_names if refusal_reason(n) is None) | SYNTAX_FUNCTIONS


ALLOWED_FUNCTIONS: frozenset[str] = _build_allowlist()


def is_allowed(name: str) -> bool:
    """True if a query may call the function `name` (case-insensitive) outside FROM."""
    return name.lower() in ALLOWED_FUNCTIONS


# --- regenerating the snapshot (dev time only) -------------------------------------------------

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def _tuple_source(items: set[str]) -> str:
    quoted = [json.dumps(i) for i in sorted(items)]
    return f"({quoted[0]},)" if len(quoted) == 1 else f"({', '.join(quoted)})"


def render_snapshot() -> str:
    """Source of `_duckdb_catalog.py`, read from a private in-memory DuckDB with no extensions."""
    import duckdb  # only needed at dev time

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
        "Regenerate with `python -m governance.functions`, then review the diff.",
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
    """Rewrite `_duckdb_catalog.py` from the installed DuckDB (dev time)."""
    target = Path(__file__).with_name("_duckdb_catalog.py")
    tmp = target.with_suffix(".tmp")
    tmp.write_text(render_snapshot())
    tmp.replace(target)
    print(f"wrote {target}; review the diff before committing")


if __name__ == "__main__":
    main()
