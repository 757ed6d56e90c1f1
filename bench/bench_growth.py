"""Cost as tables grow: tables of 100, 1,000 and 10,000 files (one version each) and a table of
100,000 versions whose files were compacted, each measured side by side with raw delta-rs +
DuckDB over the same files:

- warm: a governed count/sum through `lk.sql` vs DuckDB over the file list;
- fresh: the first query in a new process (connect + query) vs `DeltaTable` + DuckDB there,
  both timed after their imports (bench_cli measures those); sqlglot's DuckDB dialect, which
  sqlglot loads at the first parse (~16 ms), is timed on our side;
- travel: `VERSION AS OF 1` with the in-memory caches dropped vs `DeltaTable(version=1)` + DuckDB;
- snapshot: loading the table's current snapshot with the in-memory caches dropped (what a
  restarted process does; the snapshot saved on disk is used) vs `DeltaTable(...).file_uris()`;
- first build: the same with nothing saved on disk either (every footer read once);
- point: `WHERE id = X` (file skipping) vs DuckDB over every file (row-group skipping).

The tables are built once under bench/out/growth (git-ignored; see growth_tables.py for how the
log is written directly) and reused; `--fresh` rebuilds them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import sqlalchemy
from deltalake import DeltaTable

sys.path.insert(0, str(Path(__file__).parent))
import growth_tables  # noqa: E402
from common import interleaved, p50  # noqa: E402

import lake  # noqa: E402
from catalog import snapshot as snapshots  # noqa: E402
from catalog.store.connections import Connections  # noqa: E402
from governance import query as governed_query  # noqa: E402

ROOT = Path(__file__).parent / "out" / "growth"
SIZES = {"t100": (100, "appends"), "t1k": (1000, "appends"), "t10k": (10_000, "appends")}
BIG = {"t100kv": (100_000, "compacted")}
POLICY = "g, bench, role:admin\np, role:admin, *, *, allow\n"
Q = "SELECT count(*) AS n, sum(v) AS s FROM {rel}"
GOALS = {
    "warm": 1.10,
    "fresh": 1.5,
    "travel": 1.5,
    "snapshot": 1.5,
    "first build": None,  # no snapshot on disk yet: every footer is read once
    "point": 1.10,
}

FRESH_OURS = """
import json, sys, time
import lake
import catalog.store.sql  # imports stay out of the timing, on both sides (see bench_cli)
t = time.perf_counter()
lk = lake.connect(sys.argv[1])
lk.sql(sys.argv[2], user="bench")
t = time.perf_counter() - t
lk.close()
print(json.dumps(t))
"""
FRESH_RAW = """
import json, sys, time
import duckdb
from deltalake import DeltaTable
t = time.perf_counter()
files = DeltaTable(sys.argv[1]).file_uris()
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.sql(sys.argv[2].format(rel=f"read_parquet({files!r})")).fetchall()
print(json.dumps(time.perf_counter() - t))
"""


def build(fresh: bool, names: dict[str, tuple[int, str]]) -> None:
    """Build the grown tables (once) and register them in the lake as governed tables."""
    if fresh:
        shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True, exist_ok=True)
    (ROOT / "lake.toml").write_text(
        "[catalog]\nauto_compact = false\n[audit]\nflush_interval_s = 0\n"
    )
    (ROOT / "policy").mkdir(exist_ok=True)
    (ROOT / "policy" / "policy.csv").write_text(POLICY)
    with lake.connect(ROOT) as lk:
        lk.catalog.create_database("g", exist_ok=True)
        for name, (n, how) in names.items():
            loc = ROOT / "tables" / name
            if not (loc / "_delta_log").is_dir():
                t = time.perf_counter()
                shutil.rmtree(loc, ignore_errors=True)
                getattr(growth_tables, how)(loc, n)
                print(f"built {name}: {n} versions ({how}) in {time.perf_counter() - t:.0f} s")
            if not any(i.name == name for i in lk.catalog.list_tables("g")):
                lk.catalog.register_table(f"g.{name}", loc, governed=True)


def _child(code: str, *args: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def _side_by_side(a, b, repeat: int) -> tuple[float, float]:
    """Medians of a and b run alternately; fast ones run more often (about 2 s a side, up to 60
    times), so a loaded machine's noise averages out."""
    t = time.perf_counter()
    a()
    b()
    once = time.perf_counter() - t
    n = max(repeat, min(60, int(4.0 / max(once, 1e-6))))
    ta, tb = interleaved(a, b, n, warmup=1)
    return p50(ta), p50(tb)


def store_calls(fn) -> tuple[int, int]:
    """(statements, transactions) `fn` sends to the metadata store (of any SQLAlchemy engine)."""
    seen: list[str] = []

    def count(conn, cursor, statement, *_):
        seen.append(statement.lstrip()[:5].upper())

    # The hot statements skip SQLAlchemy on SQLite (Connections.fetch/change): counted here.
    plain = {"fetch": Connections.fetch, "change": Connections.change}

    def counted(name: str):
        def call(self, stmt, params=None):
            if self.dialect == "sqlite":
                seen.extend(["BEGIN", "CHANGE"] if name == "change" else ["FETCH"])
            return plain[name](self, stmt, params)

        return call

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", count)
    for name in plain:
        setattr(Connections, name, counted(name))
    try:
        fn()
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", count)
        for name, method in plain.items():
            setattr(Connections, name, method)
    begins = sum(1 for st in seen if st.startswith("BEGIN"))
    fetches = sum(1 for st in seen if st == "FETCH")  # each one statement, its own snapshot
    return len(seen) - begins, begins + fetches


