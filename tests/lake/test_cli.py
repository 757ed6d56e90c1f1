from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lake.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_help_on_every_command():
    for cmd in [
        [],
        ["init"],
        ["sql"],
        ["explain"],
        ["demo"],
        ["compact"],
        ["recover"],
        ["table"],
        ["table", "create"],
        ["table", "list"],
        ["table", "describe"],
        ["table", "history"],
        ["table", "drop"],
        ["db"],
        ["db", "create"],
        ["db", "list"],
        ["db", "drop"],
        ["crawl"],
        ["ingest"],
        ["policy", "check"],
        ["policy", "explain"],
        ["job", "submit"],
        ["job", "status"],
        ["job", "list"],
        ["queue", "list"],
    ]:
        r = run(*cmd, "--help")
        assert r.exit_code == 0, (cmd, r.output)
        assert "Usage" in r.output


def test_init_table_sql_history_drop(tmp_path):
    root = str(tmp_path / "lake")
    r = run("init", root, "--admin", "alice")
    assert r.exit_code == 0 and "alice" in r.output
    assert run("db", "create", "sales", "--root", root).exit_code == 0
    r = run(
        "table",
        "create",
        "sales.orders",
        "-c",
        "id:int64",
        "-c",
        "region:string",
        "-c",
        "amount:decimal(12,2)",
        "-p",
        "region",
        "--root",
        root,
        "--tag",
        "pii=false",
    )
    assert r.exit_code == 0, r.output
    r = run("table", "list", "--root", root)
    assert "sales.orders" in r.output
    r = run("table", "describe", "sales.orders", "--root", root)
    assert "decimal128(12, 2)" in r.output and "region (partition)" in r.output
    import pyarrow as pa

    import lake

    with lake.connect(root) as lk:
        lk.write(
            "sales.orders",
            pa.table(
                {
                    "id": pa.array([1, 2], pa.int64()),
                    "region": ["eu", "us"],
                    "amount": pa.array([1, 2], pa.decimal128(12, 2)),
                }
            ),
            user="alice",
        )
    r = run(
        "sql",
        "--root",
        root,
        "--user",
        "alice",
        "SELECT region, count(*) AS n FROM sales.orders GROUP BY 1 ORDER BY 1",
    )
    assert r.exit_code == 0 and "eu" in r.output and "us" in r.output
    r = run(
        "sql",
        "--root",
        root,
        "--user",
        "alice",
        "--format",
        "csv",
        "SELECT id FROM sales.orders ORDER BY id",
    )
    assert r.output.split() == ['"id"', "1", "2"]
    r = run("table", "history", "sales.orders", "--root", root)
    assert "WRITE" in r.output and "alice" in r.output
    r = run("sql", "--root", root, "--user", "mallory", "SELECT count(*) FROM sales.orders")
    assert r.exit_code == 1  # the starter policy denies everyone but the admin
    r = run(
        "explain",
        "--root",
        root,
        "--user",
        "alice",
        "SELECT * FROM sales.orders WHERE region = 'eu'",
    )
    assert "read_parquet" in r.output and "1/2 files" in r.output
    r = run("table", "partitions", "sales.orders", "--root", root)
    assert "region=eu" in r.output and "region=us" in r.output
    r = run("compact", "sales.orders", "--user", "alice", "--root", root)
    assert r.exit_code == 0 and "compacted" in r.output
    r = run("vacuum", "sales.orders", "--user", "alice", "--root", root, "--dry-run")
    assert r.exit_code == 0 and "would delete" in r.output
    assert run("table", "drop", "sales.orders", "--root", root).exit_code == 0


@pytest.mark.parametrize(
    "args",
    [
        ["sql", "--user", "a", "SELECT * FROM read_csv('/etc/passwd')"],
        ["sql", "--user", "a", "SELECT * FROM nope.nope"],
        ["table", "describe", "nope.nope"],
        ["table", "create", "x.t", "-c", "id:wat"],
    ],
)
def test_errors_are_short_and_typed(tmp_path, args):
    r = runner.invoke(app, [*args, "--root", str(tmp_path / "lake")])
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    assert any(
        k in r.output for k in ("AccessDenied", "TableNotFound", "InvalidArgument", "SQLError")
    )


def test_demo_runs(tmp_path):
    r = run("demo", "--root", str(tmp_path / "demo"), "--fresh")
    assert r.exit_code == 0, r.output
    assert "demo finished" in r.output and "inside the transaction: 36" in r.output
