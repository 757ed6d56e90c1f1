"""Result column names come from the user's own SQL text (issue 8 leak 2, rule 12).

`SELECT (SELECT max(id) FROM hr.people)` used to return a column named after the whole rewritten
subquery: the denied column, the policy's filter and mask SQL, absolute Parquet paths. Now every
user (admins included) gets names from their own text, the same on the governed lake as on the
reference lake that holds only their view.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from governance.passes.names import name_columns
from governance.passes.parse import parse_query

from support.observe import outcome, same
from support.sqlpath import references, sql_lake

FIXTURES = Path(__file__).parent / "fixtures" / "names.sql"


def _cases() -> list[tuple[str, str, str]]:
    cases, title, sql = [], "", []
    for line in FIXTURES.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("# ").strip()
        elif line.strip():
            sql.append(line.strip().rstrip(";"))
            if len(sql) == 2:
                cases.append((title, sql[0], sql[1]))
                sql = []
    return cases


@pytest.mark.parametrize(("title", "query", "expected"), _cases(), ids=[c[0] for c in _cases()])
def test_names_fixture(title, query, expected):
    assert name_columns(parse_query(query)).sql(dialect="duckdb") == expected


QUERIES = [
    "SELECT (SELECT max(id) FROM hr.people)",
    "SELECT EXISTS (SELECT 1 FROM hr.people WHERE id > 1)",
    "SELECT 1 IN (SELECT id FROM hr.people)",
    "SELECT ARRAY(SELECT id FROM hr.people ORDER BY id)",
    "SELECT typeof((SELECT salary FROM hr.people LIMIT 1))",
    "SELECT struct_pack(a := (SELECT max(id) FROM hr.people))",
    "SELECT (SELECT max(id) FROM hr.people) UNION ALL SELECT 7",
    "SELECT 7 AS x UNION ALL SELECT (SELECT max(id) FROM hr.people)",
    "SELECT *, (SELECT count(*) FROM hr.people), dname || '!' FROM hr.depts",
    "SELECT (SELECT min(id) FROM hr.people), (SELECT min(id) FROM hr.people)",
    "SELECT * FROM (SELECT (SELECT max(id) FROM hr.people), 2)",
    "WITH c AS (SELECT (SELECT max(salary) FROM hr.people)) SELECT * FROM c",
    "SELECT hr.people.id + 1, hr.people.id, people.region FROM hr.people",
    "SELECT p.*, (SELECT max(d.id) FROM hr.depts d WHERE d.id = p.id) FROM hr.people p",
    "SELECT id, id FROM hr.people",
    "SELECT unnest([(SELECT max(id) FROM hr.people)])",
]

# Nothing of the rewrite may show: paths, the relation plumbing, policy SQL, hidden names.
REWRITE = ("read_parquet", "/", "__raw", "__lw_", "hive_partitioning", "region = 'eu'", "//")


@pytest.fixture(scope="module")
def lakes(tmp_path_factory):
    base = Path(tmp_path_factory.mktemp("names"))
    governed = sql_lake(base / "lake")
    refs = references(governed, base)
    yield governed, refs
    for lk in (governed, *refs.values()):
        lk.close()


@pytest.mark.parametrize("query", QUERIES)
def test_names_are_the_users_text_for_every_user(lakes, query):
    governed, refs = lakes
    for user, ref in refs.items():
        got = same(governed, ref, query, user)
        assert got.kind == "rows", got
        for name in got.columns + got.types:
            assert not any(bit in name for bit in REWRITE), (user, name)
            assert user != "carol" or "ssn" not in name  # carol may not see ssn
    admin = outcome(governed, query, "ada")
    owner = governed.sql(query)
    assert admin.columns == tuple(owner.column_names)
    for name in admin.columns:
        assert not any(bit in name for bit in REWRITE), name


def test_names_for_the_leaked_shapes(lakes):
    governed, _ = lakes
    t = governed.sql("SELECT (SELECT max(id) FROM hr.people), typeof((SELECT 1))", user="ada")
    assert t.column_names == ["(SELECT max(id) FROM hr.people)", "typeof((SELECT 1))"]
    t = governed.sql("SELECT ARRAY(SELECT id FROM hr.people) AS ids, (SELECT 1)", user="bob")
    assert t.column_names == ["ids", "(SELECT 1)"]
