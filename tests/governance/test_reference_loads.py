"""Crawl, ingest and register_table as an attacker (issue 8 leak 1; contract rule 11), each
attack run on the source lake and on alice's reference lake (tests/support/reference.py).

alice holds select on `location:BASE`, the folder both lakes live in: only the rule that a
lake's own files (table folders, its metadata store, its policy folder, batch folders) are
never a readable location protects them. Every attack must answer exactly as on the
reference, which holds nothing alice may not see, and leak nothing hidden.
"""

from __future__ import annotations

import os
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from support.reference import USER, build


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


def location(lk, table: str) -> str:
    """A table's folder, as the lake's owner knows it."""
    return lk.catalog.describe(table)["location"]


def refused(obs) -> bool:
    return obs[0] == "error" and obs[1] == "AccessDenied" and "may not read that location" in obs[2]


def crawl(path_of, database: str = "sandbox", user: str = USER):
    return lambda lk: lk.crawl(path_of(lk), database=database, user=user)


def ingest(path_of, table: str = "sandbox.loot", **kw):
    return lambda lk: lk.ingest(table, path_of(lk), user=USER, **kw)


# the lake's own files ----------------------------------------------------------------------


@pytest.mark.parametrize("table", ["hr.emp", "hr.secret", "vault.keys", "sales.orders"])
def test_crawl_of_a_table_folder_is_refused(pair, table):
    # hr.emp: her own table, read around its policy (every row, ssn, deleted rows); hr.secret
    # and vault.keys: tables she may not see at all (missing in the reference: its folder is
    # then the database's folder or nothing); sales.orders: a table she sees whole.
    def path_of(lk):
        try:
            return location(lk, table)
        except LookupError:
            return str(lk.root / table.replace(".", "/"))

    obs = pair.same(crawl(path_of))
    assert refused(obs), obs


@pytest.mark.parametrize("where", ["root", "hr", "policy", "store", "store-wal", "audit"])
def test_crawl_and_ingest_of_the_lakes_own_files_are_refused(pair, where):
    def path_of(lk):
        return {
            "root": str(lk.root),
            "hr": str(lk.root / "hr"),
            "policy": str(pair.policy_dir(lk)),
            "store": str(pair.store_file(lk).parent),
            "store-wal": str(pair.store_file(lk)) + "-wal",
            "audit": str(lk.root / "system"),
        }[where]

    assert refused(pair.same(crawl(path_of))), where
    assert refused(pair.same(ingest(path_of, format="csv"))), where


@pytest.mark.parametrize("name", ["policy.csv", "catalog.db", "catalog.db-wal"])
def test_ingest_of_policy_and_metadata_store_files_is_refused(pair, name):
    def path_of(lk):
        folder = pair.policy_dir(lk) if name == "policy.csv" else pair.store_file(lk).parent
        return str(folder / name)

    for fmt in ("csv", "json", "parquet"):
        obs = pair.same(ingest(path_of, format=fmt))
        assert refused(obs), (name, fmt, obs)


def test_a_sqlalchemy_source_on_the_metadata_store_is_refused(pair):
    for query in ("SELECT * FROM policies", "SELECT * FROM sqlite_master"):

        def source(lk, query=query):
            return (f"sqlite:///{pair.store_file(lk)}", query)

        obs = pair.same(lambda lk, s=source: lk.ingest("sandbox.loot", s(lk), user=USER))
        assert refused(obs), obs


