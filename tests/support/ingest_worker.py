"""Child process for the ingest and streaming tests.

usage: ingest_worker.py MODE ROOT ARGS...
  stream ROOT COUNT [HANG_AT]  append micro-batches 0..COUNT-1 of stream "feed" to s.events,
                               one append_stream call each, printing "ACK <seq>" after each
                               commit; at HANG_AT the batch's data stops half-way through
                               (prints "INFLIGHT") and the process sleeps, to be killed
  ratify ROOT COUNT PAUSE_AT   like stream, but at PAUSE_AT the process stops inside the
                               catalog's ratify step, after delta-rs wrote the Delta version
                               with the app transaction (prints "TENTATIVE"): fault injection
                               at the most dangerous instant
  replay ROOT COUNT            wait for "GO" on stdin, then replay batches 0..COUNT-1 in one
                               append_stream call; prints "RESULT <committed> <skipped>"
  memory ROOT BLOCK TARGET CSV...
                               ingest each CSV in turn with BLOCK-byte blocks into a table with
                               delta.targetFileSize=TARGET; prints the rows and the process's
                               peak RSS after each (JSON)
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
from deltalake import DeltaTable

from support import s3

SCHEMA = pa.schema([("id", pa.int64()), ("seq", pa.int64()), ("v", pa.string())])


def rows(seq: int, n: int = 20) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([seq * 1000 + i for i in range(n)], pa.int64()),
            "seq": pa.array([seq] * n, pa.int64()),
            "v": pa.array([f"s{seq}"] * n),
        }
    )


def hanging(seq: int) -> pa.RecordBatchReader:
    def gen() -> Iterator[pa.RecordBatch]:
        yield from rows(seq).to_batches()
        print("INFLIGHT", flush=True)
        time.sleep(3600)

    return pa.RecordBatchReader.from_batches(SCHEMA, gen())


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    mode, root = sys.argv[1], sys.argv[2]
    lk = s3.open_root(root)
    if mode == "memory":
        block, target, paths = int(sys.argv[3]), sys.argv[4], sys.argv[5:]
        # delta-rs buffers up to delta.targetFileSize of Parquet per file it writes; with the
        # CSV block size that sets the bound. Create the table with it, then adopt it.
        lk.catalog.create_database("m", exist_ok=True)
        location = f"{root}/m_big"
        schema = pacsv.open_csv(paths[0]).schema
        DeltaTable.create(location, schema, configuration={"delta.targetFileSize": target})
        lk.catalog.register_table("m.big", location, governed=True)
        for path in paths:
            r = lk.ingest("m.big", path, user="w", block_size=block)
            print(json.dumps({"path": path, "rows": r.rows, "peak_mb": peak_mb()}), flush=True)
        return
    count = int(sys.argv[3])
    if mode == "replay":
        print("READY", flush=True)
        sys.stdin.readline()
        r = lk.append_stream(
            "s.events", ((s, rows(s)) for s in range(count)), user="w", app_id="feed"
        )
        print(f"RESULT {r.committed} {r.skipped}", flush=True)
        return
    stop_at = int(sys.argv[4]) if len(sys.argv) > 4 else -1
    if mode == "ratify":
        store = lk.store
        real = store.ratify

        def paused(moves, *args, **kwargs):
            if any(p.get("seq") == stop_at for m in moves for _, _, p in m.operations):
                print("TENTATIVE", flush=True)
                time.sleep(3600)
            return real(moves, *args, **kwargs)

        store.ratify = paused
    print("READY", flush=True)
    for seq in range(count):
        data = hanging(seq) if mode == "stream" and seq == stop_at else rows(seq)
        lk.append_stream("s.events", [(seq, data)], user="w", app_id="feed")
        print(f"ACK {seq}", flush=True)


if __name__ == "__main__":
    main()
