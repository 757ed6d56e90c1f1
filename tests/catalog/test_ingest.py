"""Crawler, ingest and exactly-once streams: real files, real Delta tables, real processes."""

from __future__ import annotations

import gzip
import json
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from deltalake import DeltaTable
from typer.testing import CliRunner

import lake
from catalog import storage
from catalog.errors import (
    AccessDenied,
    InvalidArgument,
    SchemaMismatch,
    SQLError,
    TableNotFound,
)
from lake.cli.ingest import register

from support.lakes import ENV

WORKER = str(Path(__file__).parents[1] / "support" / "ingest_worker.py")
EVENTS = pa.schema([("id", pa.int64()), ("seq", pa.int64()), ("v", pa.string())])


def parquet(path: Path, **cols: pa.Array | list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)


def text(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)


def q(lk: lake.Lake, sql: str) -> list[dict]:
    return lk.sql(sql, user="u").to_pylist()


def types(lk: lake.Lake, table: str) -> dict[str, str]:
    return {c["name"]: c["type"] for c in lk.catalog.describe(table)["columns"]}


def log_at_pointer(lk: lake.Lake, table: str) -> bool:
    """No tentative Delta version is left past the ratified one."""
    d = lk.catalog.describe(table)
    return DeltaTable(d["location"]).version() == d["version"]


# crawler ---------------------------------------------------------------------------------------


def hive_source(src: Path) -> None:
    # orders: two levels of hive folders, int32 and int64 ids, a column only some files have,
    # and the default (null) partition.
    orders = src / "orders"
    parquet(
        orders / "region=eu/day=2024-01-01/part-0.parquet",
        id=pa.array([1, 2], pa.int32()),
        amount=[1.0, 2.0],
    )
    parquet(
        orders / "region=us/day=2024-01-02/part-0.parquet",
        id=pa.array([3, 4], pa.int64()),
        amount=[3.5, 4.5],
        note=["a", None],
    )
    parquet(
        orders / "region=__HIVE_DEFAULT_PARTITION__/day=2024-01-02/part-0.parquet",
        id=pa.array([5], pa.int64()),
        amount=[5.0],
    )
    text(orders / "_SUCCESS", "")
    # logs: CSV three folders deep; integer partitions; int latency in one file, float in another.
    text(src / "logs/year=2024/month=01/a.csv", "level,latency\nINFO,12\nWARN,7\n")
    text(src / "logs/year=2024/month=02/b.csv", "level,latency,host\nINFO,12.5,h1\n")
    # events: a group of top-level JSON files; a null-only column, then a typed one.
    text(src / "events_001.json", '{"e": 1, "kind": null}\n{"e": 2, "kind": null}\n')
    text(src / "events_002.json", '{"e": 3, "kind": "click", "extra": true}\n')
    text(src / "README.md", "not data")
    text(src / ".hidden.csv", "x\n1\n")


