"""A small governed lake for the governance tests."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

import lake

from support import s3

PEOPLE = pa.table(
    {
        "id": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
        "region": ["eu", "eu", "us", "us", "apac", "eu"],
        "name": ["Ada", "Bo", "Cy", "Di", "Ed", "Fay"],
        "ssn": ["111", "222", "abc", "444", "555", "666"],
        "salary": pa.array([100, 200, 300, 400, 500, 600], pa.int64()),
    }
)


def governed_lake(root: Path, policy: str) -> lake.Lake:
    """A lake with hr.people filled, then opened under `policy` (policy.csv text)."""
    with s3.open_root(root) as lk:
        lk.catalog.create_database("hr", tags={"dept": "hr"})
        lk.catalog.create_table("hr.people", PEOPLE.schema, tags={"pii": "false"})
        lk.write("hr.people", PEOPLE, user="etl")
    folder = root / "policy"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.csv").write_text(policy)
    return s3.open_root(root, policy=folder)


def rows(t: pa.Table) -> list[dict]:
    return sorted(t.to_pylist(), key=lambda r: tuple(str(v) for v in r.values()))
