"""Per-table write locks held in the metadata store, with liveness checks for crashed holders."""

from __future__ import annotations

import os
import random
import socket
import time
from datetime import UTC, datetime

from catalog.errors import CommitConflict
from catalog.store import MetadataStore

_HOST = socket.gethostname()


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def owner_id() -> str:
    """host:pid:start-time of this process; the start time guards against pid reuse."""
    pid = os.getpid()
    return f"{_HOST}:{pid}:{_start_ticks(pid)}"


def holder_is_dead(owner: str) -> bool:
    """True only when the holder is a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_s, _, ticks = rest.partition(":")
    if host != _HOST or not pid_s.isdigit():
        return False
    pid = int(pid_s)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _start_ticks(pid) != ticks


def acquire(
    store: MetadataStore, table_id: int, token: str, lease_s: float, wait_s: float
) -> int | None:
    """Take the table's write lock, waiting up to `wait_s`; steal it from dead or expired holders.

    Returns the table's ratified version read under the lock (None: the table was dropped).
    """
    owner = owner_id()
    deadline = time.monotonic() + wait_s
    delay = 0.002
    while True:
        held_by, pointer = store.try_lock(table_id, token, owner, lease_s)
        if held_by is None:
            return pointer
        info = store.lock_holder(table_id)
        if info is not None and (
            info["expires_at"] < datetime.now(UTC) or holder_is_dead(info["owner"])
        ):
            if store.steal_lock(table_id, info["token"], token, owner, lease_s):
                return store.pointers([table_id]).get(table_id)
            continue
        if time.monotonic() >= deadline:
            raise CommitConflict(
                f"table is locked by another writer for more than {wait_s:g} s; retry later"
            )
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.05)
