"""Automatic compaction: one background thread of the lake process compacts tables whose small
files pass their thresholds (table properties `compaction.*`, see `catalog.compaction.Policy`).

Every ratified commit of this process notifies the worker (a catalog commit hook). A table is
queued at most once, so a burst of commits costs one look. Compaction is scheduled by backlog:
a table is compacted as soon as it has `compaction.min_small_files` small files, whichever
process wrote them (optionally no sooner than `compaction.min_interval_s` after the last run).
Counting them costs a delta-rs log replay, so the worker counts only when enough versions have
been ratified since its last count to possibly reach the threshold (it learns how many small
files a version adds). The compaction itself is `catalog.compaction.compact`: it rewrites
without the table lock and commits rebased, so the appends that triggered it never wait long
and never fail. Processes of one host take turns on a table (an flock); the others look again
shortly, and every process's appends count towards the same backlog.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from catalog.catalog import Catalog
from catalog.compaction import OPERATION, Policy, Stopped, backlog, compact, exclusive
from catalog.errors import LakeError
from catalog.store import TableInfo

log = logging.getLogger("lakeward.autocompact")

USER = "lakeward"  # the system principal: maintenance Lakeward starts itself
_RETRY_S = 5.0  # after a failed attempt (e.g. the table lock was busy for lock_wait_s)
_BUSY_S = 0.5  # after finding another process compacting the table
_HISTORY = 64  # recent commits scanned for another process's compaction
_RUNS = 1000  # compaction runs remembered in stats["runs"]
_NICE = 10  # the worker's CPU priority below the appends


@dataclass
class _Count:
    """The last count of a table's backlog."""

    version: int  # the ratified version counted
    small: int  # compactable small files at it
    per_version: float = 1.0  # small files a version added, as last observed


