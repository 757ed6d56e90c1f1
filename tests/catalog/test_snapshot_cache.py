"""Snapshots kept on disk for the next process: used only for exactly the version they were built
from, never needing delta-rs or a footer read, and never stale."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

from catalog import snapshot, snapshot_cache, storage
from catalog.snapshot import Snapshot

from support.lakes import orders


def _table(root: Path, versions: int) -> str:
    loc = str(root / "t")
    for v in range(versions):
        write_deltalake(loc, pa.table({"id": [v * 10 + i for i in range(10)]}), mode="append")
    return loc


@pytest.fixture
def cold():
    """Each test starts, and every `cold()` call continues, as a fresh process would."""
    snapshot.clear_caches()
    yield snapshot.clear_caches
    snapshot.clear_caches()


def _refuse(*args, **kwargs):
    raise AssertionError("the snapshot was not read from disk")


def test_a_saved_version_opens_without_delta_rs_or_footers(tmp_path, cold, monkeypatch):
    loc = _table(tmp_path, 3)
    cache = tmp_path / "cache"
    built = Snapshot.load(loc, 2, cache_dir=cache)
    cold()
    monkeypatch.setattr(snapshot, "_open", _refuse)
    monkeypatch.setattr(snapshot, "_table_at", _refuse)
    monkeypatch.setattr(pq, "read_metadata", _refuse)
    loaded = Snapshot.load(loc, 2, cache_dir=cache)
    assert built.relation_sql().count("read_parquet") == 1  # files of one schema, read at once
    assert loaded.relation_sql() == built.relation_sql()
    assert loaded.files.equals(built.files) and loaded.schema.equals(built.schema)
    assert Snapshot.load(loc, 2, cache_dir=cache) is loaded  # and is kept in memory


def test_a_rewritten_version_is_not_served_from_disk(tmp_path, cold):
    loc = _table(tmp_path, 2)
    cache = tmp_path / "cache"
    assert Snapshot.load(loc, 1, cache_dir=cache).files.num_rows == 2
    cold()
    # Version 1 rolled back and written again with other contents (a crashed writer's version
    # replaced): its commit file is another file now.
    os.unlink(os.path.join(loc, "_delta_log", f"{1:020d}.json"))
    write_deltalake(loc, pa.table({"id": [1]}), mode="overwrite")
    again = Snapshot.load(loc, 1, cache_dir=cache)
    assert again.files.num_rows == 1 and again.files["num_records"].to_pylist() == [1]


def test_an_unreadable_cache_file_is_a_miss(tmp_path, cold):
    loc = _table(tmp_path, 2)
    cache = tmp_path / "cache"
    Snapshot.load(loc, 1, cache_dir=cache)
    (saved,) = list(cache.rglob("*.arrow"))
    saved.write_bytes(b"not an arrow file")
    cold()
    assert Snapshot.load(loc, 1, cache_dir=cache).files.num_rows == 2


def test_a_new_version_reads_only_the_footers_of_its_new_files(tmp_path, cold, monkeypatch):
    loc = _table(tmp_path, 12)
    cache = tmp_path / "cache"
    before = set(Snapshot.load(loc, 11, cache_dir=cache).files["path"].to_pylist())
    write_deltalake(loc, pa.table({"id": [999]}), mode="append")
    cold()
    read = []
    real = pq.read_metadata
    monkeypatch.setattr(pq, "read_metadata", lambda p, *a, **k: read.append(p) or real(p, *a, **k))
    snap = Snapshot.load(loc, 12, cache_dir=cache)
    assert snap.files.num_rows == 13
    assert snap.relation_sql().count("read_parquet") == 1
    (new,) = set(snap.files["path"].to_pylist()) - before
    assert read == [new]


def test_only_the_newest_versions_are_kept(tmp_path, cold, monkeypatch):
    monkeypatch.setattr(snapshot, "_SAVE_EVERY_S", 0.0)
    loc = _table(tmp_path, snapshot_cache.KEEP + 3)
    cache = tmp_path / "cache"
    for v in range(snapshot_cache.KEEP + 3):
        Snapshot.load(loc, v, cache_dir=cache)
    kept = sorted(p.name for p in cache.rglob("*.arrow"))
    assert len(kept) == snapshot_cache.KEEP
    assert kept[-1] == f"{snapshot_cache.KEEP + 2:020d}.arrow"


def test_a_lake_answers_alike_from_a_snapshot_on_disk(sales, cold):
    sales.write("sales.orders", orders(0, 30), user="admin")
    sales.write("sales.orders", orders(30, 30), user="admin")
    q = "SELECT region, sum(amount) AS s FROM sales.orders GROUP BY 1 ORDER BY 1"
    first = sales.sql(q, user="admin")
    assert first.num_rows == 3
    saved = storage.join(str(sales.root), "_lakeward", "snapshots")
    assert [rel for rel, _ in storage.walk(saved) if rel.endswith(".arrow")]
    cold()
    from governance import query

    query.clear_cache()
    assert sales.sql(q, user="admin").equals(first)


def test_a_footer_key_is_the_same_in_every_process(tmp_path, cold):
    # Files are grouped (one read_parquet, one type check) by the key of their footer, and keys
    # saved by one process meet keys read by another: nothing process-specific may be in it.
    loc = _table(tmp_path, 1)
    (path,) = Snapshot.load(loc, 0).files["path"].to_pylist()
    (footer,) = snapshot._read_footers([path], [os.path.getsize(path)], "test")
    assert " at 0x" not in footer.key and "optional int64" in footer.key


def test_dropping_a_table_deletes_its_saved_snapshots(sales, cold):
    sales.write("sales.orders", orders(0, 10), user="admin")
    sales.sql("SELECT count(*) FROM sales.orders", user="admin")
    location = sales.catalog.table("sales.orders").location
    folder = snapshot_cache._folder(
        storage.join(str(sales.root), "_lakeward", "snapshots"), location
    )
    assert [n for n in storage.listdir(folder) if n.endswith(".arrow")]
    sales.catalog.drop_table("sales.orders")
    assert not storage.is_dir(folder)
