"""Run every benchmark in one process run and print the ratios."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_batch  # noqa: E402
import bench_cli  # noqa: E402
import bench_commit  # noqa: E402
import bench_compaction  # noqa: E402
import bench_governance  # noqa: E402
import bench_growth  # noqa: E402
import bench_ingest  # noqa: E402
import bench_query  # noqa: E402
import bench_sandbox  # noqa: E402
import bench_scale  # noqa: E402
import bench_server  # noqa: E402
import bench_skipping  # noqa: E402
import bench_tpch  # noqa: E402

if __name__ == "__main__":
    results = []
    for mod in (
        bench_commit,
        bench_skipping,
        bench_query,
        bench_governance,
        bench_tpch,
        bench_growth,
        bench_cli,
        bench_server,
        bench_sandbox,
        bench_batch,
        bench_ingest,
        bench_compaction,
        bench_scale,
    ):
        results += mod.main()
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
