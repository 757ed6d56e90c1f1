"""Deletion vectors: which live data files carry one, and how many rows it deletes.

delta-rs decodes the deletion vectors (`DeltaTable.deletion_vectors()`) but does not expose the
descriptor of an add action, so `descriptors` replays just the `add`/`remove` actions'
`deletionVector` fields (checkpoint, then JSON commits): the snapshot checks delta-rs's decoding
against them (the same files, the same number of rows each) before trusting it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import numpy as np
from cachetools import LRUCache

from catalog import storage
from catalog.errors import UnsupportedFeature

_COMMIT = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(?:\.(\d{10})\.(\d{10}))?\.parquet$")


@dataclass(frozen=True)
class Descriptor:
    """The `deletionVector` field of an add action."""

    storage_type: str
    path_or_inline_dv: str
    offset: int | None
    size_in_bytes: int
    cardinality: int

    @classmethod
    def parse(cls, d: dict[str, Any]) -> Descriptor:
        """From the action's JSON (or checkpoint struct) form."""
        offset = d.get("offset")
        return cls(
            str(d["storageType"]),
            str(d["pathOrInlineDv"]),
            None if offset is None else int(offset),
            int(d["sizeInBytes"]),
            int(d["cardinality"]),
        )


def ranges_text(rows: np.ndarray) -> str:
    """Runs of consecutive row indexes as 'start:stop' (stop exclusive), comma separated."""
    if rows.size == 0:
        return ""
    rows = rows.astype(np.int64)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = rows[np.concatenate(([0], breaks))]
    stops = rows[np.concatenate((breaks - 1, [rows.size - 1]))] + 1
    return ",".join(f"{a}:{b}" for a, b in zip(starts.tolist(), stops.tolist(), strict=True))


# log replay -------------------------------------------------------------------------------------
class _Log:
    """The commit and checkpoint files of one `_delta_log`."""

    def __init__(self, location: str):
        self.dir = storage.join(location, "_delta_log")
        self.commits: dict[int, str] = {}
        parts: dict[tuple[int, int], set[int]] = {}
        self.checkpoints: dict[int, list[str]] = {}
        for name in storage.listdir(self.dir):
            if m := _COMMIT.match(name):
                self.commits[int(m.group(1))] = name
            elif m := _CHECKPOINT.match(name):
                v = int(m.group(1))
                if m.group(2) is None:
                    self.checkpoints[v] = [name]
                else:
                    parts.setdefault((v, int(m.group(3))), set()).add(int(m.group(2)))
        for (v, n), got in parts.items():
            if v not in self.checkpoints and got == set(range(1, n + 1)):
                self.checkpoints[v] = [
                    f"{v:020d}.checkpoint.{i:010d}.{n:010d}.parquet" for i in range(1, n + 1)
                ]

    def checkpoint_at_most(self, version: int) -> int | None:
        """Newest complete classic or multi-part checkpoint at or below `version`."""
        found = [v for v in self.checkpoints if v <= version]
        return max(found) if found else None


def _read_checkpoint(log: _Log, version: int, where: str) -> dict[str, Descriptor]:
    import pyarrow.parquet as pq  # only a checkpoint of a table with deletion vectors needs it

    out: dict[str, Descriptor] = {}
    for name in log.checkpoints[version]:
        path = storage.join(log.dir, name)
        with storage.open_input(path) as f:
            schema = pq.read_schema(f)
        if "sidecar" in schema.names or "checkpointMetadata" in schema.names:
            raise UnsupportedFeature(
                f"{where}: v2 checkpoints with sidecars and deletion vectors are not supported"
            )
        if "add" not in schema.names:
            continue
        add_type = schema.field("add").type
        if add_type.get_field_index("deletionVector") < 0:
            continue
        with storage.open_input(path) as f:
            table = pq.read_table(f, columns=["add.path", "add.deletionVector"])
        dvs = table.column("deletionVector").combine_chunks()
        mask = dvs.is_valid()
        paths = table.column("path").combine_chunks().filter(mask).to_pylist()
        for p, d in zip(paths, dvs.filter(mask).to_pylist(), strict=True):
            out[unquote(p)] = Descriptor.parse(d)
    return out


def _apply_commit(state: dict[str, Descriptor], path: str) -> None:
    removes, adds = [], []
    for line in storage.read_text(path).splitlines():
        if '"add"' not in line and '"remove"' not in line:
            continue
        action = json.loads(line)
        if "add" in action:
            adds.append(action["add"])
        elif "remove" in action:
            removes.append(action["remove"])
    # Within one commit a file's remove (old DV) and add (new DV) are unordered: the add wins.
    for r in removes:
        state.pop(unquote(r["path"]), None)
    for a in adds:
        key = unquote(a["path"])
        if a.get("deletionVector"):
            state[key] = Descriptor.parse(a["deletionVector"])
        else:
            state.pop(key, None)


def commit_stamp(location: str, version: int) -> tuple[int, int, int] | None:
    """Identity of a commit file, to notice a version rewritten after a rollback or a table
    re-created at the same place (None if the commit file is gone)."""
    path = storage.join(location, "_delta_log", f"{version:020d}.json")
    if storage.is_remote(path):
        st = storage.stat(path)
        return None if st is None else (st.ident, st.size, st.mtime_ns)  # type: ignore[return-value]
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def latest_commit(location: str) -> int:
    """The newest version with a commit file in the table's `_delta_log` (-1 if none)."""
    return max(_Log(location).commits, default=-1)


# Per location, the replayed state of the newest version remembered: the next version replays
# from it.
_cache: LRUCache = LRUCache(64)
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget the replayed deletion-vector state of every table."""
    with _cache_lock:
        _cache.clear()


def descriptors(location: str, version: int, *, remember: bool = True) -> dict[str, Descriptor]:
    """Deletion-vector descriptor of every live file that has one at `version`, keyed by the
    file's URL-decoded log path. `remember=False` for versions that may yet be rolled back."""
    where = f"Delta table {location} version {version}"
    with _cache_lock:
        cached = _cache.get(location)
    log = _Log(location)
    start, state = -1, {}
    if (
        cached
        and cached[0] <= version
        and cached[1] == commit_stamp(location, cached[0])
        and all(v in log.commits for v in range(cached[0] + 1, version + 1))
    ):
        start, state = cached[0], dict(cached[2])
    else:
        cp = log.checkpoint_at_most(version)
        if cp is not None:
            start, state = cp, _read_checkpoint(log, cp, where)
    for v in range(start + 1, version + 1):
        if v not in log.commits:
            raise UnsupportedFeature(
                f"{where}: commit {v} is missing from the log, cannot find the deletion vectors"
            )
        _apply_commit(state, storage.join(log.dir, log.commits[v]))
    if remember:
        with _cache_lock:
            _cache[location] = (version, commit_stamp(location, version), state)
    return dict(state)
