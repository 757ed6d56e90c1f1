"""Scale-out costs, each measured side by side with the embedded setup in one run.

Parts (each a function returning result dicts; `main` runs those whose servers are available):
- `postgres`: the same lake with its catalog in PostgreSQL / in SQLite: 1,000-row append p50 and a
  2-table transaction. The server is $LAKE_BENCH_PG (an admin URL), else a throwaway one started
  with scripts/pg_cluster.sh and stopped after. An append costs PostgreSQL two round trips (the
  lock statement; ratify, audit record included, in one message ending in COMMIT).
- `s3_query`: a governed 10M-row group-by on a lake in S3 / raw DuckDB over the same S3 files by
  the same access path (DuckDB's Python file system over catalog.storage), and / the same table
  on local disk. The S3 API server is $LAKE_BENCH_S3, else a throwaway scripts/s3_server.sh.
- `s3_access`: that access path / DuckDB's httpfs extension over the same files, each in its own
  process (httpfs exists on PyPI only for DuckDB <= 1.5.5: $LAKE_BENCH_HTTPFS_PYTHON names a
  Python with duckdb==1.5.5 and duckdb-extension-httpfs; skipped without it).
- `s3_writers`: 4 writer processes x 100 appends to one table of a lake in S3 with its catalog in
  PostgreSQL: acknowledged commits lost (goal 0) and commits per second.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_commit import SCHEMA, rows  # noqa: E402
from bench_query import fill  # noqa: E402
from common import QUIET_TOML, interleaved, p50, report  # noqa: E402

import lake  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str | None]:
    """An admin URL of a PostgreSQL server: $LAKE_BENCH_PG or a throwaway cluster (None: none)."""
    with _server("LAKE_BENCH_PG", "pg_cluster.sh", "postgres part") as url:
        yield url


@contextlib.contextmanager
def _server(env: str, script: str, part: str) -> Iterator[str | None]:
    """$`env`, else the URL of a throwaway server that scripts/`script` starts (None, saying
    `part` is skipped, when it cannot)."""
    if os.environ.get(env):
        yield os.environ[env]
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # PostgreSQL runs as the postgres user, who must reach its folder
        folder = Path(tmp) / "server"
        path = REPO / "scripts" / script
        started = subprocess.run(
            ["bash", str(path), "start", str(folder)], capture_output=True, text=True
        )
        if started.returncode != 0:
            print(f"{part} skipped: {started.stderr.strip()[-300:]}", flush=True)
            yield None
            return
        try:
            yield started.stdout.strip().splitlines()[-1]
        finally:
            subprocess.run(["bash", str(path), "stop", str(folder)], check=False)


def fresh_database(server: str) -> str:
    import psycopg

    name = "lakeward_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.rsplit("/", 1)[0] + "/" + name


def open_lake(root: Path, catalog: str | None) -> lake.Lake:
    root.mkdir(parents=True)
    # The commit path alone: background compaction would add work to one side only.
    (root / "lake.toml").write_text("[catalog]\nauto_compact = false\n")
    lk = lake.connect(root, catalog=catalog)
    lk.catalog.create_database("b")
    lk.catalog.create_table("b.a", SCHEMA)
    lk.catalog.create_table("b.c", SCHEMA)
    return lk


def postgres(repeat: int = 200) -> list[dict]:
    """PostgreSQL catalog / SQLite catalog, same lake layout, same data, interleaved."""
    with postgres_server() as server:
        if server is None:
            return []
        data = rows()
        with tempfile.TemporaryDirectory() as tmp:
            pg_lake = open_lake(Path(tmp) / "pg", fresh_database(server))
            sq_lake = open_lake(Path(tmp) / "sqlite", None)
            try:

                def append(lk: lake.Lake) -> Callable[[], None]:
                    return lambda: lk.write("b.a", data, user="bench")

                def txn(lk: lake.Lake) -> Callable[[], None]:
                    def go() -> None:
                        with lk.transaction(user="bench") as tx:
                            tx.write("b.a", data)
                            tx.write("b.c", data)

                    return go

                ta, tb = interleaved(append(pg_lake), append(sq_lake), repeat, warmup=5)
                out = [
                    report(
                        "append p50: PostgreSQL catalog / SQLite catalog",
                        p50(ta),
                        p50(tb),
                        "<= 1.3",
                    )
                ]
                tc, td = interleaved(txn(pg_lake), txn(sq_lake), repeat // 2, warmup=3)
                out.append(
                    report("2-table transaction: PostgreSQL / SQLite", p50(tc), p50(td), "<= 1.6")
                )
                return out
            finally:
                pg_lake.close()
                sq_lake.close()


@contextlib.contextmanager
def s3_server() -> Iterator[str | None]:
    """The URL of an S3 API server: $LAKE_BENCH_S3 or a throwaway moto (None: none)."""
    with _server("LAKE_BENCH_S3", "s3_server.sh", "S3 parts") as url:
        yield url


BUCKET = "lakeward-bench"


def s3_options(url: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }


def s3_prefix(url: str) -> str:
    """A fresh prefix in the bench bucket (made if missing; only a test server makes buckets)."""
    import boto3

    o = s3_options(url)
    client = boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=o["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=o["AWS_SECRET_ACCESS_KEY"],
        region_name=o["AWS_REGION"],
    )
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    return f"s3://{BUCKET}/b-{uuid.uuid4().hex[:10]}"


def s3_query(repeat: int = 15) -> list[dict]:
    """Governed group-by on the S3 root / raw DuckDB over the same S3 files / local disk."""
    import duckdb

    from catalog import storage

    with s3_server() as url, tempfile.TemporaryDirectory() as tmp:
        if url is None:
            return []
        root = s3_prefix(url)
        opts = s3_options(url)
        storage.configure(root, opts)
        storage.write_bytes(f"{root}/lake.toml", QUIET_TOML.encode())
        s3_lake = lake.connect(root, catalog=f"sqlite:///{tmp}/c.db", storage_options=opts)
        local = Path(tmp) / "local"
        local.mkdir()
        (local / "lake.toml").write_text(QUIET_TOML)
        local_lake = lake.connect(local)
        try:
            fill(s3_lake)
            fill(local_lake)
            files = s3_lake.catalog.raw.snapshot(s3_lake.catalog.table("b.events")).files
            paths = files["path"].to_pylist()
            raw = duckdb.connect()
            # The engine's access path and footer cache, nothing of the lake's.
            raw.register_filesystem(storage.duckdb_filesystem(frozenset({root})))
            raw.execute("SET GLOBAL parquet_metadata_cache = true")
            raw.execute("SET validate_external_file_cache = 'NO_VALIDATION'")
            q_ours = "SELECT k, count(*) AS n, sum(v) AS s FROM b.events GROUP BY k"
            q_raw = f"SELECT k, count(*) AS n, sum(v) AS s FROM read_parquet({paths!r}) GROUP BY k"

            def ours() -> object:
                return s3_lake.sql(q_ours, user="bench")

            def theirs() -> object:
                return raw.sql(q_raw).to_arrow_table()

            def on_disk() -> object:
                return local_lake.sql(q_ours, user="bench")

            assert ours().num_rows == theirs().num_rows == on_disk().num_rows == 1000
            ta, tb = interleaved(ours, theirs, repeat)
            tc, td = interleaved(ours, on_disk, repeat)
            out = [
                report(
                    "group-by 10M rows: S3 lake / raw DuckDB, same S3 files",
                    p50(ta),
                    p50(tb),
                    "<= 1.10",
                ),
                report(
                    "group-by 10M rows: S3 lake / the same on local disk",
                    p50(tc),
                    p50(td),
                    "report",
                ),
            ]
            out += s3_access(url, paths)
            return out
        finally:
            s3_lake.close()
            local_lake.close()


def s3_access(url: str, paths: list[str], rounds: int = 5) -> list[dict]:
    """The engine's access path (pinned DuckDB, Python file system over obstore) / httpfs
    (DuckDB 1.5.5), each in its own process, alternating, cold and warm."""
    other = os.environ.get("LAKE_BENCH_HTTPFS_PYTHON")
    if not other:
        print("s3 access part skipped: set LAKE_BENCH_HTTPFS_PYTHON (see the docstring)")
        return []
    env = {**os.environ, **s3_options(url)}
    probe = str(Path(__file__).parent / "s3_probe.py")
    got: dict[str, dict[str, list[float]]] = {"python-fs": {}, "httpfs": {}}
    for _ in range(3):
        for mode, python in (("python-fs", sys.executable), ("httpfs", other)):
            done = subprocess.run(
                [python, probe, mode, url, json.dumps(paths), str(rounds)],
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
                check=True,
            )
            line = json.loads(done.stdout.strip().splitlines()[-1])
            for kind in ("cold_ms", "warm_ms"):
                got[mode].setdefault(kind, []).extend(line[kind])
            got[mode]["duckdb"] = line["duckdb"]
    ours, theirs = got["python-fs"], got["httpfs"]
    label = f"DuckDB {ours['duckdb']} Python fs / DuckDB {theirs['duckdb']} httpfs"
    return [
        report(
            f"S3 cold query: {label}",
            statistics.median(ours["cold_ms"]) / 1000,
            statistics.median(theirs["cold_ms"]) / 1000,
            "report",
        ),
        report(
            f"S3 warm query: {label}",
            statistics.median(ours["warm_ms"]) / 1000,
            statistics.median(theirs["warm_ms"]) / 1000,
            "report",
        ),
    ]


def s3_writers(writers: int = 4, appends: int = 100) -> list[dict]:
    """4 writer processes x 100 appends, PostgreSQL catalog + S3 root: lost commits and rate."""
    with postgres_server() as server, s3_server() as url:
        if server is None or url is None:
            return []
        root = s3_prefix(url)
        catalog = fresh_database(server)
        opts = s3_options(url)
        from catalog import storage

        storage.configure(root, opts)
        storage.write_bytes(f"{root}/lake.toml", QUIET_TOML.encode())
        with lake.connect(root, catalog=catalog, storage_options=opts) as lk:
            lk.catalog.create_database("b")
            lk.catalog.create_table("b.a", SCHEMA)
        env = {**os.environ, **opts}
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "writer", root, catalog, str(w), str(appends)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for w in range(writers)
        ]
        for p in procs:
            assert p.stdout.readline().strip() == "READY"
        start = time.perf_counter()
        for p in procs:  # all start at once
            p.stdin.write("GO\n")
            p.stdin.close()
        acks = 0
        for p in procs:
            # (read through the same buffered pipe as READY: communicate() would skip its buffer)
            out = p.stdout.read()
            p.wait(timeout=1800)
            # (an ACK may share its line with something a library printed without a newline)
            mine = len(re.findall(r"\bACK \d+\b", out))
            if mine != appends:
                print(f"  a writer acknowledged {mine} of {appends}", flush=True)
            acks += mine
            for line in out.splitlines():
                if not re.fullmatch(r"ACK \d+", line):
                    print(f"  writer printed: {line[:200]!r}", flush=True)
            assert p.returncode == 0
        wall = time.perf_counter() - start
        with lake.connect(root, catalog=catalog, storage_options=opts) as lk:
            got = lk.sql("SELECT count(*) AS n, count(DISTINCT id) AS commits FROM b.a")
        n, commits = got["n"][0].as_py(), got["commits"][0].as_py()
        assert n == commits * len(rows()), "a commit is visible in part or twice"
        lost = acks - commits
        rate = acks / wall
        print(
            f"{writers} writer processes x {appends} appends, PostgreSQL + S3: {acks} acknowledged, "
            f"{lost} lost, {rate:.1f} commits/s",
            flush=True,
        )
        return [
            {
                "benchmark": f"{writers} writers x {appends} appends, PostgreSQL + S3",
                "acknowledged": acks,
                "lost": lost,
                "commits_per_s": rate,
                "goal": "0 lost",
            }
        ]


def writer(root: str, catalog: str, worker: int, appends: int) -> None:
    """A writer process of `s3_writers`: its appends, each acknowledged once committed."""
    import pyarrow as pa

    data = rows()
    with lake.connect(root, catalog=catalog) as lk:
        print("READY", flush=True)
        sys.stdin.readline()
        for i in range(appends):
            batch = data.set_column(
                0, data.schema.field(0).name, pa.array([worker * 10**6 + i] * len(data), pa.int64())
            )
            lk.write("b.a", batch, user=f"w{worker}")
            print(f"ACK {i}", flush=True)


def main() -> list[dict]:
    return postgres() + s3_query() + s3_writers()


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "writer":
    writer(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    sys.exit(0)


if __name__ == "__main__":
    main()
