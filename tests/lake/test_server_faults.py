"""Bad input and faults against a real server: malformed and unknown commands, oversized
queries, clients gone mid-stream, many clients at once, failed-login limits, and a server
SIGKILLed in the middle of a DoPut write."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import adbc_driver_flightsql.dbapi as adbc
import pyarrow as pa
import pyarrow.flight as fl
import pytest
from google.protobuf import any_pb2

import lake
from lake.errors import AccessDenied, InvalidArgument
from lake.server.protocol import pack, sql

from support.server import REPO, ServedLake, make_lake, wait_for, write_toml

BIG_ROWS = 2_000_000


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = make_lake(tmp_path_factory.mktemp("faults") / "lake")
    write_toml(
        root,
        """
        [server]
        max_query_bytes = 2000
        ticket_ttl_s = 2
        max_failures = 1000
        """,
    )
    with lake.connect(root) as lk:
        lk.catalog.create_table("sales.big", pa.schema([("i", pa.int64()), ("s", pa.string())]))
        n = pa.array(range(BIG_ROWS), pa.int64())
        lk.write("sales.big", pa.table({"i": n, "s": pa.compute.cast(n, pa.string())}))
    s = ServedLake(root).start()
    s.tokens = {u: s.token(u) for u in ("alice", "bob", "admin")}
    yield s
    s.stop()


def opts(token: str) -> fl.FlightCallOptions:
    return fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def test_malformed_and_unknown_commands_get_clear_errors(served):
    client = fl.connect(served.url)
    o = opts(served.tokens["alice"])
    unknown_sql = any_pb2.Any(type_url="type.googleapis.com/arrow.flight.protocol.sql.CommandNope")
    foreign = any_pb2.Any(type_url="type.googleapis.com/some.other.Command", value=b"x")
    cases = [
        (b"\xff\xfe not protobuf at all", "malformed Flight SQL command"),
        (unknown_sql.SerializeToString(), "unknown Flight SQL command type CommandNope"),
        (foreign.SerializeToString(), "unknown command type"),
        (pack(sql.CommandGetPrimaryKeys(table="orders")), "CommandGetPrimaryKeys is not supported"),
        (
            any_pb2.Any(
                type_url="type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery",
                value=b"\x0a\xff\xff\xff",
            ).SerializeToString(),
            "malformed Flight SQL command CommandStatementQuery",
        ),
    ]
    for data, message in cases:
        with pytest.raises(fl.FlightServerError, match=message) as e:
            client.get_flight_info(fl.FlightDescriptor.for_command(data), o)
        assert json.loads(e.value.extra_info)["error"] == "InvalidArgument"
        with pytest.raises(fl.FlightServerError, match="InvalidArgument"):
            client.do_get(fl.Ticket(data), o).read_all()
    with pytest.raises(fl.FlightServerError, match="send a Flight SQL command"):
        client.get_flight_info(fl.FlightDescriptor.for_path("sales", "orders"), o)
    with pytest.raises(fl.FlightServerError, match="unknown action"):
        list(client.do_action(fl.Action("rm -rf /", b""), o))
    with pytest.raises(fl.FlightServerError, match="bad arguments for lakeward.delete"):
        list(client.do_action(fl.Action("lakeward.delete", b'{"table": 3}'), o))
    with pytest.raises(fl.FlightServerError, match="bad arguments"):
        list(client.do_action(fl.Action("lakeward.delete", b'{"table": "t", "sql": "x"}'), o))
    with pytest.raises(fl.FlightServerError, match="bad arguments"):
        list(client.do_action(fl.Action("lakeward.history", b"not json"), o))
    with pytest.raises(fl.FlightServerError, match="not supported by this server"):
        list(client.do_action(fl.Action("BeginTransaction", b""), o))
    client.close()
    # and the server is fine afterwards
    with lake.connect(served.url, token=served.tokens["alice"]) as a:
        assert a.sql("SELECT count(*) FROM sales.orders").column(0)[0].as_py() == 3


def test_a_query_larger_than_the_limit_is_refused(served):
    query = "SELECT 1 AS x WHERE 1 = 1" + " AND 1 = 1" * 300
    with (
        lake.connect(served.url, token=served.tokens["alice"]) as a,
        pytest.raises(
            InvalidArgument, match=r"at most 2000 \(lake.toml \[server\] max_query_bytes\)"
        ),
    ):
        a.sql(query)
    kwargs = {"adbc.flight.sql.authorization_header": "Bearer " + served.tokens["alice"]}
    with (
        adbc.connect(served.url, db_kwargs=kwargs, autocommit=True) as conn,
        conn.cursor() as cur,
        pytest.raises(Exception, match="max_query_bytes"),
    ):
        cur.execute(query)


DISCONNECT = """
import os, sys
import pyarrow.flight as fl
from lake.server.protocol import pack, sql
url, token = sys.argv[1], sys.argv[2]
o = fl.FlightCallOptions(headers=[(b"authorization", ("Bearer " + token).encode())])
c = fl.connect(url)
info = c.get_flight_info(fl.FlightDescriptor.for_command(pack(sql.CommandStatementQuery(query="SELECT i, s FROM sales.big"))), o)
reader = c.do_get(info.endpoints[0].ticket, o)
chunk = reader.read_chunk()
print(chunk.data.num_rows, flush=True)
os._exit(0)  # gone, mid-stream, without a goodbye
"""


def test_a_client_gone_mid_stream_frees_the_server_side(served):
    with lake.connect(served.url, token=served.tokens["admin"]) as adm:
        before = adm.status()
        out = subprocess.run(
            [sys.executable, "-c", DISCONNECT, served.url, served.tokens["admin"]],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert out.returncode == 0, out.stderr
        assert 0 < int(out.stdout.strip()) < BIG_ROWS
        assert wait_for(lambda: adm.status()["streaming"] == 0, timeout=60)
        assert wait_for(lambda: adm.status()["open_results"] == before["open_results"], timeout=60)
        # a result opened and never fetched is dropped after ticket_ttl_s
        client = fl.connect(served.url)
        cmd = fl.FlightDescriptor.for_command(
            pack(sql.CommandStatementQuery(query="SELECT * FROM sales.big"))
        )
        client.get_flight_info(cmd, opts(served.tokens["admin"]))
        assert adm.status()["open_results"] >= 1
        assert wait_for(lambda: adm.status()["open_results"] == 0, timeout=30)
        client.close()
        # the server still streams the whole result to the next client
        t = adm.sql("SELECT count(*) AS n, sum(i) AS s FROM sales.big")
        assert t.to_pylist() == [{"n": BIG_ROWS, "s": BIG_ROWS * (BIG_ROWS - 1) // 2}]
        assert adm.sql_reader("SELECT i FROM sales.big").read_all().num_rows == BIG_ROWS
    with (
        lake.connect(served.url, token=served.tokens["bob"]) as b,
        pytest.raises(AccessDenied, match="bob may not describe the server's status"),
    ):
        b.status()


def test_many_concurrent_clients(served):
    errors: list[BaseException] = []
    counts: list[tuple[str, list[int]]] = []

    def client(i: int) -> None:
        user = ("alice", "bob")[i % 2]
        kwargs = {"adbc.flight.sql.authorization_header": "Bearer " + served.tokens[user]}
        try:
            with adbc.connect(served.url, db_kwargs=kwargs, autocommit=True) as conn:
                for _ in range(8):
                    with conn.cursor() as cur:
                        cur.execute(
                            "SELECT id FROM sales.orders WHERE amount > ? ORDER BY id", (0.0,)
                        )
                        counts.append((user, [r[0] for r in cur.fetchall()]))
        except BaseException as e:  # noqa: BLE001 - collected and re-raised below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not errors, errors[:3]
    assert len(counts) == 24 * 8
    for user, ids in counts:
        assert ids == ([1, 3, 5] if user == "alice" else [2, 4, 6])


def test_failed_attempts_are_rate_limited_per_client_address(tmp_path):
    root = make_lake(tmp_path / "lake")
    write_toml(root, "[server]\nmax_failures = 3\nfailure_window_s = 4\n")
    s = ServedLake(root).start()
    try:
        good = s.token("alice")
        with lake.connect(s.url, token=good):
            pass
        for _ in range(3):
            with pytest.raises(AccessDenied, match="unauthenticated"):
                lake.connect(s.url, token="lkw_000000000000_" + "y" * 43)
        with pytest.raises(AccessDenied, match="unauthenticated"):
            lake.connect(s.url, token=good)  # blocked now, even with a good token
        time.sleep(4.5)
        with lake.connect(s.url, token=good) as a:
            assert a.user == "alice"
    finally:
        s.stop()


SLOW_WRITER = """
import sys, time
import pyarrow as pa
import lake
url, token = sys.argv[1], sys.argv[2]
schema = pa.schema([("id", pa.int64()), ("amount", pa.float64()), ("region", pa.string()), ("note", pa.string())])
def batches():
    for i in range(1000):
        n = 10_000
        ids = pa.array(range(1000 + i * n, 1000 + (i + 1) * n), pa.int64())
        yield pa.record_batch([ids, pa.array([1.0] * n), pa.array(["eu"] * n), pa.array(["x"] * n)], schema=schema)
        print("sent", i, flush=True)
        time.sleep(0.05)
