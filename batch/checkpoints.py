"""Checkpoint folders: restore before an attempt, save at notice and at the end (atomically).

The saved copy is a location under the lake root (`catalog.storage`). On a local disk it is a
folder swapped by rename; in an object store (no rename of a folder) each save uploads a new
generation and then points `CURRENT` at it in one PUT, so a restore never sees half a save.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from catalog import storage

CURRENT = "CURRENT"


def _current(store: Path) -> Path | None:
    # A crash between the two renames of `save` leaves only the `.old` copy.
    for p in (store, store.with_name(store.name + ".old")):
        if p.is_dir():
            return p
    return None


def restore(store: Path | str, local: Path) -> bool:
    """Copy the saved checkpoint (if any) into `local`, keeping file times; True if one existed."""
    local.mkdir(parents=True, exist_ok=True)
    if storage.is_remote(str(store)):
        try:
            gen = storage.read_text(storage.join(str(store), CURRENT)).strip()
        except FileNotFoundError:
            return False
        storage.download_tree(storage.join(str(store), gen), str(local))
        return True
    store = Path(store)
    src = _current(store)
    if src is None:
        return False
    shutil.copytree(src, local, dirs_exist_ok=True, symlinks=True)
    return True


def save(local: Path, store: Path | str) -> None:
    """Replace the saved checkpoint with `local`: copy aside, then swap by rename (or point
    CURRENT at a new generation, in an object store)."""
    if not local.is_dir():
        return
    if storage.is_remote(str(store)):
        _save_remote(local, str(store))
        return
    store = Path(store)
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


def _save_remote(local: Path, store: str) -> None:
    gen = f"gen-{uuid.uuid4().hex[:12]}"
    try:
        storage.upload_tree(str(local), storage.join(store, gen))
    except OSError:
        storage.delete_tree(storage.join(store, gen))
        return  # a file vanished mid-copy (the job rewrote it): the previous save stands
    storage.write_bytes(storage.join(store, CURRENT), gen.encode())
    for name in storage.listdir(store):
        if name.startswith("gen-") and name != gen:
            storage.delete_tree(storage.join(store, name))


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
