"""What the SQL-path tests observe of a query, compared across a governed and a reference lake.

The reference lake (`reference.materialise` without mirroring the shape of the user's rights)
holds only the user's view of every table, with plain grants to it: whatever the user can
observe of a query (rows as a multiset, column names and types, error class and message) must
then be the same on both lakes, since the reference holds nothing hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

import lake
from lake.errors import LakeError

from support import reference


def materialise(governed: lake.Lake, user: str, root: Path) -> lake.Lake:
    """A new lake at `root` holding `user`'s view of every table of `governed`, with plain
    grants to it (`reference.materialise` without mirroring the shape of the user's rights)."""
    return reference.materialise(
        governed,
        user,
        root,
        policy=root / "policy",
        mirror=False,
        toml="[catalog]\nauto_compact = false\n",
    )


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
