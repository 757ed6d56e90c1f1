"""Which write predicates and update expressions may run where a user sees only some rows.

A filtered user's delete or update is narrowed to the rows they see, but the predicate and the
update values are evaluated by delta-rs (DataFusion), which may evaluate them on every row of a
file before or regardless of the narrowing condition (its simplifier turns a guarding CASE into
AND). An expression that can fail on a value (a cast, an integer division, most functions)
would then fail on a hidden row, and its error would tell of it. So for such users the
expressions are limited, by construction, to what cannot fail on any value: columns, literals,
comparisons of compatible types, AND/OR/NOT, IS [NOT] NULL, IN, BETWEEN, LIKE with a literal
pattern, + - * and unary minus (they wrap, they never raise), division by a non-zero number,
`||`, lower, upper, length, coalesce and TRY_CAST.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

ALLOWED = (
    "columns, literals, comparisons of compatible types, AND/OR/NOT, IS [NOT] NULL, IN, "
    "BETWEEN, LIKE 'literal', + - *, / by a non-zero number, ||, lower, upper, length and "
    "coalesce"
)

_COMPARE = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)
_ARITH = (exp.Add, exp.Sub, exp.Mul)


class Unsafe(Exception):
    """An expression that could fail on some value."""


def family(t: pa.DataType) -> str:
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "num"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "str"
    if pa.types.is_boolean(t):
        return "bool"
    return str(t)


def unsafe(sql: str, types: Mapping[str, pa.DataType]) -> bool:
    """Whether `sql` (a predicate or an update value over a table with these column types)
    could fail on some value of a row."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except ParseError:
        return False  # the writer reports the parse error itself, the same for everyone
    try:
        _family(tree, {k.lower(): v for k, v in types.items()})
    except Unsafe:
        return True
    return False


def _family(e: exp.Expression, types: Mapping[str, pa.DataType]) -> str | None:
    """The value family of a safe expression (None: NULL, fits anything); Unsafe otherwise."""
    if isinstance(e, exp.Paren):
        return _family(e.this, types)
    if isinstance(e, exp.Column):
        t = types.get(e.name.lower())
        if t is None:
            raise Unsafe  # unknown here: the writer names it
        return family(t)
    if isinstance(e, exp.Null):
        return None
    if isinstance(e, exp.Boolean):
        return "bool"
    if isinstance(e, exp.Literal):
        return "str" if e.is_string else "num"
    if isinstance(e, (exp.And, exp.Or)):
        for side in (e.this, e.expression):
            _want(_family(side, types), "bool")
        return "bool"
    if isinstance(e, exp.Not):
        _want(_family(e.this, types), "bool")
        return "bool"
    if isinstance(e, exp.Is):
        _family(e.this, types)
        if not isinstance(e.expression, (exp.Null, exp.Boolean)):
            raise Unsafe
        return "bool"
    if isinstance(e, _COMPARE):
        _comparable(e.this, e.expression, types)
        return "bool"
    if isinstance(e, exp.In):
        if e.args.get("query") or e.args.get("unnest") or e.args.get("field"):
            raise Unsafe
        for item in e.expressions:
            _comparable(e.this, item, types)
        return "bool"
    if isinstance(e, exp.Between):
        _comparable(e.this, e.args["low"], types)
        _comparable(e.this, e.args["high"], types)
        return "bool"
    if isinstance(e, (exp.Like, exp.ILike)):
        _want(_family(e.this, types), "str")
        pattern = e.expression
        if not (isinstance(pattern, exp.Literal) and pattern.is_string) or "\\" in pattern.this:
            raise Unsafe
        if e.args.get("escape"):
            raise Unsafe
        return "bool"
    if isinstance(e, _ARITH):
        for side in (e.this, e.expression):
            _want(_family(side, types), "num")
        return "num"
    if isinstance(e, exp.Neg):
        _want(_family(e.this, types), "num")
        return "num"
    if isinstance(e, exp.Div):
        _want(_family(e.this, types), "num")
        d = e.expression
        if not (isinstance(d, exp.Literal) and not d.is_string and float(d.this) != 0):
            raise Unsafe
        return "num"
    if isinstance(e, exp.DPipe):
        for side in (e.this, e.expression):
            if _family(side, types) not in ("str", "num", None):
                raise Unsafe
        return "str"
    if isinstance(e, (exp.Lower, exp.Upper)):
        _want(_family(e.this, types), "str")
        return "str"
    if isinstance(e, exp.Length):
        _want(_family(e.this, types), "str")
        return "num"
    if isinstance(e, exp.Coalesce):
        fams = {_family(x, types) for x in [e.this, *e.expressions]} - {None}
        if len(fams) > 1:
            raise Unsafe
        return fams.pop() if fams else None
    raise Unsafe


def _want(got: str | None, want: str) -> None:
    if got is not None and got != want:
        raise Unsafe


def _comparable(a: exp.Expression, b: exp.Expression, types: Mapping[str, pa.DataType]) -> None:
    fa, fb = _family(a, types), _family(b, types)
    if fa is None or fb is None or fa == fb:
        return
    # A literal is converted once to the other side's type: it must fit (a number compared
    # with text is converted to text, which always fits).
    for lit, other, f_other in ((a, b, fb), (b, a, fa)):
        if isinstance(lit, exp.Literal):
            if not lit.is_string and f_other == "str":
                return
            if lit.is_string and isinstance(other, exp.Column):
                try:
                    pa.scalar(lit.this).cast(types[other.name.lower()])
                    return
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    raise Unsafe from None
    raise Unsafe
