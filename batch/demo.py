"""The batch part of `lake demo`: a checkpointing job on spot compute is interrupted, resumes
from its checkpoint and commits its output exactly once."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from batch.api import Batch

TRAIN = """\
import json, os, signal, sys, time
import pyarrow as pa, pyarrow.parquet as pq

ck = "/opt/ml/checkpoints/state.json"
state = json.load(open(ck)) if os.path.exists(ck) else {"step": 0, "loss": []}
if state["step"]:
    print(f"resuming from checkpoint at step {state['step']}", flush=True)

def save():
    with open(ck + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(ck + ".tmp", ck)

signal.signal(signal.SIGTERM, lambda *_: (save(), print("notice: checkpointed", flush=True), sys.exit(0)))
while state["step"] < 40:
    time.sleep(0.05)
    state["step"] += 1
    state["loss"].append(round(1.0 / state["step"], 6))
    if state["step"] % 10 == 0:
        save()
        print(f"step {state['step']}: checkpoint saved", flush=True)
t = pa.table({"step": list(range(1, 41)), "loss": state["loss"]})
pq.write_table(t, "/opt/ml/output/losses/part-0.parquet")
print("training done", flush=True)
"""

SCHEMA = pa.schema([("step", pa.int64()), ("loss", pa.float64())])


def run_spot_demo(
    batch: Batch,
    catalog: Any,
    sql: Callable[[str, str], pa.Table],
    *,
    user: str = "etl",
    table: str = "ml.losses",
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Submit a checkpointing job to spot compute, interrupt it, and show it resume and commit."""
    db = table.split(".")[0]
    catalog.create_database(db, "Batch job outputs", exist_ok=True)
    catalog.create_table(
        table, SCHEMA, description="Written by the demo's batch job", exist_ok=True
    )
    # The job's code: a local folder (submitting copies it into an object-store root).
    base = tempfile.gettempdir() if batch.paths.remote else batch.paths.base
    code = Path(base) / "lakeward-demo" if batch.paths.remote else Path(base) / "demo"
    code.mkdir(parents=True, exist_ok=True)
    (code / "train.py").write_text(TRAIN)
    job = batch.submit(
        ["python", "train.py"],
        user=user,
        workdir=code,
        spot=True,
        checkpoint=True,
        outputs={"losses": table},
        name="demo-train",
    )
    say(f"submitted {job.id} to spot compute (checkpointing to /opt/ml/checkpoints)")
    deadline = time.monotonic() + 120
    while "step 20:" not in job.logs() and time.monotonic() < deadline:
        if job.status in ("SUCCEEDED", "FAILED", "CANCELLED"):  # e.g. it could not start
            say(f"{job.id} {job.status}: {job.status_reason}")
            return {"job": job.id, "status": job.status, "rows": 0, "goodput": 0.0}
        time.sleep(0.05)
    batch.interrupt(job.id)
    say("spot interruption delivered: SIGTERM, grace, SIGKILL; the job is requeued")
    status = job.wait(timeout=120)
    for a in job.attempts:
        say(f"  attempt {a.number} on {a.compute}: {a.reason} after {a.duration_s or 0:.2f} s")
    rows = sql(f"SELECT count(*) AS n FROM {table}", user).to_pylist()[0]["n"]
    goodput = job.goodput or 0.0
    say(f"{job.id} {status}: goodput {goodput:.0%}, {rows} rows committed to {table} (once)")
    return {"job": job.id, "status": status, "rows": rows, "goodput": goodput}
