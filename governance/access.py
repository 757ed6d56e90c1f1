"""The governance seam: what view of a table a user may read.

For every catalog table a query names, the scan pass asks `Access.view(user, table, snapshot)`
and puts `view.sql(base, guard)` in place of the table, where `base` reads the snapshot's files.
`OpenAccess` shows the whole table; `PolicyAccess` (governance.governed) applies a policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from catalog.snapshot import Snapshot
from catalog.store import TableInfo


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class View:
    """The columns a user sees of a table and how to compute them from the raw relation."""

    columns: tuple[str, ...]
    prunable: frozenset[str]  # columns whose raw file statistics may prune files
    rules: tuple[str, ...] = ()
    row_cond: str | None = None
    cell_cond: dict[str, str] = field(default_factory=dict)
    masks: dict[str, str] = field(default_factory=dict)
    whole: bool = True  # every column, unchanged, every row: the base relation as it is

    def sql(self, base: str, guard: frozenset[str] = frozenset()) -> str:
        """Wrap the base relation. Columns in `guard` (lower-case names: all but those the guard
        pass proved only harmless comparisons can reach) read NULL outside the row condition, so
        a predicate DuckDB evaluates early never sees a hidden row's values."""
        if self.whole:
            return base
        exprs = []
        for c in self.columns:
            value = self.masks.get(c) or quote(c)
            if c in self.cell_cond:
                value = f"CASE WHEN {self.cell_cond[c]} THEN {value} END"
            elif self.row_cond and c.lower() in guard:
                value = f"CASE WHEN {self.row_cond} THEN {value} END"
            exprs.append(f"{value} AS {quote(c)}")
        where = f" WHERE {self.row_cond}" if self.row_cond else ""
        return f'SELECT {", ".join(exprs)} FROM ({base}) AS "__raw"{where}'


class Access(Protocol):
    def view(self, user: str, table: TableInfo, snapshot: Snapshot) -> View:
        """The view of `table` at `snapshot` that `user` may read (raises AccessDenied)."""
        ...


class OpenAccess:
    """No policy folder: every user reads every table whole (governance is off)."""

    def view(self, user: str, table: TableInfo, snapshot: Snapshot) -> View:
        names = tuple(snapshot.schema.names)
        return View(names, frozenset(names))
