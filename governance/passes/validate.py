"""Pass 1: let through read-only queries only; refuse everything else before anything runs.

Deny by default, at every level:

* the root must be a query (SELECT, set operation, VALUES, parenthesised query, PIVOT);
* every node of the tree must be of an allowed kind (`_ALLOWED_NODES`) or be a function call;
* every function call must be on the allowlist of `governance.functions`. For sqlglot's typed
  function classes the name checked is the one DuckDB will see: the class's DuckDB rendering;
* tables are names (resolved against the catalog by a later pass), never files, URLs or DuckDB's
  own catalog; the only table functions are `unnest`, `range` and `generate_series`;
* the SQL that will run is regenerated from the tree, so text that sqlglot renders verbatim
  (type names, collations, some keywords) must be plain words, and the regenerated SQL must parse
  back to one statement that passes the same checks.

AccessDenied means a known-dangerous construct; SQLError means not a query, or unknown/unsupported.
Messages name the construct (keyword, function or table name) and never echo literal values.
"""

from __future__ import annotations

import functools
import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from catalog.errors import AccessDenied, LakeError, SQLError
from governance import duckdb_builtins_generated as duckdb_catalog
from governance import functions
from governance.passes.parse import DIALECT, NOT_YET_KEYWORDS, statement_refusal


def _classes(*names: str) -> frozenset[type]:
    # Tolerates sqlglot versions that lack a class: a missing class cannot appear in a tree.
    return frozenset(getattr(exp, n) for n in names if isinstance(getattr(exp, n, None), type))


_QUERY_ROOTS = _classes("Select", "Union", "Intersect", "Except", "Values", "Subquery", "Pivot")

# Everything a read-only DuckDB query is made of, besides function calls (exp.Func).
_ALLOWED_NODES = _classes(
    # query structure
    "Select", "Union", "Intersect", "Except", "Subquery", "With", "CTE", "From", "Join", "Where",
    "Group", "Having", "Qualify", "Order", "Ordered", "Limit", "Offset", "Fetch", "LimitOptions",
    "Distinct", "Values", "Tuple", "Lateral", "Table", "TableAlias", "TableSample", "Version",
    "Pivot", "PivotAlias", "PivotAny", "UnpivotColumns", "Window", "WindowSpec", "Cube", "Rollup",
    "GroupingSets", "Lambda", "Comprehension",
    # expressions
    "Star", "Column", "Identifier", "Alias", "Aliases", "Literal", "Null", "Boolean", "Var",
    "DataType", "DataTypeParam", "ColumnDef", "Interval", "IntervalSpan", "Paren", "Bracket",
    "Slice", "Dot", "PositionalColumn", "PropertyEQ", "Kwarg", "Filter", "IgnoreNulls",
    "RespectNulls", "WithinGroup", "In", "Between", "Is", "Any", "All", "AtTimeZone", "Not", "Neg",
    "BitwiseNot", "Escape",
    # operators
    "Add", "Sub", "Mul", "Div", "IntDiv", "Mod", "DPipe", "EQ", "NEQ", "GT", "GTE", "LT", "LTE",
    "NullSafeEQ", "NullSafeNEQ", "Like", "ILike", "Glob", "SimilarTo", "BitwiseAnd", "BitwiseOr",
    "BitwiseXor", "BitwiseLeftShift", "BitwiseRightShift", "Distance",
    # literals and JSON paths (rendered as quoted strings)
    "RawString", "ByteString", "HexString", "BitString", "National", "UnicodeString",
    "JSONPath", "JSONPathKey", "JSONPathRoot", "JSONPathSubscript", "JSONPathWildcard",
    "JSONPathSlice", "JSONPathSelector", "JSONPathUnion", "JSONPathRecursive", "JSONPathFilter",
    "JSONPathScript",
)  # fmt: skip

