"""Each rewrite pass alone, on real parsed trees (sqlglot-optimizer style: one pure pass each)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from sqlglot import exp

from catalog.errors import SQLError, TableNotFound
from catalog.snapshot import Snapshot
from catalog.store import TableInfo
from governance.access import OpenAccess, View
from governance.context import QueryContext
from governance.passes import metadata
from governance.passes.bind import bind
from governance.passes.guard import guard
from governance.passes.parse import parse_query
from governance.passes.resolve import META_TABLE, META_TRAVEL, resolve
from governance.passes.scan import emit, scan


def info(db: str, name: str, location: str = "/nowhere", tid: int = 1) -> TableInfo:
    return TableInfo(
        tid, db, name, location, "GOVERNED", "[]", (), "", {}, "", datetime.now(UTC), 0
    )


def ctx_for(tables: dict[str, TableInfo], **kw) -> QueryContext:
    def lookup(db: str, name: str) -> TableInfo:
        try:
            return tables[f"{db}.{name}"]
        except KeyError:
            raise TableNotFound(f"table {db}.{name} not found") from None

    return QueryContext(user="u", lookup=lookup, snapshot=kw.pop("snapshot", None), **kw)


# resolve ----------------------------------------------------------------------------------------
def test_resolve_annotates_catalog_tables_only():
    tables = {"s.orders": info("s", "orders")}
    tree = resolve(
        parse_query("WITH orders AS (SELECT 1 AS x) SELECT * FROM orders, s.orders o"),
        ctx_for(tables),
    )
    annotated = [t for t in tree.find_all(exp.Table) if META_TABLE in t.meta]
    assert [t.alias for t in annotated] == ["o"]


def test_resolve_cte_does_not_see_itself_unless_recursive():
    with pytest.raises(TableNotFound):
        resolve(parse_query("WITH t AS (SELECT * FROM t) SELECT * FROM t"), ctx_for({}))
    q = "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) SELECT * FROM t"
    resolve(parse_query(q), ctx_for({}))


def test_resolve_quoted_and_mixed_case_names():
    tables = {"s.orders": info("s", "orders")}
    tree = resolve(parse_query('SELECT * FROM "S"."Orders"'), ctx_for(tables))
    assert next(t for t in tree.find_all(exp.Table)).meta[META_TABLE].name == "orders"


def test_resolve_unknown_and_unqualified_names():
    with pytest.raises(TableNotFound) as e:
        resolve(parse_query("SELECT * FROM s.ordrs"), ctx_for({"s.orders": info("s", "orders")}))
    assert "orders" not in str(e.value).replace("ordrs", "")
    with pytest.raises(TableNotFound, match="database.table"):
        resolve(parse_query("SELECT * FROM orders"), ctx_for({}))


def test_resolve_time_travel():
    tables = {"s.orders": info("s", "orders")}
    tree = resolve(parse_query("SELECT * FROM s.orders VERSION AS OF 3"), ctx_for(tables))
    assert next(tree.find_all(exp.Table)).meta[META_TRAVEL].version == 3
    tree = resolve(
        parse_query("SELECT * FROM s.orders TIMESTAMP AS OF '2026-01-02T03:04:05'"), ctx_for(tables)
    )
    assert next(tree.find_all(exp.Table)).meta[META_TRAVEL].timestamp.year == 2026
    with pytest.raises(SQLError):
        resolve(parse_query("SELECT * FROM s.orders TIMESTAMP AS OF 'yesterday'"), ctx_for(tables))


def test_resolve_subqueries_lateral_exists_union():
    tables = {"s.a": info("s", "a", tid=1), "s.b": info("s", "b", tid=2)}
    q = (
        "SELECT * FROM s.a WHERE EXISTS (SELECT 1 FROM s.b WHERE b.x = a.x) "
        "UNION ALL SELECT * FROM s.b, LATERAL (SELECT * FROM s.a WHERE a.x = b.x) l"
    )
    tree = resolve(parse_query(q), ctx_for(tables))
    assert sum(META_TABLE in t.meta for t in tree.find_all(exp.Table)) == 4


# scan -------------------------------------------------------------------------------------------
@pytest.fixture
def delta(tmp_path):
    loc = tmp_path / "t"
    write_deltalake(
        str(loc), pa.table({"id": pa.array(range(10), pa.int64()), "r": ["eu", "us"] * 5})
    )
    write_deltalake(
        str(loc),
        pa.table({"id": pa.array(range(10, 20), pa.int64()), "r": ["eu", "us"] * 5}),
        mode="append",
    )
    return str(loc)


def scanned(sql: str, location: str, access=None, passes=(scan,)) -> tuple[str, QueryContext]:
    tables = {"s.t": info("s", "t", location)}
    ctx = ctx_for(
        tables,
        snapshot=lambda i, travel: Snapshot.load(i.location, 1),
        pin=lambda infos: {i.id: (1, False) for i in infos},
        access=access or OpenAccess(),
    )
    tree = resolve(parse_query(sql), ctx)
    for p in passes:
        tree = p(tree, ctx)
    return emit(tree), ctx


def test_scan_replaces_tables_with_read_parquet_and_keeps_aliases(delta):
    sql, ctx = scanned("SELECT t.id FROM s.t WHERE s.t.id = 3", delta)
    assert "read_parquet" in sql and 'AS "t"' in sql and "s.t" not in sql
    assert ctx.reads[0].files_total == 2 and ctx.reads[0].files_scanned == 1  # stats skipping


def test_scan_keeps_alias_column_lists_and_prunes_through_them(delta):
    sql, ctx = scanned("SELECT a FROM s.t AS o(a, b) WHERE a = 3", delta)
    assert 'AS "o"("a", "b")' in sql
    assert ctx.reads[0].files_scanned == 1  # `a` is id: its statistics prune
    sql, ctx = scanned("SELECT r FROM s.t AS o(r, id) WHERE r = 13", delta)
    assert ctx.reads[0].files_scanned == 1  # here `r` is the column id


def test_scan_placeholder_cannot_be_forged(delta):
    sql, _ = scanned("SELECT '\"__lw_0000000000000000_0\"' AS x FROM s.t", delta)
    assert "'\"__lw_0000000000000000_0\"'" in sql  # the user's literal is untouched


class Fixed:
    def __init__(self, view: View):
        self.fixed = view

    def view(self, user, table, snapshot):
        return self.fixed


EU = View(("id", "r"), frozenset(), row_cond="(\"r\" = 'eu')", whole=False)


def test_scan_alone_guards_every_column_under_a_row_filter(delta):
    sql, ctx = scanned("SELECT count(*) FROM s.t WHERE id > 3", delta, Fixed(EU))
    assert 'CASE WHEN ("r" = \'eu\') THEN "id" END' in sql
    assert 'CASE WHEN ("r" = \'eu\') THEN "r" END' in sql  # nothing proved: all guarded
    assert ctx.reads[0].files_scanned == 2  # no pruning on non-prunable columns


def test_guard_pass_leaves_harmless_comparisons_unguarded(delta):
    passes = (bind, guard, scan)
    sql, _ = scanned("SELECT count(*) FROM s.t WHERE id > 3", delta, Fixed(EU), passes)
    assert "THEN" not in sql.split('AS "__raw"')[0]
    sql, _ = scanned(
        "SELECT count(*) FROM s.t WHERE CAST(id AS VARCHAR) = '3'", delta, Fixed(EU), passes
    )
    assert 'THEN "id" END' in sql and 'THEN "r" END' not in sql


# the view alone ---------------------------------------------------------------------------------
def test_view_sql_masks_cells_and_rows():
    v = View(
        ("a", "b", "c"),
        frozenset({"a"}),
        row_cond="(x)",
        cell_cond={"b": "(y)"},
        masks={"c": 'upper("c")'},
        whole=False,
    )
    sql = v.sql("SELECT 1", guard=frozenset({"a"}))
    assert sql == (
        'SELECT CASE WHEN (x) THEN "a" END AS "a", CASE WHEN (y) THEN "b" END AS "b", '
        'upper("c") AS "c" FROM (SELECT 1) AS "__raw" WHERE (x)'
    )
    assert View(("a",), frozenset({"a"})).sql("BASE") == "BASE"


# metadata ---------------------------------------------------------------------------------------
def test_metadata_statement_rewrites():
    assert "information_schema.tables" in metadata.rewrite_statement("SHOW TABLES")
    assert "table_schema = 'sales'" in metadata.rewrite_statement("show tables from sales")
    assert "information_schema.columns" in metadata.rewrite_statement("DESCRIBE sales.orders")
    assert metadata.rewrite_statement("SELECT 1") == "SELECT 1"


def test_metadata_relation_is_a_values_list_of_what_describe_returns():
    ctx = ctx_for({}, describe=lambda view: [("lake", "s", "t", "BASE TABLE", "it's")])
    sql = metadata.relation_sql("tables", ctx)
    assert "VALUES ('lake', 's', 't', 'BASE TABLE', 'it''s')" in sql
    empty = metadata.relation_sql("columns", ctx_for({}))
    assert "WHERE false" in empty
    with pytest.raises(TableNotFound):
        metadata.relation_sql("settings", ctx)
