"""Policy SQL (row filters and masks): parsed once, checked, and re-emitted with quoted columns."""

from __future__ import annotations

import functools
import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from catalog.errors import LakeError
from governance.passes.validate import validate

TRUE_WORDS = frozenset({"true", "1=1"})


class PolicySQLError(ValueError):
    """A filter or mask is not a safe expression over the table's columns."""


_OPERATORS = {
    "EQ": "=",
    "NEQ": "<>",
    "GT": ">",
    "GTE": ">=",
    "LT": "<",
    "LTE": "<=",
    "And": "AND",
    "Or": "OR",
    "Not": "NOT",
    "Add": "+",
    "Sub": "-",
    "Mul": "*",
    "Div": "/",
    "Mod": "%",
    "Like": "LIKE",
    "ILike": "ILIKE",
    "Is": "IS",
    "In": "IN",
    "Between": "BETWEEN",
    "DPipe": "||",
}
_MISSING = re.compile(r"Required keyword: '(\w+)' missing for <class '[\w.]*?(\w+)'>")


def plain_parse_error(e: Exception) -> str:
    """What sqlglot could not parse, in words a policy author reads (no class names)."""
    if not isinstance(e, ParseError) or not e.errors:
        if "tokeniz" in str(e).lower():
            return "a quote or bracket is not closed"
        return "it is not a SQL expression"
    err = e.errors[0]
    said = str(err.get("description") or "")
    near = str(err.get("highlight") or "").strip()
    m = _MISSING.search(said)
    if m:
        op = _OPERATORS.get(m.group(2), m.group(2).upper())
        side = "left" if m.group(1) == "this" else "right"
        return f"{op} has nothing on its {side}"
    if said.startswith("Expecting "):
        return f"{said[len('Expecting ') :]} expected" + (f" after {near!r}" if near else "")
    return f"unexpected {near!r}" if near else "it is not a SQL expression"


def normalize(sql: str, columns: list[str] | None = None) -> tuple[str, frozenset[str]]:
    """Check a policy expression and return (DuckDB SQL with quoted columns, columns it reads).

    `columns` (when the table exists) are the names it may use; matching is case-insensitive.
    The answer depends on the text and the columns alone, so it is kept: a new engine for the
    same rules (a policy change elsewhere, a reload) does not parse them again.
    """
    return _normalize(sql, None if columns is None else tuple(columns))


@functools.lru_cache(maxsize=4096)
def _normalize(sql: str, columns: tuple[str, ...] | None) -> tuple[str, frozenset[str]]:
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except (ParseError, SqlglotError) as e:
        raise PolicySQLError(f"cannot parse {sql!r}: {plain_parse_error(e)}") from None
    if (
        tree is None
        or isinstance(tree, (exp.Select, exp.Query, exp.Command))
        or tree.find(exp.Select, exp.Subquery, exp.Table, exp.Placeholder, exp.Parameter)
    ):
        raise PolicySQLError(
            f"{sql!r} must be a plain expression: no queries, tables or parameters"
        )
    if tree.find(exp.AggFunc, exp.Window):
        raise PolicySQLError(
            f"{sql!r} may not use an aggregate function or a window function: it is evaluated per row"
        )
    if tree.find(exp.Star):
        raise PolicySQLError(f"{sql!r} may not use *")
    try:
        validate(exp.select(tree.copy()))
    except LakeError as e:
        raise PolicySQLError(f"{sql!r}: {e}") from None
    known = {c.lower(): c for c in columns} if columns is not None else None
    used: set[str] = set()
    for col in list(tree.find_all(exp.Column)):
        if col.table:
            raise PolicySQLError(f"{sql!r}: name columns without a table qualifier")
        name = col.name
        if known is not None:
            if name.lower() not in known:
                raise PolicySQLError(f"{sql!r} uses column {name!r}, which the table does not have")
            name = known[name.lower()]
        used.add(name)
        col.replace(exp.column(name, quoted=True))
    return tree.sql(dialect="duckdb"), frozenset(used)


def is_true(sql: str) -> bool:
    return sql.strip().lower().replace(" ", "") in TRUE_WORDS
