"""Checkpoint folders: restore before an attempt, save at notice and at the end (atomically)."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path


def _current(store: Path) -> Path | None:
    # A crash between the two renames of `save` leaves only the `.old` copy.
    for p in (store, store.with_name(store.name + ".old")):
        if p.is_dir():
            return p
    return None


def restore(store: Path, local: Path) -> bool:
    """Copy the saved checkpoint (if any) into `local`, keeping file times; True if one existed."""
    local.mkdir(parents=True, exist_ok=True)
    src = _current(store)
    if src is None:
        return False
    shutil.copytree(src, local, dirs_exist_ok=True, symlinks=True)
    return True


def save(local: Path, store: Path) -> None:
    """Replace the saved checkpoint with `local`: copy aside, then swap by rename."""
    if not local.is_dir():
        return
    store.parent.mkdir(parents=True, exist_ok=True)
    tmp = store.with_name(f"{store.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(local, tmp, symlinks=True)
    except (OSError, shutil.Error):
        shutil.rmtree(tmp, ignore_errors=True)
        return  # a file vanished mid-copy (the job rewrote it): the previous save stands
    old = store.with_name(store.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if store.exists():
        os.rename(store, old)
    os.rename(tmp, store)
    shutil.rmtree(old, ignore_errors=True)


def newest_mtime(folder: Path) -> float | None:
    """The newest modification time of any file below `folder` (None if there is none)."""
    best = None
    if not folder.is_dir():
        return None
    for root, _dirs, files in os.walk(folder):
        for f in files:
            with contextlib.suppress(OSError):
                m = os.lstat(os.path.join(root, f)).st_mtime
                best = m if best is None or m > best else best
    return best
