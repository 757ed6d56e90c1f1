"""Reference lakes for the SQL-path tests (names, explain, engine errors, the guard).

(tests/support/reference.py builds the reference lakes of the other routes: writes, loads, jobs,
with a policy mirroring the shape of the user's rights.) Every table the user may read becomes a plain table holding the user's view of it (`SELECT *` as
the user: no hidden column, hidden rows gone, NULL cells, masked values); tables the user may not
read are not there at all. Whatever the user can observe of a query (rows as a multiset, column
names and types, error class and message) must then be the same on both lakes, since the
reference holds nothing hidden.

The reference lake's policy lets the user read every table whole (`p, USER, *.*, select, allow`):
no restriction, but the same governed code paths, so that a table missing from it fails with the
same uniform message a hidden table gives on the governed lake.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

import lake
from lake.errors import AccessDenied, LakeError

SYSTEM_DATABASES = frozenset({"system"})


def materialise(governed: lake.Lake, user: str, root: Path) -> lake.Lake:
    """A new lake at `root` holding `user`'s view of every table of `governed`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "lake.toml").write_text("[catalog]\nauto_compact = false\n")
    views: dict[str, pa.Table] = {}
    for info in governed.catalog.list_tables(user=user):
        if info.database in SYSTEM_DATABASES:
            continue
        try:
            views[info.full_name] = governed.sql(f"SELECT * FROM {info.full_name}", user=user)
        except AccessDenied:
            continue  # described but not readable: nothing of it to hold
    with lake.connect(root) as ref:
        for db in sorted({name.split(".")[0] for name in views}):
            ref.catalog.create_database(db)
        for name, data in views.items():
            schema = pa.schema([pa.field(f.name, _plain(f.type)) for f in data.schema])
            ref.catalog.create_table(name, schema)
            if data.num_rows:
                ref.write(name, data.cast(schema))
    folder = root / "policy"
    folder.mkdir(exist_ok=True)
    (folder / "policy.csv").write_text(f"p, {user}, *.*, select, allow\n")
    return lake.connect(root, policy=folder)


def _plain(t: pa.DataType) -> pa.DataType:
    if pa.types.is_string_view(t) or pa.types.is_large_string(t):
        return pa.string()
    return t


@dataclass(frozen=True)
class Outcome:
    """What a user observes of one query."""

    kind: str  # "rows" or "error"
    columns: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    rows: tuple[tuple, ...] = ()  # sorted: compared as a multiset
    error: str = ""  # class name
    message: str = ""


def outcome(lk: lake.Lake, query: str, user: str) -> Outcome:
    """Run `query` as `user` and record what they can observe of it."""
    try:
        t = lk.sql(query, user=user)
    except LakeError as e:
        return Outcome("error", error=type(e).__name__, message=str(e))
    rows = tuple(sorted(_rows(t), key=_order))
    return Outcome(
        "rows", tuple(t.column_names), tuple(str(_plain(f.type)) for f in t.schema), rows
    )


def _rows(t: pa.Table) -> list[tuple]:
    try:
        return [tuple(r.values()) for r in t.to_pylist()]
    except (OverflowError, ValueError):  # values Python cannot hold (dates past year 9999)
        columns = [c.cast(pa.string()).to_pylist() for c in t.columns]
        return list(zip(*columns, strict=True))


def _order(row: tuple[Any, ...]) -> tuple:
    return tuple((v is None, repr(type(v)), repr(v)) for v in row)


def same(governed: lake.Lake, reference: lake.Lake, query: str, user: str) -> Outcome:
    """Assert `query` looks the same to `user` on both lakes; return what it looked like."""
    got, want = outcome(governed, query, user), outcome(reference, query, user)
    assert got == want, f"\nquery: {query}\ngoverned:  {got}\nreference: {want}"
    return got