# Statements and clauses that write, administer or change the session, wherever they appear.
_STATEMENTS = _classes(
    "Alter", "AlterSession", "Analyze", "Attach", "Cache", "Comment", "Commit", "Copy", "Create",
    "Declare", "Delete", "Detach", "Drop", "Execute", "ExecuteSql", "Export", "Grant", "Insert",
    "Install", "Into", "Kill", "LoadData", "Merge", "Pragma", "Put", "Refresh", "Returning",
    "Revoke", "Rollback", "Set", "SetItem", "Transaction", "TruncateTable", "Uncache", "Undrop",
    "Update", "Use",
)  # fmt: skip
_STATEMENT_LABELS = {
    "Into": "SELECT ... INTO",
    "Returning": "RETURNING",
    "Transaction": "BEGIN TRANSACTION",
    "TruncateTable": "TRUNCATE",
    "LoadData": "LOAD DATA",
    "ExecuteSql": "EXECUTE",
    "AlterSession": "ALTER SESSION",
    "SetItem": "SET",
}
_NOT_YET = _classes("Describe", "Show", "Summarize")
_PARAMETERS = _classes("Placeholder", "Parameter", "SessionParameter")

# Function classes with a known-dangerous meaning; the rest are checked by rendered name, but
# some of these render without parentheses (CURRENT_CATALOG, SESSION_USER, NEXT VALUE FOR).
_DENIED_FUNCTIONS: dict[type, str] = {
    cls: reason
    for names, reason in (
        (("ReadCSV", "ReadParquet"), functions.FILES),
        (
            (
                "CurrentCatalog",
                "CurrentDatabase",
                "CurrentSchema",
                "CurrentSchemas",
                "CurrentUser",
                "CurrentRole",
                "CurrentVersion",
                "SessionUser",
            ),
            functions.ENGINE_STATE,
        ),
        (("NextValueFor",), functions.SIDE_EFFECTS),
    )
    for cls in _classes(*names)
}
_FROM_FUNCTION_CLASSES = _classes("Unnest", "GenerateSeries")

# Table names that are DuckDB's own catalog rather than Lakeward data.
# `system` is Lakeward's own database and information_schema is answered from the catalog
# (governance.passes.metadata); DuckDB's are never reached since every name is replaced.
_SYSTEM_SCHEMAS = frozenset({"pg_catalog", "temp"})
_SYSTEM_VIEWS = frozenset().union(
    *(
        views
        for schema, views in duckdb_catalog.SYSTEM_VIEWS.items()
        if schema != "information_schema"
    )
)
_SYSTEM_VIEW_PREFIXES = ("duckdb_", "sqlite_", "pragma_")
# Where those views resolve: unqualified, or in these schemas. `sales.duckdb_x` is a catalog name.
_VIEW_SCHEMAS = frozenset({"main", "pg_catalog"})

# A quoted table name with any of these is a file path, URL or glob to DuckDB's replacement scans.
_PATH_CHARACTERS = frozenset("/\\:.*?~[]{}")

# Text that sqlglot renders verbatim must be plain words.
_ASCII_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNQUOTED_NAME = re.compile(r"^[^\W\d]\w*$")
_DOTTED_NAME = re.compile(r"^[^\W\d]\w*(\.[^\W\d]\w*)*$")
_KEYWORDS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*( [A-Za-z_][A-Za-z0-9_]*)*$")
_CALL_HEAD = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*|"(?:[^"]|"")+")\s*\(')

_READ_ONLY = "only read-only queries can run"

_BARE_SESSION_FUNCTIONS = frozenset(
    {"current_catalog", "current_role", "current_schema", "current_user", "session_user", "user"}
)


def validate(expression: exp.Expression) -> exp.Expression:
    """Return `expression` itself if it is a read-only query Lakeward may run; raise otherwise.

    Raises AccessDenied for known-dangerous constructs (writes, DDL, session changes, file and
    catalog access, forbidden functions, parameters) and SQLError for anything that is not a
    query or is unknown or unsupported. Does not modify the tree.
    """
    _check_tree(expression)
    _check_round_trip(expression)
    return expression


def _check_tree(root: exp.Expression) -> None:
    if not isinstance(root, tuple(_QUERY_ROOTS)):
        raise _refusal_for_statement(root)
    for node in root.walk():
        _check_node(node)


