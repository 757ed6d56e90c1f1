"""`ingest`: load files (a path, folder or glob of Parquet/CSV/JSON) or the result of a query on
another database into a table, streamed, in one atomic commit.

Every file is read only if the user may read its location (rule 11: resolved after following
symlinks and `..`; the lake's own files never). The source becomes one
`pyarrow.RecordBatchReader` handed to the governed write, which delta-rs
consumes batch by batch: memory is bounded by the block size and the writer's buffers, not by
the input. Everything is one ratified commit, so a failure anywhere (a bad value in the last
block of the last file, a dropped database connection) leaves the table as it was. Whatever
can be checked before writing is: files exist and have a known format, schemas agree with
each other and with the table.
"""

from __future__ import annotations

import glob as globlib
import itertools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from catalog.data import check_schema
from catalog.errors import InvalidArgument, LakeError, SchemaMismatch
from catalog.ingestion import schemas, sources
from catalog.ingestion.port import TableSink
from catalog.ingestion.sources import BLOCK_SIZE, SourceFile
from catalog.ingestion.sqlsource import BATCH_ROWS, QueryStream

Progress = Callable[[int, int, int], None]  # (rows so far, files done, files in total)


@dataclass
class IngestResult:
    """What one ingest did."""

    table: str
    mode: str
    rows: int = 0
    files: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # files of a folder source not read
    created: bool = False
    committed: bool = False  # False when there was nothing to append
    version: int | None = None
    seconds: float = 0.0


@dataclass
class _Plan:
    schema: pa.Schema  # the source's columns, as inferred
    partition_by: list[str]  # hive keys, when creating the table
    batches: Callable[[pa.Schema, Callable[[], None]], Iterator[pa.RecordBatch]]
    exact_types: bool  # types are real (Parquet), not guessed from text (CSV/JSON/query values)
    files: list[SourceFile] = field(default_factory=list)
    close: Callable[[], None] = lambda: None


def is_query(source: Any) -> bool:
    """A `("sqlalchemy-url", "SELECT ...")` pair rather than paths."""
    return (
        isinstance(source, (tuple, list))
        and len(source) == 2
        and all(isinstance(s, str) for s in source)
        and "://" in source[0]
    )


def resolve_files(
    source: str | Path | Sequence[str | Path],
    fmt: str | None = None,
    readable: Callable[[str], str] = str,
) -> tuple[list[SourceFile], list[str]]:
    """Files of a path, a folder (recursively), a glob or a list of those; plus ignored files.

    `readable(path)` is asked about each named path before anything there is looked at, and
    about every file found, by its resolved path (it raises if the user may not read it).
    InvalidArgument when a path does not exist, a glob matches no files, or a named file (not
    one found in a folder) has an unknown format.
    """
    if isinstance(source, (str, Path)):
        items: list[str | Path] = [source]
    elif isinstance(source, Sequence) and source:
        items = list(source)
    else:
        raise InvalidArgument(
            "source must be a path, a glob, a list of them, or ('sqlalchemy-url', 'SELECT ...')"
        )
    files: list[SourceFile] = []
    ignored: list[str] = []
    for item in items:
        if not isinstance(item, (str, Path)) or not str(item):
            raise InvalidArgument(f"not a path or glob: {item!r}")
        text = os.path.expanduser(str(item))
        if globlib.has_magic(text):
            base = _glob_base(text)
            readable(str(base))
            matches = [Path(m) for m in sorted(globlib.glob(text, recursive=True))]
            matches = [m for m in matches if m.is_file() and not sources.hidden(m.name)]
            if not matches:
                raise InvalidArgument(f"the glob {text!r} matches no files")
            for m in matches:
                readable(str(m))
            files.extend(sources.source_file(m, base, fmt) for m in matches)
            continue
        path = Path(text)
        readable(str(path))
        if path.is_dir():
            found = sources.walk(path)
            for f in found:
                readable(str(f))
            known = [p for p in found if fmt or sources.file_format(p)]
            ignored.extend(str(p) for p in found if p not in known)
            if not known:
                raise InvalidArgument(f"the folder {path} holds no Parquet, CSV or JSON files")
            files.extend(sources.source_file(p, path, fmt) for p in known)
        elif path.exists():
            files.append(sources.source_file(path, path.parent, fmt))
        else:
            raise InvalidArgument(f"{path} does not exist")
    return files, ignored


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = list(itertools.takewhile(lambda p: not globlib.has_magic(p), parts[:-1]))
    return Path(*fixed) if fixed else Path(".")


