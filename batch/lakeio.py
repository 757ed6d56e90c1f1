"""Jobs and lake tables: governed input snapshots and output files, through the lake port."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch.port import LakePort


def app_id(job_id: str) -> str:
    """The Delta application-transaction id that makes a job's output commit idempotent."""
    return f"lakeward.job.{job_id}"


def materialize_inputs(
    port: LakePort, user: str | None, inputs: dict[str, str], dest: Path
) -> list[tuple[str, str, int]]:
    """Snapshot each input table as `user` (governance applies) into dest/NAME/*.parquet.

    Returns [(name, table, version)] so lineage names exactly what the job saw; an existing
    snapshot (an earlier attempt's) is reused.
    """
    read = []
    for name, table in inputs.items():
        folder = dest / name
        marker = dest / f".{name}.version"  # beside the folder: the job sees only Parquet files
        if marker.exists() and folder.is_dir():
            read.append((name, table, int(marker.read_text())))
            continue
        result, version = port.read_input(user, table)
        tmp = dest / f".{name}.{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        pq.write_table(result, tmp / "part-00000.parquet")
        shutil.rmtree(folder, ignore_errors=True)
        os.rename(tmp, folder)
        marker.write_text(str(version))
        read.append((name, table, version))
    return read


def read_output(folder: Path) -> pa.Table | None:
    """The Parquet files a job left in one output folder, as one table (None: none)."""
    files = sorted(p for p in folder.rglob("*.parquet") if p.is_file())
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


def commit_outputs(
    port: LakePort, user: str | None, job_id: str, outputs: dict[str, str], out_dir: Path
) -> dict[str, dict[str, Any]]:
    """Commit every output folder to its table, at most once per job (see LakePort)."""
    data = {}
    for name, table in outputs.items():
        t = read_output(out_dir / name)
        if t is not None:
            data[name] = (table, t)
    if not data:
        return {}
    return port.commit_outputs(user, job_id, data)


def acting(row: dict[str, Any]) -> str | None:
    """Whom a job acts for: its submitter's name, or None for the lake's owner."""
    return None if row.get("acting") == "owner" else row["user"]
