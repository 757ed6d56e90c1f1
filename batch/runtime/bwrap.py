"""The default sandbox: rootless bubblewrap.

Isolation: new user (when possible), pid, ipc, uts, mount, cgroup and network namespaces (with
network=True, user-mode networking that cannot reach the host's loopback), a read-only root assembled from the image, private /tmp, /proc and /dev, the /opt/ml binds.

Limits: a delegated cgroup v2 (memory.max, cpu.max, OOM from memory.events) when one is writable;
otherwise RLIMIT_DATA for memory, CPU affinity (exclusive CPUs claimed with file locks) and nice.
The limits are applied while bwrap waits on `--block-fd`, so the job's process inherits them.

OOM: with a cgroup, memory.events' oom_kill. Without one, RLIMIT_DATA makes allocations fail; a
sitecustomize put on the PYTHONPATH of memory-limited sandboxes reports an uncaught MemoryError
through a pipe (non-Python jobs that die of a failed allocation end EXIT_CODE/KILLED).

Signals: bwrap's pid 1 forwards nothing, so `signal()` goes straight to the job's main process
(pid 1's first child) through a pidfd; `kill()` SIGKILLs pid 1, which ends the whole namespace.
Exit: bwrap reports a job killed by signal N as exit code 128+N (bash's convention), which we
read back as a signal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import itertools
import json
import math
import os
import py_compile
import queue
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from batch.runtime.base import ExitStatus, Mount, Runtime, Sandbox, SandboxSpec
from batch.runtime.images import Image, hold, resolve_image
from catalog.errors import JobError

CODE_DIR = "/opt/ml/code"
STATE_DIR = "/run/lakeward"  # holds the sitecustomize of memory-limited sandboxes
EXEC_FAILED = 127  # the code reported when the command never started (as docker does)
_FRESH = ("/proc", "/dev", "/tmp", "/sys")  # never taken from the image
_NAMESPACES = [
    "--unshare-user-try",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
]

# Imported by every Python inside a memory-limited sandbox without a cgroup: an uncaught
# MemoryError (what RLIMIT_DATA produces) is written to a pipe the runtime reads at the end.
# Which fd the pipe is comes from a file beside this module (not the job's environment); the
# pipe is checked by identity, since a child process may hold another file at that number.
SITECUSTOMIZE = '''\
"""Lakeward sandbox hook: report an uncaught MemoryError so the runtime says OOM."""
import os
import sys


def _lakeward_install():
    here = os.path.dirname(os.path.abspath(__file__))
    while here in sys.path:
        sys.path.remove(here)
    try:
        with open(os.path.join(here, "oom")) as f:
            fd_text, ident = f.read().split()
        fd = int(fd_text)
    except (OSError, ValueError):
        fd, ident = -1, ""

    def ours():
        try:
            st = os.fstat(fd)
        except OSError:
            return False
        return "%d:%d" % (st.st_dev, st.st_ino) == ident

    previous = sys.excepthook

    def hook(kind, value, tb):
        if isinstance(value, MemoryError) and ours():
            try:
                os.write(fd, b"M")
            except OSError:
                pass
        previous(kind, value, tb)

    sys.excepthook = hook
    # then run the image's own sitecustomize, which this module shadows
    me = sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # noqa: F401
    except ImportError:
        if me is not None:
            sys.modules["sitecustomize"] = me


_lakeward_install()
'''


@functools.cache
def _site_files() -> list[tuple[bytes, str]]:
    """SITECUSTOMIZE, plus its bytecode for this interpreter: the folder is read-only, so
    without it every Python start would compile the source again (~1 ms)."""
    source = SITECUSTOMIZE.encode()
    files = [(source, f"{STATE_DIR}/sitecustomize.py")]
    tag = sys.implementation.cache_tag
    if tag:
        with tempfile.TemporaryDirectory() as tmp:
            src, pyc = Path(tmp) / "sitecustomize.py", Path(tmp) / "sitecustomize.pyc"
            src.write_bytes(source)
            # unchecked: the copy inside has another mtime, and its content is ours anyway
            mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
            py_compile.compile(str(src), str(pyc), doraise=True, invalidation_mode=mode)
            files.append((pyc.read_bytes(), f"{STATE_DIR}/__pycache__/sitecustomize.{tag}.pyc"))
    return files


class BwrapRuntime(Runtime):
    """Starts sandboxes with bubblewrap; `cache_dir` holds unpacked OCI images."""

    name = "bwrap"

    def __init__(self, cache_dir: Path | None = None, nice: int = 5, pin_cpus: bool = True):
        self.cache_dir = cache_dir
        self.nice = nice  # batch work yields to the node's control plane (scheduler, raylet)
        self.pin_cpus = pin_cpus
        self.bwrap = shutil.which("bwrap")

    @classmethod
    def available(cls) -> bool:
        """True if bwrap is installed and can create the namespaces we use."""
        return _probe()

    def start(self, spec: SandboxSpec) -> BwrapSandbox:
        """Start `spec.command` in a new sandbox; JobError if the spec or the host is unfit."""
        if self.bwrap is None:
            raise JobError(unavailable() or "bubblewrap (bwrap) is not installed")
        validate_spec(spec)
        image = resolve_image(spec.image, self.cache_dir)
        check_command(spec, image, build_env(spec, image))
        held = hold(image)
        cgroup = _Cgroup.create(spec)
        rlimit = spec.memory_bytes if cgroup is None else None
        cpus = None if cgroup is not None or not self.pin_cpus else _claim_cpus(spec.cpus)
        ours: list[int] = []  # our ends of the pipes
        theirs: list[int] = []  # bwrap's ends, closed here once it has them
        try:
            status_r, status_w = _pipe(ours, theirs)
            block_r, block_w = _pipe(ours, theirs, bwrap_reads=True)
            oom_r = None
            site: list[tuple[int, str]] = []  # (fd bwrap copies from, file inside)
            if rlimit:
                oom_r, oom_w = _pipe(ours, theirs)
                st = os.fstat(oom_w)
                oom_file = (f"{oom_w} {st.st_dev}:{st.st_ino}\n".encode(), f"{STATE_DIR}/oom")
                for data, dest in [*_site_files(), oom_file]:
                    r, w = _pipe(ours, theirs, bwrap_reads=True)
                    os.write(w, data)  # far below a pipe's capacity
                    ours.remove(w)
                    os.close(w)
                    site.append((r, dest))
            env = build_env(spec, image, oom_hook=bool(rlimit))
            argv = build_argv(spec, image, status_fd=status_w, block_fd=block_r, site=site)
            proc = _popen([self.bwrap, *argv], env, spec, theirs)
        except BaseException:
            for fd in ours:
                os.close(fd)
            _cleanup(cgroup, cpus)
            if held is not None:
                os.close(held)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        try:
            box = BwrapSandbox(proc, status_r, oom_r, spec, cgroup, cpus, held)
        except JobError:
            os.close(block_w)
            raise
        if spec.network:
            try:
                box._network = _Network.attach(box.init_pid)
            except JobError:
                box.kill()
                box.wait()
                os.close(block_w)
                raise
        box._release(block_w, rlimit, None if cpus is None else cpus[0], self.nice)
        return box


def _pipe(ours: list[int], theirs: list[int], *, bwrap_reads: bool = False) -> tuple[int, int]:
    """A pipe (read end, write end); bwrap gets the write end, or the read end if it reads."""
    r, w = os.pipe()
    mine, its = (w, r) if bwrap_reads else (r, w)
    ours.append(mine)
    theirs.append(its)
    return r, w


def _popen(argv: list[str], env: dict[str, str], spec: SandboxSpec, fds: list[int]):
    out = open(spec.stdout, "ab") if spec.stdout else subprocess.DEVNULL  # noqa: SIM115
    err = open(spec.stderr, "ab") if spec.stderr else subprocess.DEVNULL  # noqa: SIM115
    try:
        return _spawner.popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, pass_fds=fds
        )
    except OSError as e:
        raise JobError(f"cannot run bwrap: {e}") from e
    finally:
        for f in (out, err):
            if f is not subprocess.DEVNULL:
                f.close()


class _Spawner:
    """Forks bwrap from a thread that lives as long as the process.

    --die-with-parent is PR_SET_PDEATHSIG, which fires when the *thread* that forked bwrap
    exits; a sandbox started from a short-lived thread would die with that thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pid = 0  # the process that owns the thread (a fork has none)

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        if threading.current_thread() is threading.main_thread():
            return subprocess.Popen(argv, **kw)  # the main thread ends with the process
        with self._lock:
            if self._pid != os.getpid():
                threading.Thread(target=self._serve, name="lakeward-bwrap", daemon=True).start()
                self._pid = os.getpid()
        done: Future = Future()
        self._queue.put((done, argv, kw))
        return done.result()

    def _serve(self) -> None:
        while True:
            done, argv, kw = self._queue.get()
            try:
                done.set_result(subprocess.Popen(argv, **kw))
            except BaseException as e:  # handed to the caller
                done.set_exception(e)


