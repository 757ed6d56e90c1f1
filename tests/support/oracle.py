"""A pure-Python reference for the policy semantics of CONTRACT.md section 3 (rules 1-6, and
the parts of rules 9-13 that follow from them: principals, describe-or-missing for every
operation, locations, who sees which jobs).

Written from the contract text only: nothing here imports Lakeward. It is deliberately naive
(loops over every line for every question) so that it is easy to check by reading.

Policy lines are tuples of strings, exactly the fields of a policy.csv line:

    ("g", member, role)
    ("g2", resource, "tag:K=V")
    ("p", subject, resource, action, effect)
    ("p2", subject, "db.table", name, row_filter_sql, columns)
    ("p3", "db.table.column", mask_sql)

Row filters, masks and query predicates use a tiny SQL subset that this module can both parse
and evaluate with SQL's three-valued logic (None is UNKNOWN / NULL):

    expr   := or
    or     := and ("OR" and)*
    and    := not ("AND" not)*
    not    := "NOT" not | atom
    atom   := "TRUE" | "FALSE" | "(" expr ")" | col op literal | col "IS" ["NOT"] "NULL"
    op     := = | <> | < | <= | > | >=
    mask   := 'string' | integer | NULL | upper(col) | col % 10 | col * 0

Queries are `Query` objects that render to SQL and evaluate over a visible relation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------------------------
# Expressions: AST, SQL rendering, three-valued evaluation
# --------------------------------------------------------------------------------------------

OPS = ("=", "<>", "<", "<=", ">", ">=")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    return "'" + v.replace("'", "''") + "'"


@dataclass(frozen=True)
class Const:
    value: Any  # True / False

    def sql(self) -> str:
        return sql_literal(self.value)

    def eval(self, row: dict) -> bool | None:
        return self.value

    def columns(self) -> set[str]:
        return set()


@dataclass(frozen=True)
class Cmp:
    col: str
    op: str
    lit: Any

    def sql(self) -> str:
        return f"{self.col} {self.op} {sql_literal(self.lit)}"

    def eval(self, row: dict) -> bool | None:
        a = row[self.col]
        if a is None or self.lit is None:
            return None  # any comparison with NULL is UNKNOWN
        b = self.lit
        return {
            "=": a == b,
            "<>": a != b,
            "<": a < b,
            "<=": a <= b,
            ">": a > b,
            ">=": a >= b,
        }[self.op]

    def columns(self) -> set[str]:
        return {self.col}


@dataclass(frozen=True)
class IsNull:
    col: str
    negated: bool = False

    def sql(self) -> str:
        return f"{self.col} IS {'NOT ' if self.negated else ''}NULL"

    def eval(self, row: dict) -> bool | None:
        return (row[self.col] is None) != self.negated

    def columns(self) -> set[str]:
        return {self.col}


@dataclass(frozen=True)
class And:
    a: Any
    b: Any

    def sql(self) -> str:
        return f"({self.a.sql()} AND {self.b.sql()})"

    def eval(self, row: dict) -> bool | None:
        x, y = self.a.eval(row), self.b.eval(row)
        if x is False or y is False:
            return False
        if x is None or y is None:
            return None
        return True

    def columns(self) -> set[str]:
        return self.a.columns() | self.b.columns()


@dataclass(frozen=True)
class Or:
    a: Any
    b: Any

    def sql(self) -> str:
        return f"({self.a.sql()} OR {self.b.sql()})"

    def eval(self, row: dict) -> bool | None:
        x, y = self.a.eval(row), self.b.eval(row)
        if x is True or y is True:
            return True
        if x is None or y is None:
            return None
        return False

    def columns(self) -> set[str]:
        return self.a.columns() | self.b.columns()


@dataclass(frozen=True)
class Not:
    a: Any

    def sql(self) -> str:
        return f"(NOT {self.a.sql()})"

    def eval(self, row: dict) -> bool | None:
        x = self.a.eval(row)
        return None if x is None else not x

    def columns(self) -> set[str]:
        return self.a.columns()


# Masks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskConst:
    value: Any  # str, int or None (NULL)

    def sql(self) -> str:
        return sql_literal(self.value)

    def eval(self, row: dict) -> Any:
        return self.value


@dataclass(frozen=True)
class MaskUpper:
    col: str

    def sql(self) -> str:
        return f"upper({self.col})"

    def eval(self, row: dict) -> Any:
        v = row[self.col]
        return None if v is None else v.upper()


@dataclass(frozen=True)
class MaskArith:
    col: str
    op: str  # "%" or "*"
    n: int

    def sql(self) -> str:
        return f"{self.col} {self.op} {self.n}"

    def eval(self, row: dict) -> Any:
        v = row[self.col]
        if v is None:
            return None
        if self.op == "*":
            return v * self.n
        # SQL's % truncates toward zero (the sign follows the dividend), unlike Python's %.
        return int(math.fmod(v, self.n))


# Parser -------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+)|(?P<op><>|<=|>=|=|<|>|%|\*|\(|\))"
    r"|(?P<word>[A-Za-z_][A-Za-z_0-9]*|\"(?:[^\"]|\"\")+\"))"
)


def _tokens(text: str) -> list[tuple[str, Any]]:
    out, pos, text = [], 0, text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read {text[pos:]!r}")
        pos = m.end()
        if m.group("str") is not None:
            out.append(("lit", m.group("str")[1:-1].replace("''", "'")))
        elif m.group("num") is not None:
            out.append(("lit", int(m.group("num"))))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        else:
            w = m.group("word")
            if w.startswith('"'):
                out.append(("name", w[1:-1].replace('""', '"')))
            elif w.upper() in ("AND", "OR", "NOT", "IS", "NULL", "TRUE", "FALSE"):
                out.append(("kw", w.upper()))
            else:
                out.append(("name", w))
    return out


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, kind: str | None = None, value: Any = None) -> tuple[str, Any]:
        t = self.peek()
        if t is None or (kind and t[0] != kind) or (value is not None and t[1] != value):
            raise ValueError(f"expected {kind} {value}, got {t}")
        self.i += 1
        return t

    def at(self, kind: str, value: Any) -> bool:
        return self.peek() == (kind, value)

    def done(self) -> None:
        if self.peek() is not None:
            raise ValueError(f"trailing {self.toks[self.i :]}")

    def expr(self):
        e = self.conj()
        while self.at("kw", "OR"):
            self.take()
            e = Or(e, self.conj())
        return e

    def conj(self):
        e = self.neg()
        while self.at("kw", "AND"):
            self.take()
            e = And(e, self.neg())
        return e

    def neg(self):
        if self.at("kw", "NOT"):
            self.take()
            return Not(self.neg())
        return self.atom()

    def atom(self):
        if self.at("kw", "TRUE") or self.at("kw", "FALSE"):
            return Const(self.take()[1] == "TRUE")
        if self.at("op", "("):
            self.take()
            e = self.expr()
            self.take("op", ")")
            return e
        col = self.take("name")[1]
        if self.at("kw", "IS"):
            self.take()
            negated = self.at("kw", "NOT")
            if negated:
                self.take()
            self.take("kw", "NULL")
            return IsNull(col, negated)
        op = self.take("op")[1]
        if op not in OPS:
            raise ValueError(f"bad operator {op}")
        if self.at("kw", "NULL"):
            self.take()
            return Cmp(col, op, None)
        return Cmp(col, op, self.take("lit")[1])

    def mask(self):
        t = self.peek()
        if t == ("kw", "NULL"):
            self.take()
            return MaskConst(None)
        if t is not None and t[0] == "lit":
            self.take()
            return MaskConst(t[1])
        name = self.take("name")[1]
        if name.lower() == "upper" and self.at("op", "("):
            self.take()
            col = self.take("name")[1]
            self.take("op", ")")
            return MaskUpper(col)
        op = self.take("op")[1]
        if op not in ("%", "*"):
            raise ValueError(f"bad mask operator {op}")
        return MaskArith(name, op, self.take("lit")[1])


def rename_expr(e, rename: dict[str, str]):
    """The expression with column names replaced (for comparing error messages)."""
    if isinstance(e, Cmp):
        return Cmp(rename.get(e.col, e.col), e.op, e.lit)
    if isinstance(e, IsNull):
        return IsNull(rename.get(e.col, e.col), e.negated)
    if isinstance(e, (And, Or)):
        return type(e)(rename_expr(e.a, rename), rename_expr(e.b, rename))
    if isinstance(e, Not):
        return Not(rename_expr(e.a, rename))
    return e


def parse_expr(text: str):
    p = _Parser(text)
    e = p.expr()
    p.done()
    return e


def parse_mask(text: str):
    p = _Parser(text)
    m = p.mask()
    p.done()
    return m


# --------------------------------------------------------------------------------------------
# Policy semantics
# --------------------------------------------------------------------------------------------


class Refused(Exception):
    """The user may not select from the table (lk.sql raises AccessDenied)."""


def subjects(lines, user: str) -> set[str]:
    """The user, '*', and every role reachable from them through g lines (transitively)."""
    subs = {user, "*"}
    changed = True
    while changed:
        changed = False
        for line in lines:
            if line[0] == "g" and line[1] in subs and line[2] not in subs:
                subs.add(line[2])
                changed = True
    return subs


def segments_cover(pattern: str, resource: str) -> bool:
    """`db` covers everything in db, `db.t` everything in the table, `db.t.c` one column;
    `*` stands for any single segment (so a lone `*` covers every database)."""
    p, r = pattern.split("."), resource.split(".")
    return len(p) <= len(r) and all(a == "*" or a == b for a, b in zip(p, r, strict=False))


def effective_tags(lines, column: str) -> dict[str, str]:
    """Tags of db.table.column: those of the database, then the table, then the column itself,
    the nearest resource winning for each key."""
    db, table, _ = column.split(".")
    merged: dict[str, str] = {}
    for res in (db, f"{db}.{table}", column):
        for line in lines:
            if line[0] == "g2" and line[1] == res:
                key, _, value = line[2][len("tag:") :].partition("=")
                merged[key] = value
    return merged


def covers_column(lines, pattern: str, column: str) -> bool:
    """Does a p-line RESOURCE cover the column `db.table.column`?"""
    if pattern.startswith("tag:"):
        key, _, value = pattern[len("tag:") :].partition("=")
        return effective_tags(lines, column).get(key) == value
    return segments_cover(pattern, column)


def covers_table(pattern: str, table: str) -> bool:
    """Is the p-line RESOURCE a grant on the database or table (not on columns or tags)?"""
    return not pattern.startswith("tag:") and segments_cover(pattern, table)


def _p_lines(lines, subs: set[str], action: str, effect: str):
    for line in lines:
        if line[0] == "p" and line[1] in subs and line[3] in (action, "*") and line[4] == effect:
            yield line[2]


def parse_columns(spec: str, columns: list[str]) -> set[str]:
    words = spec.split()
    if words[0] == "*":
        drop = {w[1:] for w in words[1:]}
        return {c for c in columns if c not in drop}
    return set(words)


@dataclass
class Pair:
    cond: Any  # an expression
    columns: set[str]


@dataclass
class Relation:
    columns: list[str]  # visible, in table order
    rows: list[dict]  # each row: visible column -> what the user reads
    masked: set[str] = field(default_factory=set)
    hidden_cells: int = 0  # cells of present rows that read NULL because no pair shows them
    all_rows: bool = False  # some pair holds for every row (a grant, or a TRUE filter)
    cell_filtered: set[str] = field(default_factory=set)  # columns shown on only some rows

    def whole(self, columns: list[str]) -> bool:
        """Whether this is all of the table: every row, column and cell, no mask."""
        return (
            self.all_rows
            and not self.masked
            and not self.cell_filtered
            and self.columns == list(columns)
        )


def view(lines, table: str, columns: list[str], rows: list[dict], user: str) -> Relation:
    """The relation `user` sees of `table` (columns in table order, rows with raw values),
    or raise Refused."""
    subs = subjects(lines, user)
    full = {c: f"{table}.{c}" for c in columns}

    # Rule 1: a deny on the database or table refuses the table; a deny on a column removes it.
    if any(covers_table(r, table) for r in _p_lines(lines, subs, "select", "deny")):
        raise Refused(f"{user} denied on {table}")
    denied = {
        c
        for c in columns
        for r in _p_lines(lines, subs, "select", "deny")
        if covers_column(lines, r, full[c])
    }

    # Rule 2: every grant is a pair (row condition, columns).
    # An allow on columns (or a tag) grants each column it covers unless a deny on that column
    # beats it; a grant left with no column is no pair (it shows no row either).
    pairs: list[Pair] = []
    for r in _p_lines(lines, subs, "select", "allow"):
        if covers_table(r, table):
            pairs.append(Pair(Const(True), set(columns)))
        else:
            cols = {c for c in columns if covers_column(lines, r, full[c]) and c not in denied}
            if cols:
                pairs.append(Pair(Const(True), cols))
    for line in lines:
        if (
            line[0] == "p2"
            and line[1] in subs
            and line[2].count(".") == 1
            and segments_cover(line[2], table)
        ):
            pairs.append(Pair(parse_expr(line[4]), parse_columns(line[5], columns)))
    if not pairs:
        raise Refused(f"{user} has no grant on {table}")

    # Rule 3: columns are the union of the pairs' columns less denied ones, in table order.
    visible = [c for c in columns if c not in denied and any(c in p.columns for p in pairs)]
    if not visible:
        # Interpretation: a table of which the user has no column at all is refused too.
        raise Refused(f"{user} has no column of {table}")

    # Rule 5: masks, unless the user may unmask (an allow on the column, table or database,
    # and no deny for unmask, since a deny beats every allow for its action).
    masks = {}
    for c in visible:
        mask = next(
            (
                line[2]
                for line in lines
                if line[0] == "p3" and line[1].count(".") == 2 and segments_cover(line[1], full[c])
            ),
            None,
        )
        if mask is None:
            continue
        allow = any(
            covers_column(lines, r, full[c]) for r in _p_lines(lines, subs, "unmask", "allow")
        )
        deny = any(
            covers_column(lines, r, full[c]) for r in _p_lines(lines, subs, "unmask", "deny")
        )
        if not allow or deny:
            masks[c] = parse_mask(mask)

    out, hidden = [], 0
    for raw in rows:
        holds = [p.cond.eval(raw) is True for p in pairs]
        if not any(holds):
            continue
        seen = {}
        for c in visible:
            shown = any(h and c in p.columns for h, p in zip(holds, pairs, strict=True))
            if not shown:
                seen[c] = None
                hidden += 1
            elif c in masks:
                seen[c] = masks[c].eval(raw)  # masks see the stored values
            else:
                seen[c] = raw[c]
        out.append(seen)
    all_rows = any(p.cond == Const(True) for p in pairs)
    cells = set()
    for c in visible:
        having = [p for p in pairs if c in p.columns]
        if not any(p.cond == Const(True) for p in having) and len(having) != len(pairs):
            cells.add(c)
    return Relation(visible, out, set(masks), hidden, all_rows, cells)


# --------------------------------------------------------------------------------------------
# Queries over a visible relation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """SELECT <select | *> [, aggregates] FROM table [WHERE] [GROUP BY col] [ORDER BY col]."""

    table: str
    select: tuple[str, ...] | None = None  # None: `*` (only without aggregates)
    aggs: tuple[tuple[str, str | None, str], ...] = ()  # (count|min|max, column or None, alias)
    where: Any = None
    group_by: str | None = None
    order_by: str | None = None

    def sql(self, rename: dict[str, str] | None = None) -> str:
        rn = rename or {}

        def col(c: str) -> str:
            return rn.get(c, c)

        items = ["*"] if self.select is None else [col(c) for c in self.select]
        for fn, c, alias in self.aggs:
            items.append(f"{fn}({'*' if c is None else col(c)}) AS {alias}")
        q = f"SELECT {', '.join(items)} FROM {self.table}"
        if self.where is not None:
            q += f" WHERE {rename_expr(self.where, rn).sql()}"
        if self.group_by is not None:
            q += f" GROUP BY {col(self.group_by)}"
        if self.order_by is not None:
            q += f" ORDER BY {col(self.order_by)}"
        return q

    def names(self) -> list[str]:
        """Columns the query names, in order of first mention."""
        out = list(self.select or ())
        out += [c for _, c, _ in self.aggs if c is not None]
        if self.where is not None:
            out += sorted(self.where.columns())
        out += [c for c in (self.group_by, self.order_by) if c is not None]
        return list(dict.fromkeys(out))


@dataclass
class Result:
    kind: str  # "ok", "denied" (AccessDenied), "missing" (SQLError: unknown column)
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    order_index: int | None = None  # rows are ordered by this output column


def _agg(fn: str, col: str | None, rows: list[dict]) -> Any:
    if col is None:
        return len(rows)
    values = [r[col] for r in rows if r[col] is not None]
    if fn == "count":
        return len(values)
    if not values:
        return None
    return min(values) if fn == "min" else max(values)


def sort_key(v: Any) -> tuple:
    """None-safe, type-safe ordering; None sorts last like SQL's default NULLS LAST."""
    if v is None:
        return (2, "", 0)
    if isinstance(v, str):
        return (1, v, 0)
    return (0, "", v)


