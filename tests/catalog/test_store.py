"""One behaviour suite for the metadata store, run over every backend (SQLite, PostgreSQL).

Everything goes through the abstract interface `catalog.store.base.MetadataStore`; the PostgreSQL
cases run on a fresh database of the server `scripts/pg_cluster.sh` starts (skipped, saying so,
when there is none).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from catalog.errors import (
    CommitConflict,
    DatabaseExists,
    InvalidArgument,
    TableExists,
    TransactionError,
)
from catalog.store import DatabaseInfo, MetadataStore, Ratify, TableInfo, load_store
from catalog.store.connections import MAX_OVERFLOW, POOL_SIZE, open_connections, open_count

from support import pg, store_workers

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path):
    """The URL of an empty metadata database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    with pg.fresh_database(pg.require_server()) as url:
        yield url


@pytest.fixture
def store(store_url):
    st = load_store(store_url)
    assert isinstance(st, MetadataStore)
    yield st
    st.close()


def table(name: str, version: int = 0, database: str = "d") -> TableInfo:
    return TableInfo(
        id=0,
        database=database,
        name=name,
        location=f"/nowhere/{name}",
        table_type="GOVERNED",
        schema_json="{}",
        partition_by=("region",),
        description="t",
        tags={"k": "v"},
        owner="alice",
        created_at=datetime.now(UTC),
        version=version,
        properties={"compaction.min_files": "4"},
    )


@pytest.fixture
def two_tables(store):
    store.create_database(DatabaseInfo("d", "desc", "alice", {"team": "x"}))
    return store.create_table(table("a"), "alice", "CREATE"), store.create_table(
        table("b"), "alice", "CREATE"
    )


def spawn_all(fn, arg_lists):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(arg_lists)) as pool:
        return pool.starmap(fn, arg_lists)


# databases and tables ------------------------------------------------------------------------
def test_databases(store):
    store.create_database(DatabaseInfo("d", "desc", "alice", {"team": "x"}))
    with pytest.raises(DatabaseExists):
        store.create_database(DatabaseInfo("d"))
    got = store.get_database("d")
    assert (got.name, got.description, got.owner, dict(got.tags)) == (
        "d",
        "desc",
        "alice",
        {"team": "x"},
    )
    assert got.created_at.tzinfo is not None
    store.create_database(DatabaseInfo("c"))
    assert [d.name for d in store.list_databases()] == ["c", "d"]
    store.drop_database("c")
    assert store.get_database("c") is None


def test_tables_adopt_existing_versions(store):
    store.create_database(DatabaseInfo("d"))
    t = store.create_table(table("t", version=2), "alice", "REGISTER")
    assert (t.version, t.partition_by, dict(t.properties)) == (
        2,
        ("region",),
        {"compaction.min_files": "4"},
    )
    with pytest.raises(TableExists):
        store.create_table(table("t"), "bob", "CREATE")
    assert [(c.version, c.operation) for c in store.commits(t.id)] == [
        (2, "REGISTER"),
        (1, "ADOPTED"),
        (0, "ADOPTED"),
    ]
    assert store.get_table("d", "t").id == t.id == store.get_table_by_id(t.id).id
    store.update_table(t.id, description="new", properties={"a": "1", "compaction.min_files": None})
    got = store.get_table("d", "t")
    assert (got.description, dict(got.properties)) == ("new", {"a": "1"})
    assert [x.name for x in store.list_tables("d")] == ["t"]
    store.drop_table(t.id)
    assert store.get_table("d", "t") is None and store.commits(t.id) == []


def test_tables_are_read_several_at_once_exactly_as_one_by_one(store, two_tables):
    a, b = two_tables
    store.update_table(b.id, properties={"x": "1", "y": "2"})
    got = store.get_tables([("d", "b"), ("d", "missing"), ("d", "a"), ("d", "b")])
    assert set(got) == {("d", "a"), ("d", "b")}
    for key, info in got.items():
        one = store.get_table(*key)
        assert info == one
        assert info.created_at.tzinfo is not None and info.tags == {"k": "v"}
    assert got[("d", "b")].properties == {"compaction.min_files": "4", "x": "1", "y": "2"}
    assert got[("d", "a")].partition_by == ("region",)
    assert store.get_tables([]) == {} and store.get_table("d", "missing") is None