_spawner = _Spawner()


class BwrapSandbox(Sandbox):
    """A running bubblewrap sandbox: `pid` is bwrap's, `init_pid` the namespace's pid 1."""

    def __init__(
        self,
        proc: subprocess.Popen,
        status_fd: int,
        oom_fd: int | None,
        spec: SandboxSpec,
        cgroup: _Cgroup | None,
        cpus: tuple[list[int], list[int]] | None,
        image_fd: int | None = None,
    ):
        self.pid = proc.pid
        self._image_fd = image_fd  # holds the unpacked image while the sandbox lives
        self.spec = spec
        self.cpus = None if cpus is None else list(cpus[0])  # pinned CPUs, if any
        self.cgroup = None if cgroup is None else cgroup.path
        self._proc, self._status_fd, self._oom_fd = proc, status_fd, oom_fd
        self._cgroup, self._cpu_locks = cgroup, cpus
        self._lock = threading.RLock()  # the pidfds are closed at the end; never signal a reused fd
        self._result: ExitStatus | None = None
        self._sent: set[int] = set()
        self._job_fd: int | None = None
        self._job_pid: int | None = None
        self._init_fd: int | None = None
        self._network: _Network | None = None
        self.init_pid = self._read_child_pid()

    def _read_child_pid(self) -> int:
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = os.read(self._status_fd, 4096)
            if not chunk:
                rc = self._proc.wait()
                self._close_fds()
                _cleanup(self._cgroup, self._cpu_locks)
                where = f"; see {self.spec.stderr}" if self.spec.stderr else ""
                raise JobError(f"bwrap could not create the sandbox (exit {rc}){where}")
            buf += chunk
        pid = int(json.loads(buf)["child-pid"])
        with contextlib.suppress(OSError):
            self._init_fd = os.pidfd_open(pid)  # immune to pid reuse once the sandbox ends
        return pid

    def _release(self, block_fd: int, rlimit: int | None, cpus: list[int] | None, nice: int):
        """Apply the limits to the sandbox's pid 1, then let it start the job (which inherits)."""
        try:
            if self._cgroup is not None:
                self._cgroup.add(self.init_pid)
            if rlimit:
                resource.prlimit(self.init_pid, resource.RLIMIT_DATA, (rlimit, rlimit))
            if cpus:
                os.sched_setaffinity(self.init_pid, cpus)
            if nice:
                os.setpriority(os.PRIO_PROCESS, self.init_pid, nice)
        except OSError as e:
            self.kill()
            self.wait()
            os.close(block_fd)
            raise JobError(f"cannot apply the sandbox limits: {e}") from e
        try:
            os.write(block_fd, b"1")
        except BrokenPipeError:
            pass  # bwrap failed during setup; wait() reports it
        finally:
            os.close(block_fd)

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """Wait for the end: SUCCEEDED, EXIT_CODE, OOM or KILLED (None if still running).

        OOM is: the cgroup's memory.events counted an oom_kill; or, without a cgroup, a Python
        process died of an uncaught MemoryError (RLIMIT_DATA refused an allocation; the injected
        sitecustomize tells us through a pipe).
        A command that never started (exec or setup failure) ends EXIT_CODE 127.
        """
        try:
            rc = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        with self._lock:
            if self._result is None:
                self._result = self._finish(rc)
            return self._result

    def _finish(self, rc: int) -> ExitStatus:
        # bwrap has ended, however it ended (killed itself, say): nothing of its sandbox may
        # outlive it. SIGKILL to the namespace's pid 1 ends every process in it.
        if self._init_fd is not None:
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self._init_fd, signal.SIGKILL)
        if self._cgroup is not None:
            self._cgroup.kill()
        started = b'"exit-code"' in _drain(self._status_fd)
        if self._cgroup is not None:
            oom = self._cgroup.oom_killed()
        else:
            oom = self._oom_fd is not None and bool(_drain(self._oom_fd))
        self._close_fds()
        _cleanup(self._cgroup, self._cpu_locks)
        return exit_status(rc, started=started, oom=oom, sent=self._sent)

    def _close_fds(self) -> None:
        if self._network is not None:
            self._network.stop()
            self._network = None
        for fd in (self._status_fd, self._oom_fd, self._job_fd, self._init_fd, self._image_fd):
            if fd is not None:
                os.close(fd)
        self._status_fd = self._oom_fd = self._job_fd = self._init_fd = self._image_fd = None

    def signal(self, sig: int) -> None:
        """Deliver `sig` to the job's main process (bwrap's pid 1 forwards nothing)."""
        with self._lock:
            fd = self._job_pidfd()
            if fd is None:
                return  # it has ended (or never started)
            self._sent.add(sig)
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, sig)

    def kill(self) -> None:
        """SIGKILL the sandbox's pid 1; the kernel then kills every process in its namespace."""
        with self._lock, contextlib.suppress(ProcessLookupError, OSError):
            if self._result is not None:
                return
            self._sent.add(signal.SIGKILL)
            if self._init_fd is not None:
                signal.pidfd_send_signal(self._init_fd, signal.SIGKILL)
            else:
                os.kill(self.init_pid, signal.SIGKILL)
        if self._cgroup is not None:
            self._cgroup.kill()

    def job_pid(self) -> int | None:
        """The host pid of the job's main process (None once it has ended)."""
        with self._lock:
            return self._job_pid if self._job_pidfd() is not None else None

    def _job_pidfd(self) -> int | None:
        """A pidfd for the job's main process: the first child of the namespace's pid 1."""
        with self._lock:
            if self._job_fd is not None or self._result is not None:
                return self._job_fd
            deadline = time.monotonic() + 2.0
            while self._proc.poll() is None and time.monotonic() < deadline:
                pid = _first_child(self.init_pid)
                if pid is not None:
                    try:
                        fd = os.pidfd_open(pid)
                    except ProcessLookupError:
                        continue
                    if _ppid(pid) == self.init_pid:  # still that process: the fd is safe
                        self._job_fd, self._job_pid = fd, pid
                        return fd
                    os.close(fd)
                time.sleep(0.001)  # bwrap forks the job right after the limits are set
            return None


