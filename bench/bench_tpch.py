"""TPC-H at scale factor 1: the 22 queries through `lk.sql` vs raw DuckDB over the same snapshot
files, as an unrestricted user and as a user with row filters on `orders` and `customer` (the raw
query gets the same filters written by hand).

Data comes from `tpchgen-cli` (PyPI) and is cached, with the lake it is loaded into (`lk.write`),
under bench/out/ (git-ignored): `--fresh` rebuilds both. Prints per query the medians and their
ratio, and the geometric mean of the ratios.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, p50  # noqa: E402
from tpch_queries import QUERIES, TABLES  # noqa: E402

import lake  # noqa: E402

OUT = Path(__file__).parent / "out"
DATA = OUT / "tpch-sf1"
ROOT = OUT / "tpch-lake"
FILTERS = {
    "orders": "o_orderdate >= DATE '1993-01-01'",
    "customer": "c_mktsegment <> 'HOUSEHOLD'",
}
POLICY = (
    "g, admin, role:admin\n"
    "p, role:admin, *, *, allow\n"
    + "".join(f"p, analyst, tpch.{t}, select, allow\n" for t in TABLES if t not in FILTERS)
    + "".join(f'p2, analyst, tpch.{t}, f_{t}, "{c}", *\n' for t, c in FILTERS.items())
)
GOALS = {"admin": 1.05, "analyst": 1.10}
WORST = 1.25


def _tpchgen() -> str:
    exe = Path(sys.executable).with_name("tpchgen-cli")
    return str(exe) if exe.exists() else "tpchgen-cli"


def ensure_data() -> Path:
    """The eight TPC-H tables at SF 1 as Parquet (generated once, in seconds)."""
    if not all((DATA / f"{t}.parquet").exists() for t in TABLES):
        if shutil.which(_tpchgen()) is None:
            raise SystemExit("bench_tpch needs tpchgen-cli: pip install -e '.[bench]'")
        DATA.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [_tpchgen(), "parquet", "-s", "1", "--output-dir", str(DATA)],
            check=True,
            timeout=1200,
        )
    return DATA


def _plain_strings(table: pa.Table) -> pa.Table:
    schema = pa.schema(
        [
            pa.field(f.name, pa.string() if pa.types.is_string_view(f.type) else f.type)
            for f in table.schema
        ]
    )
    return table.cast(schema)


def ensure_lake(fresh: bool) -> None:
    """Load the data with `lk.write` into a lake (kept between runs; rebuilt with --fresh)."""
    done = ROOT / ".loaded"
    if fresh or not done.exists():
        shutil.rmtree(ROOT, ignore_errors=True)
        ROOT.mkdir(parents=True)
        (ROOT / "lake.toml").write_text(
            "[catalog]\nauto_compact = false\n[audit]\nflush_interval_s = 2\n"
        )
        with lake.connect(ROOT) as lk:
            lk.catalog.create_database("tpch")
            for t in TABLES:
                data = _plain_strings(pq.read_table(DATA / f"{t}.parquet"))
                lk.catalog.create_table(f"tpch.{t}", data.schema)
                lk.write(f"tpch.{t}", data, user="admin")
        done.write_text("ok\n")
    (ROOT / "policy").mkdir(exist_ok=True)
    (ROOT / "policy" / "policy.csv").write_text(POLICY)


def _same(a: pa.Table, b: pa.Table) -> bool:
    def norm(v: object) -> object:
        if isinstance(v, float | Decimal):
            return round(float(v), 2)
        return v

    if a.num_rows != b.num_rows or a.num_columns != b.num_columns:
        return False
    rows_a = [tuple(norm(v) for v in r.values()) for r in a.to_pylist()]
    rows_b = [tuple(norm(v) for v in r.values()) for r in b.to_pylist()]
    return rows_a == rows_b


def raw_connection(lk: lake.Lake, filtered: bool) -> duckdb.DuckDBPyConnection:
    """Raw DuckDB with one view per table over exactly the files of the lake's snapshot."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if lk.config.threads:
        con.execute(f"SET threads = {int(lk.config.threads)}")
    if lk.config.memory_limit:
        con.execute("SET memory_limit = $1", [lk.config.memory_limit])
    con.execute("CREATE SCHEMA tpch")
    for t in TABLES:
        snap = lk.catalog.snapshot(lk.catalog.table(f"tpch.{t}"))
        files = snap.files["path"].to_pylist()
        where = f" WHERE {FILTERS[t]}" if filtered and t in FILTERS else ""
        con.execute(f"CREATE VIEW tpch.{t} AS SELECT * FROM read_parquet({files!r}){where}")
    return con


def main(repeat: int = 5, fresh: bool = False, only: list[int] | None = None) -> list[dict]:
    ensure_data()
    ensure_lake(fresh)
    results = []
    with lake.connect(ROOT) as lk:
        for user in ("admin", "analyst"):
            raw = raw_connection(lk, filtered=user == "analyst")
            ratios, best = [], []
            print(
                f"\nTPC-H SF1 as {user}"
                + (" (row filters on orders, customer)" if user == "analyst" else "")
            )
            print(f"{'query':<6} {'lk.sql ms':>10} {'raw ms':>10} {'ratio':>7} {'best-of':>8}")
            for q, text in QUERIES.items():
                if only and q not in only:
                    continue
                sql = text.format(db="tpch")

                def ours(sql: str = sql, user: str = user) -> pa.Table:
                    return lk.sql(sql, user=user)

                def theirs(sql: str = sql, raw: duckdb.DuckDBPyConnection = raw) -> pa.Table:
                    return raw.sql(sql).to_arrow_table()

                if not _same(ours(), theirs()):
                    raise SystemExit(f"Q{q} as {user}: lk.sql and raw DuckDB disagree")
                ta, tb = interleaved(ours, theirs, repeat, warmup=1)
                a, b = p50(ta), p50(tb)
                ratios.append(a / b)
                # The ratio of the fastest runs too: on a shared machine it shows the cost
                # without other processes' noise.
                best.append(min(ta) / min(tb))
                print(
                    f"Q{q:<5} {a * 1000:10.1f} {b * 1000:10.1f} {a / b:7.3f} {best[-1]:8.3f}",
                    flush=True,
                )
                results.append(
                    {
                        "benchmark": f"tpch sf1 Q{q} {user}",
                        "ours_ms": a * 1000,
                        "raw_ms": b * 1000,
                        "ratio": a / b,
                        "goal": f"<= {WORST}",
                    }
                )
            geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
            geo_best = math.exp(sum(math.log(r) for r in best) / len(best))
            worst = max(ratios)
            print(
                f"geomean {geo:.3f} (goal <= {GOALS[user]}), worst {worst:.3f} (goal <= {WORST});"
                f" best-of geomean {geo_best:.3f}, worst {max(best):.3f}",
                flush=True,
            )
            results.append(
                {
                    "benchmark": f"tpch sf1 geomean {user}",
                    "ratio": geo,
                    "worst": worst,
                    "goal": f"<= {GOALS[user]}",
                }
            )
            raw.close()
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--fresh", action="store_true", help="regenerate the data and the lake")
    ap.add_argument("--only", type=int, nargs="*", help="query numbers to run")
    args = ap.parse_args()
    t0 = time.perf_counter()
    main(args.repeat, args.fresh, args.only)
    print(f"\n{time.perf_counter() - t0:.0f} s", flush=True)
