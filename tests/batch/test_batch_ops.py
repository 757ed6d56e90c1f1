"""Batch operations: cron schedules, the CLI, queues, cancel, scheduler takeover and the actor."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

import lake
from lake.errors import InvalidArgument, JobError

from support.batch import batch_of, wait_for


def test_cron_parser():
    from batch.cron import parse_cron

    t = datetime(2026, 11, 27, 19, 50, tzinfo=UTC)  # a Friday
    assert parse_cron("*/15 9-17 * * mon-fri").next(t) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert parse_cron("@daily").next(t) == datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
    assert parse_cron("0 0 29 2 *").next(t) == datetime(2028, 2, 29, tzinfo=UTC)
    assert parse_cron("* * * * *").next(t) == datetime(2026, 11, 27, 19, 51, tzinfo=UTC)
    assert parse_cron("30 2 1,15 * *").next(t) == datetime(2026, 12, 1, 2, 30, tzinfo=UTC)
    for bad, field in [("61 * * * *", "minute"), ("* 25 * * *", "hour"), ("* * * 13 *", "month")]:
        with pytest.raises(InvalidArgument, match=field):
            parse_cron(bad)
    with pytest.raises(InvalidArgument, match="5 fields"):
        parse_cron("* * *")


def test_schedule_submits_when_due(make_lake):
    b = batch_of(make_lake())
    s = b.schedule("tick", "*/5 * * * *", ["sh", "-c", "echo tick"], user="etl")
    assert s["next_run"] > datetime.now(UTC)
    with pytest.raises(InvalidArgument, match="cron"):
        b.schedule("bad", "every minute", ["true"], user="etl")
    with pytest.raises(JobError, match="cpus"):
        b.schedule("big", "* * * * *", ["true"], user="etl", cpus=999)
    from batch.store import schedules

    with b.store.write() as conn:  # make it due now rather than waiting for the clock
        conn.execute(schedules.update().values(next_run=time.time() - 1))
    fired = datetime.now(UTC)
    b.start()
    job_id = wait_for(lambda: b.schedules()[0]["last_job"], timeout=30)
    job = b.get(job_id)
    assert job.wait(timeout=60) == "SUCCEEDED"
    assert job.info["schedule"] == "tick"
    assert "tick" in job.logs()
    # The next run is the first */5 minute after the one that fired (comparing with "now"
    # instead would fail when the test crosses a five-minute boundary).
    nxt = b.schedules()[0]["next_run"]
    assert nxt > fired and nxt.minute % 5 == 0 and nxt.second == 0
    b.unschedule("tick")
    assert b.schedules() == []


def test_queue_priority_then_fifo(make_lake):
    extra = """
    [batch.queues.low]
    priority = 1
    compute = ["on_demand"]
    """
    b = batch_of(make_lake(extra))
    b.autostart = False
    low = [b.submit(["sleep", "0.3"], user="etl", queue="low") for _ in range(2)]
    high = [b.submit(["sleep", "0.3"], user="etl", queue="high") for _ in range(2)]
    assert all(j.status == "SUBMITTED" for j in low + high)
    b.start()
    for j in low + high:
        assert j.wait(timeout=60) == "SUCCEEDED"

    # Dispatch order is the scheduler's decision (when each attempt was launched); when a
    # sandbox then starts depends on how warm its Ray worker was.
    def dispatched(j):
        return b.store.attempts(j.id)[0]["created_at"]

    assert max(dispatched(j) for j in high) < min(dispatched(j) for j in low)


def test_cancel_running_and_waiting_jobs(make_lake):
    b = batch_of(make_lake())
    running = b.submit(["sleep", "30"], user="etl")
    wait_for(lambda: running.status == "RUNNING", timeout=30)
    waiting = b.submit(["true"], user="etl", depends_on=[running.id])
    t = time.monotonic()
    running.cancel()
    assert running.wait(timeout=30) == "CANCELLED"
    assert time.monotonic() - t < 10
    assert running.attempts[0].reason == "CANCELLED"
    assert waiting.wait(timeout=30) == "FAILED"
    with pytest.raises(JobError, match="only a running job"):
        b.interrupt(running.id)
    with pytest.raises(JobError, match="no batch job"):
        b.get("nope")


def test_jobs_survive_the_client_and_a_lost_scheduler(make_lake):
    lk = make_lake()
    submit = (
        "import sys, lake\n"
        "from batch.api import Batch\n"
        "lk = lake.connect(sys.argv[1])\n"
        "b = lk.batch\n"
        "b.autostart = False\n"
        "print(b.submit(['sh', '-c', 'echo from $LAKE_ATTEMPT'], user='etl').id)\n"
        "b.close(); lk.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", submit, str(lk.root)], capture_output=True, text=True, timeout=60
    )
    job_id = out.stdout.strip()
    assert job_id, out.stderr
    b = batch_of(lk)
    job = b.get(job_id)
    assert job.status == "SUBMITTED"
    # A scheduler that died holding the lease, with the job's attempt launched.
    dead = f"{socket.gethostname()}:{2**22 + 7}:1:abcdef"  # this host, no such pid
    b.store.update_job(job_id, status="RUNNABLE")
    assert b.store.start_attempt(job_id, 1, "on_demand", dead, str(b.paths.attempt(job_id, 1)))
    with b.store.write() as conn:
        from batch.store import leases

        conn.execute(
            leases.insert().values(name="scheduler", owner=dead, expires_at=time.time() - 1)
        )
    assert job.wait(timeout=60) == "SUCCEEDED"
    first, second = job.attempts
    assert first.reason == "SPOT_INTERRUPTED" and "gone" in first.detail
    assert second.reason == "SUCCEEDED" and "from 2" in job.logs()


@pytest.mark.local_disk  # the CLI's --root is a local folder
def test_cli_job_and_queue_commands(make_lake, tmp_path):
    from lake.cli.batch import job_app, queue_app

    lk = make_lake()
    root = str(lk.root)
    runner = CliRunner()
    r = runner.invoke(
        job_app,
        [
            "submit",
            "--root",
            root,
            "-u",
            "etl",
            "--wait",
            "--retries",
            "1",
            "--",
            "sh",
            "-c",
            "echo hi",
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    assert "SUCCEEDED" in r.output
    job_id = r.output.split("submitted ")[1].split()[0]
    r = runner.invoke(job_app, ["status", job_id, "--root", root], catch_exceptions=False)
    assert r.exit_code == 0 and "SUCCEEDED" in r.output and "goodput" in r.output
    r = runner.invoke(job_app, ["logs", job_id, "--root", root, "--follow"], catch_exceptions=False)
    assert "hi" in r.output
    r = runner.invoke(job_app, ["list", "--root", root], catch_exceptions=False)
    assert job_id in r.output
    r = runner.invoke(job_app, ["interrupt", job_id, "--root", root], catch_exceptions=False)
    assert r.exit_code == 1 and "only a running job" in r.output
    r = runner.invoke(job_app, ["cancel", "nope", "--root", root], catch_exceptions=False)
    assert r.exit_code == 1 and "no batch job" in r.output
    r = runner.invoke(queue_app, ["list", "--root", root], catch_exceptions=False)
    assert r.exit_code == 0 and "default" in r.output and "spot" in r.output
    r = runner.invoke(
        job_app,
        ["submit", "--root", root, "-u", "etl", "--cpus", "99", "--", "true"],
        catch_exceptions=False,
    )
    assert r.exit_code == 1 and "cpus" in r.output


def test_detached_actor_scheduler(make_lake):
    import ray

    from batch.actor import actor_name

    lk = make_lake('\n[batch]\nscheduler = "actor"\n', base="")
    b = lk.batch  # scheduler = "actor": the lake hands it a factory to open itself again
    try:
        job = b.submit(["sh", "-c", "echo actor"], user="etl")
        assert b._scheduler is None  # nothing runs in this process
        assert job.wait(timeout=90) == "SUCCEEDED"
        assert "actor" in job.logs()
        assert ray.get_actor(actor_name(b.store.url), namespace="lakeward") is not None
    finally:
        with pytest.raises(ValueError):
            ray.kill(ray.get_actor(actor_name(b.store.url), namespace="lakeward"))
            raise ValueError("killed")
        b.close()


def test_spot_demo_resumes_and_commits_once(make_lake):
    from batch.demo import run_spot_demo

    lk = make_lake()
    b = batch_of(lk)
    said: list[str] = []
    out = run_spot_demo(b, lk.catalog, lambda q, u: lk.sql(q, user=u), say=said.append)
    assert out["status"] == "SUCCEEDED" and out["rows"] == 40
    job = b.get(out["job"])
    assert [a.reason for a in job.attempts] == ["SPOT_INTERRUPTED", "SUCCEEDED"]
    resumed = job.logs(attempt=2).split("resuming from checkpoint at step ")[1].split()[0]
    assert int(resumed) >= 20
    assert any("goodput" in line for line in said)


def test_one_leader_among_schedulers(make_lake):

    lk = make_lake()
    other = lake.connect(lk.root)
    b1, b2 = batch_of(lk), other.batch
    try:
        b1.start()
        b2.start()
        jobs = [(b1 if i % 2 else b2).submit(["true"], user="etl") for i in range(8)]
        for j in jobs:
            assert j.wait(timeout=60) == "SUCCEEDED"
            assert len(j.attempts) == 1
        assert b1._scheduler.leader != b2._scheduler.leader
        assert b1.scheduler_alive() and b2.scheduler_alive()
    finally:
        b2.close()
        other.close()


def test_batch_config_from_lake_toml():
    from batch.config import load_batch_config, parse_memory

    cfg = load_batch_config(
        {
            "batch": {
                "preempt_grace_s": 3,
                "compute": {"spot": {"cpus": 8, "interruption_rate_per_hour": 2, "notice_s": 5}},
                "queues": {"ml": {"priority": 5, "compute": ["spot"], "weights": {"alice": 2}}},
            }
        }
    )
    assert cfg.preempt_grace_s == 3 and cfg.compute["on_demand"].notice_s == 3
    assert cfg.compute["spot"].cpus == 8 and cfg.compute["spot"].notice_s == 5
    assert cfg.queues["ml"].weight("alice") == 2 and cfg.queues["ml"].weight("bob") == 1
    assert "default" in cfg.queues
    for bad, text in [
        ({"batch": {"grace": 1}}, r"\[batch\] has unknown key 'grace'; known: compute,"),
        ({"batch": {"compute": {"gpu": {}}}}, r"\[batch.compute\] has unknown key 'gpu'"),
        (
            {"batch": {"queues": {"q": {"compute": ["cloud"]}}}},
            r"\[batch.queues.q.compute\] 0: .*'spot'",
        ),
        (
            {"batch": {"compute": {"spot": {"cpus": -1}}}},
            r"\[batch.compute.spot\] cpus: input should be greater than or equal to 0",
        ),
        (
            {"batch": {"scheduler": "cron"}},
            r"\[batch\] scheduler: input should be 'thread' or 'actor'",
        ),
        (
            {"batch": {"queues": {"q": {"priority": "high"}}}},
            r"priority: input should be a valid integer",
        ),
    ]:
        with pytest.raises(InvalidArgument, match=text) as e:
            load_batch_config(bad)
        assert "\n" not in str(e.value)  # one problem, one line
    with pytest.raises(InvalidArgument) as e:  # every problem, one line each
        load_batch_config({"batch": {"grace": 1, "scheduler": "cron", "compute": {"gpu": {}}}})
    assert len(str(e.value).splitlines()) == 3
    assert parse_memory("1GiB") == 2**30 and parse_memory("512Mi") == 2**29
    assert parse_memory("2GB") == 2 * 10**9 and parse_memory(4096) == 4096
    with pytest.raises(InvalidArgument, match="memory"):
        parse_memory("1 parsec")


def test_outcomes_and_retry_rules_without_ray():
    from batch.outcome import classify, transition
    from batch.spec import Definition, check_rules

    rules = check_rules(
        [{"on_reason": "OOM", "action": "EXIT"}, {"on_exit_code": "1*", "action": "RETRY"}]
    )
    d = Definition(["x"], retries=2, retry_rules=rules, timeout_s=5)
    job = {
        "result": {},
        "useful_s": 0.0,
        "total_s": 0.0,
        "interruptions": 0,
        "failures": 0,
        "control": None,
    }
    ran = {"started_at": 100.0, "ended_at": 110.0, "stop": None}
    lost = classify(
        {"lost": "node died", "started_at": 100.0, "ended_at": 110.0, "last_checkpoint": 107.0},
        d,
        99,
    )
    assert (lost.reason, lost.useful, lost.lost) == ("SPOT_INTERRUPTED", 7.0, 3.0)
    v = transition(lost, job, d)
    assert v["status"] == "RUNNABLE" and "failures" not in v and v["result"]["lost_s"] == [3.0]
    oom = classify({**ran, "code": None, "signal": 9, "runtime_reason": "OOM"}, d, 99)
    assert transition(oom, job, d)["status"] == "FAILED"
    code = classify({**ran, "code": 12, "runtime_reason": "EXIT_CODE"}, d, 99)
    assert transition(code, job, d)["status"] == "RUNNABLE"
    assert transition(code, {**job, "failures": 2}, d)["status"] == "FAILED"
    timeout = classify({**ran, "stop": "TIMEOUT", "code": None, "signal": 15}, d, 99)
    assert timeout.reason == "TIMEOUT" and timeout.useful == 0.0
    assert transition(lost, {**job, "control": "CANCEL"}, d)["status"] == "CANCELLED"