class _Network:
    """User-mode networking (slirp4netns) for a sandbox's network namespace: outbound
    connections through the host, but never to the host's loopback (where Ray, the metadata
    store and the server's internals listen)."""

    def __init__(self, proc: subprocess.Popen, exit_w: int):
        self._proc, self._exit_w = proc, exit_w

    @classmethod
    def attach(cls, pid: int, timeout_s: float = 10.0) -> _Network:
        exe = shutil.which("slirp4netns")
        if exe is None:
            raise JobError("network=True needs slirp4netns: apt-get install slirp4netns")
        _wait_loopback(pid)
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        argv = [
            exe,
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            f"--ready-fd={ready_w}",
            f"--exit-fd={exit_r}",
        ]
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino:
                argv.append(f"--userns-path=/proc/{pid}/ns/user")
        argv += [str(pid), "tap0"]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(ready_w, exit_r),
            )
        except OSError as e:
            for fd in (ready_r, ready_w, exit_r, exit_w):
                os.close(fd)
            raise JobError(f"cannot start slirp4netns: {e}") from e
        os.close(ready_w)
        os.close(exit_r)
        net = cls(proc, exit_w)
        try:
            ready, _, _ = select.select([ready_r], [], [], timeout_s)
            if not ready or os.read(ready_r, 1) != b"1":
                detail = b""
                if proc.poll() is not None and proc.stderr is not None:
                    detail = proc.stderr.read()[-300:]
                net.stop()
                raise JobError(
                    f"the sandbox's network did not come up {detail.decode(errors='replace')}"
                )
        finally:
            os.close(ready_r)
        return net

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._exit_w)  # slirp4netns exits when this closes
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stderr is not None:
            self._proc.stderr.close()


