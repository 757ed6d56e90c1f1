"""Contract section 3 semantics, end to end through lk.sql."""

from __future__ import annotations

import pytest

from lake.errors import AccessDenied, SQLError

from support.governed import governed_lake, rows

POLICY = """\
# roles
g, alice, role:analyst
g, role:analyst, role:reader
g, bob, role:eu
p, role:reader, hr, select, allow
p, alice, hr.people.ssn, select, deny
p2, role:eu, hr.people, eu_rows, "region = 'eu'", * -ssn
p2, carol, hr.people, eu, "region = 'eu'", id region name
p2, carol, hr.people, rich, salary >= 400, id salary
p3, hr.people.salary, (salary // 1000) * 1000
p, role:reader, hr.people.salary, unmask, allow
g2, hr.people.ssn, tag:pii=true
p, dave, tag:pii=false, select, allow
p, erin, hr_other, select, allow
p, frank, hr.people, select, allow
p, frank, hr, select, deny
p, gina, hr.people, select, allow
p, *, hr.people.ssn, select, deny
g, ivan, role:auditor
p, role:auditor, system.audit, select, allow
"""


@pytest.fixture
def lk(tmp_path):
    handle = governed_lake(tmp_path / "lake", POLICY)
    yield handle
    handle.close()


def test_roles_nest_and_column_deny(lk):
    t = lk.sql("SELECT * FROM hr.people", user="alice")
    assert t.column_names == ["id", "region", "name", "salary"]  # ssn denied, in table order
    assert t.num_rows == 6 and sorted(t["salary"].to_pylist())[0] == 100  # unmasked via role


def test_row_filter_and_mask(lk):
    t = lk.sql("SELECT * FROM hr.people ORDER BY id", user="bob")
    assert t.column_names == ["id", "region", "name", "salary"]
    assert t["id"].to_pylist() == [1, 2, 6]
    assert t["salary"].to_pylist() == [0, 0, 0]  # masked: bob has no unmask


def test_union_of_filters_with_cell_nulls(lk):
    t = lk.sql("SELECT * FROM hr.people ORDER BY id", user="carol")
    assert t.column_names == ["id", "region", "name", "salary"]
    assert rows(t) == rows(
        __import__("pyarrow").table(
            {
                "id": [1, 2, 4, 5, 6],
                "region": ["eu", "eu", None, None, "eu"],
                "name": ["Ada", "Bo", None, None, "Fay"],
                "salary": [None, None, 0, 0, 0],  # salary only via the 'rich' filter
            }
        )
    )


def test_tag_grant_with_column_override(lk):
    # dave: tag:pii=false covers the table's columns but ssn's own tag pii=true overrides.
    t = lk.sql("SELECT * FROM hr.people", user="dave")
    assert t.column_names == ["id", "region", "name", "salary"]


def test_deny_by_default_and_deny_beats_allow(lk):
    for user in ("erin", "frank", "nobody"):
        with pytest.raises(AccessDenied):
            lk.sql("SELECT id FROM hr.people", user=user)


def test_star_subject_grants_a_column(lk):
    csv = lk.policy.folder / "policy.csv"
    csv.write_text(csv.read_text() + "p, *, hr.people.name, select, allow\n")
    lk.policy.reload()
    t = lk.sql("SELECT * FROM hr.people", user="nobody_else_but_star")
    assert t.column_names == ["name"] and t.num_rows == 6
    # bob's eu filter and the everyone-name grant are a union: all rows, other cells NULL.
    t = lk.sql("SELECT id, name FROM hr.people ORDER BY name", user="bob")
    assert t.to_pylist() == [
        {"id": 1, "name": "Ada"},
        {"id": 2, "name": "Bo"},
        {"id": None, "name": "Cy"},
        {"id": None, "name": "Di"},
        {"id": None, "name": "Ed"},
        {"id": 6, "name": "Fay"},
    ]


def test_hidden_column_errors_like_a_missing_one(lk):
    def err(q):
        with pytest.raises(SQLError) as e:
            lk.sql(q, user="alice")
        return str(e.value)

    hidden = err("SELECT ssn FROM hr.people")
    missing = err("SELECT zzz FROM hr.people")
    assert hidden.replace("ssn", "zzz") == missing
    assert "111" not in hidden


