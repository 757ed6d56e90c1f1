"""The locked DuckDB that runs queries: one database for every table under the lake's root."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lake.errors import AccessDenied

from support.lakes import orders


def test_tables_under_the_root_share_one_database(sales):
    sales.write("sales.orders", orders(0, 10), user="admin")
    sales.write("sales.customers", pa.table({"id": [1], "name": ["a"]}), user="admin")
    sales.sql("SELECT count(*) FROM sales.orders", user="admin")
    built = sales.engine._generation
    sales.sql("SELECT count(*) FROM sales.customers", user="admin")
    sales.sql("SELECT count(*) FROM sales.orders", user="admin")
    assert sales.engine._generation == built  # no rebuild: the root covers both folders


def test_the_database_reads_nothing_outside_the_allowed_folders(lk, tmp_path):
    outside = tmp_path / "elsewhere.parquet"
    outside.write_bytes(b"PAR1")
    lk.engine.allow([])
    with pytest.raises(AccessDenied):
        lk.engine.run(f"SELECT * FROM read_parquet('{outside}')")
