"""The sandbox runtime interface (pyiceberg-catalog shape): one small ABC, backends by name."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Mount:
    """A host path visible inside the sandbox at `target`."""

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class SandboxSpec:
    """Everything needed to start one job attempt in a sandbox."""

    command: list[str]
    image: str = "host"  # "host", a rootfs folder, or an OCI layout / docker-archive tarball
    workdir: Path | None = None  # bound read-only at /opt/ml/code, the working directory
    env: dict[str, str] = field(default_factory=dict)
    mounts: tuple[
        Mount, ...
    ] = ()  # /opt/ml/input/data/NAME, /opt/ml/output/NAME, /opt/ml/checkpoints
    cpus: float = 1.0
    memory_bytes: int | None = None
    network: bool = False
    stdout: Path | None = None  # log files (appended)
    stderr: Path | None = None


@dataclass(frozen=True)
class ExitStatus:
    """How an attempt ended: exit code (None if killed by a signal), signal, and reason."""

    code: int | None
    signal: int | None
    reason: str  # "SUCCEEDED", "EXIT_CODE", "OOM", "KILLED"


class Sandbox(abc.ABC):
    """A running sandboxed process tree."""

    pid: int

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """Wait for the end (None if still running after `timeout`)."""

    @abc.abstractmethod
    def signal(self, sig: int) -> None:
        """Deliver a signal to the job's process (SIGTERM for a preemption notice)."""

    @abc.abstractmethod
    def kill(self) -> None:
        """SIGKILL the whole sandbox."""


class Runtime(abc.ABC):
    """Starts sandboxes. Backends: bubblewrap (default), podman/docker when an engine works."""

    name: str

    @classmethod
    @abc.abstractmethod
    def available(cls) -> bool:
        """True if this backend works on this machine."""

    @abc.abstractmethod
    def start(self, spec: SandboxSpec) -> Sandbox:
        """Start the command in a new sandbox; raises catalog.errors.JobError if it cannot."""
