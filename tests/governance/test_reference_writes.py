"""Writes, maintenance and the catalog as an attacker (issue 8 leaks 3-6 and 8; contract rules
10 and 12), each attack run on the source lake and on alice's reference lake.

alice sees hr.emp through a row filter (eu and us), without ssn (denied), with phone masked and
salary only on eu rows (a cell filter); she may insert, update, delete and alter it. She sees
hr.dept whole but may only select it, sales.* whole with every right, and neither hr.secret nor
anything of the database vault. The reference holds exactly her view (and a policy of the same
shape: see tests/support/reference.py), so every answer must be the same on both lakes.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake.errors import LakeError

from support.reference import EMP, USER, build, normal

HIDDEN = ["hr.secret", "vault.keys"]  # a table she may not see; one in a database she may not see
MISSING = "hr.nothing"


@pytest.fixture(scope="module")
def pair(tmp_path_factory, module_catalog):
    p = build(tmp_path_factory.mktemp("ref") / "lakes")
    yield p
    p.close()


@pytest.fixture
def fresh(tmp_path):
    p = build(tmp_path / "lakes")
    yield p
    p.close()


def rows_in_view(ids, region="eu") -> pa.Table:
    """New hr.emp rows that lie inside alice's view (her columns, her rows, masked values as
    she reads them), so that both lakes hold the same view after writing them."""
    n = len(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "region": [region] * n,
            "name": [f"N{i}" for i in ids],
            "phone": [f"***{i % 100:02d}" for i in ids],
            "salary": pa.array([i * 10 if region == "eu" else None for i in ids], pa.int64()),
        },
        schema=pa.schema([f for f in EMP if f.name not in ("ssn", "notes")]),
    )


def read(table: str = "hr.emp"):
    return lambda lk: lk.sql(f"SELECT * FROM {table}", user=USER)


def shape(v):
    """What maintenance answers, without the file layout (which the reference cannot share):
    the kind of answer and, for dicts, their keys."""
    if isinstance(v, dict):
        return ("dict", sorted(v))
    if isinstance(v, list):
        return ("list", [type(x).__name__ for x in v][:1])
    return type(v).__name__


def no_layout(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in ("num_files", "size_bytes")}


# write results ------------------------------------------------------------------------------


def test_write_results_count_only_rows_she_sees(fresh):
    pair = fresh
    for where in ["id = 1", "id = 5", "id = 8", "id > 0 AND id < 3"]:  # 5 and 8 are hidden
        obs = pair.same(lambda lk, w=where: lk.delete("hr.emp", where=w, user=USER))
        assert obs[0] == "ok" and set(obs[1]) == {"num_deleted_rows"}, obs
    obs = pair.same(lambda lk: lk.update("hr.emp", set={"name": "'Q'"}, where="id >= 3", user=USER))
    assert obs[0] == "ok" and set(obs[1]) == {"num_updated_rows"}, obs
    pair.same(read())
    obs = pair.same(lambda lk: lk.delete("hr.emp", user=USER))
    assert obs == ("ok", {"num_deleted_rows": 3}), obs
    pair.same(read())
    # The hidden rows are all still there.
    assert pair.real.sql("SELECT count(*) AS n FROM hr.emp")["n"].to_pylist() == [3]


def test_writes_in_a_transaction_answer_alike(fresh):
    def go(lk):
        with lk.transaction(user=USER) as tx:
            a = tx.delete("hr.emp", where="id = 2")
            b = tx.update("hr.emp", set={"name": "'Z'"}, where="id = 5")  # hidden: no row
            tx.write("hr.emp", rows_in_view([30]))
            return [a, b, tx.sql("SELECT id, name FROM hr.emp")]

    fresh.same(go)
    fresh.same(read())


def test_write_errors_name_only_columns_she_has(pair):
    base = rows_in_view([40])
    attacks = {
        "extra ssn": base.append_column("ssn", pa.array(["x"])),
        "extra unknown": base.append_column("nope", pa.array(["x"])),
        "the reference's own hidden column": base.append_column("zz_hidden", pa.array([1])),
        "no id": base.drop_columns(["id"]),
        "wrong type": base.set_column(4, "salary", pa.array(["x"])),
        "duplicate": pa.Table.from_arrays(
            [base["id"], base["id"]], schema=pa.schema([EMP.field("id"), EMP.field("id")])
        ),
    }
    for what, data in attacks.items():
        for mode in ("append", "overwrite"):
            obs = pair.same(
                lambda lk, d=data, m=mode: lk.write("hr.emp", d, mode=m, user=USER),
                allow=["ssn"],
            )
            assert obs[0] == "error", (what, mode, obs)
            assert "zz_hidden" not in obs[2] or what.startswith("the reference"), obs
            if what != "extra ssn":
                assert "ssn" not in obs[2], (what, obs)
        # A stream batch is checked exactly like a write.
        obs_stream = pair.same(
            lambda lk, d=data: lk.append_stream("hr.emp", [(1, d)], app_id="s", user=USER),
            allow=["ssn"],
        )
        obs_write = pair.observe(lambda lk, d=data: lk.write("hr.emp", d, user=USER))[0]
        assert obs_stream == obs_write, (what, obs_stream, obs_write)
    # A reader with fewer or more columns than the table (delta-rs: "number of fields does not
    # match") is checked on her view first.
    # (Rows outside her view would rightly read differently: she could not see them after.)
    fewer = base.drop_columns(["salary"])
    for data in (base, fewer, base.append_column("ssn", pa.array(["x"]))):
        for mode in ("append", "overwrite"):
            for attack in (
                lambda lk, d=data, m=mode: lk.write("hr.emp", _reader(d), mode=m, user=USER),
                lambda lk, d=data: lk.append_stream(
                    "hr.emp", [(9, _reader(d))], app_id="r", user=USER
                ),
            ):
                pair.same(attack, allow=["ssn"])
    pair.same(read())


def _reader(t: pa.Table) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(t.schema, t.to_batches())


def test_update_and_delete_errors_name_only_columns_she_has(pair):
    attacks = [
        lambda lk: lk.update("hr.emp", set={"ssn": "'x'"}, user=USER),
        lambda lk: lk.update("hr.emp", set={"name": "ssn"}, user=USER),
        lambda lk: lk.delete("hr.emp", where="ssn = '111-11'", user=USER),
        lambda lk: lk.update("hr.emp", set={"zz_hidden": "1"}, user=USER),
        # masked and cell-filtered columns may not be computed on
        lambda lk: lk.update("hr.emp", set={"name": "phone"}, user=USER),
        lambda lk: lk.delete("hr.emp", where="salary > 100", user=USER),
        # errors of the engine while evaluating her predicate (on her rows only)
        lambda lk: lk.delete("hr.emp", where="CAST(name AS INTEGER) = 1", user=USER),
        lambda lk: lk.update("hr.emp", set={"id": "CAST(name AS INTEGER)"}, user=USER),
        lambda lk: lk.delete("hr.emp", where="id = ", user=USER),
    ]
    for attack in attacks:
        obs = pair.same(attack, allow=["ssn", "111-11"])
        assert obs[0] == "error", obs


def test_merge_and_overwrite_need_all_of_the_table(pair):
    src = rows_in_view([1, 50])
    for attack in (
        lambda lk: lk.merge("hr.emp", src, on="id", user=USER),
        lambda lk: lk.write("hr.emp", src, mode="overwrite", user=USER),
    ):
        obs = pair.same(attack)
        assert obs[0] == "error" and obs[1] == "AccessDenied", obs


# schema evolution (issue 8 item 7) ----------------------------------------------------------


def test_schema_mode_merge_works_for_the_owner_and_for_alter(tmp_path):
    import lake

    root = tmp_path / "lake"
    with lake.connect(root) as lk:
        lk.catalog.create_database("d")
        lk.catalog.create_table("d.t", pa.schema([("id", pa.int64())]))
        lk.catalog.create_table("d.u", pa.schema([("id", pa.int64()), ("ssn", pa.string())]))
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "policy.csv").write_text(
        "p, etl, d, *, allow\n"
        "p, ins, d.t, insert, allow\np, ins, d.t, select, allow\n"
        "p, ins, d.u, insert, allow\np, ins, d.u, select, allow\n"
        "p, alt, d, insert, allow\np, alt, d, select, allow\np, alt, d, alter, allow\n"
        "p, alt, d.u.ssn, select, deny\n"
    )
    with lake.connect(root, policy=folder) as lk:
        lk.write("d.t", pa.table({"id": [1], "a": ["x"]}), schema_mode="merge")  # the owner
        lk.write("d.t", pa.table({"id": [2], "b": [2.5]}), schema_mode="merge", user="etl")
        assert lk.sql("SELECT * FROM d.t ORDER BY id", user="etl").to_pylist() == [
            {"id": 1, "a": "x", "b": None},
            {"id": 2, "a": None, "b": 2.5},
        ]
        # A new column needs alter; without one the same data fails like any unknown column.
        with pytest.raises(LakeError, match="alter"):
            lk.write("d.t", pa.table({"id": [3], "c": [1]}), schema_mode="merge", user="ins")
        # merge with only known columns needs no alter
        lk.write("d.t", pa.table({"id": [3], "a": ["y"]}), schema_mode="merge", user="ins")
        lk.write("d.t", pa.table({"id": [4], "c": [1]}), schema_mode="merge", user="alt")
        assert lk.sql("SELECT c FROM d.t WHERE id = 4", user="alt")["c"].to_pylist() == [1]
        # Adding columns to a table she does not see whole is refused alike for a column that
        # exists but is hidden (ssn) and one that does not exist (zzz).
        errors = []
        for col in ("ssn", "zzz"):
            with pytest.raises(LakeError) as e:
                lk.write("d.u", pa.table({"id": [1], col: ["x"]}), schema_mode="merge", user="alt")
            errors.append((type(e.value), str(e.value).replace(col, "?")))
        assert errors[0] == errors[1], errors
        assert "ssn" not in str(errors[0])


# not-describable is missing (rule 10) -------------------------------------------------------


def _ops(table: str) -> dict:
    data = pa.table({"id": pa.array([1], pa.int64())})
    return {
        "write": lambda lk: lk.write(table, data, user=USER),
        "overwrite": lambda lk: lk.write(table, data, mode="overwrite", user=USER),
        "delete": lambda lk: lk.delete(table, where="id = 1", user=USER),
        "update": lambda lk: lk.update(table, set={"id": "id"}, user=USER),
        "merge": lambda lk: lk.merge(table, data, on="id", user=USER),
        "append_stream": lambda lk: lk.append_stream(table, [(1, data)], app_id="a", user=USER),
        "committed_seq": lambda lk: lk.committed_seq(table, "a", user=USER),
        "ingest": lambda lk: lk.ingest(table, ("sqlite://", "SELECT 1 AS id"), user=USER),
        "compact": lambda lk: lk.compact(table, user=USER),
        "vacuum": lambda lk: lk.vacuum(table, user=USER),
        "vacuum_dry_run": lambda lk: lk.vacuum(table, dry_run=True, user=USER),
        "vacuum_force": lambda lk: lk.vacuum(table, force=True, retention_hours=0, user=USER),
        "history": lambda lk: lk.history(table, user=USER),
        "describe": lambda lk: lk.catalog.describe(table, user=USER),
        "partitions": lambda lk: lk.catalog.partitions(table, user=USER),
        "set_properties": lambda lk: lk.catalog.set_properties(table, {"a": "b"}, user=USER),
        "drop_table": lambda lk: lk.catalog.drop_table(table, user=USER),
        "create_table": lambda lk: lk.catalog.create_table(table, data.schema, user=USER),
        "register_table": lambda lk: lk.catalog.register_table(table, location="/x", user=USER),
        "tx_write": lambda lk: _in_tx(lk, lambda tx: tx.write(table, data)),
        "tx_delete": lambda lk: _in_tx(lk, lambda tx: tx.delete(table, where="id = 1")),
        "tx_update": lambda lk: _in_tx(lk, lambda tx: tx.update(table, set={"id": "id"})),
        "tx_merge": lambda lk: _in_tx(lk, lambda tx: tx.merge(table, data, on="id")),
    }


def _in_tx(lk, fn):
    with lk.transaction(user=USER) as tx:
        return fn(tx)


@pytest.mark.parametrize("op", sorted(_ops("x.y")))
def test_a_table_she_may_not_describe_behaves_like_a_missing_one(pair, op):
    answers = {}
    for table in [*HIDDEN, MISSING]:
        obs = pair.same(_ops(table)[op], allow=["secret", "vault"])
        assert obs[0] == "error", (op, table, obs)
        answers[table] = (obs[1], obs[2].replace(table, "T").replace(table.split(".")[0], "D"))
    # ... and in the source lake a hidden table answers exactly like one that is not there.
    assert answers["hr.secret"] == answers[MISSING], answers
    assert pair.real.sql("SELECT count(*) AS n FROM hr.secret")["n"].to_pylist() == [2]
    assert pair.real.sql("SELECT count(*) AS n FROM vault.keys")["n"].to_pylist() == [1]


def test_databases_she_may_not_know_of_are_missing(pair):
    pair.same(lambda lk: sorted(d.name for d in lk.catalog.list_databases(user=USER)))
    pair.same(lambda lk: sorted(t.full_name for t in lk.catalog.list_tables(user=USER)))
    pair.same(lambda lk: sorted(t.full_name for t in lk.catalog.list_tables("hr", user=USER)))
    for db in ("vault", "nowhere"):
        for attack in (
            lambda lk, db=db: lk.catalog.list_tables(db, user=USER),
            lambda lk, db=db: lk.catalog.get_database(db, user=USER),
            lambda lk, db=db: lk.catalog.create_table(f"{db}.t", EMP, user=USER),
            lambda lk, db=db: lk.catalog.drop_database(db, user=USER),
            lambda lk, db=db: lk.catalog.create_database(db, user=USER),
            lambda lk, db=db: lk.crawl(lk.root, database=db, user=USER),
        ):
            obs = pair.same(attack, allow=["vault"])
            assert obs[0] == "error", obs


# maintenance needs alter (rule 10) and answers without paths --------------------------------


def test_compact_and_vacuum_need_alter(pair):
    before = pair.real.catalog.describe("hr.dept")["num_files"]
    for attack in (
        lambda lk: lk.compact("hr.dept", user=USER),
        lambda lk: lk.vacuum("hr.dept", user=USER),
        lambda lk: lk.vacuum("hr.dept", dry_run=True, user=USER),
        lambda lk: lk.vacuum("hr.dept", force=True, retention_hours=0, user=USER),
        lambda lk: lk.catalog.set_properties("hr.dept", {"x": "1"}, user=USER),
    ):
        obs = pair.same(lambda lk, a=attack: shape(a(lk)))
        assert obs[0] == "error" and obs[1] == "AccessDenied", obs
    assert pair.real.catalog.describe("hr.dept")["num_files"] == before


def test_maintenance_of_a_table_she_sees_in_part_says_nothing_of_its_files(fresh):
    pair = fresh
    pair.same(lambda lk: lk.delete("hr.emp", where="id = 1", user=USER))
    obs = pair.same(lambda lk: lk.compact("hr.emp", user=USER))
    assert obs == ("ok", {}), obs
    for kw in ({"dry_run": True}, {"force": True, "retention_hours": 0}):
        obs = pair.same(lambda lk, kw=kw: lk.vacuum("hr.emp", user=USER, **kw))
        assert obs == ("ok", []), obs
    pair.same(read())


def test_maintenance_of_a_table_she_sees_whole_answers_without_paths(fresh):
    pair = fresh
    pair.same(lambda lk: shape(lk.compact("sales.orders", user=USER)))
    pair.same(lambda lk: lk.delete("sales.orders", where="id < 3", user=USER))
    pair.same(lambda lk: shape(lk.vacuum("sales.orders", dry_run=True, user=USER)))
    for lk in pair.both:
        for f in lk.vacuum("sales.orders", force=True, retention_hours=0, user=USER):
            assert not f.startswith("/") and ".." not in f, f
    pair.same(read("sales.orders"))


def test_describe_history_and_partitions_show_only_her_view(pair):
    pair.same(lambda lk: lk.catalog.describe("hr.emp", user=USER))
    pair.same(lambda lk: no_layout(lk.catalog.describe("sales.orders", user=USER)))
    pair.same(lambda lk: lk.catalog.describe("hr.dept", user=USER)["columns"])
    obs = pair.same(lambda lk: lk.catalog.partitions("hr.emp", user=USER))
    assert obs[0] == "error" and obs[1] == "AccessDenied", obs
    pair.same(lambda lk: [no_layout(p) for p in lk.catalog.partitions("sales.orders", user=USER)])
    pair.same(lambda lk: [sorted(h) for h in lk.history("hr.emp", user=USER)][:1])
    for table in ("hr.emp", "sales.orders"):
        for lk in pair.both:
            hist = lk.history(table, user=USER)
            assert hist and all("parameters" not in h for h in hist), hist
    # The source's history (narrowed deletes quote the policy's filter) leaks nothing.
    pair.same(lambda lk: [h["operation"] for h in lk.history("hr.emp", user=USER)][-1:])


def test_a_filter_that_does_not_fit_an_old_version_says_nothing_of_the_policy(tmp_path):
    from support.governed import governed_lake

    policy = (
        'p, etl, *, *, allow\np2, alice, hr.people, f, "grade > 1", id grade\n'
        "p, alice, hr.people, alter, allow\n"
    )
    with governed_lake(tmp_path / "lake", "p, etl, *, *, allow\n") as lk:
        v = lk.history("hr.people")[0]["version"]
        lk.write(
            "hr.people",
            pa.table({"id": pa.array([9], pa.int64()), "grade": pa.array([2], pa.int64())}),
            schema_mode="merge",
            user="etl",
        )
        (lk.policy.folder / "policy.csv").write_text(policy)
        lk.policy.reload()
        assert lk.sql("SELECT * FROM hr.people", user="alice").num_rows == 1
        for attack in (
            lambda: lk.sql(f"SELECT * FROM hr.people VERSION AS OF {v}", user="alice"),
            lambda: lk.sql(f"SELECT id FROM hr.people VERSION AS OF {v}", user="alice"),
        ):
            with pytest.raises(LakeError) as e:
                attack()
            msg = str(e.value)
            for secret in ("grade > 1", "policy.csv", str(tmp_path), "p2"):
                assert secret not in msg, msg


# writes and maintenance in the same order on both lakes, with hidden churn in between ------


def test_a_session_of_writes_and_maintenance_answers_alike(fresh):
    pair = fresh
    steps = [
        lambda lk: lk.write("hr.emp", rows_in_view([60, 61]), user=USER),
        lambda lk: lk.write("hr.emp", rows_in_view([62], region="us"), user=USER),
        lambda lk: lk.delete("hr.emp", where="id = 60", user=USER),
        lambda lk: lk.update("hr.emp", set={"name": "'Q'"}, where="id IN (61, 62, 5)", user=USER),
        lambda lk: lk.append_stream(
            "hr.emp", [(1, rows_in_view([63])), (2, rows_in_view([64]))], app_id="s", user=USER
        ),
        lambda lk: lk.append_stream("hr.emp", [(2, rows_in_view([64]))], app_id="s", user=USER),
        lambda lk: lk.committed_seq("hr.emp", "s", user=USER),
        lambda lk: lk.compact("hr.emp", user=USER),
        lambda lk: lk.vacuum("hr.emp", dry_run=True, user=USER),
        lambda lk: lk.delete("hr.emp", where="id > 62", user=USER),
        lambda lk: lk.catalog.describe("hr.emp", user=USER),
    ]
    churn = [  # by others, on hidden rows of the source only
        lambda lk: lk.write("hr.emp", _hidden_rows([90, 91]), user="etl"),
        lambda lk: lk.delete("hr.emp", where="id = 90", user="etl"),
        lambda lk: lk.update("hr.emp", set={"ssn": "'000'"}, where="region = 'apac'", user="etl"),
        lambda lk: lk.compact("hr.emp", user="etl"),
    ]
    for i, step in enumerate(steps):
        pair.same(step)
        pair.same(read())
        churn[i % len(churn)](pair.real)
    pair.same(read())
    assert normal(pair.real.sql("SELECT count(*) AS n FROM hr.emp WHERE region = 'apac'")) != (
        normal(pair.ref.sql("SELECT count(*) AS n FROM hr.emp WHERE region = 'apac'"))
    )


def _hidden_rows(ids) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "region": ["apac"] * n,
            "name": ["Hidden"] * n,
            "ssn": ["999-99"] * n,
            "phone": ["+61 9999"] * n,
            "salary": pa.array([99999] * n, pa.int64()),
            "notes": ["memo-hidden"] * n,
        },
        schema=EMP,
    )


@pytest.mark.parametrize("op", ["write", "delete", "describe", "compact", "history", "ingest"])
def test_hidden_and_missing_names_fail_alike_whatever_their_case(pair, op):
    for hidden, missing in (("HR.Secret", "HR.Nothing"), ("Vault.Keys", "Nowhere.Keys")):
        got = pair.same(_ops(hidden)[op], allow=["secret", "vault"])
        other = pair.observe(_ops(missing)[op])[0]
        assert got[0] == other[0] == "error", (got, other)
        hide = (got[1], got[2].lower().replace(hidden.lower(), "T").replace("vault", "D"))
        miss = (other[1], other[2].lower().replace(missing.lower(), "T").replace("nowhere", "D"))
        assert hide == miss, (got, other)
        assert hidden not in got[2] and missing not in other[2]  # both in the catalog's case


def test_a_broken_policy_edit_tells_users_nothing_of_it(fresh):
    pair = fresh
    for lk in pair.both:  # the same broken edit of each lake's watched policy folder
        csv = pair.policy_dir(lk) / "policy.csv"
        csv.write_text(csv.read_text() + "p2, alice, hr.emp, oops, \"region IN ('eu'\", *\n")
    for attack in (
        read(),
        lambda lk: lk.write("hr.emp", rows_in_view([99]), user=USER),
        lambda lk: lk.catalog.describe("hr.emp", user=USER),
        lambda lk: lk.crawl(pair.landing, database="sandbox", user=USER),
    ):
        obs = pair.same(attack)
        assert obs[0] == "error" and obs[1] == "PolicyError", obs
        assert "policy.csv" not in obs[2] and "oops" not in obs[2], obs
    # The owner is told where the error is.
    with pytest.raises(LakeError, match="policy.csv"):
        pair.real.sql("SELECT 1")


def test_streams_cannot_take_lakewards_own_application_ids(fresh, tmp_path):
    pair = fresh
    # A crawl records each file under lakeward.crawl:<file>; a job's output under
    # lakeward.job.<id>; the audit trail under lakeward.audit. A stream of such a name would make
    # a crawl skip files or a job's output count as already committed.
    for app in ("lakeward.job.0123456789ab", "lakeward.crawl:part-1.parquet", "LAKEWARD.audit"):
        obs = pair.same(
            lambda lk, a=app: lk.append_stream(
                "hr.emp", [(10**9, rows_in_view([99]))], app_id=a, user=USER
            )
        )
        assert obs[0] == "error" and obs[1] == "InvalidArgument", obs
        obs = pair.same(lambda lk, a=app: lk.committed_seq("hr.emp", a, user=USER))
        assert obs[0] == "error" and obs[1] == "InvalidArgument", obs
    land = pair.landing / "emp"
    land.mkdir()
    pq.write_table(rows_in_view([98]), land / "part-1.parquet")
    obs = pair.same(lambda lk: lk.ingest("hr.emp", land, user=USER))
    assert obs[0] == "ok" and obs[1]["rows"] == 1, obs
    pair.same(read())


def _entry(info) -> dict:
    """A catalog entry without what only differs by the lakes' histories (ids, versions)."""
    keep = ("database", "name", "location", "table_type", "schema_json", "partition_by")
    return {k: getattr(info, k) for k in (*keep, "description", "tags", "owner")}