def test_crawl_nested_hive_folders_with_mixed_schemas(lk, tmp_path):
    src = tmp_path / "src"
    hive_source(src)
    progress: list[tuple[int, int, int]] = []
    r = lk.crawl(src, database="raw", user="etl", on_progress=lambda *a: progress.append(a))

    assert r.created == ["raw.events", "raw.logs", "raw.orders"]
    assert r.failed == [] and r.problems == []
    assert r.files == 7 and r.rows == 11
    assert r.ignored == [str(src / "README.md")]
    assert progress[-1] == (11, 7, 7)

    orders = r.table("orders")
    assert orders.partition_by == ["region", "day"]
    assert orders.formats == ["parquet"] and len(orders.files) == 3 and orders.rows == 5
    assert types(lk, "raw.orders") == {
        "id": "int64",
        "amount": "double",
        "note": "string",
        "region": "string",
        "day": "date32[day]",
    }
    assert lk.catalog.describe("raw.orders")["partition_by"] == ["region", "day"]
    rows = q(lk, "SELECT id, note, region, CAST(day AS VARCHAR) AS day FROM raw.orders ORDER BY id")
    assert rows == [
        {"id": 1, "note": None, "region": "eu", "day": "2024-01-01"},
        {"id": 2, "note": None, "region": "eu", "day": "2024-01-01"},
        {"id": 3, "note": "a", "region": "us", "day": "2024-01-02"},
        {"id": 4, "note": None, "region": "us", "day": "2024-01-02"},
        {"id": 5, "note": None, "region": None, "day": "2024-01-02"},
    ]

    assert r.table("logs").partition_by == ["year", "month"]
    assert types(lk, "raw.logs") == {
        "level": "string",
        "latency": "double",
        "host": "string",
        "year": "int64",
        "month": "int64",
    }
    assert q(lk, "SELECT month, latency, host FROM raw.logs ORDER BY month, latency") == [
        {"month": 1, "latency": 7.0, "host": None},
        {"month": 1, "latency": 12.0, "host": None},
        {"month": 2, "latency": 12.5, "host": "h1"},
    ]

    assert types(lk, "raw.events") == {"e": "int64", "kind": "string", "extra": "bool"}
    assert q(lk, "SELECT e, kind, extra FROM raw.events ORDER BY e")[2] == {
        "e": 3,
        "kind": "click",
        "extra": True,
    }
    # Each table is one ratified commit (after CREATE TABLE), audited as the crawling user.
    for name in r.created:
        assert [h["operation"] for h in lk.history(name)] == ["WRITE", "CREATE TABLE"]
        assert lk.history(name)[0]["user"] == "etl"


def test_crawl_reports_conflicts_and_writes_nothing_for_that_table(lk, tmp_path):
    src = tmp_path / "src"
    parquet(src / "good/a.parquet", k=pa.array([1, 2], pa.int64()))
    text(src / "bad_csv/a.csv", "k,v\n1,2\n")
    text(src / "bad_csv/b.csv", "k,v\nx,3\n")
    parquet(src / "bad_parquet/a.parquet", k=pa.array([1], pa.int64()))
    parquet(src / "bad_parquet/b.parquet", k=pa.array(["one"]))
    # Types are inferred from each file's first MiB; a later value that does not fit fails the
    # table mid-stream, after it was created and data streamed: it must vanish again.
    text(src / "late/a.csv", "k\n" + "1\n" * 700_000 + "oops\n")

    r = lk.crawl(src, database="raw", user="etl")

    assert r.created == ["raw.good"]
    assert sorted(r.failed) == ["raw.bad_csv", "raw.bad_parquet", "raw.late"]
    assert r.table("bad_csv").problems == ["column 'k' is int64 in a.csv but string in b.csv"]
    assert r.table("bad_parquet").problems == [
        "column 'k' is int64 in a.parquet but string in b.parquet"
    ]
    assert "oops" in r.table("late").problems[0]
    for name in r.failed:
        with pytest.raises(TableNotFound):
            lk.catalog.table(name)
        assert r.table(name).rows == 0
    assert [t.name for t in lk.catalog.list_tables("raw")] == ["good"]
    assert not storage.is_dir(storage.join(str(lk.root), "raw", "late"))

    # A conflict with an existing table's schema leaves that table as it was.
    parquet(src / "good/b.parquet", k=pa.array(["text"]))
    version = lk.catalog.table("raw.good").version
    r2 = lk.crawl(src, database="raw", user="etl")
    good = r2.table("good")
    assert (
        good.action == "failed"
        and "column 'k' is string, the table has int64" in (good.problems[0])
    )
    assert lk.catalog.table("raw.good").version == version
    assert q(lk, "SELECT count(*) AS n FROM raw.good") == [{"n": 2}]