def run(query: Query, lines, columns: list[str], rows: list[dict], user: str) -> Result:
    """What `lk.sql(query.sql(), user=user)` must return, by the contract."""
    try:
        rel = view(lines, query.table, columns, rows, user)
    except Refused:
        return Result("denied")
    missing = [c for c in query.names() if c not in rel.columns]
    if missing:
        return Result("missing", missing=missing)
    kept = [r for r in rel.rows if query.where is None or query.where.eval(r) is True]
    out_cols = list(rel.columns) if query.select is None else list(query.select)
    out_cols += [alias for _, _, alias in query.aggs]
    if query.group_by is not None:
        groups: dict[Any, list[dict]] = {}
        for r in kept:
            groups.setdefault(r[query.group_by], []).append(r)
        out = [
            tuple(key if c == query.group_by else None for c in (query.select or ()))
            + tuple(_agg(fn, c, g) for fn, c, _ in query.aggs)
            for key, g in groups.items()
        ]
    elif query.aggs:
        out = [tuple(_agg(fn, c, kept) for fn, c, _ in query.aggs)]
    else:
        sel = rel.columns if query.select is None else query.select
        out = [tuple(r[c] for c in sel) for r in kept]
    order_index = None
    if query.order_by is not None and query.order_by in out_cols:
        order_index = out_cols.index(query.order_by)
        out.sort(key=lambda t: sort_key(t[order_index]))
    return Result("ok", out_cols, out, order_index=order_index)


