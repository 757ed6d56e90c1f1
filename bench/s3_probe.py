"""One side of bench_scale's S3 access comparison, run in its own process (and its own venv).

usage: s3_probe.py MODE ENDPOINT FILES_JSON ROUNDS
  MODE python-fs: the pinned DuckDB reading through catalog.storage's Python file system
                  (obstore ranged GETs), the way the lake's engine reads an object store
  MODE httpfs:    DuckDB's httpfs extension from the PyPI package duckdb-extension-httpfs
                  (needs a venv with a DuckDB it is built for, e.g. 1.5.5)
Prints one JSON line: {"mode", "duckdb", "cold_ms": [...], "warm_ms": [...]}. Each round opens a
new database (cold: footers and data from the store), then runs the query 3 more times (warm).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time

import duckdb

QUERY = "SELECT k, count(*) AS n, sum(v) AS s FROM read_parquet({files}) GROUP BY k"


def connect(mode: str, endpoint: str, files: list[str]) -> duckdb.DuckDBPyConnection:
    if mode == "httpfs":
        import duckdb_extension_httpfs

        base = os.path.dirname(duckdb_extension_httpfs.__file__)
        ext = glob.glob(os.path.join(base, "extensions", "*", "httpfs.duckdb_extension"))[0]
        con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
        con.execute(f"LOAD '{ext}'")
        host = endpoint.split("://", 1)[1]
        con.execute(
            "CREATE SECRET s (TYPE s3, KEY_ID $k, SECRET $s, REGION 'us-east-1', "
            "ENDPOINT $e, URL_STYLE 'path', USE_SSL false)".replace("$k", "'bench'")
            .replace("$s", "'bench'")
            .replace("$e", f"'{host}'")
        )
    else:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
        from catalog import storage

        prefix = files[0].rsplit("/", 1)[0]
        con = duckdb.connect()
        con.register_filesystem(storage.duckdb_filesystem(frozenset({prefix})))
        con.execute("SET validate_external_file_cache = 'NO_VALIDATION'")  # as the engine does
    con.execute("SET GLOBAL parquet_metadata_cache = true")
    return con


def main() -> None:
    mode, endpoint, files_json, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    files = json.loads(files_json)
    sql = QUERY.format(files=files)
    cold, warm = [], []
    for _ in range(rounds):
        con = connect(mode, endpoint, files)
        t = time.perf_counter()
        assert len(con.sql(sql).fetchall()) == 1000
        cold.append((time.perf_counter() - t) * 1000)
        for _ in range(3):
            t = time.perf_counter()
            con.sql(sql).fetchall()
            warm.append((time.perf_counter() - t) * 1000)
        con.close()
    print(
        json.dumps({"mode": mode, "duckdb": duckdb.__version__, "cold_ms": cold, "warm_ms": warm})
    )


if __name__ == "__main__":
    main()