def test_recrawl_is_incremental_and_idempotent(lk, tmp_path):
    src = tmp_path / "src"
    hive_source(src)
    first = lk.crawl(src, database="raw", user="etl")
    versions = {t.name: t.version for t in first.tables}

    again = lk.crawl(src, database="raw", user="etl")
    assert [(t.name, t.action, t.known, t.files, t.rows) for t in again.tables] == [
        ("raw.events", "unchanged", 2, [], 0),
        ("raw.logs", "unchanged", 2, [], 0),
        ("raw.orders", "unchanged", 3, [], 0),
    ]
    assert {t.name: lk.catalog.table(t.name).version for t in again.tables} == versions

    # New files: a new partition with a new column, and one more event file.
    parquet(
        src / "orders/region=apac/day=2024-01-03/part-0.parquet",
        id=pa.array([6, 7], pa.int64()),
        amount=[6.0, 7.0],
        channel=["web", "shop"],
    )
    text(src / "events_003.json", '{"e": 4}\n')
    # A file that changed after it was crawled is reported, not read again.
    text(src / "logs/year=2024/month=01/a.csv", "level,latency\nINFO,12\nWARN,7\nERROR,1\n")
    third = lk.crawl(src, database="raw", user="etl")
    orders = third.table("orders")
    assert (orders.action, orders.files, orders.known, orders.rows) == (
        "updated",
        ["region=apac/day=2024-01-03/part-0.parquet"],
        3,
        2,
    )
    assert orders.new_columns == ["channel"]
    assert third.table("events").action == "updated" and third.table("events").rows == 1
    logs = third.table("logs")
    assert logs.action == "unchanged" and "a.csv changed since it was crawled" in logs.warnings[0]
    assert q(lk, "SELECT count(*) AS n, count(DISTINCT id) AS d FROM raw.orders") == [
        {"n": 7, "d": 7}
    ]
    assert q(lk, "SELECT channel FROM raw.orders WHERE id = 7") == [{"channel": "shop"}]
    assert q(lk, "SELECT count(*) AS n FROM raw.events") == [{"n": 4}]
    assert q(lk, "SELECT count(*) AS n FROM raw.logs") == [{"n": 3}]

    fourth = lk.crawl(src, database="raw", user="etl")
    assert {t.action for t in fourth.tables} == {"unchanged"}
    assert fourth.files == 0 and fourth.rows == 0
    assert q(lk, "SELECT count(*) AS n FROM raw.orders") == [{"n": 7}]


# ingest ----------------------------------------------------------------------------------------


def sqlite_db(path: Path, n: int = 25_000) -> str:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE orders (id INTEGER, region TEXT, amount REAL, day TEXT, note TEXT)")
    con.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
        [
            (
                i,
                ("eu", "us", "apac")[i % 3],
                i * 0.5,
                f"2024-01-{i % 28 + 1:02d}",
                None if i % 2 else "n",
            )
            for i in range(n)
        ],
    )
    con.commit()
    con.close()
    return f"sqlite:///{path}"


ORDERS = pa.schema(
    [
        ("id", pa.int64()),
        ("region", pa.string()),
        ("amount", pa.float64()),
        ("day", pa.date32()),
        ("note", pa.string()),
    ]
)


def test_ingest_from_sqlite_database(lk, tmp_path):
    url = sqlite_db(tmp_path / "shop.db")
    lk.catalog.create_database("sales")
    lk.catalog.create_table("sales.orders", ORDERS, partition_by=["region"])
    seen: list[int] = []
    r = lk.ingest(
        "sales.orders",
        (url, "SELECT id, region, amount, day, note FROM orders"),
        user="etl",
        batch_rows=4_000,
        on_progress=lambda rows, *_: seen.append(rows),
    )
    assert (r.rows, r.committed, r.created, r.version) == (25_000, True, False, 1)
    assert seen[:2] == [4_000, 8_000] and seen[-1] == 25_000  # streamed in chunks
    assert [h["operation"] for h in lk.history("sales.orders")] == ["WRITE", "CREATE TABLE"]
    assert q(
        lk,
        "SELECT count(*) AS n, sum(amount) AS s, count(note) AS notes, "
        "CAST(min(day) AS VARCHAR) AS d FROM sales.orders",
    ) == [
        {"n": 25_000, "s": sum(i * 0.5 for i in range(25_000)), "notes": 12_500, "d": "2024-01-01"}
    ]

    # A missing table is created from the query's columns.
    r2 = lk.ingest(
        "sales.by_region",
        (url, "SELECT region, count(*) AS n, sum(amount) AS total FROM orders GROUP BY region"),
        user="etl",
    )
    assert r2.created and r2.rows == 3
    assert types(lk, "sales.by_region") == {"region": "string", "n": "int64", "total": "double"}

    # overwrite replaces, in one commit.
    r3 = lk.ingest(
        "sales.by_region",
        (url, "SELECT 'all' AS region, 1 AS n, 2.0 AS total"),
        user="etl",
        mode="overwrite",
    )
    assert r3.version == 2
    assert q(lk, "SELECT region FROM sales.by_region") == [{"region": "all"}]