def _existing(sink: TableSink, table: str) -> tuple[pa.Schema, list[str]] | None:
    info = sink.lookup(table, missing_ok=True)
    if info is None:
        return None
    snap = sink.snapshot(info)
    return snap.schema, list(snap.partition_columns)


def _file_plan(
    files: list[SourceFile], table: tuple[pa.Schema, list[str]] | None, block_size: int
) -> _Plan:
    keys = {tuple(k for k, _ in f.partition) for f in files}
    hive = list(next(iter(keys))) if len(keys) == 1 else []
    if table is not None:
        hive = [k for k in hive if k in table[0].names]
    inferred = [(str(f.path), sources.data_columns(f, sources.file_schema(f))) for f in files]
    exact = all(f.format == "parquet" for f in files)
    merged, conflicts = schemas.unify(inferred)
    if conflicts and (table is None or exact):
        raise SchemaMismatch("the source files have conflicting schemas: " + "; ".join(conflicts))
    if merged is None:  # text files: each is read with the table's types, which decide
        merged = pa.schema({f.name: f.type for _, s in inferred for f in s}.items())
    types = {k: sources.partition_type([dict(f.partition)[k] for f in files]) for k in hive}
    if table is not None:
        types.update({k: table[0].field(k).type for k in hive})
    constants: dict[str, dict[str, Any]] = {}
    for f in files:
        raw = dict(f.partition)
        try:
            constants[f.rel] = {k: sources.partition_value(raw[k], types[k]) for k in hive}
        except ValueError as e:
            raise SchemaMismatch(
                f"{f.path}: partition value does not fit its column: {e}"
            ) from None
    schema = pa.schema([*merged, *(pa.field(k, types[k]) for k in hive)])

    def batches(target: pa.Schema, file_done: Callable[[], None]) -> Iterator[pa.RecordBatch]:
        for f in files:
            yield from sources.read_file(f, target, constants[f.rel], block_size)
            file_done()

    return _Plan(schema, hive, batches, exact, files)


def _query_plan(url: str, query: str, batch_rows: int) -> _Plan:
    q = QueryStream(url, query, batch_rows)
    return _Plan(q.inferred_schema(), [], lambda target, _: q.batches(target), False, close=q.close)


def _target(plan: _Plan, table: pa.Schema | None, name: str, schema_mode: str | None) -> pa.Schema:
    """The schema of the stream handed to the writer: the table's columns, then new ones."""
    if table is None:
        return schemas.finalize(plan.schema)
    new = [f for f in schemas.finalize(plan.schema) if f.name not in table.names]
    missing = [f.name for f in table if not f.nullable and f.name not in plan.schema.names]
    if (new and schema_mode != "merge") or missing:
        # Text is parsed straight into the table's types: only real types can disagree, so a
        # CSV's guessed double is not listed against a decimal column it loads into.
        got = plan.schema
        if not plan.exact_types:
            got = pa.schema([table.field(f.name) if f.name in table.names else f for f in got])
        check_schema(got, table, name)  # raises SchemaMismatch naming the columns
    if plan.exact_types:
        check_schema(pa.schema([f for f in plan.schema if f.name in table.names]), table, name)
    # delta-rs needs every table column in the stream; those the source lacks are NULL. Text
    # sources are parsed straight into the table's types (a value that does not fit fails).
    return pa.schema([*table, *new])