def _check_round_trip(expression: exp.Expression) -> None:
    """The SQL that runs is regenerated from the tree; make sure it means what was checked."""
    try:
        # IGNORE: sqlglot flags some DuckDB-native functions (approx_top_k) as unsupported for
        # DuckDB although it renders them unchanged; fidelity is not what this check is about.
        sql = expression.sql(dialect=DIALECT, unsupported_level=ErrorLevel.IGNORE)
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except Exception:  # sqlglot cannot render or re-read its own output for this tree
        raise SQLError("the query uses a construct Lakeward cannot run on DuckDB") from None
    if len(statements) != 1:
        raise SQLError("the query does not survive being rewritten for DuckDB")
    _check_tree(statements[0])


# --- statements ----------------------------------------------------------------------------------


def _refusal_for_statement(node: exp.Expression) -> LakeError:
    """The error for a node that is not a query, whether at the root or nested."""
    if type(node) in _NOT_YET:
        return statement_refusal(type(node).__name__)  # type: ignore[return-value]
    if isinstance(node, exp.Command):
        return _refusal_for_command(node)
    name = type(node).__name__
    if type(node) in _STATEMENTS:
        label = _STATEMENT_LABELS.get(name, name.upper())
        kind = node.args.get("kind")
        if isinstance(node, exp.Create) and isinstance(kind, str) and _ASCII_NAME.match(kind):
            label = f"CREATE {kind.upper()}"
        return AccessDenied(f"{label} is not allowed: {_READ_ONLY}")
    # sqlglot reads unknown statements such as CHECKPOINT or ABORT as bare column names.
    first = next((n for n in node.walk(bfs=False) if isinstance(n, exp.Identifier)), None)
    refusal = statement_refusal(first.name) if first is not None else None
    return refusal or SQLError(
        "not a query: only SELECT, WITH ... SELECT, FROM ..., VALUES, set operations and PIVOT "
        "can run"
    )


def _refusal_for_command(node: exp.Command) -> LakeError:
    keyword = str(node.this or "").upper()
    refusal = statement_refusal(keyword)
    if refusal is not None:
        return refusal
    if _ASCII_NAME.match(keyword):
        return AccessDenied(f"{keyword} statements are not allowed: {_READ_ONLY}")
    return AccessDenied(f"this statement is not allowed: {_READ_ONLY}")


# --- nodes -----------------------------------------------------------------------------------------


def _check_node(node: exp.Expression) -> None:
    if isinstance(node, exp.Func):
        _check_function(node)
        return
    cls = type(node)
    if cls in _ALLOWED_NODES:
        check = _NODE_CHECKS.get(cls)
        if check is not None:
            check(node)
        return
    if cls in _PARAMETERS:
        raise AccessDenied(
            "query parameters ($1, ?, $name) are not allowed: write the values into the query"
        )
    if cls in _STATEMENTS or cls in _NOT_YET or isinstance(node, exp.Command):
        raise _refusal_for_statement(node)
    if cls.__name__ == "HistoricalData":
        raise SQLError(
            "AT (...) time travel is not supported: use VERSION AS OF or TIMESTAMP AS OF"
        )
    raise SQLError(f"unsupported SQL construct: {_words(cls.__name__)}")


