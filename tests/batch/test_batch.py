"""Batch jobs end to end: real Ray, real sandboxes (contract section 4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest

from lake.errors import AccessDenied, InvalidArgument, JobError

from support.batch import BATCH_TOML, ENV, batch_of, script, wait_for

TRAIN = """\
import json, os, signal, sys, time
import pyarrow as pa, pyarrow.parquet as pq

steps = int(os.environ.get("STEPS", "30"))
step_s = float(os.environ.get("STEP_S", "0.05"))
every = int(os.environ.get("CKPT_EVERY", "5"))
ck = "/opt/ml/checkpoints/state.json"
state = {"i": 0, "values": []}
if os.path.exists(ck):
    state = json.load(open(ck))
    print("resumed at", state["i"], flush=True)

def save():
    tmp = ck + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, ck)

signal.signal(signal.SIGTERM, lambda *a: (save(), sys.exit(0)))
while state["i"] < steps:
    time.sleep(step_s)
    i = state["i"]
    state["values"].append(i * i + (state["values"][-1] if state["values"] else 0))
    state["i"] = i + 1
    if state["i"] % every == 0:
        save()
    print("step", state["i"], flush=True)
out = os.environ.get("OUT", "scores")
if os.path.isdir(f"/opt/ml/output/{out}"):
    t = pa.table({"step": list(range(steps)), "value": state["values"],
                  "job": [os.environ["LAKE_JOB_ID"]] * steps})
    pq.write_table(t, f"/opt/ml/output/{out}/part-0.parquet")
