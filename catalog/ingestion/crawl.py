"""The crawler: turn a folder of Parquet, CSV and JSON files into governed Delta tables.

The user must hold select on a `location:` covering PATH and every file found there, by its
resolved path (rule 11); the lake's own files are never readable. Layout (which files make which
table), for `crawl(sink, PATH, database=DB)`:
  * PATH has `key=value/` sub-folders: PATH itself is one table, named after PATH.
  * otherwise every sub-folder of PATH is one table, named after the sub-folder, holding every
    data file beneath it (at any depth); a sub-folder holding `_delta_log` is an existing Delta
    table and is left alone (register it with `lk.catalog.register_table`);
  * files directly in PATH are grouped by name without trailing numbers, dates and separators
    (`events_001.json`, `events_002.json` -> table `events`); PATH may also be a single file.
Hidden files and folders (`.x`, `_x`, `*.crc`) are skipped; files of unknown formats are listed
in `CrawlResult.ignored`. Table names are lower-cased, other characters become `_`.

Partitions: `key=value` folders become partition columns typed from all their values (all
integers -> int64, all ISO dates -> date, else string; `__HIVE_DEFAULT_PARTITION__` is NULL).
Every file of a table must sit under the same keys, in the same order.

Schemas: each file's schema (the Parquet footer; the first MiB of a CSV/JSON file) is merged
by the rules of `lake.schemas`; a conflict (string vs int, ...) is reported and nothing of that
table is written. Crawling into an existing table appends, and adds new columns (schema
evolution) when their types merge; columns already in the table keep their type.

Incremental and idempotent: each crawled file is recorded in the table's Delta log as an
application transaction `lakeward.crawl:<path relative to the table folder>` whose version is
the file's size, in the same commit as its rows. A re-crawl reads only files the table does
not record, checked again under the table lock, so neither a repeated nor a concurrent crawl
appends a file twice, and a crash mid-crawl leaves each table with all or none of its new
files. A recorded file whose size changed is reported, not re-read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from catalog.data import check_schema
from catalog.errors import InvalidArgument, LakeError
from catalog.ingestion import schemas, sources
from catalog.ingestion.port import TableSink
from catalog.ingestion.sources import BLOCK_SIZE, SourceFile
from catalog.names import check_ident
from catalog.writes import app_version

APP_PREFIX = "lakeward.crawl:"
Progress = Callable[[int, int, int], None]  # (rows so far, files done, files in total)


@dataclass
class CrawledTable:
    """What the crawler found and did for one table."""

    name: str  # database.table
    source: str  # the folder (or file group) it was crawled from
    formats: list[str] = field(default_factory=list)
    partition_by: list[str] = field(default_factory=list)
    schema: pa.Schema | None = None  # the table's schema after the crawl
    action: str = "unchanged"  # created | updated | unchanged | failed
    files: list[str] = field(default_factory=list)  # new files (read, unless it failed)
    known: int = 0  # files already in the table from earlier crawls
    rows: int = 0
    new_columns: list[str] = field(default_factory=list)
    version: int | None = None
    problems: list[str] = field(default_factory=list)  # why nothing was written
    warnings: list[str] = field(default_factory=list)  # written anyway, but worth knowing


@dataclass
class CrawlResult:
    """Everything one crawl found: per-table outcomes and files it did not read."""

    path: str
    database: str
    tables: list[CrawledTable] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def _named(self, action: str) -> list[str]:
        return [t.name for t in self.tables if t.action == action]

    @property
    def created(self) -> list[str]:
        return self._named("created")

    @property
    def updated(self) -> list[str]:
        return self._named("updated")

    @property
    def failed(self) -> list[str]:
        return self._named("failed")

    @property
    def problems(self) -> list[str]:
        """Every problem, prefixed with its table."""
        return [f"{t.name}: {p}" for t in self.tables for p in t.problems]

    @property
    def files(self) -> int:
        return sum(len(t.files) for t in self.tables if t.action in ("created", "updated"))

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables if t.action in ("created", "updated"))

    def table(self, name: str) -> CrawledTable:
        """The entry of one table, by 'table' or 'database.table'."""
        for t in self.tables:
            if name in (t.name, t.name.split(".", 1)[1]):
                return t
        raise KeyError(name)


@dataclass
class _Group:
    name: str
    base: Path
    paths: list[Path] = field(default_factory=list)


@dataclass
class _Plan:
    out: CrawledTable
    files: list[SourceFile]
    target: pa.Schema
    constants: dict[str, dict[str, Any]]
    exists: bool
    schema_mode: str | None


# discovery -------------------------------------------------------------------------------------


def table_name(text: str) -> str:
    """A valid table name from a folder or file name."""
    name = re.sub(r"[^0-9A-Za-z_]+", "_", text).strip("_").lower()
    if not name or name[0].isdigit():
        name = f"t_{name}"
    return check_ident(name[:128], "table")


def _stem(path: Path) -> str:
    name = path.name
    while Path(name).suffix.lower() in (*sources.EXTENSIONS, *sources.COMPRESSED):
        name = name[: -len(Path(name).suffix)]
    group = re.sub(r"[-_.]*\d[\d\-_.T:]*$", "", name)
    return group or name


def discover(root: Path, readable: Callable[[str], Any] = str) -> tuple[list[_Group], list[str]]:
    """The tables under `root` (see the module docstring) and the files that were not data.

    `readable(path)` is asked about everything found before it is reported or read (it
    raises if the user may not read it: a symlink may lead anywhere).
    """
    ignored: list[str] = []
    groups: dict[str, _Group] = {}

    def add(name: str, base: Path, paths: list[Path]) -> None:
        for p in paths:
            readable(str(p))
        data = [p for p in paths if sources.file_format(p)]
        ignored.extend(str(p) for p in paths if not sources.file_format(p))
        if data:
            groups.setdefault(name, _Group(name, base)).paths.extend(data)

    if root.is_file():
        add(table_name(_stem(root)), root.parent, [root])
        return list(groups.values()), ignored
    children = [c for c in sorted(root.iterdir()) if not sources.hidden(c.name)]
    if any(c.is_dir() and "=" in c.name for c in children):
        add(table_name(root.name), root, sources.walk(root))
        return list(groups.values()), ignored
    for c in children:
        readable(str(c))
        if c.is_dir():
            if (c / "_delta_log").is_dir():
                ignored.append(f"{c} (a Delta table: register it with register_table)")
            else:
                add(table_name(c.name), c, sources.walk(c))
        elif c.is_file():
            add(table_name(_stem(c)), root, [c])
    return sorted(groups.values(), key=lambda g: g.name), ignored


def app_id(f: SourceFile) -> str:
    """The Delta application-transaction id recording that file `f` was crawled."""
    return APP_PREFIX + f.rel


# planning --------------------------------------------------------------------------------------


def _plan(sink: TableSink, database: str, group: _Group) -> _Plan:
    out = CrawledTable(f"{database}.{group.name}", str(group.base))
    files = [sources.source_file(p, group.base) for p in group.paths]
    out.formats = sorted({f.format for f in files})
    plan = _Plan(out, [], pa.schema([]), {}, False, None)
    info = sink.lookup(out.name, missing_ok=True)
    table_schema: pa.Schema | None = None
    if info is not None:
        if info.table_type != "GOVERNED":
            return _fail(plan, "it is an external (read-only) table")
        plan.exists = True
        snap = sink.snapshot(info)
        version = snap.version
        table_schema, out.partition_by = snap.schema, list(snap.partition_columns)
        out.schema, out.version = table_schema, version
        new = []
        for f in files:
            size = sink.app_version(info, version, app_id(f))
            if size is None:
                new.append(f)
                continue
            out.known += 1
            if size != f.size:
                out.warnings.append(
                    f"{f.rel} changed since it was crawled ({size} -> {f.size} bytes); "
                    "it is not read again"
                )
        files = new
    plan.files = files
    out.files = [f.rel for f in files]
    if not files:
        return plan
    keys = {tuple(k for k, _ in f.partition) for f in files}
    if len(keys) > 1:
        shown = ", ".join("/".join(k) or "(none)" for k in sorted(keys))
        return _fail(plan, f"files sit under different partition folders: {shown}")
    hive = list(keys.pop())
    if table_schema is not None and hive != out.partition_by:
        return _fail(
            plan, f"files are partitioned by {hive or 'nothing'}, the table by {out.partition_by}"
        )
    inferred = []
    for f in files:
        try:
            inferred.append((f.rel, sources.data_columns(f, sources.file_schema(f))))
        except LakeError as e:
            out.problems.append(str(e))
    if out.problems:
        return _fail(plan)
    merged, conflicts = schemas.unify(inferred)
    if merged is None:
        return _fail(plan, *conflicts)
    merged = schemas.finalize(merged)
    if table_schema is not None:
        types = {k: table_schema.field(k).type for k in hive}
    else:
        types = {k: sources.partition_type([dict(f.partition)[k] for f in files]) for k in hive}
    for f in files:
        values = plan.constants[f.rel] = {}
        for k, raw in f.partition:
            try:
                values[k] = sources.partition_value(raw, types[k])
            except ValueError as e:
                out.problems.append(f"{f.rel}: partition {k}={raw} is not a {types[k]}: {e}")
    if out.problems:
        return _fail(plan)
    if table_schema is None:
        out.partition_by = hive
        plan.target = pa.schema([*merged, *(pa.field(k, types[k]) for k in hive)])
        out.schema = plan.target
        return plan
    shared = pa.schema([f for f in merged if f.name in table_schema.names])
    try:
        check_schema(shared, table_schema, out.name)
    except LakeError as e:
        return _fail(plan, str(e).split(". Fix the data")[0])
    new_cols = [f for f in merged if f.name not in table_schema.names]
    out.new_columns = [f.name for f in new_cols]
    plan.schema_mode = "merge" if new_cols else None
    # delta-rs needs every table column in the stream; those a file lacks are NULL.
    plan.target = pa.schema([*table_schema, *new_cols])
    out.schema = plan.target
    return plan


def _fail(plan: _Plan, *problems: str) -> _Plan:
    plan.out.problems.extend(problems)
    plan.out.action = "failed"
    return plan


# writing ---------------------------------------------------------------------------------------


class _Counter:
    def __init__(self, total: int, on_progress: Progress | None):
        self.total, self.on_progress = total, on_progress
        self.rows = self.files = 0

    def tick(self, rows: int = 0, files: int = 0) -> None:
        self.rows += rows
        self.files += files
        if self.on_progress is not None:
            self.on_progress(self.rows, self.files, self.total)


def _write(sink: TableSink, plan: _Plan, block_size: int, counter: _Counter) -> None:
    out = plan.out
    failure: list[BaseException] = []

    def stream() -> Iterator[pa.RecordBatch]:
        # Errors raised here reach us through delta-rs as text; keep the typed original.
        try:
            for f in plan.files:
                for batch in sources.read_file(f, plan.target, plan.constants[f.rel], block_size):
                    out.rows += batch.num_rows
                    counter.tick(rows=batch.num_rows)
                    yield batch
                counter.tick(files=1)
        except BaseException as e:
            failure.append(e)
            raise

    created = False
    if not plan.exists:
        try:
            sink.create_table(
                out.name,
                plan.target,
                partition_by=out.partition_by,
                description="crawled from files",
            )
        except LakeError as e:  # e.g. created by a concurrent crawl since we looked
            _fail(plan, f"cannot create the table: {e}")
            return
        created = True
    txns = [(app_id(f), f.size) for f in plan.files]
    batches = stream()
    rows_before = counter.rows
    try:
        committed = sink.append_once(
            out.name,
            pa.RecordBatchReader.from_batches(plan.target, batches),
            app_txns=txns,
            # Under the lock: a concurrent crawl may have committed some of these files.
            precheck=lambda dt: all(app_version(dt, a) is None for a, _ in txns),
            schema_mode=plan.schema_mode,
            params={"crawl": out.source, "files": len(txns)},
            statement=f"crawl {out.source} into {out.name} ({len(txns)} files)",
        )
    except LakeError as e:
        err = failure[0] if failure else e
        out.problems.append(str(err) if isinstance(err, LakeError) else f"{err}")
        committed = False
    finally:
        batches.close()
    if not committed and not out.problems:
        out.problems.append("another crawl committed some of these files meanwhile; crawl again")
    if not committed:
        counter.rows = rows_before
        out.rows = 0
        out.action = "failed"
        if created:
            sink.drop_table(out.name)
        return
    out.action = "created" if created else "updated"
    out.version = sink.snapshot(sink.lookup(out.name)).version


def crawl(
    sink: TableSink,
    path: str | Path,
    *,
    database: str,
    block_size: int = BLOCK_SIZE,
    on_progress: Progress | None = None,
) -> CrawlResult:
    """Crawl `path` into tables of `database` (created if missing); see the module docstring.

    Each table is one atomic commit; a table with problems (conflicting schemas, unreadable
    files, partition mismatches) is reported in the result and nothing of it is written, while
    the other tables are. on_progress(rows, files_done, files_total) is called as data streams.
    """
    root = Path(path).expanduser()
    database = check_ident(database, "database")
    sink.readable(str(root))  # before anything there is looked at
    if not root.exists():
        raise InvalidArgument(f"{root} does not exist")
    groups, ignored = discover(root, sink.readable)  # each entry by its real path
    sink.create_database(database)
    result = CrawlResult(str(root), database, ignored=ignored)
    plans = [_plan(sink, database, g) for g in groups]
    result.tables = [p.out for p in plans]
    todo = [p for p in plans if p.out.action != "failed" and p.files]
    counter = _Counter(sum(len(p.files) for p in todo), on_progress)
    counter.tick()
    for p in todo:
        files_before = counter.files
        _write(sink, p, block_size, counter)
        counter.files = files_before + len(p.files)  # a failed table's files count as done
        counter.tick()
    return result
