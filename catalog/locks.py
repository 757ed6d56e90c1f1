"""Per-table write locks in the metadata store: heartbeated leases with fencing.

A lock is a lease on the table's row (`lock_token`, `lock_expires`). While a process holds
locks, one heartbeat thread per store renews them every `lease_s / 3`; a holder that dies on any
host stops renewing, and its tables are free `lease_s` after its last renewal. Holders on this
machine (same kernel boot and PID namespace) are also checked directly: a dead one's locks are
taken at once.

Fencing: a holder that was paused (SIGSTOP, a VM freeze, a network cut) longer than its lease may
have lost its locks without knowing. Before it writes to a table's log and before it ratifies it
calls `check`, which fails unless a renewal confirmed the lock within the last lease; the ratify
itself is a compare-and-set on the lock token, so a holder whose lock was taken can never move a
pointer, even if it is paused between `check` and ratify.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime

from catalog.errors import CommitConflict
from catalog.store import LockHolder, MetadataStore

log = logging.getLogger("lakeward.locks")

# A holder's own view of its lease ends this long before the store's: clocks drift and a
# renewal's round trip takes time.
MARGIN_S = 1.0


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "?"


def _node_id() -> str:
    """This kernel boot and PID namespace: processes that can see each other's /proc entries."""
    boot = _read("/proc/sys/kernel/random/boot_id").replace("-", "")[:12]
    try:
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        pidns = 0
    return f"{socket.gethostname()}@{boot}.{pidns}"


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def owner_id() -> str:
    """node:pid:start-time of this process; the start time guards against pid reuse."""
    pid = os.getpid()
    return f"{_node_id()}:{pid}:{_start_ticks(pid)}"


def holder_is_dead(owner: str) -> bool:
    """True only when the holder is a process of this node that no longer exists."""
    node, _, rest = owner.partition(":")
    pid_s, _, ticks = rest.partition(":")
    if node != _node_id() or not pid_s.isdigit():
        return False
    pid = int(pid_s)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _start_ticks(pid) != ticks


@dataclass
class _Held:
    lease_s: float
    valid_until: float  # time.monotonic() past which this process no longer trusts the lock


class Heartbeat:
    """Renews every lock this process holds in one store, from one daemon thread."""

    def __init__(self, store: MetadataStore):
        self._store = weakref.ref(store)
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, token: str, taken_at: float, lease_s: float) -> None:
        """Record a lock taken by a statement sent at `taken_at` (monotonic)."""
        with self._lock:
            self._held[token] = _Held(lease_s, taken_at + lease_s - MARGIN_S)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop,
                    args=(lease_s / 3,),
                    name="lakeward-lock-heartbeat",
                    daemon=True,
                )
                self._thread.start()

    def valid(self, token: str) -> bool:
        """Whether this process may still act as the holder of `token`'s locks."""
        with self._lock:
            held = self._held.get(token)
        return held is not None and time.monotonic() < held.valid_until

    def release(self, token: str) -> None:
        with self._lock:
            self._held.pop(token, None)

    def _loop(self, pause: float) -> None:
        while True:
            time.sleep(pause)  # a lock just taken is good for its whole lease
            store = self._store()
            with self._lock:
                held = dict(self._held)
                if not held or store is None or getattr(store, "closed", False):
                    self._held.clear()
                    self._thread = None
                    return
            pause = min(h.lease_s for h in held.values()) / 3
            for lease_s in {h.lease_s for h in held.values()}:
                group = {t: h for t, h in held.items() if h.lease_s == lease_s}
                sent = time.monotonic()
                try:
                    alive = store.renew_locks(group, lease_s)
                except Exception:  # noqa: BLE001 - the next beat tries again; fencing covers it
                    log.warning("lock heartbeat failed", exc_info=True)
                    continue
                with self._lock:
                    for token, h in group.items():
                        if self._held.get(token) is not h:
                            continue  # released or taken again while we renewed
                        if token in alive:
                            h.valid_until = sent + lease_s - MARGIN_S
                        else:  # released, or taken over after our lease ran out
                            del self._held[token]
            del store


_beats: weakref.WeakKeyDictionary[MetadataStore, Heartbeat] = weakref.WeakKeyDictionary()
_beats_lock = threading.Lock()


def heartbeat(store: MetadataStore) -> Heartbeat:
    """The heartbeat of this store in this process (created on first use)."""
    with _beats_lock:
        beat = _beats.get(store)
        if beat is None:
            beat = _beats[store] = Heartbeat(store)
        return beat


def _stealable(holder: LockHolder) -> bool:
    if holder.expired or holder_is_dead(holder.owner):
        return True
    if holder.txn_state is not None and holder.txn_state != "ACTIVE":
        return True  # its transaction ended; the lock is a leftover
    return holder.txn_idle_until is not None and holder.txn_idle_until < datetime.now(UTC)


def _hold(store: MetadataStore, token: str, sent: float, lease_s: float) -> bool:
    """Start renewing a lock just taken by a statement sent at `sent`; False if it is gone."""
    if time.monotonic() - sent > lease_s / 3:
        # The statement waited (on a row another client held): the lease counted from when it
        # was sent is mostly spent, so renew it now rather than at the next beat.
        sent = time.monotonic()
        if token not in store.renew_locks([token], lease_s):
            return False
    heartbeat(store).hold(token, sent, lease_s)
    return True


def acquire(
    store: MetadataStore, table_id: int, token: str, lease_s: float, wait_s: float
) -> int | None:
    """Take the table's write lock, waiting up to `wait_s`; take it from dead or expired holders.

    Returns the table's ratified version read under the lock (None: the table was dropped). The
    lock is renewed by this process's heartbeat until it is released or ratified.
    """
    owner = owner_id()
    deadline = time.monotonic() + wait_s
    delay = 0.002
    while True:
        sent = time.monotonic()
        pointer, holder = store.try_lock(table_id, token, owner, lease_s)
        if holder is None:
            if pointer is not None and not _hold(store, token, sent, lease_s):
                continue
            return pointer
        if _stealable(holder):
            sent = time.monotonic()
            pointer = store.steal_lock(table_id, holder.token, token, owner, lease_s)
            if pointer is not None and _hold(store, token, sent, lease_s):
                return pointer
            continue
        if time.monotonic() >= deadline:
            raise CommitConflict(
                f"table is locked by another writer for more than {wait_s:g} s; retry later"
            )
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.05)


def check(store: MetadataStore, token: str) -> None:
    """Fencing: raise CommitConflict unless this process still surely holds `token`'s locks."""
    if not heartbeat(store).valid(token):
        raise CommitConflict(
            "lost the table lock: this writer was paused or cut off from the metadata store "
            "longer than its lease; nothing was committed, retry"
        )


def valid(store: MetadataStore, token: str) -> bool:
    """Whether this process still surely holds `token`'s locks (no round trip: its own lease)."""
    return heartbeat(store).valid(token)


def holds(store: MetadataStore, table_id: int, token: str) -> bool:
    """Whether `token` holds the table's lock now, by the store and by this process's lease."""
    if not heartbeat(store).valid(token):
        return False
    holder = store.lock_holder(table_id)
    return holder is not None and holder.token == token


def released(store: MetadataStore, token: str) -> None:
    """Stop renewing `token`'s locks (they were released or ratified)."""
    heartbeat(store).release(token)
