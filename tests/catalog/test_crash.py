"""kill -9 at random points: nothing acknowledged is lost, no transaction is half visible."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

import lake

from support.lakes import ENV

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

WORKER = str(Path(__file__).parents[1] / "support" / "crash_worker.py")


def make_lake(root: Path) -> None:
    with lake.connect(root) as lk:
        lk.catalog.create_database("sales")
        lk.catalog.create_table(
            "sales.orders",
            pa.schema([("id", pa.int64()), ("region", pa.string()), ("amount", pa.float64())]),
            partition_by=["region"],
        )
        lk.catalog.create_table(
            "sales.customers", pa.schema([("id", pa.int64()), ("name", pa.string())])
        )


def spawn(root: Path, mode: str, worker: int, count: int | None = None) -> subprocess.Popen:
    args = [sys.executable, WORKER, str(root), mode, str(worker)] + ([str(count)] if count else [])
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )


def collect(proc: subprocess.Popen, acks: list[tuple[str, int]]) -> threading.Thread:
    proc.ready = threading.Event()

    def read():
        for line in proc.stdout:
            if line.startswith("READY"):
                proc.ready.set()
            parts = line.split()
            if parts and parts[0] == "ACK":
                acks.append((parts[1], int(parts[2])))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def check_invariants(root: Path, acks: list[tuple[str, int]]) -> None:
    with lake.connect(root) as lk:  # connecting runs recovery
        orders = lk.sql("SELECT id, amount FROM sales.orders", user="check")
        customers = lk.sql("SELECT id FROM sales.customers", user="check")
        order_batches = {int(a) for a in orders["amount"].to_pylist()}
        cust_batches = set(customers["id"].to_pylist())
        ids = orders["id"].to_pylist()
        assert len(ids) == len(set(ids)), "a batch was committed twice"
        for kind, batch in acks:
            assert batch in order_batches, f"acknowledged {kind} {batch} lost"
            if kind == "txn":
                assert batch in cust_batches
        # Transactions are all or nothing: every customer row has its orders and vice versa
        # for transactional batches (customers are only written by transactions).
        for batch in cust_batches:
            assert batch in order_batches, f"half of transaction {batch} visible"
        counts = lk.sql(
            "SELECT amount, count(*) AS n FROM sales.orders GROUP BY amount", user="check"
        )
        assert set(counts["n"].to_pylist()) <= {20}, "a partial batch is visible"
        # Delta logs were rolled back to the ratified versions, so other Delta readers agree.
        for name in ("sales.orders", "sales.customers"):
            d = lk.catalog.describe(name)
            dt = DeltaTable(d["location"])
            assert dt.version() == d["version"]
            assert dt.to_pyarrow_table().num_rows == d["num_rows"]


@pytest.mark.parametrize("mode", ["append", "txn", "mixed"])
def test_kill_9_at_random_points(tmp_path, mode):
    root = tmp_path / "lake"
    make_lake(root)
    rng = random.Random(hash(mode) & 0xFFFF)
    acks: list[tuple[str, int]] = []
    for round_ in range(5):
        procs = [spawn(root, mode, round_ * 10 + w) for w in range(2)]
        readers = [collect(p, acks) for p in procs]
        for p in procs:
            assert p.ready.wait(60), "worker did not start"
        time.sleep(rng.uniform(0.3, 1.5))
        for p in procs:
            p.send_signal(signal.SIGKILL)
        for p, r in zip(procs, readers, strict=True):
            p.wait()
            r.join(5)
    assert len(acks) > 10, "workers made too little progress for the test to mean anything"
    check_invariants(root, acks)


def test_crash_between_delta_commit_and_ratify(tmp_path):
    """The exact dangerous instant: tentative Delta commits written, catalog not yet moved."""
    root = tmp_path / "lake"
    make_lake(root)
    with lake.connect(root) as lk:
        lk.write(
            "sales.orders",
            pa.table({"id": pa.array([1], pa.int64()), "region": ["eu"], "amount": [1.0]}),
            user="etl",
        )
        loc = lk.catalog.describe("sales.orders")["location"]
    p = spawn(root, "hang", 7)
    assert p.stdout.readline().strip() == "READY"
    assert p.stdout.readline().strip() == "WROTE"
    assert DeltaTable(loc).version() == 2  # delta-rs wrote version 2, tentatively
    p.send_signal(signal.SIGKILL)
    p.wait()
    with lake.connect(root) as lk:
        assert lk.sql("SELECT count(*) AS n FROM sales.orders", user="u")["n"][0].as_py() == 1
        assert lk.sql("SELECT count(*) AS n FROM sales.customers", user="u")["n"][0].as_py() == 0
        assert DeltaTable(loc).version() == 1  # recovery rolled the log back
        lk.write(
            "sales.orders",
            pa.table({"id": pa.array([2], pa.int64()), "region": ["us"], "amount": [2.0]}),
            user="etl",
        )
        assert lk.sql("SELECT count(*) AS n FROM sales.orders", user="u")["n"][0].as_py() == 2


def test_readers_never_see_tentative_versions(tmp_path):
    root = tmp_path / "lake"
    make_lake(root)
    p = spawn(root, "hang", 3)
    assert p.stdout.readline().strip() == "READY"
    assert p.stdout.readline().strip() == "WROTE"
    try:
        with lake.connect(root) as lk:  # recovery must not touch a live writer's versions
            assert lk.sql("SELECT count(*) AS n FROM sales.orders", user="u")["n"][0].as_py() == 0
            loc = lk.catalog.describe("sales.orders")["location"]
            assert DeltaTable(loc).version() == 1
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()


def test_four_writer_processes_lose_nothing(tmp_path):
    root = tmp_path / "lake"
    make_lake(root)
    per = 12
    acks: list[tuple[str, int]] = []
    procs = [spawn(root, "append", w, per) for w in range(4)]
    readers = [collect(p, acks) for p in procs]
    for p, r in zip(procs, readers, strict=True):
        assert p.wait(180) == 0, p.stderr.read()
        r.join(5)
    assert len(acks) == 4 * per
    with lake.connect(root) as lk:
        got = lk.sql(
            "SELECT count(*) AS n, count(DISTINCT id) AS d FROM sales.orders", user="u"
        ).to_pylist()
        assert got == [{"n": 4 * per * 20, "d": 4 * per * 20}]
        # One commit per append (background compaction may add OPTIMIZE versions between them).
        ops = [h["operation"] for h in lk.history("sales.orders")]
        assert ops.count("WRITE") == 4 * per


def test_versions_past_the_catalog_without_a_lock_go_at_the_sweep_or_the_next_write(tmp_path):
    """A writer only writes past the catalog's version while it holds the table's lock, so
    opening a lake looks at locked tables alone; versions left some other way (a rollback that
    failed on I/O) are never read, and go at `recover()` or at the table's next write."""
    root = tmp_path / "lake"
    make_lake(root)
    row = {"id": pa.array([1], pa.int64()), "region": ["eu"], "amount": [1.0]}
    with lake.connect(root) as lk:
        lk.write("sales.orders", pa.table(row), user="etl")
        orders = lk.catalog.describe("sales.orders")["location"]
        customers = lk.catalog.describe("sales.customers")["location"]
    stray = pa.table({"id": pa.array([9], pa.int64()), "name": ["stray"]})
    write_deltalake(orders, pa.table({**row, "id": pa.array([9], pa.int64())}), mode="append")
    write_deltalake(customers, stray, mode="append")
    with lake.connect(root) as lk:
        assert DeltaTable(orders).version() == 2 and DeltaTable(customers).version() == 1
        assert lk.sql("SELECT id FROM sales.orders", user="u")["id"].to_pylist() == [1]
        assert lk.sql("SELECT count(*) AS n FROM sales.customers", user="u")["n"][0].as_py() == 0
        lk.write(
            "sales.customers",
            pa.table({"id": pa.array([2], pa.int64()), "name": ["b"]}),
            user="etl",
        )
        assert lk.sql("SELECT id FROM sales.customers", user="u")["id"].to_pylist() == [2]
        assert lk.recover() == {"sales.orders": [2]}
        assert DeltaTable(orders).version() == 1
        assert lk.recover() == {}
