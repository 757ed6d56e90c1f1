"""Lakeward's operations besides SQL, as Flight actions: `lakeward.NAME` with a JSON body.

Each action is a fixed function over the governed `Lake`, called with the authenticated
principal; its body is validated by a pydantic model (unknown keys, wrong types: refused). A
client never names code, paths on the server or another principal: `user`, where given, must
name the caller, or the call is refused with AccessDenied (and audited).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, ValidationError

from catalog.errors import AccessDenied, InvalidArgument, LakeError
from catalog.store import TableInfo
from governance.principal import Principal
from lake.lake import Lake
from lake.server.uploads import Uploads


class Args(BaseModel):
    """The body of an action; `user` may only name the caller."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user: str | None = None


Handler = Callable[["Context", Any], Any]
ACTIONS: dict[str, tuple[type[Args], Handler]] = {}


def action(name: str, args: type[Args] = Args) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ACTIONS[name] = (args, fn)
        return fn

    return register


@dataclasses.dataclass
class Context:
    """What an action runs with: the lake, the caller, the server's limits."""

    lake: Lake
    principal: Principal
    uploads: Uploads
    max_wait_s: float
    status: Callable[[], dict[str, int]]


def run(ctx: Context, name: str, body: bytes) -> Any:
    """Validate `body` for action `name` and run it for `ctx.principal`."""
    entry = ACTIONS.get(name)
    if entry is None:
        raise InvalidArgument(f"unknown action {name[:80]!r}; see list_actions")
    model, fn = entry
    try:
        args = model.model_validate_json(body or b"{}")
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise InvalidArgument(f"bad arguments for {name}: {where}: {first['msg']}") from None
    acting_as(ctx, args.user, name)
    return fn(ctx, args)


def acting_as(ctx: Context, user: str | None, what: str) -> None:
    """AccessDenied (audited) unless `user` is None or names the authenticated principal."""
    p = ctx.principal
    if user is None or p.same_user(user):
        return
    ctx.lake.gate.record(p, what, f"{what} as {user}", "denied", reason="user= names another")
    raise AccessDenied(
        f"{p.name} may not act as {user}: a server connection acts only as its own principal"
    )


def _shown(ctx: Context, info: TableInfo) -> TableInfo:
    """A catalog entry as a user may see it: no path of the server's files, and in its
    schema only the columns the user may know of."""
    known = {
        c["name"] for c in ctx.lake.catalog.describe(info.full_name, user=ctx.principal)["columns"]
    }
    fields = [f for f in json.loads(info.schema_json) if f.get("name") in known]
    return dataclasses.replace(info, location="", schema_json=json.dumps(fields))


def _schema(encoded: str) -> pa.Schema:
    try:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded, validate=True)))
    except (ValueError, pa.ArrowException):
        raise InvalidArgument("schema must be an Arrow IPC schema, base64-encoded") from None


# who am I ------------------------------------------------------------------------------------
@action("lakeward.whoami")
def whoami(ctx: Context, _args: Args) -> dict[str, str]:
    p = ctx.principal
    return {"user": p.name, "auth": p.auth, "client": p.client}


@action("lakeward.status")
def status(ctx: Context, _args: Args) -> dict[str, int]:
    ctx.lake.gate.require(ctx.principal, "describe", "policy", "the server's status")
    return ctx.status()


# queries -------------------------------------------------------------------------------------
class QueryArgs(Args):
    query: str


@action("lakeward.explain", QueryArgs)
def explain(ctx: Context, args: QueryArgs) -> dict[str, Any]:
    e = ctx.lake.explain(args.query, user=ctx.principal)

    def shown(text: str) -> str:  # the server's paths never reach a client (as in errors)
        return str(ctx.lake.gate.scrub(LakeError(text), ctx.principal))

    return {"sql": shown(e.sql), "rules": list(e.rules), "text": shown(str(e))}


# catalog -------------------------------------------------------------------------------------
class NameArgs(Args):
    name: str


class CreateDatabase(NameArgs):
    description: str = ""
    tags: dict[str, str] | None = None
    exist_ok: bool = False


@action("lakeward.catalog.create_database", CreateDatabase)
def create_database(ctx: Context, a: CreateDatabase) -> Any:
    return ctx.lake.catalog.create_database(
        a.name, a.description, tags=a.tags, exist_ok=a.exist_ok, user=ctx.principal
    )


class DropDatabase(NameArgs):
    cascade: bool = False
    purge: bool = False


@action("lakeward.catalog.drop_database", DropDatabase)
def drop_database(ctx: Context, a: DropDatabase) -> None:
    ctx.lake.catalog.drop_database(a.name, cascade=a.cascade, purge=a.purge, user=ctx.principal)