def test_catalog_entries_carry_no_path_and_no_hidden_column(pair):
    obs = pair.same(lambda lk: [_entry(t) for t in lk.catalog.list_tables(user=USER)])
    assert all(e["location"] == "" for e in obs[1]), obs
    pair.same(lambda lk: _entry(lk.catalog.table("hr.emp", user=USER)))
    pair.same(lambda lk: _entry(lk.catalog.set_properties("hr.emp", {"k": "v"}, user=USER)))
    pair.same(lambda lk: [(d.name, d.description) for d in lk.catalog.list_databases(user=USER)])


def test_creating_a_database_that_exists_hidden_tells_nothing_of_it(tmp_path):
    from support.reference import POLICY

    # cara may create databases, and may know nothing of vault.
    extra = "p, cara, *, create, allow\np, cara, vault, *, deny\n"
    pair = build(tmp_path / "lakes", policy=POLICY + extra)
    try:
        for exist_ok in (True, False):
            with pytest.raises(LakeError) as e:
                pair.real.catalog.create_database("vault", exist_ok=exist_ok, user="cara")
            assert "vault data" not in str(e.value) and "already" not in str(e.value)
        made = pair.real.catalog.create_database("fresh_db", user="cara")
        assert made.name == "fresh_db"
    finally:
        pair.close()