def ingest(
    sink: TableSink,
    table: str,
    source: Any,
    *,
    mode: str = "append",
    format: str | None = None,
    create: bool = True,
    schema_mode: str | None = None,
    block_size: int = BLOCK_SIZE,
    batch_rows: int = BATCH_ROWS,
    on_progress: Progress | None = None,
) -> IngestResult:
    """Load `source` into `table` in one atomic commit, streaming (memory bounded by blocks).

    source: a file, a folder, a glob (`data/**/*.csv`), a list of those, or
    `("sqlalchemy-url", "SELECT ...")`. format: 'parquet', 'csv', 'tsv' or 'json' (default:
    from each file's extension). A missing table is created from the source's schema (with
    hive `key=value/` folders as partition columns) when create=True, and dropped again if
    the ingest fails. Errors: InvalidArgument (bad paths, globs, formats, unreadable files),
    SchemaMismatch (conflicting schemas, values that do not fit), SQLError (the query).
    """
    if mode not in ("append", "overwrite"):
        raise InvalidArgument(f"mode must be 'append' or 'overwrite', not {mode!r}")
    if format is not None and format not in sources.FORMATS:
        raise InvalidArgument(f"unknown format {format!r}; use one of {', '.join(sources.FORMATS)}")
    started = time.perf_counter()
    result = IngestResult(table, mode)
    if is_query(source):
        sink.readable(source[0])  # before the table is looked at: nothing leaks either way
    existing = _existing(sink, table)
    if existing is None and not create:
        sink.lookup(table)  # raises the missing-table error
    if is_query(source):
        plan = _query_plan(source[0], source[1], batch_rows)
    else:
        files, result.ignored = resolve_files(source, format, sink.readable)
        plan = _file_plan(files, existing, block_size)
        result.files = [str(f.path) for f in plan.files]
    try:
        target = _target(plan, existing[0] if existing else None, table, schema_mode)
        if existing is None:
            sink.create_table(
                table, target, partition_by=plan.partition_by, description=_described(source)
            )
            result.created = True
        _write(sink, table, plan, target, mode, schema_mode, result, on_progress)
    except BaseException:
        plan.close()
        if result.created:
            sink.drop_table(table)
            result.created = False
        raise
    plan.close()
    result.version = sink.snapshot(sink.lookup(table)).version
    result.seconds = time.perf_counter() - started
    return result


def _described(source: Any) -> str:
    return "ingested from a query" if is_query(source) else "ingested from files"


def _write(
    sink: TableSink,
    table: str,
    plan: _Plan,
    target: pa.Schema,
    mode: str,
    schema_mode: str | None,
    result: IngestResult,
    on_progress: Progress | None,
) -> None:
    failure: list[BaseException] = []
    total = len(plan.files)
    done = [0]

    def file_done() -> None:
        done[0] += 1
        if on_progress is not None:
            on_progress(result.rows, done[0], total)

    def counted() -> Iterator[pa.RecordBatch]:
        # Errors raised here cross delta-rs as text; keep the typed original to re-raise.
        try:
            for batch in plan.batches(target, file_done):
                result.rows += batch.num_rows
                if on_progress is not None:
                    on_progress(result.rows, done[0], total)
                yield batch
        except BaseException as e:
            failure.append(e)
            raise

    stream = counted()
    try:
        first = next(stream, None)
    except LakeError:
        raise
    except Exception as e:
        raise InvalidArgument(f"cannot read the source: {e}") from None
    if first is None and mode == "append":
        return  # nothing to append: no empty commit
    reader = pa.RecordBatchReader.from_batches(
        target, itertools.chain([first] if first is not None else [], stream)
    )
    try:
        sink.write(table, reader, mode=mode, schema_mode=schema_mode)
    except LakeError:
        if failure:
            e = failure[0]
            raise (e if isinstance(e, LakeError) else InvalidArgument(str(e))) from None
        raise
    finally:
        stream.close()
    result.committed = True
