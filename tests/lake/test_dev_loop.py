"""The contributor's loop: the project's pytest configuration fails a run whose worker dies
(instead of hanging without a summary), and `make test-fast` selects only the pure tests."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.chaos
def test_a_dead_worker_fails_the_run(tmp_path):
    (tmp_path / "test_dies.py").write_text(
        textwrap.dedent(
            """
            import os, signal, time

            def test_killed():
                os.kill(os.getpid(), signal.SIGKILL)  # the worker dies, as one did at 94%

            def test_others():
                for _ in range(20):
                    time.sleep(0.05)
            """
        )
    )
    (tmp_path / "test_more.py").write_text("def test_fine():\n    assert True\n")
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-c",
            str(REPO / "pyproject.toml"),  # the project's configuration, nothing else
            "--rootdir",
            str(tmp_path),
            "-n",
            "2",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    took = time.monotonic() - started
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "crashed while running 'test_dies.py::test_killed'" in out, out
    assert "Replacing crashed worker" not in out  # --max-worker-restart=0: no new worker
    assert re.search(r"^1 failed.* in [\d.]+s$", out, re.M), out  # and a summary
    assert took < 120, f"the run took {took:.0f} s after a worker died"


def test_fast_selection_leaves_out_marked_tests():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not slow and not ray and not sandbox and not chaos",
            "tests",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listed = done.stdout
    for heavy in ("test_sandbox.py", "test_crash.py", "test_readme.py", "test_batch.py:"):
        assert heavy not in listed, heavy
    assert "test_policy_check.py" in listed and "test_cli.py" in listed
    makefile = (REPO / "Makefile").read_text()
    assert '-m "not slow and not ray and not sandbox and not chaos"' in makefile
