"""Differential tests: Lakeward under random policies against the reference in
tests/support/oracle.py: `lk.sql` (rules 1-6), every other operation on a table (rule 10: not
describable is missing, the grant each needs, answers only about the user's view), locations
(rule 11), who sees and controls which jobs (rule 13) and user names (rule 9).

The property test draws a table (3-5 int/string columns, some nullable), 0-30 rows with NULLs,
5-15 policy lines of every type (g, g2, p, p2, p3) for alice/bob/carol, nested roles and `*`,
and queries from a small grammar, then compares what `lk.sql` returns (or raises) with the
oracle. The example tests pin each rule of CONTRACT.md section 3 with a hand-computed answer.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import lake
from lake.errors import (
    AccessDenied,
    InvalidArgument,
    JobError,
    SQLError,
    TableNotAccessible,
    TableNotFound,
)

import support.oracle as O

USERS = ["alice", "bob", "carol"]
ROLES = ["role:a", "role:b"]
STRINGS = ["", "a", "b", "ab", "B", "a,b", "zz"]
INTS = list(range(-12, 13))
TAGS = ["tag:pii=true", "tag:pii=false", "tag:lvl=1", "tag:lvl=2"]
PROBES = ["c5", "c6", "c7", "c8", "c9"]  # never table columns; same shape as c0..c4

# LAKEWARD_ORACLE_EXAMPLES=5000 for a deeper search; the default keeps the file under ~40 s.
SETTINGS = settings(
    max_examples=int(os.environ.get("LAKEWARD_ORACLE_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --------------------------------------------------------------------------------------------
# A lake shared by every example of a test function
# --------------------------------------------------------------------------------------------


class Harness:
    """One lake with a policy folder; each example gets a fresh table `d.t<N>`."""

    def __init__(self, base: Path, toml: str | None = None, catalog: str | None = None):
        self.base = base
        self.folder = base / "policy"
        self.folder.mkdir(parents=True)
        self._write_policy([("p", "etl", "*", "*", "allow")])
        if toml is not None:
            (base / "lake").mkdir()
            (base / "lake" / "lake.toml").write_text(toml)
        self.lk = lake.connect(base / "lake", policy=self.folder, catalog=catalog)
        self.lk.catalog.create_database("d")
        self.counter = itertools.count()
        self.tables: list[str] = []

    def _write_policy(self, lines) -> None:
        (self.folder / "policy.csv").write_text(O.policy_text(lines))

    def next_name(self) -> str:
        return f"t{next(self.counter)}"

    def load(
        self, name: str, columns: list[tuple[str, str, bool]], rows: list[dict], keep: bool = False
    ) -> str:
        """Create d.<name> and write the rows as etl (under a policy that lets etl write);
        drop the tables of earlier examples unless `keep`."""
        self.set_policy([("p", "etl", "*", "*", "allow")])
        while self.tables and not keep:
            with contextlib.suppress(TableNotFound):  # an example may have dropped it itself
                self.lk.catalog.drop_table(self.tables.pop(), purge=True)
        schema = pa.schema(
            [
                pa.field(c, pa.int64() if t == "int" else pa.string(), nullable=n)
                for c, t, n in columns
            ]
        )
        full = f"d.{name}"
        self.lk.catalog.create_table(full, schema)
        self.tables.append(full)
        if rows:
            data = pa.table({c: [r[c] for r in rows] for c, _, _ in columns}, schema=schema)
            self.lk.write(full, data, user="etl")
        return full

    def set_policy(self, lines, quote_all: bool = False) -> None:
        (self.folder / "policy.csv").write_text(O.policy_text(lines, quote_all))
        self.lk.policy.reload()

    def sql(self, query: str, user: str):
        """("ok", columns, rows) or ("denied", message) or ("sqlerror", message)."""
        try:
            t = self.lk.sql(query, user=user)
        except AccessDenied as e:
            return ("denied", str(e))
        except SQLError as e:
            return ("sqlerror", str(e))
        return ("ok", t.column_names, [tuple(r.values()) for r in t.to_pylist()])

    def close(self) -> None:
        self.lk.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory, module_catalog):
    h = Harness(tmp_path_factory.mktemp("oracle"))
    yield h
    h.close()


def compare(h: Harness, lines, columns: list[str], rows: list[dict], user: str, q: O.Query) -> str:
    """Run `q` through lk.sql and through the oracle; assert they agree; return the outcome."""
    sql = q.sql()
    want = O.run(q, lines, columns, rows, user)
    got = h.sql(sql, user)
    ctx = f"\nuser={user}\nquery={sql}\npolicy:\n{O.policy_text(lines)}oracle={want}\nlk.sql={got}"
    if want.kind == "denied":
        assert got[0] == "denied", "expected AccessDenied" + ctx
    elif want.kind == "missing":
        assert got[0] == "sqlerror", "expected SQLError for a column the user lacks" + ctx
        if not all(re.fullmatch(r"c\d", c) for c in want.missing):
            return want.kind  # messages are compared by test_rule4_* for other names
        # The error must be exactly the one for a column that does not exist at all.
        probe = dict(zip(want.missing, PROBES, strict=False))
        other = h.sql(q.sql(rename=probe), user)
        assert other[0] == "sqlerror", ctx
        msg = other[1]
        for hidden, fake in probe.items():
            msg = msg.replace(fake, hidden)
        assert got[1] == msg, (
            f"hidden vs nonexistent column messages differ:\n{got[1]}\n{msg}" + ctx
        )
    else:
        assert got[0] == "ok", "expected a result" + ctx
        assert list(got[1]) == want.columns, "column names differ" + ctx
        assert O.rows_sorted(got[2]) == O.rows_sorted(want.rows), "rows differ" + ctx
        if want.order_index is not None:
            i = want.order_index
            assert [O.sort_key(r[i]) for r in got[2]] == [O.sort_key(r[i]) for r in want.rows], (
                "ORDER BY order differs" + ctx
            )
    return want.kind


# --------------------------------------------------------------------------------------------
# Strategies (plain composites: cheap to generate, easy to shrink)
# --------------------------------------------------------------------------------------------


def pick(draw, seq):
    return seq[draw(st.integers(0, len(seq) - 1))]


@st.composite
def tables(draw):
    """[(name, "int" | "str", nullable)] and 0-30 rows (dicts) with NULLs where allowed."""
    n = draw(st.integers(3, 5))
    columns = [(f"c{i}", pick(draw, ["int", "str"]), draw(st.booleans())) for i in range(n)]
    rows = []
    for _ in range(draw(st.integers(0, 30))):
        row = {}
        for c, t, nullable in columns:
            if nullable and draw(st.integers(0, 3)) == 0:
                row[c] = None
            else:
                row[c] = pick(draw, INTS if t == "int" else STRINGS)
        rows.append(row)
    return columns, rows


def draw_literal(draw, kind: str):
    return pick(draw, INTS[4:-4] if kind == "int" else STRINGS)


def draw_expr(draw, typed, depth: int = 2):
    """A condition over [(name, type)] in the oracle's tiny SQL."""
    k = draw(st.integers(0, 9 if depth > 0 else 5))
    if k <= 3:
        c, t = pick(draw, typed)
        return O.Cmp(c, pick(draw, O.OPS), draw_literal(draw, t))
    if k == 4:
        return O.IsNull(pick(draw, typed)[0], draw(st.booleans()))
    if k == 5:
        return O.Const(True)
    if k <= 7:
        a, b = draw_expr(draw, typed, depth - 1), draw_expr(draw, typed, depth - 1)
        return O.And(a, b) if k == 6 else O.Or(a, b)
    return O.Not(draw_expr(draw, typed, depth - 1))


