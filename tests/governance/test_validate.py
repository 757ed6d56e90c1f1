"""The parse + validate gate: hostile queries are refused with the right error, analytics pass."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import re
import tomllib
from pathlib import Path

import duckdb
import pytest
import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from catalog.errors import AccessDenied, InvalidArgument, LakeError, SQLError
from governance import duckdb_builtins_generated, functions
from governance.passes import validate as validate_module
from governance.passes.parse import parse_query
from governance.passes.validate import validate

REPO = Path(__file__).resolve().parents[2]

D, S = AccessDenied, SQLError

HOSTILE: list[tuple[str, type[LakeError]]] = [
    # file and URL readers as table functions
    ("SELECT * FROM read_csv('x.csv')", D),
    ("SELECT * FROM read_csv_auto('x.csv')", D),
    ("SELECT * FROM read_parquet(['a.parquet', 'b.parquet'])", D),
    ("SELECT * FROM read_json('x.json')", D),
    ("SELECT * FROM read_json_auto('x.json')", D),
    ("SELECT * FROM read_text('/etc/passwd')", D),
    ("SELECT * FROM read_blob('/etc/passwd')", D),
    ("SELECT * FROM parquet_scan('x.parquet')", D),
    ("SELECT * FROM parquet_metadata('x.parquet')", D),
    ("SELECT * FROM parquet_schema('x.parquet')", D),
    ("SELECT * FROM glob('*')", D),
    ("SELECT * FROM sniff_csv('x.csv')", D),
    ("SELECT * FROM iceberg_scan('s3://b/t')", D),
    ("SELECT * FROM delta_scan('s3://b/t')", D),
    ("SELECT * FROM postgres_scan('host=x', 'public', 't')", D),
    ("SELECT * FROM sqlite_scan('x.db', 't')", D),
    ("SELECT * FROM test_all_types()", D),
    ("SELECT * FROM abs(1)", D),
    ("PIVOT read_csv('x.csv') ON a USING sum(b)", D),
    # ... and as scalars
    ("SELECT read_csv('x.csv')", D),
    ("SELECT read_text('/etc/passwd')", D),
    ("SELECT read_csv('x') /* sqlglot.anonymous */", D),
    # replacement scans: sqlglot reads 'x.csv' and "x.csv" alike, and DuckDB reads the file for both
    ("SELECT * FROM 'x.csv'", D),
    ('SELECT * FROM "x.parquet"', D),
    ("SELECT * FROM 'https://evil.example/x.parquet'", D),
    ('SELECT * FROM "s3://bucket/key"', D),
    ("SELECT * FROM '*.csv'", D),
    ("SELECT * FROM '~/.ssh/id_rsa'", D),
    ('SELECT * FROM "s3://bucket".t', D),
    ("FROM 'x.csv'", D),
    ("SELECT * FROM (FROM 'x.csv')", D),
    ("SELECT * FROM db.t JOIN 'x.csv' ON true", D),
    # attach, copy, export, settings, extensions
    ("ATTACH 'x.db' AS y", D),
    ("ATTACH DATABASE 'x.db' AS y (READ_ONLY)", D),
    ("DETACH y", D),
    ("COPY db.t TO 'out.csv'", D),
    ("COPY (SELECT 1) TO 'out.csv' (FORMAT csv)", D),
    ("COPY db.t FROM 'in.csv'", D),
    ("COPY FROM DATABASE a TO b", D),
    ("EXPORT DATABASE 'dir'", D),
    ("IMPORT DATABASE 'dir'", D),
    ("SET threads = 1", D),
    ("SET GLOBAL threads = 1", D),
    ("SET search_path = 'x'", D),
    ("SET VARIABLE x = 1", D),
    ("RESET threads", D),
    ("RESET ALL", D),
    ("PRAGMA table_info('t')", D),
    ("PRAGMA version", D),
    ("INSTALL httpfs", D),
    ("FORCE INSTALL httpfs", D),
    ("INSTALL x FROM 'https://evil.example'", D),
    ("LOAD httpfs", D),
    ("LOAD 'x.duckdb_extension'", D),
    # DDL and DML, also hidden in CTEs or SELECT ... INTO
    ("CREATE TABLE x AS SELECT 1", D),
    ("CREATE VIEW v AS SELECT 1", D),
    ("CREATE MACRO f(a) AS a + 1", D),
    ("CREATE OR REPLACE FUNCTION f(a) AS a", D),
    ("CREATE SECRET (TYPE s3, KEY_ID 'k', SECRET 's')", D),
    ("CREATE SECRET s (TYPE s3)", D),
    ("CREATE SEQUENCE s", D),
    ("CREATE TYPE e AS ENUM ('a')", D),
    ("DROP TABLE db.t", D),
    ("DROP SECRET s", D),
    ("ALTER TABLE db.t ADD COLUMN c INT", D),
    ("INSERT INTO db.t VALUES (1)", D),
    ("UPDATE db.t SET a = 1", D),
    ("DELETE FROM db.t", D),
    ("TRUNCATE db.t", D),
    ("MERGE INTO db.t USING db.u ON t.id = u.id WHEN MATCHED THEN DELETE", D),
    ("WITH x AS (SELECT 1) INSERT INTO db.t SELECT * FROM x", D),
    ("WITH x AS (DELETE FROM db.t RETURNING *) SELECT * FROM x", D),
    ("SELECT * INTO t2 FROM db.t", D),
    ("COMMENT ON TABLE db.t IS 'x'", D),
    # other statements
    ("CALL pragma_version()", D),
    ("CALL duckdb_settings()", D),
    ("CHECKPOINT", D),
    ("FORCE CHECKPOINT", D),
    ("CHECKPOINT db", D),
    ("VACUUM", D),
    ("VACUUM ANALYZE db.t", D),
    ("ANALYZE", D),
    ("USE db", D),
    ("BEGIN", D),
    ("BEGIN TRANSACTION", D),
    ("START TRANSACTION", D),
    ("COMMIT", D),
    ("ROLLBACK", D),
    ("ABORT", D),
    ("PREPARE p AS SELECT 1", D),
    ("EXECUTE p", D),
    ("DEALLOCATE p", D),
    ("UPDATE EXTENSIONS", D),
    ("EXPLAIN SELECT 1", D),
    ("EXPLAIN ANALYZE SELECT 1", D),
    # catalog-backed later: not yet
    ("DESCRIBE db.t", S),
    ("DESCRIBE SELECT 1", S),
    ("SHOW TABLES", S),
    ("SHOW ALL TABLES", S),
    ("SHOW databases", S),
    ("SUMMARIZE db.t", S),
    ("SUMMARIZE SELECT 1", S),
    ("FROM (DESCRIBE db.t)", S),
    ("FROM (SUMMARIZE db.t)", S),
    ("FROM (SHOW TABLES)", S),
    # several statements, also behind comments
    ("SELECT 1; DROP TABLE db.t", S),
    ("SELECT 1 -- \n; DROP TABLE db.t", S),
    ("SELECT 1 /* ; */; DROP TABLE db.t", S),
    ("SELECT 1; SELECT 2", S),
    # DuckDB's own catalog: functions, views, schemas
    ("SELECT * FROM duckdb_tables()", D),
    ("SELECT * FROM duckdb_settings()", D),
    ("SELECT * FROM duckdb_functions()", D),
    ("SELECT * FROM duckdb_secrets()", D),
    ("SELECT * FROM main.duckdb_settings()", D),
    ("SELECT * FROM pragma_table_info('t')", D),
    ("SELECT * FROM pragma_version()", D),
    ("SELECT pragma_version()", D),
    ("SELECT * FROM system.information_schema.columns", D),
    ("SELECT * FROM pg_catalog.pg_class", D),
    ('SELECT * FROM "pg_catalog"."pg_settings"', D),
    ("SELECT * FROM pg_tables", D),
    ("SELECT * FROM sqlite_master", D),
    ("SELECT * FROM duckdb_tables", D),
    ('SELECT * FROM "DUCKDB_TABLES"', D),
    ("SELECT * FROM system.main.duckdb_settings", D),
    ("SELECT * FROM main.duckdb_secrets", D),
    ("SELECT * FROM temp.main.x", D),
    # engine state, environment, side effects, SQL as text
    ("SELECT current_setting('threads')", D),
    ("SELECT getenv('HOME')", D),
    ("SELECT getvariable('x')", D),
    ("SELECT version()", D),
    ("SELECT current_database()", D),
    ("SELECT current_schema()", D),
    ("SELECT current_schemas(true)", D),
    ("SELECT current_user", D),
    ("SELECT current_role", D),  # sqlglot: a column; DuckDB: the function, even when quoted
    ('SELECT "current_schema"', D),
    ("SELECT user FROM db.t", D),
    ("SELECT a FROM db.t ORDER BY current_schema", D),
    ("SELECT session_user", D),
    ("SELECT current_catalog", D),
    ("SELECT current_query()", D),
    ("SELECT nextval('s')", D),
    ("SELECT currval('s')", D),
    ("SELECT setseed(0.5)", D),
    ("SELECT txid_current()", D),
    ("SELECT sleep_ms(100000)", D),
    ("SELECT write_log('x')", D),
    ("SELECT stats(a) FROM db.t", D),
    ("SELECT json_serialize_plan('SELECT 1')", D),
    ("SELECT json_execute_serialized_sql('x')", D),
    ("SELECT index_key({'table': 't'}, 'i', 1)", D),
    ("SELECT path_join('a', 'b')", D),
    ("SELECT pg_typeof(1)", D),
    ("SELECT has_table_privilege('t', 'select')", D),
    ("SELECT icu_sort_key('a', 'de')", D),
    ("SELECT __internal_barrier(1)", D),
    ("SELECT * FROM query('SELECT 1')", D),
    ("SELECT * FROM query_table('t')", D),
    ("SELECT * FROM query_table(['a', 'b'])", D),
    ("SELECT query('SELECT 1')", D),
    # nested anywhere: CTE, subqueries, lateral, clauses, lambdas, windows, set operations
    ("WITH x AS (SELECT * FROM read_csv('x.csv')) SELECT * FROM x", D),
    ("SELECT * FROM db.t WHERE a IN (SELECT * FROM glob('*'))", D),
    ("SELECT * FROM db.t WHERE EXISTS (FROM duckdb_settings())", D),
    ("SELECT * FROM db.t, LATERAL read_csv(t.path)", D),
    ("SELECT * FROM db.t, LATERAL (SELECT * FROM read_parquet(t.path))", D),
    ("SELECT * FROM db.t JOIN read_csv('x') ON true", D),
    ("SELECT a FROM db.t GROUP BY a HAVING max(current_setting('x')) > 1", D),
    ("SELECT * FROM db.t ORDER BY getenv('x')", D),
    ("SELECT * FROM db.t ORDER BY (SELECT getenv('x'))", D),
    ("SELECT 1 LIMIT (SELECT current_setting('threads')::INT)", D),
    ("SELECT sum(a) OVER (PARTITION BY getenv('x')) FROM db.t", D),
    ("SELECT * FROM db.t WINDOW w AS (ORDER BY current_setting('x'))", D),
    ("SELECT count(*) FILTER (WHERE getenv('x') = 'a') FROM db.t", D),
    ("SELECT a FROM db.t QUALIFY row_number() OVER (ORDER BY getenv('x')) = 1", D),
    ("SELECT list_transform([1], x -> getenv('x'))", D),
    ("SELECT [getenv(x) FOR x IN ['a']]", D),
    ("SELECT {'a': current_setting('x')}", D),
    ("SELECT CAST(current_setting('x') AS INT)", D),
    ("SELECT a FROM db.t UNION SELECT current_setting('x')", D),
    ("SELECT 1 UNION ALL SELECT * FROM read_csv('x.csv')", D),
    ("SELECT * FROM (SELECT * FROM (SELECT current_setting('threads')))", D),
    ("SELECT * FROM db.t WHERE a IN (VALUES (getenv('x')))", D),
    ("SELECT * FROM unnest(list_transform([1], x -> current_setting('x')))", D),
    ("SELECT * FROM range((SELECT count(*) FROM duckdb_tables()))", D),
    ("SELECT * FROM generate_series(1, getenv('N')::INT)", D),
    ("PIVOT db.t ON current_setting('x') USING sum(v)", D),
    # case, quoting, unicode and call-syntax tricks
    ("SELECT \"read_csv\"('x')", D),
    ("SELECT * FROM \"read_csv\"('x')", D),
    ("SELECT * FROM READ_CSV('x')", D),
    ("sElEcT * fRoM ReAd_PaRqUeT('x')", D),
    ("SELECT \"GETENV\"('HOME'), GetEnv('x')", D),
    ("SELECT 'x'.getenv()", D),
    ("SELECT {'a': 1}.current_setting()", D),
    ("SELECT * FROM ｒｅａｄ_csv('x')", D),  # fullwidth letters
    ("SELECT * FROM r\u0435ad_csv('x')", D),  # Cyrillic e
    ("SELECT * FROM read_csv\u200d('x')", D),  # zero-width joiner
    ('SELECT * FROM "x.csv\u200d"', D),
    ("SELECT ｒｅａｄ_csv('x')", S),
    ("SELECT getenv\u200d('HOME')", S),
    ("SELECT pg_catalog.current_setting('x')", S),
    ("SELECT main.abs(1)", S),
    ('SELECT "main"."getenv"(\'x\')', S),
    # parameters
    ("SELECT ?", D),
    ("SELECT * FROM db.t WHERE a = $1", D),
    ("SELECT * FROM db.t WHERE a = $name", D),
    ("SELECT * FROM db.t WHERE a = :name", D),
    # text sqlglot would render verbatim into the SQL that runs
    ("SELECT a COLLATE 'x; DROP TABLE pwn --' FROM db.t", S),
    ('SELECT extract("x; DROP TABLE pwn --" FROM d) FROM db.t', S),
    ('SELECT CAST(a AS "x; DROP TABLE pwn --") FROM db.t', S),
    ('SELECT CAST(a AS STRUCT(x "x; DROP TABLE pwn --")) FROM db.t', S),
    ("SELECT 'abc'.'x; DROP TABLE pwn --'()", S),
    # unsupported or not a query
    ("SELECT * FROM db.t AT (VERSION => 3)", S),
    ("SELECT * FROM db.t VERSION AS OF (SELECT 1)", S),
    ("SELECT 1 FOR UPDATE", S),
    ("SELECT to_file('x')", S),
    ("SELECT date(x), time(x), timestamp(x), datetime(x)", S),
    ("'x'", S),
    ("SELECT " + "(" * 3000 + "1" + ")" * 3000, S),
    ("SELECT 'unterminated", S),
    ("SELEC 1", S),
    ("", S),
    ("  -- just a comment", S),
]

LEGIT: list[str] = [
    "SELECT a, b FROM db.t WHERE a > 1 ORDER BY b DESC LIMIT 10 OFFSET 5",
    "SELECT 1;",
    "SELECT t.a, u.c FROM db.t AS t JOIN db.u AS u ON t.id = u.id LEFT JOIN db.v v USING (id)",
    "SELECT * FROM db.t CROSS JOIN db.u FULL OUTER JOIN db.v ON true",
    "SELECT * FROM db.t ASOF JOIN db.u ON t.id = u.id AND t.ts >= u.ts",
    "SELECT * FROM db.t ANTI JOIN db.u USING (id)",
    "WITH x AS (SELECT a FROM db.t), y(b) AS (SELECT 1) SELECT * FROM x, y",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
    "SELECT a, sum(b) OVER (PARTITION BY a ORDER BY c ROWS BETWEEN UNBOUNDED PRECEDING AND "
    "CURRENT ROW) FROM db.t",
    "SELECT a, rank() OVER w, lag(a, 1) OVER w FROM db.t WINDOW w AS (PARTITION BY a ORDER BY b)",
    "SELECT a FROM db.t QUALIFY row_number() OVER (PARTITION BY a ORDER BY b) = 1",
    "SELECT a, count(*) FROM db.t GROUP BY ALL ORDER BY ALL",
    "SELECT a, count(*) FROM db.t GROUP BY ROLLUP (a), CUBE (b) HAVING count(*) > 1",
    "SELECT list_transform([1, 2], x -> x + 1), list_filter([1, 2], x -> x > 1), "
    "list_reduce([1, 2], (x, y) -> x + y)",
    "SELECT list_transform(l, lambda x: x * 2), [x * 2 FOR x IN l IF x > 1] FROM db.t",
    "SELECT {'a': 1, 'b': [1, 2]} AS s, struct_pack(k := 1), [1, 2, 3][2], [1, 2, 3][1:2], "
    "map([1], [2])",
    "SELECT s.a, s['b'], l[-1], list_sum(l), list_sort(l), list_distinct(l), flatten([[1]]) FROM db.t",
    "SELECT regexp_matches(a, '^x'), regexp_replace(a, 'x', 'y', 'g'), "
    "regexp_extract(a, '(\\d+)', 1), a ~ '^a' FROM db.t",
    "SELECT date_trunc('month', d), d + INTERVAL 1 DAY, date_diff('day', d, now()), "
    "strftime(d, '%Y'), extract(year FROM d), current_date FROM db.t",
    "SELECT make_date(2024, 1, 1), epoch_ms(1), to_timestamp(1), age(TIMESTAMP '2024-01-01'), "
    "last_day(DATE '2024-01-01'), time_bucket(INTERVAL '1 day', ts) FROM db.t",
    "SELECT CASE WHEN a > 1 THEN 'x' WHEN a IS NULL THEN NULL ELSE 'y' END, coalesce(a, 0), "
    "ifnull(a, 0), nullif(a, 1), if(a > 1, 'x', 'y') FROM db.t",
    "SELECT upper(s), lower(s), concat(s, 'x'), s || 'x', substring(s, 1, 2), trim(s), length(s), "
    "split_part(s, ',', 1), s ILIKE 'a%', lpad(s, 3, '0'), levenshtein(s, 'x') FROM db.t",
    "SELECT error('x')",
    "SELECT * FROM db.t WHERE EXISTS (SELECT 1 FROM db.u WHERE u.id = t.id) "
    "AND a IN (SELECT a FROM db.u) AND b NOT IN (1, 2)",
    "SELECT a FROM db.t UNION SELECT a FROM db.u INTERSECT SELECT a FROM db.v EXCEPT SELECT 1",
    "SELECT a FROM db.t UNION ALL BY NAME SELECT a FROM db.u",
    "VALUES (1, 'a'), (2, 'b')",
    "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(id, name)",
    "SELECT unnest([1, 2, 3]) AS x, unnest({'a': 1}, recursive := true)",
    "SELECT * FROM unnest([1, 2]) AS u(x)",
    "SELECT * FROM db.t, unnest(t.l) AS u(x)",
    "SELECT * FROM db.t CROSS JOIN LATERAL unnest(t.l) AS u(x)",
    "SELECT * FROM range(10) AS r(i)",
    "SELECT * FROM generate_series(1, 10, 2)",
    "SELECT range(5), generate_series(1, 3)",
    "SELECT * FROM db.t VERSION AS OF 3",
    "SELECT * FROM db.t TIMESTAMP AS OF '2024-01-01'",
    "SELECT * FROM db.t TIMESTAMP AS OF TIMESTAMP '2024-01-01 00:00:00'",
    "SELECT * FROM db.t, LATERAL (SELECT t.a + 1 AS b)",
    "SELECT * FROM db.t JOIN LATERAL (SELECT * FROM db.u WHERE u.id = t.id) AS l ON true",
    "PIVOT db.t ON k USING sum(v)",
    "SELECT * FROM db.t PIVOT (sum(v) FOR k IN ('a', 'b'))",
    "UNPIVOT db.t ON a, b INTO NAME k VALUE v",
    "SELECT CAST(a AS VARCHAR), a::INTEGER, TRY_CAST(a AS DECIMAL(10, 2)), "
    "CAST(a AS STRUCT(x INTEGER)), a::my_enum FROM db.t",
    "SELECT * EXCLUDE (a) FROM db.t",
    "SELECT * REPLACE (a + 1 AS a) FROM db.t",
    "SELECT COLUMNS('a.*'), min(COLUMNS(*)) FROM db.t",
    "SELECT count(DISTINCT a) FILTER (WHERE b > 1), string_agg(s, ',' ORDER BY s), arg_max(a, b), "
    "quantile_cont(a, 0.5), list(a), approx_count_distinct(a), approx_top_k(a, 3) FROM db.t",
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a) FROM db.t",
    "SELECT first_value(a IGNORE NULLS) OVER (ORDER BY b), ntile(4) OVER (ORDER BY a) FROM db.t",
    "SELECT a FROM db.t WHERE a BETWEEN 1 AND 2 AND b IS NOT DISTINCT FROM c "
    "AND s SIMILAR TO 'x' AND s GLOB 'x*'",
    "SELECT json_extract(j, '$.a'), j->'a', j->>'$.b', json_extract_string(j, '$.c') FROM db.t",
    "FROM db.t SELECT a WHERE a > 0",
    "SELECT a FROM db.t USING SAMPLE 10%",
    "SELECT DISTINCT ON (a) a, b FROM db.t ORDER BY a, b",
    "SELECT a COLLATE NOCASE FROM db.t ORDER BY a COLLATE de",
    "SELECT typeof(a), hash(a), md5(s), sha256(s), greatest(1, 2), round(1.5, 1), abs(-1), "
    "uuid(), random() FROM db.t",
    "SELECT DATE '2024-01-01', INTERVAL '1 day', 1e3, -1, NOT true, 1 IS NULL, 'it''s', "
    "$$dollar$$, 'ü ✓'",
    "SELECT try(1 / 0), bar(1, 0, 10), format('{} {}', 1, 2), printf('%d', 1), format_bytes(1024)",
    "SELECT x FROM (SELECT 1 AS x) AS s",
    "(SELECT 1)",
    "SELECT * FROM db.t FETCH FIRST 3 ROWS ONLY",
    'SELECT "select", "from" FROM db."My Table" AS "My Alias"',
    'SELECT * FROM db."Über"',
    "SELECT 'abc'.upper(), (-1).abs()",
    # name resolution (unknown tables, python variables) is a later pass's job
    "SELECT * FROM some_python_variable",
    "SELECT * FROM ops.duckdb_usage JOIN ops.temp USING (id) JOIN ops.system USING (id)",
    'SELECT t.user, t."current_schema" FROM db.t AS t',
]


def run(sql: str) -> exp.Expression:
    return validate(parse_query(sql))


def short(sql: str) -> str:
    return sql if len(sql) < 60 else sql[:57] + "..."


@pytest.mark.parametrize(("sql", "error"), HOSTILE, ids=[short(s) for s, _ in HOSTILE])
def test_hostile_query_is_refused(sql: str, error: type[LakeError]) -> None:
    with pytest.raises(LakeError) as refused:
        run(sql)
    assert type(refused.value) is error, str(refused.value)


@pytest.mark.parametrize("sql", LEGIT, ids=[short(s) for s in LEGIT])
def test_analytic_query_passes(sql: str) -> None:
    run(sql)


def test_corpora_are_big_enough() -> None:
    assert len(HOSTILE) >= 80 and len(LEGIT) >= 40


def test_validate_returns_the_same_object_unchanged() -> None:
    tree = parse_query("SELECT a, list_transform(l, x -> x + 1) FROM db.t VERSION AS OF 2")
    before = tree.sql(dialect="duckdb")
    assert validate(tree) is tree
    assert tree.sql(dialect="duckdb") == before


def test_time_travel_stays_on_the_table() -> None:
    for sql, kind in (
        ("SELECT * FROM db.t VERSION AS OF 3", "VERSION"),
        ("SELECT * FROM db.t TIMESTAMP AS OF '2024-01-01'", "TIMESTAMP"),
    ):
        table = run(sql).find(exp.Table)
        assert isinstance(table.args.get("version"), exp.Version)
        assert str(table.args["version"].this).upper() == kind


def test_parse_drops_comments_and_empty_statements() -> None:
    tree = parse_query("SELECT 1 /* a */ + 2 -- b\nFROM db.t /* c */;;")
    assert tree.sql(dialect="duckdb") == "SELECT 1 + 2 FROM db.t"


def test_parse_refuses_non_strings() -> None:
    with pytest.raises(InvalidArgument):
        parse_query(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("", "empty"),
        ("SELECT 1; DROP TABLE t", "only one statement"),
        ("SELECT FROM WHERE", "line 1, column 17 near 'WHERE'"),
        ("SELECT (1", "line 1, column 9"),
        ("SELECT 1 +", "incomplete"),
    ],
)
def test_parse_errors_say_what_and_where(sql: str, expected: str) -> None:
    with pytest.raises(SQLError, match=expected):
        parse_query(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'secret-data' 'x' FROM",
        "SELECT 'secret-data",
        "SELECT * FROM '/secret-data/x.csv'",
        "SELECT * FROM db.t WHERE a = current_setting('secret-data')",
        "CREATE SECRET (TYPE s3, KEY_ID 'secret-data')",
        'SELECT CAST(a AS "secret-data") FROM db.t',
        "SELECT 1 + ",
        "SELECT a COLLATE 'x; secret-data' FROM db.t",
    ],
)
def test_messages_echo_no_literals_and_no_internals(sql: str) -> None:
    with pytest.raises(LakeError) as refused:
        run(sql)
    message = str(refused.value)
    for leak in ("secret-data", "<class", "sqlglot", "Token", "Traceback", "\x1b"):
        assert leak not in message
    # No sqlglot exception is chained on: nothing internal shows in a traceback either.
    error = refused.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_refusals_name_the_construct() -> None:
    cases = {
        "SELECT * FROM read_csv('x.csv')": "read_csv()",
        "SELECT getenv('HOME')": "getenv()",
        "DROP TABLE db.t": "DROP",
        "SELECT * FROM pg_catalog.pg_class": "pg_catalog",
        "SHOW TABLES": "SHOW",
    }
    for sql, name in cases.items():
        with pytest.raises(LakeError, match=re.escape(name)):
            run(sql)


# --- the allowlist -------------------------------------------------------------------------------


def test_allowlist_has_the_analytics_and_none_of_the_dangers() -> None:
    allowed = functions.ALLOWED_FUNCTIONS
    assert len(allowed) > 500
    for name in ("abs", "sum", "row_number", "list_transform", "regexp_matches", "strftime",
                 "typeof", "error", "coalesce", "unnest", "range", "generate_series", "if"):  # fmt: skip
        assert name in allowed, name
    dangerous = ("current_setting", "getenv", "getvariable", "version", "current_database",
                 "current_schema", "current_schemas", "nextval", "currval", "setseed", "glob",
                 "read_csv", "read_parquet", "sniff_csv", "parquet_scan", "checkpoint", "query",
                 "query_table", "which_secret", "current_query", "txid_current", "stats",
                 "duckdb_settings", "pragma_version", "enable_profiling", "icu_sort_key",
                 "json_serialize_sql", "sleep_ms", "write_log", "user", "session_user")  # fmt: skip
    for name in dangerous:
        assert name not in allowed, name
        assert functions.refusal_reason(name), name
    assert not [n for n in allowed if n.startswith(("read_", "duckdb_", "pragma_", "pg_", "__"))]


def test_allowlisted_functions_exist_in_the_installed_duckdb() -> None:
    con = duckdb.connect()
    live = {
        name.lower()
        for (name,) in con.execute(
            "SELECT function_name FROM duckdb_functions() "
            "WHERE function_type IN ('scalar', 'aggregate', 'window', 'macro')"
        ).fetchall()
    }
    missing = functions.ALLOWED_FUNCTIONS - functions.SYNTAX_FUNCTIONS - live
    assert not missing, f"allowlisted but not in DuckDB {duckdb.__version__}: {sorted(missing)}"


def test_function_snapshot_matches_the_installed_duckdb() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen", REPO / "scripts/generate_duckdb_builtins.py"
    )
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    frozen = Path(duckdb_builtins_generated.__file__).read_text(encoding="utf-8")
    assert gen.render_snapshot() == frozen, (
        f"DuckDB {duckdb.__version__} differs from the function snapshot "
        f"({duckdb_builtins_generated.DUCKDB_VERSION}): run scripts/generate_duckdb_builtins.py, "
        "review the diff of governance/duckdb_builtins_generated.py and the allowlist, commit it"
    )


def test_pyproject_pins_the_duckdb_of_the_snapshot() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pinned = [d for d in pyproject["project"]["dependencies"] if d.startswith("duckdb")]
    assert pinned == [f"duckdb=={duckdb_builtins_generated.DUCKDB_VERSION.lstrip('v')}"]


def test_typed_sqlglot_functions_are_checked_by_what_duckdb_will_call() -> None:
    """Every sqlglot function class is refused unless its DuckDB rendering calls an allowed name."""
    logging.disable(logging.WARNING)
    refused = 0
    try:
        classes = {c for c in vars(exp).values() if inspect.isclass(c) and issubclass(c, exp.Func)}
        for cls in sorted(classes, key=lambda c: c.__name__):
            if cls in (exp.Func, exp.AggFunc) or issubclass(cls, exp.Anonymous):
                continue
            name = validate_module._rendered_call(cls)
            sample = validate_module._samples(cls)[0]
            if cls in validate_module._DENIED_FUNCTIONS:
                with pytest.raises(AccessDenied):
                    validate_module._check_function(sample)
            elif name and not functions.is_allowed(name):
                expected = AccessDenied if functions.refusal_reason(name.lower()) else SQLError
                with pytest.raises(expected):
                    validate_module._check_function(sample)
            else:
                continue
            refused += 1
    finally:
        logging.disable(logging.NOTSET)
    assert refused > 100  # Snowflake/BigQuery-only functions, readers, session functions, ...


# --- what runs is what was checked ---------------------------------------------------------------

_PAYLOADS = ("x; DROP TABLE pwn --", "x'; DROP TABLE pwn; --", "*/ DROP TABLE pwn /*")
_FUZZ_SEEDS = [
    "SELECT a COLLATE NOCASE, extract(year FROM d), CAST(a AS my_type) FROM db.t",
    "SELECT * FROM db.t AS x(a) WHERE s LIKE 'x' ORDER BY a NULLS FIRST",
    "SELECT date_trunc('month', d), a::STRUCT(x INT), INTERVAL 1 DAY FROM db.t USING SAMPLE 10%",
    "SELECT {'k': 1}.k, 'abc'.upper(), list_transform(l, x -> x) FROM db.t",
]


def _mutations(sql: str):
    tokens = sqlglot.Dialect.get_or_raise("duckdb").tokenize(sql)
    for token in tokens:
        if token.token_type in (TokenType.VAR, TokenType.STRING, TokenType.IDENTIFIER):
            for payload in _PAYLOADS:
                for quoted in ("'" + payload.replace("'", "''") + "'", '"' + payload + '"'):
                    yield sql[: token.start] + quoted + sql[token.end + 1 :]


@pytest.mark.parametrize("seed", _FUZZ_SEEDS)
def test_user_text_never_becomes_sql(seed: str) -> None:
    """Quoted payloads in any name or string position are refused or stay inside quotes."""
    for sql in _mutations(seed):
        try:
            tree = run(sql)
        except LakeError:
            continue
        statements = [s for s in sqlglot.parse(tree.sql(dialect="duckdb"), read="duckdb") if s]
        assert len(statements) == 1, sql
        assert not list(statements[0].find_all(exp.Drop, exp.Command)), sql
