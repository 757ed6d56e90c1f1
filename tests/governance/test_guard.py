"""The guard holds by construction: whatever route a column takes to a predicate, no user
expression ever runs on a hidden row's value (issue 8, item 6).

Two kinds of proof, for every route (subquery alias, CTE, struct field, list element, lambda,
window, set operation, join, HAVING, lateral alias, alias column list, whole-row reference):
- DuckDB's physical plan: a predicate of the user's (marked 'zq') that DuckDB pushes into the
  scan, or into a filter stacked on it, reads the column only through the row filter's guard;
- results: a predicate that fails on the hidden rows' ssn ('abc') never fails, and every answer
  equals the reference lake's (bob's view materialised).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from catalog.store import TableInfo
from governance.access import View
from governance.context import QueryContext
from governance.passes.bind import bind
from governance.passes.guard import META_GUARD, guard
from governance.passes.names import name_columns
from governance.passes.parse import parse_query
from governance.passes.resolve import META_TABLE, resolve

from support.observe import same
from support.sqlpath import plan, raw_predicates, references, sql_lake, unguarded

MARK = "contains({x} || 'zq', '1zq')"  # never fails, so DuckDB pushes it down
FAIL = "CAST({x} AS INTEGER) > 0"  # fails on a hidden row only

# (route, query with {p} for the predicate over the value reached)
ROUTES = [
    ("direct", "SELECT id FROM hr.people WHERE {p:ssn}"),
    ("subquery alias", "SELECT count(*) AS n FROM (SELECT ssn AS x FROM hr.people) s WHERE {p:x}"),
    ("cte", "WITH c AS (SELECT ssn AS x, id FROM hr.people) SELECT id FROM c WHERE {p:x}"),
    (
        "cte column list",
        "WITH c(y) AS (SELECT ssn FROM hr.people) SELECT count(*) AS n FROM c WHERE {p:y}",
    ),
    (
        "struct field",
        "SELECT count(*) AS n FROM (SELECT {{'a': ssn}} AS s FROM hr.people) WHERE {p:s.a}",
    ),
    (
        "list element",
        "SELECT count(*) AS n FROM (SELECT [ssn] AS l FROM hr.people) WHERE {p:l[1]}",
    ),
    ("lambda", "SELECT id FROM hr.people WHERE len(list_filter([ssn], lambda v: {p:v})) > 0"),
    (
        "window",
        "SELECT count(*) AS n FROM (SELECT ssn, row_number() OVER (PARTITION BY ssn) AS rn "
        "FROM hr.people) WHERE {p:ssn}",
    ),
    (
        "set operation",
        "SELECT count(*) AS n FROM (SELECT CAST(id AS VARCHAR) AS x FROM hr.depts UNION ALL "
        "SELECT ssn FROM hr.people) WHERE {p:x}",
    ),
    (
        "join on",
        "SELECT d.dname FROM hr.depts d JOIN hr.people p ON d.id = p.id AND {p:p.ssn}",
    ),
    ("having", "SELECT ssn FROM hr.people GROUP BY ssn HAVING {p:ssn}"),
    ("lateral alias", "SELECT ssn AS x, id FROM hr.people WHERE {p:x}"),
    ("alias column list", "SELECT count(*) AS n FROM hr.people AS p(a, b, c, d) WHERE {p:d}"),
    (
        "whole row",
        "SELECT count(*) AS n FROM hr.people WHERE {p:struct_extract(people, 'ssn')}",
    ),
    (
        "derived star",
        "SELECT count(*) AS n FROM (SELECT * FROM hr.people) t WHERE {p:t.ssn}",
    ),
    (
        "lateral subquery",
        "SELECT count(*) AS n FROM hr.people, LATERAL (SELECT people.ssn AS x) l WHERE {p:l.x}",
    ),
]


def _query(template: str, predicate: str) -> str:
    class P:
        def __format__(self, spec: str) -> str:
            return predicate.format(x=spec)

    return template.format(p=P())


@pytest.fixture(scope="module")
def lakes(tmp_path_factory):
    base = Path(tmp_path_factory.mktemp("guard"))
    governed = sql_lake(base / "lake")
    refs = references(governed, base, users=("bob",))
    yield governed, refs["bob"]
    for lk in (governed, *refs.values()):
        lk.close()


@pytest.mark.parametrize(("route", "template"), ROUTES, ids=[r for r, _ in ROUTES])
def test_no_pushed_predicate_reads_a_hidden_value(lakes, route, template):
    governed, _ = lakes
    sql = governed.queries.compile(governed.principal("bob"), _query(template, MARK)).sql
    marked = [p for p in raw_predicates(plan(sql)) if "zq" in p]
    for predicate in marked:
        assert not unguarded(predicate, "ssn"), f"{route}: {predicate}"


@pytest.mark.parametrize(("route", "template"), ROUTES, ids=[r for r, _ in ROUTES])
def test_a_predicate_that_fails_on_hidden_rows_never_fails(lakes, route, template):
    governed, reference = lakes
    for predicate in (FAIL, MARK, "{x} IS NOT NULL"):
        got = same(governed, reference, _query(template, predicate), "bob")
        assert got.kind == "rows", (route, got)


def test_the_plan_pushes_the_marker_below_everything(lakes):
    # The plan check is meaningful: DuckDB does push the marker down to the scan.
    governed, _ = lakes
    q = _query(ROUTES[1][1], MARK)
    sql = governed.queries.compile(governed.principal("bob"), q).sql
    assert any("zq" in p for p in raw_predicates(plan(sql)))


def test_harmless_comparisons_and_join_keys_stay_unguarded_and_pushed(lakes):
    governed, reference = lakes
    q = (
        "SELECT p.name, d.dname FROM hr.people p JOIN hr.depts d ON p.id = d.id "
        "WHERE p.id >= 2 AND p.name <> 'Bo' AND p.id BETWEEN 0 AND 1000 "
        "AND p.region IN ('eu', 'us') AND p.ssn LIKE '%1%' AND p.name IS NOT NULL"
    )
    sql = governed.queries.compile(governed.principal("bob"), q).sql
    relation = sql.split('AS "__raw"')[0]
    assert "THEN" not in relation  # no column of hr.people is guarded
    pushed = " ".join(raw_predicates(plan(sql)))
    assert "id >= 2" in pushed and "name != 'Bo'" in pushed  # into the scan, as before
    same(governed, reference, q, "bob")


def test_errors_from_visible_rows_still_surface(lakes):
    governed, reference = lakes
    got = same(governed, reference, "SELECT id FROM hr.people WHERE CAST(name AS INT) > 0", "bob")
    assert got.kind == "error" and got.error == "SQLError"


# --- routes composed at random ---------------------------------------------------------------

# Each route takes (relation, value) to a new relation whose `value` carries the old one.
COMPOSABLE = {
    "alias": ("(SELECT {v} AS x{n}, id FROM {r}) AS r{n}", "x{n}"),
    "cte": ("c{n}", "x{n}"),
    "struct": ("(SELECT {{'f': {v}}} AS s{n}, id FROM {r}) AS r{n}", "s{n}.f"),
    "list": ("(SELECT [{v}] AS l{n}, id FROM {r}) AS r{n}", "l{n}[1]"),
    "union": ("(SELECT {v} AS x{n}, id FROM {r} UNION ALL SELECT '7', -1) AS r{n}", "x{n}"),
    "window": (
        "(SELECT {v} AS x{n}, id, row_number() OVER (PARTITION BY {v}) AS w{n} FROM {r}) AS r{n}",
        "x{n}",
    ),
    "lateral": ("(SELECT {v} AS x{n}, x{n} AS y{n}, id FROM {r}) AS r{n}", "y{n}"),
    "group": ("(SELECT {v} AS x{n}, min(id) AS id FROM {r} GROUP BY 1) AS r{n}", "x{n}"),
    "columns": ("(SELECT {v}, id FROM {r}) AS r{n}(x{n}, id)", "x{n}"),
}


def _composed(routes: list[str], predicate: str) -> str:
    relation, value, ctes = "hr.people", "ssn", []
    for n, route in enumerate(routes):
        rel, val = COMPOSABLE[route]
        if route == "cte":
            ctes.append(f"c{n} AS (SELECT {value} AS x{n}, id FROM {relation})")
        relation = rel.format(v=value, r=relation, n=n)
        value = val.format(n=n)
    with_ = f"WITH {', '.join(ctes)} " if ctes else ""
    return f"{with_}SELECT count(*) AS n FROM {relation} WHERE {predicate.format(x=value)}"


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(st.sampled_from(sorted(COMPOSABLE)), min_size=1, max_size=4))
def test_composed_routes_never_reach_a_hidden_value(lakes, routes):
    governed, reference = lakes
    bob = governed.principal("bob")
    sql = governed.queries.compile(bob, _composed(routes, MARK)).sql
    for predicate in raw_predicates(plan(sql)):
        assert "zq" not in predicate or not unguarded(predicate, "ssn"), (routes, predicate)
    for predicate in (FAIL, MARK):
        got = same(governed, reference, _composed(routes, predicate), "bob")
        assert got.kind == "rows", (routes, got)


# --- the pass alone, on fixture files -------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "guard.sql"


class _Schema:
    def __init__(self, schema):
        self.schema = schema


def _fixture_ctx() -> QueryContext:
    people = pa.schema(
        [
            ("id", pa.int64()),
            ("region", pa.string()),
            ("name", pa.string()),
            ("ssn", pa.string()),
            ("salary", pa.int64()),
            ("born", pa.date32()),
            ("tags", pa.list_(pa.string())),
        ]
    )
    depts = pa.schema([("id", pa.int64()), ("dname", pa.string()), ("budget", pa.float64())])
    schemas = {"people": people, "depts": depts}
    views = {
        "people": View(
            tuple(people.names),
            frozenset(),
            row_cond="(\"region\" = 'eu')",
            masks={"salary": '("salary" // 1000) * 1000'},
            whole=False,
        ),
        "depts": View(tuple(depts.names), frozenset(depts.names)),
    }

    class Access:
        def view(self, user, table, snapshot):
            return views[table.name]

    def table(db: str, name: str) -> TableInfo:
        return TableInfo(
            1 if name == "people" else 2,
            db,
            name,
            "/nowhere",
            "GOVERNED",
            "[]",
            (),
            "",
            {},
            "",
            datetime.now(UTC),
            0,
        )

    return QueryContext(
        user="u",
        lookup=table,
        snapshot=lambda info, travel: _Schema(schemas[info.name]),
        pin=lambda infos: {i.id: (1, False) for i in infos},
        access=Access(),
    )


def _cases() -> list[tuple[str, str, str]]:
    """(title, query, expected) from the fixture file: `# title` lines, then the query, then a
    line `people: a, b; q: c` listing the guarded columns of each hr.people reference."""
    cases, title, lines = [], "", []
    for raw in FIXTURES.read_text().splitlines() + [""]:
        line = raw.strip()
        if line.startswith("#"):
            title = line.lstrip("# ").strip()
        elif line:
            lines.append(line)
        elif lines:
            cases.append((title, " ".join(lines[:-1]), lines[-1]))
            lines = []
    return cases


def _guarded(query: str) -> str:
    ctx = _fixture_ctx()
    tree = guard(bind(resolve(name_columns(parse_query(query)), ctx), ctx), ctx)
    parts = []
    for node in tree.find_all(exp.Table):
        if META_TABLE in node.meta and node.name == "people":
            cols = sorted(node.meta.get(META_GUARD, ()))
            parts.append(f"{node.alias_or_name}: {', '.join(cols) or '-'}")
    return "; ".join(parts)


@pytest.mark.parametrize(("title", "query", "expected"), _cases(), ids=[c[0] for c in _cases()])
def test_guard_fixture(title, query, expected):
    assert _guarded(query) == expected