def test_only_tables_whose_lock_is_taken_are_locked(store, two_tables):
    a, b = two_tables
    assert store.locked_tables() == []
    store.try_lock(b.id, "t1", "w", 15)
    assert [t.id for t in store.locked_tables()] == [b.id]
    store.unlock("t1")
    assert store.locked_tables() == []


# ratify: the commit point --------------------------------------------------------------------
def test_ratify_moves_every_pointer_or_none(store, two_tables):
    a, b = two_tables
    token = uuid.uuid4().hex
    assert store.try_lock(a.id, token, "w", 15)[0] == 0
    assert store.try_lock(b.id, token, "w", 15)[0] == 0
    seq0 = store.current_seq()
    with pytest.raises(CommitConflict):  # b did not start from version 5: nothing moves
        store.ratify(
            [Ratify(a.id, 0, 1, ((1, "WRITE", {}),)), Ratify(b.id, 5, 6, ((6, "WRITE", {}),))],
            "tx",
            "w",
            token,
            close_txn=False,
            audit={"statement": "never"},
        )
    assert store.pointers([a.id, b.id]) == {a.id: 0, b.id: 0}
    assert store.current_seq() == seq0
    assert store.audit_pending(10) == []
    assert store.lock_holder(a.id).token == token  # still locked: the writer may retry
    seq = store.ratify(
        [
            Ratify(a.id, 0, 2, ((1, "WRITE", {"n": 1}), (2, "DELETE", {}))),
            Ratify(b.id, 0, 1, ((1, "WRITE", {}),)),
        ],
        "tx",
        "w",
        token,
        close_txn=False,
        audit={"statement": "two tables"},
    )
    assert seq == seq0 + 1 == store.current_seq()
    assert store.pointers([a.id, b.id]) == {a.id: 2, b.id: 1}
    assert store.versions_at([a.id, b.id], seq0) == {a.id: 0, b.id: 0}
    assert store.versions_at([a.id, b.id], seq) == {a.id: 2, b.id: 1}
    assert [(c.version, c.operation, dict(c.params)) for c in store.commits(a.id, 2)] == [
        (2, "DELETE", {}),
        (1, "WRITE", {"n": 1}),
    ]
    assert [r["statement"] for _, r in store.audit_pending(10)] == ["two tables"]
    assert store.lock_holder(a.id) is None and store.lock_holder(b.id) is None  # released


def test_ratify_is_a_compare_and_set_on_the_lock_token(store, two_tables):
    a, _ = two_tables
    mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    store.try_lock(a.id, mine, "w1", 15)
    assert store.steal_lock(a.id, mine, theirs, "w2", 15) == 0
    with pytest.raises(CommitConflict):
        store.ratify([Ratify(a.id, 0, 1, ((1, "WRITE", {}),))], "t1", "w1", mine, close_txn=False)
    assert store.pointers([a.id]) == {a.id: 0}
    with pytest.raises(CommitConflict):  # nobody's lock at all
        store.ratify(
            [Ratify(a.id, 0, 1, ((1, "WRITE", {}),))], "t3", "w3", "nobody", close_txn=False
        )
    store.ratify([Ratify(a.id, 0, 1, ((1, "WRITE", {}),))], "t2", "w2", theirs, close_txn=False)
    assert store.pointers([a.id]) == {a.id: 1}


def test_ratify_closes_the_transaction_once(store, two_tables):
    a, _ = two_tables
    tx = store.begin_txn("tx1", "alice", 300)
    assert (tx.state, tx.snapshot_seq) == ("ACTIVE", store.current_seq())
    store.try_lock(a.id, "tx1", "w", 15)
    store.ratify([Ratify(a.id, 0, 1, ((1, "WRITE", {}),))], "tx1", "alice", "tx1", close_txn=True)
    assert store.get_txn("tx1").state == "COMMITTED"
    with pytest.raises(TransactionError):
        store.ratify([], "tx1", "alice", "tx1", close_txn=True)


# audit queue -----------------------------------------------------------------------------------
def test_audit_append_returns_increasing_sequence_numbers(store):
    seqs = [store.audit_append({"i": i, "user": "alice", "at": "é"}) for i in range(5)]
    assert store.audit_pending(1)[0][1] == {"i": 0, "user": "alice", "at": "é"}
    assert seqs == sorted(seqs) and len(set(seqs)) == 5 and seqs[0] > 0
    assert [(s, r["i"]) for s, r in store.audit_pending(3)] == list(
        zip(seqs[:3], range(3), strict=True)
    )
    store.audit_forget(seqs[2])
    assert [s for s, _ in store.audit_pending(10)] == seqs[3:]
    assert store.audit_append({"i": 5}) > seqs[-1]  # never reused, even after forgetting


