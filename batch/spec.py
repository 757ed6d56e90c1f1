"""Job specifications: validation of everything `submit` accepts, with clear errors."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from batch.config import BatchConfig, parse_memory
from catalog.errors import InvalidArgument, JobError

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_ENV = ("LAKE_JOB_ID", "LAKE_ATTEMPT", "LAKE_ARRAY_INDEX", "LAKE_PREEMPT_GRACE_S")
RULE_KEYS = {"on_exit_code", "on_reason", "on_status_reason", "action"}
DEP_TYPES = ("N_TO_N", "SEQUENTIAL")
MAX_ARRAY = 10_000


@dataclass(frozen=True)
class Definition:
    """What runs: the reusable part of a job (AWS Batch's job definition)."""

    command: list[str]
    image: str = "host"
    cpus: float = 1.0
    memory_bytes: int = 1 << 30
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    retries: int = 0
    retry_rules: list[dict[str, str]] = field(default_factory=list)
    checkpoint: bool = False
    workdir: str | None = None
    network: bool = False

    def to_json(self) -> str:
        return self._json

    @cached_property
    def _json(self) -> str:
        fields = {f: getattr(self, f) for f in self.__dataclass_fields__}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(self._json.encode()).hexdigest()[:24]

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> Definition:
        d = json.loads(text) if isinstance(text, str) else dict(text)
        return cls(**d)


@dataclass(frozen=True)
class Dependency:
    job_id: str | None  # None: the array job itself (SEQUENTIAL)
    type: str | None = None  # None, N_TO_N or SEQUENTIAL


def _fail(msg: str) -> None:
    raise JobError(msg)


def check_command(command: Any) -> list[str]:
    if isinstance(command, str):
        _fail(
            f"command must be a list of arguments like ['python', 'train.py'], not the string "
            f"{command!r}; for a shell line use ['sh', '-c', {command!r}]"
        )
    if not isinstance(command, Sequence) or not command:
        _fail("command must be a non-empty list of strings, like ['python', 'train.py']")
    bad = [c for c in command if not isinstance(c, str)]
    if bad:
        _fail(f"every command argument must be a string; got {bad[0]!r}")
    if not command[0]:
        _fail("the program (first command argument) is empty")
    return list(command)


def check_rules(rules: Any) -> list[dict[str, str]]:
    """AWS Batch evaluateOnExit: [{"on_exit_code": "1*", "on_reason": "OOM", "action": "RETRY"}]."""
    if rules is None:
        return []
    if isinstance(rules, Mapping) or not isinstance(rules, Sequence):
        _fail("retry_rules must be a list of {'on_exit_code'|'on_reason': glob, 'action': ...}")
    out = []
    for i, r in enumerate(rules):
        if not isinstance(r, Mapping):
            _fail(f"retry_rules[{i}] must be a dict, not {type(r).__name__}")
        unknown = set(r) - RULE_KEYS
        if unknown:
            _fail(
                f"retry_rules[{i}] has unknown key(s) {sorted(unknown)}; known: {sorted(RULE_KEYS)}"
            )
        action = str(r.get("action", "")).upper()
        if action not in ("RETRY", "EXIT"):
            _fail(f"retry_rules[{i}] action must be 'RETRY' or 'EXIT', not {r.get('action')!r}")
        conds = {k: r[k] for k in ("on_exit_code", "on_reason", "on_status_reason") if k in r}
        if not conds:
            _fail(f"retry_rules[{i}] needs on_exit_code, on_reason or on_status_reason")
        for k, v in conds.items():
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                _fail(f"retry_rules[{i}] {k} must be a glob string, not {v!r}")
        if "on_exit_code" in conds and not re.fullmatch(
            r"[0-9*?\[\]-]+", str(conds["on_exit_code"])
        ):
            _fail(
                f"retry_rules[{i}] on_exit_code {conds['on_exit_code']!r} must be digits and globs"
            )
        out.append({**{k: str(v) for k, v in conds.items()}, "action": action})
    return out


def rule_action(
    rules: list[dict[str, str]], code: int | None, reason: str, detail: str
) -> str | None:
    """The action of the first matching rule ("RETRY"/"EXIT"), or None if none matches."""
    for r in rules:
        if "on_exit_code" in r and (
            code is None or not fnmatch.fnmatchcase(str(code), r["on_exit_code"])
        ):
            continue
        if "on_reason" in r and not fnmatch.fnmatchcase(reason, r["on_reason"]):
            continue
        if "on_status_reason" in r and not fnmatch.fnmatchcase(detail, r["on_status_reason"]):
            continue
        return r["action"]
    return None


def check_tables(kind: str, tables: Any) -> dict[str, str]:
    if tables is None:
        return {}
    if not isinstance(tables, Mapping):
        _fail(
            f"{kind} must be a dict of name -> 'database.table', like {{'orders': 'sales.orders'}}"
        )
    out = {}
    for name, table in tables.items():
        if (
            not isinstance(name, str)
            or not NAME_RE.match(name)
            or "/" in name
            or name in (".", "..")
        ):
            _fail(
                f"{kind} name {name!r} must be letters, digits, '_', '-' or '.' (it names a folder)"
            )
        if not isinstance(table, str) or not TABLE_RE.match(table):
            _fail(f"{kind}[{name!r}] must name a table as 'database.table', not {table!r}")
        out[name] = table
    return out


def check_env(env: Any) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        _fail("env must be a dict of str -> str")
    out = {}
    for k, v in env.items():
        if not isinstance(k, str) or not ENV_RE.match(k):
            _fail(f"env name {k!r} is not a valid variable name")
        if k in RESERVED_ENV:
            _fail(f"env {k} is set by Lakeward for every attempt and cannot be given")
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            _fail(f"env {k} must be a string, not {type(v).__name__}")
        out[k] = str(v)
    return out


def check_deps(depends_on: Any, array_size: int | None) -> list[Dependency]:
    if depends_on is None:
        return []
    if isinstance(depends_on, (str, Mapping)):
        depends_on = [depends_on]
    if not isinstance(depends_on, Sequence):
        _fail("depends_on must be a list of job ids or {'job_id': ..., 'type': ...}")
    out = []
    for d in depends_on:
        job_id = getattr(d, "id", None) if not isinstance(d, (str, Mapping)) else None
        if isinstance(d, str):
            out.append(Dependency(d))
            continue
        if job_id is not None:  # a Job object
            out.append(Dependency(str(job_id)))
            continue
        if not isinstance(d, Mapping):
            _fail(f"depends_on entry {d!r} must be a job id or {{'job_id': ..., 'type': ...}}")
        unknown = set(d) - {"job_id", "type"}
        if unknown:
            _fail(f"depends_on entry has unknown key(s) {sorted(unknown)}")
        typ = d.get("type")
        if typ is not None:
            typ = str(typ).upper()
            if typ not in DEP_TYPES:
                _fail(f"dependency type must be one of {DEP_TYPES}, not {d.get('type')!r}")
            if array_size is None:
                _fail(f"a {typ} dependency needs an array job (array_size=N)")
        jid = d.get("job_id")
        if jid is None and typ != "SEQUENTIAL":
            _fail("a dependency needs a job_id (only SEQUENTIAL may omit it)")
        if jid is not None and not isinstance(jid, str):
            jid = getattr(jid, "id", jid)
        if typ == "SEQUENTIAL" and jid is not None:
            _fail("a SEQUENTIAL dependency orders the children of this array job; give no job_id")
        out.append(Dependency(None if jid is None else str(jid), typ))
    return out


def build_definition(
    cfg: BatchConfig,
    *,
    command: Any,
    image: Any,
    cpus: Any,
    memory: Any,
    env: Any,
    timeout_s: Any,
    retries: Any,
    retry_rules: Any,
    checkpoint: Any,
    workdir: Any,
    network: Any = False,
) -> Definition:
    """Validate the reusable part of a job; JobError/InvalidArgument say what is wrong."""
    cmd = check_command(command)
    if not isinstance(image, str) or not image:
        _fail("image must be 'host', a rootfs folder or an OCI/docker-archive tarball path")
    if image != "host":
        image = _image_ref(image)
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus <= 0:
        _fail(f"cpus must be a positive number, not {cpus!r}")
    if cpus > cfg.max_cpus:
        _fail(
            f"cpus={cpus:g} is more than any compute environment has ({cfg.max_cpus:g}); "
            "ask for fewer or raise [batch.compute.*] cpus in lake.toml"
        )
    mem = parse_memory(memory)
    host = _host_memory()
    limit = max((e.memory_bytes or host or 0 for e in cfg.compute.values()), default=0)
    if limit and mem > limit:
        _fail(
            f"memory={memory!r} is more than a compute environment offers ({limit / 2**30:.1f} GiB); "
            "ask for less"
        )
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0
    ):
        _fail(f"timeout_s must be a positive number of seconds or None, not {timeout_s!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        _fail(f"retries must be an integer from 0 to 100, not {retries!r}")
    wd = None
    if workdir is not None:
        p = Path(workdir).expanduser()
        if not p.is_dir():
            _fail(f"workdir {str(workdir)!r} is not a folder")
        wd = str(p.resolve())
    return Definition(
        cmd,
        image,
        float(cpus),
        mem,
        check_env(env),
        None if timeout_s is None else float(timeout_s),
        retries,
        check_rules(retry_rules),
        bool(checkpoint),
        wd,
        bool(network),
    )


def _host_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _image_ref(image: str) -> str:
    # 'path' or 'path:tag' (a tag picks an image inside an OCI layout), made absolute.
    p = Path(image).expanduser()
    if p.exists():
        return str(p.resolve())
    head, sep, tag = image.rpartition(":")
    if sep and "/" not in tag and Path(head).expanduser().exists():
        return f"{Path(head).expanduser().resolve()}:{tag}"
    raise JobError(
        f"image {image!r} does not exist; use 'host', a rootfs folder, an OCI layout "
        "(folder or folder:tag) or a docker-archive / OCI tarball"
    )


def check_array_size(array_size: Any) -> int | None:
    if array_size is None:
        return None
    if (
        isinstance(array_size, bool)
        or not isinstance(array_size, int)
        or not 2 <= array_size <= MAX_ARRAY
    ):
        raise JobError(
            f"array_size must be an integer from 2 to {MAX_ARRAY}, or None; not {array_size!r}"
        )
    return array_size


def check_queue(cfg: BatchConfig, queue: Any) -> str:
    if not isinstance(queue, str) or queue not in cfg.queues:
        raise InvalidArgument(
            f"no queue {queue!r}; queues: {sorted(cfg.queues)} (add [batch.queues.NAME] to lake.toml)"
        )
    return queue
