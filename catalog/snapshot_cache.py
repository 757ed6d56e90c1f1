"""Built snapshots kept on disk, one file per (table location, version), so a new process (the
CLI, a restarted server) opens a grown table without replaying its log or reading its footers.

The cache lives under the lake's own `_lakeward/` (in the object store when the root is one:
`catalog.storage`). A version never changes once ratified, so its file is valid for as long as the version's commit
file is the same one (the stamp: inode, size, modification time) and the format, the Lakeward
snapshot layout and the DuckDB that checked it are unchanged. Files are Arrow IPC, written to a
temporary name and renamed into place; anything unreadable is a miss. A table keeps its newest
few versions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from catalog import storage

FORMAT = 1
KEEP = 8  # versions per table
_META = b"lakeward.snapshot"


def _folder(cache_dir: str | Path, location: str) -> str:
    return storage.join(str(cache_dir), hashlib.sha256(location.encode()).hexdigest()[:24])


def _name(version: int) -> str:
    return f"{version:020d}.arrow"


def _expected(location: str, version: int, stamp: Any) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "location": location,
        "version": version,
        "stamp": list(stamp),
        "duckdb": duckdb.__version__,
    }


def save(
    cache_dir: str | Path,
    location: str,
    version: int,
    stamp: Any,
    header: dict[str, Any],
    table: pa.Table,
) -> None:
    """Write one version's snapshot (best effort: a cache that cannot be written is no cache)."""
    if stamp is None:
        return
    folder = _folder(cache_dir, location)
    meta = {**header, **_expected(location, version, stamp)}
    table = table.replace_schema_metadata({_META: json.dumps(meta).encode()})
    try:
        if storage.is_remote(folder):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_file(sink, table.schema) as w:
                w.write_table(table)
            storage.write_bytes(storage.join(folder, _name(version)), sink.getvalue().to_pybytes())
        else:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".arrow")
            try:
                with os.fdopen(fd, "wb") as f, pa.ipc.new_file(f, table.schema) as w:
                    w.write_table(table)
                os.replace(tmp, os.path.join(folder, _name(version)))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        _trim(folder)
    except OSError:
        return


def forget(cache_dir: str | Path, location: str) -> None:
    """Delete every saved snapshot of the location (its table is dropped)."""
    with contextlib.suppress(OSError):
        storage.delete_tree(_folder(cache_dir, location))


def _trim(folder: str) -> None:
    names = sorted(n for n in storage.listdir(folder) if n.endswith(".arrow") and n[0] != ".")
    for n in names[:-KEEP]:
        with contextlib.suppress(OSError):
            storage.delete(storage.join(folder, n))


def _read(path: str) -> tuple[dict[str, Any], pa.Table] | None:
    try:
        if storage.is_remote(path):
            table = pa.ipc.open_file(pa.py_buffer(storage.read_bytes(path))).read_all()
        else:
            with pa.memory_map(path) as source:
                table = pa.ipc.open_file(source).read_all()
        meta = json.loads((table.schema.metadata or {})[_META])
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None
    return meta, table.replace_schema_metadata(None)


def load(
    cache_dir: str | Path, location: str, version: int, stamp: Any
) -> tuple[dict[str, Any], pa.Table] | None:
    """The saved snapshot of exactly this version of this commit file, or None."""
    if stamp is None:
        return None
    hit = _read(storage.join(_folder(cache_dir, location), _name(version)))
    if hit is None:
        return None
    want = _expected(location, version, stamp)
    if any(hit[0].get(k) != v for k, v in want.items()):
        return None
    return hit


def newest(cache_dir: str | Path, location: str) -> tuple[dict[str, Any], pa.Table] | None:
    """The newest saved snapshot of the location, whatever its version (None if none); its
    per-file facts (footers) hold for the same files in any version."""
    folder = _folder(cache_dir, location)
    try:
        names = sorted(n for n in storage.listdir(folder) if n.endswith(".arrow") and n[0] != ".")
    except OSError:
        return None
    for n in reversed(names):
        hit = _read(storage.join(folder, n))
        if (
            hit is not None
            and hit[0].get("format") == FORMAT
            and hit[0].get("location") == location
        ):
            return hit
    return None