def test_symlinks_and_dotdot_out_of_a_granted_location_are_refused(pair):
    # Each lake gets a trap under the landing folder (granted) pointing into its own files.
    for lk, tag in ((pair.real, "real"), (pair.ref, "ref")):
        trap = pair.base / f"trap-{tag}"
        (trap / "evil").mkdir(parents=True)
        os.symlink(location(lk, "hr.emp"), trap / "evil" / "emp")
        os.symlink(pair.store_file(lk), trap / "store.csv")
        files = trap / "files"
        files.mkdir()
        for f in sorted(os.listdir(location(lk, "hr.emp"))):
            if f.endswith(".parquet"):
                os.symlink(os.path.join(location(lk, "hr.emp"), f), files / f)

    def trap(lk):
        return pair.base / ("trap-real" if lk is pair.real else "trap-ref")

    for attack in (
        crawl(lambda lk: trap(lk) / "evil"),
        crawl(lambda lk: trap(lk) / "files"),
        crawl(lambda lk: trap(lk) / "evil" / "emp"),
        ingest(lambda lk: trap(lk) / "files"),
        ingest(lambda lk: str(trap(lk) / "files" / "*.parquet")),
        ingest(lambda lk: trap(lk) / "store.csv", format="csv"),
        # `..` out of the landing folder into the lake's root
        crawl(lambda lk: f"{pair.landing}/../{lk.root.name}/hr/emp"),
        ingest(lambda lk: f"{pair.landing}/../{lk.root.name}/hr/emp/*.parquet"),
    ):
        obs = pair.same(attack)
        assert refused(obs), obs


def test_register_table_of_a_table_folder_is_refused(pair):
    for table in ("hr.emp", "hr.secret"):

        def register(lk, table=table):
            try:
                where = location(lk, table)
            except LookupError:
                where = str(lk.root / table.replace(".", "/"))
            return lk.catalog.register_table("sandbox.stolen", location=where, user=USER)

        obs = pair.same(register)
        assert refused(obs), obs


def test_the_owner_cannot_register_a_second_entry_for_a_tables_files(pair):
    with pytest.raises(Exception, match="may not register the lake's own files"):
        pair.real.catalog.register_table("sandbox.twin", location=location(pair.real, "hr.emp"))


# no grant at all ---------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["nobody", USER])
def test_a_crawl_without_a_grant_creates_nothing(pair, user, tmp_path):
    # nobody holds no grant at all; alice has no location covering /etc or tmp_path.
    data = tmp_path / "outside"
    data.mkdir()
    pq.write_table(pa.table({"a": [1]}), data / "t.parquet")
    for path in (str(data), "/etc", "/"):
        obs = pair.same(crawl(lambda lk, p=path: p, database="newdb", user=user))
        assert refused(obs), obs
        assert "newdb" not in [d.name for d in pair.real.catalog.list_databases()]
    obs = pair.same(lambda lk: lk.ingest("newdb.t", str(data), user=user))
    assert obs[0] == "error" and obs[1] in ("AccessDenied", "TableNotAccessible"), obs
    assert "newdb" not in [d.name for d in pair.real.catalog.list_databases()]


# what a load answers -----------------------------------------------------------------------


def test_crawl_and_ingest_answer_alike_on_both_lakes(fresh):
    pair = fresh
    land = pair.landing / "drop"
    (land / "events").mkdir(parents=True)
    pq.write_table(pa.table({"k": [1, 2], "v": ["a", "b"]}), land / "events" / "part-1.parquet")
    (land / "readme.txt").write_text("not data")
    pair.same(lambda lk: lk.crawl(land, database="sandbox", user=USER))
    pair.same(lambda lk: lk.sql("SELECT * FROM sandbox.events", user=USER))
    pair.same(lambda lk: lk.ingest("sandbox.events", land / "events", user=USER))
    pair.same(lambda lk: lk.sql("SELECT * FROM sandbox.events", user=USER))


