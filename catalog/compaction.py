"""Compaction that never fails a concurrent append: rewrite without the lock, commit rebased.

1. **Plan** (pure): on the ratified snapshot at version v, bin-pack each partition's small
   files into bins of at most the target size (or, for z-order, one bin per partition).
2. **Rewrite** (no lock held): read each bin through the snapshot's own relation (partition
   values, deletion vectors and schema evolution applied) with DuckDB and write it with
   delta-rs into a private staging table inside the table folder, one staging commit per bin.
   delta-rs computes the Parquet files' statistics exactly as for any write.
3. **Commit** (lock held for milliseconds): through the catalog protocol
   (`Transaction.run_maintenance`), at the *current* ratified version: keep each bin whose input
   files are all still live (drop it otherwise: a delete or overwrite got there first), move its
   files next to the table's data and commit `add` + `remove` actions (dataChange=false) with
   delta-rs `create_write_transaction`; ratify records the version as OPTIMIZE.

Appends never conflict: they only add files, so every bin stays valid, and the lock is held
for the rebase only. Compaction does not starve: appends cannot invalidate its work, and
bins invalidated by deletes are re-planned on the fresh snapshot, a bounded number of times.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import duckdb
import numpy as np
from deltalake import (
    CommitProperties,
    DeltaTable,
    PostCommitHookProperties,
    Schema,
    write_deltalake,
)
from deltalake.transaction import AddAction, RemoveAction

from catalog import delta_types as types
from catalog import locks, storage
from catalog.errors import CommitConflict, InvalidArgument, LakeError, UnsupportedFeature
from catalog.partitions import select_files
from catalog.snapshot import Snapshot

if TYPE_CHECKING:
    from catalog.catalog import Catalog
    from catalog.store import MetadataStore, TableInfo

STAGING = "_lakeward_staging"  # hidden from Delta readers and from vacuum's data-file walk
LEASE = ".compacting"  # flock'd in STAGING by the process compacting the table
LEASE_S = 60.0  # the compaction lease of a table in an object store (see `exclusive`)
DEFAULT_TARGET_BYTES = 100 * 1024 * 1024  # delta-rs's default delta.targetFileSize
OPERATION = "OPTIMIZE"
_HOOKS = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)
# Table configuration that decides which statistics a written file gets.
_STATS_KEYS = ("delta.dataSkippingNumIndexedCols", "delta.dataSkippingStatsColumns")
_ZORDER_BITS = 63


# policy -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    """Automatic-compaction thresholds of one table, from its catalog properties.

    compaction.enabled           "true" | "false"                       (default true)
    compaction.min_small_files   compact once this many files are small  (default 50)
    compaction.small_file_bytes  a file below this size is small        (default 8 MiB)
    compaction.small_file_ratio  also compact once this fraction of the files is small, with at
                                 least 2 small files; 0 turns it off     (default 0)
    compaction.min_interval_s    at most one compaction per interval; 0: as soon as the backlog
                                 of small files is due, however fast appends come (default 0)
    compaction.target_file_bytes size of compacted files (default: delta.targetFileSize, 100 MiB)

    Compaction is scheduled by backlog, not by the clock: a fixed interval cannot keep up with a
    fast writer (at 30 appends/s, one run per 30 s leaves ~900 files between runs).
    """

    enabled: bool = True
    min_small_files: int = 50
    small_file_bytes: int = 8 * 1024 * 1024
    small_file_ratio: float = 0.0
    min_interval_s: float = 0.0
    target_file_bytes: int | None = None

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> Policy:
        """The policy a table's properties set; InvalidArgument on a malformed value."""
        d = cls()

        def num(key: str, default: Any, kind: type, low: float) -> Any:
            raw = props.get(f"compaction.{key}")
            if raw is None or str(raw).strip() == "":
                return default
            try:
                value = kind(float(raw)) if kind is int else kind(raw)
            except (TypeError, ValueError):
                raise InvalidArgument(
                    f"table property compaction.{key}={raw!r} is not a number"
                ) from None
            if value < low:
                raise InvalidArgument(f"table property compaction.{key} must be >= {low}")
            return value

        enabled = str(props.get("compaction.enabled", "true")).strip().lower()
        if enabled not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise InvalidArgument(f"table property compaction.enabled={enabled!r} is not a boolean")
        return cls(
            enabled=enabled in ("true", "1", "yes", "on"),
            min_small_files=num("min_small_files", d.min_small_files, int, 2),
            small_file_bytes=num("small_file_bytes", d.small_file_bytes, int, 1),
            small_file_ratio=num("small_file_ratio", d.small_file_ratio, float, 0.0),
            min_interval_s=num("min_interval_s", d.min_interval_s, float, 0.0),
            target_file_bytes=num("target_file_bytes", None, int, 1),
        )

    def due(self, small: int, total: int) -> bool:
        """Whether `small` compactable small files out of `total` files are worth compacting."""
        if not self.enabled:
            return False
        if small >= self.min_small_files:
            return True
        return self.small_file_ratio > 0 and small >= 2 and small >= self.small_file_ratio * total


