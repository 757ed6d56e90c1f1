"""Server-side state of Flight SQL statements: results waiting for their DoGet, and prepared
statements with their parameters. Both belong to the principal that made them; another
principal's handle is unknown to you, and nothing a client sends is trusted as state.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from catalog.errors import AccessDenied, InvalidArgument, SQLError
from governance.principal import Principal
from governance.sql import QueryStream


def _owner(p: Principal) -> str:
    return p.name.lower()


class Results:
    """Opened query results by ticket, until fetched (once) or `ttl_s` passes; at most
    `per_user` open (waiting or streaming) per principal."""

    def __init__(self, ttl_s: float, per_user: int):
        self.ttl_s, self.per_user = ttl_s, per_user
        self._waiting: dict[bytes, tuple[str, float, QueryStream]] = {}
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def put(self, p: Principal, stream: QueryStream) -> bytes:
        """A ticket for `stream` (AccessDenied past the principal's limit)."""
        self.sweep()
        who = _owner(p)
        with self._lock:
            if self._open.get(who, 0) >= self.per_user:
                stream.close()
                raise AccessDenied(
                    f"{p.name} has {self.per_user} open results; fetch or wait for them first"
                )
            self._open[who] = self._open.get(who, 0) + 1
            ticket = secrets.token_bytes(16)
            self._waiting[ticket] = (who, time.monotonic() + self.ttl_s, stream)
        stream.on_close.append(lambda _s: self._closed(who))
        if stream.closed:  # already read to its end (prefetched): it holds nothing now
            self._closed(who)
        return ticket

    def take(self, p: Principal, ticket: bytes) -> QueryStream:
        """The stream of a ticket, once; InvalidArgument if unknown, expired or another's."""
        with self._lock:
            entry = self._waiting.get(bytes(ticket))
            if entry is None or entry[0] != _owner(p):
                entry = None
            else:
                del self._waiting[bytes(ticket)]
        if entry is None or entry[1] < time.monotonic():
            if entry is not None:
                entry[2].close()
            raise InvalidArgument("unknown or expired ticket; run the query again")
        return entry[2]

    def sweep(self) -> None:
        """Close results nobody fetched in time."""
        now = time.monotonic()
        with self._lock:
            dead = [t for t, (_w, until, _s) in self._waiting.items() if until < now]
            streams = [self._waiting.pop(t)[2] for t in dead]
        for s in streams:
            s.close()

    def _closed(self, who: str) -> None:
        with self._lock:
            self._open[who] = max(0, self._open.get(who, 0) - 1)
            if not self._open[who]:
                del self._open[who]

    def open_count(self) -> int:
        """Results waiting or streaming now (for the server's status)."""
        with self._lock:
            return sum(self._open.values())

    def close(self) -> None:
        with self._lock:
            streams = [s for (_w, _u, s) in self._waiting.values()]
            self._waiting.clear()
        for s in streams:
            s.close()


@dataclass
class Prepared:
    """A prepared query: its text, how many `?` it holds, and the parameters bound last."""

    owner: str
    query: str
    placeholders: int
    params: list[list[Any]] = field(default_factory=list)  # rows of parameter values
    used: float = field(default_factory=time.monotonic)


class PreparedStatements:
    """Prepared statements by handle, per principal (at most `per_user` each)."""

    def __init__(self, per_user: int, idle_s: float = 3600.0):
        self.per_user, self.idle_s = per_user, idle_s
        self._items: dict[bytes, Prepared] = {}
        self._lock = threading.Lock()

    def create(self, p: Principal, query: str) -> bytes:
        """A handle for `query` (its placeholders counted now, so errors come early)."""
        count = len(_placeholders(query))
        who = _owner(p)
        now = time.monotonic()
        with self._lock:
            for h in [h for h, s in self._items.items() if s.used < now - self.idle_s]:
                del self._items[h]
            if sum(1 for s in self._items.values() if s.owner == who) >= self.per_user:
                raise AccessDenied(
                    f"{p.name} has {self.per_user} open prepared statements; close some first"
                )
            handle = secrets.token_bytes(16)
            self._items[handle] = Prepared(who, query, count)
        return handle

    def get(self, p: Principal, handle: bytes) -> Prepared:
        with self._lock:
            s = self._items.get(bytes(handle))
            if s is None or s.owner != _owner(p):
                raise InvalidArgument("unknown prepared statement; prepare it again")
            s.used = time.monotonic()
            return s

    def bind(self, p: Principal, handle: bytes, table: pa.Table) -> None:
        """Keep the parameter rows of `table` (one column per `?`, in order)."""
        s = self.get(p, handle)
        if table.num_columns != s.placeholders:
            raise InvalidArgument(
                f"the statement has {s.placeholders} parameters, {table.num_columns} were sent"
            )
        rows = [list(r.values()) for r in table.to_pylist()]
        s.params = rows

    def close(self, p: Principal, handle: bytes) -> None:
        with self._lock:
            s = self._items.get(bytes(handle))
            if s is not None and s.owner == _owner(p):
                del self._items[bytes(handle)]

    def count(self) -> int:
        with self._lock:
            return len(self._items)


def _parse(query: str) -> exp.Expression:
    try:
        tree = sqlglot.parse_one(query, dialect="duckdb")
    except (ParseError, TokenError) as e:
        raise SQLError(f"cannot parse the query: {str(e).splitlines()[0][:200]}") from None
    if tree is None:
        raise SQLError("empty query")
    return tree


def _placeholders(query: str) -> list[exp.Placeholder]:
    if "?" not in query and "$" not in query:
        return []  # nothing to bind: leave the text untouched
    return list(_parse(query).find_all(exp.Placeholder))


def bind_parameters(query: str, values: Sequence[Any]) -> str:
    """`query` with each `?` replaced by a SQL literal of the matching value (in the parsed
    tree, so a value is only ever a literal, never SQL)."""
    if "?" not in query and "$" not in query:
        if values:
            raise InvalidArgument("the statement has no parameters")
        return query
    tree = _parse(query)
    holes = list(tree.find_all(exp.Placeholder))
    if len(holes) != len(values):
        raise InvalidArgument(f"the statement has {len(holes)} parameters, {len(values)} given")
    for hole, value in zip(holes, values, strict=True):
        hole.replace(_literal(value))
    return tree.sql(dialect="duckdb")


def _literal(v: Any) -> exp.Expression:
    if v is None:
        return exp.Null()
    if isinstance(v, bool):
        return exp.Boolean(this=v)
    if isinstance(v, (int, float, Decimal)):
        return exp.Literal.number(str(v))
    if isinstance(v, str):
        return exp.Literal.string(v)
    if isinstance(v, datetime):
        kind = "TIMESTAMPTZ" if v.tzinfo is not None else "TIMESTAMP"
        return exp.cast(exp.Literal.string(v.isoformat(sep=" ")), kind)
    if isinstance(v, date):
        return exp.cast(exp.Literal.string(v.isoformat()), "DATE")
    raise InvalidArgument(f"a parameter of type {type(v).__name__} is not supported")
