"""Queues at scale: a scheduler scan does the same work with 10 or 10,000 queued jobs (counted
in statements and rows, not timed), and job listings page newest first."""

from __future__ import annotations

import statistics
import threading
import time

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from batch import scheduler as sched_mod
from lake.errors import InvalidArgument

from support.batch import batch_of, wait_for


class SchedulerWork:
    """Statements the scheduler thread sends to the store, and rows its queries return."""

    def __init__(self, b):
        self.b = b
        self.statements = 0
        shared = b.store._db._engines  # the engines of the store URL, shared in this process
        self._engines = {shared.reader, shared.writer}
        for eng in self._engines:
            sa.event.listen(eng, "before_cursor_execute", self._count)

    def _count(self, _conn, _cursor, statement: str, *_args) -> None:
        # The job tables only: the lease, cron and audit rounds come on their own clocks.
        if threading.current_thread().name == "lakeward-batch" and (
            "batch_jobs" in statement or "batch_deps" in statement
        ):
            self.statements += 1

    def close(self) -> None:
        for eng in self._engines:
            sa.event.remove(eng, "before_cursor_execute", self._count)

    def per_scan(self, scans: int = 21) -> tuple[float, float]:
        """Median (statements, rows) of one scan, over `scans` scans the scheduler is woken
        for (the median: a periodic re-check of array jobs lands in some scans, not in all)."""
        sched = self.b._scheduler
        statements, rows = [], []
        for _ in range(scans):
            s0, st0, r0 = sched.stats["scans"], self.statements, self.b.store.rows_read
            sched.wake()
            wait_for(lambda s0=s0: sched.stats["scans"] > s0, timeout=30, every=0.002)
            time.sleep(0.02)  # let the scan finish its statements
            n = sched.stats["scans"] - s0
            statements.append((self.statements - st0) / n)
            rows.append((self.b.store.rows_read - r0) / n)
        return statistics.median(statements), statistics.median(rows)


def test_scan_work_does_not_grow_with_the_queue(make_lake):
    b = batch_of(make_lake())
    # The on-demand capacity (2 CPUs) is taken; the queued jobs can run nowhere else (the
    # spot capacity is free but they are not spot), so every scan looks at them and waits.
    hog = b.submit(["sleep", "300"], user="etl", cpus=2)
    wait_for(lambda: hog.status == "RUNNING", timeout=60)
    queued = [b.submit(["true"], user="etl") for _ in range(10)]
    wait_for(lambda: all(j.status == "RUNNABLE" for j in queued), timeout=30)
    work = SchedulerWork(b)
    try:
        time.sleep(sched_mod._MARGIN_S + 0.1)
        small = work.per_scan()
        # 1,000 finished jobs and 10,000 queued ones.
        for _ in range(1000):
            b.cancel(b.submit(["true"], user="etl").id)
        queued += [b.submit(["true"], user="etl") for _ in range(9990)]
        wait_for(lambda: not b.store.in_status("SUBMITTED", 1), timeout=120)
        counts = b.store.counts()
        assert counts[("default", "RUNNABLE")] == 10_000
        assert counts[("default", "CANCELLED")] == 1000
        time.sleep(sched_mod._MARGIN_S + 0.1)  # the cancellations are old news now
        large = work.per_scan()
        assert queued[0].status == "RUNNABLE"  # still waiting, nothing was lost
    finally:
        work.close()
        hog.cancel()
    # The same statements per scan, and rows bounded by the dispatch window (the oldest
    # _HEADS jobs of the one share), not by the 10,000 queued or the 1,000 finished jobs.
    assert large[0] == small[0], (small, large)
    assert small[1] == 10 and large[1] == sched_mod._HEADS, (small, large)
    assert hog.wait(timeout=60) == "CANCELLED"


def test_a_burst_of_submissions_is_promoted_in_batches(make_lake):
    """Every submission wakes the scheduler, but in a burst a scan first waits out _PACE times
    the last one: the scheduler, which shares the submitters' process (its GIL) and the store's
    write lock, spends at most about a sixth of the burst scanning, and promotes the burst
    many jobs a scan, not one scan per submission."""
    b = batch_of(make_lake())
    hog = b.submit(["sleep", "300"], user="etl", cpus=2)
    wait_for(lambda: hog.status == "RUNNING", timeout=60)
    sched = b._scheduler
    try:
        s0, t0 = sched.stats["scans"], sched.stats["scan_s"]
        started = time.monotonic()
        jobs = [b.submit(["true"], user="etl") for _ in range(2000)]
        took = time.monotonic() - started
        scans, scan_s = sched.stats["scans"] - s0, sched.stats["scan_s"] - t0
        wait_for(lambda: not b.store.in_status("SUBMITTED", 1), timeout=60)
        assert b.store.counts()[("default", "RUNNABLE")] == len(jobs)  # every one promoted
    finally:
        hog.cancel()
    assert scan_s <= 0.4 * took, (scan_s, took)
    assert scans <= len(jobs) / 5, scans
    assert hog.wait(timeout=60) == "CANCELLED"


def test_job_listing_pages_newest_first(make_lake):
    lk = make_lake()
    b = batch_of(lk)
    b.autostart = False  # listing only: the jobs stay queued
    jobs = []
    for i in range(25):
        jobs.append(
            b.submit(["true"], user=("etl", "ml")[i % 2], queue=("default", "high")[i % 3 == 0])
        )
    newest = [j.id for j in reversed(jobs)]
    page1 = [j.id for j in b.list(limit=10)]
    assert page1 == newest[:10]
    page2 = [j.id for j in b.list(limit=10, before=page1[-1])]
    page3 = [j.id for j in b.list(limit=10, before=page2[-1])]
    assert page2 == newest[10:20] and page3 == newest[20:]
    assert [j.id for j in b.list(limit=10, offset=10)] == page2
    # A cursor does not shift when jobs arrive meanwhile; an offset does.
    late = b.submit(["true"], user="etl")
    assert [j.id for j in b.list(limit=10, before=page1[-1])] == page2
    assert [j.id for j in b.list(limit=10)][0] == late.id
    # Filters combine with paging, newest first.
    ml = [j.id for j in b.list(submitted_by="ml", limit=5)]
    assert ml == [j.id for j in reversed(jobs) if j.id in {x.id for x in jobs[1::2]}][:5]
    high = [j.id for j in b.list(queue="high")]
    assert high == [j.id for i, j in reversed(list(enumerate(jobs))) if i % 3 == 0]
    assert len(b.list(status="SUBMITTED")) == 26 and b.list(status="RUNNING") == []
    assert len(b.list()) == 26  # the default page holds 100
    assert b.list(limit=10, before="no-such-job") == []
    with pytest.raises(InvalidArgument, match="limit"):
        b.list(limit=0)
    with pytest.raises(InvalidArgument, match="offset"):
        b.list(offset=-1)
    # The CLI pages the same way.
    from lake.cli.batch import job_app

    r = CliRunner().invoke(
        job_app,
        ["list", "--root", str(lk.root), "--limit", "10", "--page", "2"],
        catch_exceptions=False,
        env={"COLUMNS": "200"},
    )
    assert r.exit_code == 0, r.output
    shown = {i for i in newest + [late.id] if i in r.output}
    assert shown == set(([late.id] + newest)[10:20]), r.output
    assert "--page 3" in r.output
