"""Delta schema types: their Arrow and DuckDB equivalents, SQL literals, and SQL that reads a
Parquet column as its Delta type.

A Delta type is what the table's `schemaString` holds: a string for a primitive type
("long", "decimal(10,2)", ...) or a dict for "struct", "array" and "map".
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

import pyarrow as pa

from catalog.errors import UnsupportedFeature

DeltaType = str | dict[str, Any]

_ARROW = {
    "string": pa.string(),
    "long": pa.int64(),
    "integer": pa.int32(),
    "short": pa.int16(),
    "byte": pa.int8(),
    "float": pa.float32(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "binary": pa.binary(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "timestamp_ntz": pa.timestamp("us"),
}
_DUCKDB = {
    "string": "VARCHAR",
    "long": "BIGINT",
    "integer": "INTEGER",
    "short": "SMALLINT",
    "byte": "TINYINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "binary": "BLOB",
    "date": "DATE",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "timestamp_ntz": "TIMESTAMP",
}
_INTEGERS = {"byte": pa.int8(), "short": pa.int16(), "integer": pa.int32(), "long": pa.int64()}
_DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")

PHYSICAL_NAME = "delta.columnMapping.physicalName"
FIELD_ID = "delta.columnMapping.id"


# names and literals ----------------------------------------------------------------------------
def quote_ident(name: str) -> str:
    """A DuckDB identifier that means exactly `name`."""
    return '"' + name.replace('"', '""') + '"'


def quote_str(text: str) -> str:
    """A DuckDB VARCHAR literal holding exactly `text`."""
    parts = text.split("\x00")
    quoted = ["'" + p.replace("'", "''") + "'" for p in parts]
    # A NUL cannot sit inside a literal; splice it in instead.
    return quoted[0] if len(quoted) == 1 else "(" + " || chr(0) || ".join(quoted) + ")"


# type translation ------------------------------------------------------------------------------
def decimal_params(dtype: DeltaType) -> tuple[int, int] | None:
    """(precision, scale) of a Delta decimal type, else None."""
    if isinstance(dtype, str):
        m = _DECIMAL.match(dtype)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def is_primitive(dtype: DeltaType) -> bool:
    """Whether the Delta type is neither struct, array nor map."""
    return isinstance(dtype, str)


def check_type(dtype: DeltaType, where: str) -> None:
    """Raise UnsupportedFeature unless every part of the Delta type is one we read correctly."""
    if isinstance(dtype, str):
        if dtype not in _ARROW and decimal_params(dtype) is None:
            raise UnsupportedFeature(
                f"{where} has Delta type {dtype!r}, which Lakeward cannot read"
            )
        params = decimal_params(dtype)
        if params and not (1 <= params[0] <= 38 and 0 <= params[1] <= params[0]):
            raise UnsupportedFeature(f"{where} has an invalid decimal type {dtype!r}")
        return
    kind = dtype.get("type")
    if kind == "struct":
        for f in dtype["fields"]:
            check_type(f["type"], f"{where}.{f['name']}")
    elif kind == "array":
        check_type(dtype["elementType"], f"{where}[]")
    elif kind == "map":
        check_type(dtype["keyType"], f"{where}.key")
        check_type(dtype["valueType"], f"{where}.value")
    else:
        raise UnsupportedFeature(f"{where} has Delta type {kind!r}, which Lakeward cannot read")


def arrow_type(dtype: DeltaType) -> pa.DataType:
    """The Arrow type of a Delta type, struct fields under their logical names."""
    if isinstance(dtype, str):
        params = decimal_params(dtype)
        return pa.decimal128(*params) if params else _ARROW[dtype]
    kind = dtype["type"]
    if kind == "struct":
        return pa.struct([arrow_field(f) for f in dtype["fields"]])
    if kind == "array":
        return pa.list_(
            pa.field("element", arrow_type(dtype["elementType"]), dtype.get("containsNull", True))
        )
    return pa.map_(
        arrow_type(dtype["keyType"]),
        pa.field("value", arrow_type(dtype["valueType"]), dtype.get("valueContainsNull", True)),
    )


def arrow_field(field: dict[str, Any]) -> pa.Field:
    """The Arrow field of a Delta struct field, under its logical name."""
    return pa.field(field["name"], arrow_type(field["type"]), field.get("nullable", True))


def duckdb_type(dtype: DeltaType) -> str:
    """The DuckDB SQL type text of a Delta type."""
    if isinstance(dtype, str):
        params = decimal_params(dtype)
        return f"DECIMAL({params[0]},{params[1]})" if params else _DUCKDB[dtype]
    kind = dtype["type"]
    if kind == "struct":
        inner = ", ".join(
            f"{quote_ident(f['name'])} {duckdb_type(f['type'])}" for f in dtype["fields"]
        )
        return f"STRUCT({inner})"
    if kind == "array":
        return f"{duckdb_type(dtype['elementType'])}[]"
    return f"MAP({duckdb_type(dtype['keyType'])}, {duckdb_type(dtype['valueType'])})"


def null_of(dtype: DeltaType) -> str:
    """A typed SQL NULL."""
    return f"CAST(NULL AS {duckdb_type(dtype)})"


def sql_literal(value: Any, dtype: DeltaType) -> str:
    """A typed DuckDB literal for a primitive value (as `Array.to_pylist` gives it, except
    date, timestamp and timestamp_ntz, which come as days / microseconds since the epoch)."""
    if value is None:
        return null_of(dtype)
    if dtype == "string":
        return quote_str(value)
    if dtype in _INTEGERS:
        return f"CAST({int(value)} AS {_DUCKDB[dtype]})"
    if dtype in ("float", "double"):
        text = (
            repr(float(value))
            if math.isfinite(value)
            else ("NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity"))
        )
        return f"CAST('{text}' AS {_DUCKDB[dtype]})"
    if dtype == "boolean":
        return "TRUE" if value else "FALSE"
    if dtype == "binary":
        return f"from_hex('{bytes(value).hex()}')"
    if dtype == "date":
        return f"CAST(DATE '1970-01-01' + {int(value)} AS DATE)"
    if dtype == "timestamp":
        return f"make_timestamptz(CAST({int(value)} AS BIGINT))"
    if dtype == "timestamp_ntz":
        return f"make_timestamp(CAST({int(value)} AS BIGINT))"
    params = decimal_params(dtype)
    if params and isinstance(value, Decimal):
        return f"CAST('{format(value, 'f')}' AS {duckdb_type(dtype)})"
    raise UnsupportedFeature(f"cannot write a literal of Delta type {dtype!r}")


def literals(array: pa.Array, dtype: DeltaType) -> list[str]:
    """Typed DuckDB literals for every value of an Arrow array of a primitive Delta type."""
    if dtype in ("date", "timestamp", "timestamp_ntz"):
        # Epoch offsets avoid Python's datetime range (year 1..9999) and any time zone.
        array = array.cast(pa.int32() if dtype == "date" else pa.int64())
    elif array.type != arrow_type(dtype):
        array = array.cast(arrow_type(dtype))
    return [sql_literal(v, dtype) for v in array.to_pylist()]


# reading a Parquet column as its Delta type ----------------------------------------------------
def _plain(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_binary(t: pa.DataType) -> bool:
    return (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
    )


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


class Mismatch(Exception):
    """A file's column cannot be read as the table's type (the caller adds table and file)."""


def find_field(fields: list[pa.Field], dfield: dict[str, Any], mode: str) -> pa.Field | None:
    """The file field holding a Delta field: by field id (column mapping 'id'), physical name
    ('name', or 'id' on files without ids), or name, exact before case-insensitive."""
    meta = dfield.get("metadata") or {}
    if mode == "id" and FIELD_ID in meta:
        ids = {f.metadata.get(b"PARQUET:field_id") for f in fields if f.metadata}
        if ids - {None}:
            want = str(meta[FIELD_ID]).encode()
            return next(
                (f for f in fields if f.metadata and f.metadata.get(b"PARQUET:field_id") == want),
                None,
            )
    name = meta.get(PHYSICAL_NAME, dfield["name"]) if mode in ("name", "id") else dfield["name"]
    exact = [f for f in fields if f.name == name]
    if exact:
        return exact[0]
    folded = [f for f in fields if f.name.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


def read_as(expr: str, ftype: pa.DataType, dtype: DeltaType, mode: str, depth: int = 0) -> str:
    """SQL turning `expr`, a value of file type `ftype`, into Delta type `dtype` with logical
    field names; returns `expr` itself when DuckDB already reads it as exactly that."""
    ftype = _plain(ftype)
    if isinstance(dtype, str):
        return _primitive(expr, ftype, dtype)
    kind = dtype["type"]
    if kind == "struct":
        if not pa.types.is_struct(ftype):
            raise Mismatch(f"file type {ftype} is not a struct")
        return _struct(expr, ftype, dtype, mode, depth)
    if kind == "array":
        if not _is_list(ftype):
            raise Mismatch(f"file type {ftype} is not a list")
        var = f"__lw_e{depth}"
        inner = read_as(var, ftype.value_type, dtype["elementType"], mode, depth + 1)
        return expr if inner == var else f"list_transform({expr}, lambda {var}: {inner})"
    if not pa.types.is_map(ftype):
        raise Mismatch(f"file type {ftype} is not a map")
    var = f"__lw_e{depth}"
    key = f"struct_extract({var}, 'key')"
    value = f"struct_extract({var}, 'value')"
    key_sql = read_as(key, ftype.key_type, dtype["keyType"], mode, depth + 1)
    value_sql = read_as(value, ftype.item_type, dtype["valueType"], mode, depth + 1)
    if key_sql == key and value_sql == value:
        return expr
    return (
        f"map_from_entries(list_transform(map_entries({expr}), "
        f"lambda {var}: struct_pack(key := {key_sql}, value := {value_sql})))"
    )


def _struct(expr: str, ftype: pa.StructType, dtype: dict[str, Any], mode: str, depth: int) -> str:
    fields = [ftype.field(i) for i in range(ftype.num_fields)]
    parts, same = [], len(fields) == len(dtype["fields"])
    for i, dfield in enumerate(dtype["fields"]):
        f = find_field(fields, dfield, mode)
        if f is None:
            parts.append((dfield["name"], null_of(dfield["type"])))
            same = False
            continue
        ref = f"struct_extract({expr}, {quote_str(f.name)})"
        try:
            sql = read_as(ref, f.type, dfield["type"], mode, depth)
        except Mismatch as e:
            raise Mismatch(f"field {dfield['name']!r}: {e}") from None
        same = same and sql == ref and f.name == dfield["name"] and fields[i].name == f.name
        parts.append((dfield["name"], sql))
    if same:
        return expr
    packed = ", ".join(f"{quote_ident(name)} := {sql}" for name, sql in parts)
    return f"CASE WHEN {expr} IS NULL THEN NULL ELSE struct_pack({packed}) END"


def _primitive(expr: str, ftype: pa.DataType, dtype: str) -> str:
    target = duckdb_type(dtype)
    if dtype == "string":
        if _is_string(ftype):
            return expr
        if _is_binary(ftype):
            return f"decode({expr})"  # UTF-8 bytes without the string annotation
    elif dtype == "binary":
        if _is_binary(ftype):
            return expr
        if _is_string(ftype):
            return f"encode({expr})"
    elif dtype in _INTEGERS:
        if ftype == _INTEGERS[dtype]:
            return expr
        if pa.types.is_integer(ftype):
            return f"CAST({expr} AS {target})"
    elif dtype in ("float", "double"):
        if ftype == _ARROW[dtype]:
            return expr
        if pa.types.is_floating(ftype) or pa.types.is_integer(ftype):
            return f"CAST({expr} AS {target})"
    elif dtype == "boolean":
        if pa.types.is_boolean(ftype):
            return expr
    elif dtype == "date":
        if pa.types.is_date(ftype):
            return expr
    elif dtype == "timestamp":
        return _timestamp_tz(expr, ftype)
    elif dtype == "timestamp_ntz":
        return _timestamp_ntz(expr, ftype)
    else:
        params = decimal_params(dtype)
        if pa.types.is_decimal(ftype):
            return expr if (ftype.precision, ftype.scale) == params else f"CAST({expr} AS {target})"
        if pa.types.is_integer(ftype):
            return f"CAST({expr} AS {target})"
    raise Mismatch(f"file type {ftype} cannot be read as Delta type {dtype}")


def _timestamp_tz(expr: str, ftype: pa.DataType) -> str:
    # Parquet timestamps not adjusted to UTC (and INT96) hold UTC wall time in Delta; a plain
    # CAST to TIMESTAMPTZ would read them in the session time zone, timezone('UTC', ...) does not.
    if pa.types.is_timestamp(ftype):
        if ftype.tz is not None:
            return expr if ftype.unit == "us" else f"CAST({expr} AS TIMESTAMPTZ)"
        inner = expr if ftype.unit == "us" else f"CAST({expr} AS TIMESTAMP)"
        return f"timezone('UTC', {inner})"
    raise Mismatch(f"file type {ftype} cannot be read as Delta type timestamp")


def _timestamp_ntz(expr: str, ftype: pa.DataType) -> str:
    if pa.types.is_timestamp(ftype):
        if ftype.tz is None:
            return expr if ftype.unit == "us" else f"CAST({expr} AS TIMESTAMP)"
        return f"timezone('UTC', CAST({expr} AS TIMESTAMPTZ))"
    if pa.types.is_date(ftype):  # type widening date -> timestamp_ntz
        return f"CAST({expr} AS TIMESTAMP)"
    raise Mismatch(f"file type {ftype} cannot be read as Delta type timestamp_ntz")
