"""The CLI on a lake in an object store (the test S3 server of scripts/s3_server.sh): a root
`s3://bucket/prefix` is taken as given, `lake init` installs the starter policy in the catalog,
and the commands work on it as on a folder."""

from __future__ import annotations

import pyarrow as pa
from typer.testing import CliRunner

import lake
from catalog import storage
from lake.cli import app

from support import s3

runner = CliRunner()


def test_init_create_write_query_on_an_s3_root(tmp_path, monkeypatch, catalog_backend):
    s3.require_server()
    root = s3.fresh_prefix()
    catalog = catalog_backend or f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("LAKE_CATALOG", catalog)
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(app, ["init", root, "--admin", "alice"])
    assert out.exit_code == 0, out.output
    assert f"lake ready at {root}" in out.output and "installed in its catalog" in out.output
    assert storage.exists(f"{root}/lake.toml")
    again = runner.invoke(app, ["init", root, "--admin", "mallory"])
    assert again.exit_code == 0 and "already enforces a policy" in again.output, again.output
    # nothing written to the local folder (bar the SQLite catalog of a run without PostgreSQL)
    assert {p.name for p in tmp_path.iterdir()} <= {"catalog.db"}
    assert runner.invoke(app, ["db", "create", "sales", "--root", root]).exit_code == 0
    out = runner.invoke(
        app,
        ["table", "create", "sales.t", "-c", "id:int64", "-c", "region:string", "--root", root],
    )
    assert out.exit_code == 0, out.output
    with lake.connect(root) as lk:
        lk.write("sales.t", pa.table({"id": [1, 2], "region": ["eu", "us"]}))
    out = runner.invoke(
        app,
        [
            "sql",
            "SELECT sum(id) AS s FROM sales.t",
            "--root",
            root,
            "--user",
            "alice",
            "--format",
            "csv",
        ],
    )
    assert out.exit_code == 0 and out.output.splitlines() == ['"s"', "3"], out.output
    # the starter policy is the catalog's: alice is admin, anyone else is denied
    out = runner.invoke(app, ["sql", "SELECT 1 FROM sales.t", "--root", root, "--user", "bob"])
    assert out.exit_code == 1 and "TableNotAccessible" in out.output
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "policy.csv").write_text("p, alice, sales.t.nope, select, allow\n")
    out = runner.invoke(app, ["policy", "check", str(folder), "--root", root])
    assert "nope" in out.output and "no lake" not in out.output, out.output
    assert {p.name for p in tmp_path.iterdir()} <= {"catalog.db", "policy"}
