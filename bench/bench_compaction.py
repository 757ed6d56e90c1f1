"""Compaction: lk.compact vs raw delta-rs optimize.compact on 100 small files, and automatic
compaction under a steady append load (file count and scan time vs a fully compacted table)."""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

sys.path.insert(0, str(Path(__file__).parent))
from common import p50, report  # noqa: E402

import lake  # noqa: E402
from lake.autocompact import AutoCompactor  # noqa: E402

SCHEMA = pa.schema([("id", pa.int64()), ("region", pa.string()), ("amount", pa.float64())])


def rows(batch: int, n: int) -> pa.Table:
    ids = np.arange(batch * n, (batch + 1) * n, dtype=np.int64)
    return pa.table(
        {"id": ids, "region": pa.array(["eu", "us"] * (n // 2)), "amount": ids * 1.5},
        schema=SCHEMA,
    )


def compact_vs_raw(
    lk: lake.Lake, tmp: Path, repeat: int, files: int = 100, file_rows: int = 10_000
) -> list[dict]:
    """Each run compacts its own fresh, identical tables: a compaction runs once per table.

    cold: right after the writes, in a process that never read the table; in use: after one
    query, as a table that is being read (its snapshot and file footers are cached).
    """
    ours: dict[str, list[float]] = {"cold": [], "in use": []}
    raw = []
    for r in range(repeat):
        for kind, times in ours.items():
            name = f"b.small_{file_rows}_{kind.replace(' ', '_')}_{r}"
            lk.catalog.create_table(name, SCHEMA)
            for i in range(files):
                lk.write(name, rows(i, file_rows), user="bench")
            if kind == "in use":
                lk.sql(f"SELECT count(*) FROM {name}", user="bench")
            t = time.perf_counter()
            m = lk.compact(name, user="bench")
            times.append(time.perf_counter() - t)
            assert m["numFilesRemoved"] == files and m["numFilesAdded"] == 1, m
        path = str(tmp / f"raw_{file_rows}_{r}")
        DeltaTable.create(path, SCHEMA)
        for i in range(files):
            write_deltalake(path, rows(i, file_rows), mode="append")
        t = time.perf_counter()
        DeltaTable(path).optimize.compact()
        raw.append(time.perf_counter() - t)
    size = lk.catalog.describe(name)["size_bytes"] // 1024
    label = f"{files} files x {file_rows:,} rows -> 1 ({size:,} KiB)"
    return [
        report(f"lk.compact / optimize.compact, {kind}, {label}", p50(t), p50(raw), "<= 1.1")
        for kind, t in ours.items()
    ]


def scan_time(lk: lake.Lake, name: str, version: int, repeat: int = 30) -> float:
    sql = f"SELECT count(*), sum(amount), max(id) FROM {name} VERSION AS OF {version}"
    for _ in range(3):
        lk.sql(sql, user="bench")
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        lk.sql(sql, user="bench")
        times.append(time.perf_counter() - t)
    return p50(times)


def under_load(
    lk: lake.Lake, seconds: float, rate: float, batch_rows: int
) -> tuple[list[dict], dict]:
    """Append at `rate` commits/s for `seconds` with auto-compaction; sample the file count."""
    name = "b.stream"
    lk.catalog.create_table(
        name,
        SCHEMA,
        properties={"compaction.min_small_files": "2", "compaction.min_interval_s": "0"},
    )
    auto = AutoCompactor(lk.catalog).start()
    failures: list[str] = []
    latencies: list[float] = []
    done = threading.Event()

    def writer() -> None:
        i = 0
        start = time.perf_counter()
        while not done.is_set():
            t = time.perf_counter()
            try:
                lk.write(name, rows(i, batch_rows), user="bench")
            except Exception as e:  # noqa: BLE001 - counted, the run goes on
                failures.append(repr(e))
            latencies.append(time.perf_counter() - t)
            i += 1
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))

    th = threading.Thread(target=writer)
    th.start()
    counts = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.1)
        counts.append(lk.catalog.describe(name)["num_files"])
    done.set()
    th.join()
    auto.close()
    info = lk.catalog.describe(name)
    as_is = info["version"]
    full = lk.compact(name, user="bench")
    optimal = lk.catalog.describe(name)["num_files"]
    compacted = full["versions"][-1] if full["versions"] else as_is
    t_as_is = scan_time(lk, name, as_is)
    t_full = scan_time(lk, name, compacted)
    n = len(latencies)
    stats = {
        "appends": n,
        "failed_appends": len(failures),
        "rows": lk.sql(f"SELECT count(*) AS n FROM {name}", user="bench")["n"][0].as_py(),
        "expected_rows": n * batch_rows,
        "compactions": auto.stats["compactions"],
        "files_mean": statistics.fmean(counts),
        "files_max": max(counts),
        "files_end": info["num_files"],
        "files_optimal": optimal,
        "append_p50_ms": p50(latencies) * 1000,
        "append_max_ms": max(latencies) * 1000,
    }
    print(
        f"auto-compaction, {rate:g} appends/s x {seconds:g} s ({batch_rows} rows each): "
        f"{n} appends, {len(failures)} failed, {stats['compactions']} compactions; files mean "
        f"{stats['files_mean']:.1f}, max {stats['files_max']}, optimal {optimal}; append p50 "
        f"{stats['append_p50_ms']:.1f} ms, max {stats['append_max_ms']:.0f} ms",
        flush=True,
    )
    ratio = stats["files_mean"] / optimal
    print(
        f"{'file count (mean during load) / optimal':<52} ours {stats['files_mean']:9.2f}     "
        f"raw {optimal:9d}     ratio {ratio:6.2f}  (goal <= 2)",
        flush=True,
    )
    out = [
        {
            "benchmark": "file count under load / optimal",
            "ours": stats["files_mean"],
            "raw": optimal,
            "ratio": ratio,
            "goal": "<= 2",
        },
        report("scan under auto-compaction / fully compacted", t_as_is, t_full, "<= 1.5"),
    ]
    assert not failures, failures[:3]
    assert stats["rows"] == stats["expected_rows"], stats
    return out, stats


def main(repeat: int = 5, seconds: float = 20.0, rate: float = 10.0) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        lk = lake.connect(Path(tmp) / "lake")
        try:
            lk.catalog.create_database("b")
            out = compact_vs_raw(lk, Path(tmp), repeat, file_rows=10_000)
            out += compact_vs_raw(lk, Path(tmp), repeat, file_rows=1_000)
            load, _ = under_load(lk, seconds, rate, batch_rows=1000)
            return out + load
        finally:
            lk.close()


if __name__ == "__main__":
    main()