def _words(camel: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", camel).lower()


def _check_table(table: exp.Table) -> None:
    this = table.this
    if isinstance(this, exp.Func):
        _check_from_function(this)
        if table.args.get("db") or table.args.get("catalog"):
            raise SQLError("qualified table functions are not supported: call them unqualified")
        return
    if isinstance(this, exp.Literal):
        raise _file_access()
    if not isinstance(this, exp.Identifier):
        raise SQLError(f"unsupported table reference: {_words(type(this).__name__)}")
    parts = [p.name for p in (table.args.get("catalog"), table.args.get("db"), this) if p]
    if any(_PATH_CHARACTERS.intersection(part) for part in parts):
        raise _file_access()
    qualifiers = [part.lower() for part in parts[:-1]]
    if len(qualifiers) > 1:
        # catalog.schema.table reaches DuckDB's own catalogs; Lakeward names are database.table.
        raise AccessDenied("three-part table names are not allowed; name tables as database.table")
    if any(q in _SYSTEM_SCHEMAS for q in qualifiers):
        raise AccessDenied(
            "DuckDB's own catalog (pg_catalog, temp) cannot be queried; "
            "metadata will come from the Lakeward catalog"
        )
    name = this.name.lower()
    # sqlglot reads `FROM (SHOW TABLES)` as a table named SHOW aliased TABLES.
    if not this.quoted and len(parts) == 1 and name.upper() in NOT_YET_KEYWORDS:
        raise statement_refusal(name)  # type: ignore[misc]
    in_duckdb_schema = not qualifiers or qualifiers[-1] in _VIEW_SCHEMAS
    if in_duckdb_schema and (name in _SYSTEM_VIEWS or name.startswith(_SYSTEM_VIEW_PREFIXES)):
        shown = f" {name}" if _ASCII_NAME.match(name) else ""
        raise AccessDenied(f"table{shown} is one of DuckDB's internal catalog views")


def _file_access() -> AccessDenied:
    # The path itself is not repeated: it may be a secret location or carry credentials.
    return AccessDenied(
        "reading files or URLs is not allowed: a quoted table name that looks like a path, URL or "
        "glob would make DuckDB read it; query catalog tables as database.table"
    )


def _check_version(version: exp.Version) -> None:
    kind = str(version.this or "").upper()
    if kind not in ("VERSION", "TIMESTAMP") or str(version.args.get("kind") or "") != "AS OF":
        raise SQLError("only VERSION AS OF n and TIMESTAMP AS OF '...' time travel is supported")
    value = version.expression
    if isinstance(value, exp.Cast):
        value = value.this
    if not isinstance(value, exp.Literal):
        raise SQLError(f"{kind} AS OF needs a constant")


def _check_dot(dot: exp.Dot) -> None:
    # `main.abs(x)` and `col.upper()` parse alike; a schema-qualified call could reach functions
    # outside the built-in catalog, so name-qualified calls are refused.
    if isinstance(dot.expression, exp.Func) and _is_name_chain(dot.this):
        raise SQLError(
            "qualified function names and name.method() calls are not supported: "
            "call the function directly, e.g. upper(x)"
        )


def _is_name_chain(node: exp.Expression) -> bool:
    if isinstance(node, exp.Dot):
        return _is_name_chain(node.this) and _is_name_chain(node.expression)
    return isinstance(node, (exp.Identifier, exp.Column, exp.Var))


def _check_column(column: exp.Column) -> None:
    # DuckDB binds an unqualified reference that matches no column to these session functions,
    # quoted or not: `SELECT "current_schema"` answers 'main'.
    name = column.name.lower()
    if not column.table and name in _BARE_SESSION_FUNCTIONS:
        raise AccessDenied(
            f"an unqualified {name} is DuckDB's {name} function, which reveals session state; "
            f"write table.{name} to mean a column"
        )


def _check_identifier(identifier: exp.Identifier) -> None:
    if not identifier.quoted and not _UNQUOTED_NAME.match(identifier.name):
        raise SQLError("an unquoted name contains characters that need quoting")


def _check_var(var: exp.Var) -> None:
    if not _KEYWORDS.match(var.name):
        raise SQLError("a keyword position holds text that is not a plain keyword")


def _check_data_type(data_type: exp.DataType) -> None:
    kind = str(data_type.args.get("kind") or "")
    if data_type.this == exp.DataType.Type.USERDEFINED and not _DOTTED_NAME.match(kind):
        raise SQLError("type names must be plain, unquoted names")


def _check_collate(collate: exp.Expression) -> None:
    collation = collate.args.get("expression")
    if isinstance(collation, exp.Literal) and not _ASCII_NAME.match(collation.name):
        raise SQLError("collation names must be plain names")


_NODE_CHECKS = {
    exp.Column: _check_column,
    exp.Table: _check_table,
    exp.Version: _check_version,
    exp.Dot: _check_dot,
    exp.Identifier: _check_identifier,
    exp.Var: _check_var,
    exp.DataType: _check_data_type,
}


# --- functions -------------------------------------------------------------------------------------


def _check_function(node: exp.Func) -> None:
    denied = _DENIED_FUNCTIONS.get(type(node))
    if denied is not None:
        name = _rendered_call(type(node))
        label = f"function {name.lower()}()" if name else type(node).sql_name()
        raise AccessDenied(f"{label} is not allowed: it {denied}")
    if isinstance(node, exp.Collate):
        _check_collate(node)
    if _in_from(node):
        _check_from_function(node)
        return
    name = _called_name(node)
    if name:
        _check_function_name(name)


def _in_from(node: exp.Expression) -> bool:
    return node.arg_key == "this" and isinstance(
        node.parent, (exp.Table, exp.From, exp.Join, exp.Lateral)
    )


def _called_name(node: exp.Func) -> str | None:
    """The function DuckDB is asked to call for this node; '' if it renders as plain syntax."""
    if isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc)):
        return node.name
    name = _rendered_call(type(node))
    if name is None:
        raise SQLError(f"unsupported function: {_words(type(node).__name__)}")
    return name


