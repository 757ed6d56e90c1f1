"""Vacuum: delete data files that no reader can need any more.

A file is kept when any of these can read it:

* a ratified version within the retention window: the current one, and every version that
  was current at some instant of the last `retention_hours` (time travel by timestamp);
* a running transaction: the version its snapshot reads (ACTIVE rows of the store);
* a write in flight: files modified within the window are never candidates, and the deletion
  runs under the table lock after adding the files of versions ratified since planning, so no
  tentative commit is being written and none that landed meanwhile loses a file.

Everything else under the table folder that is a data file goes: files removed by a commit
older than the window, and orphans that no version ever referenced (a rolled-back tentative
commit, a compaction killed before its commit). Staging folders of compactions whose process
is gone go too (made on another host: once older than the window).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from deltalake import DeltaTable

from catalog import locks, recovery, storage
from catalog.compaction import STAGING, staging_owner
from catalog.errors import InvalidArgument, TableNotFound
from catalog.partitions import path_in_partition

if TYPE_CHECKING:
    from catalog.catalog import Catalog
    from catalog.store import TableInfo

MIN_RETENTION_HOURS = 168.0


@dataclass(frozen=True)
class _File:
    rel: str  # path relative to the table folder, as on disk
    path: str
    mtime: float


def vacuum(
    catalog: Catalog,
    name: str,
    user: str,
    retention_hours: float | None = None,
    dry_run: bool = False,
    force: bool = False,
    partition: Mapping[str, Any] | None = None,
) -> list[str]:
    """Delete files no readable version or running transaction needs; returns their paths.

    Refuses retention below MIN_RETENTION_HOURS unless force=True. partition={"col": value}
    limits it to one partition's folder. dry_run=True only lists what would go.
    """
    if not user or not isinstance(user, str):
        raise InvalidArgument("vacuum needs the user it acts for")
    hours = MIN_RETENTION_HOURS if retention_hours is None else retention_hours
    if isinstance(hours, bool) or not isinstance(hours, int | float) or hours < 0:
        raise InvalidArgument("retention_hours must be a number >= 0")
    if hours < MIN_RETENTION_HOURS and not force:
        raise InvalidArgument(
            f"retention_hours={hours:g} is below the safe minimum of {MIN_RETENTION_HOURS:g} h: "
            "readers and transactions of older versions could lose their files. Pass force=True "
            "if you are sure."
        )
    info = catalog.table(name)
    if info.table_type != "GOVERNED":
        raise InvalidArgument(
            f"{info.full_name} is an external table; Lakeward deletes files only of governed tables"
        )
    if partition is not None:
        if not isinstance(partition, Mapping):
            raise InvalidArgument('partition must be a mapping such as {"region": "eu"}')
        unknown = [c for c in partition if c not in info.partition_by]
        if unknown:
            raise InvalidArgument(
                f"partition= may name only partition columns of {info.full_name} "
                f"({', '.join(info.partition_by) or 'none'}); not {', '.join(map(repr, unknown))}"
            )
    now = datetime.now(UTC)
    cutoff = now - timedelta(hours=float(hours))
    root = (
        storage.normalize(info.location)
        if storage.is_remote(info.location)
        else (os.path.normpath(info.location))
    )

    # The expensive part runs without the lock; only versions ratified meanwhile are added
    # under it, and files only become unneeded over time, never needed again.
    pointer = catalog.current_version(info)
    oldest = _oldest_needed(catalog, info, cutoff, pointer)
    keep = _files_of(root, oldest, pointer)
    candidates = [
        f
        for f in _data_files(root)
        if f.mtime < cutoff.timestamp()
        and (partition is None or path_in_partition(f.rel, info.partition_by, partition))
    ]
    if dry_run:
        doomed = [f.path for f in candidates if f.rel not in keep]
        return sorted(doomed + _files_under(_dead_staging(root, cutoff)))
    token = uuid.uuid4().hex
    s = catalog.settings
    now_pointer = locks.acquire(catalog.store, info.id, token, s.write_lease_s, s.lock_wait_s)
    if now_pointer is None:
        catalog.forget(info)
        raise TableNotFound(f"table {info.full_name} was dropped")
    deleted: list[str] = []
    try:
        # A dead holder's tentative versions (never past a lease we may have lost).
        recovery.rollback_past(root, now_pointer, lambda: locks.valid(catalog.store, token))
        if now_pointer != pointer:
            keep |= _files_of(root, pointer, now_pointer)
        # Transactions that began after planning read versions >= pointer, all kept.
        for f in candidates:
            if f.rel in keep:
                continue
            if not storage.is_remote(f.path):
                try:
                    os.unlink(f.path)
                except FileNotFoundError:
                    continue
            else:
                storage.delete(f.path)
            deleted.append(f.path)
        # Under the lock: a writer never finds its partition folder removed under its feet.
        storage.remove_empty_dirs(root, {os.path.dirname(p) for p in deleted})
    finally:
        catalog.store.unlock(token, [info.id])
    for folder in _dead_staging(root, cutoff):
        deleted += _files_under([folder])
        storage.delete_tree(folder)
    return sorted(deleted)


def _oldest_needed(catalog: Catalog, info: TableInfo, cutoff: datetime, pointer: int) -> int:
    """The oldest ratified version some reader may still read."""
    at_cutoff = catalog.store.version_at_time(info.id, cutoff)
    # None: the table is younger than the window, so every version of it was current in it.
    oldest = 0 if at_cutoff is None else min(at_cutoff, pointer)
    for txn in catalog.store.active_txns():
        v = catalog.store.versions_at([info.id], txn.snapshot_seq).get(info.id)
        if v is not None:
            oldest = min(oldest, v)
    return max(0, oldest)


def _rel(raw: str) -> str:
    return os.path.normpath(unquote(raw))


def _files_of(root: str, first: int, last: int) -> set[str]:
    """Table-relative paths of every file live in some version first..last."""
    dt = _earliest_loadable(root, first)
    first = dt.version()
    keep = {_rel(p) for p in dt.get_add_actions(flatten=False).column("path").to_pylist()}
    for v in range(first + 1, last + 1):
        keep |= _added_in(root, dt, v)
    return keep


def _earliest_loadable(root: str, version: int) -> DeltaTable:
    # Versions whose log was cleaned up behind a checkpoint cannot be read by anyone; the
    # oldest one that can is where protection starts.
    try:
        return storage.open_delta(root, version)
    except Exception:
        later = sorted(
            int(n.split(".")[0])
            for n in storage.listdir(storage.join(root, "_delta_log"))
            if ".checkpoint" in n and n.endswith(".parquet") and int(n.split(".")[0]) > version
        )
        for v in later:
            try:
                return storage.open_delta(root, v)
            except Exception:
                continue
        raise


def _added_in(root: str, dt: DeltaTable, version: int) -> set[str]:
    commit = storage.join(root, "_delta_log", f"{version:020d}.json")
    try:
        lines = storage.read_text(commit).splitlines()
    except FileNotFoundError:
        # The commit file was cleaned up after a checkpoint: ask delta-rs for that version.
        dt.load_as_version(version)
        return {_rel(p) for p in dt.get_add_actions(flatten=False).column("path").to_pylist()}
    out = set()
    for line in lines:
        if '"add"' in line:
            action = json.loads(line)
            if "add" in action:
                out.add(_rel(action["add"]["path"]))
    return out


def _hidden(name: str) -> bool:
    # Delta's rule: folders starting with _ or . are not data, except partition folders.
    return (name.startswith("_") or name.startswith(".")) and "=" not in name


def _data_files(root: str) -> Iterable[_File]:
    if storage.is_remote(root):
        for rel, st in storage.walk(root):
            *folders, name = rel.split("/")
            if any(_hidden(d) for d in folders):
                continue
            if name.endswith(".parquet") and not name.startswith((".", "_")):
                yield _File(rel, storage.join(root, rel), st.mtime)
        return
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not _hidden(d)]
        rel_folder = os.path.relpath(folder, root)
        for name in files:
            if not name.endswith(".parquet") or name.startswith((".", "_")):
                continue
            path = os.path.join(folder, name)
            try:
                mtime = os.stat(path).st_mtime
            except FileNotFoundError:
                continue
            rel = os.path.normpath(os.path.join(rel_folder, name))
            yield _File(rel, path, mtime)


def _dead_staging(root: str, cutoff: datetime) -> list[str]:
    """Staging folders of compactions that can no longer commit: their process is gone (on
    this host), or (made on another host, which we cannot ask) older than the window."""
    base = storage.join(root, STAGING)
    try:
        names = storage.listdir(base)
    except FileNotFoundError:
        return []
    here = locks.owner_id().split(":", 1)[0]
    out = []
    for name in names:
        folder = storage.join(base, name)
        if "~" not in name:
            continue  # the compaction lease file
        owner = staging_owner(name)
        if owner.split(":", 1)[0] == here:
            gone = locks.holder_is_dead(owner)
        elif storage.is_remote(folder):  # no folders: its newest file's age
            ages = [st.mtime for _, st in storage.walk(folder)]
            gone = not ages or max(ages) < cutoff.timestamp()
        else:
            try:
                gone = os.stat(folder).st_mtime < cutoff.timestamp()
            except FileNotFoundError:
                continue
        if gone:
            out.append(folder)
    return out


def _files_under(folders: list[str]) -> list[str]:
    return [storage.join(folder, rel) for folder in folders for rel, _ in storage.walk(folder)]