def backlog(location: str, version: int, small_file_bytes: int) -> tuple[int, int]:
    """(compactable small files, all files) at a version: small files without deletion vectors
    that share their partition with another such file (a lone one has nothing to merge with).

    Counted from delta-rs's add actions: no footer is read, so a check costs a log replay."""
    with _sources_lock:
        dt = _table_at(location, version)
        actions = dt.get_add_actions(flatten=False)
    sizes = np.asarray(actions.column("size_bytes"))
    small = sizes < small_file_bytes
    if "deletionVector" in actions.schema.names:
        small &= ~np.array([_has_dv(d) for d in actions.column("deletionVector").to_pylist()])
    if not small.any():
        return 0, int(sizes.size)
    if "partition" in actions.schema.names and actions.schema.field("partition").type.num_fields:
        parts = actions.column("partition").to_pylist()
        keys = [tuple(sorted(parts[i].items())) for i in np.flatnonzero(small).tolist()]
        counts: dict[tuple, int] = {}
        for k in keys:
            counts[k] = counts.get(k, 0) + 1
        n = sum(c for c in counts.values() if c > 1)
    else:
        n = int(np.count_nonzero(small))
        n = n if n > 1 else 0
    return n, int(sizes.size)


# planning ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bin:
    """Files of one partition rewritten together into new files."""

    partition: tuple[Any, ...]
    files: tuple[int, ...]  # rows of the snapshot's files table
    paths: tuple[str, ...]  # their absolute local paths
    size_bytes: int


def plan(
    snap: Snapshot,
    target_size: int,
    *,
    small_file_bytes: int | None = None,
    zorder: Sequence[str] = (),
    mask: np.ndarray | None = None,
) -> list[Bin]:
    """Bin-pack each partition's small files (size < small_file_bytes, default target_size).

    Files keep their order; a bin closes before it would pass target_size; single-file bins are
    dropped (nothing to gain). With z-order, every file of a partition is one bin. Files with
    deletion vectors are left alone: their remove action would need the vector's descriptor.
    """
    files = snap.files
    n = files.num_rows
    if n == 0:
        return []
    sizes = files["size_bytes"].to_numpy(zero_copy_only=False)
    eligible = files["deleted_records"].to_numpy(zero_copy_only=False) == 0
    if mask is not None:
        eligible &= mask
    if not zorder:
        eligible &= sizes < (small_file_bytes or target_size)
    paths = files["path"].to_pylist()
    keys = (
        list(
            zip(*(files[f"partition.{c}"].to_pylist() for c in snap.partition_columns), strict=True)
        )
        or [()] * n
    )
    by_partition: dict[tuple[Any, ...], list[int]] = {}
    for i in np.flatnonzero(eligible).tolist():
        by_partition.setdefault(keys[i], []).append(i)
    bins: list[Bin] = []
    for key, idx in by_partition.items():
        if zorder:
            groups = [idx]
        else:
            groups, current, size = [], [], 0
            for i in idx:
                if current and size + sizes[i] > target_size:
                    groups.append(current)
                    current, size = [], 0
                current.append(i)
                size += int(sizes[i])
            groups.append(current)
            groups = [g for g in groups if len(g) > 1]
        for g in groups:
            bins.append(
                Bin(key, tuple(g), tuple(paths[i] for i in g), int(sum(int(sizes[i]) for i in g)))
            )
    return bins


