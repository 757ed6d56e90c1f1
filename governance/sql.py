"""Governed queries: `sql` and `explain` for a principal, compiled by the rewrite passes and run
on the locked engine, through the gate."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator

import pyarrow as pa

from catalog.catalog import Catalog
from catalog.engine import Engine
from catalog.errors import AccessDenied, InvalidArgument, LakeError, SQLError, TableNotFound
from catalog.names import split_name
from catalog.snapshot import Snapshot
from catalog.store import TableInfo
from catalog.txn import Transaction
from governance.access import Access, OpenAccess
from governance.audit import TABLE as AUDIT_TABLE
from governance.context import QueryContext, TableRead, TimeTravel
from governance.explain import Explain, explain
from governance.gate import Audit, Gate
from governance.governed import PolicyAccess
from governance.passes.metadata import rewrite_statement
from governance.passes.parse import DIALECT
from governance.principal import Principal
from governance.query import CompiledQuery, checked_query, compile_query

__all__ = ["Explain", "Queries"]

# Plumbing of the governed relations: never in a message unless the user wrote it.
_PLUMBING = (
    "read_parquet",
    "__raw",
    "__lw_",
    "hive_partitioning",
    "file_row_number",
    "file_index",
    "case  when",
    "else null::",
)


class Queries:
    """Read-only SQL over catalog tables, for one lake."""

    def __init__(self, gate: Gate, engine: Engine):
        self.gate = gate
        self.engine = engine

    def access(self, p: Principal) -> Access:
        engine = None if p.privileged else self.gate.engine()
        return OpenAccess() if engine is None else PolicyAccess(engine)

    def context(self, p: Principal, tx: Transaction | None = None) -> QueryContext:
        """What the rewrite passes need, bound to one principal (and transaction)."""
        cat = self.gate.catalog
        pinned: dict[int, tuple[int, bool]] = {}

        def pin(infos: list[TableInfo]) -> dict[int, tuple[int, bool]]:
            if tx is not None:
                for info in infos:
                    pinned[info.id] = tx.read_version(info)
                return pinned
            for info in infos:
                # A governed table's entry was just read (this operation's lookup), and its
                # version is the store's pointer; any other's is its Delta log's.
                v = info.version if info.table_type == "GOVERNED" else cat.current_version(info)
                pinned[info.id] = (v, False)
            return pinned

        def snapshot(info: TableInfo, travel: TimeTravel | None) -> Snapshot:
            if travel is not None:
                v = cat.version_as_of(info, version=travel.version, timestamp=travel.timestamp)
                return cat.snapshot(info, v)
            v, tentative = pinned[info.id]
            return cat.snapshot(info, v, tentative=tentative)

        def governed(keys: list[tuple[str, str]]) -> list[TableInfo]:
            # The gate raises hidden_table for the first it may not give, missing or not.
            return self.gate.lookup_all(p, [f"{db}.{name}" for db, name in keys])

        policy = self.gate.engine()
        lookup_all = governed if policy is not None and not p.privileged else _plain(cat)
        return QueryContext(
            user=p.name,
            lookup=lambda db, name: lookup_all([(db, name)])[0],
            lookup_all=lookup_all,
            snapshot=snapshot,
            pin=pin,
            access=self.access(p),
            describe=lambda view: describe_rows(self.gate, p, view),
            cache_key=""
            if tx is not None
            else (policy.version if policy else "open") + (":admin" if p.privileged else ""),
        )

    def compile(self, p: Principal, query: str, tx: Transaction | None = None) -> CompiledQuery:
        """Compile a user's query to the governed DuckDB SQL."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidArgument("query must be a non-empty SQL string")
        return compile_query(query, self.context(p, tx))

    def _prepare(
        self, p: Principal, query: str, tx: Transaction | None, audit: Audit
    ) -> CompiledQuery:
        if isinstance(query, str) and "audit" in query.lower():
            self.gate.audit.flush()  # reading the audit trail shows what is queued too
        compiled = self.compile(p, query, tx)
        if any(r.table.full_name == AUDIT_TABLE for r in compiled.reads) and (
            self.gate.audit.flush()
        ):
            compiled = self.compile(p, query, tx)  # include what was just flushed
        self.engine.allow(r.table.location for r in compiled.reads)
        audit.tables = [(r.table.full_name, r.version) for r in compiled.reads]
        audit.rules = [rule for r in compiled.reads for rule in r.rules]
        return compiled

    def sql(self, p: Principal, query: str, tx: Transaction | None = None) -> pa.Table:
        """Run a read-only query as `p`; audited, allowed or not."""
        reads: list[TableRead] = []

        def go(audit: Audit) -> pa.Table:
            compiled = self._prepare(p, query, tx, audit)
            reads[:] = compiled.reads
            result = self.engine.run(compiled.sql)
            audit.rows = result.num_rows
            return result

        try:
            return self.gate.run(p, "sql", str(query), go)
        except LakeError as e:
            raise self._withheld(e, query, reads) from None

    def stream(
        self, p: Principal, query: str, tx: Transaction | None = None, *, batch_rows: int = 65_536
    ) -> QueryStream:
        """Run a read-only query as `p` with its result streamed in record batches as the
        engine produces them (never materialised here). Audited like `sql` when it opens,
        before any row leaves (the row count is not known yet); a failure while streaming is
        audited too. Close the stream when done with it."""

        reads: list[TableRead] = []

        def withhold(e: LakeError) -> LakeError:
            return self._withheld(e, query, reads)

        def go(audit: Audit) -> QueryStream:
            compiled = self._prepare(p, query, tx, audit)
            reads[:] = compiled.reads
            reader, close = self.engine.stream(compiled.sql, batch_rows)
            return QueryStream(self.gate, p, str(query), reader, close, withhold)

        try:
            return self.gate.run(p, "sql", str(query), go)
        except LakeError as e:
            raise withhold(e) from None

    def explain(self, p: Principal, query: str) -> Explain:
        """What `sql` would run for `p`: their query over their view and the rules that shaped
        it (where each rule is written, its SQL and the SQL that runs only for a user with
        `describe` on `policy`)."""
        reads: list[TableRead] = []

        def go(_: Audit) -> Explain:
            compiled = self.compile(p, query)
            reads[:] = compiled.reads
            engine = self.gate.engine()
            describer = self.gate.allowed(p, "policy", "describe")
            return explain(
                checked_query(rewrite_statement(query)).sql(dialect=DIALECT),
                compiled.reads,
                compiled.sql,
                describer,
                engine.line if engine is not None else lambda where: None,
            )

        try:
            return self.gate.run(p, "explain", str(query), go)
        except LakeError as e:
            raise self._withheld(e, query, reads) from None

    def _withheld(self, e: LakeError, query: str, reads: list[TableRead]) -> LakeError:
        """`e` as it may leave: its message, unless that shows something of the rewrite that is
        not in the user's own text (a path, the relation plumbing, a hidden column, policy
        SQL); then a message that names only what kind of thing went wrong."""
        text = str(e)
        root = str(self.gate.catalog.root)
        paths = [root, "<lake>", *(r.table.location for r in reads)]
        if any(p.lower() in text.lower() and p.lower() not in query.lower() for p in paths):
            message = (
                "the query could not read the data files of a table it names; an administrator "
                "can check the table (lake table history, lake recover)"
            )
        elif _reveals(text, query, reads):
            message = (
                "the query failed in the engine; its message is withheld because it would show "
                "how your view of the data is computed: check the query's casts, functions and "
                "divisions"
            )
        else:
            return e
        try:
            return type(e)(message)
        except TypeError:  # an error type with its own constructor
            return SQLError(message)