def rows_sorted(rows) -> list[tuple]:
    """A canonical order for comparing multisets of rows that may hold None."""
    return sorted((tuple(r) for r in rows), key=lambda t: tuple(sort_key(v) for v in t))


# --------------------------------------------------------------------------------------------
# policy.csv text
# --------------------------------------------------------------------------------------------


def csv_field(value: str, force_quote: bool = False) -> str:
    """Quote a field that holds a comma outside parentheses (or always, if asked)."""
    depth, needs = 0, False
    for ch in value:
        depth += ch == "("
        depth -= ch == ")"
        needs |= ch == "," and depth <= 0
    needs |= value != value.strip() or '"' in value
    if needs or force_quote:
        return '"' + value.replace('"', '""') + '"'
    return value


def policy_text(lines, quote_all: bool = False) -> str:
    return "".join(
        ", ".join([line[0]] + [csv_field(v, quote_all) for v in line[1:]]) + "\n" for line in lines
    )


# --------------------------------------------------------------------------------------------
# Rules 9-13: principals, every operation, locations, jobs
# --------------------------------------------------------------------------------------------


def valid_user(name: Any) -> bool:
    """Rule 9: a user name is a non-empty string, not `*`, not beginning with `role:` (in any
    case), without surrounding spaces, commas or control characters."""
    return (
        isinstance(name, str)
        and bool(name.strip())
        and name == name.strip()
        and not any(c in name for c in ",\n\r\t\0")
        and name != "*"
        and not name.lower().startswith("role:")
    )


