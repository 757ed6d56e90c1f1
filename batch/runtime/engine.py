"""podman/docker sandboxes, used only when the engine answers `<engine> info`.

Images: podman runs rootfs folders (`--rootfs`), OCI layouts (`oci:`) and tarballs
(`docker-archive:` / `oci-archive:`) directly; docker loads tarballs with `docker load` first.
Any other name is passed to the engine as an image reference. "host" needs the bwrap runtime.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

from batch.runtime.base import ExitStatus, Runtime, Sandbox, SandboxSpec
from batch.runtime.bwrap import CODE_DIR, exit_status, validate_spec
from batch.runtime.images import HOST, default_cache_dir, split_ref, tarball_digest
from catalog.errors import JobError

ENGINES = ("podman", "docker")


@functools.cache
def engine_available(engine: str) -> bool:
    """True if `engine info` succeeds (the binary exists and its daemon/runtime works)."""
    exe = shutil.which(engine)
    if exe is None:
        return False
    try:
        done = subprocess.run([exe, "info"], capture_output=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def image_args(
    engine: str, image: str, cache_dir: Path | None = None
) -> tuple[list[str], list[str] | None]:
    """(the image part of `run`'s argv, a command to run once before) for `image`."""
    if image == HOST:
        raise JobError(f"image 'host' needs the bwrap runtime, not {engine}")
    path, tag = split_ref(image)
    if path is None:
        return [image], None  # a registry reference: the engine's business
    is_layout = path.is_dir() and (path / "oci-layout").exists()
    if engine == "podman":
        if is_layout:
            return [f"oci:{path}" + (f":{tag}" if tag else "")], None
        if path.is_dir():
            rootfs = path / "rootfs" if (path / "rootfs").is_dir() else path
            return ["--rootfs", str(rootfs)], None
        return [f"{_archive_kind(path)}:{path}"], None
    if path.is_dir():
        raise JobError(f"docker cannot run a folder image ({image}); use podman or bwrap")
    _, digest = tarball_digest(path, image, cache_dir or default_cache_dir())
    return [digest], ["docker", "load", "--quiet", "--input", str(path)]


def _archive_kind(path: Path) -> str:
    try:
        with tarfile.open(path, "r:*") as tar:
            return "docker-archive" if "manifest.json" in tar.getnames() else "oci-archive"
    except (tarfile.TarError, OSError) as e:
        raise JobError(f"image {str(path)!r}: cannot read the tarball: {e}") from e


def engine_argv(engine: str, spec: SandboxSpec, image: list[str], name: str) -> list[str]:
    """The `<engine> run` command line for `spec`. Env values travel in the engine's own
    environment (`--env KEY`), so they never show in `ps`."""
    argv = [engine, "run", "--name", name, "--init", "--read-only", "--tmpfs", "/tmp"]
    argv += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    argv += ["--network", "host" if spec.network else "none", "--cpus", f"{spec.cpus:g}"]
    if spec.memory_bytes:
        argv += ["--memory", str(spec.memory_bytes), "--memory-swap", str(spec.memory_bytes)]
    if spec.workdir is not None:
        code = Path(spec.workdir).resolve()
        argv += ["--mount", f"type=bind,source={code},target={CODE_DIR},readonly"]
    else:
        argv += ["--tmpfs", f"{CODE_DIR}:ro"]
    argv += ["--workdir", CODE_DIR]
    for m in sorted(spec.mounts, key=lambda m: m.target.count("/")):
        opt = f"type=bind,source={Path(m.source).resolve()},target={m.target}"
        argv += ["--mount", opt + (",readonly" if m.read_only else "")]
    for key in sorted({"HOME", *spec.env}):
        argv += ["--env", key]
    return [*argv, *image, *spec.command]


class EngineRuntime(Runtime):
    """Starts sandboxes as podman/docker containers."""

    def __init__(self, engine: str = "podman", cache_dir: Path | None = None):
        if engine not in ENGINES:
            raise JobError(f"unknown container engine {engine!r}; choose podman or docker")
        self.name = engine
        self.cache_dir = cache_dir

    @classmethod
    def available(cls) -> bool:
        """True if podman or docker works here."""
        return any(engine_available(e) for e in ENGINES)

    @staticmethod
    def engine_available(engine: str) -> bool:
        """True if this one engine works here."""
        return engine_available(engine)

    def start(self, spec: SandboxSpec) -> EngineSandbox:
        """Run `spec` in a new container; JobError if the engine or the image fails."""
        if not engine_available(self.name):
            raise JobError(f"{self.name} does not work here (`{self.name} info` fails)")
        validate_spec(spec)
        image, prepare = image_args(self.name, spec.image, self.cache_dir)
        if prepare is not None:
            done = subprocess.run(prepare, capture_output=True, text=True)
            if done.returncode != 0:
                raise JobError(f"{' '.join(prepare[:2])} failed: {done.stderr.strip()}")
        name = f"lakeward-{uuid.uuid4().hex[:12]}"
        env = {**os.environ, "HOME": "/tmp", **spec.env}
        out = open(spec.stdout, "ab") if spec.stdout else subprocess.DEVNULL  # noqa: SIM115
        err = open(spec.stderr, "ab") if spec.stderr else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                engine_argv(self.name, spec, image, name),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        except OSError as e:
            raise JobError(f"cannot run {self.name}: {e}") from e
        finally:
            for f in (out, err):
                if f is not subprocess.DEVNULL:
                    f.close()
        return EngineSandbox(self.name, name, proc)


class EngineSandbox(Sandbox):
    """A running container; `pid` is the attached `<engine> run` client's."""

    def __init__(self, engine: str, name: str, proc: subprocess.Popen):
        self.engine, self.name, self.pid = engine, name, proc.pid
        self._proc = proc
        self._sent: set[int] = set()
        self._result: ExitStatus | None = None

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """Wait for the container; OOM comes from the engine's State.OOMKilled."""
        try:
            rc = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._result is None:
            oom = self._engine("inspect", "--format", "{{.State.OOMKilled}}", self.name) == "true"
            self._engine("rm", "--force", self.name)
            self._result = exit_status(rc, started=True, oom=oom, sent=self._sent)
        return self._result

    def signal(self, sig: int) -> None:
        """Send `sig` to the container's init, which forwards it to the job (`--init`)."""
        self._sent.add(sig)
        self._engine("kill", "--signal", str(int(sig)), self.name)

    def kill(self) -> None:
        """SIGKILL the container."""
        self._sent.add(9)
        self._engine("kill", self.name)

    def _engine(self, *args: str) -> str:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            done = subprocess.run([self.engine, *args], capture_output=True, text=True, timeout=30)
            return done.stdout.strip()
        return ""
