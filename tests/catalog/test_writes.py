from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from lake.errors import InvalidArgument, SchemaMismatch, SQLError, TableNotFound

from support.lakes import orders


def count(lk, table="sales.orders"):
    return lk.sql(f"SELECT count(*) AS n FROM {table}", user="u")["n"][0].as_py()


def test_append_overwrite_history(sales):
    lk = sales
    lk.write("sales.orders", orders(0, 10), user="etl")
    lk.write("sales.orders", orders(10, 5), user="etl")
    assert count(lk) == 15
    lk.write("sales.orders", orders(100, 3), user="admin", mode="overwrite")
    assert count(lk) == 3
    h = lk.history("sales.orders")
    assert [(x["version"], x["user"], x["operation"]) for x in h] == [
        (3, "admin", "OVERWRITE"),
        (2, "etl", "WRITE"),
        (1, "etl", "WRITE"),
        (0, lk.owner.name, "CREATE TABLE"),  # without user=, the lake's owner acts
    ]
    # The Delta log itself records the user too, for other readers.
    assert (
        DeltaTable(lk.catalog.describe("sales.orders")["location"]).history(1)[0]["lakeward.user"]
        == "admin"
    )


def test_accepts_reader_and_c_stream(sales):
    t = orders(0, 6)
    sales.write(
        "sales.orders", pa.RecordBatchReader.from_batches(t.schema, t.to_batches()), user="etl"
    )

    class Stream:
        def __arrow_c_stream__(self, requested_schema=None):
            return t.__arrow_c_stream__(requested_schema)

    sales.write("sales.orders", Stream(), user="etl")
    assert count(sales) == 12


def test_delete_update_merge(sales):
    lk = sales
    lk.write("sales.orders", orders(0, 10), user="etl")
    lk.delete("sales.orders", where="id = 7", user="etl")
    assert count(lk) == 9
    lk.update("sales.orders", set={"amount": "amount * 2"}, where="region = 'eu'", user="etl")
    got = lk.sql(
        "SELECT id, amount FROM sales.orders WHERE region = 'eu' ORDER BY id", user="u"
    ).to_pylist()
    assert got == [
        {"id": 0, "amount": 0.0},
        {"id": 3, "amount": 6.0},
        {"id": 6, "amount": 12.0},
        {"id": 9, "amount": 18.0},
    ]
    src = pa.table(
        {"id": pa.array([1, 50], pa.int64()), "region": ["us", "eu"], "amount": [111.0, 50.0]}
    )
    lk.merge("sales.orders", src, on="id", user="etl")
    got = {
        r["id"]: r["amount"]
        for r in lk.sql("SELECT id, amount FROM sales.orders", user="u").to_pylist()
    }
    assert got[1] == 111.0 and got[50] == 50.0 and len(got) == 10
    ops = [h["operation"] for h in lk.history("sales.orders")][:4]
    assert ops == ["MERGE", "UPDATE", "DELETE", "WRITE"]


def test_merge_actions(sales):
    lk = sales
    lk.write("sales.orders", orders(0, 4), user="etl")
    src = pa.table(
        {
            "id": pa.array([0, 1, 9], pa.int64()),
            "region": ["eu", "us", "us"],
            "amount": [5.0, 5.0, 5.0],
        }
    )
    lk.merge(
        "sales.orders", src, on=["id"], user="etl", when_matched="delete", when_not_matched=None
    )
    assert sorted(r["id"] for r in lk.sql("SELECT id FROM sales.orders", user="u").to_pylist()) == [
        2,
        3,
    ]
    lk.merge(
        "sales.orders",
        src,
        on="id",
        user="etl",
        when_matched={"amount": "t.amount + s.amount"},
        when_not_matched="insert",
        when_not_matched_by_source="delete",
    )
    got = sorted(
        lk.sql("SELECT id, amount FROM sales.orders", user="u").to_pylist(), key=lambda r: r["id"]
    )
    assert got == [{"id": 0, "amount": 5.0}, {"id": 1, "amount": 5.0}, {"id": 9, "amount": 5.0}]
    with pytest.raises(InvalidArgument):
        lk.merge("sales.orders", src, on="id", user="etl", when_matched="explode")


def test_schema_mismatch_writes_nothing(sales):
    lk = sales
    lk.write("sales.orders", orders(0, 3), user="etl")
    v = lk.catalog.describe("sales.orders")["version"]
    bad = [
        pa.table({"id": [1], "region": ["eu"], "amount": [1.0], "extra": [1]}),
        pa.table({"id": ["x"], "region": ["eu"], "amount": [1.0]}),
        pa.table({"id": pa.array([1], pa.int64()), "region": [1], "amount": [1.0]}),
    ]
    for t in bad:
        with pytest.raises(SchemaMismatch, match="schema_mode='merge'"):
            lk.write("sales.orders", t, user="etl")
    assert lk.catalog.describe("sales.orders")["version"] == v
    assert count(lk) == 3


