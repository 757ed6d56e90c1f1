"""Tunables of the catalog, read from the lake's config file by `lake`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    txn_timeout_s: float = 300.0  # an explicit transaction idle longer than this is aborted
    # A table lock outlives its holder's last heartbeat (every third of this) by this long.
    write_lease_s: float = 15.0
    lock_wait_s: float = 60.0  # how long a writer waits for a busy table before CommitConflict
    checkpoint_interval: int = 100  # write a Delta checkpoint every N ratified versions
    auto_compact: bool = True  # compact small files in the background after commits
