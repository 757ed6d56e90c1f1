"""Snapshot reads Delta tables exactly as a conforming Delta reader does.

References: delta-rs `to_pyarrow_table` where it can read a table; for deletion vectors, the
rows delta-rs's own tests and the tables' DELETE commits state, delta-rs's `QueryBuilder`
(DataFusion over delta-kernel) and delta-rs's decoded `deletion_vectors()`; for tables written
here, the data that was written.
"""

from __future__ import annotations

import datetime as dtm
import json
import math
import os
import shutil
import struct
import uuid
import zlib
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, QueryBuilder, write_deltalake
from pyroaring import BitMap64

import lake
from catalog import snapshot, storage
from catalog.errors import DataFileMissing, InvalidArgument, TableNotFound, UnsupportedFeature
from catalog.snapshot import Snapshot
from governance import query

from support.lakes import INTEROP

CORPUS = INTEROP
TABLES = [
    "delta-0.8.0-date",
    "delta-0.8.0-null-partition",
    "delta-0.8.0-numeric-partition",
    "delta-0.8.0-partitioned",
    "delta-0.8.0-special-partition",
    "delta-1.2.1-only-struct-stats",
    "delta-2.2.0-partitioned-types",
    "partition-type-primitives",
    "simple_table",
    "simple_table_with_checkpoint",
    "table-with-dv-small",
    "table-without-dv-small",
    "table_with_column_mapping",
    "table_with_deletion_logs",
    "table_with_edge_timestamps",
    "table_with_liquid_clustering",
]
# delta-rs 1.6.6 `to_pyarrow_table` refuses deletion vectors, overflows the edge timestamps and
# reads column-mapped columns as NULL; its QueryBuilder (delta-kernel underneath) reads them.
KERNEL_TABLES = {
    "table-with-dv-small",
    "table_with_deletion_logs",
    "table_with_liquid_clustering",
    "table_with_column_mapping",
}
UTC = dtm.UTC


# helpers ------------------------------------------------------------------------------------------
def copy_table(name: str, tmp_path: Path) -> str:
    dest = tmp_path / name
    shutil.copytree(CORPUS / name, dest)
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return str(dest)


def read(snap: Snapshot, keep: Any = None, tz: str | None = None) -> pa.Table:
    con = duckdb.connect()
    if tz:
        con.execute(f"SET TimeZone = '{tz}'")
    rel = con.sql(snap.relation_sql(keep))
    return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.fetch_arrow_table()


