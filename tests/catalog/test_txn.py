from __future__ import annotations

import threading
import time
from datetime import UTC

import pytest

import lake
from lake.errors import CommitConflict, TransactionError

from support.lakes import lake_with_settings, orders


def n(lk, table):
    return lk.sql(f"SELECT count(*) AS n FROM {table}", user="u")["n"][0].as_py()


def custs(k):
    import pyarrow as pa

    return pa.table({"id": pa.array(range(k), pa.int64()), "name": [f"c{i}" for i in range(k)]})


def test_commit_is_all_or_nothing(sales):
    lk = sales
    lk.write("sales.customers", custs(5), user="etl")
    with lk.transaction(user="etl") as tx:
        tx.write("sales.orders", orders(0, 10))
        tx.delete("sales.customers", where="id = 3")
        # Outside the transaction nothing is visible yet.
        assert n(lk, "sales.orders") == 0 and n(lk, "sales.customers") == 5
        # Inside: its snapshot plus its own writes.
        assert tx.sql("SELECT count(*) AS n FROM sales.orders")["n"][0].as_py() == 10
        assert tx.sql("SELECT count(*) AS n FROM sales.customers")["n"][0].as_py() == 4
    assert n(lk, "sales.orders") == 10 and n(lk, "sales.customers") == 4
    h = lk.history("sales.orders")[0]
    assert h["transaction"] == lk.history("sales.customers")[0]["transaction"] == tx.id


def test_exception_rolls_back_all(sales):
    lk = sales
    lk.write("sales.customers", custs(5), user="etl")
    v_orders = lk.catalog.describe("sales.orders")["version"]
    with pytest.raises(RuntimeError), lk.transaction(user="etl") as tx:
        tx.write("sales.orders", orders(0, 10))
        tx.delete("sales.customers")
        raise RuntimeError("boom")
    assert tx.state == "CANCELLED"
    assert n(lk, "sales.orders") == 0 and n(lk, "sales.customers") == 5
    assert lk.catalog.describe("sales.orders")["version"] == v_orders
    # The tentative Delta versions are gone from the log, so other Delta readers don't see them.
    from deltalake import DeltaTable

    assert DeltaTable(lk.catalog.describe("sales.orders")["location"]).version() == v_orders
    # And the tables stay writable.
    lk.write("sales.orders", orders(0, 1), user="etl")
    assert n(lk, "sales.orders") == 1


def test_explicit_begin_commit_cancel_extend(sales):
    lk = sales
    tx = lk.begin(user="etl", timeout_s=30)
    tx.write("sales.orders", orders(0, 2))
    tx.extend(60)
    tx.commit()
    assert n(lk, "sales.orders") == 2
    with pytest.raises(TransactionError):
        tx.write("sales.orders", orders(0, 2))
    tx2 = lk.begin(user="etl")
    tx2.write("sales.orders", orders(2, 2))
    tx2.cancel()
    assert tx2.state == "CANCELLED" and n(lk, "sales.orders") == 2
    with pytest.raises(TransactionError):
        tx2.commit()


def test_idle_timeout_aborts_and_frees_the_table(sales):
    lk = sales
    tx = lk.begin(user="etl", timeout_s=0.5)
    tx.write("sales.orders", orders(0, 2))
    time.sleep(0.8)
    # Another writer takes over the expired lock and rolls the tentative version back.
    lk.write("sales.orders", orders(10, 1), user="other")
    with pytest.raises(TransactionError, match="aborted"):
        tx.write("sales.orders", orders(0, 1))
    with pytest.raises(TransactionError):
        tx.commit()
    assert n(lk, "sales.orders") == 1
    assert lk.store.get_txn(tx.id).state == "ABORTED"


def test_commit_after_timeout_fails(sales):
    tx = sales.begin(user="etl", timeout_s=0.3)
    tx.write("sales.orders", orders(0, 2))
    time.sleep(0.5)
    sales.catalog.raw.reap()
    with pytest.raises(TransactionError):
        tx.commit()
    assert n(sales, "sales.orders") == 0


def test_snapshot_isolation_and_conflicts(sales):
    lk = sales
    lk.write("sales.orders", orders(0, 3), user="etl")
    tx = lk.begin(user="a")
    assert tx.sql("SELECT count(*) AS n FROM sales.orders")["n"][0].as_py() == 3
    lk.write("sales.orders", orders(3, 3), user="b")  # commits after tx began
    # The transaction still reads its start snapshot.
    assert tx.sql("SELECT count(*) AS n FROM sales.orders")["n"][0].as_py() == 3
    # It read the table, which changed since: writing it is a conflict, and retryable.
    with pytest.raises(CommitConflict) as e:
        tx.delete("sales.orders", where="id = 0")
    assert e.value.retryable
    tx.cancel()
    assert n(lk, "sales.orders") == 6


def test_blind_append_does_not_conflict(sales):
    lk = sales
    tx = lk.begin(user="a")
    lk.write("sales.orders", orders(0, 3), user="b")
    tx.write("sales.orders", orders(3, 3))
    tx.commit()
    assert n(lk, "sales.orders") == 6


def test_writers_wait_for_a_transaction(sales):
    lk = sales
    tx = lk.begin(user="a")
    tx.write("sales.orders", orders(0, 3))
    done = []

    def other():
        lk.write("sales.orders", orders(3, 3), user="b")
        done.append(time.monotonic())

    t = threading.Thread(target=other)
    t.start()
    time.sleep(0.3)
    assert not done  # blocked on the table lock
    committed = time.monotonic()
    tx.commit()
    t.join(10)
    assert done and done[0] >= committed
    assert n(lk, "sales.orders") == 6


def test_lock_wait_timeout_is_commit_conflict(tmp_path):

    lk = lake_with_settings(tmp_path, lock_wait_s=0.3)
    tx = lk.begin(user="a")
    tx.write("sales.orders", orders(0, 1))
    with pytest.raises(CommitConflict, match="locked"):
        lk.write("sales.orders", orders(1, 1), user="b")
    tx.commit()
    lk.close()


def test_time_travel(sales):
    lk = sales
    lk.write("sales.orders", orders(0, 3), user="etl")
    from datetime import datetime

    time.sleep(0.05)
    mid = datetime.now(UTC)
    time.sleep(0.05)
    lk.write("sales.orders", orders(3, 4), user="etl")
    assert (
        lk.sql("SELECT count(*) AS n FROM sales.orders VERSION AS OF 1", user="u")["n"][0].as_py()
        == 3
    )
    assert (
        lk.sql("SELECT count(*) AS n FROM sales.orders VERSION AS OF 0", user="u")["n"][0].as_py()
        == 0
    )
    q = f"SELECT count(*) AS n FROM sales.orders TIMESTAMP AS OF '{mid.isoformat()}'"
    assert lk.sql(q, user="u")["n"][0].as_py() == 3
    both = lk.sql(
        "SELECT (SELECT count(*) FROM sales.orders VERSION AS OF 1) AS a, "
        "(SELECT count(*) FROM sales.orders) AS b",
        user="u",
    ).to_pylist()
    assert both == [{"a": 3, "b": 7}]
    with pytest.raises(lake.errors.InvalidArgument, match="no version 9"):
        lk.sql("SELECT * FROM sales.orders VERSION AS OF 9", user="u")
    with pytest.raises(lake.errors.InvalidArgument, match="did not exist"):
        lk.sql("SELECT * FROM sales.orders TIMESTAMP AS OF '2001-01-01'", user="u")
