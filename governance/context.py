"""What the rewrite passes need to know about the world, passed in rather than looked up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from catalog.snapshot import Snapshot
from catalog.store import TableInfo
from governance.access import Access, OpenAccess, View


@dataclass(frozen=True)
class TimeTravel:
    version: int | None = None
    timestamp: datetime | None = None


@dataclass
class TableRead:
    """One catalog table a query read: which version, through which relation."""

    table: TableInfo
    version: int
    files_total: int
    files_scanned: int
    rules: tuple[str, ...] = ()
    row_filtered: bool = False
    view: View | None = None  # what the user sees of it (None: the whole table)
    stored: tuple[str, ...] = ()  # the table's own columns, hidden ones included


@dataclass
class QueryContext:
    user: str
    lookup: Callable[[str, str], TableInfo]  # (database, table) -> info; raises TableNotFound
    snapshot: Callable[[TableInfo, TimeTravel | None], Snapshot]
    # fix the versions of all tables at once: id -> (version, tentative)
    pin: Callable[[list[TableInfo]], dict[int, tuple[int, bool]]] = lambda infos: {}
    pinned: dict[int, tuple[int, bool]] | None = None
    # lookup of several (database, table) at once, in order (one store read); None: one by one
    lookup_all: Callable[[list[tuple[str, str]]], list[TableInfo]] | None = None
    cache_key: str = ""  # policy version; "" disables the compiled-query cache
    access: Access = field(default_factory=OpenAccess)
    # information_schema view name -> rows the user may see
    describe: Callable[[str], list[tuple]] = lambda view: []
    reads: list[TableRead] = field(default_factory=list)
