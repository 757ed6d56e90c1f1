"""The batch CLI end to end: progress a person can follow, --user checks, a missing sandbox.

The first tests run the real `lake` in a subprocess on a cold lake (it starts its own Ray), at
80 columns, as a user would; the others use the shared Ray in-process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lake
from lake.cli import app

from support.batch import BATCH_TOML, batch_of, script

pytestmark = [pytest.mark.ray, pytest.mark.sandbox]
LAKE = [sys.executable, "-c", "from lake.cli import main; main()"]
RAY_NOISE = ("SIGTERM handler", "Token authentication", "Started a local Ray", "INFO worker")

TRAIN = """\
import json, os, signal, sys, time
ck = "/opt/ml/checkpoints/state.json"
step = json.load(open(ck))["step"] if os.path.exists(ck) else 0
if step:
    print(f"resuming from checkpoint at step {step}", flush=True)
def save():
    json.dump({"step": step}, open(ck, "w"))
signal.signal(signal.SIGTERM, lambda *_: (save(), print("notice: checkpointed", flush=True), sys.exit(0)))
while step < 40:
    time.sleep(0.05)
    step += 1
    if step % 10 == 0:
        save()
        print(f"step {step}: checkpoint saved", flush=True)
print("training done", flush=True)
"""


def env_80(path: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKE_", "RAY_"))}
    env.update(COLUMNS="80", PYTHONUNBUFFERED="1")
    if path is not None:
        env["PATH"] = path
    return env


def new_lake(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    root.mkdir()
    (root / "lake.toml").write_text(BATCH_TOML)
    return root


@pytest.mark.slow
def test_submit_wait_follow_with_an_interruption_at_80_columns(tmp_path):
    root = new_lake(tmp_path)
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(TRAIN)
    args = ["job", "submit", "--root", str(root), "-u", "etl", "--spot", "--checkpoint"]
    args += ["--workdir", str(code), "--follow", "--name", "train", "--", "python", "train.py"]
    proc = subprocess.Popen(
        [*LAKE, *args], env=env_80(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        with lake.connect(root) as lk:
            b = lk.batch
            b.autostart = False  # the CLI's process schedules; this one only interrupts
            deadline = time.monotonic() + 180  # a cold Ray on a loaded machine is slow
            while time.monotonic() < deadline and proc.poll() is None:
                jobs = b.list()
                if jobs and "step 10:" in jobs[0].logs():
                    break
                time.sleep(0.1)
            else:
                proc.kill()
                pytest.fail(f"the job never reached step 10:\n{proc.communicate()[0]}")
            b.interrupt(jobs[0].id)
        out, _ = proc.communicate(timeout=90)
    finally:
        proc.kill()
    (tmp_path / "screen.txt").write_text(out)
    assert proc.returncode == 0, out
    assert all(len(ln) <= 80 for ln in out.splitlines()), out
    for noise in RAY_NOISE:
        assert noise not in out, out
    events = re.findall(r"^\d\d:\d\d:\d\d (\w+)", out, re.M)
    assert events[0] == "SUBMITTED" and events[-1] == "SUCCEEDED", out
    assert all(a != b for a, b in zip(events, events[1:], strict=False)), out  # once per change
    i = events.index("INTERRUPTED")
    assert "RUNNING" in events[:i] and events[i + 1] == "REQUEUED", out
    assert events.count("INTERRUPTED") == 1 and events[i + 2 :].count("RUNNING") <= 1, out
    assert re.search(r"INTERRUPTED +attempt 1 \(spot interruption\) after [\d.]+ s", out), out
    assert "REQUEUED    attempt 2 will run next" in out, out
    assert "starting a local Ray for this lake" in out, out  # the cold start, said
    assert "step 10: checkpoint saved" in out and "resuming from checkpoint" in out, out  # --follow
    assert re.search(r"^\s*2\s+spot\s+\d\d:\d\d:\d\d\s+[\d.]+\s+0\s+SUCCEEDED", out, re.M), out


def fake_path_without_bwrap(tmp_path: Path) -> str:
    """A PATH holding every command of this machine but bwrap."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if name != "bwrap" and not (fake / name).exists():
                (fake / name).symlink_to(os.path.join(folder, name))
    path = f"{Path(sys.executable).parent}:{fake}"
    assert shutil.which("bwrap", path=path) is None
    return path


BWRAP_MISSING = "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"