def _wait_loopback(pid: int, timeout_s: float = 3.0) -> None:
    """Wait until bwrap has set up the namespace's loopback (its local route exists): doing
    it concurrently with slirp4netns's own setup fails bwrap's netlink request."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if "127.0.0.1" in Path(f"/proc/{pid}/net/fib_trie").read_text():
                return
        except OSError:
            return  # gone already: wait() will tell
        time.sleep(0.002)


def _drain(fd: int | None) -> bytes:
    """What is left in a pipe whose writers have exited (never blocks)."""
    if fd is None:
        return b""
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 4096):
            data += chunk
    return data


def exit_status(rc: int, *, started: bool, oom: bool, sent: set[int]) -> ExitStatus:
    """Map bwrap's exit code (128+N for signal N) and what we know to an ExitStatus.

    `started`: the command was exec'd; `oom`: the memory limit ended it; `sent`: the signals
    the runtime delivered.
    """
    sig: int | None = None
    if rc < 0:
        sig = -rc  # bwrap itself was killed
    elif 128 < rc <= 128 + 64 and (started or rc - 128 in sent):
        sig = rc - 128  # (a signal we sent may land between bwrap's fork and the exec)
    elif not started:
        sig, rc = (signal.SIGKILL, rc) if signal.SIGKILL in sent else (None, EXEC_FAILED)
    code = None if sig is not None else rc
    if oom:
        return ExitStatus(code, sig, "OOM")
    if sig is not None:
        return ExitStatus(None, sig, "KILLED")
    return ExitStatus(code, None, "SUCCEEDED" if code == 0 else "EXIT_CODE")


def validate_spec(spec: SandboxSpec) -> None:
    """Reject a spec that cannot run, with a message saying what to fix."""
    if not spec.command or not all(isinstance(a, str) for a in spec.command):
        raise JobError(f"command must be a non-empty list of strings, got {spec.command!r}")
    if not spec.cpus or spec.cpus <= 0:
        raise JobError(f"cpus must be > 0, got {spec.cpus!r}")
    if spec.memory_bytes is not None and spec.memory_bytes <= 0:
        raise JobError(f"memory must be > 0 bytes, got {spec.memory_bytes!r}")
    if spec.workdir is not None and not Path(spec.workdir).is_dir():
        raise JobError(f"workdir {str(spec.workdir)!r} is not a folder")
    for key, value in spec.env.items():
        if not key or "=" in key or "\0" in key or "\0" in str(value):
            raise JobError(f"bad environment variable {key!r}")
    targets = [CODE_DIR, STATE_DIR]
    for m in spec.mounts:
        if not Path(m.source).exists():
            raise JobError(f"mount source {str(m.source)!r} does not exist")
        t = m.target
        if not t.startswith("/") or os.path.normpath(t) != t or t == "/":
            raise JobError(f"mount target {t!r} must be a normalized absolute path below /")
        if any(t == p or t.startswith(p + "/") for p in (*_FRESH[:2], STATE_DIR)):
            raise JobError(f"mount target {t!r} is reserved")
        if t in targets:
            raise JobError(f"two mounts at {t!r}")
        targets.append(t)


def build_env(spec: SandboxSpec, image: Image, *, oom_hook: bool = False) -> dict[str, str]:
    """The job's whole environment: the image's, HOME=/tmp, then spec.env on top. Nothing of
    the runtime's own leaks in: with `oom_hook` only PYTHONPATH gains the hook's folder."""
    env = {**image.env, "HOME": "/tmp"}
    user = {k: str(v) for k, v in spec.env.items()}
    if oom_hook:
        pythonpath = user.pop("PYTHONPATH", None) or env.get("PYTHONPATH")
        env["PYTHONPATH"] = STATE_DIR + (f":{pythonpath}" if pythonpath else "")
    env.update(user)
    return env


def build_argv(
    spec: SandboxSpec,
    image: Image,
    *,
    status_fd: int,
    block_fd: int,
    site: list[tuple[int, str]] = (),
) -> list[str]:
    """bwrap's arguments (without the program name) for `spec` in `image`."""
    mounts = sorted(spec.mounts, key=lambda m: m.target.count("/"))
    targets = [CODE_DIR, *(m.target for m in mounts)]
    if site:
        targets.append(STATE_DIR)
    # Always a network namespace of its own: with network=True, user-mode networking is
    # attached to it (slirp4netns), which never reaches the host's loopback.
    argv = [*_NAMESPACES, "--unshare-net"]
    argv += ["--die-with-parent", "--new-session"]
    argv += ["--json-status-fd", str(status_fd), "--block-fd", str(block_fd)]
    # Image folders under /tmp (a checkout or venv living there) go on top of the private /tmp.
    late = [(src, dest) for src, dest in image.roots if dest == "/tmp" or dest.startswith("/tmp/")]
    argv += layout_args(
        dataclasses.replace(image, roots=tuple(r for r in image.roots if r not in late)), targets
    )
    argv += ["--proc", "/proc", "--dev", "/dev"]
    if spec.memory_bytes and "--size" in _options():
        argv += ["--size", str(spec.memory_bytes)]  # /tmp is memory; keep it inside the limit
    argv += ["--tmpfs", "/tmp"]
    for src, dest in late:
        argv += ["--ro-bind", str(src), dest]
    if spec.network and image.host:
        argv += ["--ro-bind-try", "/run/systemd/resolve", "/run/systemd/resolve"]  # resolv.conf
    if spec.workdir is not None:
        argv += ["--ro-bind", str(Path(spec.workdir).resolve()), CODE_DIR]
    else:
        argv += ["--dir", CODE_DIR]
    for fd, dest in site:
        argv += ["--ro-bind-data", str(fd), dest]
    for m in mounts:
        argv += _mount_args(m)
    argv += ["--remount-ro", "/", "--chdir", CODE_DIR, "--", *spec.command]
    return argv