@st.composite
def exprs(draw, typed):
    return draw_expr(draw, typed)


def draw_mask(draw, col: str, kind: str):
    if kind == "str":
        return pick(draw, [O.MaskConst("***"), O.MaskUpper(col), O.MaskConst(None)])
    return pick(
        draw,
        [O.MaskArith(col, "%", 10), O.MaskArith(col, "*", 0), O.MaskConst(-1), O.MaskConst(None)],
    )


SUBJECTS = USERS + ROLES + ["*"]
ACTIONS = ["select"] * 4 + ["unmask", "unmask", "*", "insert"]
EFFECTS = ["allow"] * 3 + ["deny"]


@st.composite
def policies(draw, tn: str, columns):
    """5-15 lines of every type for table d.<tn> with columns [(name, type, nullable)]."""
    names = [c for c, _, _ in columns]
    typed = [(c, t) for c, t, _ in columns]
    table_res = ["d", f"d.{tn}", f"d.{tn}", "*", "d.*", f"*.{tn}", "x", "d.other"]
    out, tagged, masked = [], set(), set()
    for _ in range(draw(st.integers(5, 15))):
        kind = pick(draw, ["p"] * 4 + ["g", "g2", "p2", "p3"])
        if kind == "p":
            r = draw(st.integers(0, 4))
            if r == 0:
                res = pick(draw, table_res)
            elif r == 1:
                res = pick(draw, TAGS)
            else:
                c = pick(draw, names)
                res = pick(draw, [f"d.{tn}.{c}"] * 3 + [f"*.*.{c}", f"d.*.{c}", f"d.{tn}.*"])
            line = ("p", pick(draw, SUBJECTS), res, pick(draw, ACTIONS), pick(draw, EFFECTS))
        elif kind == "g":
            member, role = pick(draw, SUBJECTS), pick(draw, ROLES)
            if member == role:
                continue
            line = ("g", member, role)
        elif kind == "g2":
            res = pick(draw, ["d", f"d.{tn}"] + [f"d.{tn}.{c}" for c in names])
            tag = pick(draw, TAGS)
            key = (res, tag.split("=")[0])
            if key in tagged:  # one value per (resource, key): the contract does not say which wins
                continue
            tagged.add(key)
            line = ("g2", res, tag)
        elif kind == "p2":
            spec = draw(st.integers(0, 2))
            if spec == 0:
                cols = "*"
            else:
                chosen = [c for c in names if draw(st.booleans())] or [pick(draw, names)]
                cols = " ".join(chosen) if spec == 1 else "* " + " ".join("-" + c for c in chosen)
            where = pick(draw, [f"d.{tn}"] * 4 + ["d.*", "d.other"])
            line = (
                "p2",
                pick(draw, SUBJECTS),
                where,
                f"f{len(out)}",
                draw_expr(draw, typed).sql(),
                cols,
            )
        else:
            c, t = pick(draw, typed)
            if c in masked:  # one mask per column: the contract does not say which of two wins
                continue
            masked.add(c)
            res = pick(draw, [f"d.{tn}.{c}"] * 3 + [f"*.{tn}.{c}", f"d.*.{c}"])
            line = ("p3", res, draw_mask(draw, c, t).sql())
        out.append(line)
    return out