@pytest.mark.slow
def test_no_bwrap_fails_the_first_attempt_with_one_clear_line(tmp_path):
    root = new_lake(tmp_path)
    path = fake_path_without_bwrap(tmp_path)
    args = ["job", "submit", "--root", str(root), "-u", "etl", "--retries", "2", "--wait"]
    done = subprocess.run(
        [*LAKE, *args, "--", "true"],
        env=env_80(path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    flat = " ".join(out.split())  # lines wrap at 80 columns
    assert f"attempt 1 could not start: {BWRAP_MISSING}" in flat, out
    assert f"FAILED START_FAILED: {BWRAP_MISSING}" in flat, out
    job_id = re.search(r"submitted (\w+)", out).group(1)
    status = subprocess.run(
        [*LAKE, "job", "status", job_id, "--root", str(root)],
        env=env_80(path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert BWRAP_MISSING in " ".join(status.stdout.split()), status.stdout


@pytest.mark.slow
def test_demo_without_bwrap_says_so_and_skips_its_batch_part(tmp_path):
    path = fake_path_without_bwrap(tmp_path)
    done = subprocess.run(
        [*LAKE, "demo", "--root", str(tmp_path / "demo"), "--fresh"],
        env=env_80(path),
        capture_output=True,
        text=True,
        timeout=280,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    lines = out.splitlines()
    at = lines.index(f"  {BWRAP_MISSING}")  # the reason, one whole line
    assert lines[at - 1].startswith("the batch part will be skipped"), out
    assert at < 3, out  # said before the demo starts
    assert f"skipped: {BWRAP_MISSING}" in out and "demo finished" in out, out
    assert "JobError" not in out and "Traceback" not in out, out


POLICY = """\
g, etl, role:admin
p, role:admin, *, *, allow
p, bob, queue:default, submit, allow
p, carol, queue:default, describe, allow
"""


def test_job_commands_act_for_user(make_lake, tmp_path):
    lk = make_lake(policy=POLICY)
    b = batch_of(lk)
    root = str(lk.root)
    runner = CliRunner()

    def cli(*args: str):
        return runner.invoke(app, [*args, "--root", root], catch_exceptions=False)

    code = tmp_path / "code"
    script(code, "env.sh", 'echo "index=[${LAKE_ARRAY_INDEX-unset}]"\n')
    j = b.submit(["sh", "env.sh"], user="etl", workdir=code)
    arr = b.submit(["sh", "env.sh"], user="etl", workdir=code, array_size=2)
    assert j.wait(60) == "SUCCEEDED" and arr.wait(60) == "SUCCEEDED"
    assert "index=[]" in j.logs()  # set, and empty: not an array child
    # bob sees none of etl's jobs; carol (describe on the queue) sees and reads, not cancels
    r = cli("job", "status", j.id, "--user", "bob")
    assert r.exit_code == 1 and "no batch job" in r.output
    assert j.id not in cli("job", "list", "--user", "bob").output
    r = cli("job", "logs", j.id, "--user", "bob")
    assert r.exit_code == 1 and "no batch job" in r.output
    assert "index=[]" in cli("job", "logs", j.id, "--user", "carol").output
    r = cli("job", "cancel", j.id, "--user", "carol")
    assert r.exit_code == 1 and "AccessDenied: carol may not cancel" in r.output
    assert j.id in cli("job", "list", "--user", "carol").output
    # the array parent's logs are its children's
    r = cli("job", "logs", arr.id)
    assert f"==> {arr.id}:0 (SUCCEEDED) <==" in r.output and "index=[0]" in r.output
    assert "index=[1]" in r.output and f"lake job logs {arr.id}:INDEX" in r.output


def test_interrupting_an_on_demand_job_is_refused_plainly(make_lake, tmp_path):
    lk = make_lake()
    b = batch_of(lk)
    j = b.submit(["sleep", "30"], user="etl", queue="high")  # the high queue is on-demand only
    deadline = time.monotonic() + 60
    while j.status != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = CliRunner().invoke(app, ["job", "interrupt", j.id, "--root", str(lk.root)])
    try:
        assert r.exit_code == 1, r.output
        assert r.output.strip() == (
            f"JobError: job {j.id} runs on on-demand compute; a spot interruption applies only "
            "to jobs running on spot (cancel it instead)"
        )
    finally:
        j.cancel()
        j.wait(30)


def test_cli_output_is_literal_for_job_data(make_lake, tmp_path):
    lk = make_lake()
    b = batch_of(lk)
    j = b.submit(["sh", "-c", "echo '[/b] out'; exit 3"], user="[bold]eve[/bold]")
    assert j.wait(60) == "FAILED"
    r = CliRunner().invoke(app, ["job", "status", j.id, "--root", str(lk.root)])
    assert r.exit_code == 0 and "[bold]eve[/bold]" in r.output, r.output
    r = CliRunner().invoke(app, ["job", "logs", j.id, "--root", str(lk.root)])
    assert "[/b] out" in r.output
