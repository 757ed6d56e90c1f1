"""The governed lake of the SQL-path leak tests, its reference lakes, and DuckDB plan helpers.

hr.people (support.governed.PEOPLE) is read by
- bob: the eu rows (1, 2, 6), every column; the hidden rows hold ssn 'abc' (row 3), the only ssn
  that does not cast to an integer, so a cast that fails has run on a hidden row;
- carol: the eu rows without ssn (denied), salary masked, name only where id < 5 (a cell filter);
and neither of them may see hr.secret. Both read hr.depts whole. dora reads what carol reads but
ssn and may describe the policy; ada is an administrator.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pyarrow as pa

import lake

from support.governed import governed_lake
from support.observe import materialise

POLICY = """\
p2, bob, hr.people, eu_rows, "region = 'eu'", *
p, bob, hr.depts, select, allow
p2, carol, hr.people, eu_rows, "region = 'eu'", id region salary
p2, carol, hr.people, early, "region = 'eu' AND id < 5", id region name salary
p, carol, hr.depts, select, allow
p, carol, hr.people.ssn, select, deny
p3, hr.people.salary, (salary // 1000) * 1000
g, ada, role:admin
p, role:admin, *, *, allow
p2, dora, hr.people, eu_rows, "region = 'eu'", * -ssn
p, dora, policy, describe, allow
"""

DEPTS = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "dname": ["ops", "eng", "law"]})
SECRET = pa.table({"code": ["s3cr3t"]})


def sql_lake(root: Path) -> lake.Lake:
    """The governed lake described above."""
    lk = governed_lake(root, POLICY)
    for name, data in (("hr.depts", DEPTS), ("hr.secret", SECRET)):
        lk.catalog.create_table(name, data.schema)
        lk.write(name, data)
    return lk


def references(governed: lake.Lake, base: Path, users=("bob", "carol")) -> dict[str, lake.Lake]:
    """One reference lake per user."""
    return {u: materialise(governed, u, base / f"ref-{u}") for u in users}


# --- DuckDB's physical plan -----------------------------------------------------------------------

_SCANS = ("READ_PARQUET", "TABLE_SCAN", "PARQUET_SCAN")


def plan(sql: str) -> list[dict]:
    """The physical plan DuckDB makes for `sql`, as a tree of dicts (EXPLAIN (FORMAT json))."""
    con = duckdb.connect()
    try:
        return json.loads(con.sql("EXPLAIN (FORMAT json) " + sql).fetchall()[0][1])
    finally:
        con.close()


def _texts(value: object) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def raw_predicates(tree: list[dict]) -> list[str]:
    """Every predicate DuckDB evaluates on a table's stored rows: the filters pushed into a scan,
    and the filter operators stacked directly on a scan (below everything else)."""
    out: list[str] = []

    def on_scan(node: dict) -> bool:
        while node.get("name") == "FILTER" and len(node.get("children", [])) == 1:
            node = node["children"][0]
        return node.get("name") in _SCANS

    def visit(node: dict) -> None:
        info = node.get("extra_info", {})
        if node.get("name") in _SCANS:
            out.extend(_texts(info.get("Filters")))
        elif node.get("name") == "FILTER" and on_scan(node):
            out.extend(_texts(info.get("Expression")))
        for child in node.get("children", []):
            visit(child)

    for root in tree:
        visit(root)
    return out


_GUARD = re.compile(
    r"CASE\s+WHEN\s+\(\(region = 'eu'\)\)\s+THEN\s+\((\w+)\)\s+ELSE\s+NULL::\w+\s+END"
)


def unguarded(predicate: str, column: str) -> bool:
    """Does `predicate` read `column` other than through the row filter's guard?"""
    bare = _GUARD.sub("GUARDED", predicate)
    return re.search(rf"\b{re.escape(column)}\b", bare) is not None