@st.composite
def queries(draw, tn: str, columns):
    """SELECT * / columns / aggregates [WHERE] [GROUP BY] [ORDER BY], naming any table column
    (visible to the user or not)."""
    typed = [(c, t) for c, t, _ in columns]
    names = [c for c, _ in typed]
    table = f"d.{tn}"
    where = draw_expr(draw, typed) if draw(st.booleans()) else None
    kind = draw(st.integers(0, 5))
    if kind <= 1:
        order = pick(draw, names) if draw(st.booleans()) else None
        return O.Query(table, None, where=where, order_by=order)
    if kind <= 3:
        chosen = [c for c in names if draw(st.integers(0, 2)) == 0] or [pick(draw, names)]
        if draw(st.booleans()):
            chosen.reverse()
        order = pick(draw, chosen) if draw(st.booleans()) else None
        return O.Query(table, tuple(chosen), where=where, order_by=order)
    aggs = [("count", None, "n")]
    for i in range(draw(st.integers(0, 2))):
        aggs.append((pick(draw, ["count", "min", "max"]), pick(draw, names), f"a{i}"))
    if kind == 4:
        return O.Query(table, (), aggs=tuple(aggs), where=where)
    g = pick(draw, names)
    order = g if draw(st.booleans()) else None
    return O.Query(table, (g,), aggs=tuple(aggs), where=where, group_by=g, order_by=order)


# --------------------------------------------------------------------------------------------
# The differential property
# --------------------------------------------------------------------------------------------


def features(lines, table: str, columns, rows, user: str) -> list[str]:
    """What the oracle's view exercises for one user (reported as Hypothesis events)."""
    try:
        rel = O.view(lines, table, [c for c, _, _ in columns], rows, user)
    except O.Refused:
        return ["view: refused"]
    out = []
    if len(rel.columns) < len(columns):
        out.append("view: columns hidden")
    if len(rel.rows) < len(rows):
        out.append("view: rows filtered")
    if rel.masked:
        out.append("view: masked column")
    if rel.hidden_cells:
        out.append("view: cells hidden (cell-level NULL)")
    return out


@pytest.mark.slow
@SETTINGS
@given(st.data())
def test_lk_sql_matches_oracle(harness, data):
    """Random table, two random policies in turn, two random queries per user and policy."""
    h = harness
    tn = h.next_name()
    columns, rows = data.draw(tables(), label="table")
    full = h.load(tn, columns, rows)
    names = [c for c, _, _ in columns]
    for _ in range(2):
        lines = data.draw(policies(tn, columns), label="policy")
        h.set_policy(lines, quote_all=data.draw(st.booleans(), label="quote_all"))
        for user in USERS:
            for f in features(lines, full, columns, rows, user):
                event(f)
            for _ in range(2):
                q = data.draw(queries(tn, columns), label=f"query for {user}")
                event(f"outcome: {compare(h, lines, names, rows, user, q)}")


# --------------------------------------------------------------------------------------------
# Hand-written examples, one group per rule: the oracle's answer is checked against a
# hand-computed one, then lk.sql against the oracle.
# --------------------------------------------------------------------------------------------

COLS = [
    ("id", "int", False),
    ("region", "str", True),
    ("amount", "int", True),
    ("ssn", "str", True),
]
NAMES = [c for c, _, _ in COLS]
ROWS = [
    {"id": 1, "region": "eu", "amount": 10, "ssn": "a"},
    {"id": 2, "region": "us", "amount": -3, "ssn": "b"},
    {"id": 3, "region": "eu", "amount": -5, "ssn": "ab"},
    {"id": 4, "region": "us", "amount": 7, "ssn": None},
    {"id": 5, "region": None, "amount": None, "ssn": "zz"},
]
ALL = [tuple(r[c] for c in NAMES) for r in ROWS]


@pytest.fixture
def orders(harness):
    """A fresh table d.<t> holding ROWS; returns its name."""
    return harness.load(harness.next_name(), COLS, ROWS)


def W(text: str):
    return O.parse_expr(text)