def _drop_caches() -> None:
    snapshots.clear_caches()
    governed_query.clear_cache()


def measure(lk: lake.Lake, name: str, repeat: int) -> dict[str, tuple[float, float]]:
    info = lk.catalog.table(f"g.{name}")
    loc = info.location
    files = lk.catalog.snapshot(info).files["path"].to_pylist()
    raw = duckdb.connect()
    raw.execute("SET enable_progress_bar = false")
    rel_all = f"read_parquet({files!r})"
    out: dict[str, tuple[float, float]] = {}

    ours_sql = Q.format(rel=f"g.{name}")
    raw_sql = Q.format(rel=rel_all)
    assert (
        lk.sql(ours_sql, user="bench").to_pylist() == raw.sql(raw_sql).to_arrow_table().to_pylist()
    )
    out["warm"] = _side_by_side(
        lambda: lk.sql(ours_sql, user="bench"), lambda: raw.sql(raw_sql).fetchall(), repeat
    )

    fa, fb = [], []
    for _ in range(max(5, repeat)):
        fa.append(_child(FRESH_OURS, str(ROOT), ours_sql))
        fb.append(_child(FRESH_RAW, loc, Q))
    out["fresh"] = (p50(fa), p50(fb))

    travel = Q.format(rel=f"g.{name} VERSION AS OF 1")

    def ours_travel() -> None:
        _drop_caches()
        lk.sql(travel, user="bench")

    def raw_travel() -> None:
        uris = DeltaTable(loc, version=1).file_uris()
        raw.sql(Q.format(rel=f"read_parquet({uris!r})")).fetchall()

    out["travel"] = _side_by_side(ours_travel, raw_travel, repeat)

    def ours_snapshot() -> None:
        _drop_caches()
        lk.catalog.snapshot(info)

    out["snapshot"] = _side_by_side(ours_snapshot, lambda: DeltaTable(loc).file_uris(), repeat)

    def ours_first_build() -> None:
        _drop_caches()
        shutil.rmtree(lk.root / "_lakeward" / "snapshots", ignore_errors=True)
        lk.catalog.snapshot(info)

    ta, tb = interleaved(ours_first_build, lambda: DeltaTable(loc).file_uris(), 3, warmup=0)
    out["first build"] = (p50(ta), p50(tb))
    lk.catalog.snapshot(info)  # saved again for what follows

    target = (len(files) // 2) * growth_tables.ROWS + 7
    point = f"SELECT * FROM {{rel}} WHERE id = {target}"
    ours_point = point.format(rel=f"g.{name}")
    raw_point = point.format(rel=rel_all)
    assert lk.sql(ours_point, user="bench").num_rows == 1
    out["point"] = _side_by_side(
        lambda: lk.sql(ours_point, user="bench"), lambda: raw.sql(raw_point).fetchall(), repeat
    )
    raw.close()
    return out


def main(
    repeat: int = 9, fresh: bool = False, big: bool = True, only: list[str] | None = None
) -> list[dict]:
    names = {**SIZES, **(BIG if big else {})}
    if only:
        names = {n: names[n] for n in only}
    build(fresh, names)
    results = []
    with lake.connect(ROOT) as lk:
        curves = {}
        for name in names:
            curves[name] = measure(lk, name, repeat)
            # Time per measurement stays readable in one line per table.
            cells = "  ".join(
                f"{k} {a * 1000:7.1f}/{b * 1000:7.1f} ({a / b:4.2f})"
                for k, (a, b) in curves[name].items()
            )
            print(f"{name:<7} {cells}", flush=True)
            statements, transactions = store_calls(
                lambda n=name: lk.sql(Q.format(rel=f"g.{n}"), user="bench")
            )
            print(
                f"{'':<7} a warm query: {statements} metadata-store statements in "
                f"{transactions} transactions",
                flush=True,
            )
            results.append(
                {
                    "benchmark": f"growth store calls per warm query {name}",
                    "statements": statements,
                    "transactions": transactions,
                }
            )
        print("\nratio lk/raw (goal)     " + "  ".join(f"{n:>8}" for n in names))
        for kind, goal in GOALS.items():
            ratios = [curves[n][kind][0] / curves[n][kind][1] for n in names]
            want = f"<= {goal:4.2f}" if goal else "   --  "
            print(f"{kind:<11} ({want}) " + "  ".join(f"{r:8.2f}" for r in ratios))
            for n, r in zip(names, ratios, strict=True):
                a, b = curves[n][kind]
                results.append(
                    {
                        "benchmark": f"growth {kind} {n}",
                        "ours_ms": a * 1000,
                        "raw_ms": b * 1000,
                        "ratio": r,
                        "goal": f"<= {goal}" if goal else "",
                    }
                )
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--fresh", action="store_true", help="rebuild the tables")
    ap.add_argument("--no-big", action="store_true", help="skip the 100,000-version table")
    ap.add_argument(
        "--only", nargs="+", choices=[*SIZES, *BIG], help="measure these tables only (t100: small)"
    )
    args = ap.parse_args()
    main(args.repeat, args.fresh, not args.no_big, args.only)
