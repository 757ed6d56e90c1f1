"""Jobs as an attacker (contract rule 13, rule 10 for job inputs and outputs), on the source lake
and on alice's reference lake.

bob's jobs are invisible to alice (they do not exist in her reference): not listed, not
readable, their logs not readable, not cancellable or interruptible, not a dependency, their
schedules and lineage not shown. Her own job reads hr.emp as she sees it and commits its
output through the same checks as her writes, on both lakes alike (in the scheduler thread and
in the detached scheduler actor).
"""

from __future__ import annotations

import contextlib
import re
import textwrap

import pytest

from support.batch import BATCH_TOML, PY
from support.reference import EMP, USER, build

READ = textwrap.dedent(
    """
    import pyarrow.parquet as pq
    t = pq.read_table('/opt/ml/input/data/emp')
    print(t.schema.names)
    for row in sorted(map(str, t.to_pylist())):
        print(row)
    """
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, module_catalog, ray_session):
    p = build(tmp_path_factory.mktemp("ref") / "lakes")
    yield p
    p.close()


@pytest.fixture(scope="module")
def bobs(pair):
    """A job bob ran in the source lake (it printed hidden data), and a schedule of his."""
    job = pair.real.batch.submit(
        [PY, "-c", "print('bob read Zanzibar')"], user="bob", inputs={"s": "hr.secret"}
    )
    assert job.wait(timeout=120) == "SUCCEEDED", job.logs()
    pair.real.batch.schedule("bobs-nightly", "0 3 * * *", ["true"], user="bob")
    return job.id


def _logs(text: str) -> list[str]:
    # What a job printed, without the attempt header lines.
    return [line for line in text.splitlines() if not line.startswith("==>")]


def test_another_users_job_is_invisible(pair, bobs):
    b = lambda lk: lk.batch  # noqa: E731
    for attack in (
        lambda lk: b(lk).get(bobs, user=USER),
        lambda lk: b(lk).logs(bobs, user=USER),
        lambda lk: b(lk).cancel(bobs, user=USER),
        lambda lk: b(lk).interrupt(bobs, user=USER),
        lambda lk: b(lk).lineage(bobs, user=USER),
        lambda lk: b(lk).submit(["true"], user=USER, depends_on=[bobs]),
        lambda lk: b(lk).unschedule("bobs-nightly", user=USER),
    ):
        obs = pair.same(attack)
        assert obs[0] == "error" and obs[1] == "JobError", obs
        assert "Zanzibar" not in obs[2]
    pair.same(lambda lk: [j.id for j in b(lk).list(user=USER)])
    pair.same(lambda lk: b(lk).lineage(user=USER))
    pair.same(lambda lk: b(lk).schedules(user=USER))
    pair.same(lambda lk: [(q["name"], q["counts"]) for q in b(lk).queues(user=USER)])
    # bob and the owner see it.
    assert "Zanzibar" in pair.real.batch.logs(bobs, user="bob")
    assert pair.real.batch.get(bobs).id == bobs
    assert [s["name"] for s in pair.real.batch.schedules(user="bob")] == ["bobs-nightly"]


def test_a_user_named_like_the_owner_does_not_own_the_owners_jobs(pair):
    owner = pair.real.owner.name
    job = pair.real.batch.submit([PY, "-c", "print('owner only')"])
    assert job.wait(timeout=120) == "SUCCEEDED"
    for attack in (
        lambda: pair.real.batch.get(job.id, user=owner),
        lambda: pair.real.batch.logs(job.id, user=owner),
        lambda: pair.real.batch.cancel(job.id, user=owner),
    ):
        with pytest.raises(Exception, match="no batch job"):
            attack()
    assert job.id not in [j.id for j in pair.real.batch.list(user=owner)]


