"""The scheduler: moves jobs through their states and launches attempts as Ray tasks.

One scheduler per lake holds the `scheduler` lease in the store; any other process only reads
and writes rows (submit, cancel, interrupt) and touches the wake file. Each tick it collects
finished attempts, applies cancel/interrupt requests, promotes SUBMITTED/PENDING jobs whose
dependencies are met, runs due cron schedules, delivers simulated spot interruptions, and fills
free compute capacity with RUNNABLE jobs by queue priority, then fair share, then age.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cachetools

from batch import checkpoints, lakeio
from batch.config import BatchConfig, ComputeEnv, QueueConfig
from batch.cron import parse_cron
from batch.lease import Lease
from batch.outcome import INTERRUPTED, classify, transition
from batch.port import LakePort
from batch.spec import Definition
from batch.store import TERMINAL, BatchStore
from batch.submit import Submitter
from batch.worker import write_control
from catalog import storage
from catalog.errors import LakeError
from catalog.locks import holder_is_dead, owner_id

log = logging.getLogger("lakeward.batch")
LEASE = "scheduler"
# A scan reads what changed and the heads of the queues, never the whole queue:
_MARGIN_S = 2.0  # final states are re-read this far back (writers' clocks and commits lag)
_PAGE = 1000  # SUBMITTED jobs promoted per scan at most (a burst takes several scans)
_SWEEP = 100  # PENDING jobs re-checked per scan, round robin: a safety net under the events
_HEADS = 32  # RUNNABLE jobs of each (queue, share) a dispatch chooses from
_PARENTS_S = 5.0  # every live array job is re-aggregated this often (others when touched)
_PACE = 5.0  # in a burst, a scan follows the last after 5x its length: <= 1/6 of the time
_PACE_MAX_S = 0.25  # and never later than this (a scan that launched on a cold Ray is slow)


def _node_lost(error: BaseException, run: Running) -> dict[str, Any]:
    """What a lost Ray worker or node means for the attempt: requeued, as NODE_LOST (or, on
    spot capacity, SPOT_INTERRUPTED), its node's name unknown."""
    return {
        "lost": f"Ray worker or node lost: {type(error).__name__}",
        "node_lost": True,
        "spot": run.spot,
    }


def owner_dead(owner: str) -> bool:
    """True only when a scheduler owner (`host:pid:start:tag`) is a process gone from this host."""
    return holder_is_dead(owner.rsplit(":", 1)[0])


@dataclass
class Paths:
    """Where a lake keeps batch files: logs, outputs, inputs and checkpoints per job.

    Locations under the lake's root (`catalog.storage`): local folders, or in the object store
    when the root is one, so attempts on any Ray node reach them with no shared filesystem.
    """

    root: Path | str

    @property
    def base(self) -> str:
        return storage.join(str(self.root), "_lakeward", "batch")

    @property
    def remote(self) -> bool:
        return storage.is_remote(str(self.root))

    @property
    def wake(self) -> str:
        return storage.join(self.base, "wake")

    def job(self, job_id: str) -> str:
        return storage.join(self.base, "jobs", job_id)

    def attempt(self, job_id: str, attempt: int) -> str:
        return storage.join(self.job(job_id), f"attempt-{attempt}")

    def inputs(self, job_id: str) -> str:
        return storage.join(self.job(job_id), "input")

    def checkpoint(self, job_id: str) -> str:
        return storage.join(self.base, "checkpoints", job_id)

    def code(self, job_id: str) -> str:
        """A job's workdir, copied into an object-store root at submission."""
        return storage.join(self.job(job_id), "code")

    def ship_code(self, folder: str, job_id: str) -> None:
        storage.upload_tree(folder, self.code(job_id))

    def touch_wake(self) -> None:
        """Tell a scheduler in any process on this host that something changed (in an object
        store there is no cheap change notice: schedulers rescan every second anyway)."""
        if self.remote:
            return
        wake = Path(self.wake)
        try:
            wake.touch()
        except FileNotFoundError:
            wake.parent.mkdir(parents=True, exist_ok=True)
            wake.touch()

    def wake_mtime(self) -> float:
        """When the wake file was last touched (0: never, or not kept)."""
        if self.remote:
            return 0.0
        try:
            return Path(self.wake).stat().st_mtime
        except FileNotFoundError:
            return 0.0


