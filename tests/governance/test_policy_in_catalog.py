"""One catalog, one policy (contract rule 14), and principals (rule 9)."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

import lake
from lake.errors import AccessDenied, InvalidArgument, PolicyError

POLICY = (
    "g, admin, role:admin\np, role:admin, *, *, allow\np2, ana, s.t, eu, \"region = 'eu'\", *\n"
)
ROWS = pa.table({"id": [1, 2, 3], "region": ["eu", "us", "eu"]})


def folder(tmp_path, name: str, text: str):
    f = tmp_path / name
    f.mkdir(parents=True, exist_ok=True)
    (f / "policy.csv").write_text(text)
    return f


@pytest.fixture
def shared(tmp_path):
    """Two roots over one catalog; the first installed the policy."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    a = lake.connect(tmp_path / "a", catalog=url, policy=folder(tmp_path, "pa", POLICY))
    a.catalog.create_database("s")
    a.catalog.create_table("s.t", ROWS.schema)
    a.write("s.t", ROWS)
    b = lake.connect(tmp_path / "b", catalog=url)  # no policy folder of its own
    yield a, b
    b.close()
    a.close()


def ids(lk, user):
    return sorted(lk.sql("SELECT id FROM s.t", user=user)["id"].to_pylist())


def test_every_root_of_a_catalog_enforces_its_policy(shared):
    a, b = shared
    assert ids(a, "ana") == ids(b, "ana") == [1, 3]
    for lk in (a, b):
        with pytest.raises(AccessDenied):
            lk.sql("SELECT id FROM s.t", user="mallory")


def test_apply_needs_alter_on_policy_and_reaches_every_client(shared, tmp_path):
    a, b = shared
    wider = folder(tmp_path, "wider", POLICY + "p, ana, s.t, select, allow\n")
    with pytest.raises(AccessDenied, match="may not alter the policy"):
        b.policy.apply(wider, user="ana")
    assert ids(b, "ana") == [1, 3]
    version = b.policy.apply(wider, user="admin")
    # The other client picks it up on its next decision.
    assert a.policy.version == version
    assert ids(a, "ana") == [1, 2, 3]
    audit = b.sql(
        "SELECT a.user, a.decision FROM system.audit a WHERE a.action = 'policy_apply' "
        "ORDER BY a.seq",
        user="admin",
    ).to_pylist()
    assert audit[-2:] == [
        {"user": "ana", "decision": "denied"},
        {"user": "admin", "decision": "allowed"},
    ]


def test_a_broken_policy_is_never_installed(shared, tmp_path):
    a, b = shared
    broken = folder(tmp_path, "broken", POLICY + "p, ana, s.t, frobnicate, allow\n")
    with pytest.raises(PolicyError, match="policy.csv:4"):
        b.policy.apply(broken, user="admin")
    assert ids(a, "ana") == [1, 3]


def test_connect_never_silently_replaces_another_policy(shared, tmp_path):
    a, _ = shared
    other = folder(tmp_path, "other", "p, *, *, *, allow\n")
    with pytest.raises(PolicyError, match="lk.policy.apply"):
        lake.connect(tmp_path / "c", catalog=a.store.url, policy=other)
    # The same text from another folder is the same policy: nothing to replace.
    same = folder(tmp_path, "same", POLICY)
    with lake.connect(tmp_path / "d", catalog=a.store.url, policy=same) as d:
        assert ids(d, "ana") == [1, 3]


def test_watched_folder_edits_install_and_broken_edits_fail_closed(tmp_path):
    f = folder(tmp_path, "p", POLICY)
    with lake.connect(tmp_path / "lake", policy=f) as lk:
        lk.catalog.create_database("s")
        lk.catalog.create_table("s.t", ROWS.schema)
        lk.write("s.t", ROWS)
        assert ids(lk, "ana") == [1, 3]
        time.sleep(0.01)  # a distinct modification time
        (f / "policy.csv").write_text(POLICY + "p, ana, s.t, select, allow\n")
        assert ids(lk, "ana") == [1, 2, 3]
        (f / "policy.csv").write_text(POLICY + "p, ana, s.t, frobnicate, allow\n")
        # Fails closed for every user, saying nothing of the policy (a broken policy decides
        # nothing, not even who may read it); the lake's owner learns where it is broken.
        for user in ("ana", "admin"):
            with pytest.raises(PolicyError, match="nothing is allowed until it is fixed") as told:
                lk.sql("SELECT id FROM s.t", user=user)
            assert "policy.csv" not in str(told.value) and "frobnicate" not in str(told.value)
        with pytest.raises(PolicyError, match="policy.csv:4"):
            lk.sql("SELECT id FROM s.t")
        (f / "policy.csv").write_text(POLICY)
        assert ids(lk, "ana") == [1, 3]
        # Only changes were recorded: the install at connect and the two good edits.
        applied = [
            r
            for r in lk.sql(
                "SELECT a.decision FROM system.audit a WHERE a.action = 'policy_apply'",
                user="admin",
            )["decision"].to_pylist()
        ]
        assert applied.count("allowed") == 3


@pytest.mark.parametrize("name", ["", " ", "*", "role:admin", "ROLE:Admin", "Role:x", "a,b"])
def test_names_that_cannot_be_users_are_refused_everywhere(shared, name):
    a, _ = shared
    calls = [
        lambda: a.sql("SELECT 1", user=name),
        lambda: a.write("s.t", ROWS, user=name),
        lambda: a.delete("s.t", where="id = 1", user=name),
        lambda: a.catalog.list_tables(user=name),
        lambda: a.catalog.describe("s.t", user=name),
        lambda: a.compact("s.t", user=name),
        lambda: a.transaction(user=name),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument):
            call()
    assert ids(a, "admin") == [1, 2, 3]  # nothing was written
