"""CSV ingest throughput: `lk.ingest` (streamed into one Delta commit) vs DuckDB's own
`read_csv` -> `COPY ... TO 'x.parquet'` on the same file, in one run."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, p50, quiet_lake, report  # noqa: E402

ROWS = 3_000_000


def make_csv(path: Path, rows: int = ROWS, chunk: int = 500_000) -> None:
    """id, region, amount, day, note: a typical narrow fact table."""
    rng = np.random.default_rng(7)
    regions = np.array(["eu", "us", "apac", "latam"])
    with pacsv.CSVWriter(
        path,
        pa.schema(
            [
                ("id", pa.int64()),
                ("region", pa.string()),
                ("amount", pa.float64()),
                ("day", pa.date32()),
                ("note", pa.string()),
            ]
        ),
    ) as w:
        for start in range(0, rows, chunk):
            ids = np.arange(start, min(start + chunk, rows), dtype=np.int64)
            n = len(ids)
            w.write_table(
                pa.table(
                    {
                        "id": ids,
                        "region": regions[rng.integers(0, 4, n)],
                        "amount": np.round(rng.random(n) * 1000, 2),
                        "day": pa.array(
                            (19700 + rng.integers(0, 365, n)).astype("int32"), pa.int32()
                        ).cast(pa.date32()),
                        "note": np.char.add("order-", (ids % 10_007).astype(str)),
                    }
                )
            )


def main(repeat: int = 3) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "orders.csv"
        make_csv(csv)
        mb = csv.stat().st_size / 2**20
        lk = quiet_lake(Path(tmp) / "lake")
        lk.catalog.create_database("b")
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        out = Path(tmp) / "duck.parquet"

        ours = lambda: lk.ingest("b.orders", str(csv), user="bench")  # noqa: E731
        raw = lambda: con.execute(  # noqa: E731
            f"COPY (SELECT * FROM read_csv('{csv}')) TO '{out}' (FORMAT parquet)"
        )
        ta, tb = interleaved(ours, raw, repeat, warmup=1)
        a, b = p50(ta), p50(tb)
        for who, s in (("lk.ingest", a), ("duckdb read_csv -> parquet", b)):
            print(
                f"  {who:<28} {ROWS / s:12,.0f} rows/s  {mb / s:8.1f} MB/s  ({mb:.0f} MB CSV)",
                flush=True,
            )
        result = report(
            f"lk.ingest CSV / duckdb read_csv->parquet ({mb:.0f} MB)", a, b, "report", unit="ms"
        )
        result.update(
            rows=ROWS,
            csv_mb=mb,
            ours_rows_per_s=ROWS / a,
            ours_mb_per_s=mb / a,
            raw_rows_per_s=ROWS / b,
            raw_mb_per_s=mb / b,
        )
        con.close()
        lk.close()
        return [result]


if __name__ == "__main__":
    main()