@action("lakeward.catalog.list_databases")
def list_databases(ctx: Context, _a: Args) -> Any:
    return ctx.lake.catalog.list_databases(user=ctx.principal)


@action("lakeward.catalog.get_database", NameArgs)
def get_database(ctx: Context, a: NameArgs) -> Any:
    return ctx.lake.catalog.get_database(a.name, user=ctx.principal)


class CreateTable(NameArgs):
    schema_ipc: str
    partition_by: list[str] | None = None
    tags: dict[str, str] | None = None
    description: str = ""
    properties: dict[str, str] | None = None
    exist_ok: bool = False


@action("lakeward.catalog.create_table", CreateTable)
def create_table(ctx: Context, a: CreateTable) -> Any:
    info = ctx.lake.catalog.create_table(
        a.name,
        _schema(a.schema_ipc),
        partition_by=a.partition_by,
        tags=a.tags,
        description=a.description,
        properties=a.properties,
        exist_ok=a.exist_ok,
        user=ctx.principal,
    )
    return _shown(ctx, info)


class RegisterTable(NameArgs):
    location: str
    governed: bool = False
    description: str = ""
    tags: dict[str, str] | None = None


@action("lakeward.catalog.register_table", RegisterTable)
def register_table(ctx: Context, a: RegisterTable) -> Any:
    info = ctx.lake.catalog.register_table(
        a.name,
        a.location,
        governed=a.governed,
        description=a.description,
        tags=a.tags,
        user=ctx.principal,
    )
    return _shown(ctx, info)


class DropTable(NameArgs):
    purge: bool = False


@action("lakeward.catalog.drop_table", DropTable)
def drop_table(ctx: Context, a: DropTable) -> None:
    ctx.lake.catalog.drop_table(a.name, purge=a.purge, user=ctx.principal)


class SetProperties(NameArgs):
    properties: dict[str, str | None]


@action("lakeward.catalog.set_properties", SetProperties)
def set_properties(ctx: Context, a: SetProperties) -> Any:
    return _shown(ctx, ctx.lake.catalog.set_properties(a.name, a.properties, user=ctx.principal))


class ListTables(Args):
    database: str | None = None


@action("lakeward.catalog.list_tables", ListTables)
def list_tables(ctx: Context, a: ListTables) -> Any:
    return [_shown(ctx, t) for t in ctx.lake.catalog.list_tables(a.database, user=ctx.principal)]


@action("lakeward.catalog.describe", NameArgs)
def describe(ctx: Context, a: NameArgs) -> Any:
    return ctx.lake.catalog.describe(a.name, user=ctx.principal)


@action("lakeward.catalog.partitions", NameArgs)
def partitions(ctx: Context, a: NameArgs) -> Any:
    return ctx.lake.catalog.partitions(a.name, user=ctx.principal)


# writes and maintenance ----------------------------------------------------------------------
class TableArgs(Args):
    table: str


class History(TableArgs):
    limit: int | None = None


@action("lakeward.history", History)
def history(ctx: Context, a: History) -> Any:
    return ctx.lake.history(a.table, a.limit, user=ctx.principal)


class Delete(TableArgs):
    where: str | None = None


@action("lakeward.delete", Delete)
def delete(ctx: Context, a: Delete) -> Any:
    return ctx.lake.delete(a.table, a.where, user=ctx.principal)


class Update(TableArgs):
    set: dict[str, str]
    where: str | None = None


@action("lakeward.update", Update)
def update(ctx: Context, a: Update) -> Any:
    return ctx.lake.update(a.table, a.set, a.where, user=ctx.principal)


class Compact(TableArgs):
    target_size: int | None = None
    zorder: list[str] | None = None
    where: str | None = None
    partition: dict[str, str | int | float | bool | None] | None = None


@action("lakeward.compact", Compact)
def compact(ctx: Context, a: Compact) -> Any:
    return ctx.lake.compact(
        a.table,
        user=ctx.principal,
        target_size=a.target_size,
        zorder=a.zorder,
        where=a.where,
        partition=a.partition,
    )


class Vacuum(TableArgs):
    retention_hours: float | None = None
    dry_run: bool = False
    force: bool = False
    partition: dict[str, str | int | float | bool | None] | None = None


@action("lakeward.vacuum", Vacuum)
def vacuum(ctx: Context, a: Vacuum) -> Any:
    return ctx.lake.vacuum(
        a.table,
        user=ctx.principal,
        retention_hours=a.retention_hours,
        dry_run=a.dry_run,
        force=a.force,
        partition=a.partition,
    )


