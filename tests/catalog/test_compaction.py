"""Compaction, automatic compaction, vacuum and partitions, on real Delta tables and processes.

Run as a script, this file is also the child process of the multi-process tests:
  test_compaction.py writer ROOT WORKER SECONDS   appends with auto-compaction; "ACK n" / "FAIL"
  test_compaction.py compact ROOT                 prints START, compacts sales.orders, prints DONE
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable

import lake
from catalog import locks, storage
from catalog.compaction import STAGING, Policy
from catalog.errors import CommitConflict, InvalidArgument, SQLError

from support import s3
from support.lakes import ENV

HERE = Path(__file__).resolve()
SCHEMA = pa.schema([("id", pa.int64()), ("region", pa.string()), ("amount", pa.float64())])
REGIONS = ("eu", "us", "e u/ü")  # a partition value that needs escaping in paths


def batch(b: int, n: int = 10, regions=REGIONS) -> pa.Table:
    ids = [b * 1000 + i for i in range(n)]
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "region": pa.array([regions[i % len(regions)] for i in range(n)]),
            "amount": pa.array([float(b)] * n),
        }
    )


def make(root: Path, properties: dict[str, str] | None = None) -> None:
    with lake.connect(root) as lk:
        lk.catalog.create_database("sales", exist_ok=True)
        lk.catalog.create_table(
            "sales.orders", SCHEMA, partition_by=["region"], properties=properties
        )


def rows(lk, sql: str = "SELECT * FROM sales.orders") -> pa.Table:
    return lk.sql(f"{sql} ORDER BY id", user="check")


def num_files(lk, name: str = "sales.orders") -> int:
    return lk.catalog.describe(name)["num_files"]


def delta_rs_agrees(lk, name: str = "sales.orders") -> None:
    d = lk.catalog.describe(name)
    dt = DeltaTable(d["location"])
    assert dt.version() == d["version"]
    assert dt.to_pyarrow_table().num_rows == d["num_rows"]


@pytest.fixture
def sales(tmp_path):
    root = tmp_path / "lake"
    make(root)
    with lake.connect(root) as lk:
        yield lk


# compaction ---------------------------------------------------------------------------------------
def test_compaction_keeps_rows_history_and_stats(sales):
    lk = sales
    for b in range(12):
        lk.write("sales.orders", batch(b), user="etl")
    v_before = lk.catalog.describe("sales.orders")["version"]
    then = {v: rows(lk, f"SELECT * FROM sales.orders VERSION AS OF {v}") for v in (1, 6, v_before)}
    files_before = num_files(lk)

    m = lk.compact("sales.orders", user="etl")

    assert m["numFilesRemoved"] == files_before == 36
    assert m["numFilesAdded"] == 3 == num_files(lk)
    assert m["partitionsOptimized"] == 3 and m["binsDropped"] == 0
    assert rows(lk).equals(then[v_before])
    for v, expected in then.items():  # time travel to pre-compaction versions is unchanged
        assert rows(lk, f"SELECT * FROM sales.orders VERSION AS OF {v}").equals(expected)
    h = lk.history("sales.orders")
    assert h[0]["operation"] == "OPTIMIZE" and h[0]["version"] == v_before + 1
    assert h[0]["parameters"]["read_version"] == v_before
    delta_rs_agrees(lk)
    # The new files carry exact statistics, so file skipping still works.
    info = lk.catalog.table("sales.orders")
    files = lk.catalog.snapshot(info).files
    data = rows(lk)
    for rec in files.to_pylist():
        part = data.filter(pa.compute.equal(data["region"], rec["partition.region"]))
        assert rec["num_records"] == part.num_rows
        assert rec["min.id"] == pa.compute.min(part["id"]).as_py()
        assert rec["max.id"] == pa.compute.max(part["id"]).as_py()
        assert rec["null_count.amount"] == 0
    # Nothing left to do: a second compaction commits nothing.
    again = lk.compact("sales.orders", user="etl")
    assert again["numFilesRemoved"] == 0 and again["versions"] == []


def test_target_size_splits_bins(sales):
    lk = sales
    for b in range(10):
        lk.write("sales.orders", batch(b, regions=("eu",)), user="etl")
    size = lk.catalog.describe("sales.orders")["size_bytes"]
    m = lk.compact("sales.orders", user="etl", target_size=size // 3)
    assert m["numBatches"] >= 2 and m["numFilesRemoved"] >= 8
    assert lk.sql("SELECT count(*) AS n FROM sales.orders", user="u")["n"][0].as_py() == 100
    with pytest.raises(InvalidArgument):
        lk.compact("sales.orders", user="etl", target_size=0)


def test_zorder_clusters_rows(tmp_path):
    with lake.connect(tmp_path / "lake") as lk:
        lk.catalog.create_database("g")
        schema = pa.schema([("x", pa.int64()), ("y", pa.int64()), ("v", pa.string())])
        lk.catalog.create_table("g.points", schema)
        rng = np.random.default_rng(7)
        n = 4000
        xs, ys = rng.permutation(n), rng.permutation(n)
        for part in np.array_split(np.arange(n), 8):
            lk.write(
                "g.points",
                pa.table({"x": xs[part], "y": ys[part], "v": [f"r{i}" for i in part]}),
                user="etl",
            )
        before = lk.sql("SELECT * FROM g.points ORDER BY x", user="u")
        with pytest.raises(InvalidArgument, match="not in"):
            lk.compact("g.points", user="etl", zorder=["nope"])
        m = lk.compact("g.points", user="etl", zorder=["x", "y"])
        assert m["numFilesRemoved"] == 8 and num_files(lk, "g.points") == 1
        assert lk.sql("SELECT * FROM g.points ORDER BY x", user="u").equals(before)
        path = lk.catalog.snapshot(lk.catalog.table("g.points")).files["path"][0].as_py()
        import pyarrow.parquet as pq

        stored = pq.read_table(path)
        dx = np.abs(np.diff(stored["x"].to_numpy())).mean()
        dy = np.abs(np.diff(stored["y"].to_numpy())).mean()
        # Random order moves ~n/3 per row in each dimension, a sort on x alone ~n/3 in y;
        # along a z-curve both neighbours stay close.
        assert dx < n / 20 and dy < n / 20, (dx, dy)


def test_where_and_partition_target_some_partitions(sales):
    lk = sales
    for b in range(6):
        lk.write("sales.orders", batch(b), user="etl")

    def counts() -> dict[str, int]:
        return {
            p["partition"]["region"]: p["num_files"] for p in lk.catalog.partitions("sales.orders")
        }

    assert counts() == {"eu": 6, "us": 6, "e u/ü": 6}
    m = lk.compact("sales.orders", user="etl", where="region = 'eu'")
    assert m["numFilesRemoved"] == 6 and counts() == {"eu": 1, "us": 6, "e u/ü": 6}
    lk.compact("sales.orders", user="etl", partition={"region": "e u/ü"})
    assert counts() == {"eu": 1, "us": 6, "e u/ü": 1}
    lk.compact("sales.orders", user="etl", where="region IN ('us', 'xx') AND region <> 'eu'")
    assert counts() == {"eu": 1, "us": 1, "e u/ü": 1}
    assert lk.sql("SELECT count(*) AS n FROM sales.orders", user="u")["n"][0].as_py() == 60
    delta_rs_agrees(lk)
    with pytest.raises(InvalidArgument, match="partition columns"):
        lk.compact("sales.orders", user="etl", where="amount > 3")
    with pytest.raises(InvalidArgument, match="partition columns"):
        lk.compact("sales.orders", user="etl", partition={"amount": 1.0})
    with pytest.raises(SQLError):
        lk.compact("sales.orders", user="etl", where="region = = 'x'")
    with pytest.raises(SQLError):
        lk.compact("sales.orders", user="etl", where="region IN (SELECT 1)")


def test_partitions_listing(sales):
    lk = sales
    assert lk.catalog.partitions("sales.orders") == []
    lk.write("sales.orders", batch(0, n=9), user="etl")
    lk.write("sales.orders", batch(1, n=3, regions=("eu",)), user="etl")
    parts = lk.catalog.partitions("sales.orders")
    assert [(p["partition"], p["num_files"], p["num_rows"]) for p in parts] == [
        ({"region": "e u/ü"}, 1, 3),
        ({"region": "eu"}, 2, 6),
        ({"region": "us"}, 1, 3),
    ]
    assert all(p["size_bytes"] > 0 for p in parts)
    assert sum(p["size_bytes"] for p in parts) == lk.catalog.describe("sales.orders")["size_bytes"]
    lk.catalog.create_table("sales.flat", pa.schema([("id", pa.int64())]))
    lk.write("sales.flat", pa.table({"id": pa.array([1, 2], pa.int64())}), user="etl")
    flat = lk.catalog.partitions("sales.flat")
    assert len(flat) == 1 and flat[0]["partition"] == {} and flat[0]["num_rows"] == 2


def test_rebase_keeps_concurrent_writes_and_drops_stale_bins(sales):
    """Writers commit while the compaction rewrites: appends survive, a bin whose files a delete
    replaced is dropped and redone on the fresh snapshot, and nothing waits for the rewrite."""
    lk = sales
    for b in range(5):
        lk.write("sales.orders", batch(b, regions=("eu", "us")), user="etl")
    fired = []

    def meanwhile() -> bool:
        if not fired:  # runs once, between two bins of the rewrite, with no lock held
            fired.append(time.perf_counter())
            lk.write("sales.orders", batch(50, regions=("eu", "us")), user="w")
            lk.delete("sales.orders", where="id = 1001", user="w")  # rewrites a 'us' file
            fired.append(time.perf_counter())
        return False

    from catalog.compaction import compact

    m = compact(lk.catalog.raw, "sales.orders", "etl", stop=meanwhile)
    assert fired[1] - fired[0] < 5  # the writers did not wait for the compaction
    assert m["binsDropped"] == 1 and m["attempts"] == 2 and len(m["versions"]) == 2
    got = rows(lk)["id"].to_pylist()
    expected = sorted({b * 1000 + i for b in [*range(5), 50] for i in range(10)} - {1001})
    assert got == expected
    # The appended files were small too, but were not in the first plan: they stay as they are
    # or were picked up by the retry; either way each row is there exactly once.
    delta_rs_agrees(lk)
    ops = [h["operation"] for h in lk.history("sales.orders", 4)]
    assert ops.count("OPTIMIZE") == 2


def test_transaction_that_read_before_a_compaction_still_commits(sales):
    lk = sales
    for b in range(4):
        lk.write("sales.orders", batch(b), user="etl")
    tx = lk.transaction(user="etl")
    assert tx.sql("SELECT count(*) AS n FROM sales.orders")["n"][0].as_py() == 40
    lk.compact("sales.orders", user="etl")  # rewrites files, changes no row
    tx.delete("sales.orders", where="id = 1")
    tx.commit()
    assert lk.sql("SELECT count(*) AS n FROM sales.orders", user="u")["n"][0].as_py() == 39
    # A change of rows still conflicts.
    tx = lk.transaction(user="etl")
    tx.sql("SELECT count(*) FROM sales.orders")
    lk.write("sales.orders", batch(9), user="etl")
    with pytest.raises(CommitConflict):
        tx.delete("sales.orders", where="id = 2")
    tx.cancel()


@pytest.mark.parametrize(
    "name",
    [
        "delta-0.8.0-special-partition",  # escaped partition folders (x=A%2FA)
        "partition-type-primitives",  # typed partition values, four partition columns
        "delta-0.8.0-null-partition",  # a null partition
        "table-with-dv-small",  # deletion vectors: files with one are left alone
    ],
)
def test_compaction_and_vacuum_of_tables_written_elsewhere(lk, interop, name):
    lk.catalog.create_database("x")
    lk.catalog.register_table("x.t", interop(name), governed=True)
    lk.catalog.set_properties("x.t", {"compaction.enabled": "false"})  # this test compacts by hand
    base = lk.sql("SELECT * FROM x.t", user="u")
    for _ in range(3):
        lk.write("x.t", base, user="etl")

    def content() -> list[str]:
        return sorted(map(str, lk.sql("SELECT * FROM x.t", user="u").to_pylist()))

    before = content()
    assert len(before) == 4 * base.num_rows
    m = lk.compact("x.t", user="etl")
    assert m["numFilesRemoved"] > m["numFilesAdded"] > 0
    assert content() == before
    lk.vacuum("x.t", user="etl", retention_hours=0, force=True)
    assert content() == before


# automatic compaction -------------------------------------------------------------------------------
def test_policy_from_properties():
    p = Policy.from_properties({})
    assert (p.enabled, p.min_small_files, p.small_file_bytes, p.min_interval_s) == (
        True,
        50,
        8 * 1024 * 1024,
        0.0,  # scheduled by backlog, not by the clock
    )
    p = Policy.from_properties(
        {
            "compaction.enabled": "false",
            "compaction.min_small_files": "5",
            "compaction.small_file_ratio": "0.5",
        }
    )
    assert not p.enabled and p.min_small_files == 5 and p.small_file_ratio == 0.5
    with pytest.raises(InvalidArgument):
        Policy.from_properties({"compaction.min_small_files": "many"})
    with pytest.raises(InvalidArgument):
        Policy.from_properties({"compaction.enabled": "maybe"})


def until_one_file(lk, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while num_files(lk) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert num_files(lk) == 1


@pytest.mark.slow
def test_auto_compaction_in_process_follows_properties(tmp_path):
    root = tmp_path / "lake"
    make(root, {"compaction.min_small_files": "6", "compaction.min_interval_s": "0"})
    with lake.connect(root) as lk:
        auto = lk.autocompact  # the lake's own background compactor
        for b in range(6):
            lk.write("sales.orders", batch(b, regions=("eu",)), user="etl")
        assert auto.wait_idle(30)
        assert auto.stats["compactions"] == 1 and num_files(lk) == 1
        first = time.monotonic()
        # Maintenance Lakeward starts itself is the system principal's, and audited as such.
        assert lk.history("sales.orders")[0]["user"] == "lakeward"
        audit = lk.sql(
            "SELECT a.user, a.auth FROM system.audit a WHERE a.action = 'compact'"
        ).to_pylist()
        assert audit == [{"user": "lakeward", "auth": "system"}]
        # Turned off through the store: commits no longer compact.
        info = lk.catalog.table("sales.orders")
        lk.store.update_table(info.id, properties={"compaction.enabled": "false"})
        for b in range(6, 14):
            lk.write("sales.orders", batch(b, regions=("eu",)), user="etl")
        assert auto.wait_idle(30)
        assert auto.stats["compactions"] == 1 and num_files(lk) == 9
        # On again with a minimum interval: compactions come at least that far apart.
        lk.store.update_table(
            info.id,
            properties={"compaction.enabled": "true", "compaction.min_interval_s": "3"},
        )
        lk.write("sales.orders", batch(14, regions=("eu",)), user="etl")
        until_one_file(lk)
        assert time.monotonic() - first >= 2.5
        again = time.monotonic()
        for b in range(15, 22):
            lk.write("sales.orders", batch(b, regions=("eu",)), user="etl")
        assert num_files(lk) == 8
        until_one_file(lk)
        assert time.monotonic() - again >= 2.5
        assert lk.sql("SELECT count(*) AS n FROM sales.orders", user="u")["n"][0].as_py() == 220


WRITER_RATE = 8.0  # appends/s of each of the four writer processes


def writer_main(root: str, worker: int, seconds: float) -> None:
    lk = s3.open_root(root)
    auto = lk.autocompact  # every lake process runs one
    print("READY", flush=True)
    start = time.monotonic()
    i = 0
    while time.monotonic() < start + seconds:
        b = worker * 100000 + i
        try:
            lk.write("sales.orders", batch(b), user=f"w{worker}")
            print(f"ACK {b}", flush=True)
        except Exception as e:  # noqa: BLE001 - the test counts these
            print(f"FAIL {b} {type(e).__name__}: {e}", flush=True)
        i += 1
        # A sustained rate, as a stream of small batches arrives: together >= 30 appends/s.
        time.sleep(max(0.0, start + i / WRITER_RATE - time.monotonic()))
    auto.close()
    s = auto.stats
    print(f"STATS {s['compactions']} {s['errors']} {s['seconds']:.2f} {s['checks']}", flush=True)
    lk.close()


@pytest.mark.slow
@pytest.mark.local_disk  # its append rates are a local disk's; tests/catalog/test_s3.py has S3's
def test_auto_compaction_under_four_writer_processes(tmp_path):
    root = tmp_path / "lake"
    make(root, {"compaction.min_small_files": "20", "compaction.min_interval_s": "0"})
    seconds = 12.0
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE), "writer", str(root), str(w), str(seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for w in range(4)
    ]
    outputs: list[list[str]] = [[] for _ in procs]

    def read(p, out):
        for line in p.stdout:
            out.append(line.strip())

    readers = [
        threading.Thread(target=read, args=(p, o), daemon=True)
        for p, o in zip(procs, outputs, strict=True)
    ]
    for r in readers:
        r.start()
    samples = []
    with lake.connect(root) as lk:
        info = lk.catalog.table("sales.orders")
        while any(p.poll() is None for p in procs):
            # Counted by delta-rs at the ratified version: cheaper than a full snapshot, which
            # would read every new file's footer and slow the writers down.
            pointer = lk.catalog.raw.current_version(info)
            samples.append(len(DeltaTable(info.location, version=pointer).file_uris()))
            time.sleep(0.25)
        for p, r in zip(procs, readers, strict=True):
            assert p.wait(60) == 0, p.stderr.read()
            r.join(10)
        lines = [line for out in outputs for line in out]
        fails = [line for line in lines if line.startswith("FAIL")]
        acks = [int(line.split()[1]) for line in lines if line.startswith("ACK")]
        stats = [line.split()[1:] for line in lines if line.startswith("STATS")]
        assert not fails, fails[:5]
        print(f"{len(acks) / seconds:.1f} appends/s; files sampled: {samples}")
        assert len(acks) > 100, "the writers made too little progress to mean anything"
        got = lk.sql("SELECT id FROM sales.orders", user="u")["id"].to_pylist()
        assert len(got) == len(set(got)) == len(acks) * 10  # nothing lost, nothing twice
        assert {i // 1000 for i in got} == set(acks)
        compactions = sum(int(s[0]) for s in stats) + lk.autocompact.stats["compactions"]
        ops = [h["operation"] for h in lk.history("sales.orders")]
        assert compactions == ops.count("OPTIMIZE") >= 3
        # Bounded: without compaction the table would end with 3 files per append; the count
        # stayed far below that, and compactions kept cutting it down while appends went on.
        assert max(samples) <= len(acks), samples
        cuts = sum(1 for a, b in zip(samples, samples[1:], strict=False) if b <= a / 2)
        assert cuts >= 3, samples
        lk.compact("sales.orders", user="check")
        assert num_files(lk) == 3
        delta_rs_agrees(lk)


def compact_main(root: str) -> None:
    lk = s3.open_root(root)
    print("START", flush=True)
    lk.compact("sales.orders", user="compactor")
    print("DONE", flush=True)
    lk.close()


def staged(loc: str) -> list[str]:
    """Paths of files in the table's staging folders, relative to the staging root."""
    return [r for r, _ in storage.walk(storage.join(loc, STAGING))]


