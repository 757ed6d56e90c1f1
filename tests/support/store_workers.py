"""Process bodies for the metadata-store concurrency tests (spawned, so importable here)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from catalog.errors import CommitConflict
from catalog.store import Ratify, load_store


def first_connect(url: str, start_at: float) -> str:
    """Open the store (migrating an empty database) at the same moment as the others."""
    time.sleep(max(0.0, start_at - time.time()))
    try:
        load_store(url).close()
    except Exception as e:  # noqa: BLE001 - the test reports what failed
        return f"{type(e).__name__}: {str(e)[:200]}"
    return "ok"


def lock_churn(url: str, table_id: int, seconds: float, start_at: float) -> dict[str, int]:
    """Take and release one live table's lock as fast as possible; count what try_lock said."""
    st = load_store(url)
    time.sleep(max(0.0, start_at - time.time()))
    out = {"taken": 0, "busy": 0, "dropped": 0}
    end = time.time() + seconds
    while time.time() < end:
        token = uuid.uuid4().hex
        version, holder = st.try_lock(table_id, token, "churn", 60.0)
        if version is not None:
            out["taken"] += 1
            st.unlock(token)
        elif holder is not None:
            out["busy"] += 1
        else:
            out["dropped"] += 1  # a live table reported as gone: the bug this guards against
    st.close()
    return out


def increment(url: str, table_id: int, n: int, start_at: float) -> dict[str, Any]:
    """n times: lock, read the version under the lock, ratify version + 1 from it."""
    st = load_store(url)
    time.sleep(max(0.0, start_at - time.time()))
    done = conflicts = 0
    while done < n:
        token = uuid.uuid4().hex
        version, _holder = st.try_lock(table_id, token, "inc", 60.0)
        if version is None:
            continue
        try:
            st.ratify(
                [Ratify(table_id, version, version + 1, ((version + 1, "WRITE", {}),))],
                token,
                "inc",
                token,
                close_txn=False,
            )
            done += 1
        except CommitConflict:
            conflicts += 1  # only a stale version read under the lock can cause this
            st.unlock(token)
    st.close()
    return {"done": done, "conflicts": conflicts}


def lease_rounds(url: str, me: str, rounds: int, start_at: float, step_s: float) -> list[int]:
    """At the start of each time slot, try to take that round's (expired) lease; rounds won."""
    from batch.store import BatchStore

    st = BatchStore(url)
    won = []
    for r in range(rounds):
        time.sleep(max(0.0, start_at + r * step_s - time.time()))
        if st.take_lease(f"race-{r}", me, 60.0, lambda _h: False):
            won.append(r)
    st.close()
    return won
