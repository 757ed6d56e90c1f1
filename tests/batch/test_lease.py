"""The scheduler lease is heartbeated: it moves when its holder dies (on any host) or pauses past
it, never while the holder lives, and a resumed holder stops acting at once (fencing).

Real processes: a scheduler-lease holder paused with SIGSTOP, killed with SIGKILL in its own PID
namespace ("another host").
"""

from __future__ import annotations

import shutil
import signal
import time

import pytest

import lake
from batch.lease import Lease
from batch.scheduler import owner_dead
from batch.store import BatchStore

LEASE_S = 2.0


def until(cond, timeout: float) -> float:
    """Seconds until cond() held (AssertionError after timeout)."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - t0


@pytest.fixture
def lease_store(tmp_path):
    with lake.connect(tmp_path / "lake") as lk:
        store = BatchStore(lk.store.url)
        yield tmp_path / "lake", store
        store.close()


def held_after(worker, t: float) -> list[bool]:
    """What the worker's lease said about itself, for checks made after monotonic time t."""
    out = []
    for _, line in list(worker.lines):
        at, held = line.split()
        if float(at) >= t:
            out.append(held == "True")
    return out


def test_a_paused_scheduler_loses_the_lease_and_knows_it_on_resume(lease_store, workers):
    root, store = lease_store
    w = workers("scheduler", root, LEASE_S)
    until(lambda: any(line.endswith("True") for _, line in w.lines), 30)
    mine = Lease(store, "scheduler", "main:1:1:t", LEASE_S, owner_dead)
    mine.start()
    try:
        time.sleep(LEASE_S * 3)  # the holder lives: the lease never moves
        assert not mine.held()
        assert all(held_after(w, time.monotonic() - LEASE_S * 2))
        w.signal(signal.SIGSTOP)
        waited = until(mine.held, LEASE_S * 3)
        assert LEASE_S * 0.5 < waited <= LEASE_S * 1.5, waited
        resumed = time.monotonic()
        w.signal(signal.SIGCONT)
        until(lambda: len(held_after(w, resumed)) >= 10, 10)
        assert not any(held_after(w, resumed))  # its very first check after the pause says no
        assert mine.held()
    finally:
        mine.stop()  # hands the role back at once
    back = time.monotonic()
    until(lambda: any(held_after(w, back)), LEASE_S * 2)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap for a PID namespace")
def test_a_scheduler_that_dies_on_another_host_frees_the_role(lease_store, workers):
    root, store = lease_store
    w = workers("scheduler", root, 10.0, other_host=True)  # the default lease_s of [batch]
    until(lambda: any(line.endswith("True") for _, line in w.lines), 30)
    mine = Lease(store, "scheduler", "main:1:1:t", 10.0, owner_dead)
    mine.start()
    try:
        assert not mine.held()
        w.signal(signal.SIGKILL)
        waited = until(mine.held, 30)
        assert 10.0 * 0.5 < waited < 30, waited  # not at once: nothing here can see it died
    finally:
        mine.stop()
