from __future__ import annotations

import pyarrow as pa
import pytest

from catalog.engine import Engine
from lake.errors import AccessDenied, InvalidArgument, LakeError, SQLError, TableNotFound

from support import s3
from support.lakes import ORDERS, orders


@pytest.fixture
def filled(sales):
    for i in range(8):
        sales.write("sales.orders", orders(i * 100, 100), user="etl")
    sales.write(
        "sales.customers",
        pa.table({"id": pa.array([1, 2], pa.int64()), "name": ["a", "b"]}),
        user="etl",
    )
    return sales


def test_basic_query_and_partition_values(filled):
    t = filled.sql(
        "SELECT region, count(*) AS n, sum(amount) AS s FROM sales.orders GROUP BY ALL ORDER BY 1",
        user="u",
    )
    assert isinstance(t, pa.Table)
    assert t.to_pylist()[0]["region"] == "apac" and sum(t["n"].to_pylist()) == 800
    assert t.schema.field("region").type == pa.string()


def test_joins_ctes_aliases_subqueries(filled):
    q = """
    WITH big AS (SELECT * FROM sales.orders o WHERE o.amount > 700)
    SELECT c.name, count(*) AS n
    FROM big JOIN sales.customers AS c ON big.id % 2 + 1 = c.id
    WHERE EXISTS (SELECT 1 FROM sales.orders x WHERE x.id = big.id)
    GROUP BY c.name ORDER BY c.name
    """
    assert filled.sql(q, user="u").to_pylist() == [{"name": "a", "n": 49}, {"name": "b", "n": 50}]
    q2 = "SELECT sales.orders.id FROM sales.orders WHERE sales.orders.id < 2 ORDER BY 1"
    assert filled.sql(q2, user="u")["id"].to_pylist() == [0, 1]
    q3 = "SELECT count(*) AS n FROM (SELECT id FROM sales.orders UNION ALL SELECT id FROM sales.customers)"
    assert filled.sql(q3, user="u")["n"][0].as_py() == 802


def test_cte_named_like_a_table_is_the_cte(filled):
    q = "WITH orders AS (SELECT 1 AS id) SELECT count(*) AS n FROM orders"
    assert filled.sql(q, user="u")["n"][0].as_py() == 1
    q = "WITH orders AS (SELECT 1 AS id) SELECT count(*) AS n FROM sales.orders"
    assert filled.sql(q, user="u")["n"][0].as_py() == 800


def test_stats_skipping(filled):
    ex = filled.explain("SELECT * FROM sales.orders WHERE id = 250", user="u")
    r = ex.reads[0]
    # 8 appends x 3 partitions; only the 3 files of the append of ids 200..299 can hold id 250
    assert r.files_total == 24 and r.files_scanned == 3
    assert filled.sql("SELECT id FROM sales.orders WHERE id = 250", user="u")["id"].to_pylist() == [
        250
    ]
    ex = filled.explain(
        "SELECT * FROM sales.orders WHERE region = 'eu' AND id BETWEEN 100 AND 299", user="u"
    )
    assert ex.reads[0].files_scanned == 2
    # Skipping never changes results, also with OR, NULL tests, casts and outer joins.
    for where in (
        "id = 250 OR id = 3",
        "id IN (1, 701)",
        "amount >= 799",
        "region IS NULL",
        "id < 0",
        "CAST(id AS VARCHAR) = '5'",
        "region != 'eu' AND id > 790",
    ):
        got = filled.sql(f"SELECT count(*) AS n FROM sales.orders WHERE {where}", user="u")["n"][
            0
        ].as_py()
        total = filled.sql(
            f"SELECT count(*) AS n FROM (SELECT * FROM sales.orders) s WHERE {where}", user="u"
        )["n"][0].as_py()
        assert got == total, where
    q = (
        "SELECT count(*) AS n FROM sales.customers c LEFT JOIN sales.orders o ON o.id = c.id "
        "WHERE o.id IS NULL"
    )
    assert filled.sql(q, user="u")["n"][0].as_py() == 0