print("done", flush=True)
"""

SCORES = pa.schema([("step", pa.int64()), ("value", pa.int64()), ("job", pa.string())])


def _scores_table(lk, name="ml.scores"):
    db = name.split(".")[0]
    if db not in [d.name for d in lk.catalog.list_databases()]:
        lk.catalog.create_database(db)
    lk.catalog.create_table(name, SCORES)


def _rows(lk, sql):
    return lk.sql(sql, user="etl").to_pylist()


# --- basics -----------------------------------------------------------------------------------


def test_submit_runs_in_sandbox_with_contract_env(make_lake, tmp_path):
    lk = make_lake()
    b = batch_of(lk)
    code = tmp_path / "src"
    script(
        code,
        "show.py",
        """\
        import os
        print("cwd", os.getcwd())
        print("ids", os.environ["LAKE_JOB_ID"], os.environ["LAKE_ATTEMPT"],
              os.environ["LAKE_PREEMPT_GRACE_S"], os.environ["K"])
        print("ckpt", os.path.isdir("/opt/ml/checkpoints"))
        try:
            open("/opt/ml/code/x", "w")
        except OSError:
            print("code is read-only")
        """,
    )
    job = b.submit(["python", "show.py"], user="etl", env={"K": "V", **ENV}, workdir=code)
    assert job.status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
    assert job.wait(timeout=60) == "SUCCEEDED"
    out = job.logs()
    assert "cwd /opt/ml/code" in out
    assert f"ids {job.id} 1 1 V" in out
    assert "ckpt True" in out
    assert "code is read-only" in out
    (a,) = job.attempts
    assert a.reason == "SUCCEEDED" and a.exit_code == 0
    assert b.get(job.id).status == "SUCCEEDED"
    assert [j.id for j in b.list(status="SUCCEEDED")] == [job.id]


def test_bad_job_specs_are_rejected_clearly(make_lake, tmp_path):
    lk = make_lake()
    b = batch_of(lk)
    cases = [
        (dict(command="python train.py"), JobError, "list of arguments"),
        (dict(command=[]), JobError, "non-empty"),
        (dict(command=["x"], cpus=0), JobError, "cpus"),
        (dict(command=["x"], cpus=64), JobError, "more than any compute environment"),
        (dict(command=["x"], memory="lots"), InvalidArgument, "memory"),
        (dict(command=["x"], memory="64TiB"), JobError, "more than a compute environment"),
        (dict(command=["x"], queue="nope"), InvalidArgument, "no queue 'nope'"),
        (dict(command=["x"], retries=-1), JobError, "retries"),
        (dict(command=["x"], timeout_s=0), JobError, "timeout_s"),
        (dict(command=["x"], array_size=1), JobError, "array_size"),
        (dict(command=["x"], workdir=tmp_path / "missing"), JobError, "not a folder"),
        (dict(command=["x"], image="/no/such/image.tar"), JobError, "does not exist"),
        (dict(command=["x"], env={"LAKE_JOB_ID": "1"}), JobError, "set by Lakeward"),
        (dict(command=["x"], retry_rules=[{"on_exit_code": "1*"}]), JobError, "action"),
        (dict(command=["x"], retry_rules=[{"action": "RETRY"}]), JobError, "needs on_exit_code"),
        (
            dict(command=["x"], retry_rules=[{"on_reason": "OOM", "action": "MAYBE"}]),
            JobError,
            "RETRY",
        ),
        (dict(command=["x"], depends_on=["nope"]), JobError, "unknown job"),
        (dict(command=["x"], depends_on=[{"type": "SEQUENTIAL"}]), JobError, "array job"),
        (dict(command=["x"], inputs={"o": "nodb.notable"}), JobError, "does not exist"),
        (dict(command=["x"], outputs={"o": "not-a-table"}), JobError, "database.table"),
        (dict(command=["x"], inputs={"../x": "a.b"}), JobError, "folder"),
    ]
    for kwargs, err, text in cases:
        with pytest.raises(err, match=text):
            b.submit(user="etl", **kwargs)
    with pytest.raises(InvalidArgument, match="user"):
        b.submit(["x"], user="")
    assert b.list() == []


def test_submit_needs_queue_grant_and_is_audited(make_lake):
    # (`p, etl, *, *, allow` would grant every queue too: `*` alone matches every resource.)
    policy = "p, etl, queue:default, submit, allow\np, etl, system.audit, select, allow\n"
    lk = make_lake(policy=policy)
    b = batch_of(lk)
    with pytest.raises(AccessDenied, match="queue"):
        b.submit(["true"], user="mallory")
    with pytest.raises(AccessDenied, match="queue"):
        b.submit(["true"], user="etl", queue="high")
    job = b.submit(["true"], user="etl")
    assert job.wait(timeout=60) == "SUCCEEDED"
    b.flush_audit()
    lk.audit.flush()
    rows = lk.sql(
        "SELECT a.user, a.decision, a.reason FROM system.audit a WHERE a.action = 'submit' "
        "ORDER BY a.seq",
        user="etl",
    ).to_pylist()
    assert [(r["user"], r["decision"]) for r in rows] == [
        ("mallory", "denied"),
        ("etl", "denied"),
        ("etl", "allowed"),
    ]
    assert job.id in rows[-1]["reason"]


# --- retries, timeouts, OOM -------------------------------------------------------------------


def test_retries_follow_rules(make_lake):
    b = batch_of(make_lake())
    flaky = ["sh", "-c", 'test "$LAKE_ATTEMPT" -ge 3 && exit 0; exit 13']
    job = b.submit(
        flaky, user="etl", retries=3, retry_rules=[{"on_exit_code": "1*", "action": "RETRY"}]
    )
    fatal = b.submit(
        ["sh", "-c", "exit 42"],
        user="etl",
        retries=3,
        retry_rules=[
            {"on_exit_code": "4?", "action": "EXIT"},
            {"on_reason": "*", "action": "RETRY"},
        ],
    )
    spent = b.submit(["sh", "-c", "exit 5"], user="etl", retries=1)
    assert job.wait(timeout=60) == "SUCCEEDED"
    assert [(a.exit_code, a.reason) for a in job.attempts] == [
        (13, "EXIT_CODE"),
        (13, "EXIT_CODE"),
        (0, "SUCCEEDED"),
    ]
    assert fatal.wait(timeout=60) == "FAILED"
    assert len(fatal.attempts) == 1 and "EXIT" in fatal.status_reason
    assert spent.wait(timeout=60) == "FAILED"
    assert [a.exit_code for a in spent.attempts] == [5, 5]


def test_timeout_sigterm_then_sigkill(make_lake):
    b = batch_of(make_lake())
    stubborn = [
        "python",
        "-c",
        "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
    ]
    t = time.monotonic()
    job = b.submit(stubborn, user="etl", timeout_s=1)
    assert job.wait(timeout=30) == "FAILED"
    assert time.monotonic() - t < 15
    (a,) = job.attempts
    assert a.reason == "TIMEOUT"
    assert a.signal == signal.SIGKILL or a.exit_code is None


def test_oom_is_its_own_reason(make_lake):
    b = batch_of(make_lake())
    hog = [
        "python",
        "-c",
        "x = bytearray(400 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); print('alive')",
    ]
    job = b.submit(
        hog,
        user="etl",
        memory="128MiB",
        retries=1,
        retry_rules=[{"on_reason": "OOM", "action": "EXIT"}],
    )
    assert job.wait(timeout=60) == "FAILED"
    (a,) = job.attempts
    assert a.reason == "OOM", (a, job.logs())


# --- preemption and checkpoints ---------------------------------------------------------------


def test_interrupt_resumes_from_checkpoint_and_commits_once(make_lake, tmp_path):
    lk = make_lake()
    b = batch_of(lk)
    _scores_table(lk)
    _scores_table(lk, "ml.reference")
    code = tmp_path / "src"
    script(code, "train.py", TRAIN)
    env = {**ENV, "STEPS": "40", "STEP_S": "0.05", "CKPT_EVERY": "5"}
    job = b.submit(
        ["python", "train.py"],
        user="etl",
        workdir=code,
        env=env,
        spot=True,
        checkpoint=True,
        outputs={"scores": "ml.scores"},
    )
    ref = b.submit(
        ["python", "train.py"],
        user="etl",
        workdir=code,
        env={**env, "OUT": "ref"},
        outputs={"ref": "ml.reference"},
        queue="high",
    )
    wait_for(lambda: "step 12\n" in job.logs(), timeout=60)
    b.interrupt(job.id)
    assert job.wait(timeout=60) == "SUCCEEDED"
    assert ref.wait(timeout=60) == "SUCCEEDED"
    first, second = job.attempts
    assert first.reason == "SPOT_INTERRUPTED" and first.compute == "spot"
    assert second.reason == "SUCCEEDED"
    assert "resumed at" in job.logs(attempt=2)
    resumed = int(job.logs(attempt=2).split("resumed at")[1].split()[0])
    assert resumed >= 10  # from the checkpoint, not from scratch
    got = _rows(lk, "SELECT step, value FROM ml.scores ORDER BY step")
    want = _rows(lk, "SELECT step, value FROM ml.reference ORDER BY step")
    assert got == want and len(got) == 40
    assert 0 < job.goodput <= 1
    assert len(job.work_lost) == 1 and job.work_lost[0] < 5 * 0.05 + 1.5
    assert [(r["direction"], r["table_name"]) for r in job.lineage] == [("write", "ml.scores")]


def test_spot_simulator_interrupts_spot_jobs_only(make_lake):
    extra = """
    [batch.compute.spot]
    cpus = 2
    notice_s = 0.5
    interruption_rate_per_hour = 36000
    """
    lk = make_lake(
        extra, base=BATCH_TOML.replace("[batch.compute.spot]\ncpus = 2\nnotice_s = 1\n", "")
    )
    b = batch_of(lk)
    spot = b.submit(["sleep", "30"], user="etl", spot=True)
    safe = b.submit(["sleep", "1"], user="etl", spot=False)
    wait_for(lambda: any(a.reason == "SPOT_INTERRUPTED" for a in spot.attempts), timeout=30)
    assert safe.wait(timeout=30) == "SUCCEEDED"
    assert [a.compute for a in safe.attempts] == ["on_demand"]
    spot.cancel()
    assert spot.wait(timeout=30) == "CANCELLED"
    assert spot.info["failures"] == 0  # interruptions never spend retries


# --- arrays and dependencies ------------------------------------------------------------------


def test_array_children_and_dependencies(make_lake):
    b = batch_of(make_lake())
    arr = b.submit(["sh", "-c", 'echo "index $LAKE_ARRAY_INDEX"'], user="etl", array_size=3)
    per = b.submit(
        ["sh", "-c", 'echo "child $LAKE_ARRAY_INDEX"'],
        user="etl",
        array_size=3,
        depends_on=[{"job_id": arr.id, "type": "N_TO_N"}],
    )
    seq = b.submit(
        ["sh", "-c", "sleep 0.2; date +%s.%N"],
        user="etl",
        array_size=3,
        depends_on=[{"type": "SEQUENTIAL"}],
    )
    after = b.submit(["true"], user="etl", depends_on=[arr.id])
    bad = b.submit(["false"], user="etl")
    doomed = b.submit(["true"], user="etl", depends_on=[bad.id])
    assert arr.wait(timeout=60) == "SUCCEEDED"
    for i in range(3):
        child = b.get(f"{arr.id}:{i}")
        assert child.status == "SUCCEEDED"
        assert f"index {i}" in child.logs()
    assert per.wait(timeout=60) == "SUCCEEDED"
    for i in range(3):
        c, dep = b.get(f"{per.id}:{i}"), b.get(f"{arr.id}:{i}")
        assert c.attempts[0].started_at >= dep.attempts[0].ended_at
    assert seq.wait(timeout=60) == "SUCCEEDED"
    kids = [b.get(f"{seq.id}:{i}").attempts[0] for i in range(3)]
    assert kids[0].ended_at <= kids[1].started_at and kids[1].ended_at <= kids[2].started_at
    assert after.wait(timeout=60) == "SUCCEEDED"
    assert after.attempts[0].started_at >= max(c.attempts[0].ended_at for c in arr.children)
    assert bad.wait(timeout=60) == "FAILED"
    assert doomed.wait(timeout=60) == "FAILED"
    assert "dependency" in doomed.status_reason and doomed.attempts == []


# --- chaos ------------------------------------------------------------------------------------


def test_killed_sandbox_is_retried_and_output_lands_once(make_lake, tmp_path):
    lk = make_lake()
    b = batch_of(lk)
    _scores_table(lk)
    code = tmp_path / "src"
    script(code, "train.py", TRAIN)
    job = b.submit(
        ["python", "train.py"],
        user="etl",
        workdir=code,
        retries=1,
        checkpoint=True,
        env={**ENV, "STEPS": "30", "STEP_S": "0.04"},
        outputs={"scores": "ml.scores"},
    )
    wait_for(lambda: "step 8\n" in job.logs(), timeout=60)
    (a,) = job.attempts
    os.kill(a.sandbox_pid, signal.SIGKILL)
    assert job.wait(timeout=60) == "SUCCEEDED"
    first, second = job.attempts
    # Without a memory cgroup the runtime cannot tell a stray SIGKILL from the OOM killer.
    assert first.reason in ("KILLED", "OOM") and second.reason == "SUCCEEDED"
    assert job.info["failures"] == 1
    assert _rows(lk, "SELECT count(*) AS n FROM ml.scores") == [{"n": 30}]


@pytest.mark.parametrize("spot", [False, True])
def test_killed_ray_worker_requeues_without_spending_retries(make_lake, tmp_path, spot):
    # A lost worker or node is NODE_LOST; on spot capacity it is what a spot interruption is.
    lk = make_lake()
    b = batch_of(lk)
    _scores_table(lk)
    code = tmp_path / "src"
    script(code, "train.py", TRAIN)
    job = b.submit(
        ["python", "train.py"],
        user="etl",
        workdir=code,
        retries=0,
        checkpoint=True,
        spot=spot,
        env={**ENV, "STEPS": "60", "STEP_S": "0.04"},
        outputs={"scores": "ml.scores"},
    )
    wait_for(lambda: "step 8\n" in job.logs(), timeout=60)
    (a,) = job.attempts
    os.kill(a.worker_pid, signal.SIGKILL)
    assert job.wait(timeout=60) == "SUCCEEDED"
    reasons = [x.reason for x in job.attempts]
    assert reasons == ["SPOT_INTERRUPTED" if spot else "NODE_LOST", "SUCCEEDED"]
    assert _rows(lk, "SELECT count(*) AS n FROM ml.scores") == [{"n": 60}]


def test_output_commit_is_idempotent_per_job(make_lake, tmp_path):
    from batch.lakeio import commit_outputs

    lk = make_lake()
    _scores_table(lk)
    out = tmp_path / "out" / "scores"
    out.mkdir(parents=True)
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"step": [1, 2], "value": [1, 4], "job": ["j", "j"]}), out / "p.parquet"
    )
    first = commit_outputs(lk.batch.port, "etl", "j", {"scores": "ml.scores"}, tmp_path / "out")
    again = commit_outputs(lk.batch.port, "etl", "j", {"scores": "ml.scores"}, tmp_path / "out")
    assert first["scores"]["skipped"] is False and again["scores"]["skipped"] is True
    assert _rows(lk, "SELECT count(*) AS n FROM ml.scores") == [{"n": 2}]


# --- inputs, state from another process, fair share --------------------------------------------


def test_inputs_are_governed_snapshots_with_lineage(make_lake, tmp_path):
    policy = (
        "p, etl, *, *, allow\np, etl, queue:*, submit, allow\n"
        "p, ana, queue:default, submit, allow\n"
        "p2, ana, sales.orders, eu, \"region = 'eu'\", *\n"
    )
    lk = make_lake(policy=policy)
    b = batch_of(lk)
    lk.catalog.create_database("sales")
    lk.catalog.create_table(
        "sales.orders", pa.schema([("id", pa.int64()), ("region", pa.string())])
    )
    lk.write("sales.orders", pa.table({"id": [1, 2, 3], "region": ["eu", "us", "eu"]}), user="etl")
    count = [
        "python",
        "-c",
        "import pyarrow.parquet as pq; t = pq.read_table('/opt/ml/input/data/orders'); "
        "print('rows', t.num_rows, sorted(set(t.column('region').to_pylist())))",
    ]
    job = b.submit(count, user="ana", inputs={"orders": "sales.orders"})
    assert job.wait(timeout=60) == "SUCCEEDED", job.logs()
    assert "rows 2 ['eu']" in job.logs()
    (lin,) = job.lineage
    assert (lin["direction"], lin["table_name"], lin["user"], lin["version"]) == (
        "read",
        "sales.orders",
        "ana",
        1,
    )


def test_a_submission_is_decided_under_one_read_of_the_policy(make_lake):
    """Queue grant, input select, output insert: one version of the policy decides them all."""
    lk = make_lake(policy="p, etl, *, *, allow\np, etl, queue:*, submit, allow\n")
    b = batch_of(lk)
    b.autostart = False
    lk.catalog.create_database("sales")
    for t in ("orders", "totals"):
        lk.catalog.create_table(f"sales.{t}", pa.schema([("id", pa.int64())]))
    store = lk.gate.catalog.store
    plain, me, reads = store.policy_seq, threading.get_ident(), []

    def counted():
        if threading.get_ident() == me:
            reads.append(1)
        return plain()

    store.policy_seq = counted
    try:
        b.submit(
            ["true"],
            user="etl",
            inputs={"orders": "sales.orders"},
            outputs={"totals": "sales.totals"},
        )
    finally:
        store.policy_seq = plain
    assert len(reads) == 1


def test_states_visible_from_another_process(make_lake):
    lk = make_lake()
    b = batch_of(lk)
    job = b.submit(["sleep", "0.2"], user="etl")
    assert job.wait(timeout=60) == "SUCCEEDED"
    probe = (
        "import sys, lake\n"
        "from batch.api import Batch\n"
        "lk = lake.connect(sys.argv[1])\n"
        "b = lk.batch\n"
        "j = b.get(sys.argv[2])\n"
        "print(j.status, [a.reason for a in j.attempts])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(lk.root), job.id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == "SUCCEEDED ['SUCCEEDED']", out.stderr


def test_fair_share_converges_to_weights(make_lake):
    extra = """
    [batch.queues.shared]
    priority = 1
    compute = ["on_demand"]
    [batch.queues.shared.weights]
    alice = 3
    bob = 1
    """
    b = batch_of(make_lake(extra))
    jobs = {
        u: [b.submit(["sleep", "0.15"], user=u, queue="shared") for _ in range(24)]
        for u in ("alice", "bob")
    }
    wait_for(lambda: all(j.status == "SUCCEEDED" for j in jobs["alice"]), timeout=120)
    done_bob = sum(j.status == "SUCCEEDED" for j in jobs["bob"])
    # While both had work queued, alice got ~3 slots for each of bob's.
    assert 5 <= done_bob <= 12, done_bob
    for j in jobs["bob"]:
        j.cancel()


def test_interrupted_after_writing_output_commits_once(make_lake):
    lk = make_lake()
    b = batch_of(lk)
    _scores_table(lk)
    write_then_wait = [
        "python",
        "-c",
        "import os, time, pyarrow as pa, pyarrow.parquet as pq\n"
        "t = pa.table({'step': [1, 2, 3], 'value': [1, 4, 9], 'job': [os.environ['LAKE_JOB_ID']] * 3})\n"
        "pq.write_table(t, '/opt/ml/output/scores/part-0.parquet')\n"
        "print('written', flush=True)\n"
        # attempt 1 waits for its interruption (its log reaches an object store a beat late)
        "time.sleep(10.0 if os.environ['LAKE_ATTEMPT'] == '1' else 0.1)\n",
    ]
    job = b.submit(write_then_wait, user="etl", spot=True, outputs={"scores": "ml.scores"}, env=ENV)
    wait_for(lambda: "written" in job.logs(), timeout=60)
    b.interrupt(job.id)
    assert job.wait(timeout=60) == "SUCCEEDED"
    assert [a.reason for a in job.attempts] == ["SPOT_INTERRUPTED", "SUCCEEDED"]
    assert _rows(lk, "SELECT count(*) AS n FROM ml.scores") == [{"n": 3}]
    assert job.outputs_committed["scores"]["rows"] == 3
