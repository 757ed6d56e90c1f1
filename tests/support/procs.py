"""Child processes the tests start, pause and kill, with their output collected as it comes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from support.lakes import ENV

# As a module: run as a script, its folder would come first on sys.path and support/batch.py
# would shadow the batch package.
WORKER = ["-m", "support.lease_worker"]


class Worker:
    """A lease_worker.py process whose output lines are collected as they come."""

    def __init__(self, mode: str, root: Path, arg: float | None = None, other_host: bool = False):
        cmd = [sys.executable, *WORKER, mode, str(root)] + ([str(arg)] if arg is not None else [])
        if other_host:
            cmd = ["bwrap", "--dev-bind", "/", "/", "--unshare-pid", "--proc", "/proc", *cmd]
        env = {**ENV, **{k: v for k, v in os.environ.items() if k == "LAKE_CATALOG"}}
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._eof = False
        self._new = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._new:
                self.lines.append((time.monotonic(), line.strip()))
                self._new.notify_all()
        with self._new:
            self._eof = True
            self._new.notify_all()

    def wait_line(self, prefix: str | tuple[str, ...], timeout: float = 60) -> str:
        """The first output line starting with `prefix`, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                for _, line in self.lines:
                    if line.startswith(prefix):
                        return line
                if self._eof or time.monotonic() > deadline:
                    err = self.proc.stderr.read()[-2000:] if self._eof else ""
                    raise AssertionError(f"no {prefix!r} from the worker: {self.lines} {err}")
                self._new.wait(0.2)

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def finish(self, timeout: float = 60) -> None:
        self.proc.wait(timeout)
