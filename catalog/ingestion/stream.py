"""Exactly-once streaming appends: micro-batches keyed by (app_id, sequence number).

Each micro-batch is committed together with a Delta application transaction
`txn(appId=app_id, version=seq)`. Before writing, with the table lock held, the writer reads
the sequence the table already records for app_id and skips the batch if it is not newer. A
replay after a crash (or two replayers racing) therefore commits every batch exactly once:
the check and the commit happen under one lock, and the recorded sequence becomes visible in
the same ratified commit as the batch's rows (the way Lake Formation governed tables take
Kinesis streams).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from deltalake import DeltaTable

from catalog.data import to_arrow
from catalog.errors import InvalidArgument
from catalog.ingestion.port import TableSink
from catalog.writes import app_version


@dataclass
class StreamResult:
    """What `append_stream` did: batches committed now, batches found already committed."""

    table: str
    app_id: str
    committed: int = 0
    skipped: int = 0
    last_seq: int | None = None  # the newest sequence the table records for app_id afterwards


def committed_seq(sink: TableSink, table: str, app_id: str) -> int | None:
    """The newest sequence number of `app_id` committed to `table`, or None."""
    _check_app_id(app_id)
    info = sink.lookup(table)
    return sink.app_version(info, sink.snapshot(info).version, sink.stream_id(app_id))


def _check_app_id(app_id: Any) -> None:
    if not isinstance(app_id, str) or not app_id.strip():
        raise InvalidArgument("append_stream needs a non-empty app_id naming the stream")


def _check_seq(seq: Any, previous: int | None) -> int:
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise InvalidArgument(f"a micro-batch sequence number must be an int >= 0, not {seq!r}")
    if previous is not None and seq <= previous:
        raise InvalidArgument(
            f"micro-batch sequence numbers must increase: {seq} follows {previous}"
        )
    return seq


def append_stream(
    sink: TableSink,
    table: str,
    batches: Iterable[tuple[int, Any]],
    *,
    app_id: str,
) -> StreamResult:
    """Append `(seq, data)` micro-batches to `table`, each exactly once per `app_id`.

    `data` is anything a write takes. Sequence numbers must increase; gaps are allowed. A
    batch whose seq is not newer than what the table records for app_id is skipped. Each
    committed batch is one ratified commit, so a crash loses at most the batch in flight, and
    replaying the same batches afterwards commits only those that are missing.
    """
    _check_app_id(app_id)
    stored = sink.stream_id(app_id)
    result = StreamResult(table, app_id)
    # Fast path for replays: what was already ratified needs no lock to be skipped. Whether a
    # newer batch commits is decided under the lock (see `newer` below).
    known = committed_seq(sink, table, app_id)
    previous: int | None = None
    for item in batches:
        try:
            seq, data = item
        except (TypeError, ValueError):
            raise InvalidArgument("append_stream takes (seq, data) pairs") from None
        seq = previous = _check_seq(seq, previous)
        if known is not None and seq <= known:
            result.skipped += 1
            continue

        def newer(dt: DeltaTable, seq: int = seq) -> bool:
            recorded = app_version(dt, stored)
            return recorded is None or seq > recorded

        done = sink.append_once(
            table,
            to_arrow(data),
            app_txns=[(stored, seq)],
            precheck=newer,
            params={"app_id": app_id, "seq": seq},
            statement=f"append {table} (stream {app_id} batch {seq})",
        )
        if done:
            result.committed += 1
        else:
            result.skipped += 1
    result.last_seq = committed_seq(sink, table, app_id)
    return result
