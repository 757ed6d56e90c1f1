"""Sandbox start overhead: a bubblewrap sandbox (host image, every namespace, limits applied)
running a trivial command vs a bare fork+exec+wait of the same command; p50 of each, and their
difference (goal <= 5 ms)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, p50, report  # noqa: E402

from batch.runtime.base import SandboxSpec  # noqa: E402
from batch.runtime.bwrap import BwrapRuntime  # noqa: E402

GOAL_MS = 5.0


def main(repeat: int = 100) -> list[dict]:
    rt = BwrapRuntime()
    cases = [
        ("/bin/true", [shutil.which("true") or "/bin/true"], repeat),
        ("python -c pass", [sys.executable, "-c", "pass"], max(10, repeat // 4)),
    ]
    out = []
    for label, argv, n in cases:
        spec = SandboxSpec([*argv], cpus=1, memory_bytes=1 << 30)

        def ours(spec: SandboxSpec = spec) -> None:
            rt.start(spec).wait()

        def raw(argv: list[str] = argv) -> None:
            subprocess.run(argv, check=True)

        ta, tb = interleaved(ours, raw, n, warmup=3)
        row = report(
            f"sandbox start+exit {label} / bare fork+exec",
            p50(ta),
            p50(tb),
            f"overhead <= {GOAL_MS:g} ms",
        )
        row["overhead_ms"] = row["ours_ms"] - row["raw_ms"]
        print(f"{'':<52} overhead {row['overhead_ms']:.2f} ms", flush=True)
        out.append(row)
    return out


if __name__ == "__main__":
    main()
