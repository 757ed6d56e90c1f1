"""Data files as streams of Arrow record batches: formats, hive partitions, schemas, readers.

Shared by the crawler and ingest. Every reader is a stream (Parquet row groups, CSV and JSON
blocks), so memory stays bounded by the block size however large the file is.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.json as pajson
import pyarrow.parquet as pq

from catalog.errors import InvalidArgument, LakeError, SchemaMismatch

BLOCK_SIZE = 64 * 1024  # bytes of CSV/JSON per batch: small blocks keep the write path lean
INFER_BYTES = 1 << 20  # CSV/JSON types are inferred from this much of each file
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"

EXTENSIONS = {
    ".parquet": "parquet",
    ".parq": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}
FORMATS = ("parquet", "csv", "tsv", "json")
COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")  # text formats only; pyarrow detects the codec


def file_format(path: Path | str) -> str | None:
    """'parquet', 'csv', 'tsv' or 'json' from the file name (text formats may be compressed)."""
    name = Path(path).name.lower()
    for c in COMPRESSED:
        if name.endswith(c):
            fmt = EXTENSIONS.get(Path(name[: -len(c)]).suffix)
            return fmt if fmt != "parquet" else None
    return EXTENSIONS.get(Path(name).suffix)


def hidden(name: str) -> bool:
    """Files and folders every data lake tool skips: `.x`, `_SUCCESS`, `_delta_log`, `x.crc`."""
    return name.startswith((".", "_")) or name.endswith(".crc")


@dataclass(frozen=True)
class SourceFile:
    """One data file: where, its format, its hive partition values and its size."""

    path: Path
    format: str
    rel: str  # path relative to the folder that was crawled or globbed, '/'-separated
    partition: tuple[tuple[str, str | None], ...] = ()  # (key, raw value or None for null)
    size: int = 0


def walk(folder: Path, _seen: set[str] | None = None) -> list[Path]:
    """Every file under `folder`, sorted, skipping hidden files and folders (see `hidden`);
    a folder reached again through a symlink is walked once."""
    seen = set() if _seen is None else _seen
    real = os.path.realpath(folder)
    if real in seen:
        return []
    seen.add(real)
    out = []
    for p in sorted(folder.iterdir()):
        if hidden(p.name):
            continue
        if p.is_dir():
            out.extend(walk(p, seen))
        elif p.is_file():
            out.append(p)
    return out


def hive_partition(rel_dirs: Sequence[str]) -> tuple[tuple[str, str | None], ...]:
    """The `key=value` folder segments of a relative path, unescaped; the default value is None."""
    out = []
    for seg in rel_dirs:
        key, eq, value = seg.partition("=")
        if not eq or not key:
            continue
        value = unquote(value)
        out.append((unquote(key), None if value in (HIVE_NULL, "") else value))
    return tuple(out)


def source_file(path: Path, base: Path, fmt: str | None = None) -> SourceFile:
    """Describe `path` (under `base`); InvalidArgument if it is not a file of a known format."""
    fmt = fmt or file_format(path)
    if fmt is None:
        raise InvalidArgument(
            f"{path}: unknown file format; use .parquet, .csv, .tsv, .json, .jsonl or .ndjson "
            "(or pass format=)"
        )
    if fmt not in FORMATS:
        raise InvalidArgument(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    try:
        rel_path = path.relative_to(base)
    except ValueError:
        rel_path = Path(path.name)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e.strerror or e}") from None
    rel = rel_path.as_posix()
    return SourceFile(path, fmt, rel, hive_partition(rel_path.parts[:-1]), size)


_INT = re.compile(r"^[+-]?\d{1,18}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def partition_type(values: Sequence[str | None]) -> pa.DataType:
    """int64 if every value is an integer, date32 if every value is an ISO date, else string."""
    present = [v for v in values if v is not None]
    if present and all(_INT.match(v) for v in present):
        return pa.int64()
    if present and all(_DATE.match(v) and _is_date(v) for v in present):
        return pa.date32()
    return pa.string()


def _is_date(v: str) -> bool:
    try:
        dt.date.fromisoformat(v)
    except ValueError:
        return False
    return True


def partition_value(raw: str | None, t: pa.DataType) -> Any:
    """A raw hive value as a Python value of type `t`; ValueError if it does not parse."""
    if raw is None:
        return None
    if pa.types.is_integer(t):
        if not _INT.match(raw):
            raise ValueError(f"{raw!r} is not an integer")
        return int(raw)
    if pa.types.is_date(t):
        return dt.date.fromisoformat(raw)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return raw
    return pa.scalar(raw).cast(t).as_py()


# reading --------------------------------------------------------------------------------------


def _open_text(f: SourceFile) -> pa.NativeFile:
    return pa.input_stream(str(f.path), compression="detect")


def _csv_parse(f: SourceFile) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(delimiter="\t" if f.format == "tsv" else ",")


def read_error(f: SourceFile, e: BaseException) -> LakeError:
    """A pyarrow or OS error while reading `f` as a typed error naming the file."""
    if isinstance(e, LakeError):
        return e
    msg = str(e).split("\n")[0]
    if isinstance(e, (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)) and any(
        w in msg.lower()
        for w in ("conversion", "convert", "cast", "changed from", "out of bounds", "not in range")
    ):
        return SchemaMismatch(f"{f.path}: a value does not fit the column type: {msg}")
    if isinstance(e, OSError) and getattr(e, "strerror", None):
        msg = e.strerror
    return InvalidArgument(f"cannot read {f.path} as {f.format}: {msg}")


def file_schema(f: SourceFile) -> pa.Schema:
    """The schema of one file: the Parquet footer, or inferred from the first MiB of CSV/JSON."""
    try:
        if f.format == "parquet":
            return pq.read_schema(f.path)
        if f.format == "json":
            opts = pajson.ReadOptions(block_size=INFER_BYTES)
            with _open_text(f) as stream:
                return pajson.open_json(stream, read_options=opts).schema
        opts = pacsv.ReadOptions(block_size=INFER_BYTES)
        with _open_text(f) as stream:
            return pacsv.open_csv(stream, read_options=opts, parse_options=_csv_parse(f)).schema
    except (pa.ArrowException, OSError) as e:
        raise read_error(f, e) from None


def data_columns(f: SourceFile, schema: pa.Schema) -> pa.Schema:
    """The file's own columns; a hive key of the path wins over a file column of that name."""
    keys = {k for k, _ in f.partition}
    return pa.schema([x for x in schema if x.name not in keys])


