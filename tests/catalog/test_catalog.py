from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from lake.errors import (
    DatabaseExists,
    DatabaseNotFound,
    InvalidArgument,
    TableExists,
    TableNotFound,
)

from support.lakes import ORDERS, orders


def test_create_list_describe_drop(sales):
    lk = sales
    assert [d.name for d in lk.catalog.list_databases()] == ["sales"]
    assert [t.full_name for t in lk.catalog.list_tables("sales")] == [
        "sales.customers",
        "sales.orders",
    ]
    d = lk.catalog.describe("sales.orders")
    assert d["type"] == "GOVERNED" and d["version"] == 0 and d["partition_by"] == ["region"]
    assert [c["name"] for c in d["columns"]] == ["id", "region", "amount"]
    location = d["location"]
    lk.catalog.drop_table("sales.orders")
    with pytest.raises(TableNotFound):
        lk.catalog.describe("sales.orders")
    assert DeltaTable(location).version() == 0  # files kept without purge


def test_drop_purge_deletes_files(sales):
    loc = sales.catalog.describe("sales.orders")["location"]
    sales.catalog.drop_table("sales.orders", purge=True)
    import os

    assert not os.path.exists(loc)


def test_recreate_after_drop_gets_fresh_location(sales):
    lk = sales
    lk.write("sales.orders", orders(0, 5), user="etl")
    lk.catalog.drop_table("sales.orders")
    lk.catalog.create_table("sales.orders", ORDERS)
    assert lk.sql("SELECT count(*) AS n FROM sales.orders", user="u")["n"][0].as_py() == 0


def test_typed_errors(lk):
    lk.catalog.create_database("sales")
    with pytest.raises(DatabaseExists):
        lk.catalog.create_database("sales")
    with pytest.raises(DatabaseNotFound):
        lk.catalog.create_table("nope.t", ORDERS)
    with pytest.raises(InvalidArgument, match="database.table"):
        lk.catalog.create_table("orders", ORDERS)
    with pytest.raises(InvalidArgument, match="invalid table name"):
        lk.catalog.create_table("sales.or-ders", ORDERS)
    with pytest.raises(InvalidArgument, match="partition"):
        lk.catalog.create_table("sales.t", ORDERS, partition_by=["nope"])
    with pytest.raises(InvalidArgument, match="at least one column"):
        lk.catalog.create_table("sales.t", pa.schema([]))
    lk.catalog.create_table("sales.t", ORDERS)
    with pytest.raises(TableExists):
        lk.catalog.create_table("sales.t", ORDERS)
    with pytest.raises(TableNotFound):
        lk.catalog.drop_table("sales.missing")
    with pytest.raises(InvalidArgument, match="cascade"):
        lk.catalog.drop_database("sales")
    lk.catalog.drop_database("sales", cascade=True)
    assert lk.catalog.list_databases() == []


def test_names_are_case_insensitive(sales):
    sales.write("SALES.Orders", orders(0, 3), user="etl")
    assert sales.sql('SELECT count(*) AS n FROM Sales."ORDERS"', user="u")["n"][0].as_py() == 3


def test_register_external_reads_latest_and_refuses_writes(lk, tmp_path):
    loc = tmp_path / "ext"
    write_deltalake(str(loc), orders(0, 4))
    lk.catalog.create_database("ext")
    info = lk.catalog.register_table("ext.t", loc)
    assert info.table_type == "EXTERNAL"
    assert lk.sql("SELECT count(*) AS n FROM ext.t", user="u")["n"][0].as_py() == 4
    write_deltalake(str(loc), orders(4, 2), mode="append")  # an outside writer
    assert lk.sql("SELECT count(*) AS n FROM ext.t", user="u")["n"][0].as_py() == 6
    with pytest.raises(InvalidArgument, match="read-only"):
        lk.write("ext.t", orders(9, 1), user="etl")


def test_register_governed_adopts(lk, tmp_path):
    loc = tmp_path / "adopt"
    write_deltalake(str(loc), orders(0, 4))
    write_deltalake(str(loc), orders(4, 4), mode="append")
    lk.catalog.create_database("a")
    info = lk.catalog.register_table("a.t", loc, governed=True)
    assert info.version == 1 and info.table_type == "GOVERNED"
    lk.write("a.t", orders(8, 2), user="etl")
    assert lk.sql("SELECT count(*) AS n FROM a.t", user="u")["n"][0].as_py() == 10
    assert lk.sql("SELECT count(*) AS n FROM a.t VERSION AS OF 0", user="u")["n"][0].as_py() == 4


def test_register_not_delta(lk, tmp_path):
    lk.catalog.create_database("x")
    (tmp_path / "plain").mkdir()
    with pytest.raises(TableNotFound, match="no Delta table"):
        lk.catalog.register_table("x.t", tmp_path / "plain")


def test_reopen_keeps_catalog(tmp_path):
    import lake

    with lake.connect(tmp_path / "l") as lk:
        lk.catalog.create_database("d")
        lk.catalog.create_table("d.t", ORDERS)
        lk.write("d.t", orders(0, 2), user="etl")
    with lake.connect(tmp_path / "l") as lk:
        assert lk.sql("SELECT count(*) AS n FROM d.t", user="u")["n"][0].as_py() == 2