def test_a_failed_write_leaves_nothing_and_the_store_usable(store):
    with pytest.raises(TypeError):
        store.audit_append({"not json": object()})
    seq = store.audit_append({"i": 1})
    assert store.audit_pending(10) == [(seq, {"i": 1})]
    store.audit_forget(seq)
    assert store.audit_pending(10) == []


# transactions ------------------------------------------------------------------------------------
def test_transactions_time_out_when_idle(store, two_tables):
    a, _ = two_tables
    store.begin_txn("idle", "alice", 0.2)
    store.begin_txn("busy", "bob", 300)
    assert {t.id for t in store.active_txns()} == {"idle", "busy"}
    time.sleep(0.3)
    assert [t.id for t in store.expired_txns()] == ["idle"]
    with pytest.raises(TransactionError, match="idle"):
        store.touch_txn("idle")
    assert store.get_txn("idle").state == "ABORTED"
    assert store.touch_txn("busy", timeout_s=600).timeout_s == 600
    store.try_lock(a.id, "busy", "w", 15)
    store.end_txn("busy", "CANCELLED")
    assert store.get_txn("busy").state == "CANCELLED"
    assert store.lock_holder(a.id) is None  # ending a transaction releases its locks


# locks -------------------------------------------------------------------------------------------
def test_locks(store, two_tables):
    a, b = two_tables
    assert store.try_lock(a.id, "t1", "host:1:1", 15) == (0, None)
    assert store.try_lock(a.id, "t1", "host:1:1", 15) == (0, None)  # already ours
    version, holder = store.try_lock(a.id, "t2", "host:2:2", 15)
    assert version is None
    assert (holder.token, holder.owner, holder.expired, holder.txn_state) == (
        "t1",
        "host:1:1",
        False,
        None,
    )
    assert store.try_lock(10**6, "t2", "o", 15) == (None, None)  # no such table
    assert store.steal_lock(a.id, "not-the-holder", "t2", "o", 15) is None
    store.try_lock(b.id, "t1", "host:1:1", 15)
    assert store.renew_locks(["t1", "t9"], 15) == {"t1"}
    store.unlock("t1", [a.id])
    assert store.lock_holder(a.id) is None and store.lock_holder(b.id).token == "t1"
    store.unlock("t1")
    assert store.lock_holder(b.id) is None
    assert store.renew_locks(["t1"], 15) == set()


def test_lock_lease_runs_out_unless_renewed(store, two_tables):
    a, b = two_tables
    store.try_lock(a.id, "short", "o", 0.5)
    store.try_lock(b.id, "renewed", "o", 0.5)
    for _ in range(4):
        time.sleep(0.25)
        store.renew_locks(["renewed"], 0.5)
    assert store.lock_holder(a.id).expired
    assert not store.lock_holder(b.id).expired
    assert store.steal_lock(a.id, "short", "new", "o2", 15) == 0
    assert store.lock_holder(a.id).token == "new"


def test_stealing_a_lock_aborts_its_transaction(store, two_tables):
    a, _ = two_tables
    store.begin_txn("victim", "alice", 0.1)
    store.try_lock(a.id, "victim", "o", 15)
    time.sleep(0.2)
    holder = store.lock_holder(a.id)
    assert holder.txn_state == "ACTIVE" and holder.txn_idle_until < datetime.now(UTC)
    assert store.steal_lock(a.id, "victim", "thief", "o2", 15) == 0
    assert store.get_txn("victim").state == "ABORTED"


# identity and connections --------------------------------------------------------------------------
def test_catalog_id_is_the_catalogs_own(store_url, tmp_path):
    first = load_store(store_url)
    other = load_store(f"sqlite:///{tmp_path / 'other.db'}")
    again = load_store(store_url)
    try:
        assert first.catalog_id() == again.catalog_id() != other.catalog_id()
    finally:
        for st in (first, other, again):
            st.close()


def test_unknown_url_scheme_is_refused():
    with pytest.raises(InvalidArgument, match="postgresql://"):
        load_store("mysql://x@h/db")


