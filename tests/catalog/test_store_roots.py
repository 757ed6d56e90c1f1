"""How a lake root finds its catalog, and that it never silently opens another one."""

from __future__ import annotations

import pytest

import lake
from catalog import storage
from catalog.errors import InvalidArgument
from catalog.store.roots import choose_url, open_root_store, redact

from support import pg, s3


def databases(lk) -> list[str]:
    """The user's databases (`system` holds Lakeward's own audit trail)."""
    return [d.name for d in lk.catalog.list_databases() if d.name != "system"]


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("LAKE_CATALOG", raising=False)


@pytest.mark.local_disk  # the SQLite catalog inside the root
def test_a_root_keeps_its_own_sqlite_catalog(tmp_path, no_env, monkeypatch):
    root = tmp_path / "lake"
    with lake.connect(root) as lk:
        lk.catalog.create_database("sales")
        assert lk.store.url.startswith("sqlite:///")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    with pytest.raises(InvalidArgument, match="its own SQLite catalog"):
        lake.connect(root, catalog=other)
    monkeypatch.setenv("LAKE_CATALOG", other)  # the environment does not move a bound root
    with lake.connect(root) as lk:
        assert databases(lk) == ["sales"]


def test_a_new_root_takes_the_argument_then_lake_toml_then_the_environment(
    tmp_path, no_env, monkeypatch
):
    root = tmp_path / "r"
    root.mkdir()
    assert choose_url(root, None, None) is None  # SQLite inside the root
    monkeypatch.setenv("LAKE_CATALOG", "sqlite:///env.db")
    assert choose_url(root, None, None) == "sqlite:///env.db"
    assert choose_url(root, None, "sqlite:///toml.db") == "sqlite:///toml.db"
    assert choose_url(root, "sqlite:///arg.db", "sqlite:///toml.db") == "sqlite:///arg.db"


def test_lake_toml_names_the_catalog_and_the_root_remembers_it(tmp_path, no_env):
    root = tmp_path / "lake"
    root.mkdir()
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    (root / "lake.toml").write_text(f'[catalog]\nurl = "{shared}"\n')
    with lake.connect(root) as lk:
        assert lk.store.url == shared
        lk.catalog.create_database("x")
    (root / "lake.toml").write_text("")  # the record alone finds it now
    with lake.connect(root) as lk:
        assert lk.store.url == shared and databases(lk) == ["x"]
    (root / "lake.toml").write_text("[catalog]\nurl = 3\n")
    with pytest.raises(InvalidArgument, match=r"\[catalog\] url: input should be a valid string"):
        lake.connect(root)


def test_two_roots_may_share_one_catalog(tmp_path, no_env):
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    a = open_root_store(tmp_path / "a", shared)
    b = open_root_store(tmp_path / "b", shared)
    try:
        assert a.catalog_id() == b.catalog_id()
    finally:
        a.close()
        b.close()


def test_postgresql_root_reopens_without_arguments_and_without_its_password(tmp_path, no_env):
    server = pg.require_server()
    with pg.fresh_database(server) as url:
        root = tmp_path / "lake"
        # The test server trusts every local login; the password only has to stay unrecorded.
        with lake.connect(root, catalog=url.replace("lake@", "lake:secret@")) as lk:
            lk.catalog.create_database("sales")
        with lake.connect(root) as lk:  # what the root recorded
            assert lk.store.url.endswith(url.rsplit("/", 1)[1])
            assert databases(lk) == ["sales"]
        with pytest.raises(InvalidArgument, match="not its own SQLite catalog|not sqlite"):
            lake.connect(root, catalog=f"sqlite:///{tmp_path / 'x.db'}")
    assert redact("postgresql://lake:secret@h:5432/db") == "postgresql://lake@h:5432/db"
    assert "secret" not in storage.read_text(
        storage.join(str(s3.mapped(root)), "_lakeward/catalog.json")
    )