def test_ingest_from_sqlite_errors_write_nothing(lk, tmp_path):
    url = sqlite_db(tmp_path / "shop.db", n=3_000)
    con = sqlite3.connect(tmp_path / "shop.db")
    con.execute("UPDATE orders SET id = 'oops' WHERE id = 2500")  # SQLite keeps the text
    con.commit()
    con.close()
    lk.catalog.create_database("sales")
    lk.catalog.create_table("sales.orders", ORDERS)
    cases = [
        ((url, "SELECT * FROM no_such_table"), SQLError),
        ((url, "SELEKT 1"), SQLError),
        (("nosuchdriver://host/db", "SELECT 1"), InvalidArgument),
        ((f"sqlite:///{tmp_path}/missing/dir/x.db", "SELECT 1"), InvalidArgument),
        ((url, "SELECT 'abc' AS id"), SchemaMismatch),
        ((url, "SELECT id, 1 AS unknown_column FROM orders"), SchemaMismatch),
        # the bad value is in the third chunk: two chunks already streamed into the writer
        ((url, "SELECT id, region, amount, day, note FROM orders ORDER BY rowid"), SchemaMismatch),
    ]
    for source, error in cases:
        with pytest.raises(error):
            lk.ingest("sales.orders", source, user="etl", batch_rows=1_000)
        assert lk.catalog.table("sales.orders").version == 0, source
        assert log_at_pointer(lk, "sales.orders")
    with pytest.raises(SQLError):
        lk.ingest("sales.fresh", (url, "SELECT * FROM nope"), user="etl")
    with pytest.raises(TableNotFound):
        lk.catalog.table("sales.fresh")
    assert q(lk, "SELECT count(*) AS n FROM sales.orders") == [{"n": 0}]


CAP_MB = 64  # ingesting 6x this much more CSV may raise the peak RSS by at most this much


