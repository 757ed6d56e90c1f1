"""Partitions of a table: listing them, and choosing the files of some of them.

Compaction and vacuum target partitions with either `partition={"region": "eu"}` or a SQL
predicate over partition columns only (`where="region = 'eu'"`); both select files exactly,
never conservatively, since a rewrite must know precisely which files it owns.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import duckdb
import numpy as np
import pyarrow as pa

from catalog.errors import InvalidArgument, SQLError
from catalog.snapshot import Snapshot

if TYPE_CHECKING:
    from catalog.catalog import Catalog

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_SANDBOX: duckdb.DuckDBPyConnection | None = None
_SANDBOX_LOCK = threading.Lock()


def _sandbox() -> duckdb.DuckDBPyConnection:
    """A database that can read nothing but what is registered on its cursors."""
    global _SANDBOX
    with _SANDBOX_LOCK:
        if _SANDBOX is None:
            _SANDBOX = duckdb.connect(
                ":memory:",
                config={"enable_external_access": False, "python_enable_replacements": False},
            )
        return _SANDBOX


def partitions(catalog: Catalog, name: str) -> list[dict[str, Any]]:
    """The partitions of a table's current version: values, file count, rows and bytes.

    Each entry is `{"partition": {col: value, ...}, "num_files", "num_rows", "size_bytes"}`,
    sorted by partition values; an unpartitioned table with files has one entry with `{}`.
    """
    import pyarrow.compute as pc  # heavy (~20 ms): catalog commands that list no partitions skip it

    info = catalog.table(name)
    snap = catalog.snapshot(info)
    files = snap.files
    if files.num_rows == 0:
        return []
    cols = [f"partition.{c}" for c in snap.partition_columns]
    rows = pc.subtract(files["num_records"], files["deleted_records"])
    t = pa.table(
        {
            **{c: files[c] for c in cols},
            "rows": rows,
            "size": files["size_bytes"],
        }
    )
    grouped = t.group_by(cols, use_threads=False).aggregate(
        [("rows", "count"), ("rows", "sum"), ("size", "sum")]
    )
    out = []
    for rec in grouped.to_pylist():
        out.append(
            {
                "partition": {c: rec[f"partition.{c}"] for c in snap.partition_columns},
                "num_files": int(rec["rows_count"]),
                "num_rows": int(rec["rows_sum"] or 0),
                "size_bytes": int(rec["size_sum"] or 0),
            }
        )
    out.sort(key=lambda r: [(v is None, str(v)) for v in r["partition"].values()])
    return out


def select_files(
    snap: Snapshot, where: str | None = None, partition: Mapping[str, Any] | None = None
) -> np.ndarray:
    """A boolean mask over `snap.files`: the files of the partitions `where` / `partition` name.

    Both None selects every file. Naming a column that is not a partition column is an
    InvalidArgument: a partition filter must select whole files.
    """
    n = snap.files.num_rows
    keep = np.ones(n, dtype=bool)
    if partition:
        keep &= _match_values(snap, partition)
    if where is not None:
        keep &= _match_predicate(snap, where)
    return keep


def _check_columns(snap: Snapshot, names: list[str], what: str) -> None:
    unknown = [c for c in names if c not in snap.partition_columns]
    if unknown:
        parts = ", ".join(snap.partition_columns) or "none"
        raise InvalidArgument(
            f"{what} may name only partition columns (this table's: {parts}); "
            f"not {', '.join(map(repr, unknown))}"
        )


def _match_values(snap: Snapshot, partition: Mapping[str, Any]) -> np.ndarray:
    import pyarrow.compute as pc  # heavy (~20 ms): only choosing files by partition needs it

    if not isinstance(partition, Mapping):
        raise InvalidArgument('partition must be a mapping such as {"region": "eu"}')
    _check_columns(snap, list(partition), "partition=")
    keep = np.ones(snap.files.num_rows, dtype=bool)
    for col, value in partition.items():
        arr = snap.files[f"partition.{col}"]
        if value is None:
            m = pc.is_null(arr)
        else:
            try:
                typed = pa.scalar(value).cast(arr.type)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                raise InvalidArgument(
                    f"partition value {value!r} does not fit column {col!r} ({arr.type})"
                ) from None
            m = pc.fill_null(pc.equal(arr, typed), False)
        keep &= np.asarray(m.to_numpy(zero_copy_only=False), dtype=bool)
    return keep


def _match_predicate(snap: Snapshot, where: str) -> np.ndarray:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    if not isinstance(where, str) or not where.strip():
        raise InvalidArgument("where must be a non-empty SQL predicate over partition columns")
    try:
        tree = sqlglot.parse_one(where, read="duckdb", into=exp.Condition)
    except ParseError as e:
        msg = e.errors[0]["description"] if e.errors else str(e)
        raise SQLError(f"cannot parse {where!r}: {msg}") from None
    if tree.find(exp.Select, exp.Subquery):
        raise SQLError("a partition predicate may not contain subqueries")
    by_lower = {c.lower(): c for c in snap.partition_columns}
    names = [c.name for c in tree.find_all(exp.Column)]
    _check_columns(snap, [by_lower.get(c.lower(), c) for c in names], "where=")
    n = snap.files.num_rows
    if n == 0:
        return np.zeros(0, dtype=bool)
    parts = pa.table(
        {
            "__file": pa.array(np.arange(n, dtype=np.int64)),
            **{c: snap.files[f"partition.{c}"] for c in snap.partition_columns},
        }
    )
    con = _sandbox().cursor()
    try:
        con.register("__parts", parts)
        try:
            # The parsed condition, re-emitted: never more than one expression reaches DuckDB.
            cond = tree.sql(dialect="duckdb")
            hit = con.execute(f"SELECT __file FROM __parts WHERE {cond}").fetchnumpy()["__file"]
        except duckdb.Error as e:
            raise SQLError(f"partition predicate {where!r} failed: {e}") from None
    finally:
        con.close()
    keep = np.zeros(n, dtype=bool)
    keep[np.asarray(hit, dtype=np.int64)] = True
    return keep


def path_in_partition(
    relpath: str, partition_by: list[str] | tuple[str, ...], partition: Mapping[str, Any]
) -> bool:
    """Whether a data file's table-relative path lies in the hive folder of `partition`.

    For files no version references any more (vacuum's candidates), the folder is all that is
    left of their partition values.
    """
    segments = relpath.split("/")[:-1]
    found: dict[str, str] = {}
    for seg in segments:
        key, sep, raw = seg.partition("=")
        if sep and key in partition_by:
            found[key] = unquote(raw)
    for col, value in partition.items():
        if col not in found:
            return False
        want = HIVE_NULL if value is None else _text(value)
        if found[col] != want:
            return False
    return True


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
