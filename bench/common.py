"""Shared helpers for the benchmarks: timing and a result line format."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import lake


def timed(fn: Callable[[], object], repeat: int, warmup: int = 2) -> list[float]:
    """Wall-clock seconds of `repeat` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def interleaved(
    a: Callable[[], object], b: Callable[[], object], repeat: int, warmup: int = 2
) -> tuple[list[float], list[float]]:
    """Time a and b alternately, so drift in the machine hits both alike."""
    for _ in range(warmup):
        a()
        b()
    ta, tb = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t)
    return ta, tb


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def report(name: str, ours: float, raw: float, goal: str, unit: str = "ms") -> dict:
    """Print one line: both medians and their ratio, and return it as a dict."""
    ratio = ours / raw if raw else float("inf")
    print(
        f"{name:<52} ours {ours * 1000:9.2f} {unit}  raw {raw * 1000:9.2f} {unit}  "
        f"ratio {ratio:6.2f}  (goal {goal})",
        flush=True,
    )
    return {
        "benchmark": name,
        "ours_ms": ours * 1000,
        "raw_ms": raw * 1000,
        "ratio": ratio,
        "goal": goal,
    }


QUIET_TOML = """\
# A benchmark measures what it sets up: nothing runs in the background unless it starts it.
[catalog]
auto_compact = false
"""


def quiet_lake(root: Path, extra_toml: str = "") -> lake.Lake:
    """A lake whose background compaction is off (a benchmark starts its own where it wants it)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "lake.toml").write_text(QUIET_TOML + extra_toml)
    return lake.connect(root)
