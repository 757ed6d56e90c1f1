"""The locked-down DuckDB that runs every query: it can read the lake's files and nothing else.

Tables in an object store are read through `catalog.storage` (DuckDB's Python file system
interface, registered on the locked database, serving only the allowed prefixes); DuckDB's
`allowed_directories` checks the same prefixes for local folders and `s3://` URIs alike."""

from __future__ import annotations

import functools
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import duckdb
import pyarrow as pa

from catalog import storage
from catalog.errors import AccessDenied, SQLError

_SETTINGS = {
    "python_enable_replacements": False,  # a query cannot reach Python variables
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
}


@functools.lru_cache(maxsize=4096)
def _dir(path: str | Path) -> str:
    # Cached: every query names its tables' folders, and resolving costs a stat per component.
    s = storage.normalize(path) if storage.is_remote(path) else str(Path(path).resolve())
    return s if s.endswith("/") else s + "/"


class Engine:
    """One DuckDB database with external access disabled except for the allowed folders.

    `lock_configuration` freezes the settings, so when a table outside the allowed folders is
    registered a new locked database is built rather than widening this one.
    """

    def __init__(
        self, root: Path | str, memory_limit: str | None = None, threads: int | None = None
    ):
        self.root = str(root)
        self.memory_limit = memory_limit
        self.threads = threads
        self._lock = threading.Lock()
        self._allowed: frozenset[str] = frozenset()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._local = threading.local()
        self._generation = 0
        self._warming: threading.Thread | None = None

    def prepare(self) -> None:
        """Start building the database in the background, so that a process's first query
        (the CLI's, a restarted server's) finds it ready instead of paying DuckDB's start."""
        if self._con is None and self._warming is None:
            self._warming = threading.Thread(
                target=self.allow, args=((),), name="lakeward-engine", daemon=True
            )
            self._warming.start()

    def _build(self, allowed: frozenset[str]) -> duckdb.DuckDBPyConnection:
        if storage.is_remote(self.root):  # spills stay on this host
            tmp = os.path.join(tempfile.gettempdir(), f"lakeward-engine-{os.getpid()}")
        else:
            tmp = os.path.join(self.root, "_lakeward", "tmp")
        os.makedirs(tmp, exist_ok=True)
        con = duckdb.connect(":memory:", config=dict(_SETTINGS))
        if any(storage.is_remote(a) for a in allowed):
            con.register_filesystem(storage.duckdb_filesystem(allowed))
            # DuckDB keeps the object store's bytes it read in its buffer pool; data files never
            # change once written, so reusing them needs no check with the store per query.
            con.execute("SET validate_external_file_cache = 'NO_VALIDATION'")
        dirs = sorted(allowed | {_dir(tmp)})
        con.execute("SET allowed_directories = $1", [dirs])
        con.execute("SET temp_directory = $1", [str(tmp)])
        # Delta data files never change once written, so their footers are read once rather than
        # on every query; this also pays back the per-file cost of the allowed_directories check.
        con.execute("SET GLOBAL parquet_metadata_cache = true")
        if self.memory_limit:
            con.execute("SET memory_limit = $1", [self.memory_limit])
        if self.threads:
            con.execute(f"SET threads = {int(self.threads)}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con

    def allow(self, folders: Iterable[str | Path]) -> None:
        """Make sure the engine may read these folders (rebuilds the database if it may not)."""
        wanted = frozenset(_dir(f) for f in folders)
        if self._con is not None and self._covers(wanted):
            return
        with self._lock:
            if self._con is not None and self._covers(wanted):
                return
            allowed = self._allowed | wanted | {_dir(self.root)}
            self._con = self._build(frozenset(allowed))
            self._allowed = frozenset(allowed)
            self._generation += 1

    def _covers(self, folders: frozenset[str]) -> bool:
        # DuckDB allows whatever lies under an allowed folder: a table inside the lake's root
        # needs no database of its own (folders end with '/', so prefixes are path prefixes).
        allowed = self._allowed
        return all(any(f.startswith(a) for a in allowed) for f in folders)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self.allow([])
        cur = getattr(self._local, "cur", None)
        if cur is None or getattr(self._local, "gen", -1) != self._generation:
            cur = self._con.cursor()  # a cursor per thread: connections are not thread-safe
            self._local.cur, self._local.gen = cur, self._generation
        return cur

    def run(self, sql: str) -> pa.Table:
        """Execute one already-governed query and return its result as Arrow."""
        cur = self._cursor()
        try:
            rel = cur.sql(sql)
            if rel is None:
                raise SQLError("not a query")
            return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
        except duckdb.PermissionException as e:
            raise AccessDenied(f"query refused by the engine: {_clean(e)}") from None
        except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException) as e:
            raise SQLError(_clean(e)) from None
        except duckdb.Error as e:
            raise SQLError(_clean(e)) from None

    def stream(self, sql: str, batch_rows: int = 65_536) -> tuple[pa.RecordBatchReader, Callable]:
        """Execute one already-governed query with its result streamed in record batches as
        DuckDB produces them; returns (reader, close). The query has a cursor of its own, which
        close() frees (call it when the reader is done or abandoned)."""
        if self._con is None:
            self.allow([])
        cur = self._con.cursor()
        try:
            rel = cur.sql(sql)
            if rel is None:
                raise SQLError("not a query")
            return rel.to_arrow_reader(batch_rows), cur.close
        except duckdb.PermissionException as e:
            cur.close()
            raise AccessDenied(f"query refused by the engine: {_clean(e)}") from None
        except duckdb.Error as e:
            cur.close()
            raise SQLError(_clean(e)) from None

    def close(self) -> None:
        """Release the database (after a background build, if one is under way)."""
        if self._warming is not None:
            self._warming.join()
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


_SUGGESTIONS = re.compile(r"\s*(?:Candidate bindings|Did you mean|Candidate functions)")


def _clean(e: Exception) -> str:
    """DuckDB's message on one line, without the query text it quotes (the SQL that ran, not the
    user's) and without suggestions."""
    msg = str(e).split("\n\nLINE", 1)[0].strip()
    # Suggestions are cut so a column the user may not see errs exactly like a missing one;
    # candidate function signatures are DuckDB's catalog, not help.
    msg = _SUGGESTIONS.split(msg, maxsplit=1)[0].strip()
    return re.sub(r"\s*\n\s*", " ", msg)
