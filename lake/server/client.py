"""The remote lake: `lake.connect("grpc://host:port", token=...)`, the same API over Flight.

Queries go over Flight SQL (their results stream in record batches); writes are DoPut streams
(`write` is a Flight SQL bulk ingest); everything else is a `lakeward.*` action. Every call acts
as the authenticated principal: `user=` may only name it, anything else is refused by the
server with AccessDenied. Errors arrive as the same `lake.errors` classes, same messages.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl

from batch.job import Attempt, JobTimeout
from catalog.data import to_arrow
from catalog.errors import InvalidArgument, LakeError
from lake.server import SCHEMES, wire
from lake.server.protocol import pack, sql
from lake.server.wire import ACTING

_CHUNK = 1 << 20


def token_file() -> Path:
    """Where `lake login` keeps a token: $XDG_CONFIG_HOME (or ~/.config)/lakeward/token."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "lakeward" / "token"


def default_token() -> str | None:
    """$LAKE_TOKEN, else the token file, else None."""
    env = os.environ.get("LAKE_TOKEN")
    if env:
        return env.strip()
    with contextlib.suppress(OSError):
        return token_file().read_text().strip() or None
    return None


def _bytes(value: str | Path | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).expanduser().read_bytes()


class NotOverServer(InvalidArgument, AttributeError):
    """What an embedded lake has and a server connection has not (hasattr() is False)."""


@dataclass(frozen=True)
class RemoteExplain:
    """`lk.explain` over a server: the SQL that runs and the rules that applied, as the
    server shows them to this principal."""

    sql: str
    rules: list[str]
    text: str

    def __str__(self) -> str:
        return self.text