def test_loads_into_a_table_with_hidden_columns_show_only_her_columns(fresh):
    # Crawling or ingesting into hr.emp (she may insert) must describe the table as she sees
    # it: no ssn in the schema, no hidden column in any problem.
    pair = fresh
    land = pair.landing / "hr"
    (land / "emp").mkdir(parents=True)
    rows = pa.table(
        {"id": pa.array([20], pa.int64()), "region": ["eu"], "name": ["Ina"], "phone": ["***20"]}
    )
    pq.write_table(rows, land / "emp" / "part-1.parquet")
    pair.same(lambda lk: lk.crawl(land, database="hr", user=USER))
    pair.same(lambda lk: lk.sql("SELECT * FROM hr.emp", user=USER))
    more = pair.landing / "more.parquet"
    pq.write_table(rows.set_column(0, "id", pa.array([21], pa.int64())), more)
    pair.same(lambda lk: lk.ingest("hr.emp", more, user=USER))
    # A file without the non-nullable id, and one with a column she does not have.
    bad = pair.landing / "bad.parquet"
    pq.write_table(rows.drop_columns(["id"]), bad)
    assert pair.same(lambda lk: lk.ingest("hr.emp", bad, user=USER))[0] == "error"
    ssn = pair.landing / "ssn"
    ssn.mkdir()
    pq.write_table(rows.append_column("ssn", pa.array(["999"])), ssn / "x.parquet")
    obs = pair.same(lambda lk: lk.ingest("hr.emp", ssn, user=USER), allow=["ssn"])
    assert obs[0] == "error", obs
    pair.same(lambda lk: lk.sql("SELECT * FROM hr.emp", user=USER))


# SQLAlchemy URL sources (rule 11: location: + the URL without user and password) ------------


def _sqlite_source(pair) -> str:
    db = pair.landing / "src.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER, v TEXT)")
        c.execute("DELETE FROM t")
        c.executemany("INSERT INTO t VALUES (?, ?)", [(1, "x"), (2, "y")])
    return f"sqlite:///{db}"


def test_a_granted_sqlite_url_loads_alike(fresh):
    url = _sqlite_source(fresh)
    fresh.same(lambda lk: lk.ingest("sandbox.fromdb", (url, "SELECT * FROM t"), user=USER))
    fresh.same(lambda lk: lk.sql("SELECT * FROM sandbox.fromdb", user=USER))


def test_url_tricks_are_refused(pair):
    url = _sqlite_source(pair)
    db = url.removeprefix("sqlite:///")
    tricks = [
        # a path grant does not cover a URL, nor a URL grant another database
        ("sqlite:////etc/passwd-nope.db", "SELECT 1"),
        # `..` out of the granted folder into the lake's store
        (f"sqlite:///{pair.landing}/../store-{{tag}}/catalog.db", "SELECT * FROM policies"),
        # SQLite URI filenames name another file than the URL's path
        (f"sqlite:///file:{db}?mode=ro&uri=true", "SELECT * FROM t"),
        (
            f"sqlite:///{pair.landing}/x.db?uri=true&x=file:{pair.base}/store-{{tag}}/catalog.db",
            "SELECT * FROM policies",
        ),
        # credentials and query parameters that redirect the connection
        ("postgresql://u:hunter2@127.0.0.1:9/lakeward?host=/tmp", "SELECT 1"),
        ("postgresql://u:hunter2@127.0.0.1:9/lakeward?service=other", "SELECT 1"),
        # engines whose queries read local files
        ("duckdb:///:memory:", "SELECT * FROM read_csv('/etc/passwd')"),
    ]
    for u, q in tricks:

        def attack(lk, u=u, q=q):
            tag = "real" if lk is pair.real else "ref"
            return lk.ingest("sandbox.loot", (u.replace("{tag}", tag), q), user=USER)

        obs = pair.same(attack)
        assert refused(obs), (u, obs)
        assert "hunter2" not in repr(obs)


def test_url_locations_drop_credentials_and_keep_what_selects_the_database():
    from governance.locations import resolve

    assert resolve("postgresql://u:pw@127.0.0.1:5432/db") == "postgresql://127.0.0.1:5432/db"
    assert resolve("postgresql+psycopg://u@h/db") == "postgresql://h/db"
    assert resolve("postgresql://h/db?sslmode=require") == "postgresql://h/db"
    assert resolve("s3://bucket/a/../b") == "s3://bucket/b"