def spawn_compactor(root: Path) -> subprocess.Popen:
    p = subprocess.Popen(
        [sys.executable, str(HERE), "compact", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert p.stdout.readline().strip() == "START", p.stderr.read()
    return p


@pytest.mark.chaos
@pytest.mark.slow
def test_kill_9_during_compaction_leaves_table_complete(tmp_path):
    root = tmp_path / "lake"
    # Only the compactor processes this test kills compact: the lake's own background one would
    # commit between the checks (its 300 appends are far past the backlog threshold).
    make(root, {"compaction.enabled": "false"})
    rng = random.Random(5)
    expected: list[int] = []
    killed_mid_way = 0
    duration = 0.0
    with lake.connect(root) as lk:
        loc = lk.catalog.describe("sales.orders")["location"]
        for rnd in range(5):
            for b in range(60):
                t = batch(rnd * 1000 + b, n=30)
                lk.write("sales.orders", t, user="etl")
                expected += t["id"].to_pylist()
            if rnd == 0:  # runs to the end, to time a compaction
                p = spawn_compactor(root)
                t0 = time.monotonic()
                assert p.stdout.readline().strip() == "DONE"
                duration = time.monotonic() - t0
                assert p.wait(30) == 0
            elif rnd < 4:  # killed at a random instant of it
                p = spawn_compactor(root)
                time.sleep(rng.uniform(0.05, 0.95) * duration)
                p.send_signal(signal.SIGKILL)
                p.wait()
                killed_mid_way += p.stdout.read().strip() != "DONE"
            else:  # killed with all files rewritten, waiting for the table lock to commit
                tx = lk.transaction(user="etl")
                tx.write("sales.orders", batch(999_999, n=3))  # holds the table lock
                p = spawn_compactor(root)
                deadline = time.monotonic() + 60
                while not [
                    r
                    for r in staged(loc)
                    if r.split("/")[1:2] == ["_delta_log"] and r.endswith("3.json")
                ]:
                    assert time.monotonic() < deadline and p.poll() is None
                    time.sleep(0.01)
                time.sleep(0.2)
                p.send_signal(signal.SIGKILL)
                p.wait()
                tx.cancel()
                killed_mid_way += 1
            lk.recover()
            got = rows(lk)["id"].to_pylist()
            assert got == sorted(expected), f"round {rnd}: rows changed"
            delta_rs_agrees(lk)
        assert killed_mid_way >= 3, "too few kills landed inside a compaction"
        # The table compacts and vacuums normally afterwards: staging and orphans go.
        lk.compact("sales.orders", user="etl")
        assert num_files(lk) == 3
        lk.vacuum("sales.orders", user="etl", retention_hours=0, force=True)
        assert not [r for r in staged(loc) if "~" in r]
        on_disk = sorted(
            r for r, _ in storage.walk(loc) if r.endswith(".parquet") and "_delta_log" not in r
        )
        assert len(on_disk) == 3
        assert rows(lk)["id"].to_pylist() == sorted(expected)


# vacuum -----------------------------------------------------------------------------------------------
def test_vacuum_never_breaks_a_readable_version(sales):
    lk = sales

    def count(v: int) -> int:
        sql = f"SELECT count(*) AS n FROM sales.orders VERSION AS OF {v}"
        return lk.sql(sql, user="u")["n"][0].as_py()

    def hours_since(when: datetime) -> float:
        return (datetime.now(UTC) - when).total_seconds() / 3600

    for b in range(3):
        lk.write("sales.orders", batch(b), user="etl")
    lk.compact("sales.orders", user="etl")  # v4: the 9 files of v1..v3 are removed
    assert lk.vacuum("sales.orders", user="etl") == []  # 168 h: every version is recent
    tx = lk.transaction(user="reader")  # reads v4 until it ends
    before = tx.sql("SELECT * FROM sales.orders ORDER BY id")
    lk.write("sales.orders", batch(3), user="etl")  # v5
    lk.compact("sales.orders", user="etl")  # v6: v4's and v5's files are removed
    time.sleep(1.0)
    lk.write("sales.orders", batch(4), user="etl")  # v7
    lk.compact("sales.orders", user="etl")  # v8
    at = {h["version"]: h["timestamp"] for h in lk.history("sales.orders")}
    # A window reaching back to between v6 and v7: v6..v8 were current within it.
    cutoff = at[6] + (at[7] - at[6]) / 2
    gone = lk.vacuum("sales.orders", user="etl", retention_hours=hours_since(cutoff), force=True)
    assert len(gone) == 9  # v1..v3's files; v4's stay for the running transaction
    assert tx.sql("SELECT * FROM sales.orders ORDER BY id").equals(before)
    for v in range(4, 9):
        assert count(v) == 10 * (3 + (v >= 5) + (v >= 7))
    tx.cancel()
    gone = lk.vacuum("sales.orders", user="etl", retention_hours=hours_since(cutoff), force=True)
    assert len(gone) == 6  # now v4's and v5's files go
    for v in range(6, 9):
        assert count(v) == 10 * (4 + (v >= 7))
    delta_rs_agrees(lk)


def test_vacuum_refuses_unsafe_retention(sales):
    lk = sales
    with pytest.raises(InvalidArgument, match="safe minimum"):
        lk.vacuum("sales.orders", user="etl", retention_hours=24)
    with pytest.raises(InvalidArgument):
        lk.vacuum("sales.orders", user="etl", retention_hours=-1, force=True)
    with pytest.raises(InvalidArgument, match="partition columns"):
        lk.vacuum("sales.orders", user="etl", partition={"amount": 1})


def test_vacuum_removes_orphans_and_dead_staging(sales):
    lk = sales
    lk.write("sales.orders", batch(0), user="etl")
    tx = lk.transaction(user="etl")
    tx.write("sales.orders", batch(1))  # tentative files, then rolled back: orphans
    tx.cancel()
    loc = lk.catalog.describe("sales.orders")["location"]
    host = locks.owner_id().split(":")[0]
    dead = storage.join(loc, STAGING, f"{host}:999999:1~deadbeef")  # a compaction killed mid-way
    live = storage.join(loc, STAGING, f"{locks.owner_id()}~cafe")  # one still running
    remote = storage.join(loc, STAGING, "elsewhere:1:1~f00d")  # another host's: only age tells
    for folder in (dead, live, remote):
        storage.write_bytes(storage.join(folder, "region=eu", "part-0.parquet"), b"x")

    def on_disk() -> list[str]:
        return sorted(
            r for r, _ in storage.walk(loc) if r.endswith(".parquet") and STAGING not in r
        )

    assert len(on_disk()) == 6
    # Young orphans stay under the default retention (they may be a write in flight); the
    # staging folder of a dead process goes at once, a live one's stays.
    # Vacuum names files relative to the table's folder: no path leaves the lake.
    assert lk.vacuum("sales.orders", user="etl") == [
        storage.relative(storage.join(dead, "region=eu", "part-0.parquet"), loc)
    ]
    assert not storage.is_dir(dead) and storage.is_dir(live) and storage.is_dir(remote)
    listed = lk.vacuum("sales.orders", user="etl", retention_hours=0, force=True, dry_run=True)
    assert len(on_disk()) == 6 and len(listed) == 3 + 1  # the orphans, the remote staging
    eu = lk.vacuum(
        "sales.orders", user="etl", retention_hours=0, force=True, partition={"region": "eu"}
    )
    assert [p for p in eu if STAGING not in p] and all("region=eu" in p for p in eu)
    assert len(on_disk()) == 5
    lk.vacuum("sales.orders", user="etl", retention_hours=0, force=True)
    assert len(on_disk()) == 3 and storage.is_dir(live) and not storage.is_dir(remote)
    assert rows(lk)["id"].to_pylist() == batch(0)["id"].to_pylist()
    delta_rs_agrees(lk)


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        writer_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == "compact":
        compact_main(sys.argv[2])
