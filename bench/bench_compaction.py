"""Compaction: lk.compact vs raw delta-rs optimize.compact on 100 small files, and automatic
compaction under four writer processes at a sustained append rate (file count over time,
append latency during compaction, scan time vs a fully compacted table).

Run alone: python bench/bench_compaction.py [seconds] [appends/s]"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

sys.path.insert(0, str(Path(__file__).parent))
from common import p50, quiet_lake, report  # noqa: E402

import lake  # noqa: E402
from catalog.compaction import Policy  # noqa: E402

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


def writer_main(root: str, worker: int, rate: float, seconds: float, batch_rows: int) -> None:
    """One writer process: paced appends with the lake's own auto-compaction; prints JSON."""
    lk = lake.connect(root)
    name = "b.stream"
    lat: list[tuple[float, float]] = []
    fails: list[str] = []
    print("READY", flush=True)
    go = float(sys.stdin.readline())  # every writer starts on the same instant
    time.sleep(max(0.0, go - time.time()))
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds:
        t0 = time.time()
        t = time.perf_counter()
        try:
            lk.write(name, rows(worker * 1_000_000 + i, batch_rows), user=f"w{worker}")
        except Exception as e:  # noqa: BLE001 - counted, the run goes on
            fails.append(f"{type(e).__name__}: {e}")
        lat.append((t0, time.perf_counter() - t))
        i += 1
        time.sleep(max(0.0, start + i / rate - time.perf_counter()))
    auto = lk.autocompact
    runs = list(auto.stats.get("runs", [])) if auto is not None else []
    lk.close()
    print(json.dumps({"lat": lat, "fails": fails, "runs": runs}), flush=True)


def _files_now(lk: lake.Lake, info) -> int:
    # delta-rs's file list at the ratified version: no footers read, so sampling is cheap.
    return len(DeltaTable(info.location, version=lk.catalog.raw.current_version(info)).file_uris())


