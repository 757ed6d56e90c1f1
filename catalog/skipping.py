"""File skipping: drop files whose partition values or min/max statistics cannot match.

A predicate here is (column, op, value) with op in = != < <= > >= in isnull notnull. Anything
unknown keeps the file: skipping may only ever be conservative.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

Predicate = tuple[str, str, Any]


def _typed(value: Any, typ: pa.DataType) -> pa.Scalar | None:
    try:
        return pa.scalar(value).cast(typ)
    except (
        pa.ArrowInvalid,
        pa.ArrowNotImplementedError,
        pa.ArrowTypeError,
        TypeError,
        ValueError,
        OverflowError,
    ):
        return None


def _fill(mask: pa.Array, value: bool) -> pa.Array:
    return mask.fill_null(value)


def _one(
    files: pa.Table, schema: pa.Schema, partitions: set[str], pred: Predicate
) -> pa.Array | None:
    # Heavy (~20 ms) and needed only by a query with a predicate on a column: a process whose
    # queries have none (the CLI's, a dashboard's count) never imports it.
    import pyarrow.compute as pc

    col, op, value = pred
    if col not in schema.names:
        return None
    typ = schema.field(col).type
    if col in partitions:
        part = files[f"partition.{col}"]
        if op == "isnull":
            return pc.is_null(part)
        if op == "notnull":
            return pc.is_valid(part)
        if op == "in":
            vals = [v for v in (_typed(x, typ) for x in value) if v is not None]
            if len(vals) != len(value):
                return None
            return _fill(pc.is_in(part, value_set=pa.array([v.as_py() for v in vals], typ)), False)
        v = _typed(value, typ)
        if v is None:
            return None
        fn = {
            "=": pc.equal,
            "!=": pc.not_equal,
            "<": pc.less,
            "<=": pc.less_equal,
            ">": pc.greater,
            ">=": pc.greater_equal,
        }[op]
        return _fill(fn(part, v), False)
    lo_name, hi_name, nc_name = f"min.{col}", f"max.{col}", f"null_count.{col}"
    names = set(files.column_names)
    if op in ("isnull", "notnull"):
        if nc_name not in names:
            return None
        nc = files[nc_name]
        if op == "isnull":
            return _fill(pc.greater(nc, 0), True)
        rows = files["num_records"]
        return _fill(pc.less(nc, rows), True)
    if lo_name not in names or hi_name not in names:
        return None
    lo, hi = files[lo_name], files[hi_name]
    if pa.types.is_floating(typ) and op in (">", ">=", "!="):
        return None  # NaN sorts above everything in DuckDB but is left out of max statistics
    if not (
        pa.types.is_integer(typ)
        or pa.types.is_floating(typ)
        or pa.types.is_decimal(typ)
        or pa.types.is_date(typ)
        or pa.types.is_timestamp(typ)
        or pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
        or pa.types.is_boolean(typ)
    ):
        return None
    values = value if op == "in" else [value]
    typed = [_typed(x, lo.type) for x in values]
    if any(t is None for t in typed):
        return None
    if op in ("=", "in"):
        keep = None
        for v in typed:
            m = pc.and_(pc.less_equal(lo, v), pc.greater_equal(hi, v))
            keep = m if keep is None else pc.or_(keep, m)
        return _fill(keep, True)
    v = typed[0]
    if op == "<":
        return _fill(pc.less(lo, v), True)
    if op == "<=":
        return _fill(pc.less_equal(lo, v), True)
    if op == ">":
        return _fill(pc.greater(hi, v), True)
    if op == ">=":
        return _fill(pc.greater_equal(hi, v), True)
    if op == "!=":
        return _fill(pc.or_(pc.not_equal(lo, v), pc.not_equal(hi, v)), True)
    return None


def prune(
    files: pa.Table, schema: pa.Schema, partitions: Iterable[str], predicates: Iterable[Predicate]
) -> pa.Array | None:
    """A boolean mask over `files` of those that may hold matching rows (None: keep all)."""
    import pyarrow.compute as pc  # see _one

    parts = set(partitions)
    keep = None
    for pred in predicates:
        try:
            m = _one(files, schema, parts, pred)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            m = None
        if m is None:
            continue
        if isinstance(m, pa.ChunkedArray):
            m = m.combine_chunks()
        keep = m if keep is None else pc.and_(keep, m)
    return keep