# rewriting -----------------------------------------------------------------------------------------
class Stopped(LakeError):
    """A compaction was asked to stop (the lake is closing); nothing was committed."""


@dataclass
class _Staged:
    root: str
    schema_json: str
    outputs: list[list[dict[str, Any]]] = field(default_factory=list)  # add actions, per bin


@dataclass(frozen=True)
class _Meta:
    schema_json: str
    config: Mapping[str, str]


_sources: dict[str, DeltaTable] = {}
_sources_lock = threading.Lock()


def _table_at(location: str, version: int) -> DeltaTable:
    # The caller holds _sources_lock. Moving a kept table forward replays from its checkpoint.
    dt = _sources.pop(location, None)
    try:
        if dt is None or dt.version() != version:
            if dt is not None and dt.version() < version:
                dt.load_as_version(version)
            else:
                dt = storage.open_delta(location, version)
    except Exception:
        dt = storage.open_delta(location, version)
    if len(_sources) > 64:
        _sources.clear()
    _sources[location] = dt
    return dt


def _metadata(location: str, version: int) -> _Meta:
    """Schema and configuration of a version; replays only the log since the last call."""
    with _sources_lock:
        dt = _table_at(location, version)
        return _Meta(dt.schema().to_json(), dict(dt.metadata().configuration or {}))


_duck: duckdb.DuckDBPyConnection | None = None
_duck_remote = False  # whether it reads object stores (through catalog.storage)
_duck_lock = threading.Lock()


def _reader(remote: bool = False) -> duckdb.DuckDBPyConnection:
    # One database per process: connecting costs ~20 ms, a cursor microseconds. It only ever
    # runs SQL generated here over the snapshot's own files.
    global _duck, _duck_remote
    with _duck_lock:
        if _duck is None:
            spill = Path(tempfile.gettempdir()) / f"lakeward-compaction-{os.getpid()}"
            _duck = duckdb.connect(
                ":memory:",
                config={"python_enable_replacements": False, "temp_directory": str(spill)},
            )
        if remote and not _duck_remote:
            _duck.register_filesystem(storage.duckdb_filesystem(frozenset({"s3://"})))
            _duck_remote = True
        return _duck.cursor()


