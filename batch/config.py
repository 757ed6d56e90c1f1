"""Batch settings from the lake's `lake.toml` (`[batch]`), with a default for every key.

```toml
[batch]
preempt_grace_s = 2            # SIGTERM -> this many seconds -> SIGKILL (LAKE_PREEMPT_GRACE_S)
scheduler = "thread"           # "thread" (in the lake process) or "actor" (detached Ray actor)
ray_num_cpus = 4               # logical CPUs of a local Ray started on demand

[batch.compute.on_demand]
cpus = 2                       # capacity
[batch.compute.spot]
cpus = 2
interruption_rate_per_hour = 0 # the spot interruption simulator
notice_s = 2                   # SIGTERM notice before SIGKILL for spot interruptions

[batch.queues.default]
priority = 1                   # higher runs first
compute = ["spot", "on_demand"]
share_decay_s = 600            # half-life of fair-share usage
share_by = "user"              # share identifier: "user", "name" (job name) or "none"
[batch.queues.default.weights]
alice = 2                      # share identifier (the user) -> weight; others 1
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from catalog.errors import InvalidArgument

COMPUTE_KINDS = ("on_demand", "spot")


@dataclass(frozen=True)
class ComputeEnv:
    """A pool of capacity jobs run on; `spot` ones can be interrupted."""

    name: str
    cpus: float
    memory_bytes: int | None = None
    spot: bool = False
    interruption_rate_per_hour: float = 0.0
    notice_s: float = 2.0


@dataclass(frozen=True)
class QueueConfig:
    """A job queue: priority, ordered compute environments, fair-share weights and decay."""

    name: str
    priority: int = 1
    compute: tuple[str, ...] = ("spot", "on_demand")
    weights: dict[str, float] = field(default_factory=dict)
    share_decay_s: float = 600.0
    share_by: str = "user"

    def weight(self, share_id: str) -> float:
        return float(self.weights.get(share_id, self.weights.get("*", 1.0)))


@dataclass(frozen=True)
class BatchConfig:
    """Everything the scheduler reads from `[batch]`."""

    compute: dict[str, ComputeEnv]
    queues: dict[str, QueueConfig]
    preempt_grace_s: float = 2.0
    scheduler: str = "thread"
    ray_num_cpus: float | None = None
    poll_s: float = 0.02
    lease_s: float = 10.0

    @property
    def max_cpus(self) -> float:
        return max((c.cpus for c in self.compute.values()), default=0.0)


BATCH_KEYS = {
    "preempt_grace_s",
    "scheduler",
    "ray_num_cpus",
    "poll_s",
    "lease_s",
    "compute",
    "queues",
}
COMPUTE_KEYS = {"cpus", "memory", "interruption_rate_per_hour", "notice_s"}
QUEUE_KEYS = {"priority", "compute", "weights", "share_decay_s", "share_by"}


def _known(section: str, d: dict[str, Any], known: set[str]) -> None:
    if not isinstance(d, dict):
        raise InvalidArgument(f"lake.toml [{section}] must be a table")
    unknown = set(d) - known
    if unknown:
        raise InvalidArgument(
            f"lake.toml [{section}] has unknown key(s) {sorted(unknown)}; known: {sorted(known)}"
        )


def _num(section: str, d: dict[str, Any], key: str, default: float) -> float:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InvalidArgument(f"lake.toml [{section}] {key} must be a number >= 0, not {value!r}")
    return float(value)


def load_batch_config(raw: dict[str, Any] | None) -> BatchConfig:
    """Parse the `[batch]` table of lake.toml's parsed dict (`lk.config.raw`)."""
    b = dict((raw or {}).get("batch", {}))
    _known("batch", b, BATCH_KEYS)
    default_cpus = float(os.cpu_count() or 1)
    compute: dict[str, ComputeEnv] = {}
    grace = _num("batch", b, "preempt_grace_s", 2.0)
    given = b.get("compute", {})
    unknown = set(given) - set(COMPUTE_KINDS)
    if unknown:
        raise InvalidArgument(
            f"lake.toml [batch.compute] has unknown environment(s) {sorted(unknown)}; "
            f"known: {list(COMPUTE_KINDS)}"
        )
    for kind in COMPUTE_KINDS:
        c = dict(given.get(kind, {}))
        sec = f"batch.compute.{kind}"
        _known(sec, c, COMPUTE_KEYS)
        mem = c.get("memory")
        compute[kind] = ComputeEnv(
            kind,
            _num(sec, c, "cpus", default_cpus),
            parse_memory(mem) if mem is not None else None,
            spot=kind == "spot",
            interruption_rate_per_hour=_num(sec, c, "interruption_rate_per_hour", 0.0),
            notice_s=_num(sec, c, "notice_s", grace),
        )
    queues: dict[str, QueueConfig] = {}
    for name, q in dict(b.get("queues", {})).items():
        sec = f"batch.queues.{name}"
        _known(sec, q, QUEUE_KEYS)
        envs = tuple(q.get("compute", ("spot", "on_demand")))
        bad = [e for e in envs if e not in compute]
        if bad or not envs:
            raise InvalidArgument(
                f"lake.toml [{sec}] compute must list environments of {list(COMPUTE_KINDS)}, "
                f"not {list(envs)}"
            )
        weights = {
            str(k): _num(f"{sec}.weights", q.get("weights", {}), k, 1.0)
            for k in q.get("weights", {})
        }
        share_by = str(q.get("share_by", "user"))
        if share_by not in ("user", "name", "none"):
            raise InvalidArgument(f"lake.toml [{sec}] share_by must be 'user', 'name' or 'none'")
        queues[name] = QueueConfig(
            name,
            int(q.get("priority", 1)),
            envs,
            weights,
            _num(sec, q, "share_decay_s", 600.0) or 600.0,
            share_by,
        )
    queues.setdefault("default", QueueConfig("default"))
    mode = str(b.get("scheduler", "thread"))
    if mode not in ("thread", "actor"):
        raise InvalidArgument(
            f"lake.toml [batch] scheduler must be 'thread' or 'actor', not {mode!r}"
        )
    ray_cpus = b.get("ray_num_cpus")
    return BatchConfig(
        compute,
        queues,
        grace,
        mode,
        float(ray_cpus) if ray_cpus is not None else None,
        _num("batch", b, "poll_s", 0.02),
        _num("batch", b, "lease_s", 10.0) or 10.0,
    )


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}


def parse_memory(value: str | int | float) -> int:
    """'1GiB', '512Mi', '2GB', 1073741824 -> bytes; InvalidArgument on anything else."""
    if isinstance(value, bool):
        raise InvalidArgument(f"memory must be like '1GiB' or a number of bytes, not {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise InvalidArgument(f"memory must be positive, not {value!r}")
        return int(value)
    if not isinstance(value, str):
        raise InvalidArgument(f"memory must be like '1GiB' or a number of bytes, not {value!r}")
    text = value.strip().replace(" ", "")
    i = len(text)
    while i and not (text[i - 1].isdigit() or text[i - 1] == "."):
        i -= 1
    number, unit = text[:i], text[i:].lower()
    try:
        n = float(number)
    except ValueError:
        n = -1
    if unit not in _UNITS or n <= 0:
        raise InvalidArgument(
            f"memory {value!r} is not understood; use e.g. '512MiB', '1GiB', '2GB' or bytes"
        )
    return int(n * _UNITS[unit])
