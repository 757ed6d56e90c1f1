"""Lakes in an S3-compatible object store (the test server of scripts/s3_server.sh).

Every other catalog, governance and batch test also runs with its lakes in S3 when
LAKE_TEST_STORAGE=s3 (`make test` does); these are the object store's own cases: options from
each of their sources, credentials never shown, the locked engine confined to the lake's
prefix, the lake's prefix never a readable location, the compaction lease in the store.
"""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pytest
from deltalake import write_deltalake

import lake
from catalog import storage
from catalog.compaction import exclusive
from catalog.engine import Engine
from lake.errors import AccessDenied, InvalidArgument, LakeError, SQLError

from support import s3
from support.lakes import ORDERS, orders

SECRET = "s3cr3t-never-shown-7f3a"  # moto accepts any credentials


@pytest.fixture
def server(monkeypatch, catalog_backend, tmp_path):
    url = s3.require_server()
    for key in list(storage.env_options()):
        monkeypatch.delenv(key, raising=False)  # only what each test gives
    return {"url": url, "catalog": catalog_backend or f"sqlite:///{tmp_path / 'catalog.db'}"}


def options(server, secret: str = SECRET) -> dict[str, str]:
    return {**s3.options(server["url"]), "AWS_SECRET_ACCESS_KEY": secret}


def open_lake(server, root: str | None = None, **kw):
    root = root or s3.fresh_prefix()
    kw.setdefault("storage_options", options(server))
    return lake.connect(root, catalog=server["catalog"], **kw)


def objects(prefix: str) -> list[str]:
    return sorted(rel for rel, _ in storage.walk(prefix))


def test_a_lake_in_s3_works_end_to_end_and_keeps_everything_there(server):
    root = s3.fresh_prefix()
    with open_lake(server, root) as lk:
        assert lk.root == root
        lk.catalog.create_database("sales")
        lk.catalog.create_table("sales.orders", ORDERS, partition_by=["region"])
        lk.write("sales.orders", orders(0, 30), user="etl")
        with lk.transaction(user="etl") as tx:
            tx.write("sales.orders", orders(30, 10))
            tx.delete("sales.orders", where="id < 5")
        lk.compact("sales.orders", user="etl")
        q = "SELECT count(*) AS n, sum(id) AS s FROM sales.orders"
        assert lk.sql(q, user="u").to_pylist() == [{"n": 35, "s": sum(range(5, 40))}]
        lk.audit.flush()
    keys = objects(root)
    assert "lake.toml" in keys and "_lakeward/catalog.json" in keys
    assert any(k.startswith("sales/orders/_delta_log/") for k in keys)
    assert any(k.startswith("system/audit/") for k in keys)  # the audit table too
    assert any(k.startswith("_lakeward/snapshots/") for k in keys)
    binding = json.loads(storage.read_text(f"{root}/_lakeward/catalog.json"))
    assert "catalog_id" in binding
    with open_lake(server, root) as lk:  # another client of the same root and catalog
        assert lk.sql("SELECT count(*) AS n FROM sales.orders", user="u")["n"][0].as_py() == 35
        ops = [h["operation"] for h in lk.history("sales.orders")]
        assert ops[:3] == ["OPTIMIZE", "DELETE", "WRITE"]
        assert lk.sql("SELECT count(*) AS n FROM system.audit")["n"][0].as_py() > 0


