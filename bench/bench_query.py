"""lk.sql group-by on 10M rows vs raw DuckDB read_parquet over the same files."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, p50, quiet_lake, report  # noqa: E402

import lake  # noqa: E402

ROWS = 10_000_000


def build(root: Path) -> lake.Lake:
    lk = quiet_lake(root)
    fill(lk)
    return lk


def fill(lk: lake.Lake, rows: int = ROWS) -> None:
    """Table b.events of `rows` rows (id, k in 0-999, region, v), in commits of 2M rows."""
    lk.catalog.create_database("b")
    lk.catalog.create_table(
        "b.events",
        pa.schema(
            [("id", pa.int64()), ("k", pa.int32()), ("region", pa.string()), ("v", pa.float64())]
        ),
    )
    rng = np.random.default_rng(1)
    chunk = 2_000_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        lk.write(
            "b.events",
            pa.table(
                {
                    "id": np.arange(start, start + n, dtype=np.int64),
                    "k": rng.integers(0, 1000, n, dtype=np.int32),
                    "region": pa.array(
                        np.array(["eu", "us", "apac", "latam"])[rng.integers(0, 4, n)]
                    ),
                    "v": rng.random(n),
                }
            ),
            user="bench",
        )


def main(repeat: int = 15) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        lk = build(Path(tmp) / "lake")
        snap = lk.catalog.snapshot(lk.catalog.table("b.events"))
        files = snap.files["path"].to_pylist()
        raw = duckdb.connect()
        q_ours = "SELECT k, count(*) AS n, sum(v) AS s FROM b.events GROUP BY k"
        q_raw = f"SELECT k, count(*) AS n, sum(v) AS s FROM read_parquet({files!r}) GROUP BY k"
        a = lambda: lk.sql(q_ours, user="bench")  # noqa: E731
        b = lambda: raw.sql(q_raw).to_arrow_table()  # noqa: E731
        assert a().num_rows == b().num_rows == 1000
        ta, tb = interleaved(a, b, repeat)
        out = [report("lk.sql group-by 10M rows / raw read_parquet", p50(ta), p50(tb), "<= 1.10")]
        lk.close()
        return out


if __name__ == "__main__":
    main()
