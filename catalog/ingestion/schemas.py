"""Merging Arrow schemas inferred from many files into one schema a Delta table can store.

Rules (used by the crawler and by ingest):
  * same type -> that type; null (a column that was empty where it was inferred) -> the other;
  * integers -> the wider one (int32 + int64 -> int64); integer + float -> double;
  * timestamps -> microseconds (Delta's unit), as long as both have or both lack a time zone;
  * decimals of one scale -> the larger precision; lists and structs merge element-wise;
  * a column missing from some files is nullable (every column the crawler creates is);
  * anything else (string vs int, bool vs int, date vs timestamp, ...) is a conflict.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa


def delta_type(t: pa.DataType) -> pa.DataType | None:
    """The type a Delta table stores for Arrow type `t`; None when Delta has no such type."""
    if pa.types.is_dictionary(t):
        return delta_type(t.value_type)
    if pa.types.is_null(t) or pa.types.is_boolean(t) or pa.types.is_date32(t):
        return t
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_unsigned_integer(t):
        # Delta has only signed integers: take the next wider one (uint64 values past int64's
        # range fail the cast and are reported, never wrapped).
        return {8: pa.int16(), 16: pa.int32()}.get(t.bit_width, pa.int64())
    if pa.types.is_integer(t) or pa.types.is_float32(t) or pa.types.is_float64(t):
        return t
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC" if t.tz else None)
    if pa.types.is_decimal128(t):
        return t
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        inner = delta_type(t.value_type)
        return None if inner is None else pa.list_(inner)
    if pa.types.is_struct(t):
        fields = []
        for f in t:
            inner = delta_type(f.type)
            if inner is None:
                return None
            fields.append(pa.field(f.name, inner))
        return pa.struct(fields)
    if pa.types.is_map(t):
        k, v = delta_type(t.key_type), delta_type(t.item_type)
        return None if k is None or v is None else pa.map_(k, v)
    return None  # time, duration, interval, decimal256, unions, ...


def merge_types(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The type both `a` and `b` values fit in under the rules above; None on a conflict."""
    if a.equals(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return a if a.bit_width >= b.bit_width else b
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(f(a) for f in numeric) and any(f(b) for f in numeric):
        return pa.float64()
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b):
        if (a.tz is None) != (b.tz is None):
            return None
        return pa.timestamp("us", tz=a.tz)
    if pa.types.is_decimal(a) and pa.types.is_decimal(b) and a.scale == b.scale:
        return a if a.precision >= b.precision else b
    if pa.types.is_list(a) and pa.types.is_list(b):
        inner = merge_types(a.value_type, b.value_type)
        return None if inner is None else pa.list_(inner)
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        merged, _ = unify([("a", pa.schema(list(a))), ("b", pa.schema(list(b)))])
        return None if merged is None else pa.struct(list(merged))
    return None


def unify(schemas: Iterable[tuple[str, pa.Schema]]) -> tuple[pa.Schema | None, list[str]]:
    """Merge (source, schema) pairs into one schema, columns in first-seen order.

    Returns (schema, conflicts); schema is None when there is any conflict. Types are first
    mapped to what Delta stores, so a type Delta cannot hold is reported here too.
    """
    types: dict[str, pa.DataType] = {}
    first: dict[str, str] = {}
    conflicts: list[str] = []
    bad: set[str] = set()
    for source, schema in schemas:
        for f in schema:
            if f.name in bad:
                continue
            t = delta_type(f.type)
            if t is None:
                conflicts.append(
                    f"column {f.name!r} is {f.type} in {source}, a type Delta tables cannot store"
                )
                bad.add(f.name)
                continue
            if f.name not in types:
                types[f.name], first[f.name] = t, source
                continue
            merged = merge_types(types[f.name], t)
            if merged is None:
                conflicts.append(
                    f"column {f.name!r} is {types[f.name]} in {first[f.name]} but {t} in {source}"
                )
                bad.add(f.name)
            else:
                types[f.name] = merged
    if conflicts:
        return None, conflicts
    return pa.schema([pa.field(n, t) for n, t in types.items()]), []


def finalize(schema: pa.Schema) -> pa.Schema:
    """A schema ready for `create_table`: all-null columns become strings (Delta has no null type)."""
    return pa.schema(
        [pa.field(f.name, pa.string() if pa.types.is_null(f.type) else f.type) for f in schema]
    )
