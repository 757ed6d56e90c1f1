"""Jobs and lake tables: governed input snapshots and output files, through the lake port."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from batch.port import LakePort
from catalog import storage


def app_id(job_id: str) -> str:
    """The Delta application-transaction id that makes a job's output commit idempotent."""
    return f"lakeward.job.{job_id}"


def materialize_inputs(
    port: LakePort, user: str | None, inputs: dict[str, str], dest: Path | str
) -> list[tuple[str, str, int]]:
    """Snapshot each input table as `user` (governance applies) into dest/NAME/*.parquet.

    Returns [(name, table, version)] so lineage names exactly what the job saw; an existing
    snapshot (an earlier attempt's) is reused. `dest` may be in an object store: then the
    snapshot is uploaded, and its version marker written last, once the data is whole.
    """
    if storage.is_remote(str(dest)):
        return _materialize_remote(port, user, inputs, str(dest))
    dest = Path(dest)
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


def _materialize_remote(
    port: LakePort, user: str | None, inputs: dict[str, str], dest: str
) -> list[tuple[str, str, int]]:
    read = []
    for name, table in inputs.items():
        marker = storage.join(dest, f".{name}.version")
        try:
            read.append((name, table, int(storage.read_text(marker))))
            continue
        except FileNotFoundError:
            pass
        result, version = port.read_input(user, table)
        folder = storage.join(dest, name)
        storage.delete_tree(folder)
        with tempfile.TemporaryDirectory(prefix="lakeward-input-") as tmp:
            pq.write_table(result, os.path.join(tmp, "part-00000.parquet"))
            storage.upload_tree(tmp, folder)
        storage.write_bytes(marker, str(version).encode())
        read.append((name, table, version))
    return read


def read_output(folder: Path | str) -> pa.Table | None:
    """The Parquet files a job left in one output folder, as one table (None: none)."""
    if storage.is_remote(str(folder)):
        names = sorted(r for r, _ in storage.walk(str(folder)) if r.endswith(".parquet"))
        if not names:
            return None
        tables = [
            pq.read_table(pa.BufferReader(storage.read_bytes(storage.join(str(folder), n))))
            for n in names
        ]
        return pa.concat_tables(tables, promote_options="default")
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*.parquet") if p.is_file())
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


def commit_outputs(
    port: LakePort, user: str | None, job_id: str, outputs: dict[str, str], out_dir: Path | str
) -> dict[str, dict[str, Any]]:
    """Commit every output folder to its table, at most once per job (see LakePort)."""
    data = {}
    for name, table in outputs.items():
        t = read_output(storage.join(str(out_dir), name))
        if t is not None:
            data[name] = (table, t)
    if not data:
        return {}
    return port.commit_outputs(user, job_id, data)


def acting(row: dict[str, Any]) -> str | None:
    """Whom a job acts for: its submitter's name, or None for the lake's owner."""
    return None if row.get("acting") == "owner" else row["user"]