class QueryStream:
    """A governed query's result as it streams: iterate its record batches, then close it.

    Engine errors while streaming are raised as SQLError (scrubbed like every error a user
    sees) and audited; closing early (a client gone mid-stream) frees the engine's cursor.
    """

    def __init__(
        self,
        gate: Gate,
        p: Principal,
        statement: str,
        reader: pa.RecordBatchReader,
        close: Callable[[], None],
        withhold: Callable[[LakeError], LakeError] = lambda e: e,
    ):
        self.gate, self.principal, self.statement = gate, p, statement
        self._withhold = withhold
        self.schema = reader.schema
        self.rows = 0
        self._reader, self._close = reader, close
        self._done = False
        self.on_close: list[Callable[[QueryStream], None]] = []
        # How a failure while streaming is audited (a server routes it to its workers).
        self.audit_failure: Callable[[Callable[[], None]], None] = lambda record: record()

    @property
    def closed(self) -> bool:
        return self._done

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            while not self._done:
                try:
                    batch = self._reader.read_next_batch()
                except StopIteration:
                    return
                except (pa.ArrowException, OSError) as e:  # the engine failed mid-stream
                    err = SQLError(_engine_message(e))
                    self.audit_failure(functools.partial(self._record_failure, str(err)))
                    raise self._withhold(self.gate.scrub(err, self.principal)) from None
                self.rows += batch.num_rows
                yield batch
        finally:
            self.close()

    def _record_failure(self, reason: str) -> None:
        self.gate.record(self.principal, "sql", self.statement, "error", reason=reason)

    def read_all(self) -> pa.Table:
        """The rest of the result as one table."""
        return pa.Table.from_batches(list(self), schema=self.schema)

    def close(self) -> None:
        """Free the engine's cursor (idempotent)."""
        if self._done:
            return
        self._done = True
        try:
            self._reader.close()
        finally:
            self._close()
            for fn in self.on_close:
                fn(self)


