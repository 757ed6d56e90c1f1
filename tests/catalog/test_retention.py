"""The log and the store stay bounded: checkpoints and expired-log clean-up follow the table's
retention (delta.logRetentionDuration), time travel inside the window keeps working and outside
it fails clearly, the store's commit and audit rows do not grow without bound, and system.audit
compacts itself like any table."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from catalog import retention, storage
from lake.errors import InvalidArgument

from support.lakes import lake_with_settings, orders

HOUR = 3600.0


def log_dir(lk, name: str = "sales.orders") -> Path:
    return Path(lk.catalog.describe(name)["location"]) / "_delta_log"


def versions_in_log(lk) -> list[int]:
    log = storage.join(lk.catalog.describe("sales.orders")["location"], "_delta_log")
    return sorted(int(n[:20]) for n in storage.listdir(log) if n.endswith(".json") and n[0] != "_")


def backdate_log(lk, upto: int, seconds: float) -> None:
    """Age the log files of versions <= upto, as if they had been written `seconds` ago."""
    then = time.time() - seconds
    for p in log_dir(lk).iterdir():
        if p.name[:20].isdigit() and int(p.name[:20]) <= upto:
            os.utime(p, (then, then))


def count(lk, sql: str) -> int:
    return lk.sql(sql, user="u")["n"][0].as_py()


@pytest.fixture
def short(tmp_path):
    # A checkpoint every 5 versions; background compaction off (it would add versions).
    lk = lake_with_settings(tmp_path, checkpoint_interval=5, auto_compact="false")
    lk.catalog.set_properties("sales.orders", {"delta.logRetentionDuration": "interval 1 hour"})
    yield lk
    lk.close()


@pytest.mark.local_disk  # ages log files with os.utime
def test_log_cleanup_follows_retention_and_time_travel_inside_still_works(short):
    lk = short
    assert versions_in_log(lk) == [0, 1]  # create, SET TBLPROPERTIES
    assert lk.history("sales.orders")[0]["operation"] == "SET TBLPROPERTIES"
    for b in range(2, 13):  # versions 2..12, checkpoints at 5 and 10
        lk.write("sales.orders", orders(b * 10, 10), user="etl")
    stamps = {h["version"]: h["timestamp"] for h in lk.history("sales.orders")}
    # Versions 0..7 are past the 1-hour window; 8.. are inside it.
    backdate_log(lk, 7, 2 * HOUR)
    for b in range(13, 16):  # version 15 makes the next checkpoint, and cleans up
        lk.write("sales.orders", orders(b * 10, 10), user="etl")
    # The oldest version inside the window (8) is rebuilt from checkpoint 5: 5.. stay readable.
    assert versions_in_log(lk) == list(range(5, 16))
    assert retention.oldest_readable(str(log_dir(lk).parent)) == 5
    for v in (5, 8, 12, 15):  # inside the window (and the versions its oldest one needs)
        n = count(lk, f"SELECT count(*) AS n FROM sales.orders VERSION AS OF {v}")
        assert n == (v - 1) * 10
    at = stamps[9].isoformat()
    assert count(lk, f"SELECT count(*) AS n FROM sales.orders TIMESTAMP AS OF '{at}'") == 80
    # Outside: a clear error that says why and what can still be read.
    with pytest.raises(InvalidArgument, match=r"version 3 of sales.orders is older than its log"):
        lk.sql("SELECT count(*) FROM sales.orders VERSION AS OF 3", user="u")
    with pytest.raises(InvalidArgument, match="oldest version it can read is 5"):
        lk.catalog.raw.version_as_of(lk.catalog.table("sales.orders"), version=4)
    before = (stamps[5] - timedelta(milliseconds=1)).isoformat()
    with pytest.raises(InvalidArgument, match="older than its log retention"):
        lk.sql(f"SELECT count(*) FROM sales.orders TIMESTAMP AS OF '{before}'", user="u")
    # The store keeps exactly the readable versions: history and timestamps agree with the log.
    assert [h["version"] for h in lk.history("sales.orders")] == list(range(15, 4, -1))
    # Nothing else was disturbed: delta-rs reads the current version and every kept one.
    assert DeltaTable(str(log_dir(lk).parent)).to_pyarrow_table().num_rows == 140
    assert DeltaTable(str(log_dir(lk).parent), version=5).to_pyarrow_table().num_rows == 40


def test_nothing_is_cleaned_inside_the_window(short):
    lk = short
    for b in range(2, 23):  # 4 checkpoints, all inside the 1-hour window
        lk.write("sales.orders", orders(b * 10, 10), user="etl")
    assert versions_in_log(lk) == list(range(0, 23))
    assert len(lk.history("sales.orders")) == 23
    assert count(lk, "SELECT count(*) AS n FROM sales.orders VERSION AS OF 0") == 0


@pytest.mark.local_disk  # ages log files with os.utime
def test_checkpoint_and_cleanup_never_cover_an_unratified_version(short):
    lk = short
    for b in range(2, 9):
        lk.write("sales.orders", orders(b * 10, 10), user="etl")
    backdate_log(lk, 8, 2 * HOUR)
    info = lk.catalog.table("sales.orders")
    # A writer's tentative commit (delta-rs wrote version 9, the store never ratified it).
    write_deltalake(info.location, orders(999, 1), mode="append")
    assert lk.catalog.raw.current_version(info) == 8 and versions_in_log(lk)[-1] == 9
    dt = DeltaTable(info.location, version=8)
    retention.checkpoint_and_clean(lk.store, info, dt)
    last = json.loads((log_dir(lk) / "_last_checkpoint").read_text())
    assert last["version"] == 8  # the ratified version, not the tentative one
    assert not (log_dir(lk) / f"{9:020d}.checkpoint.parquet").exists()
    assert (log_dir(lk) / f"{9:020d}.json").exists()  # left for the rollback, untouched
    # The next writer rolls the tentative version back; the table reads as ratified.
    lk.write("sales.orders", orders(500, 10), user="etl")
    assert count(lk, "SELECT count(*) AS n FROM sales.orders") == 80
    assert count(lk, "SELECT count(*) AS n FROM sales.orders WHERE id = 999") == 0
    assert count(lk, "SELECT count(*) AS n FROM sales.orders VERSION AS OF 8") == 70


def test_bad_retention_is_refused(short):
    with pytest.raises(InvalidArgument, match="not a Delta interval"):
        short.catalog.set_properties("sales.orders", {"delta.logRetentionDuration": "30 days"})
    with pytest.raises(InvalidArgument, match="set, not removed"):
        short.catalog.set_properties("sales.orders", {"delta.logRetentionDuration": None})
    assert retention.parse_interval("interval 2 weeks") == timedelta(days=14)
    assert DeltaTable(short.catalog.describe("sales.orders")["location"]).version() == 1


def test_store_rows_stay_bounded(tmp_path):
    lk = lake_with_settings(tmp_path, checkpoint_interval=10, auto_compact="false")
    try:
        lk.catalog.set_properties(
            "sales.orders", {"delta.logRetentionDuration": "interval 1 second"}
        )
        sizes = []
        for rnd in range(4):
            for b in range(25):
                lk.write("sales.orders", orders(rnd * 1000 + b * 10, 10), user="etl")
                with lk.transaction(user="etl") as tx:  # one explicit transaction each
                    tx.write("sales.orders", orders(rnd * 1000 + b * 10 + 5, 1))
            time.sleep(1.1)  # what was written is now past the window
            sizes.append(len(lk.history("sales.orders")))
        # 201 versions were written, 50 a round; the store keeps what the log keeps: the window
        # (under 1 s of versions) and up to two checkpoint intervals, in every round alike.
        assert lk.catalog.raw.current_version(lk.catalog.table("sales.orders")) == 201
        assert max(sizes) <= 50 + 2 * 10, sizes
        assert sizes[-1] <= sizes[0] + 10, sizes
        oldest = lk.history("sales.orders")[-1]["version"]
        assert versions_in_log(lk)[0] == oldest >= 150  # the last round's checkpoint
        txns = lk.store.row_counts()["transactions"]
        assert txns >= 100  # ended ones are kept for a day, for their messages
        assert lk.store.prune_transactions(datetime.now(UTC) + timedelta(seconds=1)) == txns
        assert lk.store.row_counts()["transactions"] == 0
        # Flushed audit records leave the queue.
        lk.audit.flush()
        assert lk.store.row_counts()["audit_pending"] == 0
        assert count(lk, "SELECT count(*) AS n FROM sales.orders") == 4 * 25 * 11
    finally:
        lk.close()


def test_system_audit_compacts_itself(tmp_path):
    root = tmp_path / "lake"
    root.mkdir()
    (root / "lake.toml").write_text("[audit]\nflush_interval_s = 0\n")  # flushed by hand here
    import lake

    with lake.connect(root) as lk:
        lk.catalog.create_database("sales")
        lk.catalog.create_table("sales.orders", pa.schema([("id", pa.int64())]))
        lk.audit.ensure_table()
        lk.catalog.set_properties("system.audit", {"compaction.min_small_files": "8"})
        for i in range(30):  # 30 flushes: 30 small appends to system.audit
            lk.sql(f"SELECT {i} AS n FROM sales.orders", user="u")
            assert lk.audit.flush() >= 1
        assert lk.autocompact.wait_idle(60)
        d = lk.catalog.describe("system.audit")
        ops = [h["operation"] for h in lk.history("system.audit")]
        assert "OPTIMIZE" in ops and ops.count("AUDIT") >= 30
        assert d["num_files"] < 8, d["num_files"]
        got = lk.sql("SELECT seq, statement FROM system.audit", user="lakeward")
        statements = got["statement"].to_pylist()
        assert len(set(got["seq"].to_pylist())) == got.num_rows  # each record exactly once
        assert all(any(f"SELECT {i} AS n" in s for s in statements) for i in range(30))
        assert lk.store.row_counts()["audit_pending"] <= 1  # at most the last query's record