def _check_function_name(name: str) -> None:
    if not _ASCII_NAME.match(name):
        raise SQLError("unknown function: function names are plain ASCII names")
    lower = name.lower()
    if lower in functions.ALLOWED_FUNCTIONS:
        return
    reason = functions.refusal_reason(lower)
    if reason is not None:
        raise AccessDenied(f"function {lower}() is not allowed: it {reason}")
    raise SQLError(f"unknown function {lower}(): it is not a DuckDB built-in available in Lakeward")


def _check_from_function(node: exp.Func) -> None:
    if isinstance(node, tuple(_FROM_FUNCTION_CLASSES)):
        return
    name = node.name if isinstance(node, exp.Anonymous) else _rendered_call(type(node)) or ""
    lower = name.lower()
    if lower in functions.FROM_TABLE_FUNCTIONS and isinstance(node, exp.Anonymous):
        return
    shown = f" {lower}()" if _ASCII_NAME.match(name) else ""
    reason = functions.refusal_reason(lower) if shown else None
    why = f"; it {reason}" if reason and reason != functions.TABLE_FUNCTION else ""
    raise AccessDenied(
        f"table function{shown} is not allowed{why}: only unnest, range and generate_series "
        "can be used as tables"
    )


@functools.cache
def _rendered_call(cls: type[exp.Func]) -> str | None:
    """Name of the function DuckDB gets for nodes of `cls`: '' for syntax, None if unknown.

    Rendered once per class from a sample node, assuming (as holds for sqlglot's DuckDB generator)
    that the arguments change the syntax around a call, not which function is called.
    """
    if cls is exp.Case:
        return ""  # CASE WHEN ... END; its required `ifs` list defeats the sample below
    for sample in _samples(cls):
        try:
            sql = sample.sql(dialect=DIALECT, unsupported_level=ErrorLevel.IGNORE)
        except Exception:  # the sample's arguments do not suit this class; try the next one
            continue
        match = _CALL_HEAD.match(sql)
        return match.group(1).strip('"').replace('""', '"') if match else ""
    return None


def _samples(cls: type[exp.Func]) -> list[exp.Func]:
    required = [k for k, needed in cls.arg_types.items() if needed]
    optional = [k for k in ("this", "expression") if k in cls.arg_types]

    def column() -> exp.Column:
        return exp.column("x")

    samples = []
    for keys, as_list in ((required, False), (required + optional, False), (required, True)):
        try:
            args = {
                k: [column()] if as_list or k == "expressions" else column()
                for k in dict.fromkeys(keys)
            }
            samples.append(cls(**args))
        except Exception:  # the class refuses these arguments; the other samples may do
            continue
    return samples
