"""`lk.batch`: submit, inspect, cancel and interrupt jobs; cron schedules; queues.

One `Batch` per lake, built by the lake with its port (`batch.port.LakePort`): this package
never imports `lake` or `governance`. Who may see what (contract section 3, rule 13): a user
sees, reads the logs of, cancels and interrupts their own jobs; other users' jobs need
`describe` (see them, read logs) or `alter` (cancel, interrupt) on `queue:NAME`. A job that
is not visible to a user does not exist for them.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batch import spec as specs
from batch.actor import ensure_actor, stop_actor
from batch.config import BatchConfig, load_batch_config
from batch.cron import parse_cron
from batch.job import Attempt, Job, JobTimeout
from batch.port import LakeHandle, LakePort
from batch.ray_support import cluster_address
from batch.scheduler import LEASE, Context, Paths, Scheduler, owner_dead
from batch.store import STATES, BatchStore
from batch.submit import Submitter, may_see, owns
from catalog import storage
from catalog.errors import AccessDenied, InvalidArgument, JobError

__all__ = ["Attempt", "Batch", "Job", "JobTimeout"]


class Batch:
    """Batch jobs of one lake: durable in its metadata store, run on Ray in sandboxes."""

    def __init__(
        self,
        *,
        root: str | Path,
        store_url: str,
        config: Mapping[str, Any] | None,
        port: LakePort,
        ray_address: str | None = None,
        runtime: str | None = None,
        handle_factory: Callable[[], LakeHandle] | None = None,
    ):
        self.cfg: BatchConfig = load_batch_config(dict(config or {}))
        self.paths = Paths(root)
        self.store = BatchStore(store_url)
        self.port = port
        self.ray_address = cluster_address(ray_address, self.cfg)
        self._actor: Any = None
        self.runtime = runtime
        # Opens the lake again in another process (the detached scheduler actor).
        self.handle_factory = handle_factory
        self.submitter = Submitter(
            self.store, self.cfg, port, self.paths.ship_code if self.paths.remote else None
        )
        self._scheduler: Scheduler | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._forwarder: threading.Thread | None = None
        self._stop_forward = threading.Event()
        self.autostart = True  # False: submit only queues (the CLI without --wait)

    # scheduler -------------------------------------------------------------------------------
    def _ensure_scheduler(self) -> None:
        if self._scheduler is not None or self._closed or not self.autostart:
            return
        if (self.cfg.scheduler == "actor" or self.ray_address) and self.handle_factory:
            self._actor = ensure_actor(
                self.handle_factory, self.store.url, self.ray_address, self.cfg
            )
            return
        self.start()

    def start(self) -> Scheduler:
        """Run the scheduler in this process (it schedules while it holds the store lease)."""
        with self._lock:
            if self._scheduler is None:
                ctx = Context(
                    self.store,
                    self.cfg,
                    self.paths,
                    self.port,
                    self.submitter,
                    self.ray_address,
                    self.runtime,
                )
                self._scheduler = Scheduler(ctx)
                self._scheduler.start()
            return self._scheduler

    def changed_signal(self) -> Any:
        """A condition notified when this process's scheduler changes a job (None: polling)."""
        self._ensure_scheduler()
        sched = self._scheduler
        return sched.changed if sched is not None and sched.leader else None

    def scheduler_alive(self) -> bool:
        """True if some process holds a live scheduler lease for this lake."""
        held = self.store.lease_holder(LEASE)
        return held is not None and held[1] > time.time() and not owner_dead(held[0])

    def serve(self, idle_exit_s: float | None = None) -> None:
        """Run the scheduler in the foreground until interrupted (or idle for `idle_exit_s`)."""
        sched = self.start()
        idle_since = time.monotonic()
        try:
            while True:
                time.sleep(0.5)
                busy = sched.running or self.store.has_live()
                if busy:
                    idle_since = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    return
        except KeyboardInterrupt:
            return

    def close(self) -> None:
        """Stop this process's scheduler (running attempts are requeued) and release the store."""
        self._closed = True
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        if self._actor is not None:
            stop_actor(self._actor)
            self._actor = None
        self._stop_forward.set()
        if self._forwarder is not None:
            self._forwarder.join(5)
        with contextlib.suppress(Exception):
            self.submitter.forward_audit()
        self.store.close()

    def _wake(self) -> None:
        sched = self._scheduler
        if sched is None or not sched.leader:
            # Another process schedules: the wake file is its notice (a leader that just lost
            # the lease is covered too: the new one rescans every second anyway).
            self.paths.touch_wake()
        if sched is not None:
            sched.wake()

    # submit ----------------------------------------------------------------------------------
    def submit(self, command: Sequence[str], *, user: Any = None, **spec: Any) -> Job:
        """Queue a job; returns at once (the scheduler picks it up). See CONTRACT section 4."""
        job_id = self.submitter.submit(command, user=user, **spec)
        self._start_forwarder()
        self._wake()
        self._ensure_scheduler()
        return Job(self, job_id, acting=user)

    def flush_audit(self, older_than: float | None = None) -> int:
        """Forward accepted submissions to the audit trail now; returns how many."""
        return self.submitter.forward_audit(older_than)

    def _start_forwarder(self) -> None:
        if self._forwarder is None and not self._closed:
            self._forwarder = threading.Thread(
                target=self._forward_loop, name="lakeward-batch-audit", daemon=True
            )
            self._forwarder.start()

    def _forward_loop(self) -> None:
        while not self._stop_forward.wait(0.5):
            with contextlib.suppress(Exception):  # rows stay in the outbox; the next round retries
                self.submitter.forward_audit()

    # who may see what --------------------------------------------------------------------------
    def _may(self, user: Any, row: Mapping[str, Any], action: str) -> bool:
        return may_see(self.port, user, row, action)

    def _row(self, job_id: str, user: Any) -> dict[str, Any]:
        self.port.principal_name(user)  # an invalid user= fails alike for every job id
        row = self.store.job(str(job_id))
        if row is None or not self._may(user, row, "describe"):
            raise JobError(f"no batch job {job_id!r}")
        return row

    def _control(self, job_id: str, user: Any, what: str) -> dict[str, Any]:
        row = self._row(job_id, user)
        if not self._may(user, row, "alter"):
            who = self.port.principal_name(user)
            self.port.audit(user, what, f"{what} job {job_id}", "denied", reason="not allowed")
            raise AccessDenied(
                f"{who} may not {what} job {job_id} (needs alter on queue:{row['queue']})"
            )
        return row

    # reads -----------------------------------------------------------------------------------
    def get(self, job_id: str, *, user: Any = None) -> Job:
        """The job with this id (array children are `JOBID:i`); JobError if there is none,
        or if `user` may not see it."""
        row = self._row(job_id, user)
        return Job(self, row["id"], row, acting=user)

    def list(
        self,
        queue: str | None = None,
        status: str | None = None,
        *,
        user: Any = None,
        submitted_by: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        before: str | None = None,
        children: bool = False,
    ) -> list[Job]:
        """One page of the jobs `user` may see, newest first, optionally of one queue, status
        or submitter (array children hidden): at most `limit` (None: all), skipping `offset`;
        `before=` the last job id of a page gives the next page, unshifted by jobs submitted
        meanwhile."""
        if status is not None and status not in STATES:
            raise InvalidArgument(f"status must be one of {', '.join(STATES)}, not {status!r}")
        for key, value, low in (("limit", limit, 1), ("offset", offset, 0)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise InvalidArgument(f"{key} must be an integer >= {low}, not {value!r}")
        visible = None
        if not self.port.is_admin(user):
            queues = [
                q for q in self.cfg.queues if self.port.allowed(user, f"queue:{q}", "describe")
            ]
            visible = (self.port.principal_name(user), queues)
        rows = self.store.list(
            queue,
            status,
            user=submitted_by,
            limit=limit,
            offset=offset,
            before=None if before is None else str(before),
            children=children,
            visible_to=visible,
        )
        return [Job(self, r["id"], r, acting=user) for r in rows]

    def logs(
        self,
        job_id: str,
        attempt: int | None = None,
        stream: str | None = None,
        *,
        user: Any = None,
    ) -> str:
        """The logs of a job's attempts, each under a header line (own jobs, or describe on
        the queue)."""
        if stream not in (None, "stdout", "stderr"):
            raise InvalidArgument("stream must be 'stdout', 'stderr' or None (both)")
        row = self._row(job_id, user)
        self.port.audit(user, "job_logs", f"logs of job {row['id']}", "allowed")
        out = []
        for a in self.store.attempts(row["id"]):
            if attempt is not None and a["attempt"] != attempt:
                continue
            folder = str(a["log_dir"] or self.paths.attempt(row["id"], a["attempt"]))
            for s in ("stdout", "stderr") if stream is None else (stream,):
                with contextlib.suppress(OSError):
                    raw = storage.read_bytes(storage.join(folder, f"{s}.log"))
                    text = raw.decode("utf-8", errors="replace")
                    if text:
                        if attempt is None or stream is None:
                            out.append(f"==> attempt {a['attempt']} {s} <==\n")
                        out.append(text if text.endswith("\n") else text + "\n")
        return "".join(out)

    def lineage(self, job_id: str | None = None, *, user: Any = None) -> list[dict[str, Any]]:
        """Tables and versions jobs read and wrote, with the user they acted for (of the jobs
        `user` may see)."""
        if job_id is not None:
            self._row(job_id, user)
        rows = self.store.lineage(job_id)
        if self.port.is_admin(user):
            return rows
        seen: dict[str, bool] = {}
        out = []
        for r in rows:
            if r["job_id"] not in seen:
                job = self.store.job(r["job_id"])
                seen[r["job_id"]] = job is not None and self._may(user, job, "describe")
            if seen[r["job_id"]]:
                out.append(r)
        return out

    def queues(self, *, user: Any = None) -> list[dict[str, Any]]:
        """Each queue with priority, compute environments, weights and job counts by state
        (of the jobs `user` may see: all of a queue they may describe, else their own)."""
        counts = self.store.counts()
        if not self.port.is_admin(user):
            me = self.port.principal_name(user)
            for q in self.cfg.queues:
                if self.port.allowed(user, f"queue:{q}", "describe"):
                    continue
                for key in [k for k in counts if k[0] == q]:
                    del counts[key]
                for r in self.store.list(q, user=me, children=True):
                    if r["array_size"] is None and owns(self.port, user, r):
                        counts[(q, r["status"])] = counts.get((q, r["status"]), 0) + 1
        out = []
        for q in sorted(self.cfg.queues.values(), key=lambda q: (-q.priority, q.name)):
            out.append(
                {
                    "name": q.name,
                    "priority": q.priority,
                    "compute": list(q.compute),
                    "weights": dict(q.weights),
                    "share_decay_s": q.share_decay_s,
                    "counts": {s: counts.get((q.name, s), 0) for s in STATES},
                }
            )
        return out

    def compute(self) -> list[dict[str, Any]]:
        """The compute environments with their capacity."""
        return [
            {
                "name": e.name,
                "cpus": e.cpus,
                "spot": e.spot,
                "interruption_rate_per_hour": e.interruption_rate_per_hour,
                "notice_s": e.notice_s,
            }
            for e in self.cfg.compute.values()
        ]

    # control ---------------------------------------------------------------------------------
    def cancel(self, job_id: str, *, user: Any = None) -> None:
        """Cancel a job (or every child of an array job); running attempts are stopped."""
        row = self._control(job_id, user, "cancel")
        targets = [row["id"]]
        if row.get("array_size"):
            targets += [r["id"] for r in self.store.list(parent=row["id"])]
        waiting = ("SUBMITTED", "PENDING", "RUNNABLE")
        done = set(
            self.store.set_status_many(
                [(t, "CANCELLED", "cancelled by request", waiting) for t in targets]
            )
        )
        for t in targets:
            if t not in done:
                self.store.set_control(t, "CANCEL")
        self.port.audit(user, "cancel", f"cancel job {row['id']}", "allowed")
        self._wake()

    def interrupt(self, job_id: str, *, user: Any = None) -> None:
        """Deliver a spot interruption to a running spot job now: SIGTERM, grace, SIGKILL,
        requeue. A job running on on-demand compute cannot be interrupted."""
        row = self._control(job_id, user, "interrupt")
        if row["array_size"]:
            kids = self.store.list(parent=row["id"])
            running = [r["id"] for r in kids if r["status"] in ("STARTING", "RUNNING")]
            if not running:
                raise JobError(f"no child of array job {job_id} is running")
            targets = [c for c in running if self._on_spot(c)]
            if not targets:
                raise JobError(f"no running child of array job {job_id} is on spot compute")
        elif row["status"] in ("STARTING", "RUNNING"):
            if not self._on_spot(row["id"]):
                raise JobError(
                    f"job {job_id} runs on on-demand compute; a spot interruption applies only "
                    "to jobs running on spot (cancel it instead)"
                )
            targets = [row["id"]]
        else:
            raise JobError(
                f"job {job_id} is {row['status']}; only a running job can be interrupted"
            )
        for t in targets:
            self.store.set_control(t, "INTERRUPT")
        self.port.audit(user, "interrupt", f"interrupt job {row['id']}", "allowed")
        self._wake()

    def _on_spot(self, job_id: str) -> bool:
        attempts = self.store.attempts(job_id)
        env = self.cfg.compute.get(attempts[-1]["compute"]) if attempts else None
        return env is not None and env.spot

    # schedules -------------------------------------------------------------------------------
    def schedule(
        self, name: str, cron: str, command: Sequence[str], *, user: Any = None, **submit: Any
    ) -> dict[str, Any]:
        """Submit `command` with these submit() arguments at every `cron` time (UTC)."""
        if not isinstance(name, str) or not specs.NAME_RE.match(name):
            raise InvalidArgument(
                f"schedule name {name!r} must be letters, digits, '_', '-' or '.'"
            )
        parsed = parse_cron(cron)
        who = self.port.principal_name(user)
        queue = submit.get("queue", "default")
        if not self.port.allowed(user, f"queue:{queue}", "submit"):
            self.port.audit(user, "schedule", f"schedule {name}", "denied", reason="no submit")
            raise AccessDenied(f"{who} may not submit to queue {queue!r}")
        # The owner's schedule runs as the owner (user None), never as a user of its name.
        acts = None if user is None and self.port.is_admin(user) else who
        kwargs = {"command": list(specs.check_command(command)), "user": acts, **submit}
        if "depends_on" in kwargs:
            raise InvalidArgument("scheduled jobs cannot depend on other jobs")
        try:
            json.dumps(kwargs)
        except TypeError:
            raise InvalidArgument(
                "schedule arguments must be plain values (str, numbers, lists, dicts)"
            ) from None
        # Validate now, not at the first run: build the definition without submitting.
        specs.check_queue(self.cfg, kwargs.get("queue", "default"))
        specs.build_definition(
            self.cfg,
            command=kwargs["command"],
            image=kwargs.get("image", "host"),
            cpus=kwargs.get("cpus", 1),
            memory=kwargs.get("memory", "1GiB"),
            env=kwargs.get("env"),
            timeout_s=kwargs.get("timeout_s"),
            retries=kwargs.get("retries", 0),
            retry_rules=kwargs.get("retry_rules"),
            checkpoint=kwargs.get("checkpoint", False),
            workdir=kwargs.get("workdir"),
        )
        now = time.time()
        row = {
            "name": name,
            "cron": cron,
            "user": who,
            "submit": json.dumps(kwargs),
            "enabled": True,
            "next_run": parsed.next(datetime.fromtimestamp(now, UTC)).timestamp(),
            "last_run": None,
            "last_job": None,
            "created_at": now,
        }
        self.store.put_schedule(row)
        self.port.audit(user, "schedule", f"schedule {name} {cron}", "allowed")
        self._wake()
        self._ensure_scheduler()
        return self._schedule_view(row)

    def schedules(self, *, user: Any = None) -> list[dict[str, Any]]:
        """The cron schedules `user` may see (their own, or describe on the queue), with
        their next run."""
        self.port.principal_name(user)
        return [
            self._schedule_view(s)
            for s in self.store.schedules()
            if self._may(user, self._schedule_row(s), "describe")
        ]

    @staticmethod
    def _schedule_row(s: Mapping[str, Any]) -> dict[str, Any]:
        kw = json.loads(s["submit"])
        acting = "owner" if kw.get("user") is None else "user"
        return {"user": s["user"], "queue": kw.get("queue", "default"), "acting": acting}

    def unschedule(self, name: str, *, user: Any = None) -> None:
        """Delete a cron schedule (its owner's, or with alter on its queue)."""
        self.port.principal_name(user)
        found = [s for s in self.store.schedules() if s["name"] == name]
        row = found[0] if found else None
        if row is None or not self._may(user, self._schedule_row(row), "describe"):
            raise JobError(f"no schedule {name!r}")
        if not self._may(user, self._schedule_row(row), "alter"):
            raise AccessDenied(f"{self.port.principal_name(user)} may not delete schedule {name}")
        if not self.store.delete_schedule(name):
            raise JobError(f"no schedule {name!r}")
        self.port.audit(user, "unschedule", f"unschedule {name}", "allowed")

    @staticmethod
    def _schedule_view(s: Mapping[str, Any]) -> dict[str, Any]:
        kw = json.loads(s["submit"])
        return {
            "name": s["name"],
            "cron": s["cron"],
            "user": s["user"],
            "command": kw.get("command"),
            "queue": kw.get("queue", "default"),
            "next_run": datetime.fromtimestamp(s["next_run"], UTC),
            "last_job": s.get("last_job"),
        }
