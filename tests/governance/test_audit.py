"""When the audit queue moves into system.audit: a short-lived lake (a CLI command) leaves its
few records queued for the next flush instead of a Delta commit each; nothing is lost."""

from __future__ import annotations

import time

import pyarrow as pa

import lake
from governance import audit


def _lake(root, interval: float = 2.0) -> lake.Lake:
    root.mkdir(parents=True, exist_ok=True)
    (root / "lake.toml").write_text(f"[audit]\nflush_interval_s = {interval}\n")
    return lake.connect(root)


def _queued(root) -> list[dict]:
    with _lake(root, 0) as lk:
        return [r for _, r in lk.store.audit_pending(1000)]


def test_a_short_lived_lake_leaves_its_records_queued_for_the_next_reader(tmp_path):
    root = tmp_path / "lake"
    with _lake(root) as lk:
        lk.catalog.create_database("s")
        lk.catalog.create_table("s.t", pa.schema([("id", pa.int64())]))
        lk.sql("SELECT count(*) AS n FROM s.t", user="ann")
    queued = _queued(root)
    assert any(r["user"] == "ann" and r["action"] == "sql" for r in queued), queued
    with _lake(root) as lk:
        # Reading the trail moves what is queued first: the earlier lake's query is there.
        t = lk.sql("SELECT a.user, a.action FROM system.audit a", user="bob")
        assert {"user": "ann", "action": "sql"} in t.to_pylist()
        # Only bob's read itself is left in the queue.
        assert [r["user"] for _, r in lk.store.audit_pending(1000)] == ["bob"]


def test_records_that_waited_long_enough_are_flushed_at_close(tmp_path, monkeypatch):
    root = tmp_path / "lake"
    monkeypatch.setattr(audit, "CLOSE_FLUSH_AGE_S", 0.0)
    with _lake(root) as lk:
        lk.sql("SELECT 1 AS one", user="ann")
    assert _queued(root) == []


def test_a_lake_whose_flusher_ran_flushes_what_is_left_at_close(tmp_path):
    root = tmp_path / "lake"
    with _lake(root, 0.5) as lk:
        lk.sql("SELECT 1 AS one", user="ann")
        deadline = time.monotonic() + 30
        while not lk.audit._rounds and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lk.audit._rounds
        lk.sql("SELECT 2 AS two", user="ann")  # queued after its round, closed before the next
    assert _queued(root) == []
