"""Job handles: `Job` (status, wait, logs, attempts, cancel) and `Attempt`, read from the store."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from batch.store import TERMINAL, BatchStore
from catalog.errors import JobError


class Jobs(Protocol):
    """What a Job handle needs of `lk.batch` (`batch.api.Batch` is one)."""

    store: BatchStore

    def changed_signal(self) -> Any: ...
    def logs(
        self, job_id: str, attempt: int | None = None, stream: str | None = None, *, user: Any
    ) -> str: ...
    def cancel(self, job_id: str, *, user: Any) -> None: ...
    def interrupt(self, job_id: str, *, user: Any) -> None: ...


class JobTimeout(JobError, TimeoutError):
    """`Job.wait(timeout=...)` ran out before the job ended."""


@dataclass(frozen=True)
class Attempt:
    """One run of a job: where, when, and how it ended."""

    number: int
    status: str  # STARTING RUNNING ENDED
    compute: str
    node: str | None
    exit_code: int | None
    signal: int | None
    reason: (
        str | None
    )  # SUCCEEDED EXIT_CODE OOM KILLED TIMEOUT SPOT_INTERRUPTED CANCELLED START_FAILED
    detail: str | None
    started_at: float | None
    ended_at: float | None
    useful_s: float | None
    lost_s: float | None
    log_dir: str | None
    worker_pid: int | None = None
    sandbox_pid: int | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> Attempt:
        return cls(
            r["attempt"],
            r["status"],
            r["compute"],
            r["node"],
            r["exit_code"],
            r["signal"],
            r["reason"],
            r["detail"],
            r["started_at"],
            r["ended_at"],
            r["useful_s"],
            r["lost_s"],
            r["log_dir"],
            r["worker_pid"],
            r["sandbox_pid"],
        )


class Job:
    """A handle on a submitted job; every property reads the store, so it is always current.

    A Job obtained for a user acts for that user (`logs`, `cancel`, `interrupt` are checked
    for them); `acting` None is the lake's owner.
    """

    def __init__(
        self, batch: Jobs, job_id: str, row: dict[str, Any] | None = None, acting: Any = None
    ):
        self.batch = batch
        self.id = job_id
        self._row = row
        self.acting = acting

    def __repr__(self) -> str:
        return f"Job({self.id!r}, status={self.status!r})"

    def refresh(self) -> dict[str, Any]:
        """The job's row as stored now."""
        row = self.batch.store.job(self.id)
        if row is None:
            raise JobError(f"batch job {self.id!r} no longer exists")
        self._row = row
        return row

    @property
    def info(self) -> dict[str, Any]:
        return self.refresh()

    @property
    def status(self) -> str:
        return self.batch.store.status(self.id) or "UNKNOWN"

    @property
    def status_reason(self) -> str:
        return self.refresh()["status_reason"]

    @property
    def name(self) -> str:
        return (self._row or self.refresh())["name"]

    @property
    def user(self) -> str:
        return (self._row or self.refresh())["user"]

    @property
    def queue(self) -> str:
        return (self._row or self.refresh())["queue"]

    @property
    def attempts(self) -> list[Attempt]:
        return [Attempt.from_row(a) for a in self.batch.store.attempts(self.id)]

    @property
    def children(self) -> list[Job]:
        """The children of an array job, by index."""
        rows = self.batch.store.list(parent=self.id)
        return [Job(self.batch, r["id"], r, self.acting) for r in rows]

    @property
    def goodput(self) -> float | None:
        """Useful seconds / total seconds over all attempts (None before any attempt ended)."""
        row = self.refresh()
        return row["useful_s"] / row["total_s"] if row["total_s"] > 0 else None

    @property
    def work_lost(self) -> list[float]:
        """Seconds of work lost at each interruption (since the last checkpoint)."""
        return list(self.refresh()["result"].get("lost_s", []))

    @property
    def outputs_committed(self) -> dict[str, Any]:
        return dict(self.refresh()["result"].get("outputs", {}))

    @property
    def lineage(self) -> list[dict[str, Any]]:
        return self.batch.store.lineage(self.id)

    def wait(self, timeout: float | None = None) -> str:
        """Block until the job ends; returns SUCCEEDED, FAILED or CANCELLED.

        Raises JobTimeout if `timeout` seconds pass first.
        """
        changed = self.batch.changed_signal()  # starts the scheduler here if none runs
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.002
        while True:
            status = self.status
            if status in TERMINAL:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeout(f"job {self.id} is still {status} after {timeout:g} s")
            if changed is not None:
                with changed:
                    changed.wait(0.05)
            else:
                time.sleep(pause)
                pause = min(pause * 2, 0.1)

    def logs(self, attempt: int | None = None, stream: str | None = None) -> str:
        """stdout and stderr of every attempt (or one), kept in lake storage."""
        return self.batch.logs(self.id, attempt, stream, user=self.acting)

    def cancel(self) -> None:
        """Cancel the job (a running attempt gets SIGTERM, grace, SIGKILL)."""
        self.batch.cancel(self.id, user=self.acting)

    def interrupt(self) -> None:
        """Deliver a spot interruption now (notice, grace, kill, requeue)."""
        self.batch.interrupt(self.id, user=self.acting)
