"""`lk.batch`: submit, inspect, cancel and interrupt jobs; cron schedules; queues.

One `Batch` per lake; the Lake builds it lazily with `Batch.from_lake(lk, ...)`, which reads
`lk.root`, `lk.store.url`, `lk.config.raw`, `lk.catalog`, `lk.sql`, `lk.policy.allowed`,
`lk.audit.record` and `lk.ray_address` (this package never imports `lake`).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batch import spec as specs
from batch.config import BatchConfig, load_batch_config
from batch.cron import parse_cron
from batch.job import Attempt, Job, JobTimeout
from batch.scheduler import LEASE, Context, Paths, Scheduler, owner_dead
from batch.store import STATES, BatchStore
from catalog.errors import AccessDenied, InvalidArgument, JobError, LakeError, TableNotFound

SqlFn = Callable[[str, str], Any]
__all__ = ["Attempt", "Batch", "Job", "JobTimeout"]


class Batch:
    """Batch jobs of one lake: durable in its metadata store, run on Ray in sandboxes."""

    def __init__(
        self,
        *,
        root: str | Path,
        store_url: str,
        config: Mapping[str, Any] | None,
        catalog: Any,
        sql: SqlFn | None = None,
        policy_allowed: Callable[[str, str, str], bool] | None = None,
        audit: Callable[..., None] | None = None,
        authorize_write: Callable[[str, str, list[str]], None] | None = None,
        ray_address: str | None = None,
        runtime: str | None = None,
        lake_factory: Callable[[], Any] | None = None,
    ):
        self.cfg: BatchConfig = load_batch_config(dict(config or {}))
        self.paths = Paths(Path(root))
        self.store = BatchStore(store_url)
        self.catalog = catalog
        self._sql = sql
        self._allowed = policy_allowed or (lambda _u, _r, _a: True)
        self._audit = audit
        if authorize_write is None:
            from batch.lakeio import default_authorize

            authorize_write = default_authorize(self._allowed)
        self._authorize = authorize_write
        self.ray_address = ray_address
        self.runtime = runtime
        self.lake_factory = lake_factory
        self._scheduler: Scheduler | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._defs: dict[str | None, specs.Definition] = {}
        self._forwarder: threading.Thread | None = None
        self._forward_lock = threading.Lock()
        self._stop_forward = threading.Event()
        self.autostart = True  # False: submit only queues (the CLI without --wait)

    @classmethod
    def from_lake(cls, lk: Any, **overrides: Any) -> Batch:
        """Build from a Lake-like object (root, store, config, catalog, sql, policy, audit)."""
        kwargs: dict[str, Any] = {
            "root": lk.root,
            "store_url": lk.store.url,
            "config": lk.config.raw,
            "catalog": lk.catalog,
            "sql": lambda query, user: lk.sql(query, user=user),
            "policy_allowed": lk.policy.allowed,
            "audit": lk.audit.record,
            "ray_address": lk.ray_address,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    # scheduler -------------------------------------------------------------------------------
    def _ensure_scheduler(self) -> None:
        if self._scheduler is not None or self._closed or not self.autostart:
            return
        if self.cfg.scheduler == "actor" or self.ray_address:
            from batch.actor import ensure_actor

            if self.lake_factory is not None:
                ensure_actor(self)
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
                    self.catalog,
                    self._sql,
                    self._authorize,
                    self._audit,
                    self.ray_address,
                    self.submit,
                    self.runtime,
                    lambda: self.flush_audit(older_than=10.0),
                )
                self._scheduler = Scheduler(ctx)
                self._scheduler.start()
            return self._scheduler

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
        self._stop_forward.set()
        if self._forwarder is not None:
            self._forwarder.join(5)
        with contextlib.suppress(Exception):
            self.flush_audit()
        self.store.close()

    def _wake(self) -> None:
        self.paths.touch_wake()
        if self._scheduler is not None:
            self._scheduler.wake()

    # submit ----------------------------------------------------------------------------------
    def submit(
        self,
        command: Sequence[str],
        *,
        user: str,
        image: str = "host",
        queue: str = "default",
        cpus: float = 1,
        memory: str | int = "1GiB",
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        retries: int = 0,
        retry_rules: Sequence[Mapping[str, str]] | None = None,
        spot: bool = False,
        checkpoint: bool = False,
        array_size: int | None = None,
        depends_on: Sequence[Any] | None = None,
        workdir: str | Path | None = None,
        inputs: Mapping[str, str] | None = None,
        outputs: Mapping[str, str] | None = None,
        name: str | None = None,
        network: bool = False,
        share_id: str | None = None,
        _schedule: str | None = None,
    ) -> Job:
        """Queue a job; returns at once (the scheduler picks it up). See CONTRACT section 4."""
        if not isinstance(user, str) or not user:
            raise InvalidArgument("submit needs the user it acts for: submit(..., user='etl')")
        try:
            statement = f"submit {shlex.join(list(command))} to queue {queue}"
        except TypeError:
            statement = f"submit {command!r} to queue {queue}"
        try:
            specs.check_queue(self.cfg, queue)
            if not self._allowed(user, f"queue:{queue}", "submit"):
                raise AccessDenied(
                    f"{user} may not submit to queue {queue!r} (needs the submit grant on queue:{queue})"
                )
            job_id = uuid.uuid4().hex[:12]
            definition = self._definition(
                command=command,
                image=image,
                cpus=cpus,
                memory=memory,
                env=env,
                timeout_s=timeout_s,
                retries=retries,
                retry_rules=retry_rules,
                checkpoint=checkpoint,
                workdir=workdir,
                network=network,
            )
            self._check_fits(queue, definition, spot)
            size = specs.check_array_size(array_size)
            ins = specs.check_tables("inputs", inputs)
            outs = specs.check_tables("outputs", outputs)
            if ins or outs:
                self._check_tables(user, ins, outs)
            if not isinstance(spot, bool):
                raise JobError(f"spot must be True or False, not {spot!r}")
            if name is not None and (not isinstance(name, str) or not specs.NAME_RE.match(name)):
                raise JobError(f"name {name!r} must be letters, digits, '_', '-' or '.'")
            dep_rows = self._dep_rows(job_id, specs.check_deps(depends_on, size), size)
        except LakeError as e:
            self._record(
                user, statement, "denied" if isinstance(e, AccessDenied) else "error", str(e)
            )
            raise
        now = time.time()
        q = self.cfg.queues[queue]
        job_name = name or _default_name(definition.command)
        by = {"user": user, "name": job_name, "none": "*"}
        share = share_id or by.get(q.share_by, user)
        base = {
            "parent_id": None,
            "array_index": None,
            "array_size": size,
            "name": job_name,
            "user": user,
            "queue": queue,
            "share_id": share,
            "definition_id": definition.digest,
            "spot": spot,
            "status": "SUBMITTED",
            "status_reason": "",
            "inputs": ins,
            "outputs": outs,
            "attempts": 0,
            "failures": 0,
            "interruptions": 0,
            "control": None,
            "created_at": now,
            "updated_at": now,
            "started_at": None,
            "ended_at": None,
            "useful_s": 0.0,
            "total_s": 0.0,
            "schedule": _schedule,
            "result": {},
        }
        rows = [{**base, "id": job_id}]
        if size:
            rows += [
                {
                    **base,
                    "id": f"{job_id}:{i}",
                    "parent_id": job_id,
                    "array_index": i,
                    "array_size": None,
                    "name": f"{base['name']}:{i}",
                }
                for i in range(size)
            ]
        outbox = None
        if self._audit is not None:
            outbox = [
                {"job_id": job_id, "user": user, "queue": queue, "statement": statement, "at": now}
            ]
        self.store.insert((definition.digest, definition.to_json()), rows, dep_rows, outbox)
        if outbox:
            self._start_forwarder()
        self._wake()
        self._ensure_scheduler()
        return Job(self, job_id)

    def _definition(self, **kwargs: Any) -> specs.Definition:
        # Validating and hashing a definition costs more than storing a job; repeated
        # submissions of the same definition (the common case) reuse the first result.
        try:
            key = json.dumps(kwargs, sort_keys=True, default=str)
        except (TypeError, ValueError):
            key = None
        d = self._defs.get(key) if key is not None else None
        if d is None or (d.workdir is not None and not Path(d.workdir).is_dir()):
            d = specs.build_definition(self.cfg, **kwargs)
            if key is not None:
                if len(self._defs) > 1024:
                    self._defs.clear()
                self._defs[key] = d
        return d

    def _check_fits(self, queue: str, d: specs.Definition, spot: Any) -> None:
        envs = [self.cfg.compute[n] for n in self.cfg.queues[queue].compute]
        usable = [e for e in envs if spot is True or not e.spot]
        if not usable:
            raise JobError(
                f"queue {queue!r} runs only on spot compute; submit with spot=True or use another queue"
            )
        most = max(e.cpus for e in usable)
        if d.cpus > most:
            raise JobError(
                f"cpus={d.cpus:g} does not fit queue {queue!r}: its compute offers at most {most:g}"
            )

    def _start_forwarder(self) -> None:
        if self._forwarder is None and not self._closed:
            self._forwarder = threading.Thread(
                target=self._forward_loop, name="lakeward-batch-audit", daemon=True
            )
            self._forwarder.start()

    def _forward_loop(self) -> None:
        while not self._stop_forward.wait(0.5):
            with contextlib.suppress(Exception):  # rows stay in the outbox; the next round retries
                self.flush_audit()

    def flush_audit(self, older_than: float | None = None) -> int:
        """Forward accepted submissions from the store's outbox to the audit trail.

        One audit record per user and queue per round names every job id it covers.
        """
        if self._audit is None:
            return 0
        with self._forward_lock:
            rows = self.store.outbox(older_than=older_than)
            groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for r in rows:
                groups.setdefault((r["user"], r["queue"]), []).append(r)
            for (user, queue), items in groups.items():
                statement = (
                    items[0]["statement"]
                    if len(items) == 1
                    else f"submit {len(items)} jobs to queue {queue}"
                )
                self._audit(
                    user,
                    "submit",
                    statement,
                    "allowed",
                    rows=len(items),
                    reason="jobs " + " ".join(r["job_id"] for r in items),
                )
                self.store.outbox_done(r["seq"] for r in items)
            return len(rows)

    def _record(self, user: str, statement: str, decision: str, reason: str) -> None:
        if self._audit is not None:
            self._audit(user, "submit", statement, decision, reason=reason)

    def _check_tables(self, user: str, ins: dict[str, str], outs: dict[str, str]) -> None:
        for table in [*ins.values(), *outs.values()]:
            try:
                self.catalog.table(table, cached=True)
            except TableNotFound:
                raise JobError(
                    f"table {table} does not exist (or you may not see it); create it before "
                    "submitting a job that reads or writes it"
                ) from None
        for table in outs.values():
            info = self.catalog.table(table, cached=True)
            if info.table_type != "GOVERNED":
                raise JobError(
                    f"output table {table} is external (read-only); use a governed table"
                )
            self._authorize(user, table, [])
        if ins and self._sql is None:
            raise JobError("this lake cannot read inputs (no sql callable given to Batch)")

    def _dep_rows(
        self, job_id: str, deps: list[specs.Dependency], size: int | None
    ) -> list[dict[str, str]]:
        wanted = {d.job_id for d in deps if d.job_id is not None}
        found = self.store.existing(wanted)
        missing = sorted(wanted - set(found))
        if missing:
            raise JobError(f"depends_on names unknown job(s) {missing}")
        members = [f"{job_id}:{i}" for i in range(size)] if size else [job_id]
        edges: set[tuple[str, str]] = set()
        for d in deps:
            if d.type == "SEQUENTIAL":
                edges |= {(members[i], members[i - 1]) for i in range(1, len(members))}
            elif d.type == "N_TO_N":
                other = found[d.job_id]["array_size"]
                if other != size:
                    raise JobError(
                        f"an N_TO_N dependency needs an array job of the same size: {d.job_id} has "
                        f"{other or 'no'} children, this job {size}"
                    )
                edges |= {(members[i], f"{d.job_id}:{i}") for i in range(size or 0)}
            else:
                edges |= {(m, d.job_id) for m in members}  # type: ignore[misc]
                if size:
                    edges.add((job_id, d.job_id))  # type: ignore[arg-type]
        return [{"job_id": a, "dep_id": b} for a, b in sorted(edges)]

    # reads -----------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        """The job with this id (array children are `JOBID:i`); JobError if there is none."""
        row = self.store.job(str(job_id))
        if row is None:
            raise JobError(f"no batch job {job_id!r}")
        return Job(self, row["id"], row)

    def list(
        self,
        queue: str | None = None,
        status: str | None = None,
        *,
        user: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        before: str | None = None,
        children: bool = False,
    ) -> list[Job]:
        """One page of jobs, newest first, optionally of one queue, status or user (array
        children hidden): at most `limit` (None: all), skipping `offset`; `before=` the last
        job id of a page gives the next page, unshifted by jobs submitted meanwhile."""
        if status is not None and status not in STATES:
            raise InvalidArgument(f"status must be one of {', '.join(STATES)}, not {status!r}")
        for key, value, low in (("limit", limit, 1), ("offset", offset, 0)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise InvalidArgument(f"{key} must be an integer >= {low}, not {value!r}")
        rows = self.store.list(
            queue,
            status,
            user=user,
            limit=limit,
            offset=offset,
            before=None if before is None else str(before),
            children=children,
        )
        return [Job(self, r["id"], r) for r in rows]

    def logs(self, job_id: str, attempt: int | None = None, stream: str | None = None) -> str:
        """The logs of a job's attempts, each under a header line."""
        if stream not in (None, "stdout", "stderr"):
            raise InvalidArgument("stream must be 'stdout', 'stderr' or None (both)")
        out = []
        rows = self.store.attempts(job_id)
        if not rows and self.store.job(job_id) is None:
            raise JobError(f"no batch job {job_id!r}")
        for a in rows:
            if attempt is not None and a["attempt"] != attempt:
                continue
            folder = Path(a["log_dir"] or self.paths.attempt(job_id, a["attempt"]))
            for s in ("stdout", "stderr") if stream is None else (stream,):
                with contextlib.suppress(OSError):
                    text = (folder / f"{s}.log").read_text(errors="replace")
                    if text:
                        if attempt is None or stream is None:
                            out.append(f"==> attempt {a['attempt']} {s} <==\n")
                        out.append(text if text.endswith("\n") else text + "\n")
        return "".join(out)

    def lineage(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Tables and versions jobs read and wrote, with the user they acted for."""
        return self.store.lineage(job_id)

    def queues(self) -> list[dict[str, Any]]:
        """Each queue with priority, compute environments, weights and job counts by state."""
        counts = self.store.counts()
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
    def cancel(self, job_id: str) -> None:
        """Cancel a job (or every child of an array job); running attempts are stopped."""
        job = self.get(job_id)
        targets = [job.id]
        if (job._row or {}).get("array_size"):
            targets += [c.id for c in job.children]
        waiting = ("SUBMITTED", "PENDING", "RUNNABLE")
        done = set(
            self.store.set_status_many(
                [(t, "CANCELLED", "cancelled by request", waiting) for t in targets]
            )
        )
        for t in targets:
            if t not in done:
                self.store.set_control(t, "CANCEL")
        self._wake()

    def interrupt(self, job_id: str) -> None:
        """Deliver a spot interruption to a running job now: SIGTERM, grace, SIGKILL, requeue."""
        job = self.get(job_id)
        row = job.refresh()
        if row["array_size"]:
            running = [c.id for c in job.children if c.status in ("STARTING", "RUNNING")]
            if not running:
                raise JobError(f"no child of array job {job_id} is running")
            for c in running:
                self.store.set_control(c, "INTERRUPT")
        elif row["status"] in ("STARTING", "RUNNING"):
            self.store.set_control(job.id, "INTERRUPT")
        else:
            raise JobError(
                f"job {job_id} is {row['status']}; only a running job can be interrupted"
            )
        self._wake()

    # schedules -------------------------------------------------------------------------------
    def schedule(
        self, name: str, cron: str, command: Sequence[str], *, user: str, **submit: Any
    ) -> dict[str, Any]:
        """Submit `command` with these submit() arguments at every `cron` time (UTC)."""
        if not isinstance(name, str) or not specs.NAME_RE.match(name):
            raise InvalidArgument(
                f"schedule name {name!r} must be letters, digits, '_', '-' or '.'"
            )
        parsed = parse_cron(cron)
        if not self._allowed(user, f"queue:{submit.get('queue', 'default')}", "submit"):
            raise AccessDenied(f"{user} may not submit to queue {submit.get('queue', 'default')!r}")
        kwargs = {"command": list(specs.check_command(command)), "user": user, **submit}
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
            "user": user,
            "submit": json.dumps(kwargs),
            "enabled": True,
            "next_run": parsed.next(datetime.fromtimestamp(now, UTC)).timestamp(),
            "last_run": None,
            "last_job": None,
            "created_at": now,
        }
        self.store.put_schedule(row)
        self._wake()
        self._ensure_scheduler()
        return self._schedule_view(row)

    def schedules(self) -> list[dict[str, Any]]:
        """Every cron schedule with its next run."""
        return [self._schedule_view(s) for s in self.store.schedules()]

    def unschedule(self, name: str) -> None:
        """Delete a cron schedule."""
        if not self.store.delete_schedule(name):
            raise JobError(f"no schedule {name!r}")

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


def _default_name(command: list[str]) -> str:
    base = Path(command[-1] if len(command) > 1 else command[0]).name or "job"
    clean = "".join(c if c.isalnum() or c in "_.-" else "_" for c in base)[:64]
    return clean if clean and (clean[0].isalnum() or clean[0] == "_") else f"job{clean}"
