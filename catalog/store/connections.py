"""SQLAlchemy engines and per-thread connections shared by every store on the metadata database."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa


def sqlite_engines(url: str) -> tuple[sa.Engine, sa.Engine]:
    """A writer engine whose transactions start with BEGIN IMMEDIATE, and a plain reader engine.

    IMMEDIATE takes SQLite's write lock up front, so two writers never deadlock on a lock
    upgrade; readers stay on deferred transactions and never block in WAL mode.
    """

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    engines = []
    for begin in ("BEGIN IMMEDIATE", "BEGIN"):
        # Every thread keeps a connection (see Connections): room for a few dozen threads.
        eng = sa.create_engine(url, poolclass=sa.pool.QueuePool, pool_size=4, max_overflow=32)
        sa.event.listen(eng, "connect", on_connect)
        sa.event.listen(eng, "begin", lambda conn, b=begin: conn.exec_driver_sql(b))
        engines.append(eng)
    return engines[0], engines[1]


class Connections:
    """Writer and reader engines for a URL, with one long-lived connection per thread and role.

    Pool checkout and reset cost more than the statements of a commit, so connections are kept.
    """

    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite"):
            self.writer, self.reader = sqlite_engines(url)
        else:
            self.writer = sa.create_engine(url, pool_pre_ping=True)
            self.reader = self.writer
        self._tl = threading.local()
        self._open: list[sa.Connection] = []
        self._open_lock = threading.Lock()

    def _conn(self, engine: sa.Engine, key: str) -> sa.Connection:
        tl = self._tl
        if getattr(tl, "pid", None) != os.getpid():  # never share a connection across fork
            tl.__dict__.clear()
            tl.pid = os.getpid()
        conn = getattr(tl, key, None)
        if conn is None or conn.closed or conn.invalidated:
            conn = engine.connect()
            setattr(tl, key, conn)
            with self._open_lock:
                self._open.append(conn)
        return conn

    @contextmanager
    def _begin(self, engine: sa.Engine, key: str) -> Iterator[sa.Connection]:
        conn = self._conn(engine, key)
        try:
            with conn.begin():
                yield conn
        except sa.exc.DBAPIError:
            self._tl.__dict__.pop(key, None)
            conn.invalidate()
            raise

    def write(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite)."""
        return self._begin(self.writer, "w")

    def read(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """A read transaction (never blocks writers in WAL mode)."""
        return self._begin(self.reader, "r")

    def close(self) -> None:
        """Close every kept connection and dispose of the engines."""
        with self._open_lock:
            for conn in self._open:
                with contextlib.suppress(Exception):
                    conn.close()
            self._open.clear()
        self._tl = threading.local()
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()
