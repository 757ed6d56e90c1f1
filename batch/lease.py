"""The scheduler role as a heartbeated lease in the batch store.

A thread of its own takes and renews the lease every `lease_s / 4`, however long a scheduling
round takes, so a live scheduler never loses it and one that dies anywhere frees it `lease_s`
after its last renewal. `held()` is the fencing check: true only while a renewal confirmed the
lease within the last `lease_s` (less a margin), so a scheduler that was paused past its lease
stops acting before it learns who took over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from batch.store import BatchStore

log = logging.getLogger("lakeward.batch")
MARGIN_S = 1.0


class Lease:
    """Hold the named lease for `owner` while this process lives; see the module docstring."""

    def __init__(
        self,
        store: BatchStore,
        name: str,
        owner: str,
        lease_s: float,
        steal: Callable[[str], bool],
    ):
        self.store, self.name, self.owner, self.lease_s, self.steal = (
            store,
            name,
            owner,
            lease_s,
            steal,
        )
        self._valid_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def held(self) -> bool:
        """Whether this process may act as the lease holder now."""
        return time.monotonic() < self._valid_until

    def renew(self) -> bool:
        """Take or renew the lease now; whether it is held."""
        sent = time.monotonic()
        try:
            ok = self.store.take_lease(self.name, self.owner, self.lease_s, self.steal)
        except Exception:  # noqa: BLE001 - a store hiccup: the next beat tries again
            log.warning("scheduler lease renewal failed", exc_info=True)
            return self.held()
        self._valid_until = sent + self.lease_s - MARGIN_S if ok else 0.0
        return ok

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="lakeward-scheduler-lease", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.renew()
            self._stop.wait(self.lease_s / 4)

    def stop(self, drop: bool = True) -> None:
        """Stop renewing; `drop` hands the role over at once instead of after the lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if drop and self._valid_until:
            self._valid_until = 0.0
            self.store.drop_lease(self.name, self.owner)