def expect(
    h: Harness,
    lines,
    user: str,
    q: O.Query,
    columns=None,
    rows=None,
    *,
    kind="ok",
    ordered: bool = False,
    names=NAMES,
    data=ROWS,
):
    """The oracle gives exactly this answer, and lk.sql agrees with the oracle."""
    h.set_policy(lines)
    want = O.run(q, lines, names, data, user)
    assert want.kind == kind, want
    if kind == "ok":
        assert want.columns == columns
        if ordered:
            assert want.rows == rows
        else:
            assert O.rows_sorted(want.rows) == O.rows_sorted(rows)
    compare(h, lines, names, data, user, q)


# Rule 1: deny by default; deny beats allow; a deny on db/table refuses, on a column removes it.


def test_rule1_deny_by_default(harness, orders):
    lines = [("p", "bob", orders, "select", "allow"), ("p", "alice", orders, "insert", "allow")]
    expect(harness, lines, "alice", O.Query(orders), kind="denied")
    expect(harness, lines, "carol", O.Query(orders, ("id",)), kind="denied")
    expect(harness, lines, "bob", O.Query(orders), NAMES, ALL)


def test_rule1_deny_on_table_or_database_beats_allow(harness, orders):
    db_allow = ("p", "alice", "d", "select", "allow")
    for deny in [
        ("p", "alice", orders, "select", "deny"),
        ("p", "alice", "d", "*", "deny"),
        ("p", "*", "d.*", "select", "deny"),
        ("p", "role:a", orders, "select", "deny"),
    ]:
        lines = [db_allow, ("g", "alice", "role:a"), deny]
        expect(harness, lines, "alice", O.Query(orders), kind="denied")
    # A deny for another action leaves select alone.
    lines = [db_allow, ("p", "alice", orders, "insert", "deny")]
    expect(harness, lines, "alice", O.Query(orders), NAMES, ALL)


def test_rule1_deny_on_column_removes_it(harness, orders):
    lines = [
        ("p", "alice", orders, "select", "allow"),
        ("p", "*", f"{orders}.ssn", "select", "deny"),
    ]
    expect(harness, lines, "alice", O.Query(orders), NAMES[:3], [r[:3] for r in ALL])
    expect(harness, lines, "alice", O.Query(orders, ("ssn",)), kind="missing")
    # Denying every column leaves nothing to read: refused.
    lines.append(("p", "alice", f"{orders}.*", "select", "deny"))
    expect(harness, lines, "alice", O.Query(orders), kind="denied")


# Rule 2: every grant is a (condition, columns) pair; no pair refuses the table.


def test_rule2_column_grant_is_true_and_that_column(harness, orders):
    lines = [
        ("p", "alice", f"{orders}.region", "select", "allow"),
        ("p", "alice", "d.*.id", "select", "allow"),
    ]
    expect(harness, lines, "alice", O.Query(orders), ["id", "region"], [r[:2] for r in ALL])


def test_rule2_filter_is_its_condition_and_columns(harness, orders):
    lines = [("p2", "alice", orders, "eu_only", "region = 'eu'", "* -ssn")]
    expect(
        harness,
        lines,
        "alice",
        O.Query(orders),
        ["id", "region", "amount"],
        [(1, "eu", 10), (3, "eu", -5)],
    )
    expect(
        harness, lines, "alice", O.Query(orders, (), aggs=(("count", None, "n"),)), ["n"], [(2,)]
    )


def test_rule2_no_pair_refuses(harness, orders):
    lines = [
        ("p", "alice", orders, "unmask", "allow"),
        ("p", "alice", "d.other", "select", "allow"),
        ("p2", "alice", "d.other", "f", "TRUE", "*"),
        ("p3", f"{orders}.ssn", "'***'"),
    ]
    expect(harness, lines, "alice", O.Query(orders), kind="denied")


# Rule 3: cells are the union of the pairs.


def test_rule3_cells_are_the_union_of_pairs(harness, orders):
    lines = [
        ("p2", "alice", orders, "f1", "region = 'eu'", "id amount"),
        ("p2", "role:a", orders, "f2", "amount > 0", "id region"),
        ("g", "alice", "role:a"),
    ]
    union = [(1, "eu", 10), (3, None, -5), (4, "us", None)]
    expect(harness, lines, "alice", O.Query(orders), ["id", "region", "amount"], union)
    expect(
        harness, lines, "alice", O.Query(orders, (), aggs=(("count", None, "n"),)), ["n"], [(3,)]
    )
    # Hidden cells read NULL everywhere in the query, also in WHERE and GROUP BY.
    expect(
        harness, lines, "alice", O.Query(orders, ("id",), where=W("amount IS NULL")), ["id"], [(4,)]
    )
    expect(
        harness,
        lines,
        "alice",
        O.Query(orders, ("region",), aggs=(("count", None, "n"),), group_by="region"),
        ["region", "n"],
        [("eu", 1), ("us", 1), (None, 1)],
    )
    # A grant of all rows shows every row; its columns show everywhere.
    lines.append(("p", "alice", f"{orders}.id", "select", "allow"))
    expect(
        harness,
        lines,
        "alice",
        O.Query(orders),
        ["id", "region", "amount"],
        union + [(2, None, None), (5, None, None)],
    )


# Rule 4: a column the user lacks does not exist for that user.


