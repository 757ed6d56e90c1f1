"""Which comparisons cannot fail, whatever value they meet (for the guard pass).

A comparison is harmless when evaluating it on any row, hidden or not, can neither fail nor have
an effect: `col OP constant` with a plain literal of a kind that suits the column's type (so no
cast of the column is needed, and the constant's own cast cannot fail), `col OP col` between
types DuckDB compares without a cast that may fail, `col IS [NOT] NULL`, and `col LIKE 'pattern'`
on strings; combined with the clause only through AND, OR and NOT.
"""

from __future__ import annotations

import re
from datetime import date, datetime

import pyarrow as pa
from sqlglot import exp

_COMPARISONS = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.NullSafeEQ, exp.NullSafeNEQ)
_LIKES = (exp.Like, exp.ILike, exp.Glob)
_CONNECTIVES = (exp.And, exp.Or, exp.Not, exp.Paren)
_CLAUSE_ROOTS = (exp.Where, exp.Having, exp.Qualify, exp.Join)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?")
_INTERVAL_UNITS = frozenset({"DAY", "DAYS", "WEEK", "WEEKS", "MONTH", "MONTHS", "QUARTER", "YEAR"})

# One comparison a value takes part in: ("const", kind, text), ("col", name) or ("null",).
Atom = tuple
Form = tuple[Atom, ...] | None  # None: not a harmless comparison


_PAIRS_OK = (
    (pa.types.is_integer, pa.types.is_integer),
    (pa.types.is_integer, pa.types.is_floating),
    (pa.types.is_floating, pa.types.is_floating),
    (pa.types.is_decimal, pa.types.is_floating),
    (pa.types.is_date, pa.types.is_date),
    (pa.types.is_boolean, pa.types.is_boolean),
)


def _string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def pair_ok(a: pa.DataType | None, b: pa.DataType | None) -> bool:
    """Can DuckDB compare values of these types without a cast that may fail?"""
    if a is None or b is None:
        return False
    if a == b or (_string(a) and _string(b)):
        return True
    for x, y in ((a, b), (b, a)):
        if any(p(x) and q(y) for p, q in _PAIRS_OK):
            return True
        if pa.types.is_decimal(x) and pa.types.is_integer(y) and x.scale <= 18:
            return True
        if (
            pa.types.is_timestamp(x)
            and pa.types.is_timestamp(y)
            and (x.tz is None) == (y.tz is None)
        ):
            return True
    if pa.types.is_decimal(a) and pa.types.is_decimal(b):
        return max(a.precision - a.scale, b.precision - b.scale) + max(a.scale, b.scale) <= 38
    return False


def _valid(text: str, pattern: re.Pattern[str], parse) -> bool:
    if not pattern.fullmatch(text):
        return False
    try:
        parse(text)
    except ValueError:
        return False
    return True


def const_ok(kind: str, text: str, t: pa.DataType | None) -> bool:
    """Can a constant of this kind be compared with a column of type `t` without a cast of the
    column, and without a cast of the constant that may fail?"""
    if t is None:
        return False
    naive = pa.types.is_timestamp(t) and t.tz is None
    if kind == "null":
        return True
    if kind == "bool":
        return pa.types.is_boolean(t)
    if kind == "num":
        return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    if kind == "like":
        return _string(t)
    if kind == "str":
        if _string(t):
            return True
        if pa.types.is_date(t):
            return _valid(text, _DATE, date.fromisoformat)
        return naive and _valid(text, _TIMESTAMP, datetime.fromisoformat)
    # A date or timestamp constant: DuckDB compares a date column with a timestamp constant as
    # dates (it casts the constant), so neither direction casts the column.
    return pa.types.is_date(t) or naive


def _constant(node: exp.Expression) -> tuple[str, str] | None:
    """(kind, text) of a constant that cannot fail to evaluate, or None."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Null):
        return ("null", "")
    if isinstance(node, exp.Boolean):
        return ("bool", "")
    if isinstance(node, exp.Neg):
        inner = _constant(node.this)
        return inner if inner and inner[0] == "num" else None
    if isinstance(node, exp.Literal):
        if node.is_string:
            return ("str", node.this)
        text = str(node.this).lower()
        # A long exact number may not fit the column's decimal type: its cast could fail.
        digits = sum(ch.isdigit() for ch in text)
        return ("num", text) if "e" in text or digits <= 18 else None
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) and node.this.is_string:
        text = node.this.this
        if node.to.this == exp.DataType.Type.DATE and _valid(text, _DATE, date.fromisoformat):
            return ("date", text)
        if node.to.this == exp.DataType.Type.TIMESTAMP and _valid(
            text, _TIMESTAMP, datetime.fromisoformat
        ):
            return ("ts", text)
        return None
    if isinstance(node, (exp.Add, exp.Sub)):
        left = _constant(node.this)
        if left and left[0] in ("date", "ts") and _whole_interval(node.expression):
            return ("ts", left[1])
    return None


def _whole_interval(node: exp.Expression) -> bool:
    if not isinstance(node, exp.Interval):
        return False
    unit = str(node.args.get("unit") or "").upper()
    value = node.this
    return (
        unit in _INTERVAL_UNITS
        and isinstance(value, exp.Literal)
        and str(value.this).isdigit()
        and len(str(value.this)) <= 4  # stays in range whatever the date
    )


def _partner(node: exp.Expression) -> Atom | None:
    """What a value is compared with: a constant, a column, or a subquery's bare column."""
    while isinstance(node, (exp.Paren, exp.Any, exp.All)):
        node = node.this
    const = _constant(node)
    if const is not None:
        return ("null",) if const[0] == "null" else ("const", *const)
    if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
        return ("col", node.name.lower())
    if isinstance(node, exp.Subquery) and isinstance(node.this, exp.Select):
        items = node.this.expressions
        if len(items) == 1:
            item = items[0].this if isinstance(items[0], exp.Alias) else items[0]
            if isinstance(item, exp.Column) and not isinstance(item.this, exp.Star):
                return ("col", item.name.lower())
    return None


def harmless(node: exp.Expression) -> Form:
    """The harmless comparison `node` is an operand of, or None."""
    child, parent = node, node.parent
    while isinstance(parent, (exp.Paren, exp.Any, exp.All)):
        child, parent = parent, parent.parent
    atoms: list[Atom | None]
    if isinstance(parent, _COMPARISONS):
        atoms = [_partner(parent.expression if child is parent.this else parent.this)]
    elif isinstance(parent, exp.In):
        if child is parent.this:
            query = parent.args.get("query")
            atoms = [_partner(query)] if query else [_partner(e) for e in parent.expressions]
        else:
            atoms = [_partner(parent.this)]
    elif isinstance(parent, exp.Between) and child is parent.this:
        atoms = [_partner(parent.args["low"]), _partner(parent.args["high"])]
    elif isinstance(parent, exp.Is) and child is parent.this:
        atoms = [("null",) if isinstance(parent.expression, exp.Null) else None]
    elif isinstance(parent, _LIKES) and child is parent.this:
        pattern = parent.expression
        plain = isinstance(pattern, exp.Literal) and pattern.is_string
        atoms = [("const", "like", pattern.this) if plain else None]
    else:
        return None
    if not atoms or any(a is None for a in atoms):
        return None
    up = parent.parent
    while up is not None and not isinstance(up, _CLAUSE_ROOTS):
        if not isinstance(up, _CONNECTIVES):
            return None
        up = up.parent
    return tuple(atoms)  # type: ignore[arg-type]
