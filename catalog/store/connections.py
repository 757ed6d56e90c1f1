"""One pooled SQLAlchemy engine per metadata-store URL and process, shared by every store on it.

The catalog store and the batch store of a lake (and of every lake of the process on the same
URL) share one small pool, so a client holds at most `POOL_SIZE + MAX_OVERFLOW` connections, and
the last `close()` of a URL closes them all.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from catalog.errors import InvalidArgument

POOL_SIZE = 2  # connections kept open per URL and process
MAX_OVERFLOW = 3  # more, opened while several threads hit the store at once, closed after
SQLITE_OVERFLOW = 16  # SQLite's are in-process files, not server sessions
# Any key works as long as every Lakeward process uses the same one: it serialises migrations.
MIGRATION_LOCK_KEY = 0x4C616B6577617264  # "Lakeward"


def _sqlite_engines(url: str) -> tuple[sa.Engine, sa.Engine]:
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
        # SQLite connections are in-process and cheap: room for a server's worker threads.
        eng = sa.create_engine(
            url, poolclass=sa.pool.QueuePool, pool_size=POOL_SIZE, max_overflow=SQLITE_OVERFLOW
        )
        sa.event.listen(eng, "connect", on_connect)
        sa.event.listen(eng, "begin", lambda conn, b=begin: conn.exec_driver_sql(b))
        engines.append(eng)
    return engines[0], engines[1]


def _server_engines(url: str) -> tuple[sa.Engine, sa.Engine]:
    """One pool; reads run in autocommit (one round trip, READ COMMITTED's snapshot anyway)."""
    eng = sa.create_engine(
        url,
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        # No pre-ping: it costs a round trip per checkout; a connection the server dropped
        # fails its statement once and SQLAlchemy replaces the pool's connections.
        # Every transaction ends in COMMIT or ROLLBACK before its connection goes back.
        pool_reset_on_return=None,
        connect_args={"application_name": "lakeward", "options": _SESSION_OPTIONS},
    )
    return eng, eng.execution_options(isolation_level="AUTOCOMMIT")


def normalize_url(url: str) -> str:
    """The SQLAlchemy URL of a catalog: `postgresql://` and `postgres://` use psycopg 3."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    if sep and (scheme == "sqlite" or scheme.startswith("postgresql+")):
        return url
    raise InvalidArgument(
        f"unsupported catalog URL scheme {scheme.split('+')[0]!r}; "
        "use sqlite:///path or postgresql://user@host/database"
    )


# A client paused or cut off inside a transaction would hold its row locks (a table's lock row,
# the commit counter) until its connection dies: the server ends such a transaction after
# 10 s idle, and finds a vanished client host within ~25 s by TCP keepalives.
_SESSION_OPTIONS = (
    "-c idle_in_transaction_session_timeout=10000 -c tcp_keepalives_idle=10 "
    "-c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
)


class _Row(tuple):
    """A result row: a tuple whose columns are also attributes (as SQLAlchemy's rows are)."""

    __slots__ = ()
    _index: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._index[name]]
        except KeyError:
            raise AttributeError(name) from None


class _Plan:
    """A statement compiled once for a dialect's DBAPI: its text, the order and converters of
    its parameters, and a row type with its columns' converters (SQLAlchemy's own processors)."""

    def __init__(self, stmt: sa.Executable, dialect: sa.Dialect):
        self.stmt = stmt  # held, so its id (the key of `_plans`) is never reused
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        binds = compiled.binds
        # (name, its value when the statement holds it (a literal), converter)
        self.params = [
            (
                name,
                binds[name].effective_value,
                binds[name].type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name in compiled.positiontup or ()
        ]
        columns = list(getattr(stmt, "selected_columns", ()))
        index = {c.name: i for i, c in enumerate(columns)}
        self.row = type("Row", (_Row,), {"__slots__": (), "_index": index})
        self.columns = [
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        ]

    def bind(self, params: dict[str, Any]) -> tuple:
        values = ((params.get(n, held), f) for n, held, f in self.params)
        return tuple(v if f is None else f(v) for v, f in values)

    def rows(self, raw: list[tuple]) -> list[Any]:
        if not self.columns:
            return raw
        convert, row = self.columns, self.row
        return [
            row(v if f is None or v is None else f(v) for f, v in zip(convert, r, strict=True))
            for r in raw
        ]


_plans: dict[tuple[int, str], _Plan] = {}


def _plan(stmt: sa.Executable, dialect: sa.Dialect) -> _Plan:
    key = (id(stmt), dialect.name)
    plan = _plans.get(key)
    if plan is None or plan.stmt is not stmt:
        plan = _plans[key] = _Plan(stmt, dialect)
    return plan


class _Shared:
    def __init__(self, url: str):
        self.url = url
        self.users = 0
        if url.startswith("sqlite"):
            self.writer, self.reader = _sqlite_engines(url)
        else:
            self.writer, self.reader = _server_engines(url)

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader.pool is not self.writer.pool:
            self.reader.dispose()


_shared: dict[tuple[int, str], _Shared] = {}
_shared_lock = threading.Lock()


def open_count(url: str) -> int:
    """How many open stores of this process use `url` (0: its engine is disposed)."""
    with _shared_lock:
        s = _shared.get((os.getpid(), url))
        return s.users if s else 0


def open_connections(url: str) -> int:
    """How many database connections this process holds open for `url` (idle or in use)."""
    with _shared_lock:
        s = _shared.get((os.getpid(), normalize_url(url)))
        if s is None:
            return 0
        pools = {id(e.pool): e.pool for e in (s.writer, s.reader)}.values()
        return sum(p.checkedin() + p.checkedout() for p in pools)


class Connections:
    """The shared engines of a URL, checked out per transaction; `close()` once per instance."""

    def __init__(self, url: str):
        url = self.url = normalize_url(url)
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        key = (os.getpid(), url)  # never share a connection across fork
        with _shared_lock:
            shared = _shared.get(key)
            if shared is None:
                shared = _shared[key] = _Shared(url)
            shared.users += 1
        self._shared: _Shared | None = shared
        self._key = key

    @property
    def closed(self) -> bool:
        return self._shared is None

    @property
    def _engines(self) -> _Shared:
        if self._shared is None:
            raise RuntimeError("this metadata store is closed")
        return self._shared

    @contextmanager
    def _begin(self, engine: sa.Engine) -> Iterator[sa.Connection]:
        with engine.connect() as conn, conn.begin():
            yield conn

    def write(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite)."""
        return self._begin(self._engines.writer)

    def read(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """A read (WAL snapshot on SQLite, autocommit statements on PostgreSQL)."""
        return self._begin(self._engines.reader)

    def single(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """For one writing statement, atomic on its own: autocommit (one round trip) on
        PostgreSQL, a write transaction on SQLite."""
        engines = self._engines
        return self._begin(engines.writer if self.dialect == "sqlite" else engines.reader)

    def fetch(self, stmt: sa.Executable, params: dict[str, Any] | None = None) -> list[Any]:
        """The rows of one read-only statement, atomic on its own (its own snapshot).

        The hot reads of every query (policy sequence, table entries) come here: on SQLite
        through the DBAPI directly (~8 us against ~60 us for SQLAlchemy's BEGIN, statement and
        COMMIT), on PostgreSQL one autocommit round trip. `stmt` is a module-level statement
        (its compiled form is kept by identity): a `select()`, or a `text()` typed with
        `.columns()` when rows are read.
        """
        return self._one(stmt, params or {}, write=False)

    def change(self, stmt: sa.Executable, params: dict[str, Any] | None = None) -> list[Any]:
        """One writing statement in a transaction of its own, committed before this returns;
        the rows it returns. On SQLite through the DBAPI (BEGIN IMMEDIATE, the statement,
        COMMIT), on PostgreSQL one autocommit round trip."""
        return self._one(stmt, params or {}, write=True)

    def _one(self, stmt: sa.Executable, params: dict[str, Any], *, write: bool) -> list[Any]:
        if self.dialect != "sqlite":
            with self._engines.reader.connect() as conn:  # autocommit
                res = conn.execute(stmt, params)
                return list(res.all()) if res.returns_rows else []
        # The reader's pooled connections run in autocommit (BEGIN is ours to send), writes
        # too: a process that only reads and audits opens one SQLite connection, not two.
        engine = self._engines.reader
        plan = _plan(stmt, engine.dialect)
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            try:
                if write:
                    cur.execute("BEGIN IMMEDIATE")
                try:
                    cur.execute(plan.sql, plan.bind(params))
                    out = plan.rows(cur.fetchall())
                    if write:
                        cur.execute("COMMIT")
                except BaseException:
                    if write:
                        with contextlib.suppress(Exception):
                            cur.execute("ROLLBACK")
                    raise
                return out
            finally:
                cur.close()
        finally:
            raw.close()

    def atomic(
        self,
        steps: list[tuple[sa.TextClause, dict[str, Any]]],
        check: Callable[[list[tuple[int, Any]]], None] | None = None,
    ) -> list[tuple[int, Any]]:
        """Run statements in one transaction; commit unless one fails or `check(results)` raises.

        Results are (rowcount, first row) per statement. On PostgreSQL the statements travel in
        one message, with COMMIT at its end when there is no `check` (one round trip however many
        statements; their failures must then be errors), else in a second message. (One message,
        not a pipeline: a client stopped halfway through a pipeline leaves the server waiting for
        the rest, beyond the reach of idle_in_transaction_session_timeout.)
        """
        if self.dialect != "postgresql":
            with self.write() as conn:
                out = []
                for stmt, params in steps:
                    res = conn.execute(stmt, params)
                    out.append((res.rowcount, res.first() if res.returns_rows else None))
                if check is not None:
                    check(out)
                return out
        import psycopg
        from psycopg.types.json import Json

        with self._engines.reader.connect() as conn:  # autocommit: BEGIN is ours to send
            raw = conn.connection.driver_connection
            cur = psycopg.ClientCursor(raw)
            sql = [
                cur.mogrify(
                    _plan(stmt, conn.dialect).sql,
                    {k: Json(v) if isinstance(v, dict | list) else v for k, v in p.items()},
                )
                for stmt, p in steps
            ]
            try:
                cur.execute(";\n".join(["BEGIN", *sql, *(["COMMIT"] if check is None else [])]))
                out = []
                while cur.nextset() and len(out) < len(steps):  # skips BEGIN's result
                    out.append((cur.rowcount, cur.fetchone() if cur.description else None))
                if check is not None:
                    check(out)
                    cur.execute("COMMIT")
                return out
            except BaseException:
                if raw.closed:
                    conn.invalidate()
                elif raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    with contextlib.suppress(psycopg.Error):
                        cur.execute("ROLLBACK")
                raise

    def schema_version(self, meta_table: str) -> Any:
        """The schema version recorded in `meta_table` (None: no such table yet), read without
        the migration lock: connecting to an up-to-date store costs one read."""
        try:
            with self.read() as conn:
                return conn.execute(
                    sa.text(f"SELECT value FROM {meta_table} WHERE key = 'schema_version'")
                ).scalar()
        except sa.exc.DBAPIError:
            return None

    def migrate(self, step: Callable[[sa.Connection], Any]) -> Any:
        """Run `step` in a write transaction that no other process migrates beside.

        SQLite's BEGIN IMMEDIATE already serialises; PostgreSQL DDL does not (two first connects
        create the same types), so an advisory lock held until commit does.
        """
        with self.write() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            return step(conn)

    def close(self) -> None:
        """Give this store's share back; the last one disposes of the engines (idempotent)."""
        shared, self._shared = self._shared, None
        if shared is None:
            return
        with _shared_lock:
            shared.users -= 1
            last = shared.users == 0
            if last and _shared.get(self._key) is shared:
                del _shared[self._key]
        if last:
            shared.dispose()
