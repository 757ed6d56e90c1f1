"""The governance seam: what relation of a table a user may read.

The query path asks `Access.relation(user, table, snapshot, keep)` for every catalog table a query
names and puts the SQL it returns in place of the table. `OpenAccess` returns the whole table;
the policy engine plugs in here with the same signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from catalog.snapshot import Snapshot
from catalog.store import TableInfo


@dataclass(frozen=True)
class Relation:
    """A DuckDB SELECT over the table's files, and the policy rules that shaped it."""

    sql: str
    columns: tuple[str, ...]
    rules: tuple[str, ...] = field(default_factory=tuple)


class Access(Protocol):
    def relation(
        self, user: str, table: TableInfo, snapshot: Snapshot, keep: object = None
    ) -> Relation:
        """The relation of `table` at `snapshot` that `user` may read (raises AccessDenied)."""
        ...


class OpenAccess:
    """No policy: every user reads the whole table. The default until a policy is loaded."""

    def relation(
        self, user: str, table: TableInfo, snapshot: Snapshot, keep: object = None
    ) -> Relation:
        """The whole table at this snapshot, over the files kept by stats pruning."""
        return Relation(snapshot.relation_sql(keep), tuple(snapshot.schema.names))
