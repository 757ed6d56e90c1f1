"""Batch settings from the lake's `lake.toml` (`[batch]`), with a default for every key.

```toml
[batch]
preempt_grace_s = 2            # SIGTERM -> this many seconds -> SIGKILL (LAKE_PREEMPT_GRACE_S)
scheduler = "thread"           # "thread" (in the lake process) or "actor" (detached Ray actor)
ray_num_cpus = 4               # logical CPUs of a local Ray started on demand
ray_address = "10.0.0.5:6379"  # an existing Ray cluster (else connect's ray_address, $RAY_ADDRESS)
ray_auth_token_file = "/etc/lakeward/ray-token"  # its token (Ray 2.60 token auth; else
                               # $RAY_AUTH_TOKEN or $RAY_AUTH_TOKEN_PATH, Ray's own)

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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from catalog.errors import InvalidArgument
from catalog.settings import config_error

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
    ray_address: str | None = None
    ray_auth_token_file: str | None = None

    @property
    def max_cpus(self) -> float:
        return max((c.cpus for c in self.compute.values()), default=0.0)


# lake.toml's [batch] as pydantic validates it: unknown keys and wrong types are errors.
class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ComputeSection(_Section):
    """[batch.compute.on_demand] / [batch.compute.spot]."""

    cpus: float | None = Field(None, ge=0)  # default: this machine's CPUs
    memory: str | int | None = None
    interruption_rate_per_hour: float = Field(0.0, ge=0)
    notice_s: float | None = Field(None, ge=0)  # default: preempt_grace_s

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str | int | None) -> str | int | None:
        if v is not None:
            try:
                parse_memory(v)
            except InvalidArgument as e:
                raise ValueError(str(e)) from None
        return v


class ComputeSections(_Section):
    """[batch.compute]: the two kinds of capacity."""

    on_demand: ComputeSection = ComputeSection()
    spot: ComputeSection = ComputeSection()


class QueueSection(_Section):
    """[batch.queues.NAME]."""

    priority: int = 1
    compute: list[Literal["spot", "on_demand"]] = Field(
        default_factory=lambda: ["spot", "on_demand"], min_length=1
    )
    weights: dict[str, float] = Field(default_factory=dict)
    share_decay_s: float = Field(600.0, gt=0)
    share_by: Literal["user", "name", "none"] = "user"

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, w in v.items() if w < 0]
        if bad:
            raise ValueError(f"weights must be >= 0 (not {', '.join(bad)})")
        return v


class BatchSection(_Section):
    """[batch]."""

    preempt_grace_s: float = Field(2.0, ge=0)
    scheduler: Literal["thread", "actor"] = "thread"
    ray_num_cpus: float | None = Field(None, gt=0)
    poll_s: float = Field(0.02, ge=0)
    lease_s: float = Field(10.0, gt=0)
    ray_address: str | None = None
    ray_auth_token_file: str | None = None
    compute: ComputeSections = ComputeSections()
    queues: dict[str, QueueSection] = Field(default_factory=dict)


def load_batch_config(raw: dict[str, Any] | None) -> BatchConfig:
    """Parse the `[batch]` table of lake.toml's parsed dict (`lk.config.raw`); InvalidArgument
    with one line per problem."""
    try:
        b = BatchSection.model_validate((raw or {}).get("batch", {}))
    except ValidationError as e:
        raise config_error(e.errors(), "batch", BatchSection) from None
    default_cpus = float(os.cpu_count() or 1)
    compute = {
        kind: ComputeEnv(
            kind,
            default_cpus if c.cpus is None else c.cpus,
            parse_memory(c.memory) if c.memory is not None else None,
            spot=kind == "spot",
            interruption_rate_per_hour=c.interruption_rate_per_hour,
            notice_s=b.preempt_grace_s if c.notice_s is None else c.notice_s,
        )
        for kind, c in (("on_demand", b.compute.on_demand), ("spot", b.compute.spot))
    }
    queues = {
        name: QueueConfig(
            name, q.priority, tuple(q.compute), dict(q.weights), q.share_decay_s, q.share_by
        )
        for name, q in b.queues.items()
    }
    queues.setdefault("default", QueueConfig("default"))
    return BatchConfig(
        compute,
        queues,
        b.preempt_grace_s,
        b.scheduler,
        b.ray_num_cpus,
        b.poll_s,
        b.lease_s,
        b.ray_address,
        b.ray_auth_token_file,
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