class RemoteLake:
    """A lake served by `lake serve`, used as the authenticated principal."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls_ca: str | Path | bytes | None = None,
        tls_cert: str | Path | bytes | None = None,
        tls_key: str | Path | bytes | None = None,
        timeout_s: float | None = None,
    ):
        if not str(url).startswith(SCHEMES):
            raise InvalidArgument(f"a server URL starts with grpc:// or grpc+tls://, not {url!r}")
        self.url = str(url)
        self.timeout_s = timeout_s
        kw: dict[str, Any] = {}
        if tls_ca is not None:
            kw["tls_root_certs"] = _bytes(tls_ca)
        if (tls_cert is None) != (tls_key is None):
            raise InvalidArgument("tls_cert and tls_key go together (a client certificate)")
        if tls_cert is not None:
            kw["cert_chain"], kw["private_key"] = _bytes(tls_cert), _bytes(tls_key)
        self._client = fl.FlightClient(self.url.replace("grpc+tcp://", "grpc://"), **kw)
        self._auth: list[tuple[bytes, bytes]] = []
        try:
            if password is not None:
                if not username:
                    raise InvalidArgument("a password login needs username=")
                header = self._client.authenticate_basic_token(username, password)
                self._auth = [(bytes(header[0]), bytes(header[1]))]
            else:
                token = token or (None if tls_cert is not None else default_token())
                if token:
                    self._auth = [(b"authorization", f"Bearer {token}".encode())]
            who = self._action("lakeward.whoami")
        except fl.FlightError as e:
            self._client.close()
            raise wire.from_flight(e) from None
        except BaseException:
            self._client.close()
            raise
        self.user: str = who["user"]
        self.auth: str = who["auth"]
        self.catalog = RemoteCatalog(self)
        self.batch = RemoteBatch(self)

    # plumbing ----------------------------------------------------------------------------------
    def _options(self, user: str | None = None) -> fl.FlightCallOptions:
        headers = list(self._auth)
        if user is not None:
            headers.append((ACTING.encode(), str(user).encode()))
        return fl.FlightCallOptions(headers=headers, timeout=self.timeout_s)

    def _action(self, action: str, /, **args: Any) -> Any:
        body = json.dumps({k: v for k, v in args.items() if v is not None}).encode()
        try:
            results = list(self._client.do_action(fl.Action(action, body), self._options()))
        except fl.FlightError as e:
            raise wire.from_flight(e) from None
        return wire.loads(results[0].body.to_pybytes()) if results else None

    def _put(
        self,
        descriptor: fl.FlightDescriptor,
        data: pa.Table | pa.RecordBatchReader,
        user: str | None = None,
    ) -> bytes | None:
        try:
            writer, meta = self._client.do_put(descriptor, data.schema, self._options(user))
            try:
                if isinstance(data, pa.Table):
                    writer.write_table(data)
                else:
                    for batch in data:
                        writer.write_batch(batch)
                writer.done_writing()
                answer = meta.read()
            finally:
                writer.close()
        except fl.FlightError as e:
            raise wire.from_flight(e) from None
        except pa.ArrowException as e:  # the stream broke (e.g. the server went away)
            raise LakeError(
                f"the write did not complete ({str(e).splitlines()[0]}); retry"
            ) from None
        return answer.to_pybytes() if answer is not None else None

    # queries -----------------------------------------------------------------------------------
    def sql_reader(self, query: str, *, user: str | None = None) -> pa.RecordBatchReader:
        """Run a query; its result as a RecordBatchReader that streams from the server."""
        cmd = fl.FlightDescriptor.for_command(pack(sql.CommandStatementQuery(query=query)))
        options = self._options(user)
        try:
            info = self._client.get_flight_info(cmd, options)
            reader = self._client.do_get(info.endpoints[0].ticket, options)
        except fl.FlightError as e:
            raise wire.from_flight(e) from None
        return pa.RecordBatchReader.from_batches(reader.schema, _batches(reader))

    def sql(self, query: str, *, user: str | None = None) -> pa.Table:
        """Run a read-only query as the principal; returns a pyarrow.Table."""
        return self.sql_reader(query, user=user).read_all()

    def explain(self, query: str, *, user: str | None = None) -> RemoteExplain:
        """The SQL that runs for `query`, and the rules that applied."""
        e = self._action("lakeward.explain", query=query, user=user)
        return RemoteExplain(e["sql"], e["rules"], e["text"])

    # writes ------------------------------------------------------------------------------------
    def write(
        self,
        table: str,
        data: Any,
        *,
        user: str | None = None,
        mode: str = "append",
        schema_mode: str | None = None,
        where: str | None = None,
    ) -> None:
        """Append or overwrite rows in one atomic commit (streamed to the server)."""
        if mode not in ("append", "overwrite"):
            raise InvalidArgument(f"mode must be 'append' or 'overwrite', not {mode!r}")
        db, sep, name = str(table).partition(".")
        if not sep:
            raise InvalidArgument(f"table must be DATABASE.TABLE, not {table!r}")
        options = sql.CommandStatementIngest.TableDefinitionOptions
        cmd = sql.CommandStatementIngest(
            table=name,
            schema=db,
            table_definition_options=options(
                if_not_exist=options.TableNotExistOption.Value("TABLE_NOT_EXIST_OPTION_FAIL"),
                if_exists=options.TableExistsOption.Value(
                    "TABLE_EXISTS_OPTION_APPEND"
                    if mode == "append"
                    else "TABLE_EXISTS_OPTION_REPLACE"
                ),
            ),
        )
        if schema_mode is not None:
            cmd.options["lakeward.schema_mode"] = schema_mode
        if where is not None:
            cmd.options["lakeward.where"] = where
        self._put(fl.FlightDescriptor.for_command(pack(cmd)), to_arrow(data), user)

    def delete(self, table: str, where: str | None = None, *, user: str | None = None) -> Any:
        """Delete matching rows in one atomic commit."""
        return self._action("lakeward.delete", table=table, where=where, user=user)

    def update(
        self,
        table: str,
        set: Mapping[str, str],
        where: str | None = None,
        *,
        user: str | None = None,
    ) -> Any:
        """Set columns to SQL expressions on matching rows in one atomic commit."""
        return self._action("lakeward.update", table=table, set=dict(set), where=where, user=user)

    def merge(
        self,
        table: str,
        source: Any,
        on: str | Sequence[str],
        *,
        user: str | None = None,
        **actions: Any,
    ) -> Any:
        """Upsert `source` (streamed to the server) into the table."""
        args = {"table": table, "on": on if isinstance(on, str) else list(on), **actions}
        if user is not None:
            args["user"] = user
        path = fl.FlightDescriptor.for_path("lakeward", "merge", json.dumps(args))
        answer = self._put(path, to_arrow(source), user)
        return wire.loads(answer) if answer else None

    def history(self, table: str, limit: int | None = None, *, user: str | None = None) -> Any:
        """Committed versions, newest first, with user and operation."""
        return self._action("lakeward.history", table=table, limit=limit, user=user)

    def compact(self, table: str, *, user: str | None = None, **kw: Any) -> Any:
        """Rewrite small files into target-size files (see `Lake.compact`)."""
        return self._action("lakeward.compact", table=table, user=user, **_plain(kw))

    def vacuum(self, table: str, *, user: str | None = None, **kw: Any) -> Any:
        """Delete files no version inside the retention window needs (see `Lake.vacuum`)."""
        return self._action("lakeward.vacuum", table=table, user=user, **_plain(kw))

    def transaction(self, **_kw: Any) -> Any:
        raise InvalidArgument(
            "multi-table transactions are not available over a server connection yet; "
            "each write commits on its own"
        )

    begin = transaction

    def status(self) -> dict[str, int]:
        """The server's open results, streams and prepared statements (needs describe on policy)."""
        return self._action("lakeward.status")

    # context manager ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._client.close()

    def __enter__(self) -> RemoteLake:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteLake({self.url!r}, user={self.user!r})"

    def __getattr__(self, name: str) -> Any:
        # Only looked up for what a RemoteLake lacks: say so plainly, not AttributeError.
        if name.startswith("_"):
            raise AttributeError(name)
        raise NotOverServer(
            f"{name} is not available over a server connection; run it where the lake's "
            "files are (lake ... --root ROOT)"
        )


