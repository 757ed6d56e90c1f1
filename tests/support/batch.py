"""Helpers for the batch tests (fixtures are in tests/conftest.py)."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BATCH_TOML = """\
[batch]
preempt_grace_s = 1
poll_s = 0.01

[batch.compute.on_demand]
cpus = 2

[batch.compute.spot]
cpus = 2
notice_s = 1

[batch.queues.default]
priority = 1
compute = ["spot", "on_demand"]

[batch.queues.high]
priority = 10
compute = ["on_demand"]
"""


def batch_of(lk: Any) -> Any:
    """The lake's batch jobs."""
    return lk.batch


def script(folder: Path, name: str, body: str) -> Path:
    """Write a job script into a workdir folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def wait_for(pred: Callable[[], Any], timeout: float = 30.0, every: float = 0.02) -> Any:
    """Poll `pred` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


PY = sys.executable
ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