def _mount_args(m: Mount) -> list[str]:
    return ["--ro-bind" if m.read_only else "--bind", str(Path(m.source).resolve()), m.target]


def layout_args(image: Image, targets: list[str]) -> list[str]:
    """Show the image read-only on bwrap's tmpfs root, leaving room for the mount targets.

    An image folder that holds (or is) a mount target is recreated as a directory and its entries
    shown one by one, so the target can be created in it; everything else is one bind.
    """
    args: list[str] = []

    def covers(dest: str) -> bool:
        prefix = dest.rstrip("/") + "/"
        return any(t == dest or t.startswith(prefix) for t in targets)

    def show(root: Path, src: Path, dest: str) -> None:
        if dest in _FRESH or dest in targets:
            return  # mounted fresh, or replaced by a mount
        if src.is_symlink():
            if not covers(dest):
                args.extend(["--symlink", os.readlink(src), dest])
                return
            src = _resolve_within(root, src, dest)
        elif not (src.is_dir() and (dest == "/" or covers(dest))):
            args.extend(["--ro-bind", str(src), dest])
            return
        if dest != "/":
            args.extend(["--dir", dest])
        for name in sorted(os.listdir(src)):
            show(root, src / name, os.path.join(dest, name))

    for src, dest in image.roots:
        show(Path("/") if image.host else src, src, dest)
    return args