def resource_covers(pattern: str, resource: str) -> bool:
    """Does a p-line RESOURCE cover a resource that is not a column (a database, table, queue
    or location)? `*` alone covers everything; queues match by name or `queue:*`; a location
    covers itself and what lies below it, by whole path segments."""
    if pattern == "*":
        return True
    for kind in ("queue:", "location:"):
        if pattern.startswith(kind) != resource.startswith(kind):
            return False
    if pattern.startswith("queue:"):
        return pattern in (resource, "queue:*")
    if pattern.startswith("location:"):
        p, r = pattern[len("location:") :].rstrip("/"), resource[len("location:") :]
        return bool(p) and (r == p or r.startswith(p + "/"))
    return not pattern.startswith("tag:") and segments_cover(pattern, resource)


def allowed(lines, user: str, resource: str, action: str) -> bool:
    """Rule 1 for one action on one resource: some allow covers it and no deny does."""
    subs = subjects(lines, user)
    cover = [r for r in _p_lines(lines, subs, action, "deny") if resource_covers(r, resource)]
    if cover:
        return False
    return any(resource_covers(r, resource) for r in _p_lines(lines, subs, action, "allow"))


def describable(lines, table: str, columns: list[str], rows: list[dict], user: str) -> bool:
    """Rule 10: a user knows a table exists iff they may select from it or describe it."""
    try:
        view(lines, table, columns, rows, user)
        return True
    except Refused:
        return allowed(lines, user, table, "describe")