class AutoCompactor:
    """Background compaction of one lake process's tables; `start()` it, `close()` it.

    Counters in `stats`: checks, counts (backlog counts, each a log replay), compactions,
    files_removed, files_added, errors, last_error, seconds (spent compacting), and runs: the
    last compactions as [wall-clock start, end, files removed].
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        user: str = USER,
        on_compacted: Callable[[TableInfo, dict[str, Any]], None] | None = None,
    ):
        self.catalog = catalog
        self.user = user
        # Called after each compaction that rewrote files (the lake audits it there).
        self.on_compacted = on_compacted
        self.stats: dict[str, Any] = {
            "checks": 0,
            "counts": 0,
            "compactions": 0,
            "files_removed": 0,
            "files_added": 0,
            "errors": 0,
            "last_error": None,
            "seconds": 0.0,
            "runs": deque(maxlen=_RUNS),
        }
        self._counts: dict[int, _Count] = {}
        self._due: dict[int, float] = {}  # table id -> monotonic time to look at it
        self._last_run: dict[int, float] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._busy = False
        self._thread: threading.Thread | None = None

    # lifecycle ---------------------------------------------------------------------------------
    def start(self) -> AutoCompactor:
        """Start the worker thread and listen to this process's commits."""
        if self._thread is not None:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lakeward-autocompact", daemon=True)
        self._thread.start()
        self.catalog.add_commit_hook(self.notify)
        return self

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop listening, abandon queued work and stop the worker.

        A compaction in progress stops between bins and commits nothing it had not committed.
        """
        self.catalog.remove_commit_hook(self.notify)
        self._stop.set()
        with self._cond:
            self._due.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> AutoCompactor:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # triggering --------------------------------------------------------------------------------
    def notify(self, info: TableInfo, version: int | None = None) -> None:
        """A commit landed on `info`: look at the table soon (the commit hook)."""
        if info.table_type != "GOVERNED" or self._stop.is_set():
            return
        with self._cond:
            if info.id not in self._due:
                self._due[info.id] = time.monotonic()
                self._cond.notify()

    def idle(self) -> bool:
        """Nothing queued and nothing running."""
        with self._cond:
            return not self._busy and not any(t <= time.monotonic() for t in self._due.values())

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until the worker has nothing to do now; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.02)
        return self.idle()

    # the worker --------------------------------------------------------------------------------
    def _next(self) -> int | None:
        with self._cond:
            while not self._stop.is_set():
                now = time.monotonic()
                if self._due:
                    table_id, at = min(self._due.items(), key=lambda kv: kv[1])
                    if at <= now:
                        del self._due[table_id]
                        self._busy = True
                        return table_id
                    self._cond.wait(at - now)
                else:
                    self._cond.wait()
            return None

    def _later(self, table_id: int, delay: float) -> None:
        with self._cond:
            at = time.monotonic() + delay
            self._due[table_id] = min(self._due.get(table_id, at), at)
            self._cond.notify()

    def _run(self) -> None:
        # Background work yields the CPU to the appends it serves: a lower priority for this
        # thread (Linux schedules threads alone) and for the threads native code starts from it.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICE)
        while True:
            table_id = self._next()
            if table_id is None:
                return
            try:
                self.check(table_id)
            except Stopped:
                return
            except Exception as e:  # noqa: BLE001 - the worker must outlive any one table
                self.stats["errors"] += 1
                self.stats["last_error"] = f"{type(e).__name__}: {e}"
                log.warning("auto-compaction of table %s failed: %s", table_id, e)
                if not self._stop.is_set():
                    self._later(table_id, _RETRY_S)
            finally:
                with self._cond:
                    self._busy = False

    def check(self, table_id: int) -> dict[str, Any] | None:
        """Compact one table now if its policy says so; returns the metrics, or None."""
        self.stats["checks"] += 1
        info = self.catalog.store.get_table_by_id(table_id)
        if info is None or info.table_type != "GOVERNED":
            self._counts.pop(table_id, None)
            return None
        try:
            policy = Policy.from_properties(info.properties)
        except LakeError as e:
            log.warning("%s: %s; auto-compaction skipped", info.full_name, e)
            return None
        if not policy.enabled:
            return None
        now = time.monotonic()
        wait = self._last_run.get(table_id, -1e18) + policy.min_interval_s - now
        if wait > 0:
            self._later(table_id, wait)
            return None
        if not self._due_now(info, policy):
            return None
        with exclusive(info, self.catalog.store) as ours:
            if not ours:  # another process of this host is compacting it right now
                self._later(table_id, max(policy.min_interval_s, _BUSY_S))
                return None
            if policy.min_interval_s > 0:
                others = self._since_other_compaction(info)
                if others is not None and others < policy.min_interval_s:
                    self._later(table_id, policy.min_interval_s - others)
                    return None
            self._last_run[table_id] = now
            started, wall = time.monotonic(), time.time()
            metrics = compact(
                self.catalog,
                info.full_name,
                self.user,
                target_size=policy.target_file_bytes,
                small_file_bytes=policy.small_file_bytes,
                attempts=1,  # new commits re-trigger us; no need to chase a moving table
                stop=self._stop.is_set,
            )
            self.stats["seconds"] += time.monotonic() - started
        self._counts.pop(table_id, None)  # count afresh after our own compaction
        if metrics["numFilesRemoved"]:
            self.stats["compactions"] += 1
            self.stats["files_removed"] += metrics["numFilesRemoved"]
            self.stats["files_added"] += metrics["numFilesAdded"]
            self.stats["runs"].append([wall, time.time(), metrics["numFilesRemoved"]])
            if self.on_compacted is not None:
                self.on_compacted(info, metrics)
        return metrics

    def _due_now(self, info: TableInfo, policy: Policy) -> bool:
        """Whether the table's backlog is due; counts it only when it may have become due."""
        pointer = self.catalog.current_version(info)
        last = self._counts.get(info.id)
        if last is not None and last.version <= pointer and not policy.small_file_ratio:
            short = policy.min_small_files - last.small
            # Count again once half the versions the last rate says are needed have landed.
            if short > 0 and pointer - last.version < max(1.0, short / (2 * last.per_version)):
                return False
        self.stats["counts"] += 1
        small, total = backlog(info.location, pointer, policy.small_file_bytes)
        rate = last.per_version if last is not None else 1.0
        if last is not None and pointer > last.version and small > last.small:
            rate = max(0.05, (small - last.small) / (pointer - last.version))
        self._counts[info.id] = _Count(pointer, small, rate)
        return policy.due(small, total)

    def _since_other_compaction(self, info: TableInfo) -> float | None:
        """Seconds since the table's last OPTIMIZE by anyone, if among its recent commits."""
        for c in self.catalog.store.commits(info.id, _HISTORY):
            if c.operation == OPERATION:
                return (datetime.now(UTC) - c.committed_at).total_seconds()
        return None