def test_rule4_hidden_column_fails_like_a_missing_one(harness):
    h = harness
    t = h.load(h.next_name(), COLS, ROWS)
    u = h.load(h.next_name(), COLS[:3], [{c: r[c] for c in NAMES[:3]} for r in ROWS], keep=True)
    lines = [("p2", "alice", t, "f", "TRUE", "* -ssn"), ("p", "alice", u, "select", "allow")]
    h.set_policy(lines)
    for q in [
        "SELECT ssn FROM {}",
        "SELECT id FROM {} WHERE ssn = 'a'",
        "SELECT ssn, count(*) FROM {} GROUP BY ssn",
        "SELECT * FROM {} ORDER BY ssn",
        "SELECT upper(ssn) AS s FROM {}",
    ]:
        hidden, missing = h.sql(q.format(t), "alice"), h.sql(q.format(u), "alice")
        assert hidden[0] == missing[0] == "sqlerror", (q, hidden, missing)
        assert hidden[1].replace(t, u) == missing[1], (q, hidden, missing)
    assert h.sql(f"SELECT * FROM {t}", "alice")[1] == NAMES[:3]
    expect(h, lines, "alice", O.Query(t, ("id",), where=W("ssn IS NULL")), kind="missing")


# Rule 5: masks apply everywhere unless the user may unmask.


def test_rule5_masks_everywhere(harness, orders):
    lines = [
        ("p", "alice", orders, "select", "allow"),
        ("p3", f"{orders}.ssn", "upper(ssn)"),
        ("p3", f"{orders}.amount", "amount % 10"),
    ]
    masked = [
        (1, "eu", 0, "A"),
        (2, "us", -3, "B"),
        (3, "eu", -5, "AB"),
        (4, "us", 7, None),
        (5, None, None, "ZZ"),
    ]
    expect(harness, lines, "alice", O.Query(orders), NAMES, masked)
    expect(harness, lines, "alice", O.Query(orders, ("id",), where=W("ssn = 'a'")), ["id"], [])
    expect(harness, lines, "alice", O.Query(orders, ("id",), where=W("ssn = 'A'")), ["id"], [(1,)])
    expect(harness, lines, "alice", O.Query(orders, ("id",), where=W("amount >= 10")), ["id"], [])
    expect(
        harness,
        lines,
        "alice",
        O.Query(orders, ("id", "amount"), order_by="amount"),
        ["id", "amount"],
        [(3, -5), (2, -3), (1, 0), (4, 7), (5, None)],
        ordered=True,
    )
    expect(
        harness,
        lines,
        "alice",
        O.Query(orders, ("ssn",), aggs=(("count", None, "n"),), group_by="ssn"),
        ["ssn", "n"],
        [("A", 1), ("B", 1), ("AB", 1), (None, 1), ("ZZ", 1)],
    )
    expect(
        harness,
        lines,
        "alice",
        O.Query(orders, (), aggs=(("max", "amount", "hi"),)),
        ["hi"],
        [(7,)],
    )


def test_rule5_unmask_on_column_table_or_database(harness, orders):
    base = [("p", "*", orders, "select", "allow"), ("p3", f"{orders}.ssn", "'***'")]
    q = O.Query(orders, ("id", "ssn"), where=W("id < 3"))
    for grant in [
        ("p", "alice", f"{orders}.ssn", "unmask", "allow"),
        ("p", "alice", orders, "unmask", "allow"),
        ("p", "alice", "d", "*", "allow"),
        ("p", "alice", "tag:pii=true", "unmask", "allow"),
    ]:
        lines = [*base, ("g2", f"{orders}.ssn", "tag:pii=true"), grant]
        expect(harness, lines, "alice", q, ["id", "ssn"], [(1, "a"), (2, "b")])
        expect(harness, lines, "bob", q, ["id", "ssn"], [(1, "***"), (2, "***")])
        # A deny for unmask beats the allow.
        denied = [*lines, ("p", "role:b", "d", "unmask", "deny"), ("g", "alice", "role:b")]
        expect(harness, denied, "alice", q, ["id", "ssn"], [(1, "***"), (2, "***")])


def test_rule5_filters_and_masks_see_stored_values(harness, orders):
    lines = [
        ("p2", "alice", orders, "f", "ssn = 'a' OR amount < 0", "id ssn amount"),
        ("p3", f"{orders}.ssn", "upper(ssn)"),
        ("p3", f"{orders}.amount", "amount * 0"),
    ]
    expect(
        harness,
        lines,
        "alice",
        O.Query(orders),
        ["id", "amount", "ssn"],
        [(1, 0, "A"), (2, 0, "B"), (3, 0, "AB")],
    )


# Rule 6: tags inherit database -> table -> column; a column's own tag overrides.