def known_columns(lines, table: str, columns: list[str], rows: list[dict], user: str) -> list[str]:
    """The columns a user may know of: those of their view, or (describe only) those they may
    describe."""
    try:
        return view(lines, table, columns, rows, user).columns
    except Refused:
        return [c for c in columns if allowed(lines, user, f"{table}.{c}", "describe")]


def operation(op: str, lines, table: str, columns: list[str], rows: list[dict], user: str):
    """What an operation on `table` answers `user` (rule 10, 12): ("missing",) when the table
    is not describable (exactly as for a table that does not exist), ("denied",) without the
    grant it needs, else ("ok", what the answer must show)."""
    if not describable(lines, table, columns, rows, user):
        return ("missing",)
    try:
        rel: Relation | None = view(lines, table, columns, rows, user)
    except Refused:
        rel = None
    whole = rel is not None and rel.whole(columns)
    if op == "describe":
        return ("ok", known_columns(lines, table, columns, rows, user), whole)
    if op == "history":
        return ("ok",)
    if op == "partitions":
        return ("ok",) if whole else ("denied",)
    if op in ("compact", "vacuum_dry_run", "set_properties"):
        if not allowed(lines, user, table, "alter"):
            return ("denied",)
        return ("ok", whole)
    if op == "delete_all":
        if not allowed(lines, user, table, "delete") or rel is None:
            return ("denied",)
        return ("ok", len(rel.rows))
    raise ValueError(op)


def may_see_job(lines, user: str, job_user: str | None, queue: str, action: str) -> bool:
    """Rule 13: a user may see (action describe) or control (alter) their own jobs, and other
    users' (or the owner's: `job_user` None) with that action on the job's queue."""
    own = job_user is not None and job_user.lower() == user.lower()
    return own or allowed(lines, user, f"queue:{queue}", action)


def location_allowed(lines, user: str, target: str, own: list[str]) -> bool:
    """Rule 11 for a resolved local path: a `location:` select grant covers it, and it is not
    (and does not hold, nor lie in) one of the lake's own folders `own`."""

    def under(a: str, b: str) -> bool:
        return a == b or a.startswith(b.rstrip("/") + "/")

    if any(under(target, o) or under(o, target) for o in own):
        return False
    return allowed(lines, user, "location:" + target, "select")
