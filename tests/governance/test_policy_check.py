"""`governance.policy.check` and `lake policy check`: every error and warning kind, by file:line."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

import lake
from governance.policy.check import ERROR, WARNING, Problem, check_folder, check_lines
from governance.policy.lines import parse_text_all
from lake.cli.policy import policy_app

# The catalog the unit tests check against: plain data, looked up like the engine does.
TABLES = {
    "sales.orders": (["id", "region", "amount", "ssn"], {"sales": {}, "sales.orders": {}}),
    "hr.people": (["id", "name", "salary"], {}),
}
DATABASES = {"sales", "hr"}

GOOD = """\
# a policy that is right in every way
g, alice, role:analyst
g, role:analyst, role:reader
g2, sales.orders.ssn, tag:pii=true
p, role:reader, sales, select, allow
p, role:analyst, sales.orders.ssn, unmask, allow
p, role:analyst, tag:pii=true, select, allow
p, role:analyst, hr.*, describe, allow
p, etl, queue:default, submit, allow
p, etl, queue:*, *, allow
p, bob, sales.orders.ssn, select, deny
p, bob, sales.orders, select, allow
p2, carol, sales.orders, eu_only, "region = 'eu' AND amount > 0", * -ssn
p2, carol, sales.*, everything, TRUE, *
p2, dave, sales.orders, some, TRUE, id region
p3, sales.orders.ssn, "'***-**-' || right(ssn, 4)"
p3, hr.people.salary, NULL
"""


def lookup(name: str):
    return TABLES.get(name)


def folder_with(tmp_path: Path, text: str, model: str | None = None) -> Path:
    folder = tmp_path / "policy"
    folder.mkdir(exist_ok=True)
    (folder / "policy.csv").write_text(text, encoding="utf-8")
    if model is not None:
        (folder / "model.conf").write_text(model, encoding="utf-8")
    return folder


def check(tmp_path: Path, text: str, *, catalog: bool = True, model: str | None = None):
    folder = folder_with(tmp_path, text, model)
    if catalog:
        return check_folder(folder, lookup, lambda: set(DATABASES))
    return check_folder(folder, None)


def at(problems: list[Problem], line: int, severity: str) -> list[str]:
    """Messages of one severity reported on one line, as printed (file:line: severity: ...)."""
    return [str(p) for p in problems if p.line == line and p.severity == severity]


def only(problems: list[Problem], line: int, severity: str, *words: str) -> str:
    """The single problem on `line`; asserts its place, severity and the words it names."""
    assert [(p.line, p.severity) for p in problems] == [(line, severity)], problems
    text = str(problems[0])
    assert text.startswith(f"{problems[0].file}:{line}: {severity}: ")
    assert problems[0].file.endswith("policy.csv")
    for w in words:
        assert w in text, text
    return text


def test_a_good_policy_has_no_problems(tmp_path):
    assert check(tmp_path, GOOD) == []
    assert check(tmp_path, GOOD, catalog=False) == []


def test_problem_prints_file_line_severity_message():
    assert str(Problem(ERROR, "p/policy.csv", 3, "bad")) == "p/policy.csv:3: error: bad"
    assert str(Problem(WARNING, "p/model.conf", None, "hm")) == "p/model.conf: warning: hm"


# syntax and files ------------------------------------------------------------------------------
def test_every_syntax_problem_is_reported_at_once(tmp_path):
    text = 'q, a, b\np, a, b\np, a, "b, sales, select, allow\np, a, sales, select, allow\n'
    problems = check(tmp_path, text)
    csv = tmp_path / "policy" / "policy.csv"
    assert [(p.line, p.severity) for p in problems] == [(1, ERROR), (2, ERROR), (3, ERROR)]
    assert str(problems[0]).startswith(f"{csv}:1: error: unknown line type 'q'")
    assert "has 2" in str(problems[1])
    assert "double quote" in str(problems[2])


def test_syntax_and_semantic_problems_come_together_in_line_order(tmp_path):
    problems = check(tmp_path, "p, a, sales, selekt, allow\nzz\np, a, sales, select, maybe\n")
    assert [(p.line, p.severity) for p in problems] == [(1, ERROR), (2, ERROR), (3, ERROR)]


def test_missing_policy_csv(tmp_path):
    (tmp_path / "policy").mkdir()
    problems = check_folder(tmp_path / "policy", lookup)
    assert len(problems) == 1 and problems[0].severity == ERROR
    assert str(problems[0]).startswith(
        f"{tmp_path / 'policy' / 'policy.csv'}: error: no policy.csv"
    )


def test_missing_folder(tmp_path):
    problems = check_folder(tmp_path / "nope", lookup)
    assert [p.severity for p in problems] == [ERROR] and "no such folder" in problems[0].message


def test_unreadable_model_conf(tmp_path):
    problems = check(tmp_path, GOOD, model="this is not a model\n")
    assert [p.severity for p in problems] == [ERROR]
    assert str(problems[0]).startswith(f"{tmp_path / 'policy' / 'model.conf'}: error: bad model")


def test_model_without_a_line_type(tmp_path):
    model = (Path(__file__).parents[2] / "governance/policy/model.conf").read_text()
    problems = check(tmp_path, GOOD, model=model.replace("p3 = obj, mask\n", ""))
    assert [p.severity for p in problems] == [ERROR] and "must define p3" in problems[0].message


def test_model_with_other_field_counts(tmp_path):
    model = (Path(__file__).parents[2] / "governance/policy/model.conf").read_text()
    problems = check(tmp_path, GOOD, model=model.replace("p3 = obj, mask", "p3 = obj, mask, x"))
    assert [p.severity for p in problems] == [ERROR]
    assert "defines p3 with 3 field(s)" in problems[0].message


def test_model_whose_matcher_cannot_run(tmp_path):
    model = (Path(__file__).parents[2] / "governance/policy/model.conf").read_text()
    problems = check(tmp_path, GOOD, model=model.replace("m = subjectMatch(", "m = subjectMatch(("))
    assert [p.severity for p in problems] == [ERROR]
    assert "matcher or effect" in problems[0].message


def test_byte_order_mark(tmp_path):
    problems = check(tmp_path, "\ufeffp, a, sales, select, allow\n")
    only(problems, 1, ERROR, "byte-order mark")


# p ---------------------------------------------------------------------------------------------
def test_unknown_action(tmp_path):
    only(check(tmp_path, "p, a, sales, selekt, allow\n"), 1, ERROR, "'selekt'", "select")


def test_actions_are_case_insensitive_and_star_is_an_action(tmp_path):
    assert check(tmp_path, "p, a, sales, SELECT, allow\np, a, hr, *, allow\n") == []


def test_bad_effect(tmp_path):
    only(check(tmp_path, "p, a, sales, select, permit\n"), 1, ERROR, "'permit'", "allow or deny")


def test_effect_is_lower_case(tmp_path):
    # Casbin's effect compares the text exactly: "Deny" would silently never deny.
    only(check(tmp_path, "p, a, sales, select, Deny\n"), 1, ERROR, "'Deny'", "in lower case: deny")


@pytest.mark.parametrize(
    "resource",
    [
        "sales..orders",
        "sales.orders.ssn.x",
        "sales-eu",
        "1sales",
        "sales.ord ers",
        "tag:pii",
        "tag:=x",
        "tag:pii=",
        "queue:",
        "queue:a b",
        "s*",
    ],
)
def test_malformed_resource(tmp_path, resource):
    text = f'p, a, "{resource}", select, allow\n'
    only(check(tmp_path, text), 1, ERROR, "malformed resource", repr(resource))


def test_submit_on_a_table(tmp_path):
    only(check(tmp_path, "p, etl, sales.orders, submit, allow\n"), 1, ERROR, "queue:NAME")


def test_submit_on_star_is_not_a_queue(tmp_path):
    only(check(tmp_path, "p, etl, *, submit, allow\n"), 1, ERROR, "queues only")


def test_queue_with_a_table_action(tmp_path):
    only(check(tmp_path, "p, etl, queue:gpu, drop, allow\n"), 1, ERROR, "'queue:gpu'", "'drop'")


# g2 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("resource", ["sales.*", "*", "sales.orders.ssn.x", "tag:pii=true", "a-b"])
def test_tag_on_something_that_is_not_a_name(tmp_path, resource):
    only(check(tmp_path, f"g2, {resource}, tag:pii=true\n"), 1, ERROR, repr(resource))


@pytest.mark.parametrize("tag", ["pii", "tag:pii", "tag:=x", "pii=true"])
def test_g2_second_field_is_not_a_tag(tmp_path, tag):
    only(check(tmp_path, f"g2, sales.orders, {tag}\n"), 1, ERROR, "tag:KEY=VALUE", repr(tag))


# p2 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("table", ["sales", "sales.orders.id", "sales.or-ders"])
def test_filter_on_something_that_is_not_a_table(tmp_path, table):
    text = f"p2, a, {table}, f, TRUE, *\n"
    only(check(tmp_path, text), 1, ERROR, "db.table", repr(table))


@pytest.mark.parametrize(
    "sql, words",
    [
        ("region = ", ["cannot parse"]),
        ("region IN (SELECT region FROM sales.orders)", ["plain expression"]),
        ("read_csv('/etc/passwd') IS NOT NULL", ["read_csv"]),
        ("orders.region = 'eu'", ["without a table qualifier"]),
    ],
)
def test_bad_row_filter(tmp_path, sql, words):
    text = f'p2, a, sales.orders, f, "{sql}", *\n'
    only(check(tmp_path, text), 1, ERROR, "bad row filter of 'f'", *words)
    only(check(tmp_path, text, catalog=False), 1, ERROR, "bad row filter of 'f'", *words)


def test_row_filter_with_an_unknown_column(tmp_path):
    text = "p2, a, sales.orders, f, \"country = 'fr'\", *\n"
    only(check(tmp_path, text), 1, ERROR, "'country'", "id, region, amount, ssn")
    assert check(tmp_path, text, catalog=False) == []  # without a catalog nobody can tell


def test_row_filter_with_an_aggregate_or_window(tmp_path):
    text = "p2, a, sales.orders, f, sum(amount) > 0, *\np2, a, sales.orders, g, rank() OVER () = 1, *\n"
    problems = check(tmp_path, text)
    assert "aggregate function" in at(problems, 1, ERROR)[0]
    assert "window function" in at(problems, 2, ERROR)[0]


@pytest.mark.parametrize("cols", ["id -ssn", "* ssn", "* -", "id *"])
def test_malformed_columns(tmp_path, cols):
    text = f'p2, a, sales.orders, f, TRUE, "{cols}"\n'
    only(check(tmp_path, text), 1, ERROR, "bad COLUMNS", repr(cols))
    only(check(tmp_path, text, catalog=False), 1, ERROR, "bad COLUMNS", repr(cols))


def test_columns_naming_an_unknown_column(tmp_path):
    text = "p2, a, sales.orders, f, TRUE, * -email\np2, a, sales.orders, g, TRUE, id email\n"
    problems = check(tmp_path, text)
    assert "email" in at(problems, 1, ERROR)[0] and "email" in at(problems, 2, ERROR)[0]
    assert check(tmp_path, text, catalog=False) == []


# p3 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "resource", ["sales.orders", "sales", "sales.orders.ssn.x", "tag:pii=true"]
)
def test_mask_on_something_that_is_not_a_column(tmp_path, resource):
    only(check(tmp_path, f"p3, {resource}, NULL\n"), 1, ERROR, "db.table.column", repr(resource))


def test_bad_mask_sql(tmp_path):
    text = "p3, sales.orders.ssn, getenv('HOME')\np3, sales.orders.region, \"region ||\"\n"
    problems = check(tmp_path, text)
    assert "bad mask" in at(problems, 1, ERROR)[0] and "getenv" in at(problems, 1, ERROR)[0]
    assert "cannot parse" in at(problems, 2, ERROR)[0]


def test_mask_sql_with_an_unknown_column(tmp_path):
    text = "p3, sales.orders.ssn, sha256(social)\n"
    only(check(tmp_path, text), 1, ERROR, "'social'", "id, region, amount, ssn")


def test_mask_on_an_unknown_column_of_an_existing_table(tmp_path):
    only(check(tmp_path, "p3, sales.orders.email, NULL\n"), 1, ERROR, "'email'", "sales.orders")
    assert check(tmp_path, "p3, sales.orders.email, NULL\n", catalog=False) == []


# warnings: rules that never apply --------------------------------------------------------------
def test_rule_on_a_missing_database_or_table(tmp_path):
    text = (
        "p, a, finance, select, allow\n"
        "p, a, sales.refunds, select, allow\n"
        "p, a, sales.orders.email, select, allow\n"
        "p, a, finance.*, select, allow\n"
        "p, a, *.orders, select, allow\n"
    )
    problems = check(tmp_path, text)
    assert "database 'finance'" in at(problems, 1, WARNING)[0]
    assert "table 'sales.refunds'" in at(problems, 2, WARNING)[0]
    assert "column 'email'" in at(problems, 3, WARNING)[0]
    assert "database 'finance'" in at(problems, 4, WARNING)[0]
    assert len(problems) == 4
    assert check(tmp_path, text, catalog=False) == []


def test_missing_table_is_found_without_a_database_list(tmp_path):
    folder = folder_with(
        tmp_path, "p, a, sales.refunds, select, allow\np, a, finance, select, allow\n"
    )
    problems = check_folder(folder, lookup)
    assert [(p.line, p.severity) for p in problems] == [(1, WARNING)]


def test_filter_on_a_missing_table(tmp_path):
    text = "p2, a, sales.refunds, f, \"region = 'eu'\", *\np2, a, finance.*, g, TRUE, *\n"
    problems = check(tmp_path, text)
    assert "filter 'f' on table 'sales.refunds'" in at(problems, 1, WARNING)[0]
    assert "database 'finance'" in at(problems, 2, WARNING)[0]
    assert len(problems) == 2


def test_mask_on_a_missing_table(tmp_path):
    only(check(tmp_path, "p3, sales.refunds.ssn, NULL\n"), 1, WARNING, "table 'sales.refunds'")


def test_tag_on_a_missing_column(tmp_path):
    only(check(tmp_path, "g2, sales.orders.email, tag:pii=true\n"), 1, WARNING, "column 'email'")


@pytest.mark.parametrize("action", ["select", "unmask"])
def test_select_or_unmask_on_a_queue(tmp_path, action):
    only(check(tmp_path, f"p, a, queue:default, {action}, allow\n"), 1, WARNING, "queue")


@pytest.mark.parametrize("cond", ["FALSE", "false", "1 = 0"])
def test_filter_that_is_false(tmp_path, cond):
    only(check(tmp_path, f'p2, a, sales.orders, f, "{cond}", *\n'), 1, WARNING, "never shows a row")


def test_filter_that_excludes_every_column(tmp_path):
    text = 'p2, a, hr.people, f, TRUE, "* -id -name -salary"\n'
    only(check(tmp_path, text), 1, WARNING, "excludes every column")


def test_member_of_itself(tmp_path):
    only(check(tmp_path, "g, role:a, role:a\n"), 1, WARNING, "'role:a'", "itself")


def test_role_cycle(tmp_path):
    text = "g, alice, role:a\ng, role:a, role:b\ng, role:b, role:c\ng, role:c, role:a\n"
    text += "g, bob, role:c\n"
    only(check(tmp_path, text), 4, WARNING, "role:a, role:b, role:c", "lines 2, 3, 4")


def test_two_separate_role_cycles(tmp_path):
    text = "g, x, y\ng, y, x\ng, m, n\ng, n, o\ng, o, m\n"
    problems = check(tmp_path, text)
    assert [(p.line, p.severity) for p in problems] == [(2, WARNING), (5, WARNING)]


# warnings: shadowing denies --------------------------------------------------------------------
def test_deny_that_shadows_every_allow_of_a_subject(tmp_path):
    text = (
        "p, alice, sales.orders, select, allow\n"
        "p, alice, sales.orders.ssn, unmask, allow\n"
        "p, alice, sales, *, deny\n"
    )
    only(check(tmp_path, text), 3, WARNING, "every allow of 'alice'", "line(s) 1, 2")


def test_deny_of_everyone_shadows_a_subject(tmp_path):
    text = "p, alice, sales.orders.ssn, select, allow\np, *, sales.orders.ssn, select, deny\n"
    only(check(tmp_path, text), 2, WARNING, "'alice'")


def test_denies_that_shadow_together_are_reported_on_the_last(tmp_path):
    text = (
        "p, alice, sales.orders, select, allow\n"
        "p, alice, hr.people, select, allow\n"
        "p, alice, hr, select, deny\n"
        "p, *, sales.*, select, deny\n"
    )
    only(check(tmp_path, text), 4, WARNING, "with the other denies", "line(s) 1, 2")


@pytest.mark.parametrize(
    "deny",
    [
        "p, alice, sales.orders.ssn, select, deny",  # a column deny leaves the table
        "p, alice, sales, insert, deny",  # another action
        "p, bob, sales, select, deny",  # another subject
        "p, role:x, sales, select, deny",  # a role: who holds it is not known statically
        "p, alice, tag:pii=true, select, deny",  # a tag deny removes only columns
    ],
)
def test_deny_that_leaves_an_allow_is_not_reported(tmp_path, deny):
    assert check(tmp_path, f"p, alice, sales.orders, select, allow\n{deny}\n") == []


def test_deny_that_leaves_one_allow_is_not_reported(tmp_path):
    text = (
        "p, alice, sales.orders, select, allow\n"
        "p, alice, queue:default, submit, allow\n"
        "p, alice, sales, *, deny\n"
    )
    assert check(tmp_path, text) == []


def test_a_star_deny_covers_queues_too(tmp_path):
    # Contract: a resource of `*` alone matches every resource of every kind, queues included.
    text = "p, alice, queue:default, submit, allow\np, alice, *, *, deny\n"
    problems = check(tmp_path, text)
    assert [(p.line, p.severity) for p in problems] == [(2, "warning")], problems


# warnings: masks and duplicates ----------------------------------------------------------------
def test_two_masks_on_one_column(tmp_path):
    text = "p3, sales.orders.ssn, NULL\np, a, sales, select, allow\np3, Sales.Orders.SSN, 'x'\n"
    only(check(tmp_path, text), 3, WARNING, "second mask", "line 1")


def test_mask_covered_by_an_earlier_wildcard_mask(tmp_path):
    text = "p3, sales.orders.*, NULL\np3, sales.orders.ssn, 'x'\n"
    only(check(tmp_path, text), 2, WARNING, "line 1", "'sales.orders.*'")


def test_duplicate_lines(tmp_path):
    text = (
        "p, a, sales, select, allow\n"
        "g, a, role:x\n"
        "p, a, sales, select, allow\n"
        "g, a, role:x\n"
        "p3, sales.orders.ssn, NULL\n"
        "p3, sales.orders.ssn, NULL\n"
    )
    problems = check(tmp_path, text)
    assert [(p.line, p.severity) for p in problems] == [(3, WARNING), (4, WARNING), (6, WARNING)]
    assert all("duplicate of line" in p.message for p in problems)
    assert "line 1" in problems[0].message and "line 5" in problems[2].message


def test_check_lines_takes_parsed_lines():
    lines, syntax = parse_text_all("p, a, sales, selekt, allow\np, a, sales, select, allow\n", "x")
    assert syntax == []
    problems = check_lines(lines, lookup)
    assert [str(p) for p in problems][0].startswith("x:1: error: unknown action")
    assert check_lines(lines[1:], None) == []


# the command line ------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_help():
    result = runner.invoke(policy_app, ["check", "--help"])
    assert result.exit_code == 0 and "--root" in result.output
    assert runner.invoke(policy_app, ["--help"]).exit_code == 0


def test_cli_as_a_sub_app_of_lake(tmp_path, monkeypatch):
    monkeypatch.delenv("LAKE_ROOT", raising=False)
    parent = typer.Typer()
    parent.command()(lambda: None)
    parent.add_typer(policy_app, name="policy")
    result = runner.invoke(parent, ["policy", "check", str(folder_with(tmp_path, "g, a, a\n"))])
    assert result.exit_code == 0 and "0 errors, 1 warning" in result.output


def test_cli_clean_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("LAKE_ROOT", raising=False)
    folder = folder_with(tmp_path, GOOD)
    result = runner.invoke(policy_app, ["check", str(folder)])
    assert result.exit_code == 0, result.output
    assert "0 errors, 0 warnings" in result.output
    assert "skipped" in result.output


def test_cli_reports_every_problem_and_exits_1_on_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("LAKE_ROOT", raising=False)
    text = "p, a, sales, selekt, allow\nzz, a\ng, a, a\np2, a, sales, f, TRUE, *\n"
    folder = folder_with(tmp_path, text)
    result = runner.invoke(policy_app, ["check", str(folder)])
    csv = folder / "policy.csv"
    assert result.exit_code == 1, result.output
    assert f"{csv}:1: error: unknown action 'selekt'" in result.output
    assert f"{csv}:2: error: unknown line type 'zz'" in result.output
    assert f"{csv}:3: warning: 'a' is made a member of itself" in result.output
    assert f"{csv}:4: error: a filter is on db.table" in result.output
    assert "3 errors, 1 warning" in result.output


def test_cli_exits_0_on_warnings_only(tmp_path, monkeypatch):
    monkeypatch.delenv("LAKE_ROOT", raising=False)
    folder = folder_with(tmp_path, "g, a, a\n")
    result = runner.invoke(policy_app, ["check", str(folder)])
    assert result.exit_code == 0 and "0 errors, 1 warning" in result.output


def test_cli_missing_policy_csv(tmp_path, monkeypatch):
    monkeypatch.delenv("LAKE_ROOT", raising=False)
    result = runner.invoke(policy_app, ["check", str(tmp_path)])
    assert result.exit_code == 1 and "no policy.csv" in result.output


@pytest.mark.local_disk  # the CLI opens the local folder it is given
def test_cli_with_a_real_lake(tmp_path, monkeypatch):
    root = tmp_path / "lake"
    with lake.connect(root) as lk:
        lk.catalog.create_database("sales", tags={"domain": "sales"})
        schema = pa.schema([("id", pa.int64()), ("region", pa.string()), ("ssn", pa.string())])
        lk.catalog.create_table("sales.orders", schema, tags={"owner": "ops"})
    text = (
        "p, role:auditor, system.audit, select, allow\n"  # Lakeward creates it on first use
        "p, a, sales.orders, select, allow\n"
        "p, a, finance, select, allow\n"
        "p2, a, Sales.Orders, eu, \"country = 'fr'\", *\n"
        "p3, sales.orders.ssn, sha256(ssn)\n"
        "p3, sales.refunds.ssn, NULL\n"
    )
    folder = folder_with(tmp_path, text)
    csv = folder / "policy.csv"
    result = runner.invoke(policy_app, ["check", str(folder), "--root", str(root)])
    assert result.exit_code == 1, result.output
    assert f"{csv}:3: warning: rule on database 'finance'" in result.output
    assert f"{csv}:4: error: bad row filter of 'eu'" in result.output
    assert "'country'" in result.output and "id, region, ssn" in result.output
    assert f"{csv}:6: warning: mask on table 'sales.refunds'" in result.output
    assert "1 error, 2 warnings" in result.output
    assert "skipped" not in result.output

    monkeypatch.setenv("LAKE_ROOT", str(root))
    via_env = runner.invoke(policy_app, ["check", str(folder)])
    assert via_env.exit_code == 1 and "1 error, 2 warnings" in via_env.output


def test_cli_root_that_is_not_a_lake(tmp_path):
    folder = folder_with(tmp_path, GOOD)
    result = runner.invoke(policy_app, ["check", str(folder), "--root", str(tmp_path / "nolake")])
    assert result.exit_code == 2
    assert not (tmp_path / "nolake").exists()  # checking never creates a lake