def test_schema_evolution_only_when_asked(sales):
    lk = sales
    lk.write("sales.orders", orders(0, 3), user="etl")
    extra = orders(3, 2).append_column("note", pa.array(["a", "b"]))
    lk.write("sales.orders", extra, user="etl", schema_mode="merge")
    rows = lk.sql("SELECT id, note FROM sales.orders ORDER BY id", user="u").to_pylist()
    assert [r["note"] for r in rows] == [None, None, None, "a", "b"]


def test_narrower_int_is_widened(sales):
    t = pa.table(
        {"id": pa.array([1], pa.int32()), "region": ["eu"], "amount": pa.array([1.0], pa.float32())}
    )
    sales.write("sales.orders", t, user="etl")
    assert count(sales) == 1


def test_bad_arguments(sales):
    lk = sales
    with pytest.raises(InvalidArgument, match="mode"):
        lk.write("sales.orders", orders(0, 1), user="etl", mode="upsert")
    with pytest.raises(InvalidArgument, match="pyarrow"):
        lk.write("sales.orders", [1, 2, 3], user="etl")
    with pytest.raises(TableNotFound):
        lk.write("sales.nope", orders(0, 1), user="etl")
    with pytest.raises(SQLError):
        lk.delete("sales.orders", where="id = = 3", user="etl")
    with pytest.raises(SQLError, match="unknown column"):
        lk.update("sales.orders", set={"nope": "1"}, user="etl")
    with pytest.raises(InvalidArgument):
        lk.transaction(user="")
    assert lk.catalog.describe("sales.orders")["version"] == 0


def test_failed_delete_predicate_writes_nothing(sales):
    lk = sales
    lk.write("sales.orders", orders(0, 3), user="etl")
    with pytest.raises(SQLError):
        lk.delete("sales.orders", where="no_such_column = 1", user="etl")
    assert lk.catalog.describe("sales.orders")["version"] == 1
    assert count(lk) == 3


def test_compact_and_vacuum(sales):
    lk = sales
    for i in range(6):
        lk.write("sales.orders", orders(i * 10, 10), user="etl")
    before = lk.sql("SELECT * FROM sales.orders ORDER BY id", user="u")
    files_before = lk.catalog.describe("sales.orders")["num_files"]
    m = lk.compact("sales.orders", user="etl")
    assert m["numFilesRemoved"] > m["numFilesAdded"]
    assert lk.catalog.describe("sales.orders")["num_files"] < files_before
    assert lk.sql("SELECT * FROM sales.orders ORDER BY id", user="u").equals(before)
    assert lk.history("sales.orders")[0]["operation"] == "OPTIMIZE"
    with pytest.raises(InvalidArgument, match="safe minimum"):
        lk.vacuum("sales.orders", user="etl", retention_hours=0)
    doomed = lk.vacuum("sales.orders", user="etl", retention_hours=0, force=True, dry_run=True)
    assert len(doomed) >= files_before - 3
    v = lk.catalog.describe("sales.orders")["version"]
    assert (
        lk.sql(f"SELECT count(*) AS n FROM sales.orders VERSION AS OF {v}", user="u")["n"][
            0
        ].as_py()
        == 60
    )


def test_write_and_its_audit_record_commit_together(tmp_path):
    import lake

    root = tmp_path / "lake"
    root.mkdir()
    (root / "lake.toml").write_text("[audit]\nflush_interval_s = 0\n")  # keep records queued
    with lake.connect(root) as lk:
        lk.catalog.create_database("sales")
        lk.catalog.create_table("sales.orders", orders(0, 1).schema)
        lk.write("sales.orders", orders(0, 3), user="etl")
        lk.delete("sales.orders", where="id = 99", user="etl")  # matches nothing: no commit
        recs = [r for _, r in lk.store.audit_pending(100)]
        owner = lk.owner.name  # catalog calls without user= act as the owner, audited too
        assert [(r["action"], r["user"], r["decision"]) for r in recs] == [
            ("create_database", owner, "allowed"),
            ("create_table", owner, "allowed"),
            ("write", "etl", "allowed"),
            ("delete", "etl", "allowed"),
        ]
        assert recs[2]["tables"] == [{"table": "sales.orders", "version": 1}]
        assert recs[2]["rows"] == 3
