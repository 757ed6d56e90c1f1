"""Child process for crash and concurrency tests: writes until killed, acknowledging each commit.

usage: crash_worker.py ROOT MODE WORKER [COUNT]
  MODE append: single appends to sales.orders; prints "ACK append <batch>"
  MODE txn:    transactions writing sales.orders and sales.customers; prints "ACK txn <batch>"
  MODE mixed:  alternates the two
  MODE hang:   begins a transaction, writes both tables, prints "WROTE", then sleeps (to be killed)
"""

from __future__ import annotations

import sys
import time

import pyarrow as pa

from support import s3


def rows(batch: int, n: int = 20) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([batch * 1000 + i for i in range(n)], pa.int64()),
            "region": pa.array(["eu", "us"] * (n // 2)),
            "amount": pa.array([float(batch)] * n),
        }
    )


def cust(batch: int) -> pa.Table:
    return pa.table({"id": pa.array([batch], pa.int64()), "name": [f"b{batch}"]})


def main() -> None:
    root, mode, worker = sys.argv[1], sys.argv[2], int(sys.argv[3])
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 10**9
    lk = s3.open_root(root)
    print("READY", flush=True)
    if mode == "hang":
        tx = lk.begin(user=f"w{worker}", timeout_s=3600)
        tx.write("sales.orders", rows(worker * 100000))
        tx.write("sales.customers", cust(worker * 100000))
        print("WROTE", flush=True)
        time.sleep(3600)
    for i in range(count):
        batch = worker * 100000 + i
        kind = mode if mode != "mixed" else ("txn" if i % 2 else "append")
        if kind == "append":
            lk.write("sales.orders", rows(batch), user=f"w{worker}")
        else:
            with lk.transaction(user=f"w{worker}") as tx:
                tx.write("sales.orders", rows(batch))
                tx.write("sales.customers", cust(batch))
        print(f"ACK {kind} {batch}", flush=True)


if __name__ == "__main__":
    main()
