"""The Flight SQL service: every call authenticated, then answered by the governed `Lake`.

Statements: GetFlightInfo on CommandStatementQuery (or a prepared statement) opens the governed
query as a stream and hands back a ticket; DoGet on the ticket streams DuckDB's record batches
to the client as they are produced. Metadata commands are answered at DoGet from what the
principal may describe. DoPut takes prepared-statement parameters, CommandStatementIngest
(`lk.write` and ADBC's bulk ingest) and Lakeward's own streams (merge sources, job workdirs).
Everything else Lakeward does is a `lakeward.*` action (see `actions`).

Errors reach the client as the same `lake.errors` class with the same message, scrubbed of the
server's paths; anything unexpected is logged here and answered "internal server error".
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.flight as fl

from catalog.errors import InvalidArgument, LakeError, SQLError, TableExists, TableNotFound
from governance.principal import Principal
from governance.sql import QueryStream
from lake.lake import Lake
from lake.server import actions, metadata, wire
from lake.server.auth import MIDDLEWARE, AcceptHandshake, Authenticator, AuthMiddleware
from lake.server.protocol import pack, sql, unpack
from lake.server.settings import ServerSettings
from lake.server.statements import PreparedStatements, Results, bind_parameters
from lake.server.uploads import Uploads

log = logging.getLogger("lakeward.server")
T = TypeVar("T")

# Flight SQL's own action types.
CREATE_PREPARED = "CreatePreparedStatement"
CLOSE_PREPARED = "ClosePreparedStatement"
_UNSUPPORTED_ACTIONS = {
    "BeginTransaction",
    "EndTransaction",
    "BeginSavepoint",
    "EndSavepoint",
    "CancelQuery",
    "CreatePreparedSubstraitPlan",
}
_METADATA = (
    sql.CommandGetSqlInfo,
    sql.CommandGetCatalogs,
    sql.CommandGetDbSchemas,
    sql.CommandGetTables,
    sql.CommandGetTableTypes,
)
_IF_EXISTS = sql.CommandStatementIngest.TableDefinitionOptions.TableExistsOption
_IF_MISSING = sql.CommandStatementIngest.TableDefinitionOptions.TableNotExistOption


class LakeFlightServer(fl.FlightServerBase):
    """Arrow Flight SQL over one opened `Lake`, for authenticated principals."""

    def __init__(
        self,
        lake: Lake,
        location: str,
        *,
        auth: Authenticator,
        settings: ServerSettings,
        tls_certificates: list[fl.CertKeyPair] | None = None,
        client_ca: bytes | None = None,
    ):
        mtls = client_ca is not None
        super().__init__(
            location,
            # Without an auth handler Flight reports the TLS peer's identity; with one, it
            # answers the password handshake (the middleware has issued the session token).
            auth_handler=None if mtls else AcceptHandshake(),
            tls_certificates=tls_certificates or [],
            verify_client=mtls,
            root_certificates=client_ca,
            middleware={MIDDLEWARE: AuthMiddleware(auth, handshake=not mtls)},
        )
        self.lake = lake
        self.auth = auth
        self.settings = settings
        self.results = Results(settings.ticket_ttl_s, settings.max_open_results)
        self.prepared = PreparedStatements(settings.max_prepared)
        self.uploads = Uploads(
            Path(lake.root) / "_lakeward" / "server" / "uploads", settings.max_upload_bytes
        )
        self._streaming = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="lakeward-flight")

    # plumbing ----------------------------------------------------------------------------------
    def _serve(
        self, context: fl.ServerCallContext, fn: Callable[[Principal], T], *, light: bool = False
    ) -> T:
        # gRPC serves calls on threads it creates and ends as it likes; the lake keeps a store
        # connection per thread, so its work runs on a fixed set of workers instead. A light
        # call (touching no store) by a principal verified moments ago runs right here.
        if light:
            p = self.auth.cached(context)
            if p is not None:
                return self._call(context, fn, p)
        return self._pool.submit(self._call, context, fn).result()

    def _call(
        self,
        context: fl.ServerCallContext,
        fn: Callable[[Principal], T],
        known: Principal | None = None,
    ) -> T:
        p: Principal | None = known
        try:
            p = p or self.auth.principal(context)
            return fn(p)
        except fl.FlightError:
            raise
        except LakeError as e:
            raise wire.to_flight(self.lake.gate.scrub(e, p) if p else e) from None
        except Exception:  # noqa: BLE001 - never show a user our internals
            log.exception("internal error serving %s", p.name if p else "(unauthenticated)")
            raise fl.FlightInternalError("internal server error") from None

    def status(self) -> dict[str, int]:
        """Open results (waiting or streaming), streams in flight, prepared statements."""
        self.results.sweep()
        with self._lock:
            streaming = self._streaming
        return {
            "open_results": self.results.open_count(),
            "streaming": streaming,
            "prepared_statements": self.prepared.count(),
        }

    def _context(self, p: Principal) -> actions.Context:
        return actions.Context(self.lake, p, self.uploads, self.settings.max_wait_s, self.status)

    def _check_size(self, query: str) -> str:
        size = len(query.encode())
        if size > self.settings.max_query_bytes:
            raise InvalidArgument(
                f"the query is {size} bytes; this server accepts at most "
                f"{self.settings.max_query_bytes} (lake.toml [server] max_query_bytes)"
            )
        return query

    def _open(self, p: Principal, query: str) -> QueryStream:
        self.results.sweep()
        return self.lake.queries.stream(
            p, self._check_size(query), batch_rows=self.settings.batch_rows
        )

    @staticmethod
    def _prefetch(stream: QueryStream) -> tuple[Iterator[pa.RecordBatch], list[pa.RecordBatch]]:
        """Pull up to two batches now (on the worker, where the query runs anyway): a small
        result is then complete before its DoGet, which needs no worker at all."""
        batches = iter(stream)
        head: list[pa.RecordBatch] = []
        for _ in range(2):
            b = next(batches, None)
            if b is None:
                break
            head.append(b)
        return batches, head

    def _acting(self, context: fl.ServerCallContext, p: Principal, what: str) -> None:
        # The remote client sends the user= it was given; it must name the caller.
        mw = context.get_middleware(MIDDLEWARE)
        user = getattr(mw, "acting", None)
        actions.acting_as(self._context(p), user, what)

    # GetFlightInfo / GetSchema -----------------------------------------------------------------
    def _command(self, descriptor: fl.FlightDescriptor) -> Any:
        if descriptor.descriptor_type != fl.DescriptorType.CMD:
            raise InvalidArgument("send a Flight SQL command (a CMD descriptor), not a path")
        return unpack(descriptor.command)

    def get_flight_info(
        self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor
    ) -> fl.FlightInfo:
        def go(p: Principal) -> fl.FlightInfo:
            cmd = self._command(descriptor)
            if isinstance(cmd, _METADATA):
                schema = self._metadata_schema(cmd)
                ticket = pack(cmd)  # answered afresh, for the caller, at DoGet
            elif isinstance(cmd, (sql.CommandStatementQuery, sql.CommandPreparedStatementQuery)):
                self._acting(context, p, "sql")
                stream = self._open(p, self._query_of(p, cmd))
                stream.prefetched = self._prefetch(stream)
                handle = self.results.put(p, stream)
                schema = stream.schema
                ticket = pack(sql.TicketStatementQuery(statement_handle=handle))
            else:
                raise _unsupported(cmd)
            endpoint = fl.FlightEndpoint(ticket, [])
            return fl.FlightInfo(schema, descriptor, [endpoint], -1, -1)

        return self._serve(context, go)

    def get_schema(
        self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor
    ) -> fl.SchemaResult:
        def go(p: Principal) -> fl.SchemaResult:
            cmd = self._command(descriptor)
            if isinstance(cmd, _METADATA):
                return fl.SchemaResult(self._metadata_schema(cmd))
            if isinstance(cmd, (sql.CommandStatementQuery, sql.CommandPreparedStatementQuery)):
                stream = self._open(p, self._query_of(p, cmd))
                stream.close()
                return fl.SchemaResult(stream.schema)
            raise _unsupported(cmd)

        return self._serve(context, go)

    def _query_of(self, p: Principal, cmd: Any) -> str:
        if isinstance(cmd, sql.CommandStatementQuery):
            if cmd.HasField("transaction_id"):
                raise SQLError("this server has no transactions over Flight SQL")
            return cmd.query
        prepared = self.prepared.get(p, cmd.prepared_statement_handle)
        if len(prepared.params) > 1:
            raise InvalidArgument("a query takes one row of parameters")
        if prepared.placeholders and not prepared.params:
            raise InvalidArgument("bind the statement's parameters first")
        return bind_parameters(prepared.query, prepared.params[0] if prepared.params else [])

    @staticmethod
    def _metadata_schema(cmd: Any) -> pa.Schema:
        if isinstance(cmd, sql.CommandGetSqlInfo):
            return metadata.SQL_INFO_SCHEMA
        if isinstance(cmd, sql.CommandGetCatalogs):
            return metadata.CATALOGS_SCHEMA
        if isinstance(cmd, sql.CommandGetDbSchemas):
            return metadata.DB_SCHEMAS_SCHEMA
        if isinstance(cmd, sql.CommandGetTables):
            return metadata.TABLES_WITH_SCHEMA if cmd.include_schema else metadata.TABLES_SCHEMA
        return metadata.TABLE_TYPES_SCHEMA

    def _metadata(self, p: Principal, cmd: Any) -> pa.Table:
        gate = self.lake.gate
        if isinstance(cmd, sql.CommandGetSqlInfo):
            return metadata.sql_info(cmd.info)
        if isinstance(cmd, sql.CommandGetCatalogs):
            return metadata.catalogs()
        if isinstance(cmd, sql.CommandGetDbSchemas):
            catalog = cmd.catalog if cmd.HasField("catalog") else None
            pattern = (
                cmd.db_schema_filter_pattern if cmd.HasField("db_schema_filter_pattern") else None
            )
            return metadata.db_schemas(gate, p, catalog, pattern)
        if isinstance(cmd, sql.CommandGetTables):
            return metadata.tables(gate, p, cmd)
        return metadata.table_types()

    # DoGet -------------------------------------------------------------------------------------
    def do_get(self, context: fl.ServerCallContext, ticket: fl.Ticket) -> fl.FlightDataStream:
        try:
            peek = unpack(ticket.ticket)
        except InvalidArgument:
            peek = None  # answered (as an error) after authentication

        def go(p: Principal) -> fl.FlightDataStream:
            cmd = unpack(ticket.ticket)
            if isinstance(cmd, _METADATA):
                return fl.RecordBatchStream(self._metadata(p, cmd))
            if not isinstance(cmd, sql.TicketStatementQuery):
                raise InvalidArgument("not a ticket this server issued")
            stream = self.results.take(p, cmd.statement_handle)
            reader = pa.RecordBatchReader.from_batches(stream.schema, self._flow(stream, p))
            return fl.RecordBatchStream(reader)

        # Fetching an opened result touches no store: no worker needed for it.
        return self._serve(context, go, light=isinstance(peek, sql.TicketStatementQuery))

    def _flow(self, stream: QueryStream, p: Principal) -> Iterator[pa.RecordBatch]:
        """The stream's batches for Flight; a client gone mid-stream closes it (GeneratorExit)."""
        with self._lock:
            self._streaming += 1
        batches, head = getattr(stream, "prefetched", None) or (iter(stream), [])
        # The engine runs here, on gRPC's thread; only an audit record (a store write) of a
        # failure mid-stream goes to a worker.
        stream.audit_failure = lambda record: self._pool.submit(record).result()
        try:
            yield from head
            if len(head) < 2:
                return  # the whole result was prefetched
            yield from batches
        except LakeError as e:
            raise wire.to_flight(self.lake.gate.scrub(e, p)) from None
        finally:
            stream.close()
            with self._lock:
                self._streaming -= 1

    # DoPut -------------------------------------------------------------------------------------
    def do_put(
        self,
        context: fl.ServerCallContext,
        descriptor: fl.FlightDescriptor,
        reader: fl.MetadataRecordBatchReader,
        writer: fl.FlightMetadataWriter,
    ) -> None:
        def go(p: Principal) -> None:
            if descriptor.descriptor_type == fl.DescriptorType.PATH:
                return self._lakeward_put(context, p, descriptor.path, reader, writer)
            cmd = self._command(descriptor)
            if isinstance(cmd, sql.CommandPreparedStatementQuery):
                self.prepared.bind(p, cmd.prepared_statement_handle, reader.read_all())
                done = sql.DoPutPreparedStatementResult(
                    prepared_statement_handle=cmd.prepared_statement_handle
                )
                writer.write(pa.py_buffer(done.SerializeToString()))
                return None
            if isinstance(cmd, sql.CommandStatementIngest):
                self._acting(context, p, "write")
                rows = self._ingest(p, cmd, reader)
                writer.write(
                    pa.py_buffer(sql.DoPutUpdateResult(record_count=rows).SerializeToString())
                )
                return None
            if isinstance(cmd, (sql.CommandStatementUpdate, sql.CommandPreparedStatementUpdate)):
                raise SQLError(
                    "SQL runs read-only queries here; write with lk.write, delete, update or "
                    "merge (or a Flight SQL bulk ingest)"
                )
            raise _unsupported(cmd)

        self._serve(context, go)

    def _ingest(self, p: Principal, cmd: Any, reader: fl.MetadataRecordBatchReader) -> int:
        """CommandStatementIngest: `lk.write` of the stream (create the table if asked)."""
        if not cmd.schema or not cmd.table:
            raise InvalidArgument("name the target as db_schema (the database) and table")
        if cmd.temporary or cmd.HasField("transaction_id"):
            raise InvalidArgument("temporary tables and transactions are not supported")
        name = f"{cmd.schema}.{cmd.table}"
        opts = cmd.table_definition_options
        options = dict(cmd.options)
        unknown = set(options) - {"lakeward.schema_mode", "lakeward.where"}
        if unknown:
            raise InvalidArgument(f"unknown ingest options {sorted(unknown)}")
        counted = _Counted(reader)
        try:
            self.lake.catalog.table(name, user=p)
            exists = True
        except TableNotFound:
            exists = False
        if exists and opts.if_exists == _IF_EXISTS.Value("TABLE_EXISTS_OPTION_FAIL"):
            raise TableExists(f"table {name} already exists")
        if not exists:
            if opts.if_not_exist != _IF_MISSING.Value("TABLE_NOT_EXIST_OPTION_CREATE"):
                self.lake.catalog.table(name, user=p)  # the governed "does not exist" error
            self.lake.catalog.create_table(name, counted.schema, user=p)
        replace = opts.if_exists == _IF_EXISTS.Value("TABLE_EXISTS_OPTION_REPLACE")
        self.lake.write(
            name,
            counted.reader(),
            user=p,
            mode="overwrite" if replace and exists else "append",
            schema_mode=options.get("lakeward.schema_mode"),
            where=options.get("lakeward.where"),
        )
        return counted.rows

    def _lakeward_put(
        self,
        context: fl.ServerCallContext,
        p: Principal,
        path: list[bytes],
        reader: fl.MetadataRecordBatchReader,
        writer: fl.FlightMetadataWriter,
    ) -> None:
        parts = [bytes(x).decode(errors="replace") for x in path]
        if len(parts) != 3 or parts[0] != "lakeward":
            raise InvalidArgument("unknown upload; see the Lakeward client")
        op, body = parts[1], parts[2].encode()
        ctx = self._context(p)
        if op == "merge":
            args = actions.Merge.model_validate_json(body)
            actions.acting_as(ctx, args.user, "merge")
            result = actions.merge(ctx, args, _Counted(reader).reader())
        elif op == "upload":
            actions.acting_as(ctx, json.loads(body or b"{}").get("user"), "upload")
            result = {"upload": self.uploads.put(p, _chunks(reader))}
        else:
            raise InvalidArgument(f"unknown upload kind {op[:40]!r}")
        writer.write(pa.py_buffer(wire.dumps(result)))

    # DoAction ----------------------------------------------------------------------------------
    def do_action(self, context: fl.ServerCallContext, action: fl.Action) -> Iterator[fl.Result]:
        def go(p: Principal) -> list[fl.Result]:
            kind, body = action.type, action.body.to_pybytes() if action.body else b""
            if kind == CREATE_PREPARED:
                req = unpack(body)
                if not isinstance(req, sql.ActionCreatePreparedStatementRequest):
                    raise InvalidArgument("CreatePreparedStatement needs its request message")
                if req.HasField("transaction_id"):
                    raise SQLError("this server has no transactions over Flight SQL")
                handle = self.prepared.create(p, self._check_size(req.query))
                done = sql.ActionCreatePreparedStatementResult(prepared_statement_handle=handle)
                return [fl.Result(pa.py_buffer(pack(done)))]
            if kind == CLOSE_PREPARED:
                req = unpack(body)
                if not isinstance(req, sql.ActionClosePreparedStatementRequest):
                    raise InvalidArgument("ClosePreparedStatement needs its request message")
                self.prepared.close(p, req.prepared_statement_handle)
                return []
            if kind in _UNSUPPORTED_ACTIONS:
                raise InvalidArgument(f"{kind} is not supported by this server")
            if not kind.startswith("lakeward."):
                raise InvalidArgument(f"unknown action {kind[:80]!r}; see list_actions")
            result = actions.run(self._context(p), kind, body)
            return [fl.Result(pa.py_buffer(wire.dumps(result)))]

        light = action.type in (CREATE_PREPARED, CLOSE_PREPARED)  # in-memory state only
        return iter(self._serve(context, go, light=light))

    def list_actions(self, context: fl.ServerCallContext) -> list[tuple[str, str]]:
        self._serve(context, lambda p: None)
        own = [
            (CREATE_PREPARED, "Flight SQL: prepare a query"),
            (CLOSE_PREPARED, "Flight SQL: close a prepared statement"),
        ]
        return own + sorted(actions.describe_actions().items())

    def list_flights(self, context: fl.ServerCallContext, criteria: bytes) -> Iterator[Any]:
        self._serve(context, lambda p: None)
        return iter(())

    def shutdown(self) -> None:
        super().shutdown()
        self.results.close()
        self._pool.shutdown(wait=True, cancel_futures=True)


class _Counted:
    """A client's DoPut stream as a RecordBatchReader, counting rows as they pass."""

    def __init__(self, reader: fl.MetadataRecordBatchReader):
        self._src = reader
        self.schema = reader.schema
        self.rows = 0

    def _batches(self) -> Iterator[pa.RecordBatch]:
        for chunk in self._src:
            if chunk.data is None:
                continue
            self.rows += chunk.data.num_rows
            yield chunk.data

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self._batches())


def _chunks(reader: fl.MetadataRecordBatchReader) -> Iterator[bytes]:
    if reader.schema.names != ["chunk"] or not pa.types.is_binary(reader.schema.field(0).type):
        raise InvalidArgument("an upload is a stream of one binary column named chunk")
    for chunk in reader:
        if chunk.data is None:
            continue
        for value in chunk.data.column(0).to_pylist():
            if value:
                yield value


def _unsupported(cmd: Any) -> InvalidArgument:
    return InvalidArgument(f"{type(cmd).__name__} is not supported by this server")