def _batches(reader: fl.FlightStreamReader) -> Iterator[pa.RecordBatch]:
    try:
        for chunk in reader:
            yield chunk.data
    except fl.FlightError as e:
        raise wire.from_flight(e) from None


def _plain(kw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}


class RemoteCatalog:
    """`lk.catalog` over a server."""

    def __init__(self, lake: RemoteLake):
        self._lake = lake

    def _do(self, op: str, /, **args: Any) -> Any:
        return self._lake._action(f"lakeward.catalog.{op}", **args)

    def create_database(
        self, name: str, description: str = "", *, user: str | None = None, **kw: Any
    ) -> Any:
        """Create a database (needs create on *)."""
        return self._do("create_database", name=name, description=description, user=user, **kw)

    def drop_database(self, name: str, *, user: str | None = None, **kw: Any) -> None:
        """Drop a database."""
        self._do("drop_database", name=name, user=user, **kw)

    def list_databases(self, *, user: str | None = None) -> Any:
        """The databases the principal may know of."""
        return self._do("list_databases", user=user)

    def get_database(self, name: str, *, user: str | None = None) -> Any:
        """One database the principal may know of."""
        return self._do("get_database", name=name, user=user)

    def create_table(
        self, name: str, schema: pa.Schema, *, user: str | None = None, **kw: Any
    ) -> Any:
        """Create an empty governed Delta table (needs create on its database)."""
        encoded = base64.b64encode(schema.serialize().to_pybytes()).decode()
        return self._do("create_table", name=name, schema_ipc=encoded, user=user, **_plain(kw))

    def register_table(
        self, name: str, location: str, *, user: str | None = None, **kw: Any
    ) -> Any:
        """Adopt an existing Delta table at a location the server may read for you."""
        return self._do("register_table", name=name, location=str(location), user=user, **kw)

    def drop_table(self, name: str, *, purge: bool = False, user: str | None = None) -> None:
        """Remove a table from the catalog (needs drop)."""
        self._do("drop_table", name=name, purge=purge, user=user)

    def set_properties(
        self, name: str, properties: Mapping[str, str | None], *, user: str | None = None
    ) -> Any:
        """Set (or remove, with None) table properties (needs alter)."""
        return self._do("set_properties", name=name, properties=dict(properties), user=user)

    def list_tables(self, database: str | None = None, *, user: str | None = None) -> Any:
        """Tables of one database, or of all, that the principal may know of."""
        return self._do("list_tables", database=database, user=user)

    def describe(self, name: str, *, user: str | None = None) -> Any:
        """What the catalog knows about a table, as the principal may see it."""
        return self._do("describe", name=name, user=user)

    def partitions(self, name: str, *, user: str | None = None) -> Any:
        """The table's partitions (for those who see all of it)."""
        return self._do("partitions", name=name, user=user)

    def history(self, name: str, limit: int | None = None, *, user: str | None = None) -> Any:
        """Ratified versions, newest first."""
        return self._lake.history(name, limit, user=user)


class RemoteJob:
    """A job on the server, acting for the principal (every property asks the server)."""

    def __init__(self, batch: RemoteBatch, view: Mapping[str, Any]):
        self._batch = batch
        self._view = dict(view)
        self.id: str = self._view["row"]["id"]

    def __repr__(self) -> str:
        return f"RemoteJob({self.id!r}, status={self._view['row']['status']!r})"

    @property
    def _row(self) -> dict[str, Any]:  # the row as last fetched (what Job._row is)
        return self._view["row"]

    def refresh(self) -> dict[str, Any]:
        """The job's row as stored now."""
        self._view = self._batch._lake._action("lakeward.batch.get", job_id=self.id)
        return dict(self._view["row"])

    @property
    def info(self) -> dict[str, Any]:
        return self.refresh()

    @property
    def status(self) -> str:
        return self.refresh()["status"]

    @property
    def status_reason(self) -> str:
        return self.refresh()["status_reason"]

    @property
    def name(self) -> str:
        return self._view["row"]["name"]

    @property
    def user(self) -> str:
        return self._view["row"]["user"]

    @property
    def queue(self) -> str:
        return self._view["row"]["queue"]

    @property
    def attempts(self) -> list[Attempt]:
        self.refresh()
        return [
            Attempt.from_row({**a, "log_dir": None, "scratch": None})
            for a in self._view["attempts"]
        ]

    @property
    def outputs_committed(self) -> dict[str, Any]:
        result = self.refresh().get("result") or "{}"
        return dict((json.loads(result) if isinstance(result, str) else result).get("outputs", {}))

    def wait(self, timeout: float | None = None) -> str:
        """Block until the job ends; returns SUCCEEDED, FAILED or CANCELLED (JobTimeout if
        `timeout` seconds pass first)."""
        return self._batch.wait(self.id, timeout)

    def logs(self, attempt: int | None = None, stream: str | None = None) -> str:
        """stdout and stderr of every attempt (or one)."""
        return self._batch.logs(self.id, attempt, stream)

    def cancel(self) -> None:
        """Cancel the job."""
        self._batch.cancel(self.id)

    def interrupt(self) -> None:
        """Deliver a spot interruption now."""
        self._batch.interrupt(self.id)


