"""`explain` shows only the user's view (issue 8 leak 7, rule 12).

It used to show hidden columns, file paths and every rule's SQL with `policy.csv:line`. Now a
user sees their own query normalised, their columns of each table, and the names of the rules
that applied; where a rule is written, its SQL and the SQL that runs (with table names in place
of paths) only with `describe` on `policy`. What a user without it sees is the same on a reference
lake holding just their view, apart from the rule names.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lake.cli import app
from lake.errors import LakeError

from support.sqlpath import references, sql_lake

QUERIES = [
    "SELECT * FROM hr.people WHERE id > 1",
    "SELECT p.name, d.dname FROM hr.people p JOIN hr.depts d USING (id) ORDER BY 1",
    "SELECT (SELECT max(salary) FROM hr.people), count(*) FROM hr.depts",
    "WITH c AS (SELECT region, name FROM hr.people) SELECT * FROM c, hr.people q",
    "SHOW TABLES",
]
# What no user without describe on the policy may read in an explanation.
SECRETS = ("region = 'eu'", "id < 5", "1000", "policy.csv", "read_parquet", "/", "__raw", "CASE")


@pytest.fixture(scope="module")
def lakes(tmp_path_factory):
    base = Path(tmp_path_factory.mktemp("explain"))
    governed = sql_lake(base / "lake")
    refs = references(governed, base)
    # the catalog these lakes were made with, for the CLI to open them with (module fixtures start
    # before the per-test catalog backend does)
    yield governed, refs, base / "lake", os.environ.get("LAKE_CATALOG")
    for lk in (governed, *refs.values()):
        lk.close()


def _without_rules(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("--   "))


@pytest.mark.parametrize("query", QUERIES)
def test_a_user_sees_their_view_and_rule_names_only(lakes, query):
    governed, refs, _, _ = lakes
    for user, ref in refs.items():
        ex, want = governed.explain(query, user=user), ref.explain(query, user=user)
        text = str(ex)
        for secret in SECRETS:
            assert secret not in text, (user, secret, text)
        if user == "carol":
            assert "ssn" not in text
        assert ex.rewritten is None
        # the comparable part: the same on the lake that holds just this user's view
        assert ex.sql == want.sql and ex.columns == want.columns
        assert _without_rules(text) == _without_rules(str(want))


def test_rules_are_named(lakes):
    governed, _, _, _ = lakes
    rules = governed.explain("SELECT * FROM hr.people", user="carol").rules
    assert rules == ["deny on a column", "row filter eu_rows", "row filter early", "mask on salary"]
    ex = governed.explain("SELECT * FROM hr.people", user="carol")
    t = ex.tables[0]
    assert t.columns == ("id", "region", "name", "salary")
    assert t.version is None and t.files_total is None  # row filtered: no file counts
    depts = governed.explain("SELECT * FROM hr.depts", user="carol").tables[0]
    assert depts.files_total == 1 and depts.files_scanned == 1  # whole: counts are harmless


def test_describe_on_policy_shows_where_and_sql_without_paths(lakes):
    governed, _, root, _ = lakes
    ex = governed.explain("SELECT * FROM hr.people WHERE id > 1", user="dora")
    text = str(ex)
    assert "row filter eu_rows (policy.csv:10): region = 'eu'; columns * -ssn" in text
    assert "mask on salary (policy.csv:7): (salary // 1000) * 1000" in text
    assert ex.rewritten and "read_parquet(['<hr.people>/part-" in ex.rewritten
    assert str(root) not in text and "ssn" not in ex.tables[0].columns
    admin = str(governed.explain("SELECT * FROM hr.people", user="ada"))
    assert "grant on * (policy.csv:" in admin and "read_parquet" in admin
    owner = str(governed.explain("SELECT * FROM hr.people"))
    assert str(root) not in admin and str(root) not in owner and "runs as" in owner


def test_explain_errors_like_the_reference(lakes):
    governed, refs, _, _ = lakes
    for query in (
        "SELECT * FROM hr.secret",
        "SELECT * FROM hr.nothing",
        "SELECT * FROM read_csv('/etc/passwd')",
        "COPY hr.people TO 'x.csv'",
    ):
        with pytest.raises(LakeError) as got:
            governed.explain(query, user="carol")
        with pytest.raises(LakeError) as want:
            refs["carol"].explain(query, user="carol")
        assert type(got.value) is type(want.value) and str(got.value) == str(want.value)


def test_cli_policy_explain(lakes, monkeypatch):
    _, _, root, url = lakes
    if url:
        monkeypatch.setenv("LAKE_CATALOG", url)
    else:
        monkeypatch.delenv("LAKE_CATALOG", raising=False)
    runner = CliRunner()
    q = "SELECT * FROM hr.people"
    out = runner.invoke(app, ["policy", "explain", q, "--user", "carol", "--root", str(root)])
    assert out.exit_code == 0, out.output
    assert "row filter eu_rows" in out.output and "columns: id, region, name, salary" in out.output
    for secret in (*SECRETS, "ssn"):
        assert secret not in out.output.replace(q, ""), secret
    out = runner.invoke(app, ["policy", "explain", q, "--user", "dora", "--root", str(root)])
    assert "region = 'eu'" in out.output and "runs as" in out.output
    assert str(root) not in out.output
