"""A real `lake serve` on 127.0.0.1, reached with the ADBC Flight SQL driver, pyarrow.flight and
`lake.connect("grpc://...")`: proven identities, governed answers, the same errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import adbc_driver_flightsql.dbapi as adbc
import pyarrow as pa
import pyarrow.flight as fl
import pytest

import lake
from lake.errors import AccessDenied, SQLError, TableNotFound
from lake.server.protocol import pack, sql

from support.server import REPO, ServedLake, lake_cli, make_lake


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    # Many refusals below come from 127.0.0.1: the failure limit is tested on its own server.
    root = make_lake(tmp_path_factory.mktemp("served") / "lake", "[server]\nmax_failures = 1000\n")
    s = ServedLake(root).start()
    s.tokens = {u: s.token(u) for u in ("alice", "bob", "admin", "carol")}
    lake_cli("user", "set-password", "alice", "--root", str(root), input="correct horse battery\n")
    yield s
    s.stop()


def bearer(token: str) -> dict:
    return {"adbc.flight.sql.authorization_header": "Bearer " + token}


def adbc_rows(url: str, query: str, db_kwargs: dict, params=None) -> list[dict]:
    with adbc.connect(url, db_kwargs=db_kwargs, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetch_arrow_table().to_pylist()


def test_two_users_with_different_tokens_see_different_rows_over_adbc(served):
    q = "SELECT * FROM sales.orders ORDER BY id"
    alice = adbc_rows(served.url, q, bearer(served.tokens["alice"]))
    bob = adbc_rows(served.url, q, bearer(served.tokens["bob"]))
    assert [r["id"] for r in alice] == [1, 3, 5]
    assert {r["region"] for r in alice} == {"eu"}
    assert [r["id"] for r in bob] == [2, 4, 6]
    assert "note" not in bob[0]  # a column bob does not have does not exist for him
    assert alice[0]["note"] == "a"


def test_the_same_over_the_remote_lake(served):
    with lake.connect(served.url, token=served.tokens["alice"]) as a:
        assert a.user == "alice" and a.auth == "token"
        t = a.sql("SELECT id, region FROM sales.orders ORDER BY id")
        assert t.column("id").to_pylist() == [1, 3, 5]
    with lake.connect(served.url, token=served.tokens["bob"]) as b:
        t = b.sql("SELECT * FROM sales.orders ORDER BY id")
        assert t.column_names == ["id", "amount", "region"]
        assert t.column("id").to_pylist() == [2, 4, 6]


def test_user_naming_someone_else_is_refused(served):
    with lake.connect(served.url, token=served.tokens["alice"]) as a:
        assert (
            a.sql("SELECT count(*) AS n FROM sales.orders", user="alice").column(0)[0].as_py() == 3
        )
        with pytest.raises(AccessDenied, match="may not act as bob"):
            a.sql("SELECT * FROM sales.orders", user="bob")
        with pytest.raises(AccessDenied, match="may not act as admin"):
            a.catalog.list_tables("sales", user="admin")
        with pytest.raises(AccessDenied, match="may not act as bob"):
            a.write("sales.orders", pa.table({"id": [9]}), user="bob")


def test_wrong_expired_and_revoked_tokens_are_refused_with_nothing_more(served):
    expiring = served.token("alice", "--expires-in", "1s")
    revoked = served.token("alice")
    token_id = revoked.split("_")[1]
    # it works before it is revoked
    assert adbc_rows(served.url, "SELECT 1 AS x", bearer(revoked)) == [{"x": 1}]
    lake_cli("token", "revoke", token_id, "--root", str(served.root))
    time.sleep(1.5)
    wrong = served.tokens["alice"][:-4] + "AAAA"
    for bad in (wrong, expiring, revoked, "garbage", "lkw_000000000000_" + "x" * 43):
        with pytest.raises(AccessDenied, match="unauthenticated"):
            lake.connect(served.url, token=bad)
        with pytest.raises(Exception) as info:
            adbc_rows(served.url, "SELECT 1", bearer(bad))
        assert "UNAUTHENTICATED" in str(info.value) or "nauthenticated" in str(info.value)
        client = fl.connect(served.url)
        with pytest.raises(fl.FlightUnauthenticatedError) as raw:
            list(
                client.do_action(
                    fl.Action("lakeward.whoami", b"{}"),
                    fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {bad}".encode())]),
                )
            )
        assert str(raw.value).split(".")[0] == "unauthenticated"
        client.close()
    # no credential at all
    client = fl.connect(served.url)
    with pytest.raises(fl.FlightUnauthenticatedError):
        list(client.do_action(fl.Action("lakeward.whoami", b"{}")))
    client.close()
    listed = lake_cli("token", "list", "--root", str(served.root))
    assert "revoked" in listed and "expired" in listed
    assert revoked.split("_", 2)[2] not in listed  # a secret (it may hold "_"): never shown again


def test_password_login_through_the_handshake_returns_a_bearer_token(served):
    client = fl.connect(served.url)
    key, value = client.authenticate_basic_token("alice", "correct horse battery")
    assert key == b"authorization" and value.startswith(b"Bearer lkw_")
    opts = fl.FlightCallOptions(headers=[(key, value)])
    [answer] = client.do_action(fl.Action("lakeward.whoami", b"{}"), opts)
    who = json.loads(answer.body.to_pybytes())
    assert who["user"] == "alice" and who["auth"] == "session"
    with pytest.raises(fl.FlightUnauthenticatedError):
        client.authenticate_basic_token("alice", "wrong password")
    with pytest.raises(fl.FlightUnauthenticatedError):
        client.authenticate_basic_token("nobody", "correct horse battery")
    client.close()
    rows = adbc_rows(
        served.url,
        "SELECT id FROM sales.orders ORDER BY id",
        {"username": "alice", "password": "correct horse battery"},
    )
    assert [r["id"] for r in rows] == [1, 3, 5]
    with lake.connect(served.url, username="alice", password="correct horse battery") as a:
        assert a.user == "alice"
        assert a.sql("SELECT count(*) FROM sales.orders").column(0)[0].as_py() == 3


def test_prepared_statement_with_parameters_over_adbc(served):
    rows = adbc_rows(
        served.url,
        "SELECT id, amount FROM sales.orders WHERE amount > ? AND region = ? ORDER BY id",
        bearer(served.tokens["alice"]),
        (15.0, "eu"),
    )
    assert rows == [{"id": 3, "amount": 30.0}, {"id": 5, "amount": 50.0}]
    # a parameter is a value, never SQL: the filter still applies to bob
    rows = adbc_rows(
        served.url,
        "SELECT id FROM sales.orders WHERE region = ? ORDER BY id",
        bearer(served.tokens["bob"]),
        ("eu' OR '1'='1",),
    )
    assert rows == []


def test_metadata_answers_only_what_the_principal_may_describe(served):
    # system.audit exists once the server flushed its first records; reading it flushes now,
    # so that what bob is not told of is there to be told.
    assert adbc_rows(
        served.url, "SELECT count(*) AS n FROM system.audit", bearer(served.tokens["admin"])
    )[0]["n"]
    with adbc.connect(served.url, db_kwargs=bearer(served.tokens["bob"]), autocommit=True) as conn:
        objects = conn.adbc_get_objects().read_all().to_pylist()
        schemas = {s["db_schema_name"] for c in objects for s in c["catalog_db_schemas"]}
        assert schemas == {"sales"}  # not system: bob is no auditor
        schema = conn.adbc_get_table_schema("orders", db_schema_filter="sales")
        assert schema.names == ["id", "amount", "region"]
        assert conn.adbc_get_table_types() == ["BASE TABLE", "EXTERNAL"]
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "Lakeward"
    with adbc.connect(
        served.url, db_kwargs=bearer(served.tokens["carol"]), autocommit=True
    ) as conn:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        tables = [
            t["table_name"]
            for c in objects
            for s in c["catalog_db_schemas"] or []
            for t in s["db_schema_tables"] or []
        ]
        assert tables == ["orders"]  # carol may describe sales (p, *, sales, describe) only
        with pytest.raises(Exception, match="carol may not select from sales.orders"):
            conn.cursor().execute("SELECT * FROM sales.orders")
    with adbc.connect(
        served.url, db_kwargs=bearer(served.tokens["admin"]), autocommit=True
    ) as conn:
        objects = conn.adbc_get_objects(depth="db_schemas").read_all().to_pylist()
        assert {s["db_schema_name"] for c in objects for s in c["catalog_db_schemas"]} >= {
            "sales",
            "system",
        }


def test_remote_catalog_writes_and_maintenance_act_as_the_principal(served):
    with lake.connect(served.url, token=served.tokens["admin"]) as adm:
        adm.catalog.create_database("scratch", exist_ok=True)
        info = adm.catalog.create_table(
            "scratch.t", pa.schema([("k", pa.int64()), ("v", pa.string())])
        )
        assert info.full_name == "scratch.t" and info.location == ""
        adm.write("scratch.t", pa.table({"k": [1, 2, 3], "v": ["a", "b", "c"]}))
        reader = pa.RecordBatchReader.from_batches(
            pa.schema([("k", pa.int64()), ("v", pa.string())]),
            iter([pa.record_batch([pa.array([4]), pa.array(["d"])], names=["k", "v"])]),
        )
        adm.write("scratch.t", reader)
        adm.update("scratch.t", {"v": "upper(v)"}, "k = 1")
        adm.delete("scratch.t", "k = 2")
        adm.merge("scratch.t", pa.table({"k": [3, 5], "v": ["C", "E"]}), on="k")
        got = adm.sql("SELECT k, v FROM scratch.t ORDER BY k").to_pylist()
        assert got == [
            {"k": 1, "v": "A"},
            {"k": 3, "v": "C"},
            {"k": 4, "v": "d"},
            {"k": 5, "v": "E"},
        ]
        ops = [h["operation"] for h in adm.history("scratch.t")]
        assert ops[0] == "MERGE" and "DELETE" in ops and "UPDATE" in ops
        assert adm.compact("scratch.t")["numFilesRemoved"] >= 2
        assert isinstance(adm.vacuum("scratch.t", dry_run=True), list)
        names = [t.full_name for t in adm.catalog.list_tables("scratch")]
        assert names == ["scratch.t"]
        assert "location" not in adm.catalog.describe("scratch.t")
        adm.catalog.drop_table("scratch.t")
        with pytest.raises(TableNotFound):
            adm.catalog.describe("scratch.t")
    with lake.connect(served.url, token=served.tokens["bob"]) as b:
        with pytest.raises(AccessDenied, match="bob may not insert sales.orders"):
            b.write("sales.orders", pa.table({"id": [99]}))
        with pytest.raises(AccessDenied):
            b.catalog.create_database("mine")
        [info] = b.catalog.list_tables("sales")
        assert [c["name"] for c in json.loads(info.schema_json)] == ["id", "amount", "region"]


def test_errors_arrive_as_the_same_class_with_the_same_message(served):
    cases = [
        ("SELECT nope FROM sales.orders", SQLError),
        ("SELECT note FROM sales.orders", SQLError),  # bob's hidden column: like a missing one
        ("SELECT * FROM sales.missing", TableNotFound),
        ("SELECT * FROM read_parquet('/etc/passwd')", (AccessDenied, SQLError)),
    ]
    with (
        lake.connect(served.root) as local,
        lake.connect(served.url, token=served.tokens["bob"]) as rb,
    ):
        for query, kind in cases:
            with pytest.raises(kind) as here:
                local.sql(query, user="bob")
            with pytest.raises(kind) as there:
                rb.sql(query)
            assert type(there.value) is type(here.value)
            assert str(there.value) == str(here.value)


def test_the_audit_records_principal_method_and_client_address(served):
    with lake.connect(served.url, token=served.tokens["alice"]) as a:
        a.sql("SELECT 42 AS audited_marker")
    with lake.connect(served.url, token=served.tokens["admin"]) as adm:
        rows = adm.sql(
            "SELECT a.user, action, auth, client, decision FROM system.audit AS a "
            "WHERE statement = 'SELECT 42 AS audited_marker'"
        ).to_pylist()
    assert rows, "the query was not audited"
    r = rows[-1]
    assert r["user"] == "alice" and r["action"] == "sql" and r["decision"] == "allowed"
    assert r["auth"] == "token"
    assert r["client"].startswith("127.0.0.1:")


def test_the_cli_is_a_client_with_server_and_lake_token(served):
    env = {"LAKE_SERVER": served.url, "LAKE_TOKEN": served.tokens["bob"]}
    out = lake_cli("sql", "SELECT id FROM sales.orders ORDER BY id", "--format", "csv", env=env)
    assert out.split() == ['"id"', "2", "4", "6"]
    out = lake_cli(
        "--server",
        served.url,
        "sql",
        "SELECT count(*) AS n FROM sales.orders",
        "--format",
        "json",
        env={"LAKE_TOKEN": served.tokens["alice"]},
    )
    assert json.loads(out) == [{"n": 3}]
    with pytest.raises(subprocess.CalledProcessError) as bad:
        lake_cli("--server", served.url, "sql", "SELECT 1", env={"LAKE_TOKEN": "lkw_nope"})
    assert "unauthenticated" in bad.value.stderr


def test_lake_login_saves_a_token_the_cli_then_uses(served, tmp_path):
    cfg = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    out = lake_cli("login", "--server", served.url, input=served.tokens["bob"] + "\n", env=cfg)
    assert "as bob" in out
    saved = tmp_path / "cfg" / "lakeward" / "token"
    assert saved.stat().st_mode & 0o077 == 0  # only its owner may read it
    out = lake_cli(
        "--server",
        served.url,
        "sql",
        "SELECT count(*) AS n FROM sales.orders",
        "--format",
        "json",
        env=cfg,
    )
    assert json.loads(out) == [{"n": 3}]
    out = lake_cli(
        "login", "--server", served.url, "--user", "alice", input="correct horse battery\n", env=cfg
    )
    assert "as alice" in out and saved.read_text().startswith("lkw_")


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
def test_a_client_without_any_access_to_the_lake_files_gets_answers(served, tmp_path):
    # The client runs in a sandbox whose /tmp is empty: the lake folder is not there at all.
    script = (
        "import os, sys, lake\n"
        f"assert not os.path.exists({str(served.root)!r})\n"
        "lk = lake.connect(sys.argv[1], token=sys.argv[2])\n"
        "print(lk.sql('SELECT id FROM sales.orders ORDER BY id').column('id').to_pylist())\n"
    )
    out = subprocess.run(
        [
            "bwrap",
            "--ro-bind",
            "/",
            "/",
            "--tmpfs",
            "/tmp",
            "--ro-bind",  # the repository and its venv, should they lie under /tmp
            str(REPO),
            str(REPO),
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--unshare-pid",
            "--chdir",
            str(REPO),
            "--setenv",
            "PYTHONPATH",
            str(REPO),
            sys.executable,
            "-c",
            script,
            served.url,
            served.tokens["alice"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("LAKE_")},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1, 3, 5]"


def test_a_plain_pyarrow_flight_sql_client(served):
    client = fl.connect(served.url)
    opts = fl.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {served.tokens['bob']}".encode())]
    )
    cmd = fl.FlightDescriptor.for_command(
        pack(sql.CommandStatementQuery(query="SELECT id FROM sales.orders ORDER BY id"))
    )
    info = client.get_flight_info(cmd, opts)
    assert info.schema.names == ["id"]
    table = client.do_get(info.endpoints[0].ticket, opts).read_all()
    assert table.column("id").to_pylist() == [2, 4, 6]
    # a ticket is the principal's: alice cannot fetch bob's result
    info = client.get_flight_info(cmd, opts)
    alice = fl.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {served.tokens['alice']}".encode())]
    )
    with pytest.raises(fl.FlightServerError, match="unknown or expired ticket"):
        client.do_get(info.endpoints[0].ticket, alice).read_all()
    client.close()


def test_adbc_bulk_ingest_is_a_governed_write(served):
    rows = pa.table(
        {
            "id": pa.array([100, 101], pa.int64()),
            "amount": [1.0, 2.0],
            "region": ["eu", "eu"],
            "note": ["x", "y"],
        }
    )
    alice = bearer(served.tokens["alice"])
    with adbc.connect(served.url, db_kwargs=alice, autocommit=True) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("orders", rows, mode="append", db_schema_name="sales") == 2
        cur.execute("SELECT id FROM sales.orders WHERE id >= 100 ORDER BY id")
        assert [r[0] for r in cur.fetchall()] == [100, 101]
    bob = bearer(served.tokens["bob"])
    with (
        adbc.connect(served.url, db_kwargs=bob, autocommit=True) as conn,
        conn.cursor() as cur,
        pytest.raises(Exception, match="bob may not insert sales.orders"),
    ):
        cur.adbc_ingest("orders", rows, mode="append", db_schema_name="sales")
    with lake.connect(served.url, token=served.tokens["alice"]) as a:
        a.delete("sales.orders", "id >= 100")
        assert a.sql("SELECT count(*) FROM sales.orders").column(0)[0].as_py() == 3