def test_masks_apply_everywhere(lk):
    # bob cannot recover salary through WHERE, GROUP BY, ORDER BY, JOIN or functions.
    q = [
        "SELECT count(*) AS n FROM hr.people WHERE salary = 100",
        "SELECT salary, count(*) AS n FROM hr.people GROUP BY salary",
        "SELECT max(salary) AS m FROM hr.people",
        "SELECT a.id FROM hr.people a JOIN hr.people b ON a.salary = b.salary AND b.salary > 50",
        "SELECT sum(salary + 1) AS s FROM hr.people",
    ]
    assert lk.sql(q[0], user="bob")["n"].to_pylist() == [0]
    assert lk.sql(q[1], user="bob").to_pylist() == [{"salary": 0, "n": 3}]
    assert lk.sql(q[2], user="bob")["m"].to_pylist() == [0]
    assert lk.sql(q[3], user="bob").num_rows == 0
    assert lk.sql(q[4], user="bob")["s"].to_pylist() == [3]


def test_error_probes_do_not_depend_on_hidden_rows(lk):
    # ssn 'abc' is in a row bob cannot see (region us): a failing cast must not reach it.
    probes = [
        "SELECT count(*) AS n FROM hr.people WHERE CAST(name AS VARCHAR) <> '' AND CAST(id AS INT) > 0",
        "SELECT count(*) AS n FROM hr.people WHERE CASE WHEN region = 'us' THEN error('leak') ELSE true END",
        "SELECT count(*) AS n FROM hr.people WHERE 10 // (CASE WHEN region = 'us' THEN 0 ELSE 1 END) > 0",
        "SELECT count(*) AS n FROM hr.people WHERE regexp_matches(name, CASE WHEN region = 'apac' THEN '(' ELSE '.' END)",
        "SELECT count(*) AS n FROM hr.people p JOIN hr.people q ON p.id = q.id AND CASE WHEN q.region <> 'eu' THEN error('x') ELSE true END",
    ]
    for q in probes:
        assert lk.sql(q, user="bob")["n"].to_pylist() == [3], q


def test_select_star_and_subqueries_see_only_visible(lk):
    t = lk.sql(
        "WITH x AS (SELECT * FROM hr.people) SELECT * FROM x WHERE id IN (SELECT id FROM hr.people)",
        user="bob",
    )
    assert t.num_rows == 3 and "ssn" not in t.column_names


def test_explain_names_rules_but_not_their_text(lk):
    ex = lk.explain("SELECT * FROM hr.people", user="bob")
    text = str(ex)
    assert "row filter eu_rows" in text and "mask on salary" in text
    # bob may not describe the policy: no file and line, no SQL, no hidden column
    assert "policy.csv" not in text and "region = 'eu'" not in text and "ssn" not in text
    assert "files" not in text.split("\n", 2)[-1]  # no file counts under a row filter


def test_policy_hot_reload(lk, tmp_path):
    import os
    import time

    assert lk.sql("SELECT count(*) AS n FROM hr.people", user="gina")["n"].to_pylist() == [6]
    folder = lk.policy.folder
    text = (folder / "policy.csv").read_text().replace("p, gina, hr.people, select, allow\n", "")
    time.sleep(0.01)
    (folder / "policy.csv").write_text(text)
    os.utime(folder / "policy.csv")
    with pytest.raises(AccessDenied):
        lk.sql("SELECT count(*) AS n FROM hr.people", user="gina")


def test_governed_writes(lk):
    import pyarrow as pa

    new = pa.table(
        {
            "id": pa.array([9], pa.int64()),
            "region": ["eu"],
            "name": ["Zed"],
            "ssn": ["999"],
            "salary": pa.array([1], pa.int64()),
        }
    )
    with pytest.raises(AccessDenied):
        lk.write("hr.people", new, user="bob")  # no insert grant
    with pytest.raises(AccessDenied):
        lk.delete("hr.people", where="id = 1", user="alice")  # no delete grant


def test_audit_records_everything(lk):
    lk.sql("SELECT count(*) FROM hr.people", user="alice")
    with pytest.raises(AccessDenied):
        lk.sql("SELECT * FROM hr.people", user="frank")
    with pytest.raises(AccessDenied):
        lk.sql("SELECT * FROM system.audit", user="alice")  # the audit table is governed too
    t = lk.sql(
        "SELECT a.user, a.action, a.decision, a.rows FROM system.audit a ORDER BY seq", user="ivan"
    )
    recs = t.to_pylist()
    assert {"user": "alice", "action": "sql", "decision": "allowed", "rows": 1} in recs
    assert {"user": "frank", "action": "sql", "decision": "denied", "rows": None} in recs
    assert any(r["user"] == "alice" and r["decision"] == "denied" for r in recs)


# hostile queries against a governed table ----------------------------------------------------
HOSTILE_BOB = [
    # CTE named like the table cannot swap in raw data; qualified names always mean the catalog.
    "WITH people AS (SELECT * FROM hr.people) SELECT * FROM people",
    'SELECT * FROM "hr"."people"',
    "SELECT * FROM HR.PEOPLE",
    "SELECT * FROM hr.people /* comment */ WHERE 1=1 -- trailing",
    "SELECT * FROM (SELECT * FROM hr.people) x",
    "SELECT * FROM hr.people UNION ALL SELECT * FROM hr.people",
    "SELECT p.* FROM hr.people p, LATERAL (SELECT p.id) l",
    "SELECT * FROM hr.people WHERE id IN (SELECT id FROM hr.people)",
]


