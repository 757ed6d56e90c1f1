"""Principals (contract rule 9): a user name is never empty, never `*`, never `role:...` in any
case, and has no surrounding spaces; such a `user=` is refused with InvalidArgument everywhere
a user= is taken (the lake, its catalog, transactions, policy, batch), before anything is
looked at, on the source lake and the reference alike."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from lake.errors import InvalidArgument

from support.reference import build

# role:admin holds every grant in the source lake's policy: a user of that name must not.
POLICY_EXTRA = "g, alice, role:admin\np, role:admin, *, *, allow\n"
BAD = ["role:admin", "ROLE:Admin", "Role:admin", "*", "", " ", " alice", "alice ", "a,b", "a\nb", 7]


@pytest.fixture(scope="module")
def pair(tmp_path_factory, module_catalog):
    from support.reference import POLICY

    p = build(tmp_path_factory.mktemp("ref") / "lakes", policy=POLICY + POLICY_EXTRA)
    yield p
    p.close()


def _calls(u, base: Path) -> dict:
    data = pa.table({"id": pa.array([1], pa.int64())})
    return {
        "sql": lambda lk: lk.sql("SELECT 1", user=u),
        "explain": lambda lk: lk.explain("SELECT * FROM hr.emp", user=u),
        "write": lambda lk: lk.write("hr.emp", data, user=u),
        "delete": lambda lk: lk.delete("hr.emp", where="id = 1", user=u),
        "update": lambda lk: lk.update("hr.emp", set={"id": "id"}, user=u),
        "merge": lambda lk: lk.merge("hr.emp", data, on="id", user=u),
        "history": lambda lk: lk.history("hr.emp", user=u),
        "compact": lambda lk: lk.compact("hr.emp", user=u),
        "vacuum": lambda lk: lk.vacuum("hr.emp", dry_run=True, user=u),
        "crawl": lambda lk: lk.crawl(base / "landing", database="sandbox", user=u),
        "ingest": lambda lk: lk.ingest("sandbox.x", base / "landing", user=u),
        "append_stream": lambda lk: lk.append_stream("hr.emp", [(1, data)], app_id="a", user=u),
        "committed_seq": lambda lk: lk.committed_seq("hr.emp", "a", user=u),
        "transaction": lambda lk: lk.transaction(user=u),
        "create_database": lambda lk: lk.catalog.create_database("zz", user=u),
        "drop_database": lambda lk: lk.catalog.drop_database("sandbox", user=u),
        "list_databases": lambda lk: lk.catalog.list_databases(user=u),
        "get_database": lambda lk: lk.catalog.get_database("hr", user=u),
        "create_table": lambda lk: lk.catalog.create_table("sandbox.t", data.schema, user=u),
        "register_table": lambda lk: lk.catalog.register_table("sandbox.r", location="/x", user=u),
        "drop_table": lambda lk: lk.catalog.drop_table("hr.emp", user=u),
        "set_properties": lambda lk: lk.catalog.set_properties("hr.emp", {"a": "1"}, user=u),
        "list_tables": lambda lk: lk.catalog.list_tables("hr", user=u),
        "describe": lambda lk: lk.catalog.describe("hr.emp", user=u),
        "partitions": lambda lk: lk.catalog.partitions("hr.emp", user=u),
        "policy_apply": lambda lk: lk.policy.apply(base / "policy-ref", user=u),
        "policy_allowed": lambda lk: lk.policy.allowed(u, "hr.emp", "select"),
        "batch_submit": lambda lk: lk.batch.submit(["true"], user=u),
        "batch_get": lambda lk: lk.batch.get("nosuchjob", user=u),
        "batch_list": lambda lk: lk.batch.list(user=u),
        "batch_logs": lambda lk: lk.batch.logs("nosuchjob", user=u),
        "batch_cancel": lambda lk: lk.batch.cancel("nosuchjob", user=u),
        "batch_interrupt": lambda lk: lk.batch.interrupt("nosuchjob", user=u),
        "batch_lineage": lambda lk: lk.batch.lineage(user=u),
        "batch_schedules": lambda lk: lk.batch.schedules(user=u),
        "batch_schedule": lambda lk: lk.batch.schedule("s", "* * * * *", ["true"], user=u),
        "batch_unschedule": lambda lk: lk.batch.unschedule("s", user=u),
    }


@pytest.mark.parametrize("op", sorted(_calls("x", Path("/"))))
def test_a_name_that_cannot_be_a_user_is_refused_everywhere(pair, op):
    for u in BAD:
        obs = pair.same(_calls(u, pair.base)[op])
        assert obs[0] == "error" and obs[1] == "InvalidArgument", (op, u, obs)
    # Nothing was done for any of them.
    assert "zz" not in [d.name for d in pair.real.catalog.list_databases()]
    assert pair.real.sql("SELECT count(*) AS n FROM hr.emp")["n"].to_pylist() == [8]


def test_a_transaction_refuses_a_role_as_its_user(pair):
    for u in BAD:
        with pytest.raises(InvalidArgument), pair.real.transaction(user=u) as tx:
            tx.delete("hr.emp")
    assert pair.real.sql("SELECT count(*) AS n FROM hr.emp")["n"].to_pylist() == [8]


def test_a_real_user_holding_the_role_still_works(pair):
    # alice holds role:admin through a g line in the source lake: she reads everything there
    # (this fixture is not about her view); the point is that only she, not a user named
    # after the role, gets its grants.
    assert pair.real.sql("SELECT count(*) AS n FROM hr.secret", user="alice")["n"].to_pylist() == [
        2
    ]
