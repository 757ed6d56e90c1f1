"""PostgreSQL for tests: a fresh database per test on the server `scripts/pg_cluster.sh` starts.

`LAKE_TEST_PG` names that server (an admin URL, `scripts/pg_cluster.sh run` sets it);
`LAKE_TEST_CATALOG` (same form) also puts every lake the tests open on it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SKIP_REASON = (
    "no PostgreSQL server for the tests: run `make test` (it starts one with "
    "scripts/pg_cluster.sh) or set LAKE_TEST_PG=postgresql://user@127.0.0.1:port/postgres"
)


def server_url() -> str | None:
    """The admin URL of the test server, if there is one."""
    return os.environ.get("LAKE_TEST_CATALOG") or os.environ.get("LAKE_TEST_PG") or None


def require_server() -> str:
    url = server_url()
    if url is None:
        pytest.skip(SKIP_REASON)
    return url


def _admin(url: str):
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


@contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new empty database on `server`; yields its URL and drops it (and its sessions) after."""
    name = "lakeward_t_" + uuid.uuid4().hex[:16]
    with _admin(server) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with _admin(server) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sessions(url: str) -> int:
    """How many server sessions are connected to the database of `url` (not counting this one)."""
    name = url.rsplit("/", 1)[1].split("?")[0]
    with _admin(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone()[0]


def sessions_after_close(url: str, timeout: float = 10.0) -> int:
    """`sessions(url)` once the server has let go of clients that just disconnected (a server
    process outlives its client's goodbye by a moment), or after `timeout`."""
    import time

    deadline = time.monotonic() + timeout
    while (n := sessions(url)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return n