def _zorder_sql(rel: str, cols: Sequence[str], names: Sequence[str]) -> str:
    """`rel` sorted along a z-order curve of `cols`' ranks (ranks make any orderable type work)."""
    q = [types.quote_ident(c) for c in cols]
    out = ", ".join(types.quote_ident(n) for n in names)
    if len(cols) == 1:
        return f"SELECT {out} FROM ({rel}) ORDER BY {q[0]} NULLS FIRST"
    n = len(cols)
    bits = min(21, _ZORDER_BITS // n)
    top = (1 << bits) - 1
    ranks = ", ".join(
        f"CAST(round(percent_rank() OVER (ORDER BY {c} NULLS FIRST) * {top}) AS UBIGINT) AS __zr{i}"
        for i, c in enumerate(q)
    )
    key = " | ".join(
        f"(((__zr{i} >> {b}) & 1) << {b * n + i})" for b in range(bits) for i in range(n)
    )
    return f"SELECT {out} FROM (SELECT *, {ranks} FROM ({rel})) ORDER BY {key}"


def _log_adds(staging: str, version: int) -> list[dict[str, Any]]:
    # The staging table is ours and private; its commit holds the add actions delta-rs wrote,
    # statistics included, which the table's own commit then re-uses verbatim.
    adds = []
    for line in storage.read_text(
        storage.join(staging, "_delta_log", f"{version:020d}.json")
    ).splitlines():
        action = json.loads(line)
        if "add" in action:
            adds.append(action["add"])
    return adds


def _rewrite(
    meta: _Meta,
    snap: Snapshot,
    bins: list[Bin],
    target_size: int,
    zorder: Sequence[str],
    stop: Callable[[], bool] | None,
    root: str,
) -> _Staged:
    schema_json, config = meta.schema_json, meta.config
    storage.makedirs(root)
    staged = _Staged(root, schema_json)
    stage = DeltaTable.create(
        root,
        Schema.from_json(schema_json),
        partition_by=snap.partition_columns or None,
        storage_options=storage.delta_options(root),
        configuration={k: config[k] for k in _STATS_KEYS if config.get(k) is not None},
    )
    con = _reader(storage.is_remote(root))
    try:
        names = snap.schema.names
        for b in bins:
            if stop is not None and stop():
                raise Stopped("compaction stopped before it finished; nothing was committed")
            keep = np.zeros(snap.files.num_rows, dtype=bool)
            keep[list(b.files)] = True
            sql = snap.relation_sql(keep)
            if zorder:
                sql = _zorder_sql(sql, zorder, names)
            reader = con.sql(sql).to_arrow_reader(1 << 17)
            write_deltalake(
                stage,
                reader,
                mode="append",
                target_file_size=target_size,
                post_commithook_properties=_HOOKS,
            )
            staged.outputs.append(_log_adds(root, stage.version()))
    finally:
        con.close()
    return staged


# committing ----------------------------------------------------------------------------------------
@dataclass
class _Outcome:
    version: int | None = None
    kept: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    committed: bool = False


def _commit(
    catalog: Catalog, info: TableInfo, user: str, snap: Snapshot, bins: list[Bin], staged: _Staged
) -> _Outcome:
    """Take the lock, rebase the staged bins onto the current version and ratify them."""
    out = _Outcome()
    remote = storage.is_remote(info.location)
    location = storage.normalize(info.location) if remote else os.path.normpath(info.location)

    def op(dt: DeltaTable, props: CommitProperties) -> None:
        if dt.schema().to_json() != staged.schema_json:
            out.dropped = list(range(len(bins)))  # the schema moved on: files would not match
            return
        actions = dt.get_add_actions(flatten=False)
        cols = actions.schema.names
        dv = actions.column("deletionVector").to_pylist() if "deletionVector" in cols else None
        has_dv = [_has_dv(d) for d in dv] if dv is not None else None
        live: dict[str, tuple[str, int, bool]] = {}
        for i, (raw, size) in enumerate(
            zip(
                actions.column("path").to_pylist(),
                actions.column("size_bytes").to_pylist(),
                strict=True,
            )
        ):
            key = (
                storage.join(location, unquote(raw))
                if remote
                else os.path.normpath(os.path.join(location, unquote(raw)))
            )
            live[key] = (raw, int(size), bool(has_dv and has_dv[i]))
        now_ms = int(time.time() * 1000)
        adds: list[AddAction] = []
        removes: list[RemoveAction] = []
        moves: list[tuple[str, str]] = []
        for k, b in enumerate(bins):
            inputs = [live.get(p if remote else os.path.normpath(p)) for p in b.paths]
            outputs = staged.outputs[k]
            if any(x is None or x[2] for x in inputs) or not all(
                storage.exists(storage.join(staged.root, unquote(a["path"]))) for a in outputs
            ):
                out.dropped.append(k)
                continue
            out.kept.append(k)
            pv = dict(outputs[0]["partitionValues"]) if outputs else None
            for a in outputs:
                moves.append(
                    (
                        storage.join(staged.root, unquote(a["path"])),
                        storage.join(location, unquote(a["path"])),
                    )
                )
                # delta-rs takes decoded paths and encodes them for the log itself.
                adds.append(
                    AddAction(
                        path=unquote(a["path"]),
                        size=int(a["size"]),
                        partition_values=a["partitionValues"],
                        modification_time=int(a["modificationTime"]),
                        data_change=False,
                        stats=a["stats"],
                    )
                )
            for raw, size, _ in inputs:  # type: ignore[misc]
                removes.append(RemoveAction(unquote(raw), False, now_ms, size, pv))
        if not removes:
            return
        for src, dst in moves:
            storage.rename(src, dst)
            out.moved.append(dst)
        before = dt.version()
        dt.create_write_transaction(
            [*adds, *removes],
            mode="append",
            schema=dt.schema(),
            partition_by=list(dt.metadata().partition_columns) or None,
            commit_properties=props,
            post_commithook_properties=_HOOKS,
        )
        out.committed = True
        dt.update_incremental()  # we hold the lock: the newest version is the one just made
        out.version = dt.version()
        if out.version != before + 1:
            raise CommitConflict(f"{info.full_name} changed while its lock was held; retry")

    params = {
        "read_version": snap.version,
        "bins": len(bins),
        "files_removed": sum(len(b.files) for b in bins),
    }
    tx = catalog.implicit(user)
    try:
        tx.run_maintenance(info.full_name, OPERATION, params, op)
    except BaseException:
        if not out.committed:
            # Never part of any version, so nobody can be reading them.
            for p in out.moved:
                with contextlib.suppress(OSError):
                    storage.delete(p)
        raise
    return out


def _has_dv(d: Any) -> bool:
    if isinstance(d, dict):
        return any(v is not None for v in d.values())
    return d is not None


# the operation -------------------------------------------------------------------------------------
def target_size_of(
    info: TableInfo, explicit: int | None = None, config: Mapping[str, Any] | None = None
) -> int:
    """The compacted-file size: explicit, else table properties, else the Delta table's
    delta.targetFileSize (`config`: its configuration), else delta-rs's default."""
    if explicit is not None:
        return explicit
    policy = Policy.from_properties(info.properties)
    if policy.target_file_bytes:
        return policy.target_file_bytes
    if config is None:
        config = storage.open_delta(info.location).metadata().configuration or {}
    with contextlib.suppress(TypeError, ValueError):
        value = int(config.get("delta.targetFileSize") or 0)
        if value > 0:
            return value
    return DEFAULT_TARGET_BYTES


def compact(
    catalog: Catalog,
    name: str,
    user: str,
    *,
    target_size: int | None = None,
    zorder: Sequence[str] | None = None,
    where: str | None = None,
    partition: Mapping[str, Any] | None = None,
    small_file_bytes: int | None = None,
    attempts: int = 3,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Bin-pack small files (optionally z-ordered, optionally only some partitions) into
    target-size files, in ratified OPTIMIZE commits that never fail a concurrent append.

    where: a SQL predicate over partition columns ("region = 'eu'"); partition: {"region": "eu"}.
    small_file_bytes: only files below this size are rewritten (default: below target_size).
    Returns delta-rs-style metrics (numFilesAdded, numFilesRemoved, ...) plus the versions made.
    """
    if not user or not isinstance(user, str):
        raise InvalidArgument("compaction needs the user it acts for")
    if target_size is not None and (
        isinstance(target_size, bool) or not isinstance(target_size, int) or target_size <= 0
    ):
        raise InvalidArgument("target_size must be a positive number of bytes")
    if small_file_bytes is not None and (
        not isinstance(small_file_bytes, int) or small_file_bytes <= 0
    ):
        raise InvalidArgument("small_file_bytes must be a positive number of bytes")
    if isinstance(zorder, str):
        zorder = [zorder]
    cols = list(dict.fromkeys(zorder or []))
    info = catalog.table(name)
    if info.table_type != "GOVERNED":
        raise InvalidArgument(
            f"{info.full_name} is an external table and read-only in Lakeward; register it "
            "with governed=True to compact it"
        )
    metrics: dict[str, Any] = {
        "numFilesAdded": 0,
        "numFilesRemoved": 0,
        "partitionsOptimized": 0,
        "numBatches": 0,
        "totalConsideredFiles": 0,
        "totalFilesSkipped": 0,
        "binsDropped": 0,
        "attempts": 0,
        "versions": [],
        "targetSize": target_size,
    }
    target = target_size or 0
    for attempt in range(max(1, attempts)):
        snap = catalog.snapshot(info)
        meta = _metadata(info.location, snap.version)
        config = meta.config
        if attempt == 0:
            _check_zorder(snap, cols, info.full_name)
            target = metrics["targetSize"] = target_size_of(info, target_size, config)
            if (config.get("delta.columnMapping.mode") or "none") != "none":
                raise UnsupportedFeature(
                    f"{info.full_name} uses column mapping, which delta-rs cannot write yet; "
                    "it cannot be compacted by Lakeward"
                )
        mask = select_files(snap, where, partition)
        bins = plan(snap, target, small_file_bytes=small_file_bytes, zorder=cols, mask=mask)
        if attempt == 0:
            considered = int(mask.sum())
            metrics["totalConsideredFiles"] = considered
            metrics["totalFilesSkipped"] = considered - sum(len(b.files) for b in bins)
        if not bins:
            break
        metrics["attempts"] += 1
        root = staging_root(info)
        try:
            staged = _rewrite(meta, snap, bins, target, cols, stop, root)
            outcome = _commit(catalog, info, user, snap, bins, staged)
        finally:
            storage.delete_tree(root)
        kept = [bins[k] for k in outcome.kept]
        metrics["numFilesRemoved"] += sum(len(b.files) for b in kept)
        metrics["numFilesAdded"] += sum(len(staged.outputs[k]) for k in outcome.kept)
        metrics["numBatches"] += len(kept)
        metrics["partitionsOptimized"] += len({b.partition for b in kept})
        metrics["binsDropped"] += len(outcome.dropped)
        if outcome.version is not None:
            metrics["versions"].append(outcome.version)
        if not outcome.dropped:
            break
    return metrics


@contextlib.contextmanager
def exclusive(info: TableInfo, store: MetadataStore | None = None) -> Iterator[bool]:
    """Try to become the only compactor of a table; yields whether we are.

    Only an economy: compactions that overlap stay correct (the later one drops the bins the
    earlier one took), they just waste work. On a local disk the lock is an flock, gone with
    its process (one host); in an object store, where processes on any host compact, it is a
    lease in the metadata store (`store`), renewed while we work and free LEASE_S after a
    holder died.
    """
    if storage.is_remote(info.location):
        if store is None:
            raise InvalidArgument("compacting a table in an object store needs the catalog's store")
        with _store_lease(store, f"compact:{info.id}") as ours:
            yield ours
        return
    base = Path(info.location) / STAGING
    base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base / LEASE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the flock


@contextlib.contextmanager
def _store_lease(store: MetadataStore, name: str) -> Iterator[bool]:
    owner = f"{locks.owner_id()}:{uuid.uuid4().hex[:8]}"
    if not store.take_lease(name, owner, LEASE_S):
        yield False
        return
    done = threading.Event()

    def renew() -> None:
        while not done.wait(LEASE_S / 3):
            with contextlib.suppress(Exception):  # the next beat tries again
                store.take_lease(name, owner, LEASE_S)

    beat = threading.Thread(target=renew, name="lakeward-compaction-lease", daemon=True)
    beat.start()
    try:
        yield True
    finally:
        done.set()
        beat.join()
        with contextlib.suppress(Exception):
            store.drop_lease(name, owner)


def staging_root(info: TableInfo) -> str:
    """A fresh staging folder of this process; vacuum removes those whose process is gone."""
    owner = locks.owner_id().replace("/", "_")
    return storage.join(info.location, STAGING, f"{owner}~{uuid.uuid4().hex}")


def staging_owner(folder: str) -> str:
    """The `host:pid:start` of the process that made a staging folder."""
    return folder.rsplit("~", 1)[0]


def _check_zorder(snap: Snapshot, cols: list[str], name: str) -> None:
    missing = [c for c in cols if c not in snap.schema.names]
    if missing:
        raise InvalidArgument(f"z-order column(s) {missing} are not in {name}")
    parts = [c for c in cols if c in snap.partition_columns]
    if parts:
        raise InvalidArgument(
            f"z-order column(s) {parts} are partition columns of {name}; z-order by data columns"
        )