def _resolve_within(root: Path, link: Path, dest: str) -> Path:
    """Follow a symlink the way it resolves inside the image (absolute = from the image root)."""
    p = link
    for _ in range(40):
        if not p.is_symlink():
            break
        target = os.readlink(p)
        p = root / target.lstrip("/") if target.startswith("/") else p.parent / target
        p = Path(os.path.normpath(p))
    if not p.is_dir() or not (p == root or root in p.parents):
        raise JobError(f"cannot mount below {dest}: it is a symlink out of the image")
    return p


def check_command(spec: SandboxSpec, image: Image, env: dict[str, str]) -> None:
    """Fail early when a bare command name is on none of the sandbox's PATH folders."""
    name = spec.command[0]
    if "/" in name:
        return  # a path: bwrap reports a missing one (exit 127)
    for folder in env.get("PATH", "").split(":"):
        host = _host_path(image, os.path.join(folder, name))
        if host is not None and os.path.lexists(host):
            return
    raise JobError(
        f"command {name!r} not found in image {image.name!r} (PATH={env.get('PATH', '')}); "
        "use a path or set PATH in env"
    )


def _host_path(image: Image, inside: str) -> str | None:
    for src, dest in image.roots:
        if dest == "/":
            return str(src) + inside
        if inside == dest or inside.startswith(dest + "/"):
            return str(src) + inside[len(dest) :]
    return None


