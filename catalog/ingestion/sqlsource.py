"""Rows of a query on another database, streamed as Arrow record batches.

SQLAlchemy runs the query with `yield_per` (a server-side cursor where the driver has one, e.g.
PostgreSQL), so only one chunk of rows is in memory at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from catalog.errors import InvalidArgument, SchemaMismatch, SQLError

BATCH_ROWS = 10_000


class QueryStream:
    """An open query: its column names, the first chunk of rows (for typing), then the rest."""

    def __init__(self, url: str, query: str, batch_rows: int = BATCH_ROWS):
        import sqlalchemy as sa
        from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

        if not isinstance(query, str) or not query.strip():
            raise InvalidArgument("a database source is ('sqlalchemy-url', 'SELECT ...')")
        self.url = _safe_url(url)
        self.batch_rows = max(1, int(batch_rows))
        try:
            self._engine = sa.create_engine(url)
        except (ArgumentError, NoSuchModuleError, ValueError) as e:
            raise InvalidArgument(f"bad database URL {self.url!r}: {e}") from None
        try:
            self._conn = self._engine.connect()
        except SQLAlchemyError as e:
            self._engine.dispose()
            raise InvalidArgument(f"cannot connect to {self.url}: {_first_line(e)}") from None
        try:
            self._result = self._conn.execution_options(yield_per=self.batch_rows).execute(
                sa.text(query)
            )
            if not self._result.returns_rows:
                raise SQLError(f"the query on {self.url} returns no rows; use a SELECT")
            self.columns: list[str] = list(self._result.keys())
            self._first = self._result.fetchmany(self.batch_rows)
        except DBAPIError as e:
            self.close()
            raise SQLError(f"query on {self.url} failed: {_first_line(e)}") from None
        except BaseException:
            self.close()
            raise
        if len(set(self.columns)) != len(self.columns):
            self.close()
            raise SchemaMismatch(f"the query on {self.url} returns duplicate column names")

    def inferred_schema(self) -> pa.Schema:
        """Column types inferred from the first chunk (null where it holds only NULLs)."""
        cols = _columns(self._first, len(self.columns))
        return pa.schema(
            [pa.field(n, _array(n, c, None).type) for n, c in zip(self.columns, cols, strict=True)]
        )

    def batches(self, target: pa.Schema) -> Iterator[pa.RecordBatch]:
        """Every row, as batches of `target` (SchemaMismatch if a value does not fit its column)."""
        from sqlalchemy.exc import DBAPIError

        rows = self._first
        self._first = []
        try:
            while rows:
                cols = dict(zip(self.columns, _columns(rows, len(self.columns)), strict=True))
                arrays = [
                    _array(f.name, cols[f.name], f.type)
                    if f.name in cols
                    else pa.nulls(len(rows), f.type)
                    for f in target
                ]
                yield pa.RecordBatch.from_arrays(arrays, schema=target)
                rows = self._result.fetchmany(self.batch_rows)
        except DBAPIError as e:
            raise SQLError(
                f"reading the query result from {self.url} failed: {_first_line(e)}"
            ) from None
        finally:
            self.close()

    def close(self) -> None:
        """Release the cursor, the connection and the engine (safe to call twice)."""
        for step in ("_result", "_conn"):
            obj = self.__dict__.pop(step, None)
            if obj is not None:
                with contextlib.suppress(Exception):  # closing after a failure must not mask it
                    obj.close()
        engine = self.__dict__.pop("_engine", None)
        if engine is not None:
            engine.dispose()


def _columns(rows: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return list(zip(*rows, strict=True)) if rows else [()] * n


def _array(name: str, values: Sequence[Any], target: pa.DataType | None) -> pa.Array:
    try:
        arr = pa.array(values)
        if target is not None and not arr.type.equals(target):
            arr = arr.cast(target)
        return arr
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        want = f" as {target}" if target is not None else ""
        raise SchemaMismatch(
            f"column {name!r} of the query result cannot be read{want}: {_first_line(e)}"
        ) from None


def _first_line(e: BaseException) -> str:
    return str(getattr(e, "orig", None) or e).split("\n")[0]


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a malformed URL is reported by create_engine
        return str(url).split("@")[-1]
