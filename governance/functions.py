"""Which DuckDB functions a Lakeward query may call: an allowlist, deny by default.

The allowlist starts from a frozen snapshot of DuckDB's own catalog of built-in scalar, aggregate,
window and (scalar) macro functions, `governance/duckdb_builtins_generated.py`, and removes every function
that reveals engine state or the host environment, touches files, has side effects or runs SQL
given as text. The snapshot is frozen on purpose: a DuckDB upgrade must not silently allow the
functions it adds. Regenerate it after upgrading and review the diff:

    python -m governance.functions

Table functions are never called as scalars; in FROM only `unnest`, `range` and
`generate_series` are allowed (see `FROM_TABLE_FUNCTIONS`).
"""

from __future__ import annotations

from governance import duckdb_builtins_generated as snapshot

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
