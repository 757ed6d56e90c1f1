"""Cold start: one-shot `lake` commands on a small lake vs a bare Python that only imports the
libraries they stand on (duckdb, pyarrow, deltalake, sqlglot, casbin, sqlalchemy), each a new
process, run alternately in one run. Goal: p50 <= 1.3x the bare import.

The project is byte-compiled first, as installing it does: the libraries on the bare side are
(pip writes their .pyc files), and with PYTHONDONTWRITEBYTECODE set (as on the reference
machine) an editable checkout would otherwise compile every module of its own from source on
every command.
"""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from common import p50  # noqa: E402

import lake  # noqa: E402

GOAL = 1.3
BARE = "import duckdb, pyarrow, deltalake, sqlglot, casbin, sqlalchemy"
COMMANDS = {
    "lake table list": ["table", "list"],
    "lake table describe": ["table", "describe", "s.t"],
    "lake sql": ["sql", "SELECT count(*) AS n, sum(v) AS s FROM s.t"],
    "lake sql, WHERE": ["sql", "SELECT count(*) AS n FROM s.t WHERE id < {i}"],
}
REPO = Path(__file__).resolve().parents[1]


def _lake_exe() -> str:
    exe = Path(sys.executable).with_name("lake")
    return str(exe) if exe.exists() else "lake"


def build(root: Path) -> None:
    """A small lake: `lake init`'s starter policy, one table of 1,000 rows."""
    subprocess.run(
        [_lake_exe(), "init", str(root), "--admin", "bench"], check=True, capture_output=True
    )
    with lake.connect(root) as lk:
        lk.catalog.create_database("s")
        lk.catalog.create_table("s.t", pa.schema([("id", pa.int64()), ("v", pa.float64())]))
        lk.write("s.t", pa.table({"id": range(1000), "v": [0.5] * 1000}), user="bench")


def _run(argv: list[str], env: dict[str, str], i: int = 0) -> float:
    # {i}: a query text of its own each run (nothing a cache kept from an earlier run helps).
    argv = [a.replace("{i}", str(100 + i)) for a in argv]
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env, timeout=120)
    return time.perf_counter() - t


def byte_compile() -> None:
    """Write the project's .pyc files, as `pip install` does for the libraries."""
    for pkg in ("lake", "catalog", "governance", "batch"):
        compileall.compile_dir(REPO / pkg, quiet=1)


def main(repeat: int = 15) -> list[dict]:
    byte_compile()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lake"
        build(root)
        env = {**os.environ, "LAKE_ROOT": str(root), "LAKE_USER": "bench"}
        runs = {"bare import": [sys.executable, "-c", BARE]}
        runs |= {name: [_lake_exe(), *args] for name, args in COMMANDS.items()}
        times: dict[str, list[float]] = {name: [] for name in runs}
        for argv in runs.values():
            _run(argv, env)  # warm the page cache
        for i in range(repeat):
            for name, argv in runs.items():
                times[name].append(_run(argv, env, i))
        bare = p50(times["bare import"])
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'bare import':<24} p50 {bare * 1000:7.0f} ms")
        out = []
        for name in COMMANDS:
            t = p50(times[name])
            print(
                f"{name:<24} p50 {t * 1000:7.0f} ms  ratio {t / bare:5.2f}  (goal <= {GOAL})",
                flush=True,
            )
            out.append(
                {
                    "benchmark": f"cold start {name} / bare import",
                    "ours_ms": t * 1000,
                    "raw_ms": bare * 1000,
                    "ratio": t / bare,
                    "goal": f"<= {GOAL}",
                }
            )
        return out


if __name__ == "__main__":
    main()
