"""`lake demo`: a small sales lake, a multi-table transaction and time travel."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

import lake
from batch.demo import run_spot_demo
from batch.runtime import unavailable as sandbox_unavailable
from catalog.errors import LakeError
from lake.cli.common import console as cli_console
from lake.cli.common import fail, line, render

ORDERS = pa.schema(
    [
        ("id", pa.int64()),
        ("customer_id", pa.int64()),
        ("region", pa.string()),
        ("amount", pa.float64()),
    ]
)


def _orders(start: int, n: int) -> pa.Table:
    regions = ["eu", "us", "apac"]
    return pa.table(
        {
            "id": pa.array(range(start, start + n), pa.int64()),
            "customer_id": pa.array([(i * 7) % 5 + 1 for i in range(start, start + n)], pa.int64()),
            "region": pa.array([regions[i % 3] for i in range(start, start + n)]),
            "amount": pa.array(
                [round(10 + (i * 37) % 400 + 0.99, 2) for i in range(start, start + n)]
            ),
        },
        schema=ORDERS,
    )


DEMO_POLICY = """\
# The demo's policy: etl administers, three people see three views of the same tables.
g, etl, role:admin
p, role:admin, *, *, allow
g, alice, role:analyst
p, role:analyst, sales, select, allow
p3, sales.customers.email, regexp_replace(email, '^[^@]+', '***')
g, bob, role:eu_manager
p2, role:eu_manager, sales.orders, eu_only, "region = 'eu'", *
p2, role:eu_manager, sales.customers, names, TRUE, id name
g, carol, role:auditor
p, role:auditor, system.audit, select, allow
"""


def governance(lk: lake.Lake, out: Console) -> None:
    """Three users, three views of one table; a denied query; the audit trail."""
    out.print(Panel.fit(Text("Governance: one query, three users"), style="cyan"))
    q = "SELECT region, count(*) AS orders, round(sum(amount), 2) AS revenue FROM sales.orders GROUP BY 1 ORDER BY 1"
    out.print(Text(q, style="dim"))
    out.print(render(lk.sql(q, user="alice"), "alice (analyst): every row"))
    out.print(render(lk.sql(q, user="bob"), "bob (eu_manager): row filter region = 'eu'"))
    try:
        lk.sql(q, user="carol")
    except lake.errors.AccessDenied as e:
        out.print(line("carol (auditor): ", ("AccessDenied", "red"), f" {e}"))
    cq = "SELECT * FROM sales.customers ORDER BY id"
    out.print(render(lk.sql(cq, user="alice"), "alice: customers, email masked"))
    out.print(render(lk.sql(cq, user="bob"), "bob: customers, email not granted"))
    out.print(line(("Why bob sees what he sees", "bold"), " (lk.explain):"))
    for rule in lk.explain(q, user="bob").rules:
        out.print(Text(f"  {rule}"))
    lk.audit.flush()
    trail = lk.sql(
        "SELECT a.user, a.action, a.decision, a.rows, left(a.statement, 40) AS statement "
        "FROM system.audit a WHERE a.action = 'sql' ORDER BY a.seq DESC LIMIT 8",
        user="carol",
    )
    out.print(render(trail, "carol reads the audit trail (system.audit)"))


def maintenance(lk: lake.Lake, out: Console) -> None:
    """A crawl of raw files into Delta tables, and auto-compaction at work."""

    out.print(Panel.fit(Text("Maintenance: crawl raw files, compact automatically"), style="cyan"))
    # Files to crawl live outside the lake: its own folders are never a readable location.
    outside = Path(tempfile.mkdtemp(prefix="lakeward-demo-landing-"))
    landing = outside / "clicks"
    for day in ("2026-11-01", "2026-11-02"):
        folder = landing / f"day={day}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "part-0.csv").write_text(
            "user_id,page,ms\n" + "".join(f"{i},/p{i % 4},{10 * i}\n" for i in range(20))
        )
    try:
        result = lk.crawl(landing.parent, database="raw", user="etl")
    finally:
        shutil.rmtree(outside, ignore_errors=True)
    out.print(
        render(
            pa.table(
                {
                    "table": [t.name for t in result.tables],
                    "action": [t.action for t in result.tables],
                    "files": [
                        len(t.files) if isinstance(t.files, list) else t.files
                        for t in result.tables
                    ],
                    "rows": [t.rows for t in result.tables],
                    "partitioned by": [", ".join(t.partition_by) for t in result.tables],
                }
            ),
            "lk.crawl(landing/) into database raw",
        )
    )

    lk.catalog.create_table(
        "sales.events",
        pa.schema([("id", pa.int64()), ("kind", pa.string())]),
        user="etl",
        properties={"compaction.min_small_files": "20", "compaction.min_interval_s": "0"},
        exist_ok=True,
    )
    for i in range(19):
        lk.write(
            "sales.events",
            pa.table({"id": pa.array([i], pa.int64()), "kind": ["click"]}),
            user="etl",
        )
    files = lambda: lk.catalog.describe("sales.events")["num_files"]  # noqa: E731
    out.print(Text(f"sales.events after 19 one-row appends: {files()} small files"))
    lk.write(
        "sales.events", pa.table({"id": pa.array([19], pa.int64()), "kind": ["click"]}), user="etl"
    )
    out.print(
        Text(
            f"the 20th append reaches the table's threshold (compaction.min_small_files = 20): "
            f"{files()} files, compaction queued in the background"
        )
    )
    deadline = time.monotonic() + 20
    while files() > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    ops = [h["operation"] for h in lk.history("sales.events")]
    out.print(
        Text(
            f"after background auto-compaction: {files()} file; {ops.count('OPTIMIZE')} OPTIMIZE "
            "commit by lakeward; the appends never waited on it"
        )
    )


def preflight(out: Console) -> str | None:
    """Check what the demo needs before it starts and say what it will skip; returns why the
    batch part cannot run here (None: it can)."""
    problem = sandbox_unavailable()
    if problem is None:
        out.print(Text("checked: bubblewrap runs sandboxes here; the demo runs every part"))
        return None
    out.print(
        line(("the batch part will be skipped", "yellow"), " (`make demo` installs what it needs):")
    )
    out.print(Text(f"  {problem}"))
    return problem


def run(root: Path, fresh: bool = False, console: Console | None = None) -> None:
    """Build the demo lake at `root` and narrate it."""
    out = console or Console(highlight=False)
    sandbox_problem = preflight(out)

    def say(text: str) -> None:
        out.print(Text(text))

    if fresh and root.exists():
        shutil.rmtree(root)
    (root / "policy").mkdir(parents=True, exist_ok=True)
    (root / "policy" / "policy.csv").write_text(DEMO_POLICY)
    with lake.connect(root) as lk:
        out.print(Panel.fit(line("Lakeward demo lake at ", (str(lk.root), "bold")), style="cyan"))
        lk.catalog.create_database("sales", description="Orders and customers", exist_ok=True)
        lk.catalog.create_table(
            "sales.orders",
            ORDERS,
            partition_by=["region"],
            tags={"pii": "false"},
            description="One row per order",
            user="etl",
            exist_ok=True,
        )
        lk.catalog.create_table(
            "sales.customers",
            pa.schema([("id", pa.int64()), ("name", pa.string()), ("email", pa.string())]),
            tags={"pii": "true"},
            description="Customers",
            user="etl",
            exist_ok=True,
        )
        lk.write("sales.orders", _orders(0, 30), user="etl")
        lk.write(
            "sales.customers",
            pa.table(
                {
                    "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
                    "name": ["Ada", "Grace", "Alan", "Edsger", "Barbara"],
                    "email": [
                        "ada@x.org",
                        "grace@x.org",
                        "alan@x.org",
                        "edsger@x.org",
                        "barbara@x.org",
                    ],
                }
            ),
            user="etl",
        )
        before = lk.catalog.describe("sales.orders")["version"]

        tables = pa.table(
            {
                "table": [t.full_name for t in lk.catalog.list_tables()],
                "version": [t.version for t in lk.catalog.list_tables()],
                "description": [t.description for t in lk.catalog.list_tables()],
            }
        )
        out.print(render(tables, "Catalog"))
        out.print(
            render(
                lk.sql(
                    "SELECT region, count(*) AS orders, round(sum(amount), 2) AS revenue "
                    "FROM sales.orders GROUP BY region ORDER BY region",
                    user="alice",
                ),
                "Revenue by region",
            )
        )

        out.print(
            line(
                ("A multi-table transaction", "bold"),
                ": new orders and a customer removal, all or nothing",
            )
        )
        with lk.transaction(user="etl") as tx:
            tx.write("sales.orders", _orders(30, 6))
            tx.delete("sales.customers", where="id = 5")
            inside = tx.sql("SELECT count(*) AS n FROM sales.orders")["n"][0].as_py()
            outside = lk.sql("SELECT count(*) AS n FROM sales.orders", user="alice")["n"][0].as_py()
            out.print(
                Text(
                    f"  inside the transaction: {inside} orders; outside, before commit: {outside}"
                )
            )
        after = lk.sql("SELECT count(*) AS n FROM sales.orders", user="alice")["n"][0].as_py()
        out.print(Text(f"  after commit: {after} orders"))

        out.print(line(("A failed transaction", "bold"), " rolls back everything it wrote"))
        try:
            with lk.transaction(user="etl") as tx:
                tx.write("sales.orders", _orders(100, 50))
                tx.delete("sales.customers")
                raise RuntimeError("simulated failure")
        except RuntimeError:
            pass
        n = lk.sql(
            "SELECT (SELECT count(*) FROM sales.orders) AS orders, "
            "(SELECT count(*) FROM sales.customers) AS customers",
            user="alice",
        )
        out.print(render(n, "Still there after the failed transaction"))

        out.print(line(("Time travel", "bold"), f": sales.orders VERSION AS OF {before}"))
        out.print(
            render(
                lk.sql(
                    f"SELECT count(*) AS orders, round(sum(amount), 2) AS revenue FROM sales.orders VERSION AS OF {before}",
                    user="alice",
                ),
                f"sales.orders at version {before}",
            )
        )
        hist = lk.history("sales.orders")
        out.print(
            render(
                pa.table(
                    {
                        "version": [h["version"] for h in hist],
                        "user": [h["user"] for h in hist],
                        "operation": [h["operation"] for h in hist],
                    }
                ),
                "History of sales.orders",
            )
        )
        ex = lk.explain("SELECT sum(amount) FROM sales.orders WHERE region = 'eu'", user="alice")
        r = ex.reads[0]
        out.print(
            line(
                ("File skipping", "bold"),
                f": WHERE region = 'eu' scans {r.files_scanned} of {r.files_total} files",
            )
        )
        governance(lk, out)
        maintenance(lk, out)
        out.print(Panel.fit(Text("Batch: a checkpointing job on spot compute"), style="cyan"))
        if sandbox_problem is None:
            run_spot_demo(lk.batch, lk.catalog, lambda q, u: lk.sql(q, user=u), say=say)
        else:
            say(f"skipped: {sandbox_problem}")
        out.print(Panel.fit(Text("demo finished"), style="green"))


def demo(
    root: Annotated[
        Path, typer.Option("--root", "-r", help="Where to build the demo lake.")
    ] = Path("./demo-lake"),
    fresh: Annotated[bool, typer.Option(help="Delete the demo lake first.")] = False,
) -> None:
    """Build a small sales lake and show tables, governance, maintenance and a batch job."""
    try:
        run(root, fresh=fresh, console=cli_console)
    except LakeError as e:
        fail(e)


def register(app: typer.Typer) -> None:
    """Add `demo` to the main `lake` app."""
    app.command("demo")(demo)