def _engine_message(e: Exception) -> str:
    text = str(e).split("\n\nLINE", 1)[0].strip()
    return text.removeprefix("Invalid: ").strip() or "the query failed while running"


def _plain(cat: Catalog) -> Callable[[list[tuple[str, str]]], list[TableInfo]]:
    """Lookups for a principal that sees every table (or a catalog without a policy)."""

    def lookup_all(keys: list[tuple[str, str]]) -> list[TableInfo]:
        names = [f"{db}.{name}" for db, name in keys]
        found = cat.tables(names)
        for name in names:
            if name not in found:
                raise TableNotFound(f"table {'.'.join(split_name(name))} not found")
        return [found[name] for name in names]

    return lookup_all


def describe_rows(gate: Gate, p: Principal, view: str) -> list[tuple]:
    """Rows of an information_schema view as `p` may see them."""
    cat = gate.catalog
    if view == "schemata":
        return [
            ("lake", d.name, d.description)
            for d in cat.list_databases()
            if gate.may_describe_database(p, d.name)
        ]
    out: list[tuple] = []
    for info in cat.list_tables():
        if not gate.may_describe(p, info):
            continue
        if view == "tables":
            kind = "BASE TABLE" if info.table_type == "GOVERNED" else "EXTERNAL"
            out.append(("lake", info.database, info.name, kind, info.description))
            continue
        schema = cat.snapshot(info).schema
        shown = _describable(gate, p, info, list(schema.names))
        for pos, f in enumerate((f for f in schema if f.name in shown), start=1):
            nullable = "YES" if f.nullable else "NO"
            out.append(("lake", info.database, info.name, f.name, pos, str(f.type), nullable))
    return out


def _describable(gate: Gate, p: Principal, info: TableInfo, columns: list[str]) -> set[str]:
    """Columns `p` may know of: those they can select, else all (a describe grant)."""
    try:
        view = gate.view(p, info, columns)
    except AccessDenied:  # no select view: a describe grant shows the columns
        return {c for c in columns if gate.allowed(p, f"{info.full_name}.{c}", "describe")}
    return set(columns) if view is None else set(view.columns)


def _squash(text: str) -> str:
    return re.sub(r"[\s\"()]+", "", text).lower()


def _reveals(message: str, query: str, reads: list[TableRead]) -> bool:
    """Does `message` show the relation plumbing, a hidden column's name or policy SQL that the
    user's own query text does not hold?"""
    low, mine = message.lower(), query.lower()
    if any(f in low and f not in mine for f in _PLUMBING):
        return True
    squashed, said = _squash(message), _squash(query)
    for r in reads:
        view = r.view
        if view is None or view.whole:
            continue
        for name in set(r.stored) - set(view.columns):
            word = re.compile(rf"\b{re.escape(name.lower())}\b")
            if word.search(low) and not word.search(mine):
                return True
        for sql in (view.row_cond, *view.cell_cond.values(), *view.masks.values()):
            s = _squash(sql or "")
            if len(s) > 3 and s in squashed and s not in said:
                return True
    return False