@dataclass
class Context:
    """What the scheduler works with; the lake only through its port."""

    store: BatchStore
    cfg: BatchConfig
    paths: Paths
    port: LakePort
    submitter: Submitter  # cron schedules submit like lk.batch.submit does
    ray_address: str | None
    runtime: str | None = None


@dataclass
class Running:
    job_id: str
    attempt: int
    ref: Any
    env: str
    cpus: float
    queue: str
    share: str
    dispatched: float
    spot: bool
    control_sent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Scheduler:
    """The lake's batch scheduler, as a thread in the process that holds the lease."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.store = ctx.store
        self.cfg = ctx.cfg
        self.owner = f"{owner_id()}:{uuid.uuid4().hex[:6]}"
        self.running: dict[str, Running] = {}  # job id -> its live attempt
        self.leader = False
        self.last_error: str | None = None
        self.changed = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._defs: cachetools.LRUCache[str, Definition] = cachetools.LRUCache(10_000)
        self._usage: dict[tuple[str, str], tuple[float, float]] = {}
        self.lease = Lease(self.store, LEASE, self.owner, self.cfg.lease_s, owner_dead)
        self._scan_at = 0.0
        self._next_scan = 0.0  # time.monotonic() before which a burst's next scan waits
        self._dirty = True
        self._wake_mtime = 0.0
        self._sched_at = 0.0
        self._audit_at = 0.0
        self._spot_at = time.time()
        self._avg_s: dict[str, float] = {}
        self._remote: Any = None
        self._ray_memory: float | None = None
        self._ended_at = 0.0  # final states are read from here on (0: since the lease)
        self._pending_at: tuple[float, str] | None = None  # the sweep's cursor
        self._parents_at = 0.0
        self._touched: set[str] = set()  # array jobs whose children this scheduler moved
        self.stats = {"ticks": 0, "scans": 0, "scan_s": 0.0}  # scan_s: seconds spent scanning

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self.lease.renew()  # the first round knows at once whether it schedules
            self.lease.start()
            self._thread = threading.Thread(target=self._loop, name="lakeward-batch", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._dirty = True
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop scheduling; running attempts get a short notice and are requeued."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None
        self.lease.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                self.last_error = None
            except Exception as e:  # noqa: BLE001 - the scheduler must outlive any one bad job
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("batch scheduler tick failed")
                time.sleep(0.2)
            idle = self.cfg.poll_s if self.running else max(self.cfg.poll_s, 0.05)
            self._wake.wait(idle)
            self._wake.clear()
            rest = self._next_scan - time.monotonic()
            if rest > 0:
                self._stop.wait(rest)
        with contextlib.suppress(Exception):
            self._drain()

    def _drain(self) -> None:
        if not self.running:
            return
        for run in self.running.values():
            write_control(self.ctx.paths.attempt(run.job_id, run.attempt), "STOP")
        import ray

        deadline = time.time() + 5.0
        while self.running and time.time() < deadline:
            self._collect(timeout=0.1)
        for run in list(self.running.values()):  # still not back: give up on them
            with contextlib.suppress(Exception):
                ray.cancel(run.ref, force=True)
            self._finish(run, {"lost": "the scheduler stopped"})

    # one round -------------------------------------------------------------------------------
    def tick(self) -> None:
        """One scheduling round (the thread calls this every poll interval)."""
        self.stats["ticks"] += 1
        now = time.time()
        was = self.leader
        if self._thread is None:  # driven by hand (tests): no lease thread, renew here
            self.lease.renew()
        # Fencing: act only while a renewal confirmed the lease within the last lease period.
        self.leader = self.lease.held()
        if self.leader and not was:
            self._recover()
            self._dirty = True
            self._ended_at = self._parents_at = 0.0
            self._pending_at = None
        if not self.leader:
            return
        if self.running:
            self._collect(timeout=0)
        mtime = self.ctx.paths.wake_mtime()
        if mtime != self._wake_mtime:
            self._wake_mtime = mtime
            self._dirty = True
        if now >= self._sched_at:
            self._sched_at = now + 1.0
            self._run_schedules(now)
            if now >= self._audit_at:
                self._audit_at = now + 5.0
                self.ctx.submitter.forward_audit(older_than=10.0)  # orphaned submissions
        self._simulate_spot(now)
        if self._dirty or now - self._scan_at > 1.0:
            self._dirty = False
            self._scan_at = now
            started = time.monotonic()
            burst = False
            try:
                burst = self._scan(now)
            finally:
                ended = time.monotonic()
                self.stats["scan_s"] += ended - started
                # In a burst (a submission every millisecond, each waking the scheduler) the
                # next scan waits out _PACE times this one: the scheduler shares this process's
                # GIL and the store's write lock with the submitters, and promotes the burst
                # in batches. A scan that found no new submissions is followed at once.
                pace = min(_PACE * (ended - started), _PACE_MAX_S) if burst else 0.0
                self._next_scan = ended + pace

    def _collect(self, timeout: float) -> None:
        import ray

        by_ref = {run.ref: run for run in self.running.values()}
        ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=timeout)
        for ref in ready:
            run = by_ref[ref]
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                if isinstance(
                    cause, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)
                ):
                    result = _node_lost(cause, run)
                else:
                    result = {"start_error": f"the attempt runner failed: {e}"}
            except (ray.exceptions.RayError, OSError) as e:
                result = _node_lost(e, run)
            self._finish(run, result)

    # state changes ---------------------------------------------------------------------------
    def _definition(self, def_id: str) -> Definition:
        d = self._defs.get(def_id)
        if d is None:
            d = self._defs[def_id] = Definition.from_json(self.store.definition(def_id))
        return d

    def _scan(self, now: float) -> bool:
        """Promote, aggregate and dispatch, reading only what changed since the last scan and
        the head of each (queue, share): its cost does not grow with the number of queued or
        finished jobs. True if it found new submissions."""
        self.stats["scans"] += 1
        self._controls(self.store.controlled())
        since, self._ended_at = self._ended_at - _MARGIN_S, now
        ended = self.store.ended_since(since) if since > 0 else []
        submitted = self.store.in_status("SUBMITTED", _PAGE)
        if len(submitted) == _PAGE:
            self._dirty = True  # more of the burst next round
        sweep = self.store.in_status("PENDING", _SWEEP, after=self._pending_at)
        self._pending_at = (
            (sweep[-1]["created_at"], sweep[-1]["id"]) if len(sweep) == _SWEEP else None
        )
        pending = {r["id"]: r for r in sweep}
        pending.update((r["id"], r) for r in self.store.waiting_on(e["id"] for e in ended))
        self._promote(submitted, list(pending.values()))
        self._touched |= {e["parent_id"] for e in ended if e["parent_id"]}
        self._touched |= {r["parent_id"] for r in submitted if r["parent_id"]}
        if now - self._parents_at > _PARENTS_S:
            self._parents_at = now
            parents = self.store.live_parents()
        else:
            parents = self.store.rows_of(self._touched) if self._touched else []
        self._touched.clear()
        self._aggregate_arrays([p for p in parents if p["array_size"] is not None])
        if self._has_room():
            self._dispatch(self.store.runnable_heads(_HEADS), now)
        return bool(submitted)

    def _has_room(self) -> bool:
        free = {name: env.cpus for name, env in self.cfg.compute.items()}
        for run in self.running.values():
            free[run.env] -= run.cpus
        return max(free.values(), default=0.0) > 0

    def _controls(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        keep = []
        changes = []
        for r in rows:
            ctl = r["control"]
            if not ctl:
                keep.append(r)
                continue
            run = self.running.get(r["id"])
            if r["array_size"] is not None:
                self.store.set_control_children(r["id"], ctl)
                self.store.update_job(r["id"], control=None)
                self._dirty = True
                self._touched.add(r["id"])
                keep.append(r)
            elif run is not None:
                if run.control_sent is None:
                    run.control_sent = ctl
                    write_control(self.ctx.paths.attempt(run.job_id, run.attempt), ctl)
                keep.append(r)
            elif ctl == "CANCEL" and r["status"] in ("SUBMITTED", "PENDING", "RUNNABLE"):
                changes.append((r["id"], "CANCELLED", "cancelled by request", (r["status"],)))
            elif r["status"] in ("STARTING", "RUNNING"):
                keep.append(r)  # launched by an earlier scheduler: recovery deals with it
            else:
                self.store.update_job(r["id"], control=None)  # nothing to interrupt
                keep.append(r)
        if changes:
            self.store.set_status_many(changes)
            self._notify()
        return keep

    def _promote(
        self, submitted: list[dict[str, Any]], pending: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """SUBMITTED/PENDING -> PENDING, RUNNABLE or FAILED; returns the rows now RUNNABLE."""
        todo = submitted + [p for p in pending if p["array_size"] is None]
        if not todo:
            return []
        deps = self.store.deps_of([r["id"] for r in todo])
        dep_status = self.store.statuses([d for ds in deps.values() for d in ds])
        changes = []
        for r in todo:
            mine = deps.get(r["id"], [])
            if r["array_size"] is not None:
                changes.append((r["id"], "PENDING", "", ("SUBMITTED",)))
                continue
            failed = [d for d in mine if dep_status.get(d) in ("FAILED", "CANCELLED")]
            if failed:
                changes.append(
                    (
                        r["id"],
                        "FAILED",
                        f"dependency {failed[0]} {dep_status[failed[0]].lower()}",
                        (r["status"],),
                    )
                )
            elif all(dep_status.get(d) == "SUCCEEDED" for d in mine):
                changes.append((r["id"], "RUNNABLE", "", (r["status"],)))
            elif r["status"] == "SUBMITTED":
                changes.append((r["id"], "PENDING", "waiting for dependencies", ("SUBMITTED",)))
        if not changes:
            return []
        done = set(self.store.set_status_many(changes))
        if any(c[1] == "FAILED" for c in changes if c[0] in done):
            self._dirty = True  # their dependents can fail now too
        self._notify()
        rows = {r["id"]: r for r in todo}
        return [
            {**rows[c[0]], "status": "RUNNABLE"}
            for c in changes
            if c[1] == "RUNNABLE" and c[0] in done and rows[c[0]]["array_size"] is None
        ]

    def _aggregate_arrays(self, parents: list[dict[str, Any]]) -> None:
        if not parents:
            return
        counts = self.store.child_counts([p["id"] for p in parents])
        changes = []
        for p in parents:
            c = counts.get(p["id"], {})
            total = sum(c.values())
            done = sum(c.get(s, 0) for s in TERMINAL)
            if total and done == total:
                if c.get("SUCCEEDED", 0) == total:
                    new, why = "SUCCEEDED", ""
                elif c.get("CANCELLED", 0) == total:
                    new, why = "CANCELLED", "cancelled by request"
                else:
                    bad = c.get("FAILED", 0) + c.get("CANCELLED", 0)
                    new, why = "FAILED", f"{bad} of {total} children did not succeed"
            elif c.get("RUNNING", 0) or c.get("STARTING", 0):
                new, why = "RUNNING", ""
            elif c.get("RUNNABLE", 0):
                new, why = "RUNNABLE", ""
            else:
                new, why = "PENDING", ""
            if new != p["status"]:
                changes.append((p["id"], new, why, (p["status"],)))
        if changes:
            self.store.set_status_many(changes)
            if any(c[1] in TERMINAL for c in changes):
                self._dirty = True
            self._notify()

    # fair share ------------------------------------------------------------------------------
    def _share_usage(self, queue: QueueConfig, share: str, now: float) -> float:
        usage, at = self._usage.get((queue.name, share), (0.0, now))
        decayed = usage * 0.5 ** (max(0.0, now - at) / queue.share_decay_s)
        live = sum(
            r.cpus * (now - r.dispatched)
            for r in self.running.values()
            if r.queue == queue.name and r.share == share
        )
        return decayed + live

    def _charge(self, queue: QueueConfig, share: str, cpu_s: float, now: float) -> None:
        usage, at = self._usage.get((queue.name, share), (0.0, now))
        usage = usage * 0.5 ** (max(0.0, now - at) / queue.share_decay_s) + cpu_s
        self._usage[(queue.name, share)] = (usage, now)

    def _dispatch(self, runnable: list[dict[str, Any]], now: float) -> None:
        free = {name: env.cpus for name, env in self.cfg.compute.items()}
        for run in self.running.values():
            free[run.env] -= run.cpus
        by_queue: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for r in runnable:
            if r["id"] in self.running:
                continue
            by_queue.setdefault(r["queue"], {}).setdefault(r["share_id"], []).append(r)
        queues = sorted(
            (self.cfg.queues.get(q) or QueueConfig(q) for q in by_queue),
            key=lambda q: -q.priority,
        )
        for queue in queues:
            shares = by_queue[queue.name]
            # Provisional charges spread one round's starts across shares by weight.
            est = self._avg_s.get(queue.name, 1.0)
            pending = {s: self._share_usage(queue, s, now) / queue.weight(s) for s in shares}
            while shares and max(free.values()) > 0:
                share = min(shares, key=lambda s: (pending[s], shares[s][0]["created_at"]))
                row = None
                for cand in shares[share]:
                    d = self._definition(cand["definition_id"])
                    env = self._place(queue, cand, d, free)
                    if env is not None:
                        row = cand
                        break
                if row is None:
                    del shares[share]  # nothing of this share fits now
                    continue
                shares[share].remove(row)
                if not shares[share]:
                    del shares[share]
                free[env.name] -= d.cpus
                pending[share] += d.cpus * est / queue.weight(share)
                self._launch(row, d, env, queue, now)

    def _place(
        self, queue: QueueConfig, row: dict[str, Any], d: Definition, free: dict[str, float]
    ) -> ComputeEnv | None:
        for name in queue.compute:
            env = self.cfg.compute[name]
            if env.spot and not row["spot"]:
                continue
            if free[name] + 1e-9 >= d.cpus:
                return env
        return None

    def _remote_fn(self) -> Any:
        if self._remote is None:
            from batch.ray_support import ensure_ray, remote_attempt

            ensure_ray(self.ctx.ray_address, self.cfg)
            import ray

            self._remote = remote_attempt()
            self._ray_memory = ray.cluster_resources().get("memory")
        return self._remote

    def _launch(
        self, row: dict[str, Any], d: Definition, env: ComputeEnv, queue: QueueConfig, now: float
    ) -> None:
        job_id = row["id"]
        paths = self.ctx.paths
        full = self.store.job(job_id)
        if full is None:
            return
        inputs: dict[str, str] = {}
        if full["inputs"]:
            owner = full["parent_id"] or job_id
            try:
                read = lakeio.materialize_inputs(
                    self.ctx.port, lakeio.acting(full), full["inputs"], paths.inputs(owner)
                )
            except (LakeError, OSError) as e:
                self.store.set_status_many(
                    [(job_id, "FAILED", f"cannot read inputs: {e}", ("RUNNABLE",))]
                )
                self._notify()
                return
            inputs = {name: storage.join(paths.inputs(owner), name) for name, _t, _v in read}
            if full["attempts"] == 0:
                self.store.add_lineage(
                    [
                        {
                            "job_id": job_id,
                            "user": full["user"],
                            "direction": "read",
                            "name": name,
                            "table_name": table,
                            "version": version,
                            "at": time.time(),
                        }
                        for name, table, version in read
                    ]
                )
        attempt = int(full["attempts"]) + 1
        attempt_dir = paths.attempt(job_id, attempt)
        if not self.lease.held():
            return  # paused past the lease: another scheduler may own this job now
        if not self.store.start_attempt(job_id, attempt, env.name, self.owner, str(attempt_dir)):
            return
        if full["parent_id"]:
            self._touched.add(full["parent_id"])
        grace = env.notice_s if env.spot else self.cfg.preempt_grace_s
        job_env = {
            **d.env,
            "LAKE_JOB_ID": job_id,
            "LAKE_ATTEMPT": str(attempt),
            "LAKE_PREEMPT_GRACE_S": f"{grace:g}",
            # part of every attempt's identity; empty for a job that is not an array child
            "LAKE_ARRAY_INDEX": "" if full["array_index"] is None else str(full["array_index"]),
        }
        plan = {
            "job_id": job_id,
            "attempt": attempt,
            "store_url": self.store.url,
            "attempt_dir": str(attempt_dir),
            "checkpoint_dir": str(paths.checkpoint(job_id)) if d.checkpoint else None,
            "inputs": inputs,
            "outputs": list(full["outputs"]),
            "command": d.command,
            "image": d.image,
            "workdir": (
                paths.code(full["parent_id"] or job_id) if paths.remote and d.workdir else d.workdir
            ),
            "env": job_env,
            "cpus": d.cpus,
            "memory_bytes": d.memory_bytes,
            "network": d.network,
            "timeout_s": d.timeout_s,
            "grace_s": grace,
            "poll_s": min(self.cfg.poll_s, 0.05),
            "runtime": self.ctx.runtime,
            # How the attempt reaches the lake's object store from any node (credentials
            # included: a node need not hold them). They travel in the task's arguments only,
            # never into the store, a log or the job's environment.
            "storage_options": storage.options(str(attempt_dir)) if paths.remote else {},
        }
        try:
            fn = self._remote_fn()
            # Ray's memory is a logical resource; the sandbox enforces the real limit. Capping
            # the request keeps a big job placeable on a Ray that reserved less than the host.
            memory = min(d.memory_bytes, int(self._ray_memory or d.memory_bytes))
            ref = fn.options(num_cpus=d.cpus, memory=memory, max_retries=0).remote(plan)
        except Exception as e:  # noqa: BLE001 - e.g. Ray unreachable: the job waits, not fails
            self.store.end_attempt(
                job_id,
                attempt,
                {
                    "reason": INTERRUPTED,
                    "detail": f"cannot launch on Ray: {e}",
                    "ended_at": time.time(),
                },
                {"status": "RUNNABLE", "status_reason": f"waiting for Ray: {e}"},
            )
            raise
        self.running[job_id] = Running(
            job_id, attempt, ref, env.name, d.cpus, queue.name, row["share_id"], now, env.spot
        )
        self._notify()

    def _finish(self, run: Running, result: dict[str, Any]) -> None:
        self.running.pop(run.job_id, None)
        job = self.store.job(run.job_id)
        if job is None:
            return
        if job["parent_id"]:
            self._touched.add(job["parent_id"])
        d = self._definition(job["definition_id"])
        now = time.time()
        o = classify(result, d, run.dispatched)
        if "lost" in result:
            self._rescue_checkpoint(run, d)
        values = transition(o, job, d)
        if values["status"] == "SUCCEEDED":
            values["status"], values["status_reason"] = self._commit(job, run, values["result"])
        self.store.end_attempt(
            run.job_id, run.attempt, o.attempt_fields(result.get("node")), values
        )
        duration = o.duration
        queue = self.cfg.queues.get(run.queue) or QueueConfig(run.queue)
        self._charge(queue, run.share, run.cpus * duration, now)
        usage, at = self._usage[(queue.name, run.share)]
        with contextlib.suppress(Exception):
            self.store.put_share_usage(queue.name, run.share, usage, at)
        avg = self._avg_s.get(run.queue)
        self._avg_s[run.queue] = duration if avg is None else 0.8 * avg + 0.2 * duration
        self._dirty = True
        self._notify()

    def _commit(self, job: dict[str, Any], run: Running, res: dict[str, Any]) -> tuple[str, str]:
        if not job["outputs"]:
            return "SUCCEEDED", ""
        out_dir = storage.join(self.ctx.paths.attempt(run.job_id, run.attempt), "output")
        try:
            done = lakeio.commit_outputs(
                self.ctx.port, lakeio.acting(job), run.job_id, job["outputs"], out_dir
            )
        except Exception as e:  # noqa: BLE001 - bad output files fail the job, not the scheduler
            return "FAILED", f"OUTPUT_COMMIT_FAILED: {type(e).__name__}: {e}"
        res["outputs"] = done
        fresh = {n: o for n, o in done.items() if not o["skipped"]}
        self.store.add_lineage(
            [
                {
                    "job_id": run.job_id,
                    "user": job["user"],
                    "direction": "write",
                    "name": name,
                    "table_name": o["table"],
                    "version": o["version"],
                    "at": time.time(),
                }
                for name, o in fresh.items()
            ]
        )
        return "SUCCEEDED", ""

    def _rescue_checkpoint(self, run: Running, d: Definition) -> None:
        # The worker died before its end-of-attempt save; on this host its scratch may remain
        # (in an object store the last save at notice or end is what there is).
        if not d.checkpoint or self.ctx.paths.remote:
            return
        for a in self.store.attempts(run.job_id):
            if a["attempt"] == run.attempt and a.get("scratch"):
                scratch = Path(a["scratch"])
                if (scratch / "checkpoints").is_dir():
                    with contextlib.suppress(OSError):
                        checkpoints.save(
                            scratch / "checkpoints", self.ctx.paths.checkpoint(run.job_id)
                        )
                shutil.rmtree(scratch, ignore_errors=True)

    def _recover(self) -> None:
        """After taking the lease: attempts of a previous scheduler are lost; requeue them."""
        self._usage = dict(self.store.share_usage())
        for a in self.store.open_attempts():
            if a["owner"] == self.owner or a["job_id"] in self.running:
                continue
            job = self.store.job(a["job_id"])
            run = Running(
                a["job_id"], a["attempt"], None, a["compute"], 0.0, "", "", a["created_at"], False
            )
            if (
                job is None
                or job["status"] not in ("STARTING", "RUNNING")
                or job["attempts"] != a["attempt"]
            ):
                self.store.end_attempt(
                    a["job_id"],
                    a["attempt"],
                    {"reason": INTERRUPTED, "detail": "scheduler lost"},
                    {},
                )
                continue
            run.cpus = self._definition(job["definition_id"]).cpus
            run.queue, run.share = job["queue"], job["share_id"]
            self._finish(
                run, {"lost": "the scheduler that ran it is gone", "started_at": a["started_at"]}
            )

    # spot simulator and schedules ------------------------------------------------------------
    def _simulate_spot(self, now: float) -> None:
        dt = now - self._spot_at
        self._spot_at = now
        if dt <= 0:
            return
        for run in list(self.running.values()):
            env = self.cfg.compute[run.env]
            rate = env.interruption_rate_per_hour
            if not env.spot or rate <= 0 or run.control_sent:
                continue
            if random.random() < 1.0 - math.exp(-rate * dt / 3600.0):
                run.control_sent = "INTERRUPT"
                write_control(self.ctx.paths.attempt(run.job_id, run.attempt), "INTERRUPT")

    def _run_schedules(self, now: float) -> None:
        for s in self.store.schedules():
            if not s["enabled"] or s["next_run"] > now:
                continue
            nxt = parse_cron(s["cron"]).next(datetime.fromtimestamp(now, UTC)).timestamp()
            kwargs = json.loads(s["submit"])
            if not self.store.advance_schedule(s["name"], s["next_run"], nxt, ""):
                continue
            try:
                job_id = self.ctx.submitter.submit(_schedule=s["name"], **kwargs)
            except LakeError as e:
                log.warning("schedule %s could not submit: %s", s["name"], e)
                continue
            self.store.advance_schedule(s["name"], nxt, nxt, job_id)

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()