def test_stores_on_one_url_share_a_small_pool_released_on_close(store_url):
    from batch.store import BatchStore

    stores = [load_store(store_url), load_store(store_url), BatchStore(store_url)]
    assert open_count(stores[0].url) == 3
    peak = 0

    def busy(i):
        for _ in range(20):
            stores[i % 2].audit_append({"i": i})
            stores[2].counts()

    threads = [threading.Thread(target=busy, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    # Counted on the client: the server lists a session until its backend has exited, which
    # can be after the client closed that connection and opened another.
    while any(t.is_alive() for t in threads):
        peak = max(peak, open_connections(store_url))
        time.sleep(0.01)
    for st in stores:
        st.close()
        st.close()  # idempotent
    assert open_count(stores[0].url) == 0 and open_connections(store_url) == 0
    if store_url.startswith("postgresql"):
        assert 0 < peak <= POOL_SIZE + MAX_OVERFLOW, peak
        assert pg.sessions_after_close(store_url) == 0


# concurrency, with real processes ------------------------------------------------------------------
def test_six_processes_first_connect_to_an_empty_database(store_url):
    start = time.time() + 2.0  # all six import first, then connect at the same instant
    assert spawn_all(store_workers.first_connect, [(store_url, start)] * 6) == ["ok"] * 6
    st = load_store(store_url)
    try:
        assert st.current_seq() == 0 and st.list_databases() == []
    finally:
        st.close()


def test_a_live_table_is_never_reported_dropped(store, two_tables):
    a, _ = two_tables
    start = time.time() + 2.0
    results = spawn_all(store_workers.lock_churn, [(store.url, a.id, 5.0, start)] * 2)
    assert sum(r["dropped"] for r in results) == 0, results
    assert all(r["taken"] > 20 and r["busy"] > 0 for r in results), results  # they did contend


def test_the_version_read_under_a_lock_is_never_stale(store, two_tables):
    a, _ = two_tables
    start = time.time() + 2.0
    results = spawn_all(store_workers.increment, [(store.url, a.id, 150, start)] * 2)
    assert [r["conflicts"] for r in results] == [0, 0], results
    assert store.pointers([a.id]) == {a.id: 300}


def test_two_schedulers_never_both_take_the_lease(store_url):
    from batch.store import BatchStore, leases

    rounds = 100
    st = BatchStore(store_url)
    with st.write() as conn:  # each round's lease is held by a scheduler whose lease ran out
        conn.execute(
            leases.insert(),
            [{"name": f"race-{r}", "owner": "gone", "expires_at": 0.0} for r in range(rounds)],
        )
    st.close()
    start = time.time() + 2.0
    won = spawn_all(store_workers.lease_rounds, [(store_url, m, rounds, start, 0.03) for m in "ab"])
    both = set(won[0]) & set(won[1])
    assert not both, f"both won {len(both)} of {rounds} rounds"
    assert len(won[0]) + len(won[1]) == rounds  # and every round, one of them took it


def test_times_come_back_in_utc(store, two_tables):
    a, _ = two_tables
    before = datetime.now(UTC) - timedelta(seconds=5)
    assert store.commits(a.id)[0].committed_at > before
    assert store.version_at_time(a.id, datetime.now(UTC)) == 0
    assert store.version_at_time(a.id, before - timedelta(days=1)) is None


def test_a_lake_on_postgresql_holds_few_connections_and_releases_them_all(tmp_path):
    import pyarrow as pa

    import lake

    with pg.fresh_database(pg.require_server()) as url:
        peak = 0
        lk = lake.connect(tmp_path / "lake", catalog=url)
        try:
            lk.catalog.create_database("s")
            lk.catalog.create_table("s.t", pa.schema([("id", pa.int64())]))
            lk.batch.store.counts()  # the batch store shares the catalog's pool

            def work(i):
                for j in range(5):
                    lk.write("s.t", pa.table({"id": [i * 10 + j]}), user="u")
                    lk.sql("SELECT count(*) AS n FROM s.t", user="u")

            threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                peak = max(peak, pg.sessions(url))
                time.sleep(0.01)
            with lk.transaction(user="u") as tx:
                tx.write("s.t", pa.table({"id": [999]}))
            assert lk.sql("SELECT count(*) AS n FROM s.t", user="u")["n"][0].as_py() == 21
        finally:
            lk.close()
        assert 0 < peak <= POOL_SIZE + MAX_OVERFLOW, peak
        assert pg.sessions_after_close(url) == 0
