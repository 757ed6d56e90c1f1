"""The `lake` CLI without Ray: tables, SQL, policy, ingest, errors, literal output, 80 columns."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import typer
from typer._click.utils import make_default_short_help
from typer.testing import CliRunner

import lake
from lake.cli import app
from lake.cli.app import LakeGroup

runner = CliRunner()
LAKE = [sys.executable, "-c", "from lake.cli import main; main()"]
ACTING = {  # every command that acts, and so takes --user
    ("sql",),
    ("explain",),
    ("compact",),
    ("vacuum",),
    ("crawl",),
    ("ingest",),
    ("db", "create"),
    ("db", "list"),
    ("db", "drop"),
    ("table", "create"),
    ("table", "list"),
    ("table", "describe"),
    ("table", "history"),
    ("table", "partitions"),
    ("table", "drop"),
    ("table", "purge"),
    ("policy", "apply"),
    ("policy", "explain"),
    ("job", "submit"),
    ("job", "status"),
    ("job", "logs"),
    ("job", "list"),
    ("job", "cancel"),
    ("job", "interrupt"),
    ("schedule", "add"),
    ("schedule", "delete"),
}


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def sh(*args: str, cwd: Path | None = None, columns: int = 80) -> subprocess.CompletedProcess:
    """The real `lake` in a subprocess, at a fixed terminal width."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKE_")}
    env["COLUMNS"] = str(columns)
    done = subprocess.run(
        [*LAKE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    done.stdout = "\n".join(ln.rstrip() for ln in done.stdout.splitlines())  # cells are padded
    return done


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
        ["table", "purge"],
        ["db"],
        ["db", "create"],
        ["db", "list"],
        ["db", "drop"],
        ["crawl"],
        ["ingest"],
        ["policy", "check"],
        ["policy", "apply"],
        ["policy", "explain"],
        ["job", "submit"],
        ["job", "status"],
        ["job", "list"],
        ["queue", "list"],
        ["image", "list"],
        ["image", "prune"],
    ]:
        r = run(*cmd, "--help")
        assert r.exit_code == 0, (cmd, r.output)
        assert "Usage" in r.output


def _commands(t: typer.Typer, prefix: tuple[str, ...] = ()):
    for c in t.registered_commands:
        yield (*prefix, c.name or c.callback.__name__), c.callback
    for g in t.registered_groups:
        yield from _commands(g.typer_instance, (*prefix, g.name))


def _loaded(name: str) -> typer.Typer:
    """A Typer holding what the lazy command `name` of the `lake` app loads."""
    t = typer.Typer(rich_markup_mode=None)
    LakeGroup.lazy[name].load(t)
    return t


def _all_commands():
    """Every command of the `lake` app: its own and those it loads when they are called."""
    yield from _commands(app)
    for name in LakeGroup.lazy:
        yield from _commands(_loaded(name))


def test_help_summarises_lazy_commands_as_they_do_themselves():
    # `lake --help` lists the lazily loaded commands from LakeGroup.lazy without importing
    # them: each summary there must be the one the command gives once loaded.
    for name, lazy in LakeGroup.lazy.items():
        cmd = typer.main.get_group(_loaded(name)).commands[name]
        assert make_default_short_help(lazy.help, 200) == cmd.get_short_help_str(200), name
    fresh = sh("--help")  # a new process: nothing loaded yet
    assert fresh.returncode == 0, fresh.stderr
    section = fresh.stdout.split("Commands:\n", 1)[1].splitlines()
    rows = {ln.split()[0]: ln.split(None, 1)[1] for ln in section if ln.strip()}
    assert set(rows) >= set(LakeGroup.lazy), set(LakeGroup.lazy) - set(rows)
    limit = 78 - 6 - max(map(len, rows))  # click writes 2 columns short of the terminal
    for name in LakeGroup.lazy:
        cmd = typer.main.get_group(_loaded(name)).commands[name]
        assert rows[name] == cmd.get_short_help_str(limit), name


def test_a_mistyped_command_suggests_lazy_commands_too():
    r = run("jbo")
    assert r.exit_code == 2 and "Did you mean 'job'?" in r.output, r.output
    r = run("tabel")
    assert r.exit_code == 2 and "Did you mean 'table'?" in r.output, r.output


LOADED = """
import sys
from typer.testing import CliRunner
from lake.cli import app
r = CliRunner().invoke(app, sys.argv[1:])
assert r.exit_code == 0, r.output
heavy = (
    "lake.cli.batch", "lake.cli.ingest", "lake.cli.server", "lake.cli.policy", "lake.cli.image",
    "lake.cli.demo", "batch", "catalog.ingestion", "governance.loads", "lake.server.client",
    "pyarrow.flight", "ray",
)
print(" ".join(sorted(m for m in sys.modules if m.startswith(heavy))))
"""


def test_catalog_and_sql_commands_load_no_other_command(tmp_path):
    # Cold start: a one-shot catalog or SQL command imports neither the other commands nor
    # the batch, ingestion and Flight code behind them.
    root = str(tmp_path / "lake")
    assert run("init", root).exit_code == 0
    assert run("db", "create", "s", "--root", root).exit_code == 0
    assert run("table", "create", "s.t", "-c", "id:int64", "--root", root).exit_code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKE_")}
    for args in (
        ["table", "list", "--root", root],
        ["table", "describe", "s.t", "--root", root],
        ["sql", "SELECT count(*) AS n FROM s.t", "--root", root],
    ):
        done = subprocess.run(
            [sys.executable, "-c", LOADED, *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [], (args, done.stdout)
    # The probe sees them when they are used.
    done = subprocess.run(
        [sys.executable, "-c", LOADED, "job", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert "lake.cli.batch" in done.stdout.split(), done.stderr


def test_every_acting_command_takes_user():
    commands = dict(_all_commands())
    assert set(commands) >= ACTING, ACTING - set(commands)
    for name in ACTING:
        assert "user" in commands[name].__code__.co_varnames, name
    for name in ACTING:
        r = run(*name, "--help")
        assert "--user" in r.output, name


def test_init_table_sql_history_drop_purge(tmp_path):
    root = str(tmp_path / "lake")
    r = run("init", root, "--admin", "alice")
    assert r.exit_code == 0 and "alice" in r.output
    toml = (tmp_path / "lake" / "lake.toml").read_text()
    assert "# [batch]" in toml and "# [batch.queues.default]" in toml  # defaults, commented
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
    q = "SELECT region, count(*) AS n FROM sales.orders GROUP BY 1 ORDER BY 1"
    r = run("sql", "--root", root, "--user", "alice", q)
    assert r.exit_code == 0 and "eu" in r.output and "us" in r.output
    r = run(
        "sql",
        "--root",
        root,
        "-u",
        "alice",
        "--format",
        "csv",
        "SELECT id FROM sales.orders ORDER BY id",
    )
    assert r.output.split() == ['"id"', "1", "2"]
    r = run(
        "sql",
        "--root",
        root,
        "-u",
        "alice",
        "--format",
        "json",
        "SELECT id FROM sales.orders ORDER BY id",
    )
    assert '"id": 1' in r.output
    r = run("table", "history", "sales.orders", "--root", root)
    assert "WRITE" in r.output and "alice" in r.output
    r = run("sql", "--root", root, "--user", "mallory", "SELECT count(*) FROM sales.orders")
    assert r.exit_code == 1  # the starter policy denies everyone but the admin
    r = run(
        "explain", "--root", root, "-u", "alice", "SELECT * FROM sales.orders WHERE region = 'eu'"
    )
    assert "read_parquet" in r.output and "1/2 files" in r.output
    r = run("table", "partitions", "sales.orders", "--root", root)
    assert "region=eu" in r.output and "region=us" in r.output
    r = run("compact", "sales.orders", "--user", "alice", "--root", root)
    assert r.exit_code == 0 and "compacted" in r.output
    r = run("vacuum", "sales.orders", "--user", "alice", "--root", root, "--dry-run")
    assert r.exit_code == 0 and "would delete" in r.output

    # drop without --purge: the folder stays, and the message says how to remove it
    folder = tmp_path / "lake" / "sales" / "orders"
    r = run("table", "drop", "sales.orders", "--root", root, "--user", "mallory")
    assert r.exit_code == 1 and folder.is_dir()  # mallory may not
    r = run("table", "drop", "sales.orders", "--root", root)
    assert r.exit_code == 0 and "lake table purge sales.orders" in r.output
    assert folder.is_dir()
    r = run("table", "drop", "sales.orders", "--root", root, "--purge", "--user", "mallory")
    assert r.exit_code == 1 and folder.is_dir()
    r = run("table", "drop", "sales.orders", "--root", root, "--purge")  # after an earlier drop
    assert r.exit_code == 0 and "purged" in r.output, r.output
    assert not folder.exists()
    r = run("table", "drop", "sales.orders", "--root", root, "--purge")
    assert r.exit_code == 1 and "TableNotFound" in r.output
    r = run("table", "purge", "sales.orders", "--root", root)
    assert r.exit_code == 0 and "nothing to purge" in r.output


def test_purge_never_touches_a_table_in_the_catalog(tmp_path):
    root = str(tmp_path / "lake")
    with lake.connect(root) as lk:
        lk.catalog.create_database("s")
        lk.catalog.create_table("s.t", pa.schema([("id", pa.int64())]))
        lk.catalog.drop_table("s.t")  # leaves s/t
        lk.catalog.create_table("s.t", pa.schema([("id", pa.int64())]))  # lives in s/t-xxxxxxxx
        lk.write("s.t", pa.table({"id": [1]}))
        assert lk.catalog.purge_dropped("s.t") == 1
        assert lk.sql("SELECT count(*) AS n FROM s.t")["n"][0].as_py() == 1
        assert lk.catalog.purge_dropped("s.t") == 0


@pytest.mark.parametrize(
    "args, error",
    [
        (["sql", "--user", "a", "SELECT * FROM read_csv('/etc/passwd')"], "AccessDenied|SQLError"),
        (["sql", "--user", "a", "SELECT * FROM nope.nope"], "TableNotFound"),
        (["table", "describe", "nope.nope"], "TableNotFound"),
        (["table", "create", "x.t", "-c", "id:wat"], "InvalidArgument"),
        (["table", "create", "x.t", "-c", "amount:decimal(99,2)"], "InvalidArgument"),
        (["table", "create", "x.t", "-c", "amount:decimal(4,9)"], "InvalidArgument"),
        (["table", "create", "x.t", "-c", "id:int64", "--tag", "pii"], "InvalidArgument"),
        (["sql", "--format", "xml", "SELECT 1"], "InvalidArgument"),
    ],
)
def test_errors_are_one_typed_line(tmp_path, args, error):
    r = runner.invoke(app, [*args, "--root", str(tmp_path / "lake")])
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    assert re.match(rf"({error}): \S", r.output), r.output
    assert len(r.output.strip().splitlines()) == 1


def test_data_and_errors_are_never_markup(tmp_path):
    root = str(tmp_path / "lake")
    values = ["[/b]", "[a] tagged", "[bold red]x[/]", ":smile:"]
    with lake.connect(root) as lk:
        lk.catalog.create_database("s")
        lk.catalog.create_table("s.t", pa.schema([("v", pa.string())]), description="[i]d[/i]")
        lk.write("s.t", pa.table({"v": values}))
    r = run("sql", "--root", root, 'SELECT v AS "[b]col[/b]" FROM s.t')
    assert r.exit_code == 0, r.output
    for v in [*values, "[b]col[/b]"]:
        assert v in r.output, r.output
    assert "[i]d[/i]" in run("table", "list", "--root", root).output
    # an error hint in brackets survives
    r = run("job", "submit", "--root", root, "--queue", "nope", "--", "true")
    assert r.exit_code == 1 and "(add [batch.queues.NAME] to lake.toml)" in r.output, r.output
    r = run("table", "describe", "[/b].x", "--root", root)
    assert r.exit_code == 1 and "Traceback" not in r.output and "MarkupError" not in r.output


def test_policy_check_lists_everything_and_apply_needs_alter(tmp_path):
    root = tmp_path / "lake"
    assert run("init", str(root), "--admin", "ada").exit_code == 0
    assert run("db", "create", "sales", "--root", str(root)).exit_code == 0
    r = run(
        "table",
        "create",
        "sales.orders",
        "-c",
        "id:int64",
        "-c",
        "region:string",
        "--root",
        str(root),
    )
    assert r.exit_code == 0
    csv = root / "policy" / "policy.csv"
    n = len(csv.read_text().splitlines())  # the appended lines are n+1, n+2, n+3
    csv.write_text(
        csv.read_text()
        + 'p2, alice, sales.orders, f1, "region = ", *\n'
        + "p, bob, sales.nope, select, allow\n"
        + "p, bob, sales, selct, allow\n"
    )
    # the lake's own policy folder is now broken: checking it still lists every problem
    for extra in (["--root", str(root)], []):
        r = run("policy", "check", str(root / "policy"), *extra)
        assert r.exit_code == 1, r.output
        assert f"policy.csv:{n + 1}: error: bad row filter of 'f1'" in r.output
        assert "= has nothing on its right" in r.output and "<class" not in r.output
        assert f"policy.csv:{n + 3}: error: unknown action 'selct'" in r.output
    r = run("policy", "check", str(root / "policy"), "--root", str(root))
    assert f"policy.csv:{n + 2}: warning" in r.output and "2 errors, 1 warning" in r.output
    # a fixed folder: applied only by someone with alter on policy
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    (fixed / "policy.csv").write_text(
        "g, ada, role:admin\np, role:admin, *, *, allow\np, alice, sales, select, allow\n"
    )
    csv.write_text((fixed / "policy.csv").read_text())  # the watched folder works again too
    r = run("policy", "apply", str(fixed), "--root", str(root), "--user", "alice")
    assert r.exit_code == 1 and "AccessDenied" in r.output
    r = run("policy", "apply", str(fixed), "--root", str(root), "--user", "ada")
    assert r.exit_code == 0 and "applied" in r.output, r.output
    r = run("sql", "--root", str(root), "-u", "alice", "SELECT count(*) AS n FROM sales.orders")
    assert r.exit_code == 0, r.output


def test_ingest_schema_mode_and_messages(tmp_path):
    root = str(tmp_path / "lake")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("id,region,amount\n1,eu,12.50\n2,us,7.25\n")
    (data / "wide.csv").write_text("id,region,amount,extra\n3,eu,1.00,x\n")
    assert run("db", "create", "sales", "--root", root).exit_code == 0
    r = run(
        "table",
        "create",
        "sales.o",
        "-c",
        "id:int64",
        "-c",
        "region:string",
        "-c",
        "amount:decimal(12,2)",
        "--root",
        root,
    )
    assert r.exit_code == 0
    r = run("ingest", "sales.o", str(data / "a.csv"), "--root", root)
    assert r.exit_code == 0, r.output
    assert re.search(r"2 rows from 1 file\(s\) in \d+ ms, version 1", r.output), r.output
    assert "rows/s" not in r.output  # no rate for a load that took no time
    r = run("ingest", "sales.o", str(data / "wide.csv"), "--root", root)
    assert r.exit_code == 1 and "SchemaMismatch" in r.output
    assert "'extra' is not in the table" in r.output and "--schema-mode merge" in r.output
    assert "amount" not in r.output  # the CSV's amount loads into the decimal: not a problem
    assert "⠋" not in r.output and "files" not in r.output.split("SchemaMismatch")[0]
    r = run("ingest", "sales.o", str(data / "wide.csv"), "--root", root, "--schema-mode", "merge")
    assert r.exit_code == 0, r.output
    with lake.connect(root) as lk:
        assert lk.sql("SELECT count(*) AS n, count(extra) AS e FROM sales.o").to_pylist() == [
            {"n": 3, "e": 1}
        ]


def test_lake_toml_errors_are_one_line_each(tmp_path):
    root = tmp_path / "lake"
    assert run("init", str(root)).exit_code == 0
    toml = root / "lake.toml"
    toml.write_text(
        toml.read_text()
        + "\n[batch]\nscheduler = 'cron'\n[batch.queues.q]\npriority = 'high'\n[nope]\nx = 1\n"
    )
    r = run("table", "list", "--root", str(root))
    assert r.exit_code == 1
    lines = r.output.replace("\n'", " '").splitlines()
    text = " ".join(lines)
    assert "lake.toml [batch] scheduler: input should be 'thread' or 'actor'" in text
    assert "lake.toml [batch.queues.q] priority: input should be a valid integer" in text
    assert "lake.toml has unknown key 'nope'; known: audit, batch, catalog, query, server" in text
    toml.write_text("[catalog]\nlock_wait = 3\n")
    r = run("table", "list", "--root", str(root))
    assert r.exit_code == 1 and "[catalog] has unknown key 'lock_wait'" in r.output
    toml.write_text("[catalog]\nlock_wait_s = 3\n")
    with lake.connect(root) as lk:
        assert lk.config.catalog.lock_wait_s == 3
    toml.write_text("[catalog]\nlock_wait_s = 4\n")  # a changed file is validated again
    with lake.connect(root) as lk:
        assert lk.config.catalog.lock_wait_s == 4


def test_image_list_and_prune(tmp_path, monkeypatch):
    cache = tmp_path / "images"
    for digest, age_days in (("a" * 64, 0), ("b" * 64, 30)):
        bundle = cache / f"sha256-{digest}"
        (bundle / "rootfs" / "bin").mkdir(parents=True)
        (bundle / "rootfs" / "bin" / "x").write_bytes(b"x" * 2048)
        (bundle / ".lakeward-used").write_text(f'{{"name": "img-{digest[0]}.tar"}}')
        old = os.path.getmtime(bundle / ".lakeward-used") - age_days * 86400
        os.utime(bundle / ".lakeward-used", (old, old))
    monkeypatch.setenv("LAKEWARD_IMAGE_CACHE", str(cache))
    r = run("image", "list")
    assert r.exit_code == 0 and "aaaaaaaaaaaa" in r.output and "img-b.tar" in r.output
    assert "2 image(s)" in r.output
    r = run("image", "prune", "--unused-days", "7")
    assert r.exit_code == 0 and "bbbbbbbbbbbb" in r.output and "removed 1 image(s)" in r.output
    assert (cache / f"sha256-{'a' * 64}").is_dir() and not (cache / f"sha256-{'b' * 64}").exists()
    r = run("image", "prune")
    assert "removed 1 image(s)" in r.output and not any(cache.glob("sha256-*"))


def test_tables_fit_80_columns(tmp_path):
    """job list, queue list and job status at COLUMNS=80: ids, states and times whole."""
    root = tmp_path / "lake"
    (root).mkdir()
    with lake.connect(root) as lk:
        b = lk.batch
        b.autostart = False  # queued only: no Ray here
        ids = [
            b.submit(["sh", "-c", "true"], user="a-rather-long-user-name", name="x" * 40).id,
            b.submit(["true"], user="bob", array_size=3, queue="default").id,
        ]
    for args in (["job", "list"], ["queue", "list"], ["job", "status", ids[0]]):
        r = sh(*args, "--root", str(root))
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert all(len(ln) <= 80 for ln in lines), r.stdout
        if args[1] == "list" and args[0] == "job":
            for i in ids:
                assert re.search(rf"^{i}( x3)?\s+SUBMITTED\s", r.stdout, re.M), r.stdout
            assert len(re.findall(r"\d\d-\d\d \d\d:\d\d:\d\d", r.stdout)) == 2
        if args[0] == "queue":
            assert re.search(
                r"^default\s+1\s+spot > on_demand\s+\d+\s+0\s+0\s+0\s+equal\s*$", r.stdout, re.M
            )
        if args[1] == "status":
            assert re.search(rf"job\s+{ids[0]}$", r.stdout, re.M)
            assert re.search(r"created\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", r.stdout)
    r = sh("job", "logs", ids[1], "--root", str(root))
    assert r.returncode == 0 and f"lake job logs {ids[1]}:INDEX" in r.stdout, r.stdout


def test_cli_terminal_states_are_the_stores():
    from batch.store import TERMINAL
    from lake.cli import batch as cli_batch

    assert set(cli_batch.TERMINAL) == set(TERMINAL)