def _phase(
    root: Path,
    properties: dict[str, str],
    writers: int,
    rate: float,
    seconds: float,
    batch_rows: int,
) -> dict:
    """`writers` processes append `rate` commits/s in total for `seconds`; samples file count."""
    root.mkdir(parents=True)
    with lake.connect(root) as lk:
        lk.catalog.create_database("b")
        lk.catalog.create_table("b.stream", SCHEMA, properties=properties)
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "writer", str(root), str(w), str(rate / writers)]
            + [str(seconds), str(batch_rows)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "READY"
    go = time.time() + 0.5
    for p in procs:
        p.stdin.write(f"{go}\n")
        p.stdin.flush()
    samples: list[tuple[float, int]] = []
    lk = quiet_lake_at(root)
    try:
        info = lk.catalog.table("b.stream")
        while any(p.poll() is None for p in procs):
            samples.append((time.time() - go, _files_now(lk, info)))
            time.sleep(0.25)
        outs = [json.loads(p.stdout.read().strip().splitlines()[-1]) for p in procs]
        for p in procs:
            assert p.wait(60) == 0
        lat = [x for o in outs for x in o["lat"]]
        runs = [r for o in outs for r in o["runs"]]
        fails = [f for o in outs for f in o["fails"]]
        n = lk.sql("SELECT count(*) AS n FROM b.stream", user="bench")["n"][0].as_py()
        assert n == len(lat) * batch_rows and not fails, (n, len(lat), fails[:3])
        version = lk.catalog.raw.current_version(info)
        full = lk.compact("b.stream", user="bench")
        optimal = _files_now(lk, info)
        return {
            "samples": samples,
            "lat": lat,
            "runs": runs,
            "appends": len(lat),
            "rate": len(lat) / seconds,
            "optimal": optimal,
            "version": version,
            "compacted": full["versions"][-1] if full["versions"] else version,
            "lk": lk,
        }
    except BaseException:
        lk.close()
        raise


def quiet_lake_at(root: Path) -> lake.Lake:
    """The sampling lake of a phase: its lake.toml stays as the writers read it."""
    lk = lake.connect(root)
    if lk.autocompact is not None:
        lk.autocompact.close()  # the writers compact; the sampler only looks
    return lk


def _during(lat: list[tuple[float, float]], runs: list[list[float]]) -> list[float]:
    """Latencies of the appends that overlapped some compaction run."""
    return [d for t, d in lat if any(a <= t + d and t <= b for a, b, *_ in runs)]


def _curve(samples: list[tuple[float, int]], step: float = 1.0) -> str:
    """Max file count in each `step` seconds of the run."""
    buckets: dict[int, int] = {}
    for t, n in samples:
        if t >= 0:
            k = int(t // step)
            buckets[k] = max(buckets.get(k, 0), n)
    return " ".join(str(buckets[k]) for k in sorted(buckets))


def four_writers(
    tmp: Path, seconds: float, rate: float, batch_rows: int, writers: int = 4
) -> tuple[list[dict], dict]:
    """Auto-compaction under `writers` processes at a sustained `rate` appends/s in total.

    Three phases side by side, same load: compaction off (the append latency without it), the
    old fixed interval (one run per 30 s per table), and the defaults (scheduled by backlog).
    A compactor that keeps up leaves at most min_small_files - 1 small files beside the
    compacted ones: that is the optimal count here, and the goal is at most twice it.
    """
    min_small = Policy().min_small_files
    phases = {
        "compaction off": {"compaction.enabled": "false"},
        "fixed 30 s interval (before)": {"compaction.min_interval_s": "30"},
        "defaults (by backlog)": {},
    }
    res = {}
    for label, props in phases.items():
        r = res[label] = _phase(tmp / label.split()[0], props, writers, rate, seconds, batch_rows)
        if label != "defaults (by backlog)":
            r["lk"].close()  # the last phase's lake is kept for the scan comparison
        took = sorted(b - a for a, b, *_ in r["runs"])
        counts = [n for t, n in r["samples"] if t >= 0]
        bound = r["optimal"] + min_small - 1
        print(
            f"{label}: {writers} writers, {r['appends']} appends in {seconds:g} s "
            f"({r['rate']:.1f}/s), {len(r['runs'])} compactions; files mean "
            f"{statistics.fmean(counts):.1f}, max {max(counts)}, optimal {bound} "
            f"({r['optimal']} compacted + {min_small - 1} not yet due)"
            + (f"; a run takes p50 {p50(took):.2f} s, max {took[-1]:.2f} s" if took else ""),
            flush=True,
        )
        print(f"  files each second: {_curve(r['samples'])}", flush=True)
    base = res["compaction off"]
    ours = res["defaults (by backlog)"]
    lk = ours["lk"]
    try:
        counts = [n for t, n in ours["samples"] if t >= 0]
        bound = ours["optimal"] + min_small - 1
        base_lat = [d for _, d in base["lat"]]
        during = _during(ours["lat"], ours["runs"]) or [d for _, d in ours["lat"]]
        stats = {
            "appends_per_s": ours["rate"],
            "files_max": max(counts),
            "files_mean": statistics.fmean(counts),
            "files_optimal": bound,
            "compactions": len(ours["runs"]),
            "append_p50_ms": p50([d for _, d in ours["lat"]]) * 1000,
            "append_p50_during_ms": p50(during) * 1000,
            "append_max_during_ms": max(during) * 1000,
            "append_p50_off_ms": p50(base_lat) * 1000,
            "append_max_off_ms": max(base_lat) * 1000,
        }
        print(
            f"appends during compaction: p50 {stats['append_p50_during_ms']:.1f} ms, max "
            f"{stats['append_max_during_ms']:.0f} ms; with compaction off: p50 "
            f"{stats['append_p50_off_ms']:.1f} ms, max {stats['append_max_off_ms']:.0f} ms",
            flush=True,
        )
        out = []
        for what, value in (("max", stats["files_max"]), ("mean", stats["files_mean"])):
            ratio = value / bound
            print(
                f"{'file count (' + what + ' under load) / optimal':<52} ours {value:9.1f}     "
                f"raw {bound:9d}     ratio {ratio:6.2f}  (goal <= 2)",
                flush=True,
            )
            out.append(
                {
                    "benchmark": f"file count ({what} under {writers} writers) / optimal",
                    "ours": value,
                    "raw": bound,
                    "ratio": ratio,
                    "goal": "<= 2",
                }
            )
        out.append(
            report(
                "append p50 during compaction / compaction off",
                stats["append_p50_during_ms"] / 1000,
                stats["append_p50_off_ms"] / 1000,
                "<= 1.5",
            )
        )
        # The threshold leaves up to min_small_files - 1 small files: a scan pays for those.
        t_as_is = scan_time(lk, "b.stream", ours["version"])
        t_full = scan_time(lk, "b.stream", ours["compacted"])
        out.append(report("scan at the end of the load / fully compacted", t_as_is, t_full, "info"))
        return out, stats
    finally:
        lk.close()


def bounded_log(tmp: Path, versions: int = 1000, retention_s: int = 5) -> list[dict]:
    """Log files and store rows after `versions` appends: Delta's default retention vs a short
    one (the same appends, side by side)."""
    sizes = {}
    for label, props in (
        ("default retention (30 days)", {}),
        (
            f"retention {retention_s} s",
            {"delta.logRetentionDuration": f"interval {retention_s} seconds"},
        ),
    ):
        lk = quiet_lake(tmp / f"log_{len(sizes)}")
        try:
            lk.catalog.create_database("b")
            lk.catalog.create_table("b.t", SCHEMA)
            if props:
                lk.catalog.set_properties("b.t", props)
            t = time.perf_counter()
            for i in range(versions):
                lk.write("b.t", rows(i, 2), user="bench")
            took = time.perf_counter() - t
            log = Path(lk.catalog.describe("b.t")["location"]) / "_delta_log"
            counts = lk.store.row_counts()
            sizes[label] = (len(list(log.iterdir())), counts["commits"], counts["transactions"])
            print(
                f"{label}: {versions} appends in {took:.1f} s -> {sizes[label][0]} log files, "
                f"{sizes[label][1]} commit rows, {counts['audit_pending']} queued audit rows",
                flush=True,
            )
        finally:
            lk.close()
    (a, b) = sizes.values()
    return [{"benchmark": "log files kept, short / default retention", "ours": b[0], "raw": a[0]}]


def main(repeat: int = 5, seconds: float = 20.0, rate: float = 30.0) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        # Off: lk.compact is measured on exactly the files written, not on what remains of them.
        lk = quiet_lake(Path(tmp) / "lake")
        try:
            lk.catalog.create_database("b")
            out = compact_vs_raw(lk, Path(tmp), repeat, file_rows=10_000)
            out += compact_vs_raw(lk, Path(tmp), repeat, file_rows=1_000)
        finally:
            lk.close()
        load, _ = four_writers(Path(tmp), seconds, rate, batch_rows=100)
        return out + load + bounded_log(Path(tmp))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "writer":
        writer_main(
            sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
        )
    else:
        args = [float(a) for a in sys.argv[1:3]]
        main(**dict(zip(("seconds", "rate"), args, strict=False)))