def _batches(f: SourceFile, target: pa.Schema, block_size: int) -> Iterator[pa.RecordBatch]:
    types = {x.name: x.type for x in target}
    if f.format == "parquet":
        # pyarrow.dataset streams row groups, reading only the columns the table takes.
        data = pads.dataset(str(f.path), format="parquet")
        yield from data.to_batches(
            columns=[n for n in data.schema.names if n in types],
            batch_size=64 * 1024,
            batch_readahead=1,
            fragment_readahead=1,
        )
        return
    if f.format == "json":
        parse = pajson.ParseOptions(
            explicit_schema=pa.schema([pa.field(n, t) for n, t in types.items()]),
            unexpected_field_behavior="infer",
        )
        # A JSON line may not straddle blocks, so JSON blocks are at least a MiB.
        opts = pajson.ReadOptions(block_size=max(block_size, INFER_BYTES))
        with _open_text(f) as stream:
            yield from pajson.open_json(stream, read_options=opts, parse_options=parse)
        return
    convert = pacsv.ConvertOptions(column_types=types)
    opts = pacsv.ReadOptions(block_size=block_size)
    with _open_text(f) as stream:
        yield from pacsv.open_csv(
            stream, read_options=opts, parse_options=_csv_parse(f), convert_options=convert
        )


def align(batch: pa.RecordBatch, target: pa.Schema, constants: Mapping[str, Any]) -> pa.RecordBatch:
    """`batch` with exactly `target`'s columns: cast, constants filled in, missing ones null."""
    n = batch.num_rows
    names = set(batch.schema.names)
    cols = []
    for field in target:
        if field.name in constants:
            value = constants[field.name]
            col = (
                pa.nulls(n, field.type)
                if value is None
                else pa.repeat(pa.scalar(value, field.type), n)
            )
        elif field.name in names:
            col = batch.column(field.name)
            if not col.type.equals(field.type):
                col = col.cast(field.type)
        else:
            col = pa.nulls(n, field.type)
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, schema=target)


def read_file(
    f: SourceFile,
    target: pa.Schema,
    constants: Mapping[str, Any] | None = None,
    block_size: int = BLOCK_SIZE,
) -> Iterator[pa.RecordBatch]:
    """Stream `f` as batches of exactly `target` (typed errors naming the file)."""
    constants = constants or {}
    try:
        for batch in _batches(f, target, block_size):
            if batch.num_rows:
                yield align(batch, target, constants)
    except (pa.ArrowException, OSError) as e:
        raise read_error(f, e) from None
