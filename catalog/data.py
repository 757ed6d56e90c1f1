"""Normalising user data to Arrow and checking it against a table schema."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from catalog.errors import InvalidArgument, SchemaMismatch

_WIDENING = {
    pa.int8(): (pa.int16(), pa.int32(), pa.int64()),
    pa.int16(): (pa.int32(), pa.int64()),
    pa.int32(): (pa.int64(),),
    pa.uint8(): (pa.int16(), pa.int32(), pa.int64()),
    pa.uint16(): (pa.int32(), pa.int64()),
    pa.uint32(): (pa.int64(),),
    pa.float16(): (pa.float32(), pa.float64()),
    pa.float32(): (pa.float64(),),
    pa.string(): (pa.large_string(), pa.string_view()),
    pa.large_string(): (pa.string(), pa.string_view()),
    pa.string_view(): (pa.string(), pa.large_string()),
    pa.binary(): (pa.large_binary(),),
    pa.large_binary(): (pa.binary(),),
}


def to_arrow(data: Any) -> pa.Table | pa.RecordBatchReader:
    """Accept a pyarrow Table, a RecordBatchReader or anything with `__arrow_c_stream__`."""
    if isinstance(data, (pa.Table, pa.RecordBatchReader)):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if hasattr(data, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(data)
    raise InvalidArgument(
        f"data must be a pyarrow.Table, a pyarrow.RecordBatchReader or expose __arrow_c_stream__, "
        f"not {type(data).__name__}"
    )


def _compatible(got: pa.DataType, want: pa.DataType) -> bool:
    if got.equals(want) or pa.types.is_null(got):
        return True
    if got in _WIDENING and any(want.equals(w) for w in _WIDENING[got]):
        return True
    if pa.types.is_timestamp(got) and pa.types.is_timestamp(want):
        return (got.tz is None) == (want.tz is None)
    if pa.types.is_decimal(got) and pa.types.is_decimal(want):
        return got.scale == want.scale and got.precision <= want.precision
    if pa.types.is_dictionary(got):
        return _compatible(got.value_type, want)
    return pa.types.is_date(got) and pa.types.is_date(want)


def check_schema(got: pa.Schema, want: pa.Schema, table: str) -> None:
    """Raise SchemaMismatch unless every data column exists in the table with a compatible type.

    Table columns missing from the data are allowed when nullable (they are written as NULL).
    """
    wanted = {f.name: f for f in want}
    problems = []
    for f in got:
        if f.name not in wanted:
            problems.append(f"column {f.name!r} is not in the table")
        elif not _compatible(f.type, wanted[f.name].type):
            problems.append(f"column {f.name!r} is {f.type}, the table has {wanted[f.name].type}")
    names = set(got.names)
    for f in want:
        if f.name not in names and not f.nullable:
            problems.append(f"non-nullable column {f.name!r} is missing")
    if len(names) != len(got.names):
        problems.append("the data has duplicate column names")
    if problems:
        raise SchemaMismatch(
            f"data does not match the schema of {table}: "
            + "; ".join(problems)
            + ". Fix the data, or pass schema_mode='merge' (CLI: --schema-mode merge) to add "
            "new columns to the table."
        )
