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
    if name == "bwrap":
        from batch.runtime.bwrap import BwrapRuntime

        if not BwrapRuntime.available():
            raise JobError(
                "the bwrap sandbox does not work here: install bubblewrap (apt-get install "
                "bubblewrap) and allow user namespaces, or choose runtime 'podman'/'docker'"
            )
        return BwrapRuntime(**options)
    if name in ("podman", "docker"):
        from batch.runtime.engine import EngineRuntime

        if not EngineRuntime.engine_available(name):
            raise JobError(f"runtime {name!r} is not available: `{name} info` does not work here")
        return EngineRuntime(name, **options)
    raise JobError(f"unknown sandbox runtime {name!r}; choose one of {runtime_names()}")


__all__ = [
    "ExitStatus",
    "Mount",
    "Runtime",
    "Sandbox",
    "SandboxSpec",
    "load_runtime",
    "runtime_names",
]
