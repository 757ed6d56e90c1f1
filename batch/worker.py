"""One attempt of a job, run inside a Ray task that holds the job's CPUs and memory.

The task restores the checkpoint, starts the sandbox, reports RUNNING to the store, then watches
three things until the sandbox ends: a control file the scheduler writes (INTERRUPT, CANCEL,
STOP), the per-attempt timeout, and the sandbox itself. Stopping is always notice (SIGTERM),
grace, SIGKILL. The checkpoint is saved at notice and at the end of every attempt.

The attempt's files are locations under the lake root (`catalog.storage`). With the root in an
object store the task may run on any Ray node with no shared filesystem: it downloads the input
snapshots and the checkpoint into its scratch folder, runs the sandbox on those, uploads the
logs while the job runs (every LOG_SYNC_S) and at the end, the outputs at the end, and reads
the control file from the store (every CONTROL_POLL_S). On a local root it mounts them as is.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from batch import checkpoints
from batch.runtime.base import ExitStatus, Mount, Runtime, SandboxSpec
from catalog import storage
from catalog.errors import LakeError

CONTROL = "control"
LOG_SYNC_S = 0.5  # object-store roots: how often a running attempt uploads its logs
CONTROL_POLL_S = 0.25  # object-store roots: how often it reads the control file


@functools.cache
def load_sandbox_runtime(name: str | None = None) -> Runtime:
    """The sandbox backend (`batch.runtime.load_runtime`), one per process (a failure, e.g.
    no bwrap, is not remembered: the next attempt checks again)."""
    from batch.runtime import load_runtime

    return load_runtime(name)


def _node_name() -> str:
    """This host's name, and the Ray node's id when a Ray task (a host may run several nodes)."""
    name = socket.gethostname()
    try:
        import ray

        if ray.is_initialized():
            return f"{name}/{ray.get_runtime_context().get_node_id()[:12]}"
    except Exception:  # noqa: BLE001 - the host name alone then
        pass
    return name


def _mark_running(url: str, job_id: str, attempt: int, **fields: Any) -> None:
    # Open for this one write and close: a worker process never sits on store connections.
    from batch.store import BatchStore

    st = BatchStore(url, migrate_schema=False)
    try:
        st.mark_running(job_id, attempt, **fields)
    finally:
        st.close()


def read_control(attempt_dir: Path | str) -> str | None:
    try:
        return storage.read_text(storage.join(str(attempt_dir), CONTROL)).strip() or None
    except OSError:
        return None


def write_control(attempt_dir: Path | str, what: str) -> None:
    """Ask a running attempt to stop (INTERRUPT, CANCEL or STOP); first request wins."""
    if storage.is_remote(str(attempt_dir)):
        storage.create(storage.join(str(attempt_dir), CONTROL), what.encode())
        return
    attempt_dir = Path(attempt_dir)
    attempt_dir.mkdir(parents=True, exist_ok=True)
    path = attempt_dir / CONTROL
    if path.exists():
        return
    tmp = attempt_dir / f".{CONTROL}.{os.getpid()}"
    tmp.write_text(what)
    os.replace(tmp, path)


def run_attempt(plan: dict[str, Any]) -> dict[str, Any]:
    """Run one attempt end to end; returns how it ended (never raises for job failures)."""
    location = str(plan["attempt_dir"])  # where the attempt's files are kept
    remote = storage.is_remote(location)
    if remote:
        storage.configure(None, plan.get("storage_options") or {})
    scratch = Path(tempfile.mkdtemp(prefix=f"lakeward-{plan['job_id'].replace(':', '_')}-"))
    # Where the sandbox's logs and outputs are written: the attempt's folder itself on a local
    # root, this node's scratch for an object store (uploaded from there).
    attempt_dir = scratch / "attempt" if remote else Path(location)
    attempt_dir.mkdir(parents=True, exist_ok=True)
    local_ckpt = scratch / "checkpoints"
    ckpt_store = plan.get("checkpoint_dir") or None
    result: dict[str, Any] = {"node": _node_name(), "worker_pid": os.getpid()}
    try:
        t0 = time.time()
        if ckpt_store is not None:
            checkpoints.restore(ckpt_store, local_ckpt)
        else:
            local_ckpt.mkdir(parents=True)
        mounts = [Mount(local_ckpt, "/opt/ml/checkpoints", read_only=False)]
        for name, path in plan.get("inputs", {}).items():
            if remote:
                copy = scratch / "input" / name
                storage.download_tree(path, str(copy))
                copy.mkdir(parents=True, exist_ok=True)
                path = str(copy)
            mounts.append(Mount(Path(path), f"/opt/ml/input/data/{name}", read_only=True))
        for name in plan.get("outputs", []):
            out = attempt_dir / "output" / name
            out.mkdir(parents=True, exist_ok=True)
            mounts.append(Mount(out, f"/opt/ml/output/{name}", read_only=False))
        workdir = plan.get("workdir") or None
        if workdir is not None and storage.is_remote(workdir):
            storage.download_tree(workdir, str(scratch / "code"))
            (scratch / "code").mkdir(exist_ok=True)
            workdir = str(scratch / "code")
        spec = SandboxSpec(
            command=list(plan["command"]),
            image=plan.get("image", "host"),
            workdir=Path(workdir) if workdir else None,
            env=dict(plan["env"]),
            mounts=tuple(mounts),
            cpus=float(plan["cpus"]),
            memory_bytes=plan.get("memory_bytes"),
            network=bool(plan.get("network")),
            stdout=attempt_dir / "stdout.log",
            stderr=attempt_dir / "stderr.log",
        )
        try:
            box = load_sandbox_runtime(plan.get("runtime")).start(spec)
        except Exception as e:  # noqa: BLE001 - any start failure ends the attempt, not the scheduler
            with (attempt_dir / "stderr.log").open("a") as log:
                log.write(f"lakeward: cannot start: {e}\n")
            if remote:
                _sync_logs(attempt_dir, location)
            # Our own errors already say what is wrong and what to do; others name their type.
            said = str(e) if isinstance(e, LakeError) else f"{type(e).__name__}: {e}"
            result.update(start_error=said, started_at=t0, ended_at=time.time())
            return result
        started = time.time()
        result.update(started_at=started, sandbox_pid=box.pid)
        with contextlib.suppress(Exception):  # a store hiccup must not kill a running job
            _mark_running(
                plan["store_url"],
                plan["job_id"],
                plan["attempt"],
                node=result["node"],
                worker_pid=os.getpid(),
                sandbox_pid=box.pid,
                scratch=str(scratch),
                started_at=started,
            )
        status, stop, notice_at = _watch(
            box, plan, attempt_dir, location, started, local_ckpt, ckpt_store
        )
        ended = time.time()
        if ckpt_store is not None:
            checkpoints.save(local_ckpt, ckpt_store)
        if remote:
            _sync_logs(attempt_dir, location)
            if (attempt_dir / "output").is_dir():
                storage.upload_tree(str(attempt_dir / "output"), storage.join(location, "output"))
        result.update(
            code=status.code,
            signal=status.signal,
            runtime_reason=status.reason,
            stop=stop,
            notice_at=notice_at,
            ended_at=ended,
            last_checkpoint=checkpoints.newest_mtime(local_ckpt),
        )
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _sync_logs(attempt_dir: Path, location: str) -> None:
    """Upload the attempt's logs as they are now (best effort: the next sync or the end
    catches up)."""
    for name in ("stdout.log", "stderr.log"):
        path = attempt_dir / name
        if path.is_file():
            with contextlib.suppress(OSError):
                storage.upload(str(path), storage.join(location, name))


def _watch(
    box: Any,
    plan: dict[str, Any],
    attempt_dir: Path,
    location: str,
    started: float,
    local_ckpt: Path,
    ckpt_store: str | None,
) -> tuple[ExitStatus, str | None, float | None]:
    timeout = plan.get("timeout_s")
    grace = float(plan.get("grace_s", 2.0))
    poll = float(plan.get("poll_s", 0.02))
    remote = storage.is_remote(location)
    control_at = synced_at = 0.0
    while True:
        status = box.wait(timeout=poll)
        if status is not None:
            return status, None, None
        now = time.time()
        if remote and now - synced_at >= LOG_SYNC_S:
            synced_at = now
            _sync_logs(attempt_dir, location)
        if remote and now - control_at < CONTROL_POLL_S:
            stop = None
        else:
            control_at = now
            stop = read_control(location)
        if stop is None and timeout is not None and time.time() - started >= timeout:
            stop = "TIMEOUT"
        if stop is None:
            continue
        notice = time.time()
        with contextlib.suppress(ProcessLookupError, OSError):
            box.signal(signal.SIGTERM)
        if stop == "INTERRUPT" and ckpt_store is not None:
            checkpoints.save(local_ckpt, ckpt_store)
        if stop == "STOP":
            grace = min(grace, 1.0)  # the scheduler is shutting down; it waits only briefly
        status = box.wait(timeout=max(0.0, notice + grace - time.time()))
        if status is None:
            box.kill()
            status = box.wait(timeout=30)
            if status is None:
                status = ExitStatus(None, signal.SIGKILL, "KILLED")
        return status, stop, notice
