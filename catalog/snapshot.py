"""One version of a Delta table: its live files with typed statistics, and a DuckDB relation that
reads it exactly as the Delta protocol defines.

delta-rs replays the log; DuckDB reads the Parquet files with `read_parquet`. Everything between
them is here: column mapping, partition values, deletion vectors, schema evolution and type
conversion. A table using a reader feature this cannot honour is refused, never read wrong.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import duckdb
import numpy as np
import pyarrow as pa
from cachetools import LRUCache
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, DeltaProtocolError, TableNotFoundError

from catalog import deletion_vectors as dvs
from catalog import delta_types as types
from catalog import snapshot_cache, storage
from catalog.errors import (
    DataFileMissing,
    InvalidArgument,
    LakeError,
    TableNotFound,
    UnsupportedFeature,
)

# Variant features change nothing for other columns, and a variant column is refused by type.
_READER_FEATURES = frozenset(
    {
        "columnMapping",
        "deletionVectors",
        "timestampNtz",
        "typeWidening",
        "typeWidening-preview",
        "vacuumProtocolCheck",
        "v2Checkpoint",
        "variantType",
        "variantType-preview",
        "variantShredding-preview",
    }
)
_SNAPSHOTS = 256
_SNAPSHOT_FILES = 2_000_000  # bounds the memory of cached snapshots of very large tables
_FOOTERS = 200_000
_DV_RANGES = 4096
_DV_LIST = 10_000  # deleted rows up to which a branch lists them one by one
_MASKS = 32
# DuckDB shadows its virtual columns with a file column of the same name.
_FILE_INDEX, _ROW_NUMBER = "file_index", "file_row_number"
_GLOB = re.compile(r"([*?\[])")


# small caches shared by all snapshots -------------------------------------------------------------
class _Cache:
    """A cachetools LRU cache behind a lock (the caches are shared by every thread)."""

    def __init__(self, size: int, getsizeof: Any = None):
        self.items: LRUCache = LRUCache(size, getsizeof=getsizeof)
        self.lock = threading.Lock()

    def get(self, key: Any) -> Any:
        """The value for `key`, or None."""
        with self.lock:
            return self.items.get(key)

    def put(self, key: Any, value: Any) -> None:
        """Remember `value` under `key` (unless it alone outweighs the whole cache)."""
        with self.lock, contextlib.suppress(ValueError):
            self.items[key] = value

    def clear(self) -> None:
        """Forget everything."""
        with self.lock:
            self.items.clear()


@dataclass(frozen=True)
class _Footer:
    schema: pa.Schema  # as DuckDB sees the file: UTC-adjusted timestamps carry a time zone
    num_rows: int
    key: str  # identity of the schema, field ids included


# Weighed by files, and never lighter than a share of the cache, so that it also holds at most
# _SNAPSHOTS snapshots.
_snapshots = _Cache(
    _SNAPSHOT_FILES,
    getsizeof=lambda hit: max(1 + hit[1].files.num_rows, _SNAPSHOT_FILES // _SNAPSHOTS),
)
_footers = _Cache(_FOOTERS)
_dv_rows = _Cache(_DV_RANGES)
_tables: dict[str, tuple[DeltaTable, Any]] = {}
_table_locks: dict[str, threading.Lock] = {}
_tables_lock = threading.Lock()
_schemas: dict[str, pa.Schema] = {}  # one object per distinct file schema, shared by footers
_probe: duckdb.DuckDBPyConnection | None = None  # binds SQL to check its types, never runs it
_probe_remote = [False]  # whether the probe has the object-store file system registered
_checked: set[str] = set()  # signatures of groups whose types DuckDB confirmed
# Per-file facts that are not in the files table, stored beside it.
_EXTRA = ("__group", "__schema", "__rows", "__path_sql", "__dv_count", "__dv_runs", "__dv_rows")
_SAVE_EVERY_S = 1.0  # per location: a table appended to many times a second is saved now and then
_saved_at: dict[str, float] = {}
_seeded: set[str] = set()  # locations whose newest snapshot on disk seeded the footers


def clear_caches() -> None:
    """Forget every cached snapshot, footer, deletion vector and open table of this process."""
    for c in (_snapshots, _footers, _dv_rows):
        c.clear()
    _checked.clear()
    _seeded.clear()
    with _tables_lock:
        _tables.clear()
    dvs.clear_cache()


def _location_lock(location: str) -> threading.Lock:
    with _tables_lock:
        return _table_locks.setdefault(location, threading.Lock())


# the snapshot -------------------------------------------------------------------------------------
class Snapshot:
    """One immutable version of a Delta table, ready to scan with DuckDB."""

    location: str
    version: int
    schema: pa.Schema
    partition_columns: list[str]
    files: pa.Table

    def __init__(
        self,
        location: str,
        version: int,
        fields: list[dict[str, Any]],
        partition_columns: list[str],
        files: pa.Table,
        plan: _Plan,
    ):
        self.location, self.version = location, version
        self.schema = pa.schema([types.arrow_field(f) for f in fields])
        self.partition_columns = partition_columns
        self.files = files
        self._fields = fields
        self._duckdb_types = {f["name"]: types.duckdb_type(f["type"]) for f in fields}
        self._plan = plan
        self._sql_all: str | None = None
        self._masks = _Cache(_MASKS)

    @classmethod
    def load(
        cls,
        location: str,
        version: int | None = None,
        *,
        cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> Snapshot:
        """The table at `location` as of `version` (default: latest). Snapshots are cached per
        (location, version) in memory and, given `cache_dir` (the lake's own folder for them),
        on disk for the next process; `cache=False` for a version that may still be rolled
        back."""
        location = _local_root(location)
        if version is not None and (not isinstance(version, int) or version < 0):
            raise InvalidArgument(f"a Delta version is an integer >= 0, not {version!r}")
        if version is not None and cache:
            hit = _cached_snapshot(location, version)
            if hit is not None:
                return hit
        if not storage.is_dir(storage.join(location, "_delta_log")):
            raise TableNotFound(f"no Delta table at {location} (no _delta_log folder)")
        if not cache:
            return _build(location, _open(location, version), remember=False, cache_dir=cache_dir)
        with _location_lock(location):
            if version is not None and cache_dir is not None:
                hit = _cached_snapshot(location, version) or _from_disk(
                    cache_dir, location, version
                )
                if hit is not None:
                    return hit
            dt = _table_at(location, version)
            v = dt.version()
            hit = _cached_snapshot(location, v)
            if hit is None and version is None and cache_dir is not None:
                hit = _from_disk(cache_dir, location, v)
            if hit is None:
                hit = _build(location, dt, remember=True, cache_dir=cache_dir)
                stamp = dvs.commit_stamp(location, v)
                _snapshots.put((location, v), (stamp, hit))
                if cache_dir is not None:
                    _to_disk(cache_dir, hit)
            return hit

    def relation_sql(self, keep: Any = None) -> str:
        """A DuckDB `SELECT` yielding exactly the logical columns, in schema order, with Delta
        types and values, over the files where `keep` (a boolean mask aligned with `files`,
        or None for all) is True."""
        if keep is None:
            if self._sql_all is None:
                self._sql_all = self._sql(np.arange(self.files.num_rows))
            return self._sql_all
        mask = _as_mask(keep, self.files.num_rows)
        key = np.packbits(mask).tobytes()
        sql = self._masks.get(key)
        if sql is None:
            sql = self._sql(np.flatnonzero(mask))
            self._masks.put(key, sql)
        return sql

    def duckdb_type(self, column: str) -> str:
        """The DuckDB SQL type text of a logical column."""
        try:
            return self._duckdb_types[column]
        except KeyError:
            raise InvalidArgument(f"{self.location} has no column {column!r}") from None

    def __repr__(self) -> str:
        return f"Snapshot({self.location!r}, version={self.version}, files={self.files.num_rows})"

    # SQL ------------------------------------------------------------------------------------------
    def _sql(self, idx: np.ndarray) -> str:
        if idx.size == 0:
            cols = ", ".join(
                f"{types.null_of(f['type'])} AS {types.quote_ident(f['name'])}"
                for f in self._fields
            )
            return f"SELECT {cols} WHERE false"
        groups = self._plan.group_of[idx]
        branches = []
        for g in dict.fromkeys(groups.tolist()):
            branches.append(self._branch(g, idx[groups == g].tolist()))
        return " UNION ALL ".join(branches)

    def _branch(self, g: int, idx: list[int]) -> str:
        plan = self._plan
        if len(idx) > 1 and plan.shadows_index[g]:
            return " UNION ALL ".join(self._branch(g, [i]) for i in idx)
        cols, side = [], []
        for k in range(len(self.partition_columns)):
            values = [plan.partition_literals[k][i] for i in idx]
            if values.count(values[0]) == len(values):
                cols.append(values[0])
            else:
                cols.append(f"p.p{k}")
                side.append(f"unnest([{', '.join(values)}]) AS p{k}")
        exprs = plan.groups[g]
        select = []
        for j, f in enumerate(self._fields):
            sql = (
                exprs[j] if exprs[j] is not None else cols[self.partition_columns.index(f["name"])]
            )
            select.append(f"{sql} AS {types.quote_ident(f['name'])}")
        paths = ", ".join(plan.path_literals[i] for i in idx)
        sql = f"SELECT {', '.join(select)} FROM read_parquet([{paths}], hive_partitioning = false) AS t"
        if side:
            sql += (
                f" JOIN (SELECT unnest(CAST(range({len(idx)}) AS UBIGINT[])) AS i, {', '.join(side)})"
                " AS p ON t.file_index = p.i"
            )
        deleted = [(n, plan.deleted[i]) for n, i in enumerate(idx) if plan.deleted[i]]
        if deleted:
            sql += " ANTI JOIN " + _deleted_rows_sql(deleted, len(idx) > 1)
        return sql


def _deleted_rows_sql(deleted: list[tuple[int, _Deleted]], many: bool) -> str:
    """The rows to drop: row numbers (with the file's index in the read_parquet list when it
    reads several files), decoded from literal strings, which DuckDB parses far faster than the
    same numbers as SQL tokens. Few rows are listed one by one, which plans faster; many as
    'start:stop' runs, which keeps the text short."""
    if sum(d.count for _, d in deleted) <= _DV_LIST:
        rows = types.quote_str(",".join(d.rows for _, d in deleted))
        if not many:
            return (
                f"(SELECT CAST(unnest(string_split({rows}, ',')) AS BIGINT) AS r) AS d "
                "ON t.file_row_number = d.r"
            )
        files = types.quote_str(",".join(",".join([str(n)] * d.count) for n, d in deleted))
        return (
            f"(SELECT CAST(unnest(string_split({files}, ',')) AS UBIGINT) AS i, "
            f"CAST(unnest(string_split({rows}, ',')) AS BIGINT) AS r) AS d "
            "ON t.file_index = d.i AND t.file_row_number = d.r"
        )
    runs = (
        "unnest(range(CAST(split_part(s, ':', 1) AS BIGINT), "
        "CAST(split_part(s, ':', 2) AS BIGINT))) AS r"
    )
    if not many:
        text = types.quote_str(deleted[0][1].runs)
        return (
            f"(SELECT {runs} FROM (SELECT unnest(string_split({text}, ',')) AS s)) AS d "
            "ON t.file_row_number = d.r"
        )
    text = types.quote_str(";".join(f"{n}|{d.runs}" for n, d in deleted))
    return (
        f"(SELECT i, {runs} FROM (SELECT CAST(split_part(x, '|', 1) AS UBIGINT) AS i, "
        "unnest(string_split(split_part(x, '|', 2), ',')) AS s "
        f"FROM (SELECT unnest(string_split({text}, ';')) AS x))) AS d "
        "ON t.file_index = d.i AND t.file_row_number = d.r"
    )


def _as_mask(keep: Any, n: int) -> np.ndarray:
    if isinstance(keep, pa.ChunkedArray):
        keep = keep.combine_chunks()
    if isinstance(keep, pa.Array):
        if not pa.types.is_boolean(keep.type):
            raise InvalidArgument(f"keep must be a boolean mask, not {keep.type}")
        mask = keep.fill_null(False).to_numpy(zero_copy_only=False)
    else:
        mask = np.asarray(keep)
        if mask.dtype != np.bool_:
            raise InvalidArgument(f"keep must be a boolean mask, not {mask.dtype}")
    if mask.shape != (n,):
        raise InvalidArgument(f"keep has {mask.size} entries, the snapshot has {n} files")
    return mask


# loading ------------------------------------------------------------------------------------------
def _local_root(location: str) -> str:
    text = str(location)
    if storage.is_remote(text):
        return storage.normalize(text)
    parsed = urlparse(text)
    if parsed.scheme == "file":
        text = unquote(parsed.path)
    elif len(parsed.scheme) > 1:  # one letter: a Windows drive
        raise UnsupportedFeature(f"{location}: only local and s3:// tables can be read")
    return os.path.abspath(os.path.expanduser(text)).rstrip(os.sep) or os.sep


def _cached_snapshot(location: str, version: int) -> Snapshot | None:
    hit = _snapshots.get((location, version))
    if hit is None or hit[0] != dvs.commit_stamp(location, version):
        return None
    return hit[1]


def _open(location: str, version: int | None) -> DeltaTable:
    opts = storage.delta_options(location)
    try:
        return DeltaTable(location, version=version, storage_options=opts)
    except TableNotFoundError as e:
        raise TableNotFound(f"no Delta table at {location}: {e}") from None
    except DeltaProtocolError as e:
        raise UnsupportedFeature(f"Delta table {location}: {e}") from None
    except DeltaError as e:
        raise _version_error(location, version, e) from None


def _version_error(location: str, version: int | None, e: Exception) -> LakeError:
    latest = dvs.latest_commit(location)
    if version is not None and version > latest:
        return InvalidArgument(
            f"Delta table {location} has no version {version} (latest is {latest})"
        )
    return UnsupportedFeature(f"cannot read Delta table {location} at version {version}: {e}")


def _table_at(location: str, version: int | None) -> DeltaTable:
    """The location's cached DeltaTable moved to `version` (latest if None); the caller holds
    the location lock."""
    cached = _tables.get(location)
    if cached is not None and cached[1] != dvs.commit_stamp(location, cached[0].version()):
        cached = None  # that version was rewritten, or the table re-created: start afresh
    if cached is None:
        dt = _open(location, version)
    else:
        dt = cached[0]
        try:
            if version is None:
                dt.update_incremental()
            elif dt.version() != version:
                dt.load_as_version(version)
        except DeltaError as e:
            _tables.pop(location, None)  # its state is uncertain now
            if isinstance(e, DeltaProtocolError):
                raise UnsupportedFeature(f"Delta table {location}: {e}") from None
            raise _version_error(location, version, e) from None
    _tables[location] = (dt, dvs.commit_stamp(location, dt.version()))
    return dt


def _check_protocol(dt: DeltaTable, where: str) -> set[str]:
    """Refuse reader features we cannot honour; returns the reader features in use."""
    protocol = dt.protocol()
    if protocol.min_reader_version > 3:
        raise UnsupportedFeature(
            f"{where} needs Delta reader version {protocol.min_reader_version}; "
            "Lakeward reads up to version 3"
        )
    features = set(protocol.reader_features or []) if protocol.min_reader_version == 3 else set()
    unknown = features - _READER_FEATURES
    if unknown:
        raise UnsupportedFeature(
            f"{where} uses Delta reader features Lakeward cannot read: {', '.join(sorted(unknown))}"
        )
    if {"v2Checkpoint", "deletionVectors"} <= features:
        raise UnsupportedFeature(
            f"{where} combines v2 checkpoints with deletion vectors, which Lakeward cannot read yet"
        )
    return features


def _column_mapping(dt: DeltaTable, where: str) -> str:
    mode = (dt.metadata().configuration or {}).get("delta.columnMapping.mode") or "none"
    if mode not in ("none", "name", "id"):
        raise UnsupportedFeature(f"{where} uses column mapping mode {mode!r}")
    return mode


def _build(
    location: str, dt: DeltaTable, *, remember: bool, cache_dir: str | os.PathLike[str] | None
) -> Snapshot:
    version = dt.version()
    where = f"Delta table {location} version {version}"
    features = _check_protocol(dt, where)
    mode = _column_mapping(dt, where)
    fields = json.loads(dt.schema().to_json())["fields"]
    for f in fields:
        types.check_type(f["type"], f"{where}: column {f['name']!r}")
    partitions = list(dt.metadata().partition_columns)
    actions = pa.table(dt.get_add_actions(flatten=False))
    raw_paths = actions.column("path").to_pylist()
    paths = [_data_path(location, p, where) for p in raw_paths]
    sizes = actions.column("size_bytes").to_pylist()
    seed = None if cache_dir is None else lambda: _seed_footers(cache_dir, location)
    footers = _read_footers(paths, sizes, where, seed)
    descriptors = (
        dvs.descriptors(location, version, remember=remember)
        if "deletionVectors" in features
        else {}
    )
    file_dvs = [descriptors.get(unquote(p)) for p in raw_paths]
    deleted = (
        _deleted_rows(dt, location, paths, file_dvs, footers, where)
        if "deletionVectors" in features
        else [None] * len(paths)
    )
    by_name = {f["name"]: f for f in fields}
    part_arrays = [_partition_values(actions, by_name[c], mode, where) for c in partitions]
    files = _files_table(paths, actions, footers, file_dvs, fields, partitions, part_arrays, mode)
    plan = _make_plan(fields, partitions, mode, paths, footers, part_arrays, deleted, where)
    snap = Snapshot(location, version, fields, partitions, files, plan)
    _check_types(snap, where)
    return snap


def _group_signature(snap: Snapshot, g: int, i: int) -> str:
    """What the type check of group g (read through file i) depends on: the logical schema, the
    SQL of each column and the file's schema as Arrow and Parquet see it."""
    plan = snap._plan
    footer_key = plan.footers[i].key if plan.footers else ""
    text = json.dumps([snap._fields, plan.groups[g], plan.shadows_index[g], footer_key])
    return hashlib.sha256(text.encode()).hexdigest()


def _check_types(snap: Snapshot, where: str) -> None:
    """Bind one file of every group in DuckDB and refuse unless each column comes out with
    exactly its Delta type: Arrow's view of a file (which picks the SQL) and DuckDB's could
    differ. A group of a signature checked before (in this process, or by the process that
    saved the newest snapshot on disk) is not bound again."""
    global _probe
    groups = snap._plan.group_of
    todo = []
    for g in range(len(snap._plan.groups)):
        i = int(np.argmax(groups == g))
        sig = _group_signature(snap, g, i)
        if sig not in _checked:
            todo.append((i, g, sig))
    if not todo:
        return
    with _tables_lock:
        if _probe is None:
            _probe = duckdb.connect()
            _probe_remote[:] = [False]
        if storage.is_remote(snap.location) and not _probe_remote[0]:
            # reads only the snapshot's own files, through the lake's storage
            _probe.register_filesystem(storage.duckdb_filesystem(frozenset({"s3://"})))
            _probe_remote[0] = True
        con = _probe.cursor()
    try:
        names = snap.schema.names
        nulls = ", ".join(f"CAST(NULL AS {snap.duckdb_type(n)})" for n in names)
        want = [str(t) for t in con.sql(f"SELECT {nulls}").types]
        for i, g, sig in todo:
            try:
                got = [str(t) for t in con.sql(snap._branch(g, [i])).types]
            except duckdb.Error as e:
                raise UnsupportedFeature(
                    f"{where}: DuckDB cannot read {snap.files['path'][i]}: {e}"
                ) from None
            for name, a, b in zip(names, got, want, strict=True):
                if a != b:
                    raise UnsupportedFeature(
                        f"{where}: column {name!r} of {snap.files['path'][i]} reads as {a}, not {b}"
                    )
            if len(_checked) > 10_000:
                _checked.clear()
            _checked.add(sig)
    finally:
        con.close()


def _data_path(root: str, path: str, where: str) -> str:
    if ":" not in path:  # the usual relative path; skips the slower URL parsing
        if storage.is_remote(root):
            return storage.join(root, unquote(path))
        return os.path.join(root, unquote(path))
    parsed = urlparse(path)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme in ("s3", "s3a"):
        return storage.normalize(unquote(path))
    if len(parsed.scheme) > 1:
        raise UnsupportedFeature(f"{where}: data file {path} is not on the local file system")
    return os.path.join(root, unquote(path))


def _read_footers(
    paths: list[str], sizes: list[int], where: str, seed: Any = None
) -> list[_Footer]:
    """The footer of every file: from memory, else from the newest snapshot on disk (`seed`),
    else read from the file."""
    out: list[_Footer | None] = [_footers.get((p, s)) for p, s in zip(paths, sizes, strict=True)]
    missing = [i for i, f in enumerate(out) if f is None]
    if missing and seed is not None:
        seed()
        for i in missing:
            out[i] = _footers.get((paths[i], sizes[i]))
        missing = [i for i in missing if out[i] is None]

    import pyarrow.parquet as pq  # only reading footers (building a snapshot) needs it

    def read(i: int) -> _Footer:
        try:
            if storage.is_remote(paths[i]):
                with storage.RemoteFile(paths[i], sizes[i]) as f:
                    meta = pq.read_metadata(f)
            else:
                meta = pq.read_metadata(paths[i])
        except (OSError, pa.ArrowException) as e:
            raise UnsupportedFeature(f"{where}: cannot read data file {paths[i]}: {e}") from None
        # The Parquet schema text too: DuckDB reads logical annotations (UUID, ...) that Arrow
        # may not show, and the type check of a group holds for files of one key only.
        # (Its first line names the Python object: left out.)
        parquet_schema = str(meta.schema).split("\n", 1)[-1]
        footer = _footer(
            meta.schema.to_arrow_schema().remove_metadata(), meta.num_rows, parquet_schema
        )
        _footers.put((paths[i], sizes[i]), footer)
        return footer

    if len(missing) > 8:
        with ThreadPoolExecutor(max_workers=min(16, len(missing))) as pool:
            for i, footer in zip(missing, pool.map(read, missing), strict=True):
                out[i] = footer
    else:
        for i in missing:
            out[i] = read(i)
    return out  # type: ignore[return-value]


def _footer(schema: pa.Schema, num_rows: int, parquet_schema: str) -> _Footer:
    key = schema.to_string(show_field_metadata=True) + "\n" + parquet_schema
    if len(_schemas) > 10_000:
        _schemas.clear()
    return _Footer(_schemas.setdefault(key, schema), num_rows, key)


@dataclass(frozen=True)
class _Deleted:
    """The rows a deletion vector drops from its file, as text for the SQL."""

    count: int
    runs: str  # 'start:stop' (stop exclusive), comma separated
    rows: str  # every row number, comma separated; empty when there are too many


def _dv_key(location: str, d: dvs.Descriptor) -> tuple:
    # A deletion vector is never rewritten in place: a new one has a new file or offset.
    return (location, d.storage_type, d.path_or_inline_dv, d.offset)


def _deleted_rows(
    dt: DeltaTable,
    location: str,
    paths: list[str],
    file_dvs: list[dvs.Descriptor | None],
    footers: list[_Footer],
    where: str,
) -> list[_Deleted | None]:
    """Per file, the rows its deletion vector drops, decoded by delta-rs; refused unless they
    agree with the log's descriptors on which files have one and how many rows each drops (a
    cheap guard against ever showing deleted rows)."""
    out: list[_Deleted | None] = [None] * len(paths)
    wanted = [i for i, d in enumerate(file_dvs) if d is not None and d.cardinality]
    theirs = _decoded_by_delta_rs(dt, where)
    ours = {os.path.normpath(paths[i]): i for i in wanted}
    if {p for p, rows in theirs.items() if rows.size} != set(ours):
        raise UnsupportedFeature(
            f"{where}: the deletion vectors found in the log disagree with delta-rs's; "
            "refusing to read rather than risk showing deleted rows"
        )
    for path, i in ours.items():
        d, rows, footer = file_dvs[i], theirs[path], footers[i]
        assert d is not None
        hit = _dv_rows.get(_dv_key(location, d))
        if hit is not None and hit.count == rows.size:
            out[i] = hit
            continue
        if rows.size != d.cardinality:
            raise UnsupportedFeature(
                f"{where}: deletion vector of {paths[i]} holds {rows.size} rows, "
                f"the log says {d.cardinality}"
            )
        if int(rows[-1]) >= footer.num_rows:
            raise UnsupportedFeature(
                f"{where}: deletion vector of {paths[i]} deletes row {int(rows[-1])} "
                f"of a file of {footer.num_rows} rows"
            )
        listed = ",".join(map(str, rows.tolist())) if rows.size <= _DV_LIST else ""
        out[i] = _Deleted(int(rows.size), dvs.ranges_text(rows), listed)
        _dv_rows.put(_dv_key(location, d), out[i])
    return out


def _decoded_by_delta_rs(dt: DeltaTable, where: str) -> dict[str, np.ndarray]:
    """delta-rs's decoding of the version's deletion vectors: sorted deleted row numbers per
    data file (normalised local path)."""
    try:
        decoded = pa.table(dt.deletion_vectors())
    except DeltaError as e:
        if "not found" in str(e).lower():
            raise DataFileMissing(
                f"{where}: a deletion-vector file its log refers to is missing"
            ) from None
        raise UnsupportedFeature(f"{where}: cannot decode its deletion vectors: {e}") from None
    import pyarrow.compute as pc  # heavy (~20 ms): only building a snapshot needs it

    keep = decoded.column("selection_vector").combine_chunks()
    flat = pc.list_flatten(keep).to_numpy(zero_copy_only=False)
    bounds = np.cumsum([0, *pc.list_value_length(keep).fill_null(0).to_pylist()])
    return {
        os.path.normpath(_data_path("/", uri, where)): np.flatnonzero(
            ~flat[bounds[n] : bounds[n + 1]]
        ).astype(np.uint64)
        for n, uri in enumerate(decoded.column("filepath").to_pylist())
    }


# the files table ----------------------------------------------------------------------------------
def _struct_child(actions: pa.Table, column: str, names: list[str]) -> pa.Array | None:
    """A child of a struct column of the add actions, nulls of the struct included."""
    if column not in actions.column_names:
        return None
    arr = actions.column(column).combine_chunks()
    if not pa.types.is_struct(arr.type):
        return None
    for name in names:
        i = arr.type.get_field_index(name)
        if i >= 0:
            return arr.flatten()[i]
    return None


def _physical(field: dict[str, Any], mode: str) -> str:
    return (
        (field.get("metadata") or {}).get(types.PHYSICAL_NAME, field["name"])
        if mode != "none"
        else field["name"]
    )


def _partition_values(actions: pa.Table, field: dict[str, Any], mode: str, where: str) -> pa.Array:
    typ = types.arrow_type(field["type"])
    arr = _struct_child(actions, "partition", [field["name"], _physical(field, mode)])
    if arr is None:
        if actions.num_rows:
            raise UnsupportedFeature(
                f"{where}: delta-rs gives no values for partition column {field['name']!r}"
            )
        return pa.array([], typ)
    try:
        return arr.cast(typ)
    except pa.ArrowException as e:
        raise UnsupportedFeature(f"{where}: partition values of {field['name']!r}: {e}") from None


def _files_table(
    paths: list[str],
    actions: pa.Table,
    footers: list[_Footer],
    file_dvs: list[dvs.Descriptor | None],
    fields: list[dict[str, Any]],
    partitions: list[str],
    part_arrays: list[pa.Array],
    mode: str,
) -> pa.Table:
    import pyarrow.compute as pc  # heavy (~20 ms): only building a snapshot needs it

    records = actions.column("num_records").combine_chunks().cast(pa.int64())
    records = pc.if_else(
        records.is_null(), pa.array([f.num_rows for f in footers], pa.int64()), records
    )
    cols: dict[str, pa.Array] = {
        "path": pa.array(paths, pa.string()),
        "size_bytes": actions.column("size_bytes").combine_chunks().cast(pa.int64()),
        "num_records": records,
        "deleted_records": pa.array(
            [0 if d is None else d.cardinality for d in file_dvs], pa.int64()
        ),
    }
    for name, arr in zip(partitions, part_arrays, strict=True):
        cols[f"partition.{name}"] = arr
    stats = [f for f in fields if f["name"] not in partitions and types.is_primitive(f["type"])]
    for kind, prefix in (("min", "min."), ("max", "max."), ("null_count", "null_count.")):
        for f in stats:
            arr = _stat(actions, kind, f, mode)
            if arr is not None:
                cols[prefix + f["name"]] = arr
    return pa.table(cols)


def _stat(actions: pa.Table, kind: str, field: dict[str, Any], mode: str) -> pa.Array | None:
    import pyarrow.compute as pc  # heavy (~20 ms): only building a snapshot needs it

    arr = _struct_child(actions, kind, [_physical(field, mode), field["name"]])
    if arr is None:
        return None
    typ = pa.int64() if kind == "null_count" else types.arrow_type(field["type"])
    try:
        arr = arr.cast(typ)
        if kind == "max" and field["type"] in ("timestamp", "timestamp_ntz"):
            # Writers such as Spark truncate timestamp statistics to milliseconds.
            arr = pc.add_checked(arr, pa.scalar(999, pa.duration("us")))
    except pa.ArrowException:
        return None
    return arr


# the reading plan ---------------------------------------------------------------------------------
@dataclass
class _Plan:
    """What `relation_sql` needs per file, precomputed so that it only joins strings."""

    path_literals: list[str]
    group_of: np.ndarray  # files sharing a group are read by one read_parquet call
    groups: list[list[str | None]]  # per group, the SQL of each column (None: partition column)
    shadows_index: list[bool]  # the group's files have a column named file_index
    partition_literals: list[list[str]]  # per partition column, per file
    deleted: list[_Deleted | None]  # per file, the rows its deletion vector drops
    footers: list[_Footer] | None = None  # per file (None when loaded from disk)


def _glob_escaped(path: str) -> str:
    # read_parquet expands glob patterns; brackets make each special character literal.
    return _GLOB.sub(r"[\1]", path)


def _make_plan(
    fields: list[dict[str, Any]],
    partitions: list[str],
    mode: str,
    paths: list[str],
    footers: list[_Footer],
    part_arrays: list[pa.Array],
    deleted: list[_Deleted | None],
    where: str,
) -> _Plan:
    by_schema: dict[str, tuple[int, bool]] = {}  # footer key -> group, has file_row_number
    group_keys: dict[tuple, int] = {}
    groups: list[list[str | None]] = []
    shadows_index: list[bool] = []
    group_of = np.zeros(len(paths), dtype=np.int64)
    for i, footer in enumerate(footers):
        if footer.key not in by_schema:
            key, exprs = _read_columns(
                fields, partitions, mode, footer.schema, f"{where}, file {paths[i]}"
            )
            g = group_keys.setdefault(key, len(groups))
            if g == len(groups):
                groups.append(exprs)
                shadows_index.append(False)
            names = {n.lower() for n in footer.schema.names}
            shadows_index[g] = shadows_index[g] or _FILE_INDEX in names
            by_schema[footer.key] = (g, _ROW_NUMBER in names)
        g, has_row_number = by_schema[footer.key]
        if deleted[i] and has_row_number:
            raise UnsupportedFeature(
                f"{where}: {paths[i]} has a deletion vector and a column named "
                f"{_ROW_NUMBER!r}, which Lakeward cannot read yet"
            )
        group_of[i] = g
    by_name = {f["name"]: f for f in fields}
    return _Plan(
        path_literals=[types.quote_str(_glob_escaped(p)) for p in paths],
        group_of=group_of,
        groups=groups,
        shadows_index=shadows_index,
        partition_literals=[
            types.literals(arr, by_name[c]["type"])
            for c, arr in zip(partitions, part_arrays, strict=True)
        ],
        deleted=deleted,
        footers=footers,
    )


def _read_columns(
    fields: list[dict[str, Any]], partitions: list[str], mode: str, schema: pa.Schema, where: str
) -> tuple[tuple, list[str | None]]:
    """The SQL reading each logical column from files of this physical schema, and a key that
    is equal for files one read_parquet call can read together (same columns, same types)."""
    exprs: list[str | None] = []
    used = []
    file_fields = list(schema)
    for f in fields:
        if f["name"] in partitions:
            exprs.append(None)
            continue
        found = types.find_field(file_fields, f, mode)
        if found is None:
            exprs.append(types.null_of(f["type"]))  # written before the column was added
            continue
        try:
            exprs.append(
                types.read_as(f"t.{types.quote_ident(found.name)}", found.type, f["type"], mode)
            )
        except types.Mismatch as e:
            raise UnsupportedFeature(f"{where}: column {f['name']!r}: {e}") from None
        used.append((found.name, str(found.type)))
    return (tuple(exprs), tuple(used)), exprs


# snapshots on disk --------------------------------------------------------------------------------


def _disk_stamp(location: str, version: int) -> tuple | None:
    """The commit file's identity and a digest of its start: a table re-created at the same
    place may reuse the inode, size and (coarse) modification time, never the content."""
    stamp = dvs.commit_stamp(location, version)
    if stamp is None:
        return None
    try:
        head = storage.read_range(
            storage.join(location, "_delta_log", f"{version:020d}.json"), 0, 1 << 16
        )
    except OSError:
        return None
    return (*stamp, hashlib.sha256(head).hexdigest())


def _to_disk(cache_dir: str | os.PathLike[str], snap: Snapshot) -> None:
    plan = snap._plan
    if plan.footers is None:
        return
    now = time.monotonic()
    if now - _saved_at.get(snap.location, -_SAVE_EVERY_S) < _SAVE_EVERY_S:
        return
    _saved_at[snap.location] = now
    keys: dict[str, int] = {}
    schemas: list[list[str]] = []
    index = []
    for f in plan.footers:
        i = keys.get(f.key)
        if i is None:
            i = keys[f.key] = len(schemas)
            schemas.append([base64.b64encode(f.schema.serialize().to_pybytes()).decode(), f.key])
        index.append(i)
    groups = plan.group_of
    checked = [
        sig
        for g in range(len(plan.groups))
        if (sig := _group_signature(snap, g, int(np.argmax(groups == g)))) in _checked
    ]
    deleted = plan.deleted
    extra = {
        # From lists: pa.array of a NumPy array imports numpy.ma, a cost on the CLI's path.
        "__group": pa.array(plan.group_of.tolist(), pa.int64()),
        "__schema": pa.array(index, pa.int32()),
        "__rows": pa.array([f.num_rows for f in plan.footers], pa.int64()),
        "__path_sql": pa.array(plan.path_literals, pa.string()),
        "__dv_count": pa.array([d.count if d else None for d in deleted], pa.int64()),
        "__dv_runs": pa.array([d.runs if d else None for d in deleted], pa.string()),
        "__dv_rows": pa.array([d.rows if d else None for d in deleted], pa.string()),
    }
    table = snap.files
    for name, arr in extra.items():
        table = table.append_column(name, arr)
    header = {
        "fields": snap._fields,
        "partition_columns": snap.partition_columns,
        "groups": plan.groups,
        "shadows_index": plan.shadows_index,
        "schemas": schemas,
        "checked": checked,
    }
    stamp = _disk_stamp(snap.location, snap.version)
    snapshot_cache.save(str(cache_dir), snap.location, snap.version, stamp, header, table)


def _footers_of(meta: dict[str, Any]) -> list[_Footer]:
    """The distinct footer schemas of a saved snapshot (num_rows left 0)."""
    out = []
    for text, key in meta["schemas"]:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
        out.append(_Footer(_schemas.setdefault(key, schema), 0, key))
    return out


def _from_disk(cache_dir: str | os.PathLike[str], location: str, version: int) -> Snapshot | None:
    """The snapshot saved by an earlier process, if it is of exactly this version."""
    hit = snapshot_cache.load(str(cache_dir), location, version, _disk_stamp(location, version))
    if hit is None:
        return None
    meta, table = hit
    try:
        files = table.drop_columns(list(_EXTRA))
        fields = meta["fields"]
        partitions = list(meta["partition_columns"])
        by_name = {f["name"]: f for f in fields}
        count = table.column("__dv_count")
        deleted: list[_Deleted | None] = [None] * table.num_rows
        if count.null_count < table.num_rows:
            runs, rows = table.column("__dv_runs"), table.column("__dv_rows")
            for i in np.flatnonzero(count.is_valid().to_numpy(zero_copy_only=False)).tolist():
                deleted[i] = _Deleted(count[i].as_py(), runs[i].as_py(), rows[i].as_py())
        plan = _Plan(
            path_literals=table.column("__path_sql").to_pylist(),
            group_of=table.column("__group").to_numpy(),
            groups=[list(g) for g in meta["groups"]],
            shadows_index=list(meta["shadows_index"]),
            partition_literals=[
                types.literals(files.column(f"partition.{c}").combine_chunks(), by_name[c]["type"])
                for c in partitions
            ],
            deleted=deleted,
        )
        snap = Snapshot(location, version, fields, partitions, files, plan)
    except (KeyError, ValueError, TypeError, IndexError, pa.ArrowException):
        return None
    _snapshots.put((location, version), (dvs.commit_stamp(location, version), snap))
    return snap


def _seed_footers(cache_dir: str | os.PathLike[str], location: str) -> None:
    """Remember the footers of the files of the newest snapshot on disk (once per location and
    process): a new version shares most of its files with it."""
    if location in _seeded:
        return
    _seeded.add(location)
    hit = snapshot_cache.newest(str(cache_dir), location)
    if hit is None:
        return
    meta, table = hit
    try:
        keyed = _footers_of(meta)
        if meta.get("duckdb") == duckdb.__version__:
            _checked.update(meta.get("checked", []))
        for path, size, i, rows in zip(
            table.column("path").to_pylist(),
            table.column("size_bytes").to_pylist(),
            table.column("__schema").to_pylist(),
            table.column("__rows").to_pylist(),
            strict=True,
        ):
            _footers.put((path, size), _Footer(keyed[i].schema, rows, keyed[i].key))
    except (KeyError, ValueError, TypeError, IndexError, pa.ArrowException):
        return
