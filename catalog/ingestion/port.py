"""What ingestion needs from the layer that governs it.

Crawl, ingest and streams read files and write tables for a user; whether the user may read a
location, see a table, create one or append to it is not theirs to decide. The governance layer
passes an object with these methods (`governance.writer.GovernedWriter` is one), bound to the
user the load acts for, so every read and write goes through the one checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import pyarrow as pa

from catalog.store import TableInfo
from catalog.writes import Precheck


class TableState(Protocol):
    """A table's current version as the load's user may know it."""

    version: int
    schema: pa.Schema  # only the columns the user may know of, in table order
    partition_columns: list[str]


class TableSink(Protocol):
    """The governed operations a load uses, for one user."""

    user: str

    def readable(self, path: str) -> str:
        """The resolved path or URL if the user may read it (rule 11); AccessDenied, saying
        nothing about what is there, otherwise."""
        ...

    def lookup(self, table: str, *, missing_ok: bool = False) -> TableInfo | None:
        """The table as this user may know it. A table the user may not describe is missing:
        None with missing_ok, else the same error a missing table raises."""
        ...

    def snapshot(self, info: TableInfo) -> TableState:
        """The table's current version, with only the columns the user may know of (a load
        never names a column its user may not see; the writer fills hidden ones with NULL)."""
        ...

    def stream_id(self, app_id: str) -> str:
        """The application id a stream `app_id` is recorded under; InvalidArgument for the ids
        Lakeward keeps for crawls, job outputs and the audit trail (a stream of that name could
        make a crawl skip files or a job's output count as done)."""
        ...

    def app_version(self, info: TableInfo, version: int, app_id: str) -> int | None:
        """The version application `app_id` recorded in the table at `version`, or None."""
        ...

    def create_database(self, name: str) -> None:
        """Create the database unless it exists (needs create on *)."""
        ...

    def create_table(
        self, name: str, schema: pa.Schema, *, partition_by: Sequence[str], description: str
    ) -> TableInfo:
        """Create a governed table (needs create on its database)."""
        ...

    def drop_table(self, name: str) -> None:
        """Drop and purge a table this load created and then could not fill."""
        ...

    def write(self, table: str, data: Any, *, mode: str, schema_mode: str | None) -> None:
        """A governed append or overwrite, one atomic commit."""
        ...

    def append_once(
        self,
        table: str,
        data: Any,
        *,
        app_txns: Sequence[tuple[str, int]],
        precheck: Precheck | None = None,
        schema_mode: str | None = None,
        params: Mapping[str, Any] | None = None,
        statement: str | None = None,
    ) -> bool:
        """A governed exactly-once append (see `catalog.txn.Transaction.append_once`)."""
        ...
