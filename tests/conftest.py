"""Fixtures for every test folder (helpers live in the `support` package)."""

from __future__ import annotations

import os
import shutil
import signal
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import lake

from support import s3  # noqa: I001 - first: the AWS_* environment before any helper reads it

s3.set_environment()

from support import pg  # noqa: E402
from support.batch import BATCH_TOML  # noqa: E402
from support.lakes import ENV, INTEROP, ORDERS  # noqa: E402
from support.procs import Worker  # noqa: E402


@pytest.fixture(autouse=True)
def catalog_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """Where the lakes of a test keep their catalog: SQLite in each root, or, when
    LAKE_TEST_CATALOG names a PostgreSQL server, a fresh database of it for this test alone
    (through $LAKE_CATALOG, which `lake.connect` reads). Yields that database's URL or None."""
    server = os.environ.get("LAKE_TEST_CATALOG")
    if not server:
        monkeypatch.delenv("LAKE_CATALOG", raising=False)  # never a developer's own catalog
        yield None
        return
    with pg.fresh_database(server) as url:
        monkeypatch.setenv("LAKE_CATALOG", url)
        yield url


@pytest.fixture(autouse=True)
def storage_backend(
    catalog_backend: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[bool]:
    """Where the lakes of a test keep their files: the local folders the test names, or, when
    LAKE_TEST_STORAGE=s3 and LAKE_TEST_S3 names an S3 API server, the same paths in its bucket
    (support.s3.mapped); an object-store root needs a shared catalog, so without PostgreSQL
    the test's lakes share a SQLite file in its tmp_path. Yields whether lakes are in S3."""
    if not s3.lakes_in_s3():
        yield False
        return
    url = catalog_backend or f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("LAKE_CATALOG", url)
    monkeypatch.setitem(ENV, "LAKE_CATALOG", url)  # worker processes' environment
    connect = lake.connect
    monkeypatch.setattr(lake, "connect", lambda root, *a, **k: connect(s3.mapped(root), *a, **k))
    yield True


@pytest.fixture
def lk(tmp_path):
    with lake.connect(tmp_path / "lake") as handle:
        yield handle


@pytest.fixture
def sales(lk):
    lk.catalog.create_database("sales", description="test")
    lk.catalog.create_table("sales.orders", ORDERS, partition_by=["region"])
    lk.catalog.create_table(
        "sales.customers", pa.schema([("id", pa.int64()), ("name", pa.string())])
    )
    return lk


@pytest.fixture
def interop(tmp_path):
    """Copy a Delta test table to tmp so tests never touch the repository's copy."""

    def copy(name: str) -> Path:
        dst = tmp_path / "interop" / name
        shutil.copytree(INTEROP / name, dst)
        for p in dst.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        dst.chmod(0o755)
        return dst

    return copy


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One Ray shared by every batch test: a local one (4 logical CPUs: spot + on-demand
    capacity), or the 2-node test cluster LAKE_TEST_RAY names (scripts/ray_cluster.sh)."""
    import ray

    from batch.ray_support import local_only

    cluster = os.environ.get("LAKE_TEST_RAY")
    if cluster and not ray.is_initialized():
        # The test cluster of scripts/ray_cluster.sh, whose `run` also set RAY_AUTH_MODE and
        # RAY_AUTH_TOKEN_PATH (Ray reads them on import, before this fixture runs).
        ray.init(address=cluster, log_to_driver=False, namespace="lakeward-tests")
    if not ray.is_initialized():
        local_only()  # as the lake starts it: listening on 127.0.0.1 only
        ray.init(
            num_cpus=4,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            namespace="lakeward-tests",
        )
    yield
    ray.shutdown()


@pytest.fixture
def make_lake(tmp_path: Path, ray_session: None) -> Iterator[Callable[..., Any]]:
    """make_lake(extra_toml="", policy=None) -> an open lake with batch configured."""
    opened: list[Any] = []

    def make(
        extra_toml: str = "", policy: str | None = None, name: str = "lake", base: str = BATCH_TOML
    ) -> Any:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        (root / "lake.toml").write_text(base + textwrap.dedent(extra_toml))
        folder = None
        if policy is not None:
            folder = root / "policy"
            folder.mkdir(exist_ok=True)
            (folder / "policy.csv").write_text(policy)
        lk = lake.connect(root, policy=folder)
        opened.append(lk)
        return lk

    yield make
    for lk in opened:
        b = getattr(lk, "_test_batch", None)
        if b is not None:
            b.close()
        lk.close()


@pytest.fixture
def workers() -> Iterator[Callable[..., Worker]]:
    """workers(mode, root, arg=None, other_host=False) -> a started support/lease_worker.py;
    whatever is still running at the end is resumed and killed."""
    started: list[Worker] = []
    yield lambda *a, **k: started.append(Worker(*a, **k)) or started[-1]
    for w in started:
        if w.proc.poll() is None:
            w.signal(signal.SIGCONT)
            w.signal(signal.SIGKILL)
            w.proc.wait(10)


def pytest_collection_modifyitems(config, items):
    """Marks that follow from fixtures (so `make test-fast` leaves these tests out): the shared
    Ray makes a `ray` test; a lake with batch configured (`make_lake`) runs jobs in sandboxes."""
    for item in items:
        used = getattr(item, "fixturenames", ())
        if "ray_session" in used:
            item.add_marker(pytest.mark.ray)
        if "make_lake" in used:
            item.add_marker(pytest.mark.sandbox)
        if s3.lakes_in_s3() and item.get_closest_marker("local_disk"):
            item.add_marker(
                pytest.mark.skip(reason="works on a local disk's files; lakes are in S3")
            )
