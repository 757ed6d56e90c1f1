"""Batch jobs through the server: the remote client uploads the workdir, the server schedules,
jobs act for the authenticated principal; Ray listens on loopback only and a job granted the
network still cannot reach it, the metadata store or the server."""

from __future__ import annotations

import json
import textwrap
import time

import psutil
import pytest

import lake
from lake.errors import AccessDenied, JobError

from support.batch import BATCH_TOML, PY
from support.server import ServedLake, make_lake, write_toml


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = make_lake(tmp_path_factory.mktemp("batch") / "lake")
    write_toml(root, BATCH_TOML + "\n[server]\nmax_failures = 1000\n")
    s = ServedLake(root).start()
    s.tokens = {u: s.token(u) for u in ("alice", "bob")}
    yield s
    s.stop()


def listening(pid: int) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every TCP listener of a process and its children."""
    procs = {pid} | {p.pid for p in psutil.Process(pid).children(recursive=True)}
    out = []
    for c in psutil.net_connections("tcp"):
        if c.status == psutil.CONN_LISTEN and c.pid in procs:
            try:
                name = psutil.Process(c.pid).name()
            except psutil.Error:
                name = "?"
            out.append((c.laddr.ip, c.laddr.port, name))
    return out


def test_remote_jobs_upload_their_workdir_and_act_for_the_principal(served, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "main.py").write_text(
        textwrap.dedent(
            """
            import glob, sys
            import pyarrow.parquet as pq
            rows = sum(pq.read_table(f).num_rows for f in glob.glob("/opt/ml/input/data/orders/*.parquet"))
            print("hello from the workdir", sys.argv[1], "rows", rows)
            """
        )
    )
    with lake.connect(served.url, token=served.tokens["alice"]) as a:
        job = a.batch.submit(
            [PY, "main.py", "remote"],
            workdir=code,
            inputs={"orders": "sales.orders"},
            env={"PYTHONUNBUFFERED": "1"},
        )
        assert job.user == "alice"
        assert job.wait(timeout=240) == "SUCCEEDED", job.logs()
        assert "hello from the workdir remote rows 3" in job.logs()  # alice's governed view
        assert job.attempts[0].exit_code == 0 and job.attempts[0].log_dir is None
        assert a.batch.get(job.id).status == "SUCCEEDED"
        assert job.id in [j.id for j in a.batch.list()]
        sleeper = a.batch.submit([PY, "-c", "import time; time.sleep(120)"])
        sleeper.cancel()
        assert sleeper.wait(timeout=120) == "CANCELLED"
        with pytest.raises(AccessDenied, match="may not act as bob"):
            a.batch.list(user="bob")
        with pytest.raises(Exception, match="image 'host'"):
            a.batch.submit(["true"], image="/")
    with lake.connect(served.url, token=served.tokens["bob"]) as b:
        with pytest.raises(JobError, match="no batch job"):
            b.batch.get(job.id)  # not his, and no describe on the queue
        assert job.id not in [j.id for j in b.batch.list()]
        with pytest.raises(AccessDenied, match="network access"):
            b.batch.submit(["true"], network=True)  # the network is an explicit grant


NETWORK_PROBE = """
import json, socket, sys, os
targets = json.loads(sys.argv[1])
reached = []
for host in ("127.0.0.1", "10.0.2.2"):
    for port in targets:
        try:
            socket.create_connection((host, port), timeout=1).close()
            reached.append([host, port])
        except OSError:
            pass
names = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
store = sys.argv[2]
print(json.dumps({"reached": reached, "interfaces": sorted(names), "store_visible": os.path.exists(store)}))
"""


def test_ray_listens_on_loopback_only_and_a_networked_job_cannot_reach_it(served):
    with lake.connect(served.url, token=served.tokens["alice"]) as a:
        first = a.batch.submit([PY, "-c", "print('warm up')"])
        assert first.wait(timeout=240) == "SUCCEEDED"
        found = listening(served.proc.pid)
        names = {n for _a, _p, n in found}
        assert any("raylet" in n or "gcs" in n for n in names), found  # Ray runs in the server
        for address, port, name in found:
            assert address in ("127.0.0.1", "::ffff:127.0.0.1", "::1"), (address, port, name)
        ports = sorted({p for _a, p, _n in found})
        assert served.port in ports
        store = str(served.root / "_lakeward" / "catalog.db")
        job = a.batch.submit([PY, "-c", NETWORK_PROBE, json.dumps(ports), store], network=True)
        assert job.wait(timeout=240) == "SUCCEEDED", job.logs()
        seen = json.loads(job.logs(stream="stdout", attempt=1).strip().splitlines()[-1])
    assert "tap0" in seen["interfaces"]  # the job was granted a network
    assert seen["reached"] == []  # but not Ray, the server or anything else on loopback
    assert seen["store_visible"] is False


def test_remote_interrupt_requeues_a_spot_job_and_outputs_commit_once(served, tmp_path):
    code = tmp_path / "spot"
    code.mkdir()
    (code / "job.py").write_text(
        textwrap.dedent(
            """
            import os, time
            import pyarrow as pa, pyarrow.parquet as pq
            attempt = int(os.environ["LAKE_ATTEMPT"])
            print("attempt", attempt, "running", flush=True)
            if attempt == 1:
                time.sleep(120)  # interrupted here
            os.makedirs("/opt/ml/output/rows", exist_ok=True)
            pq.write_table(
                pa.table({"id": [900], "amount": [9.0], "region": ["eu"], "note": ["spot"]}),
                "/opt/ml/output/rows/part.parquet",
            )
            """
        )
    )
    with lake.connect(served.url, token=served.tokens["alice"]) as a:
        job = a.batch.submit(
            [PY, "job.py"], workdir=code, spot=True, outputs={"rows": "sales.orders"}
        )
        deadline = time.monotonic() + 120
        while "attempt 1 running" not in job.logs() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert job.status == "RUNNING"
        a.batch.interrupt(job.id)
        assert job.wait(timeout=240) == "SUCCEEDED", job.logs()
        assert [x.reason for x in job.attempts] == ["SPOT_INTERRUPTED", "SUCCEEDED"]
        assert job.outputs_committed["rows"]["rows"] == 1
        got = a.sql("SELECT id, note FROM sales.orders WHERE id = 900").to_pylist()
        assert got == [{"id": 900, "note": "spot"}]
        a.delete("sales.orders", "id = 900")
    with (
        lake.connect(served.url, token=served.tokens["bob"]) as b,
        pytest.raises(JobError, match="no batch job"),
    ):
        b.batch.interrupt(job.id)
