"""Stats file skipping: a point query over 1,000 files, with skipping vs scanning every file."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, p50, report  # noqa: E402

import lake  # noqa: E402

FILES = 1000
ROWS_PER_FILE = 2000


def main(repeat: int = 15) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        lk = lake.connect(Path(tmp) / "lake")
        lk.catalog.create_database("b")
        # Auto-compaction would merge the 1,000 files this benchmark is about.
        lk.catalog.create_table(
            "b.points",
            pa.schema([("id", pa.int64()), ("v", pa.float64())]),
            properties={"compaction.enabled": "false"},
        )
        # One transaction, many files: each tx.write is its own Delta file with tight id stats.
        with lk.transaction(user="bench") as tx:
            for f in range(FILES):
                ids = np.arange(f * ROWS_PER_FILE, (f + 1) * ROWS_PER_FILE, dtype=np.int64)
                tx.write("b.points", pa.table({"id": ids, "v": ids * 0.5}))
        target = FILES // 2 * ROWS_PER_FILE + 7
        q_skip = f"SELECT v FROM b.points WHERE id = {target}"
        # The same query with the predicate out of reach of skipping: every file is scanned.
        q_all = f"SELECT v FROM (SELECT * FROM b.points) p WHERE id = {target}"
        assert lk.explain(q_skip, user="bench").reads[0].files_scanned == 1
        assert lk.explain(q_all, user="bench").reads[0].files_scanned == FILES
        a = lambda: lk.sql(q_skip, user="bench")  # noqa: E731
        b = lambda: lk.sql(q_all, user="bench")  # noqa: E731
        assert a().equals(b())
        ta, tb = interleaved(a, b, repeat)
        ours, full = p50(ta), p50(tb)
        r = report("point query, skipping / scanning 1,000 files", ours, full, "speed-up >= 20x")
        print(f"{'':<52} speed-up {full / ours:.1f}x", flush=True)
        r["speedup"] = full / ours
        lk.close()
        return [r]


if __name__ == "__main__":
    main()