def canon(v: Any) -> Any:
    """A plain value that compares equal across readers (instants in UTC, NaN comparable)."""
    if isinstance(v, dtm.datetime) and v.tzinfo is not None:
        return v.astimezone(UTC)
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, dict):
        return {k: canon(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [canon(x) for x in v]
    return v


def rows(table: pa.Table | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as plain values, in a canonical order."""
    out = [canon(r) for r in (table if isinstance(table, list) else table.to_pylist())]
    return sorted(out, key=lambda r: json.dumps(r, default=repr, sort_keys=True))


def query_builder(location: str) -> pa.Table:
    dt = DeltaTable(location)
    return pa.table(QueryBuilder().register("t", dt).execute("SELECT * FROM t").read_all())


def assert_types(snap: Snapshot, keep: Any = None) -> None:
    """Every relation column has exactly the DuckDB type `duckdb_type` names."""
    con = duckdb.connect()
    got = [str(t) for t in con.sql(snap.relation_sql(keep)).types]
    want = [
        str(con.sql(f"SELECT CAST(NULL AS {snap.duckdb_type(n)})").types[0])
        for n in snap.schema.names
    ]
    assert got == want


def live_rows(snap: Snapshot) -> int:
    files = snap.files
    return int(pc.sum(files["num_records"]).as_py() or 0) - int(
        pc.sum(files["deleted_records"]).as_py() or 0
    )


# hand-written Delta tables --------------------------------------------------------------------------
Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def z85_encode(data: bytes) -> str:
    out = []
    for i in range(0, len(data), 4):
        n = int.from_bytes(data[i : i + 4], "big")
        out.append("".join(Z85[(n // 85**k) % 85] for k in range(4, -1, -1)))
    return "".join(out)


def z85_encode_padded(data: bytes) -> str:
    """Z85 as the `z85` crate (delta-kernel-rs) writes any length: a last group of k < 4 bytes
    is encoded as 4 bytes zero-padded in front, its first 4 - k characters written '#'."""
    whole = len(data) // 4 * 4
    out = z85_encode(data[:whole])
    tail = data[whole:]
    if tail:
        pad = 4 - len(tail)
        out += "#" * pad + z85_encode(b"\0" * pad + tail)[pad:]
    return out


def dv_data(deleted: list[int]) -> bytes:
    return struct.pack("<I", 1681511377) + BitMap64(deleted).serialize()


def dv_file(
    root: str, deleted_sets: list[list[int]], prefix: str = ""
) -> tuple[list[dict[str, Any]], Path]:
    """Write one deletion-vector file holding several DVs; their 'u' descriptors, and the file."""
    uid = uuid.uuid4()
    buf = bytearray(b"\x01")
    out = []
    for deleted in deleted_sets:
        data = dv_data(deleted)
        out.append(
            {
                "storageType": "u",
                "pathOrInlineDv": prefix + z85_encode(uid.bytes),
                "offset": len(buf),
                "sizeInBytes": len(data),
                "cardinality": len(deleted),
            }
        )
        buf += struct.pack(">I", len(data)) + data + struct.pack(">I", zlib.crc32(data))
    os.makedirs(os.path.join(root, prefix), exist_ok=True)
    path = Path(root, prefix, f"deletion_vector_{uid}.bin")
    path.write_bytes(bytes(buf))
    return out, path


def dv_inline(deleted: list[int]) -> dict[str, Any]:
    data = dv_data(deleted)
    padded = data + b"\x00" * (-len(data) % 4)
    return {
        "storageType": "i",
        "pathOrInlineDv": z85_encode(padded),
        "sizeInBytes": len(data),
        "cardinality": len(deleted),
    }


def field(name: str, typ: Any, **metadata: Any) -> dict[str, Any]:
    return {"name": name, "type": typ, "nullable": True, "metadata": metadata}


def write_commit(root: str, version: int, actions: list[dict[str, Any]]) -> None:
    log = Path(root, "_delta_log")
    log.mkdir(parents=True, exist_ok=True)
    (log / f"{version:020d}.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")


def add(
    root: str,
    path: str,
    data: pa.Table | None = None,
    partition: dict[str, Any] | None = None,
    dv: dict[str, Any] | None = None,
    **parquet: Any,
) -> dict[str, Any]:
    """Write `data` to `path` under the table (if given); the add action for it."""
    local = os.path.join(root, path)
    if data is not None:
        os.makedirs(os.path.dirname(local), exist_ok=True)
        pq.write_table(data, local, **parquet)
    action: dict[str, Any] = {
        "path": path.replace("%", "%25").replace(" ", "%20"),
        "partitionValues": partition or {},
        "size": os.path.getsize(local),
        "modificationTime": 0,
        "dataChange": True,
        "stats": json.dumps({"numRecords": pq.read_metadata(local).num_rows}),
    }
    if dv:
        action["deletionVector"] = dv
    return {"add": action}


def create(
    root: str,
    fields: list[dict[str, Any]],
    files: list[dict[str, Any]],
    *,
    partitions: tuple[str, ...] = (),
    config: dict[str, str] | None = None,
    reader: int = 1,
    writer: int = 2,
    features: list[str] | None = None,
) -> None:
    protocol: dict[str, Any] = {"minReaderVersion": reader, "minWriterVersion": writer}
    if features is not None:
        protocol.update(readerFeatures=features, writerFeatures=features)
    meta = {
        "id": str(uuid.uuid4()),
        "format": {"provider": "parquet", "options": {}},
        "schemaString": json.dumps({"type": "struct", "fields": fields}),
        "partitionColumns": list(partitions),
        "configuration": config or {},
        "createdTime": 0,
    }
    write_commit(root, 0, [{"protocol": protocol}, {"metaData": meta}, *files])


def dv_protocol() -> dict[str, Any]:
    return {"reader": 3, "writer": 7, "features": ["deletionVectors"]}


def delta_rs_deleted(location: str) -> dict[str, list[int]]:
    """delta-rs's own decoding of the deletion vectors: deleted row indexes per local file."""
    out = {}
    for row in pa.table(DeltaTable(location).deletion_vectors()).to_pylist():
        path = unquote(urlparse(row["filepath"]).path)
        out[os.path.normpath(path)] = [
            i for i, keep in enumerate(row["selection_vector"]) if not keep
        ]
    return out


# the corpus ---------------------------------------------------------------------------------------
def reference(name: str, location: str) -> pa.Table:
    if name in KERNEL_TABLES:
        return query_builder(location)
    if name == "table_with_edge_timestamps":
        # delta-rs overflows these (to 1816); Spark wrote them as INT96 UTC wall time.
        parts = [
            pq.read_table(f, coerce_int96_timestamp_unit="us")
            for f in sorted(Path(location).glob("*.parquet"))
        ]
        table = pa.concat_tables(parts)
        return table.set_column(
            0, "BIG_DATE", table["BIG_DATE"].cast(pa.timestamp("us", "UTC"))
        ).set_column(1, "NORMAL_DATE", table["NORMAL_DATE"].cast(pa.timestamp("us", "UTC")))
    return DeltaTable(location).to_pyarrow_table()


@pytest.mark.parametrize("name", TABLES)
def test_corpus_reads_like_a_conforming_reader(name: str, tmp_path: Path) -> None:
    location = copy_table(name, tmp_path)
    snap = Snapshot.load(location)
    got = read(snap)
    expected = reference(name, location)
    assert got.column_names == expected.column_names == snap.schema.names
    assert rows(got) == rows(expected)
    assert got.num_rows == live_rows(snap)
    assert snap.version == DeltaTable(location).version()
    assert snap.files.num_rows == len(DeltaTable(location).file_uris())
    assert_types(snap)


@pytest.mark.parametrize("name", TABLES)
def test_corpus_reads_the_same_in_another_time_zone(name: str, tmp_path: Path) -> None:
    snap = Snapshot.load(copy_table(name, tmp_path))
    assert rows(read(snap, tz="America/New_York")) == rows(read(snap, tz="UTC"))


def test_deletion_vector_small_table(tmp_path: Path) -> None:
    location = copy_table("table-with-dv-small", tmp_path)
    snap = Snapshot.load(location)
    # delta-rs's test_replace_where_preserves_live_rows_with_deletion_vectors expects 1..8, and
    # version 1 is "DELETE ... WHERE value IN (0, 9)" over the ten rows 0..9 of version 0.
    assert sorted(read(snap)["value"].to_pylist()) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert sorted(read(Snapshot.load(location, 0))["value"].to_pylist()) == list(range(10))
    assert snap.files["deleted_records"].to_pylist() == [2]
    assert snap.files["num_records"].to_pylist() == [10]
    raw = pq.read_table(snap.files["path"][0].as_py())["value"].to_pylist()
    dropped = delta_rs_deleted(location)[snap.files["path"][0].as_py()]
    assert [raw[i] for i in dropped] == [0, 9]


def test_deletion_vectors_across_versions_and_checkpoint(tmp_path: Path) -> None:
    location = copy_table("table_with_deletion_logs", tmp_path)
    (path,) = Snapshot.load(location).files["path"].to_pylist()
    ids = pq.read_table(path)["id"].to_pylist()
    # Version 3 is DELETE id = 12, version 4 DELETE id = 89; later versions change nothing.
    expected = {2: set(ids), 3: set(ids) - {12}, 4: set(ids) - {12, 89}, 20: set(ids) - {12, 89}}
    for version in (20, 3, 4, 2, 20, 12):  # back and forth through the cached log state
        got = read(Snapshot.load(location, version))["id"].to_pylist()
        assert sorted(got) == sorted(expected.get(version, expected[20])), version
    assert sorted(read(Snapshot.load(location))["id"].to_pylist()) == sorted(
        query_builder(location)["id"].to_pylist()
    )
    dropped = delta_rs_deleted(location)[path]
    assert sorted(ids[i] for i in dropped) == [12, 89]


def test_edge_timestamps_are_read_as_written(tmp_path: Path) -> None:
    location = copy_table("table_with_edge_timestamps", tmp_path)
    snap = Snapshot.load(location)
    for tz in ("UTC", "America/New_York", "Asia/Kolkata"):
        got = {r["SOME_VALUE"]: r for r in read(snap, tz=tz).to_pylist()}
        assert got[1]["BIG_DATE"] == dtm.datetime(9999, 12, 31, tzinfo=UTC)
        assert got[2]["BIG_DATE"] == dtm.datetime(9999, 12, 30, tzinfo=UTC)
        assert got[1]["NORMAL_DATE"] == dtm.datetime(2022, 1, 1, tzinfo=UTC)
    # The log's statistics (written by Spark) agree.
    files = snap.files.sort_by("path")
    assert files["min.BIG_DATE"].to_pylist() == [
        dtm.datetime(9999, 12, 31, tzinfo=UTC),
        dtm.datetime(9999, 12, 30, tzinfo=UTC),
    ]
    assert snap.duckdb_type("BIG_DATE") == "TIMESTAMP WITH TIME ZONE"


def test_column_mapping_gives_logical_names(tmp_path: Path) -> None:
    location = copy_table("table_with_column_mapping", tmp_path)
    snap = Snapshot.load(location)
    assert snap.schema.names == ["Company Very Short", "Super Name"]
    assert snap.partition_columns == ["Company Very Short"]
    got = read(snap)
    assert got.column_names == ["Company Very Short", "Super Name"]
    assert rows(got) == rows(query_builder(location))
    assert not [c for c in snap.files.column_names if "col-" in c]
    for path, lo, hi in zip(
        *(snap.files[c].to_pylist() for c in ("path", "min.Super Name", "max.Super Name")),
        strict=True,
    ):
        names = [
            r["Super Name"] for r in read(snap, pc.equal(snap.files["path"], path)).to_pylist()
        ]
        assert (min(names), max(names)) == (lo, hi)
    assert {
        "partition.Company Very Short",
        "min.Super Name",
        "max.Super Name",
        "null_count.Super Name",
    } <= set(snap.files.column_names)
    by_company = dict(
        zip(
            snap.files["partition.Company Very Short"].to_pylist(),
            snap.files["min.Super Name"].to_pylist(),
            strict=True,
        )
    )
    assert by_company == {"BMS": "Anthony Johnson", "BME": "Timothy Lamb"}


def test_corpus_partition_values_are_typed(tmp_path: Path) -> None:
    snap = Snapshot.load(copy_table("delta-2.2.0-partitioned-types", tmp_path))
    assert snap.files.schema.field("partition.c1").type == pa.int32()
    assert snap.duckdb_type("c1") == "INTEGER"
    assert read(snap).schema.field("c1").type == pa.int32()
    special = Snapshot.load(copy_table("delta-0.8.0-special-partition", tmp_path))
    assert sorted(special.files["partition.x"].to_pylist()) == ["A/A", "B B"]
    assert sorted(read(special)["x"].to_pylist()) == ["A/A", "B B"]
    nulls = Snapshot.load(copy_table("delta-0.8.0-null-partition", tmp_path))
    assert sorted(read(nulls)["k"].to_pylist(), key=str) == ["A", None]
    numeric = Snapshot.load(copy_table("delta-0.8.0-numeric-partition", tmp_path))
    assert numeric.files.schema.field("partition.y").type == pa.float64()
    assert sorted(read(numeric)["y"].to_pylist()) == [9.9, 10.0]


# tables written by delta-rs -----------------------------------------------------------------------
def test_partition_values_of_every_type(tmp_path: Path) -> None:
    location = str(tmp_path / "parts")
    n = 6
    strings = ["a/b", "c d", "x'y", None, 'é%="#\\', ""]
    data = pa.table(
        {
            "v": pa.array(range(n), pa.int64()),
            "s": pa.array(strings, pa.string()),
            "i": pa.array([1, -2, None, 4, 5, 2**31 - 1], pa.int32()),
            "l": pa.array([2**40, None, -1, 0, 7, 7], pa.int64()),
            "b": pa.array([True, False, None, True, False, True]),
            "d": pa.array(
                [
                    dtm.date(2020, 1, 1),
                    None,
                    dtm.date(1900, 5, 6),
                    dtm.date(2020, 1, 1),
                    dtm.date(1, 1, 1),
                    dtm.date(9999, 12, 31),
                ]
            ),
            "ts": pa.array(
                [
                    dtm.datetime(2020, 1, 1, 12, 30, 15, 123456),
                    None,
                    dtm.datetime(1969, 12, 31, 23, 59, 59),
                    dtm.datetime(2020, 1, 1),
                    dtm.datetime(2020, 1, 1),
                    dtm.datetime(2020, 1, 1),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "ntz": pa.array(
                [
                    dtm.datetime(2020, 1, 1, 12, 30, 15, 123456),
                    None,
                    dtm.datetime(1969, 12, 31, 23, 59, 59),
                    dtm.datetime(2020, 1, 1),
                    dtm.datetime(2020, 1, 1),
                    dtm.datetime(2020, 1, 1),
                ],
                pa.timestamp("us"),
            ),
        }
    )
    for col in data.column_names[1:]:
        write_deltalake(f"{location}-{col}", data.select(["v", col]), partition_by=[col])
        loc = f"{location}-{col}"
        snap = Snapshot.load(loc)
        got = read(snap, tz="Asia/Kolkata")
        assert rows(got) == rows(DeltaTable(loc).to_pyarrow_table()), col
        assert snap.files.schema.field(f"partition.{col}").type == snap.schema.field(col).type
        assert_types(snap)
    got = read(Snapshot.load(f"{location}-s"))
    assert sorted(got["s"].to_pylist(), key=str) == sorted(
        [s if s else None for s in strings], key=str
    )


def test_schema_evolution_reads_missing_columns_as_null(tmp_path: Path) -> None:
    location = str(tmp_path / "evolve")
    write_deltalake(location, pa.table({"id": [1, 2], "name": ["a", "b"]}))
    write_deltalake(
        location,
        pa.table({"id": [3], "name": ["c"], "score": [1.5], "tags": [["x"]]}),
        mode="append",
        schema_mode="merge",
    )
    snap = Snapshot.load(location)
    assert snap.schema.names == ["id", "name", "score", "tags"]
    got = read(snap)
    assert rows(got) == rows(DeltaTable(location).to_pyarrow_table())
    by_id = {r["id"]: r for r in got.to_pylist()}
    assert by_id[1]["score"] is None and by_id[1]["tags"] is None
    assert by_id[3]["score"] == 1.5 and by_id[3]["tags"] == ["x"]
    # One read_parquet call per physical file schema.
    assert snap.relation_sql().count("read_parquet(") == 2
    assert rows(read(Snapshot.load(location, 0))) == rows(
        pa.table({"id": [1, 2], "name": ["a", "b"]})
    )
    assert_types(snap)


def test_time_travel(tmp_path: Path) -> None:
    location = copy_table("simple_table", tmp_path)
    latest = Snapshot.load(location)
    for version in range(latest.version + 1):
        snap = Snapshot.load(location, version)
        assert snap.version == version
        assert rows(read(snap)) == rows(DeltaTable(location, version=version).to_pyarrow_table())
    assert Snapshot.load(location, 2) is Snapshot.load(location, 2)
    with pytest.raises(InvalidArgument):
        Snapshot.load(location, 99)
    with pytest.raises(InvalidArgument):
        Snapshot.load(location, -1)


def test_keep_mask(tmp_path: Path) -> None:
    location = copy_table("simple_table_with_checkpoint", tmp_path)
    snap = Snapshot.load(location)
    n = snap.files.num_rows
    mask = np.zeros(n, dtype=bool)
    mask[[0, 3, 4]] = True
    expected = pa.concat_tables(
        pq.read_table(p) for p in np.array(snap.files["path"].to_pylist())[mask]
    )
    assert rows(read(snap, mask)) == rows(expected)
    assert rows(read(snap, pa.array(mask))) == rows(expected)
    assert rows(read(snap, pa.chunked_array([pa.array(mask[:2]), pa.array(mask[2:])]))) == rows(
        expected
    )
    assert snap.relation_sql(mask) is snap.relation_sql(mask.copy())
    assert snap.relation_sql() is snap.relation_sql()
    assert rows(read(snap, np.ones(n, dtype=bool))) == rows(read(snap))
    with_null = pa.array([True] + [None] * (n - 1), pa.bool_())
    assert (
        read(snap, with_null).num_rows == pq.read_metadata(snap.files["path"][0].as_py()).num_rows
    )
    empty = read(snap, np.zeros(n, dtype=bool))
    assert empty.num_rows == 0 and empty.column_names == ["version"]
    assert empty.schema.field("version").type == pa.int32()
    assert_types(snap, np.zeros(n, dtype=bool))
    with pytest.raises(InvalidArgument):
        snap.relation_sql(np.ones(n + 1, dtype=bool))
    with pytest.raises(InvalidArgument):
        snap.relation_sql(np.ones(n, dtype=np.int64))


def test_empty_table(tmp_path: Path) -> None:
    location = str(tmp_path / "empty")
    schema = pa.schema([("a", pa.int64()), ("b", pa.string()), ("ts", pa.timestamp("us", "UTC"))])
    write_deltalake(location, schema.empty_table(), partition_by=["b"])
    snap = Snapshot.load(location)
    assert snap.files.num_rows == 0
    got = read(snap)
    assert got.num_rows == 0 and got.column_names == ["a", "b", "ts"]
    assert [str(t) for t in got.schema.types[:2]] == ["int64", "string"]
    assert pa.types.is_timestamp(got.schema.field("ts").type) and got.schema.field("ts").type.tz
    assert "partition.b" in snap.files.column_names
    assert_types(snap)


def test_identifiers_and_paths_are_quoted(tmp_path: Path) -> None:
    location = str(tmp_path / "we'ird *? dir")  # delta-rs cannot open paths holding a bracket
    data = pa.table(
        {"Mixed Case": [1, 2, 3], 'quo"te': ["a", "b", "c"], "p'art": ["x'1", 'y"2', "z]*?[3"]}
    )
    write_deltalake(location, data, partition_by=["p'art"])
    snap = Snapshot.load(location)
    got = read(snap)
    assert got.column_names == ["Mixed Case", 'quo"te', "p'art"]
    assert rows(got) == rows(data)


def test_recreated_table_is_not_served_from_cache(tmp_path: Path) -> None:
    location = str(tmp_path / "again")
    write_deltalake(location, pa.table({"a": [1, 2]}))
    assert read(Snapshot.load(location, 0))["a"].to_pylist() == [1, 2]
    shutil.rmtree(location)
    write_deltalake(location, pa.table({"a": [7]}))
    assert read(Snapshot.load(location, 0))["a"].to_pylist() == [7]
    assert read(Snapshot.load(location))["a"].to_pylist() == [7]


def test_tables_delta_rs_writes_with_deletion_vectors_enabled(tmp_path: Path) -> None:
    # delta-rs lists variantType as a reader feature there; no column is a variant.
    location = str(tmp_path / "dvconf")
    write_deltalake(
        location,
        pa.table({"a": list(range(20))}),
        configuration={"delta.enableDeletionVectors": "true"},
    )
    DeltaTable(location).delete("a % 3 = 0")
    assert sorted(read(Snapshot.load(location))["a"].to_pylist()) == [a for a in range(20) if a % 3]


def test_files_table(tmp_path: Path) -> None:
    snap = Snapshot.load(copy_table("delta-1.2.1-only-struct-stats", tmp_path))
    files = snap.files
    assert files.column_names[:4] == ["path", "size_bytes", "num_records", "deleted_records"]
    assert all(os.path.isabs(p) and os.path.exists(p) for p in files["path"].to_pylist())
    assert files.schema.field("min.decimal").type == pa.decimal128(8, 5)
    assert files.schema.field("max.timestamp").type == pa.timestamp("us", "UTC")
    assert files.schema.field("null_count.integer").type == pa.int64()
    assert "min.struct" not in files.column_names and "min.array" not in files.column_names
    # Spark truncates timestamp statistics to milliseconds; they must still bound the data.
    for i, (lo, hi) in enumerate(
        zip(files["min.timestamp"].to_pylist(), files["max.timestamp"].to_pylist(), strict=True)
    ):
        one = read(snap, np.arange(files.num_rows) == i)
        assert one.num_rows == files["num_records"][i].as_py()
        if lo is not None:
            assert lo <= pc.min(one["timestamp"]).as_py() and pc.max(one["timestamp"]).as_py() <= hi


# hand-written tables: physical types, nested column mapping, deletion vectors ------------------------
def test_physical_types_are_cast_to_the_delta_type(tmp_path: Path) -> None:
    root = str(tmp_path / "cast")
    when = dtm.datetime(2021, 6, 1, 12, 0, 0, 123456)
    fields = [
        field("l", "long"),
        field("d", "double"),
        field("dec", "decimal(10,3)"),
        field("ts", "timestamp"),
        field("ntz", "timestamp_ntz"),
        field("day", "date"),
        field("s", "string"),
        field("bin", "binary"),
    ]
    narrow = pa.table(
        {
            "l": pa.array([1, None], pa.int32()),
            "d": pa.array([1.5, None], pa.float32()),
            "dec": pa.array([Decimal("1.25"), None], pa.decimal128(5, 2)),
            "ts": pa.array([when, None], pa.timestamp("us")),  # not adjusted to UTC: UTC wall time
            "ntz": pa.array([when, None], pa.timestamp("us", "UTC")),
            "day": pa.array([dtm.date(2021, 6, 1), None]),
            "s": pa.array([b"caf\xc3\xa9", None], pa.binary()),  # no UTF-8 annotation
            "bin": pa.array(["\\x41", None], pa.string()),
        }
    )
    nanos = pa.table(
        {
            "l": pa.array([2**40], pa.int64()),
            "ts": pa.array([when], pa.timestamp("ns", "UTC")),
            "ntz": pa.array([when], pa.timestamp("ns")),
        }
    )
    int96 = pa.table({"ts": pa.array([when], pa.timestamp("us"))})
    create(
        root,
        fields,
        [
            add(root, "a.parquet", narrow),
            add(root, "b.parquet", nanos),
            add(root, "c.parquet", int96, use_deprecated_int96_timestamps=True),
        ],
        reader=3,
        writer=7,
        features=["timestampNtz"],
    )
    snap = Snapshot.load(root)
    for tz in ("UTC", "America/Los_Angeles"):
        got = read(snap, tz=tz)
        utc = when.replace(tzinfo=UTC)
        assert rows(got) == rows(
            [
                {
                    "l": 1,
                    "d": 1.5,
                    "dec": Decimal("1.250"),
                    "ts": utc,
                    "ntz": when,
                    "day": dtm.date(2021, 6, 1),
                    "s": "café",
                    "bin": b"\\x41",
                },
                {
                    "l": None,
                    "d": None,
                    "dec": None,
                    "ts": None,
                    "ntz": None,
                    "day": None,
                    "s": None,
                    "bin": None,
                },
                {
                    "l": 2**40,
                    "d": None,
                    "dec": None,
                    "ts": utc,
                    "ntz": when,
                    "day": None,
                    "s": None,
                    "bin": None,
                },
                {
                    "l": None,
                    "d": None,
                    "dec": None,
                    "ts": utc,
                    "ntz": None,
                    "day": None,
                    "s": None,
                    "bin": None,
                },
            ]
        )
    assert rows(read(snap)) == rows(query_builder(root))
    assert_types(snap)


def test_nested_column_mapping(tmp_path: Path) -> None:
    root = str(tmp_path / "nested")

    def mapped(name: str, typ: Any, fid: int, phys: str) -> dict[str, Any]:
        return field(
            name, typ, **{"delta.columnMapping.id": fid, "delta.columnMapping.physicalName": phys}
        )

    def inner(fid: int) -> dict[str, Any]:
        return {
            "type": "struct",
            "fields": [
                mapped("x", "long", fid, "col-x"),
                mapped("Y y", "string", fid + 1, "col-y"),
            ],
        }

    fields = [
        mapped("s", inner(10), 1, "col-s"),
        mapped("l", {"type": "array", "elementType": inner(20), "containsNull": True}, 2, "col-l"),
        mapped(
            "m",
            {"type": "map", "keyType": "string", "valueType": inner(30), "valueContainsNull": True},
            3,
            "col-m",
        ),
        mapped("new", "integer", 4, "col-new"),
    ]
    phys = pa.struct([("col-x", pa.int32()), ("col-y", pa.string())])  # x was an int when written
    data = pa.table(
        {
            "col-s": pa.array([{"col-x": 1, "col-y": "a"}, None], phys),
            "col-l": pa.array([[{"col-x": 2, "col-y": "b"}, None], None], pa.list_(phys)),
            "col-m": pa.array(
                [[("k", {"col-x": 3, "col-y": "c"})], None], pa.map_(pa.string(), phys)
            ),
        }
    )
    config = {"delta.columnMapping.mode": "name", "delta.columnMapping.maxColumnId": "31"}
    create(root, fields, [add(root, "a.parquet", data)], config=config, reader=2, writer=5)
    snap = Snapshot.load(root)
    got = read(snap)
    assert got.column_names == ["s", "l", "m", "new"]
    assert got.to_pylist() == [
        {
            "s": {"x": 1, "Y y": "a"},
            "l": [{"x": 2, "Y y": "b"}, None],
            "m": [("k", {"x": 3, "Y y": "c"})],
            "new": None,
        },
        {"s": None, "l": None, "m": None, "new": None},
    ]
    assert snap.schema.field("s").type == pa.struct([("x", pa.int64()), ("Y y", pa.string())])
    assert_types(snap)


def test_column_mapping_id_mode_matches_field_ids(tmp_path: Path) -> None:
    root = str(tmp_path / "ids")
    fields = [
        field(
            "a",
            "long",
            **{"delta.columnMapping.id": 1, "delta.columnMapping.physicalName": "col-a"},
        ),
        field(
            "b",
            "string",
            **{"delta.columnMapping.id": 2, "delta.columnMapping.physicalName": "col-b"},
        ),
    ]
    # Names in the file deliberately disagree with the physical names: id mode resolves by id.
    schema = pa.schema(
        [
            pa.field("zzz", pa.string(), metadata={"PARQUET:field_id": "2"}),
            pa.field("col-b", pa.int64(), metadata={"PARQUET:field_id": "1"}),
        ]
    )
    data = pa.table({"zzz": ["x", "y"], "col-b": [10, 20]}, schema=schema)
    create(
        root,
        fields,
        [add(root, "a.parquet", data)],
        config={"delta.columnMapping.mode": "id"},
        reader=2,
        writer=5,
    )
    assert read(Snapshot.load(root)).to_pylist() == [{"a": 10, "b": "x"}, {"a": 20, "b": "y"}]


def test_deletion_vector_storage_types(tmp_path: Path) -> None:
    root = str(tmp_path / "dvs")
    names = ["p=x/f 0%", "p=y/f1", "p=y/f2", "p=x/f3", "p=x/f4"]
    part = [pa.table({"v": pa.array(range(k * 100, k * 100 + 100), pa.int64())}) for k in range(5)]
    deleted = [[0, 1, 2, 50, 99], list(range(10, 90)), [7], [3, 4, 5, 98], []]
    stored, _ = dv_file(root, deleted[:2], prefix="ab")  # 'u' with a random prefix
    (elsewhere,), path = dv_file(str(Path(root).parent / "dv elsewhere"), [deleted[2]])
    dvs_ = [
        *stored,
        {**elsewhere, "storageType": "p", "pathOrInlineDv": path.as_uri()},
        dv_inline(deleted[3]),
        dv_inline(deleted[4]),
    ]
    files = [
        add(root, f"{name}.parquet", part[k], {"p": name[2]}, dv=dvs_[k])
        for k, name in enumerate(names)
    ]
    create(
        root, [field("v", "long"), field("p", "string")], files, partitions=("p",), **dv_protocol()
    )
    snap = Snapshot.load(root)
    expected = sorted(k * 100 + i for k in range(5) for i in range(100) if i not in deleted[k])
    got = read(snap)
    assert sorted(got["v"].to_pylist()) == expected
    assert {r["v"] // 100: r["p"] for r in got.to_pylist()} == {
        k: n[2] for k, n in enumerate(names)
    }
    assert got.num_rows == live_rows(snap)
    assert sorted(query_builder(root)["v"].to_pylist()) == expected
    by_rs = delta_rs_deleted(root)
    for k, name in enumerate(names):
        assert by_rs.get(os.path.normpath(os.path.join(root, name + ".parquet")), []) == deleted[k]
    mask = np.array([False, True, True, False, True])
    assert sorted(read(snap, mask)["v"].to_pylist()) == [
        v for v in expected if 100 <= v < 300 or v >= 400
    ]


@pytest.mark.parametrize("files", [1, 2])
def test_large_deletion_vectors_with_row_group_pruning(tmp_path: Path, files: int) -> None:
    root = str(tmp_path / "bigdv")
    rows_n = 300_000
    rng = np.random.default_rng(7)
    tables, deleted = [], []
    for k in range(files):
        tables.append(pa.table({"v": pa.array(np.arange(rows_n, dtype=np.int64) + k * rows_n)}))
        scattered = set(rng.choice(rows_n, 20_000, replace=False).tolist())
        deleted.append(sorted(scattered | set(range(100_000 + k, 150_000))))
    dvs_, _ = dv_file(root, deleted)
    adds = [
        add(root, f"f{k}.parquet", tables[k], dv=dvs_[k], row_group_size=10_000)
        for k in range(files)
    ]
    create(root, [field("v", "long")], adds, **dv_protocol())
    snap = Snapshot.load(root)
    assert len(snap.relation_sql()) < 400_000 * files
    con = duckdb.connect()
    keep = np.concatenate(
        [np.setdiff1d(np.arange(rows_n), deleted[k]) + k * rows_n for k in range(files)]
    )
    assert con.sql(f"SELECT count(*), sum(v) FROM ({snap.relation_sql()})").fetchall() == [
        (keep.size, int(keep.sum()))
    ]
    # A filter that prunes row groups must not shift the row numbers the DV is keyed on.
    got = con.sql(
        f"SELECT v FROM ({snap.relation_sql()}) WHERE v % {rows_n} BETWEEN 250000 AND 250999 "
        "ORDER BY v"
    ).fetchall()
    assert [r[0] for r in got] == [int(v) for v in keep if 250_000 <= v % rows_n <= 250_999]
    assert got and live_rows(snap) == keep.size


def test_column_named_like_duckdb_virtual_columns(tmp_path: Path) -> None:
    root = str(tmp_path / "virtual")
    data = [
        pa.table({"file_index": [7, 8], "file_row_number": [1, 1]}),
        pa.table({"file_index": [9], "file_row_number": [2]}),
    ]
    files = [
        add(root, "p=a/f0.parquet", data[0], {"p": "a"}),
        add(root, "p=b/f1.parquet", data[1], {"p": "b"}),
    ]
    create(
        root,
        [field("file_index", "long"), field("file_row_number", "long"), field("p", "string")],
        files,
        partitions=("p",),
    )
    got = read(Snapshot.load(root)).to_pylist()
    assert sorted(got, key=lambda r: r["file_index"]) == [
        {"file_index": 7, "file_row_number": 1, "p": "a"},
        {"file_index": 8, "file_row_number": 1, "p": "a"},
        {"file_index": 9, "file_row_number": 2, "p": "b"},
    ]


def test_partition_values_parsed_from_the_log(tmp_path: Path) -> None:
    # Strings as Delta serializes partition values; an empty string is null for every type.
    root = str(tmp_path / "typed")
    cols = {
        "b": "byte",
        "sh": "short",
        "i": "integer",
        "l": "long",
        "f": "float",
        "d": "double",
        "dec": "decimal(5,2)",
        "bo": "boolean",
        "da": "date",
        "ts": "timestamp",
        "ntz": "timestamp_ntz",
        "bin": "binary",
        "s": "string",
    }
    logged = [
        {
            "b": "-128",
            "sh": "300",
            "i": "-7",
            "l": "9007199254740993",
            "f": "1.5",
            "d": "-0.0",
            "dec": "-3.50",
            "bo": "true",
            "da": "2021-02-03",
            "ts": "2021-02-03 04:05:06",
            "ntz": "2021-02-03 04:05:06.5",
            "bin": "abc",
            "s": "a'b",
        },
        {
            "b": "",
            "sh": None,
            "i": "",
            "l": None,
            "f": "NaN",
            "d": "1e300",
            "dec": "1.25",
            "bo": "false",
            "da": None,
            "ts": "2021-02-03 04:05:06.123456",
            "ntz": None,
            "bin": "",
            "s": "",
        },
        {
            "b": "1",
            "sh": "2",
            "i": "3",
            "l": "4",
            "f": "-Infinity",
            "d": "2.5",
            "dec": "0.00",
            "bo": None,
            "da": "1900-01-01",
            "ts": "1960-02-03T04:05:06.000001Z",
            "ntz": "2021-02-03 04:05:06",
            "bin": None,
            "s": None,
        },
    ]
    files = [
        add(root, f"f{k}.parquet", pa.table({"x": [k]}), partition=v) for k, v in enumerate(logged)
    ]
    create(
        root,
        [field("x", "long")] + [field(c, t) for c, t in cols.items()],
        files,
        partitions=tuple(cols),
        reader=3,
        writer=7,
        features=["timestampNtz"],
    )
    ts = dtm.datetime(2021, 2, 3, 4, 5, 6, tzinfo=UTC)
    expected = [
        {
            "x": 0,
            "b": -128,
            "sh": 300,
            "i": -7,
            "l": 9007199254740993,
            "f": 1.5,
            "d": -0.0,
            "dec": Decimal("-3.50"),
            "bo": True,
            "da": dtm.date(2021, 2, 3),
            "ts": ts,
            "ntz": dtm.datetime(2021, 2, 3, 4, 5, 6, 500000),
            "bin": b"abc",
            "s": "a'b",
        },
        {
            "x": 1,
            "b": None,
            "sh": None,
            "i": None,
            "l": None,
            "f": float("nan"),
            "d": 1e300,
            "dec": Decimal("1.25"),
            "bo": False,
            "da": None,
            "ts": ts.replace(microsecond=123456),
            "ntz": None,
            "bin": None,
            "s": None,
        },
        {
            "x": 2,
            "b": 1,
            "sh": 2,
            "i": 3,
            "l": 4,
            "f": float("-inf"),
            "d": 2.5,
            "dec": Decimal("0.00"),
            "bo": None,
            "da": dtm.date(1900, 1, 1),
            "ts": dtm.datetime(1960, 2, 3, 4, 5, 6, 1, tzinfo=UTC),
            "ntz": dtm.datetime(2021, 2, 3, 4, 5, 6),
            "bin": None,
            "s": None,
        },
    ]
    snap = Snapshot.load(root)
    for tz in ("UTC", "Pacific/Chatham"):
        assert rows(read(snap, tz=tz)) == rows(pa.Table.from_pylist(expected))
    assert [snap.files[f"partition.{c}"].type for c in cols] == [
        snap.schema.field(c).type for c in cols
    ]
    assert rows(pa.table({c: snap.files[f"partition.{c}"] for c in cols})) == rows(
        pa.Table.from_pylist([{c: r[c] for c in cols} for r in expected])
    )
    assert_types(snap)


def test_log_cleaned_up_before_a_checkpoint(tmp_path: Path) -> None:
    location = copy_table("table_with_deletion_logs", tmp_path)
    log = Path(location, "_delta_log")
    for v in range(10):
        (log / f"{v:020d}.json").unlink()
    (log / f"{20:020d}.checkpoint.parquet").unlink()
    (log / "_last_checkpoint").unlink()
    ids = pq.read_table(Snapshot.load(location, 15).files["path"][0].as_py())["id"].to_pylist()
    for version in (15, 10, 20):
        got = read(Snapshot.load(location, version))["id"].to_pylist()
        assert sorted(got) == sorted(set(ids) - {12, 89})


def test_concurrent_loads(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    location = copy_table("simple_table", tmp_path)
    versions = [v % 5 for v in range(40)]
    with ThreadPoolExecutor(8) as pool:
        snaps = list(pool.map(lambda v: Snapshot.load(location, v), versions))
    for v, snap in zip(versions, snaps, strict=True):
        assert snap.version == v
        assert rows(read(snap)) == rows(DeltaTable(location, version=v).to_pyarrow_table())


# refusals -----------------------------------------------------------------------------------------
def test_refuses_unknown_reader_features(tmp_path: Path) -> None:
    root = str(tmp_path / "future")
    create(
        root,
        [field("a", "long")],
        [add(root, "a.parquet", pa.table({"a": [1]}))],
        reader=3,
        writer=7,
        features=["deletionVectors", "someFutureFeature"],
    )
    with pytest.raises(UnsupportedFeature, match="someFutureFeature"):
        Snapshot.load(root)


def test_refuses_newer_reader_version(tmp_path: Path) -> None:
    root = str(tmp_path / "v4")
    create(
        root,
        [field("a", "long")],
        [add(root, "a.parquet", pa.table({"a": [1]}))],
        reader=4,
        writer=7,
    )
    with pytest.raises(UnsupportedFeature):
        Snapshot.load(root)


def test_refuses_variant_columns(tmp_path: Path) -> None:
    root = str(tmp_path / "variant")
    create(
        root,
        [field("a", "long"), field("v", "variant")],
        [add(root, "a.parquet", pa.table({"a": [1]}))],
        reader=3,
        writer=7,
        features=["variantType"],
    )
    with pytest.raises(UnsupportedFeature, match="variant"):
        Snapshot.load(root)


def test_refuses_deletion_vectors_delta_rs_disagrees_with(tmp_path: Path) -> None:
    location = copy_table("table-with-dv-small", tmp_path)
    dt = DeltaTable(location)
    paths = [str(Path(location, p)) for p in pa.table(dt.get_add_actions())["path"].to_pylist()]
    # The log replay says no file has a deletion vector; delta-rs decodes one.
    with pytest.raises(UnsupportedFeature, match="disagree"):
        snapshot._deleted_rows(dt, location, paths, [None], [None], "test")  # type: ignore[list-item]


def test_inline_deletion_vector_ending_in_a_padded_group(tmp_path: Path) -> None:
    # delta-kernel-rs writes inline deletion vectors whose size is not a multiple of 4 with a
    # padded last Z85 group ('#' for each missing byte, as its cdf-table-with-dv does at
    # version 5); read as a plain group it overflowed ("int too big to convert").
    root = str(tmp_path / "padded")
    data = dv_data([1, 5, 7])
    assert len(data) % 4
    dv = {
        "storageType": "i",
        "pathOrInlineDv": z85_encode_padded(data),
        "sizeInBytes": len(data),
        "cardinality": 3,
    }
    assert dv["pathOrInlineDv"][-5] == "#"
    table = pa.table({"a": pa.array(range(10), pa.int64())})
    create(root, [field("a", "long")], [add(root, "a.parquet", table, dv=dv)], **dv_protocol())
    snap = Snapshot.load(root)
    assert sorted(read(snap)["a"].to_pylist()) == [0, 2, 3, 4, 6, 8, 9]
    assert delta_rs_deleted(root) == {os.path.normpath(os.path.join(root, "a.parquet")): [1, 5, 7]}


def test_a_missing_deletion_vector_file_is_a_typed_error(tmp_path: Path) -> None:
    location = copy_table("table-with-dv-small", tmp_path)
    (dv,) = Path(location).glob("deletion_vector_*.bin")
    with lake.connect(tmp_path / "lake") as lk:
        lk.catalog.create_database("x")
        lk.catalog.register_table("x.t", location)
        assert lk.sql("SELECT count(*) AS n FROM x.t", user="u")["n"].to_pylist() == [8]
        dv.unlink()
        # A new process on a lake that has no snapshot of this version saved yet (the saved one
        # holds the decoded rows and would still answer rightly).
        snapshot.clear_caches()
        query.clear_cache()
        storage.delete_tree(storage.join(str(lk.root), "_lakeward", "snapshots"))
        with pytest.raises(DataFileMissing) as e:
            lk.sql("SELECT count(*) AS n FROM x.t", user="u")
        assert "x.t" in str(e.value) and "/" not in str(e.value)
    with pytest.raises(DataFileMissing):
        Snapshot.load(location)


def test_refuses_a_file_duckdb_reads_as_another_type(tmp_path: Path) -> None:
    # Arrow sees 16-byte binary; DuckDB reads the Parquet UUID annotation as UUID.
    root = str(tmp_path / "uuid")
    data = pa.table({"u": pa.array([uuid.uuid4().bytes], pa.uuid())})
    create(root, [field("u", "binary")], [add(root, "a.parquet", data, store_schema=False)])
    with pytest.raises(UnsupportedFeature, match="UUID"):
        Snapshot.load(root)


def test_refuses_a_corrupt_deletion_vector(tmp_path: Path) -> None:
    root = str(tmp_path / "corrupt")
    (dv,), _ = dv_file(root, [[1, 2]])
    create(
        root,
        [field("a", "long")],
        [add(root, "a.parquet", pa.table({"a": [1, 2, 3]}), dv={**dv, "cardinality": 3})],
        **dv_protocol(),
    )
    with pytest.raises(UnsupportedFeature, match="deletion vector"):
        Snapshot.load(root)


def test_not_a_delta_table(tmp_path: Path) -> None:
    with pytest.raises(TableNotFound, match="no Delta table"):
        Snapshot.load(str(tmp_path))
    with pytest.raises(TableNotFound):
        Snapshot.load(str(tmp_path / "missing"))
