"""Child process for the liveness tests: holds a table lock or the scheduler lease.

usage: python -m support.lease_worker MODE ROOT [ARG]
  pause-commit: transaction writes sales.orders, prints LOCKED, waits for ROOT/go, commits
  pause-write:  same, but writes once more before committing
  hold ARG:     transaction writes, prints LOCKED, stays alive ARG seconds, commits
  appends:      appends batch 0, 1, 2, ... until ROOT/stop exists; prints ACK n or FAIL n why
  scheduler ARG: holds the batch store's scheduler lease (ARG s) and prints
                "<monotonic time> <held>" every 20 ms
Ends by printing COMMITTED, or CONFLICT/ABORTED with the error, and exits.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pyarrow as pa

from catalog.errors import CommitConflict, TransactionError

from support import s3


def rows(batch: int, n: int = 10) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([batch * 1000 + i for i in range(n)], pa.int64()),
            "region": pa.array(["eu"] * n),
            "amount": pa.array([float(batch)] * n),
        }
    )


def wait_for(path: Path) -> None:
    while not path.exists():
        time.sleep(0.01)


def scheduler(root: Path, lease_s: float) -> None:
    from batch.lease import Lease
    from batch.scheduler import owner_dead
    from batch.store import BatchStore
    from catalog.locks import owner_id

    with s3.open_root(root) as lk:
        store = BatchStore(lk.store.url)
        lease = Lease(store, "scheduler", f"{owner_id()}:test", lease_s, owner_dead)
        lease.start()
        while True:
            print(f"{time.monotonic():.4f} {lease.held()}", flush=True)
            time.sleep(0.02)


def main() -> None:
    mode, root = sys.argv[1], Path(sys.argv[2])
    arg = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    if mode == "scheduler":
        scheduler(root, arg)
        return
    lk = s3.open_root(root)
    if mode == "appends":
        n = 0
        while not (root / "stop").exists():
            try:
                lk.write("sales.orders", rows(n), user="worker")
                print(f"ACK {n}", flush=True)
            except Exception as e:  # noqa: BLE001 - reported; the test checks nothing of it shows
                print(f"FAIL {n} {type(e).__name__}", flush=True)
            n += 1
        lk.close()
        return
    tx = lk.begin(user="worker", timeout_s=3600)
    try:
        tx.write("sales.orders", rows(1))
        print("LOCKED", flush=True)
        if mode == "hold":
            time.sleep(arg)
        else:
            wait_for(root / "go")
            if mode == "pause-write":
                tx.write("sales.orders", rows(2))
        tx.commit()
        print("COMMITTED", flush=True)
    except CommitConflict as e:
        print(f"CONFLICT {e}", flush=True)
    except TransactionError as e:
        print(f"ABORTED {e}", flush=True)
    lk.close()


if __name__ == "__main__":
    main()