def test_job_inputs_and_outputs_she_may_not_see_are_missing(pair):
    for kind, table in (
        ("inputs", "hr.secret"),
        ("inputs", "vault.keys"),
        ("outputs", "hr.secret"),
        ("outputs", "vault.keys"),
    ):

        def submit(lk, kind=kind, table=table):
            return lk.batch.submit(["true"], user=USER, **{kind: {"x": table}})

        obs = pair.same(submit, allow=["secret", "vault"])
        assert obs[0] == "error" and obs[1] == "JobError", obs
        missing = pair.observe(lambda lk, kind=kind: submit(lk, kind, "hr.nothing"))[0]
        assert obs[2].replace(table, "T") == missing[2].replace("hr.nothing", "T"), (obs, missing)


def _run(lk, *, inputs=None, outputs=None, script=READ, workdir=None):
    job = lk.batch.submit(
        [PY, "job.py"], user=USER, inputs=inputs or {}, outputs=outputs or {}, workdir=workdir
    )
    status = job.wait(timeout=180)
    return status, re.sub(r"[0-9a-f]{12}", "JOB", job.status_reason or ""), _logs(job.logs())


def test_her_job_reads_exactly_her_view(pair, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.py").write_text(READ)
    obs = pair.same(lambda lk: _run(lk, inputs={"emp": "hr.emp"}, workdir=work))
    assert obs[1][0] == "SUCCEEDED", obs
    assert any("***01" in line for line in obs[1][2]), obs  # masked, as she reads it


WRITE = """
import os, pyarrow as pa, pyarrow.parquet as pq
os.makedirs('/opt/ml/output/emp', exist_ok=True)
cols = {cols}
pq.write_table(pa.table(cols), '/opt/ml/output/emp/part.parquet')
"""


@pytest.mark.parametrize(
    "cols",
    [
        # inside her view: committed on both lakes alike
        {"id": [70], "region": ["eu"], "name": ["J"], "phone": ["***70"], "salary": [700]},
        # a column she does not have, and one of the reference's own hidden column
        {"id": [71], "region": ["eu"], "ssn": ["x"]},
        {"id": [72], "zz_hidden": [1]},
        # the non-nullable id missing
        {"region": ["eu"]},
    ],
)
def test_her_job_outputs_are_checked_like_her_writes(pair, tmp_path, cols):
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.py").write_text(WRITE.format(cols=repr(cols)))
    obs = pair.same(lambda lk: _run(lk, outputs={"emp": "hr.emp"}, workdir=work), allow=["ssn"])
    if "id" in cols and set(cols) <= set(EMP.names) - {"ssn", "notes"}:
        assert obs[1][0] == "SUCCEEDED", obs
    else:
        assert obs[1][0] == "FAILED", obs
    pair.same(lambda lk: lk.sql("SELECT * FROM hr.emp", user=USER))


@pytest.fixture(scope="module")
def actor_pair(tmp_path_factory, module_catalog, ray_session):
    p = build(
        tmp_path_factory.mktemp("actor") / "lakes",
        toml=BATCH_TOML.replace("[batch]\n", '[batch]\nscheduler = "actor"\n', 1),
    )
    yield p
    import ray

    from batch.actor import actor_name

    for lk in p.both:
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(actor_name(lk.batch.store.url), namespace="lakeward"))
    p.close()


def test_job_outputs_in_actor_mode_use_the_same_checks(actor_pair, tmp_path):
    pair = actor_pair
    work = tmp_path / "work"
    work.mkdir()
    for i, cols in enumerate(
        [
            {"id": [80], "region": ["eu"], "name": ["K"], "phone": ["***80"]},
            {"id": [81], "ssn": ["x"]},
        ]
    ):
        (work / "job.py").write_text(WRITE.format(cols=repr(cols)))
        obs = pair.same(lambda lk: _run(lk, outputs={"emp": "hr.emp"}, workdir=work), allow=["ssn"])
        assert obs[1][0] == ("SUCCEEDED" if i == 0 else "FAILED"), obs
    pair.same(lambda lk: lk.sql("SELECT * FROM hr.emp", user=USER))