def test_rule6_tags_inherit_and_override(harness):
    h = harness
    t = h.load(h.next_name(), COLS, ROWS)
    u = h.load(h.next_name(), COLS[:2], [{c: r[c] for c in NAMES[:2]} for r in ROWS], keep=True)
    lines = [
        ("g2", "d", "tag:pii=false"),
        ("g2", t, "tag:pii=true"),
        ("g2", f"{t}.id", "tag:pii=false"),
        ("g2", f"{t}.region", "tag:pii=false"),
        ("g2", f"{t}.region", "tag:lvl=1"),
        ("p", "alice", "tag:pii=false", "select", "allow"),
        ("p", "bob", "tag:pii=true", "select", "allow"),
        ("p", "carol", "tag:pii=false", "select", "allow"),
        ("p", "carol", "tag:lvl=1", "select", "deny"),
    ]
    expect(h, lines, "alice", O.Query(t), ["id", "region"], [r[:2] for r in ALL])
    expect(h, lines, "bob", O.Query(t), ["amount", "ssn"], [r[2:] for r in ALL])
    expect(h, lines, "carol", O.Query(t), ["id"], [r[:1] for r in ALL])
    # The other table has no tags of its own: everything inherits the database's pii=false.
    two = [r[:2] for r in ALL]
    data2 = [{c: r[c] for c in NAMES[:2]} for r in ROWS]
    expect(h, lines, "alice", O.Query(u), ["id", "region"], two, names=NAMES[:2], data=data2)
    expect(h, lines, "bob", O.Query(u), kind="denied", names=NAMES[:2], data=data2)


# Subjects: users, `*`, roles through nested g lines; field quoting.


def test_subjects_roles_nest_and_star(harness, orders):
    lines = [
        ("g", "alice", "role:a"),
        ("g", "role:a", "role:b"),
        ("p", "role:b", orders, "select", "allow"),
        ("p", "*", f"{orders}.id", "select", "allow"),
    ]
    expect(harness, lines, "alice", O.Query(orders), NAMES, ALL)
    expect(harness, lines, "carol", O.Query(orders), ["id"], [r[:1] for r in ALL])
    lines.append(("g", "*", "role:b"))
    expect(harness, lines, "carol", O.Query(orders), NAMES, ALL)


def test_quoted_fields(harness):
    rows = [dict(r) for r in ROWS]
    rows[1]["ssn"] = "a,b"
    h = harness
    t = h.load(h.next_name(), COLS, rows)
    lines = [("p2", "alice", t, "f", "ssn = 'a,b' OR id IN (4, 5)", "id ssn")]
    h.set_policy(lines)  # policy_text quotes the comma outside parentheses
    got = h.sql(f"SELECT * FROM {t}", "alice")
    assert got[0] == "ok" and O.rows_sorted(got[2]) == [(2, "a,b"), (4, None), (5, "zz")], got


def test_rule5_masks_apply_in_joins(harness, orders):
    h = harness
    sql = f"SELECT a.id AS x, b.id AS y FROM {orders} a JOIN {orders} b ON a.ssn = b.ssn"
    for mask, unmask in [("'***'", False), ("upper(ssn)", False), ("'***'", True)]:
        lines = [("p", "alice", orders, "select", "allow"), ("p3", f"{orders}.ssn", mask)]
        if unmask:
            lines.append(("p", "alice", f"{orders}.ssn", "unmask", "allow"))
        h.set_policy(lines)
        rel = O.view(lines, orders, NAMES, ROWS, "alice")
        want = [
            (a["id"], b["id"])
            for a in rel.rows
            for b in rel.rows
            if a["ssn"] is not None and a["ssn"] == b["ssn"]
        ]
        assert len(want) == (4 if unmask or mask != "'***'" else 25)
        got = h.sql(sql, "alice")
        assert got[0] == "ok" and O.rows_sorted(got[2]) == O.rows_sorted(want), (lines, got)


def test_recreated_table_matches_oracle(harness):
    """Drop a table (purge) and create it again under the same name: lk.sql must read the new
    table. Table id, location and version all repeat here (SQLite reuses the freed id, purge
    frees the location, both tables are at version 1), so the compiled-query cache must also
    key on the table's creation time."""
    h = harness
    lines = [("p", "alice", "d", "select", "allow")]
    q = O.Query("d.again", None)
    for rows in (ROWS[:2], ROWS[2:]):
        h.tables.clear()  # keep the fixed name; drop it by hand below
        h.load("again", COLS, rows)
        h.set_policy(lines)
        want = O.run(q, lines, NAMES, rows, "alice")
        got = h.sql(q.sql(), "alice")
        h.lk.catalog.drop_table("d.again", purge=True)
        assert got[0] == "ok" and O.rows_sorted(got[2]) == O.rows_sorted(want.rows), (
            f"lk.sql read a stale plan for a re-created table: {got}"
        )


# --------------------------------------------------------------------------------------------
# Rule 10 (and 12): every operation on a table, not only queries
# --------------------------------------------------------------------------------------------

