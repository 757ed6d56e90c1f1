"""Shared test data and small lakes."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from support import s3

TESTS = Path(__file__).resolve().parents[1]
INTEROP = TESTS / "data" / "delta-interop"
# Subprocess workers import `support` as the tests do; the repository comes first so that the
# test folders (tests/lake, tests/catalog, ...) never shadow the packages of the same name.
# PYTHONSAFEPATH: a worker script's own folder is not put first on sys.path, where
# support/batch.py would shadow the `batch` package (which opening a lake imports).
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]),
    "PYTHONSAFEPATH": "1",
}

ORDERS = pa.schema([("id", pa.int64()), ("region", pa.string()), ("amount", pa.float64())])


def orders(start: int, n: int, regions=("eu", "us", "apac")) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(start, start + n), pa.int64()),
            "region": pa.array([regions[i % len(regions)] for i in range(start, start + n)]),
            "amount": pa.array([float(i) for i in range(start, start + n)]),
        }
    )


def lake_with_settings(tmp_path, **catalog):
    root = tmp_path / "lake"
    root.mkdir(parents=True, exist_ok=True)
    (root / "lake.toml").write_text(
        "[catalog]\n" + "".join(f"{k} = {v}\n" for k, v in catalog.items())
    )
    lk = s3.open_root(root)
    lk.catalog.create_database("sales")
    lk.catalog.create_table("sales.orders", ORDERS)
    return lk
