"""Submitting jobs: validate a job against the queues and the lake, then queue it durably.

Used by `lk.batch.submit` and by the scheduler for cron schedules, so both check and record a
submission the same way. A submission is one batched store insert (no Ray round trip); the
acceptance reaches the audit trail through the store's outbox, a refusal at once.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cachetools

from batch import spec as specs
from batch.config import BatchConfig
from batch.port import LakePort
from batch.store import BatchStore
from catalog.errors import AccessDenied, JobError, LakeError, TableNotFound


def may_see(port: LakePort, user: Any, row: Mapping[str, Any], action: str) -> bool:
    """Whether `user` may `action` ("describe": see, read logs; "alter": cancel, interrupt) a
    job (rule 13): their own (a job the owner submitted is the owner's, whatever the owner's
    name), or with `action` on its queue. A job a user may not see does not exist for them."""
    if port.is_admin(user):
        return True
    return owns(port, user, row) or port.allowed(user, f"queue:{row['queue']}", action)


def owns(port: LakePort, user: Any, row: Mapping[str, Any]) -> bool:
    """Whether a job (or schedule) row is `user`'s own: submitted by a user of their name (names
    ignore case, as the policy's do); the owner's jobs are the owner's alone."""
    return row.get("acting") != "owner" and row["user"].lower() == port.principal_name(user).lower()


class Submitter:
    """Checks and queues submissions for one lake."""

    def __init__(
        self,
        store: BatchStore,
        cfg: BatchConfig,
        port: LakePort,
        ship_code: Callable[[str, str], None] | None = None,
    ):
        self.store = store
        self.cfg = cfg
        self.port = port
        # For a lake in an object store: copy a job's workdir there (folder, job id), so an
        # attempt on any Ray node finds it with no shared filesystem.
        self.ship_code = ship_code
        self._defs: cachetools.LRUCache[str, specs.Definition] = cachetools.LRUCache(1024)
        self._forward_lock = threading.Lock()

    def submit(
        self,
        command: Sequence[str],
        *,
        user: str | None,
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
    ) -> str:
        """Queue a job (see CONTRACT section 4); returns its id."""
        who = self.port.principal_name(user)
        try:
            statement = f"submit {shlex.join(list(command))} to queue {queue}"
        except TypeError:
            statement = f"submit {command!r} to queue {queue}"
        try:
            # One submission is decided under one version of the policy.
            with self.port.one_policy():
                specs.check_queue(self.cfg, queue)
                if not self.port.allowed(user, f"queue:{queue}", "submit"):
                    raise AccessDenied(
                        f"{who} may not submit to queue {queue!r} (needs the submit grant on "
                        f"queue:{queue})"
                    )
                if network and not self.port.allowed(user, f"queue:{queue}", "alter"):
                    # A job with network access can reach more than its sandbox; an explicit grant.
                    raise AccessDenied(
                        f"{who} may not submit jobs with network access to queue {queue!r} "
                        f"(needs alter on queue:{queue})"
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
                ins = {n: self._table(user, t, "select") for n, t in ins.items()}
                outs = {n: self._table(user, t, "insert") for n, t in outs.items()}
                if not isinstance(spot, bool):
                    raise JobError(f"spot must be True or False, not {spot!r}")
                if name is not None and (
                    not isinstance(name, str) or not specs.NAME_RE.match(name)
                ):
                    raise JobError(f"name {name!r} must be letters, digits, '_', '-' or '.'")
                dep_rows = self._dep_rows(user, job_id, specs.check_deps(depends_on, size), size)
        except LakeError as e:
            decision = "denied" if isinstance(e, AccessDenied) else "error"
            self.port.audit(user, "submit", statement, decision, reason=str(e))
            raise
        now = time.time()
        q = self.cfg.queues[queue]
        job_name = name or _default_name(definition.command)
        by = {"user": who, "name": job_name, "none": "*"}
        share = share_id or by.get(q.share_by, who)
        base = {
            "parent_id": None,
            "array_index": None,
            "array_size": size,
            "name": job_name,
            "user": who,
            "acting": "owner" if self.port.is_admin(user) and user is None else "user",
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
        outbox = [
            {"job_id": job_id, "user": who, "queue": queue, "statement": statement, "at": now}
        ]
        if definition.workdir is not None and self.ship_code is not None:
            self.ship_code(definition.workdir, job_id)  # before the job exists for a scheduler
        self.store.insert((definition.digest, definition.to_json()), rows, dep_rows, outbox)
        return job_id

    def forward_audit(self, older_than: float | None = None) -> int:
        """Forward accepted submissions from the store's outbox to the audit trail.

        One audit record per user and queue per round names every job id it covers.
        """
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
                with contextlib.suppress(LakeError):  # rows stay queued; the next round retries
                    self.port.audit(
                        user,
                        "submit",
                        statement,
                        "allowed",
                        rows=len(items),
                        reason="jobs " + " ".join(r["job_id"] for r in items),
                    )
                    self.store.outbox_done(r["seq"] for r in items)
            return len(rows)

    def _table(self, user: str | None, table: str, action: str) -> str:
        try:
            return self.port.check_table(user, table, action)
        except TableNotFound:
            # Missing and not visible to this user read the same (rule 10).
            raise JobError(
                f"table {table} does not exist or you may not use it; a job can only read or "
                "write tables its user may use"
            ) from None

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

    def _dep_rows(
        self, user: str | None, job_id: str, deps: list[specs.Dependency], size: int | None
    ) -> list[dict[str, str]]:
        wanted = {d.job_id for d in deps if d.job_id is not None}
        found = self.store.existing(wanted)
        for dep in list(found):  # another user's job it may not see is unknown (rule 13)
            row = self.store.job(dep)
            if row is None or not may_see(self.port, user, row, "describe"):
                found.pop(dep)
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


def _default_name(command: list[str]) -> str:
    base = Path(command[-1] if len(command) > 1 else command[0]).name or "job"
    clean = "".join(c if c.isalnum() or c in "_.-" else "_" for c in base)[:64]
    return clean if clean and (clean[0].isalnum() or clean[0] == "_") else f"job{clean}"
