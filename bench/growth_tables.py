"""Grown Delta tables for bench_growth, built in seconds instead of hours.

Appending one file per version through delta-rs costs a commit each (minutes for 10,000 versions,
hours for 100,000), so the log is written directly: delta-rs creates version 0 (its own protocol
and metadata actions), then each later version is one commit file with a `commitInfo` and an
`add` (and, for compactions, `remove` actions), exactly as the Delta protocol defines them, and
delta-rs writes a checkpoint at the end. The data files are real Parquet files of 100 rows with
`stats` in their add actions, so delta-rs, DuckDB and Lakeward read them like any table's.

`appends(n)`: n versions, one 100-row file each (n files).
`compacted(n)`: n versions in blocks of 1,000: 999 one-file appends, then an OPTIMIZE that removes
them and adds one file with their rows. Only the files of the live version and of the first
block exist (the others were vacuumed), so time travel to version 1 still works.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

ROWS = 100
SCHEMA = pa.schema([("id", pa.int64()), ("k", pa.int32()), ("v", pa.float64())])
BLOCK = 1000


def _rows(start: int, n: int) -> pa.Table:
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.table(
        {"id": ids, "k": (ids % 1000).astype(np.int32), "v": (ids % 97).astype(np.float64)},
        schema=SCHEMA,
    )


def _stats(t: pa.Table) -> str:
    ids = t.column("id").to_numpy()
    ks = t.column("k").to_numpy()
    vs = t.column("v").to_numpy()
    return json.dumps(
        {
            "numRecords": t.num_rows,
            "minValues": {"id": int(ids.min()), "k": int(ks.min()), "v": float(vs.min())},
            "maxValues": {"id": int(ids.max()), "k": int(ks.max()), "v": float(vs.max())},
            "nullCount": {"id": 0, "k": 0, "v": 0},
        }
    )


def _file(root: Path, t: pa.Table, write: bool) -> dict:
    name = f"part-{uuid.uuid4()}.parquet"
    size = 0
    if write:
        pq.write_table(t, root / name)
        size = os.path.getsize(root / name)
    return {
        "path": name,
        "partitionValues": {},
        "size": size or 1500,
        "modificationTime": int(time.time() * 1000),
        "dataChange": True,
        "stats": _stats(t),
    }


def _commit(root: Path, version: int, actions: list[dict], operation: str, ts: int) -> None:
    lines = [
        json.dumps(
            {"commitInfo": {"timestamp": ts, "operation": operation, "operationParameters": {}}}
        )
    ]
    lines += [json.dumps(a) for a in actions]
    path = root / "_delta_log" / f"{version:020d}.json"
    path.write_text("\n".join(lines) + "\n")


def _start(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    write_deltalake(str(root), _rows(0, ROWS), mode="append")


def appends(root: Path, n: int) -> None:
    """A table of `n` versions (0..n-1), each adding one file of 100 rows."""
    _start(root)
    ts = int(time.time() * 1000) - n * 1000
    for v in range(1, n):
        _commit(root, v, [{"add": _file(root, _rows(v * ROWS, ROWS), True)}], "WRITE", ts + v)
    DeltaTable(str(root)).create_checkpoint()


def compacted(root: Path, n: int) -> None:
    """A table of `n` versions whose small files were compacted every 1,000 versions."""
    _start(root)
    ts = int(time.time() * 1000) - n * 1000
    live: list[dict] = []  # the small files since the last compaction
    for v in range(1, n):
        if v % BLOCK == 0:
            lo = (v - BLOCK + 1) * ROWS
            big = _file(root, _rows(lo, (BLOCK - 1) * ROWS), True)
            removes = [
                {
                    "remove": {
                        "path": a["path"],
                        "deletionTimestamp": ts + v,
                        "dataChange": False,
                        "extendedFileMetadata": True,
                        "partitionValues": {},
                        "size": a["size"],
                    }
                }
                for a in live
            ]
            big["dataChange"] = False
            _commit(root, v, [*removes, {"add": big}], "OPTIMIZE", ts + v)
            live = []
            continue
        # Files of the first block stay (time travel to version 1); later ones were vacuumed,
        # except those still live at the end.
        keep = v < BLOCK or v > (n - 1) // BLOCK * BLOCK
        add = _file(root, _rows(v * ROWS, ROWS), keep)
        live.append(add)
        _commit(root, v, [{"add": add}], "WRITE", ts + v)
    DeltaTable(str(root)).create_checkpoint()
