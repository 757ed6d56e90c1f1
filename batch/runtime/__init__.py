"""Sandbox runtimes for batch jobs: bubblewrap by default, podman/docker by name."""

from __future__ import annotations

from typing import Any

from batch.runtime.base import ExitStatus, Mount, Runtime, Sandbox, SandboxSpec
from catalog.errors import JobError

DEFAULT = "bwrap"


def runtime_names() -> list[str]:
    """Every runtime name `load_runtime` accepts (available here or not)."""
    return ["bwrap", "podman", "docker"]


def load_runtime(name: str | None = None, **options: Any) -> Runtime:
    """The runtime called `name` (default bwrap); JobError if it does not work on this machine.

    `options` go to the runtime's constructor (e.g. `cache_dir` for unpacked images).
    """
    name = name or DEFAULT
    problem = unavailable(name)
    if problem is not None:
        raise JobError(problem)
    if name == "bwrap":
        from batch.runtime.bwrap import BwrapRuntime

        return BwrapRuntime(**options)
    if name in ("podman", "docker"):
        from batch.runtime.engine import EngineRuntime

        return EngineRuntime(name, **options)
    raise JobError(f"unknown sandbox runtime {name!r}; choose one of {runtime_names()}")


def unavailable(name: str | None = None) -> str | None:
    """Why the runtime called `name` (default bwrap) cannot run jobs on this machine, in one
    line naming the missing piece and how to get it; None when it can."""
    name = name or DEFAULT
    if name == "bwrap":
        from batch.runtime.bwrap import unavailable as bwrap_unavailable

        return bwrap_unavailable()
    if name in ("podman", "docker"):
        from batch.runtime.engine import engine_available

        if not engine_available(name):
            return f"{name} does not work here (`{name} info` fails): install and start {name}"
        return None
    return None


__all__ = [
    "ExitStatus",
    "Mount",
    "Runtime",
    "Sandbox",
    "SandboxSpec",
    "load_runtime",
    "runtime_names",
    "unavailable",
]