def test_options_come_from_lake_toml_and_the_environment(server, monkeypatch, tmp_path):
    location = s3.fresh_prefix() + "/events"
    write_deltalake(location, pa.table({"x": [1, 2]}), storage_options=options(server))
    # lake.toml [storage] holds where the store is, the environment the credentials.
    root = tmp_path / "lake"
    root.mkdir()
    (root / "lake.toml").write_text(
        f'[storage]\nAWS_ENDPOINT_URL = "{server["url"]}"\nAWS_REGION = "us-east-1"\n'
        "AWS_ALLOW_HTTP = true\n"
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    with lake.connect(root, catalog=server["catalog"]) as lk:
        assert lk.storage_options == {
            "AWS_ENDPOINT_URL": server["url"],
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
        assert storage.options(location)["AWS_SECRET_ACCESS_KEY"] == SECRET
        lk.catalog.create_database("d")
        lk.catalog.register_table("d.events", location=location)
        assert lk.sql("SELECT sum(x) AS s FROM d.events", user="u")["s"][0].as_py() == 3


def test_a_bad_storage_key_in_lake_toml_is_named(tmp_path):
    root = tmp_path / "lake"
    root.mkdir()
    (root / "lake.toml").write_text('[storage]\naws_region = "x"\n')
    with pytest.raises(
        InvalidArgument, match=r"lake.toml storage: 'aws_region' is not a storage option"
    ):
        lake.connect(root)


def test_register_table_accepts_s3_locations_from_a_local_lake(server, tmp_path):
    location = s3.fresh_prefix() + "/legacy"
    write_deltalake(location, orders(0, 12), storage_options=options(server))
    with lake.connect(
        tmp_path / "local", storage_options=options(server), catalog=server["catalog"]
    ) as lk:
        lk.catalog.create_database("ext")
        lk.catalog.register_table("ext.legacy", location=location.replace("s3://", "s3a://"))
        assert lk.catalog.table("ext.legacy").location == location
        assert lk.sql("SELECT count(*) AS n FROM ext.legacy", user="u")["n"][0].as_py() == 12


def test_an_object_store_root_needs_a_shared_catalog(server, monkeypatch):
    monkeypatch.delenv("LAKE_CATALOG", raising=False)
    with pytest.raises(InvalidArgument, match="shared catalog"):
        lake.connect(s3.fresh_prefix(), storage_options=options(server))
    with pytest.raises(InvalidArgument, match="unsupported storage"):
        lake.connect("gopher://x/y")


def test_credentials_never_appear_in_answers_errors_logs_or_audit(server, caplog):
    caplog.set_level(logging.DEBUG)
    with open_lake(server) as lk:
        lk.catalog.create_database("sales")
        lk.catalog.create_table("sales.orders", ORDERS)
        lk.write("sales.orders", orders(0, 10), user="etl")
        said = [
            repr(lk.sql("SELECT * FROM sales.orders", user="u")),
            repr(lk.explain("SELECT * FROM sales.orders", user="u")),
            json.dumps(lk.catalog.describe("sales.orders"), default=str),
            repr(lk.history("sales.orders")),
            repr(lk.config),
        ]
        for bad in ("SELECT nope FROM sales.orders", "SELECT * FROM sales.missing", "DROP x"):
            with pytest.raises(LakeError) as e:
                lk.sql(bad, user="u")
            said.append(str(e.value))
        lk.audit.flush()
        said.append(repr(lk.sql("SELECT * FROM system.audit").to_pylist()))
    # a store that refuses: its message names the location and the kind of error only
    with pytest.raises(LakeError) as e:
        lake.connect(
            s3.fresh_prefix(),
            catalog=server["catalog"],
            storage_options={**options(server), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
        )
    said.append(str(e.value))
    said += [r.getMessage() for r in caplog.records]
    assert all(SECRET not in text for text in said)
    assert storage.public(options(server)).get("AWS_SECRET_ACCESS_KEY") is None


def test_the_locked_engine_reads_only_the_lakes_prefix(server):
    root = s3.fresh_prefix()
    outside = s3.fresh_prefix()  # the same bucket, another prefix
    sibling = root + "-sibling"  # a prefix that merely starts like the root's
    for where in (outside, sibling):
        write_deltalake(f"{where}/t", orders(0, 3), storage_options=options(server))
    with open_lake(server, root) as lk:
        lk.catalog.create_database("sales")
        lk.catalog.create_table("sales.orders", ORDERS)
        lk.write("sales.orders", orders(0, 5), user="etl")
        mine = lk.catalog.raw.snapshot(lk.catalog.table("sales.orders")).files["path"][0].as_py()
        engine = Engine(root)
        try:
            assert engine.run(f"SELECT count(*) AS n FROM read_parquet('{mine}')")["n"][0].as_py()
            for where in (outside, sibling):
                files = [r for r, _ in storage.walk(f"{where}/t") if r.endswith(".parquet")]
                with pytest.raises((AccessDenied, SQLError)):
                    engine.run(f"SELECT * FROM read_parquet('{where}/t/{files[0]}')")
            with pytest.raises((AccessDenied, SQLError)):
                engine.run(f"SELECT * FROM read_parquet('{root}/../{outside[5:]}/t/*.parquet')")
        finally:
            engine.close()


def test_the_lakes_prefix_is_never_a_readable_location(server, tmp_path):
    root = s3.fresh_prefix()
    bucket = root.rsplit("/", 1)[0]
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.csv").write_text(
        f"p, bob, location:{bucket}, select, allow\np, bob, raw, *, allow\n"
    )
    with open_lake(server, root, policy=policy) as lk:
        lk.catalog.create_database("raw")
        for target in (root, f"{root}/raw", root.replace("s3://", "s3a://") + "/x/../raw"):
            with pytest.raises(AccessDenied, match="may not read that location"):
                lk.crawl(target, database="raw", user="bob")


def test_compaction_of_a_table_in_s3_is_exclusive_through_the_store(server):
    with open_lake(server) as lk:
        lk.catalog.create_database("sales")
        lk.catalog.create_table("sales.orders", ORDERS)
        info = lk.catalog.raw.table("sales.orders")
        with exclusive(info, lk.store) as first:
            assert first
            with exclusive(info, lk.store) as second:
                assert not second  # another compactor (any process, any host) is at it
        with exclusive(info, lk.store) as again:
            assert again  # released at the end of the first


def test_the_root_record_is_written_once(server):
    root = s3.fresh_prefix()
    storage.configure(root, options(server))
    path = f"{root}/_lakeward/catalog.json"
    assert storage.create(path, b'{"first": 1}')
    assert not storage.create(path, b'{"second": 2}')  # a conditional PUT: the first stays
    assert json.loads(storage.read_text(path)) == {"first": 1}