with lake.connect(url, token=token) as lk:
    try:
        lk.write("sales.orders", pa.RecordBatchReader.from_batches(schema, batches()))
        print("COMMITTED", flush=True)
    except lake.errors.LakeError as e:
        print("ERROR", type(e).__name__, e, flush=True)
"""


def test_sigkill_during_a_doput_write_leaves_no_half_visible_data(tmp_path):
    root = make_lake(tmp_path / "lake")
    s = ServedLake(root).start()
    token = s.token("alice")
    writer = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, s.url, token],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        seen = 0
        for line in writer.stdout:
            if line.startswith("sent"):
                seen += 1
            if seen >= 20:
                break
        s.kill()  # SIGKILL, mid-stream
        rest = writer.communicate(timeout=120)[0]
    finally:
        if writer.poll() is None:
            writer.kill()
    assert "ERROR LakeError" in rest and "COMMITTED" not in rest
    with lake.connect(root) as lk:
        assert lk.sql("SELECT count(*) FROM sales.orders").column(0)[0].as_py() == 6
    s2 = ServedLake(root).start()
    try:
        with lake.connect(s2.url, token=token) as a:
            assert a.sql("SELECT count(*) FROM sales.orders").column(0)[0].as_py() == 3
            a.write(
                "sales.orders",
                pa.table({"id": [7], "amount": [1.0], "region": ["eu"], "note": ["z"]}),
            )
            assert a.sql("SELECT count(*) FROM sales.orders").column(0)[0].as_py() == 4
    finally:
        s2.stop()
