"""Commit cost: lk.write vs raw write_deltalake (1,000-row append), and a 2-table transaction."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, p50, report  # noqa: E402

import lake  # noqa: E402

SCHEMA = pa.schema([("id", pa.int64()), ("region", pa.string()), ("amount", pa.float64())])


def rows(n: int = 1000) -> pa.Table:
    ids = np.arange(n, dtype=np.int64)
    return pa.table(
        {"id": ids, "region": pa.array(["eu", "us"] * (n // 2)), "amount": ids * 1.5}, schema=SCHEMA
    )


def main(repeat: int = 60) -> list[dict]:
    data = rows()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lake"
        root.mkdir()
        # Measures the commit path alone: background compaction would add work raw delta-rs skips.
        (root / "lake.toml").write_text("[catalog]\nauto_compact = false\n")
        lk = lake.connect(root)
        lk.catalog.create_database("b")
        lk.catalog.create_table("b.a", SCHEMA)
        lk.catalog.create_table("b.c", SCHEMA)
        raw_dt = DeltaTable.create(str(Path(tmp) / "raw"), SCHEMA)

        ours = lambda: lk.write("b.a", data, user="bench")  # noqa: E731
        raw = lambda: write_deltalake(raw_dt, data, mode="append")  # noqa: E731
        ta, tb = interleaved(ours, raw, repeat, warmup=5)
        out = [
            report("lk.write 1,000-row append / raw write_deltalake", p50(ta), p50(tb), "<= 1.2")
        ]

        def txn() -> None:
            with lk.transaction(user="bench") as tx:
                tx.write("b.a", data)
                tx.write("b.c", data)

        tc, td = interleaved(txn, raw, repeat // 2, warmup=3)
        out.append(report("2-table transaction / one raw commit", p50(tc), p50(td), "<= 2.5"))
        lk.close()
        return out


if __name__ == "__main__":
    main()
