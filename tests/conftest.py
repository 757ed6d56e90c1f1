from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest

import lake

INTEROP = Path(__file__).resolve().parents[2] / "shared" / "delta-interop"
if not INTEROP.exists():
    INTEROP = Path(__file__).resolve().parents[1].parent / "shared" / "delta-interop"

ORDERS = pa.schema([("id", pa.int64()), ("region", pa.string()), ("amount", pa.float64())])


def orders(start: int, n: int, regions=("eu", "us", "apac")) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(start, start + n), pa.int64()),
            "region": pa.array([regions[i % len(regions)] for i in range(start, start + n)]),
            "amount": pa.array([float(i) for i in range(start, start + n)]),
        }
    )


@pytest.fixture
def lk(tmp_path):
    with lake.connect(tmp_path / "lake") as handle:
        yield handle


@pytest.fixture
def sales(lk):
    lk.catalog.create_database("sales", description="test")
    lk.catalog.create_table("sales.orders", ORDERS, partition_by=["region"])
    lk.catalog.create_table(
        "sales.customers", pa.schema([("id", pa.int64()), ("name", pa.string())])
    )
    return lk


@pytest.fixture
def interop(tmp_path):
    """Copy a shared Delta table to tmp so tests never touch the shared copy."""

    def copy(name: str) -> Path:
        dst = tmp_path / "interop" / name
        shutil.copytree(INTEROP / name, dst)
        for p in dst.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        dst.chmod(0o755)
        return dst

    return copy