def test_refusals_run_nothing(filled):
    for q in [
        "SELECT * FROM read_csv('/etc/passwd')",
        "COPY sales.orders TO '/tmp/x.csv'",
        "ATTACH '/tmp/x.db'",
        "SET threads=1",
        "PRAGMA version",
        "INSTALL httpfs",
        "CREATE TABLE t AS SELECT 1",
        "DROP TABLE sales.orders",
        "SELECT * FROM duckdb_settings()",
        "SELECT 1; SELECT 2",
        "SELECT * FROM '/etc/passwd'",
    ]:
        with pytest.raises((AccessDenied, SQLError)):
            filled.sql(q, user="u")
    assert filled.sql("SELECT count(*) AS n FROM sales.orders", user="u")["n"][0].as_py() == 800


def test_unknown_tables(filled):
    with pytest.raises(TableNotFound) as e:
        filled.sql("SELECT * FROM sales.order", user="u")
    assert "did you mean" not in str(e.value).lower()
    with pytest.raises(TableNotFound):
        filled.sql("SELECT * FROM orders", user="u")
    with pytest.raises(AccessDenied, match="three-part"):
        filled.sql("SELECT * FROM memory.main.x", user="u")


def test_bad_sql_is_typed(filled):
    for q in ["SELEC 1", "SELECT FROM WHERE", "", "SELECT nope FROM sales.orders"]:
        with pytest.raises(LakeError):
            filled.sql(q, user="u")
    with pytest.raises(InvalidArgument):
        filled.sql("SELECT 1", user="")


def test_engine_is_locked_down(tmp_path):
    eng = Engine(tmp_path)
    eng.allow([])
    (tmp_path / "ok.csv").write_text("a\n1\n")
    assert eng.run(f"SELECT * FROM read_csv('{tmp_path}/ok.csv')").num_rows == 1
    for q in [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "ATTACH '/tmp/evil.db' AS e",
        "INSTALL httpfs",
        "LOAD httpfs",
    ]:
        with pytest.raises(LakeError):
            eng.run(q)
    import pyarrow as pa  # noqa: F401 - a Python variable the engine must not see

    secret = pa.table({"x": [1]})  # noqa: F841
    with pytest.raises(LakeError):
        eng.run("SELECT * FROM secret")
    eng.close()


ALIAS_LISTS = [
    "SELECT a, b FROM sales.flat AS o(a, b) ORDER BY a",
    "SELECT o.b, o.amount FROM sales.flat o(a, b) WHERE b = 'eu' ORDER BY o.a",
    "SELECT * FROM sales.flat AS o(x) WHERE x BETWEEN 5 AND 9",
    "SELECT count(*) AS n FROM sales.flat AS o(region, id) WHERE region = 250",
    "SELECT count(*) AS n FROM sales.flat AS o(region, id) WHERE id = 'eu' AND amount > 500",
    "SELECT p.k, c.nm FROM sales.flat p(k) JOIN sales.customers c(cid, nm) ON p.k = c.cid",
    "SELECT * FROM (SELECT id, region FROM sales.flat) AS d(a, b) WHERE a < 3 ORDER BY a",
]


@pytest.mark.parametrize("query", ALIAS_LISTS)
def test_table_alias_column_lists_rename_like_duckdb(filled, query):
    filled.catalog.create_table("sales.flat", ORDERS)  # unpartitioned: files hold every column
    for i in range(4):
        filled.write("sales.flat", orders(i * 250, 250))
    raw = s3.raw_duckdb()
    raw.execute("CREATE SCHEMA sales")
    for t in ("flat", "customers"):
        files = filled.catalog.snapshot(filled.catalog.table(f"sales.{t}")).files["path"]
        raw.execute(f"CREATE VIEW sales.{t} AS SELECT * FROM read_parquet({files.to_pylist()!r})")
    want = raw.sql(query).to_arrow_table()
    got = filled.sql(query, user="u")
    assert got.column_names == want.column_names
    assert sorted(map(str, got.to_pylist())) == sorted(map(str, want.to_pylist()))