@pytest.mark.slow
def test_ingest_csv_larger_than_memory_cap_stays_bounded(tmp_path):
    """Peak RSS of a subprocess ingesting CSV in 64 KiB blocks: a 384 MB file (6x the cap) needs
    less than CAP_MB more than a 48 MB one did, i.e. memory does not grow with the input; and
    the whole working set above a warm process stays within a fixed bound."""
    lines = "".join(
        f"{i},{('eu', 'us', 'apac')[i % 3]},{i * 0.25},note-{i % 977}\n" for i in range(30_000)
    )
    chunk = lines.encode()
    copies = -(-(6 * CAP_MB << 20) // len(chunk))
    files = {"small": 0, "medium": copies // 8, "big": copies}
    for name, n in files.items():
        with (tmp_path / f"{name}.csv").open("wb") as f:
            f.write(b"id,region,amount,note\n")
            for _ in range(n):
                f.write(chunk)
            if not n:
                f.write("".join(lines.splitlines(True)[:1000]).encode())
    big = tmp_path / "big.csv"
    assert big.stat().st_size > 6 * CAP_MB << 20
    out = subprocess.run(
        [sys.executable, WORKER, "memory", str(tmp_path / "lake"), str(64 << 10), str(16 << 20)]
        + [str(tmp_path / f"{name}.csv") for name in files],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    warm, medium, big_ = (json.loads(line) for line in out.stdout.strip().splitlines())
    assert big_["rows"] == copies * 30_000 and medium["rows"] == copies // 8 * 30_000
    peaks = [round(m["peak_mb"]) for m in (warm, medium, big_)]  # for the failure message
    assert big_["peak_mb"] - medium["peak_mb"] < CAP_MB, peaks  # 8x the data, same memory
    # Above a warm process: CSV blocks read ahead, the row group and the file (up to the
    # table's delta.targetFileSize, 16 MiB here) delta-rs is writing; measured 56-110 MB.
    assert big_["peak_mb"] - warm["peak_mb"] < 2.5 * CAP_MB, peaks


@pytest.fixture
def orders_lake(lk, tmp_path):
    """sales.orders with one committed write, and a folder of good and bad source files."""
    lk.catalog.create_database("sales")
    schema = pa.schema([("id", pa.int64()), ("region", pa.string()), ("amount", pa.float64())])
    lk.catalog.create_table("sales.orders", schema, partition_by=["region"])
    lk.write(
        "sales.orders",
        pa.table({"id": [0], "region": ["eu"], "amount": [0.0]}, schema=schema),
        user="etl",
    )
    d = tmp_path / "in"
    # 80,000 rows: past the first MiB that types are inferred from, so the bad last rows are
    # met mid-stream, after earlier files and blocks went into the writer.
    body = "".join(f"{i},eu,{i}.5\n" for i in range(1, 80_001))
    text(d / "good/a.csv", "id,region,amount\n" + body)
    text(d / "good/b.csv", "id,region,amount\n" + body)
    text(d / "late_bad_value/a.csv", "id,region,amount\n" + body)
    text(d / "late_bad_value/b.csv", "id,region,amount\n" + body + "abc,eu,1.0\n")
    text(d / "late_bad_row/a.csv", "id,region,amount\n" + body)
    text(d / "late_bad_row/b.csv", "id,region,amount\n" + body + "1,eu,1.0,surplus\n")
    parquet(d / "conflict/a.parquet", id=pa.array([1], pa.int64()), region=["eu"], amount=[1.0])
    parquet(d / "conflict/b.parquet", id=["x"], region=["eu"], amount=[1.0])
    text(d / "corrupt/x.parquet", "this is not parquet")
    (d / "gz").mkdir()
    data = b"id,region,amount\n" + b"".join(b"%d,eu,%d.5\n" % (i, i) for i in range(5000))
    (d / "gz/x.csv.gz").write_bytes(gzip.compress(data)[:2000])  # truncated
    text(d / "unknown/x.txt", "1,2,3")
    text(d / "extra/x.csv", "id,region,amount,surplus\n1,eu,1.0,7\n")
    text(d / "wrong_type/x.json", '{"id": "seven", "region": "eu", "amount": 1}\n')
    (d / "empty_dir").mkdir()
    return lk, d


BAD_INPUTS = [  # (source, error, also an error when the ingest creates the table)
    ("corrupt/x.parquet", InvalidArgument, True),
    ("gz/x.csv.gz", InvalidArgument, True),
    ("conflict/*.parquet", SchemaMismatch, True),
    ("late_bad_value", SchemaMismatch, True),
    ("late_bad_row/*.csv", InvalidArgument, True),
    ("wrong_type/x.json", SchemaMismatch, False),
    ("extra/x.csv", SchemaMismatch, False),
    ("nowhere/*.csv", InvalidArgument, True),
    ("good/*.parquet", InvalidArgument, True),
    ("good/[z]*.csv", InvalidArgument, True),
    ("unknown/*.txt", InvalidArgument, True),
    ("unknown", InvalidArgument, True),
    ("empty_dir", InvalidArgument, True),
    ("missing.csv", InvalidArgument, True),
]


@pytest.mark.parametrize("source,error,fresh", BAD_INPUTS, ids=[s for s, *_ in BAD_INPUTS])
def test_ingest_bad_inputs_raise_typed_errors_and_write_nothing(orders_lake, source, error, fresh):
    lk, d = orders_lake
    with pytest.raises(error):
        lk.ingest("sales.orders", str(d / source), user="etl")
    assert lk.catalog.table("sales.orders").version == 1
    assert log_at_pointer(lk, "sales.orders")
    assert q(lk, "SELECT count(*) AS n FROM sales.orders") == [{"n": 1}]
    if fresh:  # into a new table: it is not left behind either
        with pytest.raises(error):
            lk.ingest("sales.fresh", str(d / source), user="etl")
        with pytest.raises(TableNotFound):
            lk.catalog.table("sales.fresh")


def test_ingest_bad_arguments(orders_lake):
    lk, d = orders_lake
    with pytest.raises(InvalidArgument):
        lk.ingest("sales.orders", str(d / "good"), user="etl", format="xml")
    with pytest.raises(InvalidArgument):
        lk.ingest("sales.orders", str(d / "good"), user="etl", mode="upsert")
    with pytest.raises(InvalidArgument):
        lk.ingest("sales.orders", 42, user="etl")
    with pytest.raises(TableNotFound):
        lk.ingest("nodb.t", str(d / "good"), user="etl")
    with pytest.raises(TableNotFound):
        lk.ingest("sales.absent", str(d / "good"), user="etl", create=False)
    assert lk.catalog.table("sales.orders").version == 1


def test_ingest_glob_is_one_atomic_commit(orders_lake):
    lk, d = orders_lake
    r = lk.ingest("sales.orders", str(d / "good" / "*.csv"), user="etl", block_size=64 << 10)
    assert (r.rows, len(r.files), r.version) == (160_000, 2, 2)
    assert q(lk, "SELECT count(*) AS n FROM sales.orders") == [{"n": 160_001}]
    assert lk.history("sales.orders", 1)[0]["operation"] == "WRITE"


def test_ingest_hive_folders_into_partitioned_table(lk, tmp_path):
    src = tmp_path / "src"
    text(src / "region=eu/a.csv", "id,amount\n1,1.5\n2,2.5\n")
    text(src / "region=us/a.csv", "id,amount\n3,3\n")
    lk.catalog.create_database("sales")
    r = lk.ingest("sales.orders", str(src / "*" / "*.csv"), user="etl")
    assert r.created and lk.catalog.describe("sales.orders")["partition_by"] == ["region"]
    assert q(lk, "SELECT id, amount, region FROM sales.orders ORDER BY id") == [
        {"id": 1, "amount": 1.5, "region": "eu"},
        {"id": 2, "amount": 2.5, "region": "eu"},
        {"id": 3, "amount": 3.0, "region": "us"},
    ]


# exactly-once streams --------------------------------------------------------------------------


def stream_lake(root: Path) -> None:
    with lake.connect(root) as lk:
        lk.catalog.create_database("s")
        lk.catalog.create_table("s.events", EVENTS)


def batch(seq: int, n: int = 20) -> tuple[int, pa.Table]:
    ids = [seq * 1000 + i for i in range(n)]
    return seq, pa.table({"id": ids, "seq": [seq] * n, "v": [f"s{seq}"] * n}, schema=EVENTS)


def assert_exactly_once(root: Path, count: int) -> None:
    with lake.connect(root) as lk:  # connecting rolls back what a killed writer left
        got = q(
            lk,
            "SELECT seq, count(*) AS n, count(DISTINCT id) AS d FROM s.events GROUP BY seq ORDER BY seq",
        )
        assert [r["seq"] for r in got] == list(range(count))
        assert all(r["n"] == 20 and r["d"] == 20 for r in got), got
        assert lk.committed_seq("s.events", "feed") == count - 1
        assert log_at_pointer(lk, "s.events")


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, WORKER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def read_until(proc: subprocess.Popen, marker: str, timeout: float = 60) -> list[str]:
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == marker:
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout) and lines and lines[-1] == marker, (
        lines,
        proc.stderr.read() if proc.poll() is not None else "",
    )
    return lines


@pytest.mark.chaos
@pytest.mark.parametrize("mode,marker", [("stream", "INFLIGHT"), ("ratify", "TENTATIVE")])
def test_stream_replay_after_kill_9_commits_each_batch_once(tmp_path, mode, marker):
    """kill -9 while batch 5 streams into delta-rs, or after its Delta version is written but
    before the catalog ratified it; a replay of all batches commits each exactly once."""
    root = tmp_path / "lake"
    stream_lake(root)
    p = spawn(mode, str(root), "8", "5")
    lines = read_until(p, marker)
    assert [x for x in lines if x.startswith("ACK")] == [f"ACK {i}" for i in range(5)]
    p.send_signal(signal.SIGKILL)
    p.wait()
    with lake.connect(root) as lk:
        r = lk.append_stream("s.events", (batch(s) for s in range(8)), user="w", app_id="feed")
        assert (r.committed, r.skipped, r.last_seq) == (3, 5, 7)
        again = lk.append_stream("s.events", (batch(s) for s in range(8)), user="w", app_id="feed")
        assert (again.committed, again.skipped) == (0, 8)
    assert_exactly_once(root, 8)


@pytest.mark.chaos
def test_stream_kill_9_at_random_instants_then_replay(tmp_path):
    """Writers killed at random instants, twice; every acknowledged batch is there once, and a
    replay of everything fills in the rest exactly once."""
    root = tmp_path / "lake"
    stream_lake(root)
    rng = random.Random(5)
    acked: list[int] = []
    for _ in range(2):
        p = spawn("stream", str(root), "100000")
        read_until(p, "READY")
        lines: list[str] = []
        reader = threading.Thread(target=lines.extend, args=(p.stdout,), daemon=True)
        reader.start()
        time.sleep(rng.uniform(0.5, 1.5))
        p.send_signal(signal.SIGKILL)
        p.wait()
        reader.join(5)
        acked += [int(x.split()[1]) for x in lines if x.startswith("ACK")]
    assert len(acked) > 5, "the writers made too little progress for the test to mean anything"
    count = max(acked) + 4
    with lake.connect(root) as lk:
        present = {r["seq"] for r in q(lk, "SELECT DISTINCT seq FROM s.events")}
        assert set(acked) <= present
        r = lk.append_stream("s.events", (batch(s) for s in range(count)), user="w", app_id="feed")
        assert r.skipped >= len(set(acked)) and r.committed + r.skipped == count
    assert_exactly_once(root, count)


@pytest.mark.chaos
def test_stream_replayers_racing_commit_each_batch_once(tmp_path):
    """Two processes replay the same 12 batches at once: the committed-sequence check happens
    under the table lock, inside the commit, so together they commit each batch exactly once."""
    root = tmp_path / "lake"
    stream_lake(root)
    with lake.connect(root) as lk:
        lk.append_stream("s.events", (batch(s) for s in range(3)), user="w", app_id="feed")
    procs = [spawn("replay", str(root), "12") for _ in range(2)]
    for p in procs:
        read_until(p, "READY")
    for p in procs:
        p.stdin.write("GO\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, errs = p.communicate(timeout=120)
        assert p.returncode == 0, errs
        _, committed, skipped = out.split()[-3:]
        results.append((int(committed), int(skipped)))
    assert sum(c for c, _ in results) == 9
    assert all(c + s == 12 for c, s in results)
    assert_exactly_once(root, 12)


def test_stream_arguments(lk):
    lk.catalog.create_database("s")
    lk.catalog.create_table("s.events", EVENTS)
    with pytest.raises(InvalidArgument):
        lk.append_stream("s.events", [batch(2), batch(1)], user="w", app_id="feed")
    with pytest.raises(InvalidArgument):
        lk.append_stream("s.events", [batch(0)], user="w", app_id="")
    with pytest.raises(InvalidArgument):
        lk.append_stream("s.events", [(-1, batch(0)[1])], user="w", app_id="feed")
    with pytest.raises(SchemaMismatch):
        lk.append_stream("s.events", [(5, pa.table({"x": [1]}))], user="w", app_id="feed")
    # batch 2 committed before 1 was refused; a different app id is an independent stream
    assert lk.committed_seq("s.events", "feed") == 2
    r = lk.append_stream("s.events", [batch(0), batch(1)], user="w", app_id="other")
    assert (r.committed, r.skipped) == (2, 0)
    # a batch may leave out nullable columns
    r = lk.append_stream("s.events", [(9, pa.table({"id": [1], "seq": [9]}))], user="w", app_id="x")
    assert r.committed == 1
    assert q(lk, "SELECT count(*) AS n, count(v) AS v FROM s.events") == [{"n": 61, "v": 60}]


@pytest.mark.local_disk  # the policy folder inside the root
def test_governed_by_the_policy_and_audited(tmp_path):
    root = tmp_path / "lake"
    src = tmp_path / "src"
    (root / "policy").mkdir(parents=True)
    (root / "policy" / "policy.csv").write_text(
        "g, admin, role:admin\np, role:admin, *, *, allow\np, bob, raw, select, allow\n"
    )
    hive_source(src)
    with lake.connect(root) as lk:
        # Without a location grant bob reads nothing there, and nothing is created.
        with pytest.raises(AccessDenied, match="may not read that location"):
            lk.crawl(src, database="raw", user="bob")
        assert [d.name for d in lk.catalog.list_databases()] == []
    csv = root / "policy" / "policy.csv"
    csv.write_text(csv.read_text() + f"p, bob, location:{src}, select, allow\n")
    with lake.connect(root) as lk:
        # Reading is granted now, creating a database is not.
        with pytest.raises(AccessDenied, match="may not create"):
            lk.crawl(src, database="raw", user="bob")
        lk.catalog.create_database("raw", user="admin")
        denied = lk.crawl(src, database="raw", user="bob")  # nor creating tables in raw
        assert denied.created == [] and lk.catalog.list_tables("raw") == []
        assert denied.table("orders").problems == [
            "cannot create the table: bob may not create tables in raw"
        ]
        assert lk.crawl(src, database="raw", user="admin").created == denied.failed
        version = lk.catalog.table("raw.events").version
        text(src / "events_003.json", '{"e": 4}\n')
        with pytest.raises(AccessDenied):
            lk.ingest("raw.events", str(src / "events_003.json"), user="bob")
        with pytest.raises(AccessDenied):
            lk.append_stream("raw.events", [(0, pa.table({"e": [5]}))], user="bob", app_id="a")
        assert lk.catalog.table("raw.events").version == version
        assert lk.ingest("raw.events", str(src / "events_003.json"), user="admin").rows == 1
    with lake.connect(root) as lk:
        audit = lk.sql(
            "SELECT a.user, a.decision FROM system.audit a WHERE a.action = 'write'", user="admin"
        ).to_pylist()
    assert {"user": "bob", "decision": "denied"} in audit
    assert {"user": "admin", "decision": "allowed"} in audit


# command line ----------------------------------------------------------------------------------


def test_cli_crawl_and_ingest(tmp_path):
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    src, root = tmp_path / "src", tmp_path / "lake"
    hive_source(src)
    text(src / "bad/a.csv", "k\n1\n")
    text(src / "bad/b.csv", "k\nx\n")
    res = runner.invoke(
        app, ["crawl", str(src), "--database", "raw", "--user", "etl", "--root", str(root)]
    )
    assert res.exit_code == 1, res.output  # a table had problems
    for word in ("raw.orders", "created", "raw.bad", "failed", "3 created", "1 failed"):
        assert word in res.output, res.output

    url = sqlite_db(tmp_path / "shop.db", n=100)
    res = runner.invoke(
        app,
        [
            "ingest",
            "raw.shop",
            url,
            "--query",
            "SELECT * FROM orders",
            "--user",
            "etl",
            "--root",
            str(root),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "100 rows" in res.output and "created and loaded" in res.output
    res = runner.invoke(
        app,
        [
            "ingest",
            "raw.shop",
            str(tmp_path / "nope" / "*.csv"),
            "--user",
            "etl",
            "--root",
            str(root),
        ],
    )
    assert res.exit_code == 1 and "matches no files" in " ".join(res.output.split())
    with lake.connect(root) as lk:
        assert q(lk, "SELECT count(*) AS n FROM raw.shop") == [{"n": 100}]