class RemoteBatch:
    """`lk.batch` over a server: the job's workdir is uploaded by this client."""

    def __init__(self, lake: RemoteLake):
        self._lake = lake

    def _do(self, op: str, /, **args: Any) -> Any:
        return self._lake._action(f"lakeward.batch.{op}", **args)

    def submit(
        self,
        command: Sequence[str],
        *,
        user: str | None = None,
        workdir: str | Path | None = None,
        **spec: Any,
    ) -> RemoteJob:
        """Queue a job on the server (see CONTRACT section 4); `workdir` is uploaded first."""
        upload = self._upload(Path(workdir), user) if workdir is not None else None
        deps = spec.pop("depends_on", None)
        if deps is not None:
            spec["depends_on"] = [getattr(d, "id", d) for d in deps]
        view = self._do("submit", command=list(command), user=user, upload=upload, **_plain(spec))
        return RemoteJob(self, view)

    def _upload(self, folder: Path, user: str | None) -> str:
        if not folder.is_dir():
            raise InvalidArgument(f"workdir {str(folder)!r} is not a folder")
        with tempfile.TemporaryFile() as tmp:
            with tarfile.open(fileobj=tmp, mode="w:gz") as tar:
                tar.add(str(folder), arcname=".")
            tmp.seek(0)
            schema = pa.schema([("chunk", pa.binary())])
            chunks = iter(lambda: tmp.read(_CHUNK), b"")
            batches = (pa.record_batch([pa.array([c], pa.binary())], schema=schema) for c in chunks)
            reader = pa.RecordBatchReader.from_batches(schema, batches)
            path = fl.FlightDescriptor.for_path("lakeward", "upload", json.dumps({"user": user}))
            answer = self._lake._put(path, reader, user)
        return wire.loads(answer)["upload"]

    def get(self, job_id: str, *, user: str | None = None) -> RemoteJob:
        """The job with this id (JobError if there is none the principal may see)."""
        return RemoteJob(self, self._do("get", job_id=str(job_id), user=user))

    def list(
        self,
        queue: str | None = None,
        status: str | None = None,
        *,
        user: str | None = None,
        submitted_by: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        before: str | None = None,
        children: bool = False,
    ) -> list[RemoteJob]:
        """One page of the jobs the principal may see, newest first (see `Batch.list`)."""
        rows = self._do(
            "list",
            queue=queue,
            status=status,
            user=user,
            submitted_by=submitted_by,
            limit=limit,
            offset=offset or None,
            before=before,
            children=children or None,
        )
        return [RemoteJob(self, {"row": r, "attempts": []}) for r in rows]

    def logs(
        self,
        job_id: str,
        attempt: int | None = None,
        stream: str | None = None,
        *,
        user: str | None = None,
    ) -> str:
        """The logs of a job's attempts."""
        return self._do("logs", job_id=str(job_id), attempt=attempt, stream=stream, user=user)

    def wait(self, job_id: str, timeout: float | None = None, *, user: str | None = None) -> str:
        """Block until the job ends; JobTimeout if `timeout` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return self._do("wait", job_id=str(job_id), timeout=left, user=user)
            except JobTimeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    def cancel(self, job_id: str, *, user: str | None = None) -> None:
        """Cancel a job (own jobs, or alter on its queue)."""
        self._do("cancel", job_id=str(job_id), user=user)

    def interrupt(self, job_id: str, *, user: str | None = None) -> None:
        """Deliver a spot interruption to a running spot job now."""
        self._do("interrupt", job_id=str(job_id), user=user)


def connect_remote(url: str, **kw: Any) -> RemoteLake:
    """A RemoteLake for `url` (see `lake.connect`)."""
    return RemoteLake(url, **kw)


__all__ = ["RemoteLake", "connect_remote", "default_token", "token_file"]