OPS = ["describe", "history", "partitions", "compact", "vacuum_dry_run", "set_properties"]
OP_ACTIONS = ["describe", "alter", "delete", "delete", "insert", "select", "*"]
# A third of the query test's examples: each runs seven operations for three users.
OP_SETTINGS = settings(SETTINGS, max_examples=max(10, SETTINGS.max_examples // 3))


@st.composite
def op_policies(draw, tn: str, columns):
    """The query policies plus grants and denies of the actions operations need."""
    lines = draw(policies(tn, columns))
    res = ["d", f"d.{tn}", f"d.{tn}", "*", "d.*", "x"]
    for _ in range(draw(st.integers(1, 6))):
        effect = pick(draw, ["allow"] * 4 + ["deny"])
        action = pick(draw, OP_ACTIONS)
        lines.append(("p", pick(draw, SUBJECTS), pick(draw, res), action, effect))
    return lines


def run_op(lk, op: str, table: str, user: str):
    """(outcome, answer) of one operation through the public API."""
    calls = {
        "describe": lambda: lk.catalog.describe(table, user=user),
        "history": lambda: lk.history(table, user=user),
        "partitions": lambda: lk.catalog.partitions(table, user=user),
        "compact": lambda: lk.compact(table, user=user),
        "vacuum_dry_run": lambda: lk.vacuum(table, dry_run=True, user=user),
        "set_properties": lambda: lk.catalog.set_properties(table, {"k": "v"}, user=user),
        "delete_all": lambda: lk.delete(table, user=user),
    }
    try:
        return ("ok", calls[op]())
    except TableNotAccessible as e:
        return ("missing", str(e))
    except AccessDenied as e:
        return ("denied", str(e))


def compare_op(h, op: str, lines, full: str, names, rows, user: str) -> str:
    want = O.operation(op, lines, full, names, rows, user)
    got = run_op(h.lk, op, full, user)
    ctx = f"\nop={op} user={user}\npolicy:\n{O.policy_text(lines)}oracle={want}\nlake={got}"
    assert got[0] == want[0], ctx
    if want[0] == "missing":
        # Exactly the answer for a table that does not exist.
        other = run_op(h.lk, op, "d.no_such_table", user)
        assert other[0] == "missing", ctx
        assert got[1].replace(full, "T") == other[1].replace("d.no_such_table", "T"), ctx
    elif want[0] == "ok" and op == "describe":
        d = got[1]
        assert [c["name"] for c in d["columns"]] == want[1], ctx
        assert ("num_rows" in d) == want[2] and "location" not in d, ctx
    elif want[0] == "ok" and op in ("compact", "vacuum_dry_run"):
        if not want[1]:
            assert not got[1], "a partial view learns nothing of the files" + ctx
    elif want[0] == "ok" and op == "delete_all":
        assert got[1] == {"num_deleted_rows": want[1]}, ctx
    return want[0]


@OP_SETTINGS
@given(st.data())
def test_operations_match_oracle(harness, data):
    """Random table and policy; every operation for every user, then one user deletes."""
    h = harness
    tn = h.next_name()
    columns, rows = data.draw(tables(), label="table")
    full = h.load(tn, columns, rows)
    names = [c for c, _, _ in columns]
    lines = data.draw(op_policies(tn, columns), label="policy")
    h.set_policy(lines)
    for user in USERS:
        for op in OPS:
            event(f"{op}: {compare_op(h, op, lines, full, names, rows, user)}")
    user = data.draw(st.sampled_from(USERS), label="deleting user")
    event(f"delete_all: {compare_op(h, 'delete_all', lines, full, names, rows, user)}")


# --------------------------------------------------------------------------------------------
# Rule 9: principals
# --------------------------------------------------------------------------------------------

NAME_ALPHABET = st.sampled_from(list("abAB:*, \n_-.") + ["role:", "ROLE:", "Role:"])


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(NAME_ALPHABET, max_size=6).map("".join))
def test_user_names_match_oracle(harness, name):
    ok = O.valid_user(name)
    for call in (
        lambda: harness.lk.sql("SELECT 1 AS x", user=name),
        lambda: harness.lk.catalog.list_tables(user=name),
        lambda: harness.lk.history("d.no_such_table", user=name),
    ):
        try:
            call()
            outcome = "ok"
        except InvalidArgument:
            outcome = "invalid"
        except AccessDenied:
            outcome = "denied"
        assert (outcome != "invalid") == ok, (repr(name), outcome)


# --------------------------------------------------------------------------------------------
# Rule 11: locations
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(harness):
    """Folders and symlinks beside the harness lake: data/{a,a/b,ab}, data/up -> data/a/b,
    data/link -> the lake root, data/pol -> the policy folder."""
    base = harness.base
    for d in ("data/a/b", "data/ab", "other"):
        (base / d).mkdir(parents=True, exist_ok=True)
    for name, to in (("up", base / "data/a/b"), ("link", base / "lake"), ("pol", base / "policy")):
        if not (base / "data" / name).exists():
            os.symlink(to, base / "data" / name)
    return base


LOCATION_PREFIXES = ["data", "data/a", "data/a/b", "data/ab", ".", "lake", "policy", "data/up"]
LOCATION_TARGETS = [
    "data/a/x.csv",
    "data/ab/x.csv",
    "data/a/b/x.csv",
    "data/up/x.csv",
    "data/a/../ab/x.csv",
    "data/a/b/../../ab/x.csv",
    "data/link/x.csv",
    "data/link/d/x.csv",
    "data/pol/policy.csv",
    "lake/x.csv",
    "other/x.csv",
    "data",
    ".",
]


@st.composite
def location_policies(draw, base: Path):
    out = []
    for _ in range(draw(st.integers(1, 6))):
        prefix = pick(draw, LOCATION_PREFIXES)
        res = "*" if draw(st.integers(0, 9)) == 0 else f"location:{os.path.realpath(base / prefix)}"
        effect = pick(draw, ["allow"] * 3 + ["deny"])
        out.append(("p", pick(draw, SUBJECTS), res, pick(draw, ["select", "*"]), effect))
    out += [("g", pick(draw, USERS), pick(draw, ROLES))]
    return out


@settings(max_examples=60, deadline=None, database=None)
@given(st.data())
def test_locations_match_oracle(harness, tree, data):
    h = harness
    lines = data.draw(location_policies(tree), label="policy")
    h.set_policy(lines + [("p", "etl", "*", "*", "allow")])
    own = [os.path.realpath(tree / "lake"), os.path.realpath(tree / "policy")]
    for user in USERS:
        for target in data.draw(
            st.lists(st.sampled_from(LOCATION_TARGETS), min_size=1, max_size=4)
        ):
            path = str(tree / target)
            # A folder is read with everything found beneath it, by its real path.
            found = [os.path.realpath(path)] + [
                os.path.realpath(os.path.join(d, f))
                for d, _, files in os.walk(path, followlinks=True)
                for f in files
            ]
            want = all(O.location_allowed(lines, user, f, own) for f in found)
            try:
                h.lk.ingest("d.loaded", path, user=user)
                got = "read"
            except AccessDenied as e:
                got = "refused" if "may not read that location" in str(e) else f"denied: {e}"
            except InvalidArgument as e:
                got = "read" if "does not exist" in str(e) or "holds no" in str(e) else str(e)
            ctx = f"\nuser={user} target={target}\npolicy:\n{O.policy_text(lines)}"
            assert got == ("read" if want else "refused"), got + ctx
            event(f"location: {got}")


# --------------------------------------------------------------------------------------------
# Rule 13: jobs
# --------------------------------------------------------------------------------------------

QUEUE_TOML = """\
[batch.compute.on_demand]
cpus = 2

[batch.queues.default]
priority = 1
compute = ["on_demand"]

[batch.queues.high]
priority = 10
compute = ["on_demand"]
"""


@pytest.fixture(scope="module")
def jobs_harness(tmp_path_factory, module_catalog, second_catalog):
    h = Harness(tmp_path_factory.mktemp("oracle-jobs"), toml=QUEUE_TOML, catalog=second_catalog)
    h.lk.batch.autostart = False  # jobs stay SUBMITTED: visibility needs no scheduler
    yield h
    h.lk.batch.close()
    h.close()


@st.composite
def queue_policies(draw):
    out = []
    for _ in range(draw(st.integers(2, 9))):
        action = pick(draw, ["submit", "submit", "describe", "alter", "*"])
        queues = ["queue:default", "queue:high", "queue:*"]
        res = pick(draw, queues if action == "submit" else [*queues, "*", "d"])
        effect = pick(draw, ["allow"] * 3 + ["deny"])
        out.append(("p", pick(draw, SUBJECTS), res, action, effect))
    for _ in range(draw(st.integers(0, 2))):
        out.append(("g", pick(draw, USERS), pick(draw, ROLES)))
    return out


@settings(max_examples=40, deadline=None, database=None)
@given(st.data())
def test_job_visibility_matches_oracle(jobs_harness, data):
    h = jobs_harness
    b = h.lk.batch
    lines = data.draw(queue_policies(), label="policy")
    h.set_policy(lines)
    owner = h.lk.owner.name
    jobs = []
    for submitter in [*USERS, None]:
        queue = data.draw(st.sampled_from(["default", "high"]), label="queue")
        may = submitter is None or O.allowed(lines, submitter, f"queue:{queue}", "submit")
        try:
            job = b.submit(["true"], user=submitter, queue=queue)
        except AccessDenied:
            assert not may, (submitter, queue, O.policy_text(lines))
            continue
        assert may, (submitter, queue, O.policy_text(lines))
        jobs.append((job.id, submitter, queue))
    ctx = f"\npolicy:\n{O.policy_text(lines)}jobs={jobs}"
    for user in [*USERS, owner]:  # a user named like the owner owns nothing of the owner's
        listed = {j.id for j in b.list(user=user)}
        for job_id, submitter, queue in jobs:
            see = O.may_see_job(lines, user, submitter, queue, "describe")
            control = O.may_see_job(lines, user, submitter, queue, "alter")
            assert (job_id in listed) == see, f"list user={user} job={job_id}" + ctx
            try:
                b.get(job_id, user=user)
                got = "seen"
            except JobError:
                got = "missing"
            assert got == ("seen" if see else "missing"), f"get user={user} {job_id}" + ctx
            try:
                b.cancel(job_id, user=user)
                got = "cancelled"
            except JobError:
                got = "missing"
            except AccessDenied:
                got = "denied"
            want = "cancelled" if control and see else ("denied" if see else "missing")
            assert got == want, f"cancel user={user} {job_id}" + ctx