@pytest.mark.parametrize("q", HOSTILE_BOB)
def test_every_path_to_the_table_is_governed(lk, q):
    t = lk.sql(q, user="bob")
    assert "ssn" not in t.column_names
    assert set(t["region"].to_pylist()) <= {"eu"}
    assert set(t["salary"].to_pylist()) <= {0}


@pytest.mark.parametrize(
    "q",
    [
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM 'hr/people/*.parquet'",
        "SELECT * FROM people_raw",  # a Python variable name in the caller's scope
        "SELECT current_setting('allowed_directories')",
        "SELECT * FROM duckdb_tables()",
        "SELECT * FROM hr.people; DROP TABLE hr.people",
        "ATTACH 'x.db'",
        "COPY (SELECT * FROM hr.people) TO '/tmp/x.csv'",
        "SET enable_external_access = true",
    ],
)
def test_hostile_queries_refused(lk, q):
    import pyarrow as pa

    people_raw = pa.table({"ssn": ["111"]})  # noqa: F841 - must stay unreachable
    with pytest.raises((AccessDenied, SQLError, lake_errors().TableNotFound)) as e:
        lk.sql(q, user="alice")
    assert "111" not in str(e.value)


def lake_errors():
    import lake

    return lake.errors


def test_unknown_and_hidden_tables_fail_alike(lk):
    errs = []
    for q in ("SELECT * FROM hr.people", "SELECT * FROM hr.nothing_here"):
        with pytest.raises(AccessDenied) as e:
            lk.sql(q, user="erin")
        errs.append(str(e.value).replace("people", "X").replace("nothing_here", "X"))
    assert errs[0] == errs[1]


def test_information_schema_show_describe_are_filtered(lk):
    tables = lk.sql("SELECT table_schema, table_name FROM information_schema.tables", user="bob")
    assert tables.to_pylist() == [{"table_schema": "hr", "table_name": "people"}]
    assert lk.sql("SELECT * FROM information_schema.tables", user="erin").num_rows == 0
    cols = lk.sql("DESCRIBE hr.people", user="alice")["column_name"].to_pylist()
    assert cols == ["id", "region", "name", "salary"]  # ssn is not even described
    assert lk.sql("SHOW TABLES", user="alice")["name"].to_pylist() == ["people"]
    assert lk.sql("SHOW TABLES", user="erin").num_rows == 0
    with pytest.raises(AccessDenied):
        lk.sql("SELECT * FROM duckdb_columns()", user="alice")


def test_filtered_update_and_delete_touch_only_visible_rows(tmp_path):
    import pyarrow as pa

    policy = (
        POLICY
        + "g, hank, role:eu\np, hank, hr.people, update, allow\np, hank, hr.people, delete, allow\n"
    )
    lk2 = governed_lake(tmp_path / "l2", policy)
    try:
        lk2.update("hr.people", set={"name": "upper(name)"}, user="hank")
        lk2.delete("hr.people", where="id > 0", user="hank")  # deletes only eu rows
        import lake

        with lake.connect(tmp_path / "l2", policy=tmp_path / "l2" / "policy") as check:
            t = check.sql("SELECT id, name FROM hr.people ORDER BY id", user="gina")
        assert t.to_pylist() == [
            {"id": 3, "name": "Cy"},
            {"id": 4, "name": "Di"},
            {"id": 5, "name": "Ed"},
        ]
        # A column hank cannot see does not exist for him: writing or filtering on it errs
        # exactly like a column that is not there; computing on a masked one is refused.
        with pytest.raises(SQLError) as hidden:
            lk2.update("hr.people", set={"ssn": "'x'"}, user="hank")
        with pytest.raises(SQLError) as missing:
            lk2.update("hr.people", set={"nosuch": "'x'"}, user="hank")
        assert str(hidden.value) == str(missing.value).replace("nosuch", "ssn")
        with pytest.raises(AccessDenied):
            lk2.update("hr.people", set={"name": "CAST(salary AS VARCHAR)"}, user="hank")
        with pytest.raises(SQLError) as hidden:
            lk2.delete("hr.people", where="ssn = '444'", user="hank")
        with pytest.raises(SQLError) as missing:
            lk2.delete("hr.people", where="nosuch = '444'", user="hank")
        assert str(hidden.value) == str(missing.value).replace("nosuch", "ssn")
        del pa
    finally:
        lk2.close()