class Merge(TableArgs):
    on: str | list[str]
    when_matched: str | dict[str, str] | None = "update"
    when_not_matched: str | dict[str, str] | None = "insert"
    when_not_matched_by_source: str | None = None


def merge(ctx: Context, a: Merge, source: pa.RecordBatchReader) -> Any:
    """`lk.merge` with the source streamed in by DoPut."""
    return ctx.lake.merge(
        a.table,
        source,
        a.on,
        user=ctx.principal,
        when_matched=a.when_matched,
        when_not_matched=a.when_not_matched,
        when_not_matched_by_source=a.when_not_matched_by_source,
    )


# batch ---------------------------------------------------------------------------------------
_PRIVATE_ATTEMPT = ("log_dir", "scratch")  # server paths


def job_view(ctx: Context, job: Any) -> dict[str, Any]:
    """A job as its caller may see it: its row and attempts, without server paths."""
    row = dict(job.refresh())
    attempts = [
        {k: v for k, v in a.items() if k not in _PRIVATE_ATTEMPT}
        for a in ctx.lake.batch.store.attempts(job.id)
    ]
    return {"row": row, "attempts": attempts}


class Submit(Args):
    command: list[str]
    image: str = "host"
    queue: str = "default"
    cpus: float | int = 1
    memory: str | int = "1GiB"
    env: dict[str, str] | None = None
    timeout_s: float | int | None = None
    retries: int = 0
    retry_rules: list[dict[str, str]] | None = None
    spot: bool = False
    checkpoint: bool = False
    array_size: int | None = None
    depends_on: list[str] | None = None
    upload: str | None = None  # the workdir, uploaded first (lakeward.upload)
    inputs: dict[str, str] | None = None
    outputs: dict[str, str] | None = None
    name: str | None = None
    network: bool = False


@action("lakeward.batch.submit", Submit)
def submit(ctx: Context, a: Submit) -> Any:
    if a.image != "host":
        # Other images are rootfs folders or tarballs: paths on the server, not a client's.
        raise InvalidArgument("over a server connection a job runs on image 'host'")
    workdir = ctx.uploads.folder(ctx.principal, a.upload) if a.upload else None
    spec = a.model_dump(exclude={"user", "command", "upload"})
    job = ctx.lake.batch.submit(a.command, user=ctx.principal, workdir=workdir, **spec)
    return job_view(ctx, job)


class JobArgs(Args):
    job_id: str


@action("lakeward.batch.get", JobArgs)
def get_job(ctx: Context, a: JobArgs) -> Any:
    return job_view(ctx, ctx.lake.batch.get(a.job_id, user=ctx.principal))


class ListJobs(Args):
    queue: str | None = None
    status: str | None = None
    submitted_by: str | None = None
    limit: int | None = 100
    offset: int = 0
    before: str | None = None
    children: bool = False


@action("lakeward.batch.list", ListJobs)
def list_jobs(ctx: Context, a: ListJobs) -> Any:
    jobs = ctx.lake.batch.list(
        a.queue,
        a.status,
        user=ctx.principal,
        submitted_by=a.submitted_by,
        limit=a.limit,
        offset=a.offset,
        before=a.before,
        children=a.children,
    )
    return [j.refresh() for j in jobs]


class Logs(JobArgs):
    attempt: int | None = None
    stream: str | None = None


@action("lakeward.batch.logs", Logs)
def logs(ctx: Context, a: Logs) -> str:
    return ctx.lake.batch.logs(a.job_id, a.attempt, a.stream, user=ctx.principal)


class Wait(JobArgs):
    timeout: float | int | None = None


@action("lakeward.batch.wait", Wait)
def wait(ctx: Context, a: Wait) -> str:
    # One bounded round; the client repeats until the job ends or its own timeout passes.
    limit = ctx.max_wait_s if a.timeout is None else min(float(a.timeout), ctx.max_wait_s)
    return ctx.lake.batch.get(a.job_id, user=ctx.principal).wait(timeout=max(limit, 0.0))


@action("lakeward.batch.cancel", JobArgs)
def cancel(ctx: Context, a: JobArgs) -> None:
    ctx.lake.batch.cancel(a.job_id, user=ctx.principal)


@action("lakeward.batch.interrupt", JobArgs)
def interrupt(ctx: Context, a: JobArgs) -> None:
    ctx.lake.batch.interrupt(a.job_id, user=ctx.principal)


def describe_actions() -> Mapping[str, str]:
    """Each action's name and first docstring line (for list_actions)."""
    return {
        name: (fn.__doc__ or name).strip().splitlines()[0] for name, (_m, fn) in ACTIONS.items()
    }