def _first_child(pid: int) -> int | None:
    """The oldest child of `pid` (the job, not processes orphaned to pid 1 later)."""
    try:
        kids = [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        kids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == pid]
    except OSError:
        return None
    return min(kids, key=_inner_pid) if kids else None


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _inner_pid(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except OSError:
        pass
    return 1 << 30


def _probe() -> bool:
    return unavailable() is None


BWRAP_NEEDS = ("--json-status-fd", "--block-fd", "--ro-bind-data")  # bubblewrap >= 0.5
_works = False  # once bwrap worked it keeps working; a failure is checked again next time


def unavailable() -> str | None:
    """Why bwrap cannot run sandboxes here, in one line with what to do (None: it can)."""
    global _works
    if not _works:
        problem = _why_not()
        _works = problem is None
        return problem
    return None


def _why_not() -> str | None:
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    if not _options():
        _options.cache_clear()  # read before bwrap was installed
    if not set(BWRAP_NEEDS) <= _options():
        return "bubblewrap (bwrap) is too old (Lakeward needs 0.5 or later): apt-get install bubblewrap"
    argv = [exe, *_NAMESPACES, "--unshare-net", "--ro-bind", "/", "/", "--proc", "/proc"]
    try:
        done = subprocess.run(
            [*argv, "--dev", "/dev", "true"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap does not start here ({e})"
    if done.returncode == 0:
        return None
    said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    return (
        f"bwrap cannot create a sandbox here ({said}): the kernel refuses unprivileged user "
        "namespaces; allow them (sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu "
        "kernel.apparmor_restrict_unprivileged_userns=0) or use runtime 'podman'"
    )


@functools.cache
def _options() -> set[str]:
    """The options this bwrap knows (`--size` needs 0.8; the status fd 0.5)."""
    exe = shutil.which("bwrap")
    try:
        text = subprocess.run([exe or "bwrap", "--help"], capture_output=True, text=True).stdout
    except OSError:
        return set()
    return {word for word in text.split() if word.startswith("--")}


# ---- limits without a cgroup: CPU affinity --------------------------------------------------

_CPU_LOCKS = Path(tempfile.gettempdir()) / f"lakeward-cpus-{os.getuid()}"


def _claim_cpus(cpus: float) -> tuple[list[int], list[int]] | None:
    """Exclusively claim ceil(cpus) CPUs across processes: (cpus, lock fds), or None.

    Sandboxes started by different processes (Ray workers) coordinate through one lock file per
    CPU; with none free, the job runs unpinned rather than sharing a CPU another job holds.
    """
    allowed = sorted(os.sched_getaffinity(0))
    want = max(1, math.ceil(cpus))
    if want >= len(allowed):
        return None
    _CPU_LOCKS.mkdir(exist_ok=True)
    got: list[int] = []
    fds: list[int] = []
    for cpu in allowed:
        fd = os.open(_CPU_LOCKS / f"cpu{cpu}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        got.append(cpu)
        fds.append(fd)
        if len(got) == want:
            return got, fds
    for fd in fds:
        os.close(fd)
    return None


def _cleanup(cgroup: _Cgroup | None, cpus: tuple[list[int], list[int]] | None) -> None:
    if cgroup is not None:
        cgroup.remove()
    if cpus is not None:
        for fd in cpus[1]:
            with contextlib.suppress(OSError):
                os.close(fd)
        cpus[1].clear()


# ---- limits with a delegated cgroup v2 ------------------------------------------------------

_counter = itertools.count()


class _Cgroup:
    """A child cgroup for one sandbox under a delegated cgroup v2 folder."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, spec: SandboxSpec) -> _Cgroup | None:
        """A cgroup limiting `spec`'s memory and CPU, or None without a delegated cgroup."""
        parent = delegated_cgroup()
        if parent is None:
            return None
        path = parent / f"lakeward-{os.getpid()}-{next(_counter)}"
        try:
            path.mkdir()
            if spec.memory_bytes:
                (path / "memory.max").write_text(str(spec.memory_bytes))
                (path / "memory.oom.group").write_text("1")  # OOM ends the whole job
                with contextlib.suppress(OSError):
                    (path / "memory.swap.max").write_text("0")
            if (path / "cpu.max").exists():
                (path / "cpu.max").write_text(f"{max(1000, int(spec.cpus * 100_000))} 100000")
        except OSError:
            cls(path).remove()
            return None
        return cls(path)

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def oom_killed(self) -> bool:
        try:
            return oom_kills(self.path.joinpath("memory.events").read_text()) > 0
        except OSError:
            return False

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            (self.path / "cgroup.kill").write_text("1")

    def remove(self) -> None:
        for _ in range(50):  # the last processes of the namespace may still be exiting
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)


def oom_kills(memory_events: str) -> int:
    """The oom_kill counter of a cgroup v2 memory.events file."""
    for line in memory_events.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0


@functools.cache
def delegated_cgroup() -> Path | None:
    """A cgroup v2 folder we may create children in with the memory controller, if any.

    $LAKEWARD_CGROUP names one explicitly (e.g. from `systemd-run --user -p Delegate=yes`);
    otherwise our own cgroup qualifies only if it is writable and delegates `memory`.
    """
    candidates = [Path(os.environ["LAKEWARD_CGROUP"])] if os.environ.get("LAKEWARD_CGROUP") else []
    own = _own_cgroup_v2()
    if own is not None:
        candidates.append(own)
    for c in candidates:
        try:
            controllers = (c / "cgroup.subtree_control").read_text().split()
        except OSError:
            continue
        if "memory" in controllers and os.access(c, os.W_OK):
            return c
    return None


def _own_cgroup_v2() -> Path | None:
    try:
        rel = next(
            line[3:].strip()
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        )
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2" and left.split()[3] == "/":
                return Path(left.split()[4]) / rel.lstrip("/")
    except (OSError, StopIteration, IndexError):
        pass
    return None
