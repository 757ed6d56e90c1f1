"""Governed loads: crawl, ingest and exactly-once streams for a principal.

The loaders live in `catalog.ingestion` and ask a `TableSink` for every decision; `LoadSink`
is that sink: locations through rule 11, tables through the gate (a table the user may not
describe is missing), writes through the one governed writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from catalog import storage
from catalog.errors import TableNotFound
from catalog.ingestion import crawl as crawler
from catalog.ingestion import ingest as ingester
from catalog.ingestion import stream as streams
from catalog.snapshot import Snapshot
from catalog.store import TableInfo
from catalog.writes import Precheck, app_version
from governance.catalog_ops import GovernedCatalog
from governance.gate import Audit, Gate
from governance.locations import Locations
from governance.principal import Principal
from governance.writer import GovernedWriter


class LoadSink:
    """`catalog.ingestion.port.TableSink` for one principal."""

    def __init__(
        self, gate: Gate, catalog: GovernedCatalog, locations: Locations, principal: Principal
    ):
        self.gate = gate
        self.catalog = catalog
        self.locations = locations
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

    def snapshot(self, info: TableInfo) -> Snapshot:
        return self.gate.catalog.snapshot(info)

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
        return streams.committed_seq(self.sink(p), table, app_id)
