"""Engine errors show only the user's view (issue 8 leak 8 for the SQL path, rule 12).

The same failing query on the governed lake and on the reference lake (the user's view
materialised) gives the same error class and message; and no message of `lk.sql` or `lk.explain`
holds a path, policy text, a hidden column's name or a fragment of the rewrite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

import lake
from catalog.store import TableInfo
from governance.access import View
from governance.context import TableRead
from governance.sql import _reveals
from lake.errors import AccessDenied, LakeError, SQLError

from support.observe import outcome, same
from support.sqlpath import references, sql_lake

FAILING = [
    "SELECT nosuch FROM hr.people",
    "SELECT ssn FROM hr.people",
    "SELECT p.ssn FROM hr.people p",
    "SELECT * FROM hr.people WHERE ssn = '111'",
    "SELECT * FROM hr.secret",
    "SELECT * FROM hr.nothing",
    "SELECT __raw.ssn FROM hr.people",
    "SELECT salary // 0 FROM hr.people",
    "SELECT id * 9223372036854775807 FROM hr.people",
    "SELECT CAST(name AS INT) FROM hr.people WHERE name IS NOT NULL",
    "SELECT CAST(region AS INT) FROM hr.people",
    "SELECT CAST(people AS INT) FROM hr.people",
    "SELECT error('boom ' || name) FROM hr.people WHERE name IS NOT NULL",
    "SELECT (SELECT id FROM hr.people)",
    "SELECT salary FROM hr.people GROUP BY id",
    "SELECT sum(name) FROM hr.people",
    "SELECT upper(salary) FROM hr.people",
    "SELECT * FROM hr.people AS p(a, b, c, d, e, f, g)",
    "SELECT t.nope FROM hr.people t",
    "SELECT * FROM hr.people p JOIN hr.depts d ON p.id = d.dname",
    "SELECT id FROM hr.people UNION SELECT id, id FROM hr.people",
    "SELECT * FROM (SELECT name::INT AS x FROM hr.people WHERE name IS NOT NULL) WHERE x > 0",
    "SELECT strptime(region, '%d') FROM hr.people",
    "SELECT * FROM hr.people VERSION AS OF 99",
    "SELECT * FROM read_parquet('hr/people/*.parquet')",
    "SELECT 1; SELECT 2",
]
# Never in a message to a user, unless they wrote it themselves.
REWRITE = ("read_parquet", "__raw", "__lw_", "hive_partitioning", "CASE", "region = 'eu'", "1000")


@pytest.fixture(scope="module")
def lakes(tmp_path_factory):
    base = Path(tmp_path_factory.mktemp("errors"))
    governed = sql_lake(base / "lake")
    refs = references(governed, base, users=("bob", "carol", "dora"))
    yield governed, refs, base
    for lk in (governed, *refs.values()):
        lk.close()


@pytest.mark.parametrize("query", FAILING)
def test_errors_match_the_reference_lake(lakes, query):
    governed, refs, base = lakes
    for user, ref in refs.items():
        got = same(governed, ref, query, user)
        if got.kind != "error":
            continue
        assert "\n" not in got.message
        assert str(base) not in got.message and "<lake>" not in got.message
        for bit in REWRITE:
            assert bit not in got.message or bit in query, (user, bit, got.message)
        if user == "carol":
            assert "ssn" not in got.message or "ssn" in query
    assert outcome(governed, query, "carol").kind == "error"


def test_missing_data_files_name_no_path(tmp_path):
    governed = sql_lake(tmp_path / "lake")
    try:
        for f in (tmp_path / "lake" / "hr" / "people").glob("*.parquet"):
            f.unlink()
        for user in ("carol", "ada", None):
            with pytest.raises(SQLError) as e:
                governed.sql("SELECT count(*) FROM hr.people", user=user)
            message = str(e.value)
            assert str(tmp_path) not in message and "<lake>" not in message
            assert "/" not in message and "could not read the data files" in message
    finally:
        governed.close()


def test_a_filter_that_does_not_fit_an_older_version_names_no_rule(tmp_path):
    root = tmp_path / "lake"
    with lake.connect(root) as lk:
        lk.catalog.create_database("s")
        lk.catalog.create_table("s.t", pa.schema([("id", pa.int64())]))
        lk.write("s.t", pa.table({"id": pa.array([1], pa.int64())}))
        wider = pa.table({"id": pa.array([2], pa.int64()), "region": ["eu"]})
        lk.write("s.t", wider, schema_mode="merge")
    (root / "policy").mkdir()
    (root / "policy" / "policy.csv").write_text("p2, bob, s.t, eu_only, \"region = 'eu'\", *\n")
    with lake.connect(root, policy=root / "policy") as lk:
        assert lk.sql("SELECT id FROM s.t", user="bob")["id"].to_pylist() == [2]
        with pytest.raises(AccessDenied) as e:
            lk.sql("SELECT * FROM s.t VERSION AS OF 1", user="bob")
        message = str(e.value)
        assert "region" not in message and "eu_only" not in message
        assert "policy.csv" not in message and str(root) not in message


def _read(view: View, stored: tuple[str, ...]) -> TableRead:
    now = datetime.now(UTC)
    info = TableInfo(1, "hr", "people", "/x/hr/people", "GOVERNED", "[]", (), "", {}, "", now, 1)
    return TableRead(info, 1, 1, 1, (), True, view=view, stored=stored)


def test_the_net_withholds_what_the_user_did_not_write():
    view = View(
        ("id", "name"),
        frozenset(),
        row_cond="(\"region\" = 'eu')",
        masks={"name": 'upper("name")'},
        whole=False,
    )
    reads = [_read(view, ("id", "name", "region", "ssn"))]
    q = "SELECT id // 0 FROM hr.people"
    for message in (
        "Division by zero in expression (CASE  WHEN ((region = 'eu')) THEN (id) END // 0)",
        "Binder Error: column ssn is odd",
        "Error in read_parquet",
        "Invalid Input Error: upper(name) failed",
    ):
        assert _reveals(message, q, reads), message
    for message in ("Division by zero in expression (id // 0)", "Could not convert 'eu'"):
        assert not _reveals(message, q, reads), message
    assert not _reveals("column ssn not found", "SELECT ssn FROM hr.people", reads)


def test_errors_are_typed_lake_errors(lakes):
    governed, _, _ = lakes
    for query in FAILING:
        with pytest.raises(LakeError):
            governed.sql(query, user="carol")
