"""Roll a Delta log back to the catalog's ratified version.

Versions past the catalog pointer were written by a commit that never reached its commit point
(the store transaction in `MetadataStore.ratify`), so no reader ever used them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from catalog import storage
from catalog.errors import CommitConflict

_VERSIONED = re.compile(r"^(\d{20})\.")


def log_versions(location: str) -> list[int]:
    """Versions that have a commit file in the table's `_delta_log`."""
    out = []
    for name in storage.listdir(storage.join(location, "_delta_log")):
        if name.endswith(".json") and len(name) == 25 and name[:20].isdigit():
            out.append(int(name[:20]))
    return sorted(out)


def latest_version(location: str) -> int:
    """The newest version in the table's `_delta_log` (-1 if it has none)."""
    versions = log_versions(location)
    return versions[-1] if versions else -1


def has_versions_past(location: str, pointer: int) -> bool:
    """Whether the log holds a version newer than `pointer`: versions are contiguous and a
    rollback deletes newest first, so then the version right after it exists (one stat, where
    listing a long log costs a read of every entry)."""
    return storage.exists(storage.join(location, "_delta_log", f"{pointer + 1:020d}.json"))


def rollback_past(
    location: str, pointer: int, still_ours: Callable[[], bool] | None = None
) -> list[int]:
    """Delete every log file of a version newer than `pointer`; returns the versions removed.

    Newest first, so an interrupted rollback leaves a contiguous log that a later call finishes.
    Orphaned data files are left for vacuum. `still_ours()` is asked before each deletion
    (fencing): a lock holder paused past its lease must not delete what the next holder ratified.
    """
    log = storage.join(location, "_delta_log")
    if not has_versions_past(location, pointer):
        return []
    doomed: dict[int, list[str]] = {}
    for name in storage.listdir(log):
        m = _VERSIONED.match(name)
        if m and int(m.group(1)) > pointer:
            doomed.setdefault(int(m.group(1)), []).append(name)
        elif re.match(r"^\d{20}\.\d{20}\.compacted\.json$", name):
            # A compacted log file spanning past the pointer summarises unratified commits.
            hi = int(name.split(".")[1])
            if hi > pointer:
                doomed.setdefault(hi, []).append(name)
    last = storage.join(log, "_last_checkpoint")
    if doomed and still_ours is not None and not still_ours():
        raise CommitConflict(
            "lost the table lock before rolling back (this writer was paused longer than its "
            "lease); nothing was committed, retry"
        )
    if doomed and storage.exists(last):
        try:
            if int(json.loads(storage.read_text(last))["version"]) > pointer:
                storage.delete(last)
        except (ValueError, KeyError, OSError):
            storage.delete(last)
    for version in sorted(doomed, reverse=True):
        # The commit JSON goes last: while it exists the version still looks whole to a lister.
        for name in sorted(
            doomed[version], key=lambda n: n.endswith(".json") and n.count(".") == 1
        ):
            if still_ours is not None and not still_ours():
                raise CommitConflict(
                    "lost the table lock while rolling back (this writer was paused longer than "
                    "its lease); nothing was committed, retry"
                )
            storage.delete(storage.join(log, name))
    return sorted(doomed)
