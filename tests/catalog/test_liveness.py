"""Table locks are heartbeated leases: a dead holder anywhere frees its table within 30 s, a live
one never loses it, and a paused-then-resumed holder notices before it writes or ratifies.

Real writer processes, paused with SIGSTOP/SIGCONT and killed with SIGKILL; "another host" is
a process in its own PID namespace (bubblewrap), which no /proc check here can see.
"""

from __future__ import annotations

import random
import shutil
import signal
import time
from pathlib import Path

import pyarrow as pa
import pytest

import lake
from catalog import recovery
from catalog.errors import CommitConflict

from support.lakes import ORDERS

LEASE_S = 3.0


def make_root(tmp_path: Path, **catalog: float) -> Path:
    root = tmp_path / "lake"
    root.mkdir()
    (root / "lake.toml").write_text(
        "[catalog]\nauto_compact = false\n" + "".join(f"{k} = {v}\n" for k, v in catalog.items())
    )
    with lake.connect(root) as lk:
        lk.catalog.create_database("sales")
        lk.catalog.create_table("sales.orders", ORDERS)
    return root


def ids(lk) -> set[int]:
    return set(lk.sql("SELECT id FROM sales.orders", user="admin")["id"].to_pylist())


def batch(n: int) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([n * 1000 + i for i in range(10)], pa.int64()),
            "region": pa.array(["us"] * 10),
            "amount": pa.array([float(n)] * 10),
        }
    )


def assert_log_is_ratified(lk) -> None:
    info = lk.catalog.table("sales.orders")
    assert recovery.latest_version(info.location) == info.version


@pytest.mark.parametrize("step", ["pause-commit", "pause-write"])
def test_a_paused_writer_loses_its_lease_and_commits_nothing(tmp_path, workers, step):
    root = make_root(tmp_path, write_lease_s=LEASE_S)
    w = workers(step, root)
    w.wait_line("LOCKED")
    w.signal(signal.SIGSTOP)
    stopped = time.monotonic()
    with lake.connect(root) as lk:
        lk.write("sales.orders", batch(7), user="other")  # waits for the lease to run out
        waited = time.monotonic() - stopped
        assert LEASE_S * 0.5 < waited < LEASE_S + 5, waited
        (root / "go").touch()
        w.signal(signal.SIGCONT)
        outcome = w.wait_line(("COMMITTED", "CONFLICT", "ABORTED"))
        w.finish()
        assert not outcome.startswith("COMMITTED"), outcome
        assert "lock" in outcome
        assert ids(lk) == {7000 + i for i in range(10)}  # the other writer's rows, only
        assert [c.user for c in lk.store.commits(lk.catalog.table("sales.orders").id, 1)] == [
            "other"
        ]
        assert_log_is_ratified(lk)  # the paused writer left no version behind


def test_pauses_at_random_points_lose_no_acknowledged_append(tmp_path, workers, catalog_backend):
    if catalog_backend is None:
        pytest.skip(
            "PostgreSQL catalog only: a process stopped inside a SQLite write transaction holds "
            "the database file's lock until it resumes (SQLite serves one host, by design)"
        )
    root = make_root(tmp_path, write_lease_s=LEASE_S)
    w = workers("appends", root)
    w.wait_line("ACK 0")
    mine = set()
    with lake.connect(root) as lk:
        for i in range(4):
            time.sleep(random.uniform(0.0, 0.3))
            w.signal(signal.SIGSTOP)
            lk.write("sales.orders", batch(900 + i), user="other")
            mine.add(900 + i)
            w.signal(signal.SIGCONT)
        time.sleep(0.5)
        (root / "stop").touch()
        w.finish()
        # A pause inside a store transaction: the server ends it after 10 s idle, so the
        # other writer waits at most that long and the paused write fails when it resumes.
        acked = {int(line.split()[1]) for _, line in w.lines if line.startswith("ACK")}
        failed = {int(line.split()[1]) for _, line in w.lines if line.startswith("FAIL")}
        assert len(acked) > 4
        assert ids(lk) == {b * 1000 + i for b in acked | mine for i in range(10)}
        assert not failed & acked
        assert_log_is_ratified(lk)


def test_a_live_holder_keeps_its_table_past_the_lease(tmp_path, workers):
    root = make_root(tmp_path, write_lease_s=LEASE_S, lock_wait_s=LEASE_S * 2)
    w = workers("hold", root, LEASE_S * 4)
    w.wait_line("LOCKED")
    with lake.connect(root) as lk:
        with pytest.raises(CommitConflict, match="locked by another writer"):
            lk.write("sales.orders", batch(7), user="other")
        assert w.wait_line(("COMMITTED", "CONFLICT", "ABORTED")) == "COMMITTED"
        w.finish()
        assert ids(lk) == {1000 + i for i in range(10)}


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap for a PID namespace")
def test_a_writer_that_dies_on_another_host_frees_its_table_within_30_s(tmp_path, workers):
    root = make_root(tmp_path)  # the default lease
    w = workers("hold", root, 3600, other_host=True)
    w.wait_line("LOCKED")
    with lake.connect(root) as lk:
        holder = lk.store.lock_holder(lk.catalog.table("sales.orders").id)
        assert holder is not None and not holder.expired
        w.signal(signal.SIGKILL)
        killed = time.monotonic()
        lk.write("sales.orders", batch(7), user="other")
        waited = time.monotonic() - killed
        # Not at once (nothing here can see that process), and well within 30 s.
        assert lk.catalog.raw.settings.write_lease_s * 0.5 < waited < 30, waited
        assert ids(lk) == {7000 + i for i in range(10)}
        assert_log_is_ratified(lk)
