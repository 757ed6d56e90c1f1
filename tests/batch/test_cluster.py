"""Jobs on the 2-node test cluster (scripts/ray_cluster.sh: head 1 CPU, worker node 3 CPUs).

Run with LAKE_TEST_RAY set (`make test` does, in its cluster part); skipped otherwise. These
tests kill the worker node, so they run on their own, after the other batch tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pytest

from support.batch import BATCH_TOML

pytestmark = [pytest.mark.cluster, pytest.mark.chaos, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
# Attempt 1 writes its output, then runs until its node is killed; attempt 2 writes and ends.
JOB = """
import os, time
import pyarrow as pa, pyarrow.parquet as pq
pq.write_table(pa.table({"v": [int(os.environ["LAKE_ATTEMPT"])]}), "/opt/ml/output/out/part.parquet")
if os.environ["LAKE_ATTEMPT"] == "1":
    print("on the worker node", flush=True)
    time.sleep(600)
"""
TOML = BATCH_TOML.replace(
    "[batch.compute.on_demand]\ncpus = 2", "[batch.compute.on_demand]\ncpus = 3"
).replace("[batch.compute.spot]\ncpus = 2", "[batch.compute.spot]\ncpus = 1")


@pytest.fixture
def cluster_dir() -> Path:
    if not os.environ.get("LAKE_TEST_RAY"):
        pytest.skip("no test Ray cluster: run `make test` or scripts/ray_cluster.sh run ...")
    return Path(os.environ["LAKE_TEST_RAY_DIR"])


def raylet_pid(cluster: Path) -> int:
    """The PID of the worker node's raylet (found by the port the script gave it)."""
    port = (cluster / "worker.env").read_text().strip().split("=")[1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"raylet") and f"--node_manager_port={port}".encode() in cmd:
            return int(entry.name)
    raise AssertionError("the worker node's raylet is not running")


def wait_for(what, timeout: float = 180.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(every)
    raise AssertionError("timed out waiting")


def test_killed_worker_node_requeues_the_job_as_node_lost_and_commits_once(
    make_lake, ray_session, cluster_dir, tmp_path
):
    import ray

    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    lk = make_lake(base=TOML)
    lk.catalog.create_database("ml")
    lk.catalog.create_table("ml.out", pa.schema([("v", pa.int64())]))
    code = tmp_path / "code"
    code.mkdir()
    (code / "job.py").write_text(JOB)
    job = lk.batch.submit(
        ["python", "job.py"],
        workdir=str(code),
        cpus=3,  # only the worker node has 3 CPUs
        memory="256MiB",
        retries=0,
        outputs={"out": "ml.out"},
    )
    wait_for(lambda: "on the worker node" in job.logs(), timeout=120)
    os.kill(raylet_pid(cluster_dir), signal.SIGKILL)
    first = wait_for(lambda: [a for a in job.attempts if a.reason], timeout=180)[0]
    assert first.reason == "NODE_LOST", first
    # The job waits for capacity that only the worker node has: bring it back.
    subprocess.run(
        ["bash", str(REPO / "scripts" / "ray_cluster.sh"), "worker", str(cluster_dir)],
        check=True,
        timeout=120,
    )
    assert job.wait(timeout=240) == "SUCCEEDED", job.attempts
    attempts = job.attempts
    assert [a.reason for a in attempts] == ["NODE_LOST", "SUCCEEDED"]
    assert lk.batch.get(job.id).status == "SUCCEEDED"  # with retries=0: no retry was spent
    assert lk.sql("SELECT v FROM ml.out")["v"].to_pylist() == [2]  # committed once


def scheduler_actor(store_url: str):
    """The lake's detached scheduler actor on the cluster, or None."""
    import ray

    from batch.actor import actor_name

    try:
        return ray.get_actor(actor_name(store_url), namespace="lakeward")
    except ValueError:
        return None


def test_no_scheduler_actor_is_left_after_close(make_lake, ray_session, cluster_dir):
    import lake

    first = make_lake(base=TOML, name="actorlake")
    root = first.root
    first.close()
    with lake.connect(root, ray_address=os.environ["LAKE_TEST_RAY"]) as lk:
        url = lk.store.url
        job = lk.batch.submit(["python", "-c", "print('hi')"], cpus=1, memory="128MiB")
        assert job.wait(timeout=120) == "SUCCEEDED"
        assert scheduler_actor(url) is not None, "with ray_address the scheduler is an actor"
    assert wait_for(lambda: scheduler_actor(url) is None, timeout=60)
