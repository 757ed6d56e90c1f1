"""The README runs as written: its shell blocks, pasted into bash in a fresh folder, succeed.

Every ```sh block outside "Quick start" (whose `make demo` / `make test` are the Makefile's, run
by CI and by test_cli's demo test) is run verbatim, in document order, in one bash with
`set -euo pipefail`, with the project's `lake` first on PATH and 80 columns.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SHELLS = {"sh", "bash", "shell", "console"}
SKIPPED_SECTIONS = {"Quick start"}

pytestmark = pytest.mark.slow  # one process per command: ~20 commands


def shell_blocks(text: str) -> list[tuple[str, str]]:
    """(section heading, block text) of every shell block, in order."""
    blocks = []
    section = ""
    fence = re.compile(r"^```(\w*)\s*$")
    lines = iter(text.splitlines())
    for ln in lines:
        if ln.startswith("## "):
            section = ln[3:].strip()
        m = fence.match(ln)
        if not m:
            continue
        body = []
        for inner in lines:
            if inner.startswith("```"):
                break
            body.append(inner)
        if m.group(1) in SHELLS:
            blocks.append((section, "\n".join(body)))
    return blocks


def _stop_left_behind(folder: Path) -> None:
    for proc in psutil.process_iter(["cwd"]):
        cwd = proc.info.get("cwd") or ""
        if cwd == str(folder) or cwd.startswith(f"{folder}/"):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def test_readme_shell_blocks_are_found():
    sections = [s for s, _ in shell_blocks(README.read_text())]
    assert "Command line" in sections and "Quick start" in sections


def test_readme_runs_verbatim(tmp_path):
    blocks = [b for s, b in shell_blocks(README.read_text()) if s not in SKIPPED_SECTIONS]
    script = "set -euo pipefail\n" + "\n".join(blocks) + "\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKE_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        COLUMNS="80",
        HOME=str(tmp_path),  # nothing of the developer's own caches or config
    )
    try:
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=280,
        )
    finally:
        _stop_left_behind(tmp_path)  # e.g. the README's `lake serve --background`, on failure
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Traceback" not in out and "Error" not in out, out
    # alice was granted in the README, and sees the rows it loaded
    assert re.search(r"eu\s.*\s2\s", done.stdout) and "us" in done.stdout, done.stdout