def test_a_describe_only_user_knows_only_the_columns_they_may_describe(tmp_path):
    from support.reference import POLICY

    extra = (
        "p, dana, hr.emp, describe, allow\np, dana, hr.emp.ssn, describe, deny\n"
        "p, dana, hr.emp, insert, allow\n"
    )
    pair = build(tmp_path / "lakes", policy=POLICY + extra)
    try:
        lk = pair.real
        cols = [c["name"] for c in lk.catalog.describe("hr.emp", user="dana")["columns"]]
        assert cols == ["id", "region", "name", "phone", "salary", "notes"]
        assert "ssn" not in lk.catalog.table("hr.emp", user="dana").schema_json
        errors = []
        for col in ("ssn", "zzz"):
            data = pa.table({"id": pa.array([1], pa.int64()), col: ["x"]})
            with pytest.raises(LakeError) as e:
                lk.write("hr.emp", data, user="dana")
            errors.append((type(e.value), str(e.value).replace(col, "?")))
        assert errors[0] == errors[1], errors
    finally:
        pair.close()


def test_write_expressions_never_fail_on_a_hidden_row(pair):
    # delta-rs evaluates predicates and update values on whole files, hidden rows included
    # (ids 5, 6 and 8 are hidden): an expression that can fail is refused for her, whatever
    # the rows, and one that cannot fail answers alike.
    for attack in (
        lambda lk: lk.delete("hr.emp", where="10 / (id - 5) > 0", user=USER),
        lambda lk: lk.delete("hr.emp", where="id % (id - 8) = 0", user=USER),
        lambda lk: lk.delete("hr.emp", where="CAST(CAST(id AS VARCHAR) AS INTEGER) = 6", user=USER),
        lambda lk: lk.update(
            "hr.emp", set={"id": "id + 10 / (id - 6)"}, where="id > 100", user=USER
        ),
        lambda lk: lk.update("hr.emp", set={"id": "abs(id)"}, where="id > 100", user=USER),
    ):
        obs = pair.same(attack)
        assert obs[0] == "error" and obs[1] == "AccessDenied", obs
    for fine in (
        lambda lk: lk.delete("hr.emp", where="id + 1 = 1000 OR id IN (500, 501)", user=USER),
        lambda lk: lk.update("hr.emp", set={"name": "'x' || id"}, where="id * 2 = 2000", user=USER),
        lambda lk: lk.delete("hr.emp", where="coalesce(id, 0) BETWEEN 900 AND 901", user=USER),
    ):
        obs = pair.same(fine)
        assert obs[0] == "ok", obs
