"""Governed loads: crawl, ingest and exactly-once streams for a principal.

The loaders live in `catalog.ingestion` and ask a `TableSink` for every decision; `LoadSink`
is that sink: locations through rule 11, tables through the gate (a table the user may not
describe is missing), writes through the one governed writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from catalog import storage
from catalog.errors import InvalidArgument, TableNotFound
from catalog.ingestion import crawl as crawler
from catalog.ingestion import ingest as ingester
from catalog.ingestion import stream as streams
from catalog.store import TableInfo
from catalog.writes import Precheck, app_version
from governance.catalog_ops import GovernedCatalog
from governance.gate import Audit, Gate
from governance.locations import Locations
from governance.principal import Principal
from governance.writer import GovernedWriter

# Application ids Lakeward records itself (crawled files, job outputs, the audit trail): a
# stream of that name could make a crawl skip files or a job's output count as committed.
RESERVED = "lakeward."


@dataclass(frozen=True)
class TableView:
    """`catalog.ingestion.port.TableState`: a table's version as the load's user knows it."""

    version: int
    schema: pa.Schema
    partition_columns: list[str]


class LoadSink:
    """`catalog.ingestion.port.TableSink` for one principal."""

    def __init__(
        self, gate: Gate, catalog: GovernedCatalog, locations: Locations, principal: Principal
    ):
        self.gate = gate
        self.catalog = catalog
        # The lake's own files, listed once per load (a crawl asks about every file it finds).
        self.locations = locations.fixed()
        self.principal = principal
        self.writer = GovernedWriter(gate, principal)

    @property
    def user(self) -> str:
        return self.principal.name

    def readable(self, path: str) -> str:
        p = self.principal
        return self.locations.check(p.name, path, lambda r: self.gate.allowed(p, r, "select"))

    def lookup(self, table: str, *, missing_ok: bool = False) -> TableInfo | None:
        try:
            return self.gate.lookup(self.principal, table)
        except TableNotFound:
            if missing_ok:
                return None
            raise

    def snapshot(self, info: TableInfo) -> TableView:
        snap = self.gate.catalog.snapshot(info)
        known = {c.lower() for c in self.gate.known_columns(self.principal, info)}
        return TableView(
            snap.version,
            pa.schema([f for f in snap.schema if f.name.lower() in known]),
            [c for c in snap.partition_columns if c.lower() in known],
        )

    def stream_id(self, app_id: str) -> str:
        # One namespace per table, as the contract has it (exactly once per app_id, whoever
        # runs the stream), less the ids Lakeward keeps for itself.
        if app_id.lower().startswith(RESERVED):
            raise InvalidArgument(
                f"stream ids beginning with {RESERVED!r} are Lakeward's own; name the stream "
                "otherwise"
            )
        return app_id

    def app_version(self, info: TableInfo, version: int, app_id: str) -> int | None:
        return app_version(storage.open_delta(info.location, version), app_id)

    def create_database(self, name: str) -> None:
        self.catalog.create_database(name, exist_ok=True, user=self.principal)

    def create_table(
        self, name: str, schema: pa.Schema, *, partition_by: Sequence[str], description: str
    ) -> TableInfo:
        return self.catalog.create_table(
            name,
            schema,
            partition_by=list(partition_by) or None,
            description=description,
            user=self.principal,
        )

    def drop_table(self, name: str) -> None:
        self.catalog.drop_table(name, purge=True, user=self.principal)

    def write(self, table: str, data: Any, *, mode: str, schema_mode: str | None) -> None:
        self.writer.write(table, data, mode=mode, schema_mode=schema_mode)

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
        return self.writer.append_once(
            table,
            data,
            app_txns=app_txns,
            precheck=precheck,
            schema_mode=schema_mode,
            params=params,
            statement=statement,
        )


class Loads:
    """Crawl, ingest and streams of one lake, each audited as one operation."""

    def __init__(self, gate: Gate, catalog: GovernedCatalog, locations: Locations):
        self.gate = gate
        self.catalog = catalog
        self.locations = locations

    def sink(self, p: Principal) -> LoadSink:
        return LoadSink(self.gate, self.catalog, self.locations, p)

    def crawl(
        self, p: Principal, path: str | Path, *, database: str, **kw: Any
    ) -> crawler.CrawlResult:
        """Crawl `path` into tables of `database` (see catalog.ingestion.crawl)."""

        def go(audit: Audit) -> crawler.CrawlResult:
            result = crawler.crawl(self.sink(p), path, database=database, **kw)
            audit.rows = result.rows
            return result

        return self.gate.run(p, "crawl", f"crawl into {database}", go)

    def ingest(self, p: Principal, table: str, source: Any, **kw: Any) -> ingester.IngestResult:
        """Load files or a query's result into a table (see catalog.ingestion.ingest)."""

        def go(audit: Audit) -> ingester.IngestResult:
            result = ingester.ingest(self.sink(p), table, source, **kw)
            audit.rows = result.rows
            return result

        return self.gate.run(p, "ingest", f"ingest into {table}", go, table=table)

    def append_stream(
        self, p: Principal, table: str, batches: Iterable[tuple[int, Any]], *, app_id: str
    ) -> streams.StreamResult:
        """Append (seq, data) micro-batches exactly once per app_id."""

        def go(_: Audit) -> streams.StreamResult:
            return streams.append_stream(self.sink(p), table, batches, app_id=app_id)

        return self.gate.run(p, "stream", f"stream {app_id} into {table}", go, table=table)

    def committed_seq(self, p: Principal, table: str, app_id: str) -> int | None:
        """The newest sequence of `app_id` committed to `table` (needs to see the table)."""

        def go(_: Audit) -> int | None:
            return streams.committed_seq(self.sink(p), table, app_id)

        return self.gate.run(p, "describe", f"committed_seq {app_id} of {table}", go, table=table)
