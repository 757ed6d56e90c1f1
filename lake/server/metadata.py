"""Answers to Flight SQL's metadata commands, from what the principal may describe.

Schemas are the ones FlightSql.proto fixes for each command. The catalog is `lake` (as in
`information_schema`), databases are its schemas; a table or database the user may not describe
is absent, and a table's schema lists only the columns the user may know of.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pyarrow as pa

from governance.gate import Gate
from governance.principal import Principal
from governance.sql import describe_rows
from lake.server.protocol import sql

CATALOG = "lake"
TABLE_TYPES = ("BASE TABLE", "EXTERNAL")

CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema(
    [pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8(), nullable=False)]
)
TABLES_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("table_type", pa.utf8(), nullable=False),
    ]
)
TABLES_WITH_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), nullable=False))
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])

_VALUE = pa.dense_union(
    [
        pa.field("string_value", pa.utf8()),
        pa.field("bool_value", pa.bool_()),
        pa.field("bigint_value", pa.int64()),
        pa.field("int32_bitmask", pa.int32()),
        pa.field("string_list", pa.list_(pa.utf8())),
        pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32()))),
    ]
)
SQL_INFO_SCHEMA = pa.schema(
    [pa.field("info_name", pa.uint32(), nullable=False), pa.field("value", _VALUE, nullable=False)]
)


def _info() -> dict[int, str | bool | int]:
    v = sql.SqlInfo.Value
    return {
        v("FLIGHT_SQL_SERVER_NAME"): "Lakeward",
        v("FLIGHT_SQL_SERVER_VERSION"): _version(),
        v("FLIGHT_SQL_SERVER_ARROW_VERSION"): pa.__version__,
        v("FLIGHT_SQL_SERVER_READ_ONLY"): False,  # SQL reads; writes arrive as ingest (DoPut)
        v("FLIGHT_SQL_SERVER_SQL"): True,
        v("FLIGHT_SQL_SERVER_SUBSTRAIT"): False,
        v("FLIGHT_SQL_SERVER_TRANSACTION"): sql.SqlSupportedTransaction.Value(
            "SQL_SUPPORTED_TRANSACTION_NONE"
        ),
        v("FLIGHT_SQL_SERVER_CANCEL"): False,
        v("SQL_DDL_CATALOG"): False,
        v("SQL_DDL_SCHEMA"): False,
        v("SQL_DDL_TABLE"): False,
        v("SQL_IDENTIFIER_QUOTE_CHAR"): '"',
        v("SQL_TRANSACTIONS_SUPPORTED"): False,
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lakeward")
    except PackageNotFoundError:
        return "0"


# int32-valued infos go in the union's int32 member; the rest by Python type.
_INT32 = {"FLIGHT_SQL_SERVER_TRANSACTION"}


def sql_info(wanted: Iterable[int]) -> pa.Table:
    """CommandGetSqlInfo: the requested infos this server knows (all of them if none asked)."""
    known = _info()
    names = [i for i in wanted if i in known] or sorted(known)
    int32_ids = {sql.SqlInfo.Value(n) for n in _INT32}
    strings, bools, bigints, int32s = [], [], [], []
    types, offsets = [], []
    for i in names:
        value = known[i]
        if isinstance(value, bool):
            types.append(1), offsets.append(len(bools)), bools.append(value)
        elif isinstance(value, int) and i in int32_ids:
            types.append(3), offsets.append(len(int32s)), int32s.append(value)
        elif isinstance(value, int):
            types.append(2), offsets.append(len(bigints)), bigints.append(value)
        else:
            types.append(0), offsets.append(len(strings)), strings.append(str(value))
    children = [
        pa.array(strings, pa.utf8()),
        pa.array(bools, pa.bool_()),
        pa.array(bigints, pa.int64()),
        pa.array(int32s, pa.int32()),
        pa.array([], pa.list_(pa.utf8())),
        pa.array([], pa.map_(pa.int32(), pa.list_(pa.int32()))),
    ]
    union = pa.UnionArray.from_dense(
        pa.array(types, pa.int8()),
        pa.array(offsets, pa.int32()),
        children,
        [f.name for f in _VALUE],
    )
    return pa.Table.from_arrays([pa.array(names, pa.uint32()), union], schema=SQL_INFO_SCHEMA)


def like(pattern: str | None) -> re.Pattern[str] | None:
    """A SQL LIKE pattern (`%`, `_`, `\\` escapes) as a regex; None matches everything."""
    if not pattern:
        return None
    out, escaped = [], False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _matches(rx: re.Pattern[str] | None, value: str) -> bool:
    return rx is None or rx.fullmatch(value) is not None


def catalogs() -> pa.Table:
    """CommandGetCatalogs."""
    return pa.table({"catalog_name": [CATALOG]}, schema=CATALOGS_SCHEMA)


def _catalog_ok(catalog: str | None) -> bool:
    return catalog is None or catalog in ("", CATALOG)


def db_schemas(gate: Gate, p: Principal, catalog: str | None, pattern: str | None) -> pa.Table:
    """CommandGetDbSchemas: the databases `p` may know of."""
    rx = like(pattern)
    names = []
    if _catalog_ok(catalog):
        names = sorted(r[1] for r in describe_rows(gate, p, "schemata") if _matches(rx, r[1]))
    return pa.table(
        {"catalog_name": [CATALOG] * len(names), "db_schema_name": names},
        schema=DB_SCHEMAS_SCHEMA,
    )


def tables(gate: Gate, p: Principal, cmd: sql.CommandGetTables) -> pa.Table:
    """CommandGetTables: the tables `p` may know of, with their schemas if asked (only the
    columns `p` may know of)."""
    catalog = cmd.catalog if cmd.HasField("catalog") else None
    schema_rx = like(
        cmd.db_schema_filter_pattern if cmd.HasField("db_schema_filter_pattern") else None
    )
    name_rx = like(
        cmd.table_name_filter_pattern if cmd.HasField("table_name_filter_pattern") else None
    )
    kinds = set(cmd.table_types)
    rows = []
    if _catalog_ok(catalog):
        rows = sorted(
            (r[1], r[2], r[3])
            for r in describe_rows(gate, p, "tables")
            if _matches(schema_rx, r[1])
            and _matches(name_rx, r[2])
            and (not kinds or r[3] in kinds)
        )
    out = {
        "catalog_name": [CATALOG] * len(rows),
        "db_schema_name": [r[0] for r in rows],
        "table_name": [r[1] for r in rows],
        "table_type": [r[2] for r in rows],
    }
    if not cmd.include_schema:
        return pa.table(out, schema=TABLES_SCHEMA)
    wanted = {(db, name) for db, name, _ in rows}
    shown: dict[tuple[str, str], list[str]] = {}
    for r in describe_rows(gate, p, "columns"):
        if (r[1], r[2]) in wanted:
            shown.setdefault((r[1], r[2]), []).append(r[3])
    blobs = []
    for db, name, _ in rows:
        info = gate.lookup(p, f"{db}.{name}")
        full = gate.catalog.snapshot(info).schema
        cols = set(shown.get((db, name), []))
        blobs.append(pa.schema([f for f in full if f.name in cols]).serialize().to_pybytes())
    out["table_schema"] = blobs
    return pa.table(out, schema=TABLES_WITH_SCHEMA)


def table_types() -> pa.Table:
    """CommandGetTableTypes."""
    return pa.table({"table_type": list(TABLE_TYPES)}, schema=TABLE_TYPES_SCHEMA)
