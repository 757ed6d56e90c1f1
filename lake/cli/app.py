"""The `lake` app: init, sql, explain, tables, databases, maintenance and the demo.

Every command that acts takes `--user` (default: the lake's owner on an embedded lake) and
calls the same API a program would, so it goes through the same checks.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer
from rich.text import Text

from catalog import storage
from catalog.errors import InvalidArgument, LakeError, TableNotFound
from lake.cli.common import CatalogUrl as Catalog
from lake.cli.common import Root, User, console, err, error_line, fail, quiet_ray, render, say
from lake.cli.common import open_lake as _open
from lake.cli.common import session as _session
from lake.cli.common import table as _table
from lake.cli.lazy import Lazy, LazyGroup
from lake.cli.remote import connect_server, use_server


# The command modules below are imported when one of their commands runs (or `lake --help`
# needs more than their summary): a one-shot catalog or SQL command never pays for them.
def _batch(app: typer.Typer) -> None:
    from lake.cli.batch import job_app, queue_app, schedule_app

    app.add_typer(job_app, name="job")
    app.add_typer(queue_app, name="queue")
    app.add_typer(schedule_app, name="schedule")


def _image(app: typer.Typer) -> None:
    from lake.cli.image import image_app

    app.add_typer(image_app, name="image")


def _policy(app: typer.Typer) -> None:
    from lake.cli.policy import policy_app

    app.add_typer(policy_app, name="policy")


def _ingest(app: typer.Typer) -> None:
    from lake.cli.ingest import register

    register(app)


def _server(app: typer.Typer) -> None:
    from lake.cli.server import register

    register(app)


def _demo(app: typer.Typer) -> None:
    from lake.cli.demo import register

    register(app)


class LakeGroup(LazyGroup):
    lazy = {
        "crawl": Lazy(_ingest, "Crawl a folder of Parquet, CSV and JSON files into Delta tables."),
        "ingest": Lazy(
            _ingest, "Load files or a query result into a table, streamed, in one atomic commit."
        ),
        "policy": Lazy(_policy, "Check, apply and explain policies (policy.csv, model.conf)."),
        "job": Lazy(_batch, "Submit, watch, cancel and interrupt batch jobs."),
        "queue": Lazy(_batch, "Job queues and compute."),
        "schedule": Lazy(_batch, "Cron schedules that submit jobs."),
        "image": Lazy(_image, "List and prune the unpacked job images."),
        "serve": Lazy(
            _server,
            "Serve the lake over Arrow Flight SQL to authenticated clients (Ctrl-C stops it).",
        ),
        "login": Lazy(
            _server,
            "Save a token for the CLI: read one from standard input, or with --user a "
            "password (the server answers with a session token).",
        ),
        "token": Lazy(_server, "Bearer tokens for the server: create, list, revoke."),
        "user": Lazy(_server, "Users' passwords for the server."),
        "demo": Lazy(
            _demo,
            "Build a small sales lake and show tables, governance, maintenance and a batch job.",
        ),
    }


app = typer.Typer(
    cls=LakeGroup,
    help="Lakeward: governed Delta tables, policy-rewritten SQL, sandboxed batch jobs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
table_app = typer.Typer(
    help="Create, list, describe, show history of, drop and purge tables.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
db_app = typer.Typer(
    help="Create, list and drop databases.", no_args_is_help=True, rich_markup_mode=None
)


@app.callback()
def lake_command(
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            envvar="LAKE_SERVER",
            help="Talk to this server (grpc://HOST:PORT) instead of opening a lake folder; "
            "the token comes from $LAKE_TOKEN or `lake login`.",
        ),
    ] = None,
) -> None:
    """Lakeward: governed Delta tables, policy-rewritten SQL, sandboxed batch jobs."""
    quiet_ray()  # also when the app runs inside another program (tests, notebooks)
    if not server:
        return
    use_server(server)
    try:
        with connect_server(server) as lk:
            # Commands acting --user default to the authenticated principal.
            os.environ.setdefault("LAKE_USER", lk.user)
    except LakeError as e:
        fail(e)


app.add_typer(table_app, name="table")
app.add_typer(db_app, name="db")


ARROW_TYPES = {
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "int": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "double": pa.float64(),
    "float": pa.float64(),
    "string": pa.string(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "binary": pa.binary(),
}
_DECIMAL = re.compile(r"decimal\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)\Z")
MAX_DECIMAL_PRECISION = 38  # Delta's decimal: precision 1-38, scale 0-precision


@app.command()
def init(
    root: Annotated[
        str, typer.Argument(help="Folder (or s3://bucket/prefix) for the new lake.")
    ] = ".",
    catalog: Catalog = None,
    admin: Annotated[
        str | None, typer.Option("--admin", help="User who becomes admin (default: you).")
    ] = None,
) -> None:
    """Create a lake (root, lake.toml, metadata store) and its starter policy: a policy folder
    in a local root; for a root in an object store, installed in its catalog."""
    from lake.lake import write_starter_policy

    who = admin or getpass.getuser()
    try:
        if storage.is_remote(root):
            with _open(root, catalog) as lk, tempfile.TemporaryDirectory() as tmp:
                say(("lake ready", "green"), f" at {lk.root}")
                if lk.policy.version:  # as a folder's policy.csv is never overwritten
                    say("its catalog already enforces a policy: left as it is")
                    return
                lk.policy.apply(write_starter_policy(Path(tmp), who))
                say(
                    "starter policy installed in its catalog: ",
                    (who, "bold"),
                    " is admin; everyone else is denied until you grant more "
                    "(write a policy folder, then `lake policy apply DIR`)",
                )
            return
        folder = write_starter_policy(Path(root), who)
        with _open(root, catalog) as lk:
            say(("lake ready", "green"), f" at {lk.root}")
            say(
                f"policy folder {folder}: ",
                (who, "bold"),
                " is admin; everyone else is denied until you grant more "
                "(edit policy.csv, then `lake policy apply`)",
            )
    except LakeError as e:
        fail(e)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A read-only SQL query.")],
    user: User = None,
    root: Root = ".",
    catalog: Catalog = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    limit: Annotated[int, typer.Option(help="Rows to show in table format.")] = 50,
) -> None:
    """Run a query as a user and print the result."""
    if fmt not in ("table", "csv", "json"):
        fail(InvalidArgument(f"--format must be table, csv or json, not {fmt!r}"))
    with _session(root, catalog) as lk:
        result = lk.sql(query, user=user)
    if fmt == "json":
        typer.echo(json.dumps(result.to_pylist(), default=str, indent=2))
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        buf = pa.BufferOutputStream()
        pacsv.write_csv(result, buf)
        typer.echo(buf.getvalue().to_pybytes().decode(), nl=False)
    else:
        console.print(render(result, limit=limit))


@app.command()
def explain(
    query: Annotated[str, typer.Argument(help="A read-only SQL query.")],
    user: User = None,
    root: Root = ".",
    catalog: Catalog = None,
) -> None:
    """Show the SQL that would run for a user's query, and what it reads."""
    with _session(root, catalog) as lk:
        console.print(Text(str(lk.explain(query, user=user))))


@db_app.command("create")
def db_create(
    name: str,
    user: User = None,
    root: Root = ".",
    catalog: Catalog = None,
    description: Annotated[str, typer.Option(help="What the database holds.")] = "",
) -> None:
    """Create a database."""
    with _session(root, catalog) as lk:
        lk.catalog.create_database(name, description=description, user=user)
        say(("created database ", "green"), name)


@db_app.command("list")
def db_list(user: User = None, root: Root = ".", catalog: Catalog = None) -> None:
    """List databases."""
    with _session(root, catalog) as lk:
        t = _table("database", "description", "owner", "created")
        for d in lk.catalog.list_databases(user=user):
            t.add_row(d.name, d.description, d.owner, d.created_at.isoformat(timespec="seconds"))
        console.print(t)


@db_app.command("drop")
def db_drop(
    name: str,
    user: User = None,
    root: Root = ".",
    catalog: Catalog = None,
    cascade: Annotated[bool, typer.Option(help="Drop its tables too.")] = False,
) -> None:
    """Drop a database."""
    with _session(root, catalog) as lk:
        lk.catalog.drop_database(name, cascade=cascade, user=user)
        say(("dropped database ", "green"), name)


def parse_columns(specs: list[str]) -> pa.Schema:
    """'name:type' specs to an Arrow schema ('id:int64', 'amount:decimal(12,2)', 'ts:timestamp').

    InvalidArgument (one line, saying what is allowed) for anything else.
    """
    fields = []
    for spec in specs:
        name, _, typ = spec.partition(":")
        typ = typ.strip().lower()
        if not name or not typ:
            raise InvalidArgument(f"column spec {spec!r} must be name:type, e.g. id:int64")
        m = _DECIMAL.match(typ)
        if m:
            precision, scale = int(m.group(1)), int(m.group(2) or 0)
            if not 1 <= precision <= MAX_DECIMAL_PRECISION or scale > precision:
                raise InvalidArgument(
                    f"column {name!r}: decimal({precision},{scale}) is out of range; precision "
                    f"is 1-{MAX_DECIMAL_PRECISION} and scale 0-precision, e.g. decimal(12,2)"
                )
            fields.append(pa.field(name, pa.decimal128(precision, scale)))
        elif typ in ARROW_TYPES:
            fields.append(pa.field(name, ARROW_TYPES[typ]))
        else:
            raise InvalidArgument(
                f"column {name!r}: unknown type {typ!r}; known: "
                f"{', '.join(sorted(ARROW_TYPES))}, decimal(p,s)"
            )
    return pa.schema(fields)


def parse_tags(specs: list[str]) -> dict[str, str]:
    """'KEY=VALUE' specs to a dict; InvalidArgument for one without '='."""
    tags = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument(f"--tag {spec!r} must be KEY=VALUE, e.g. pii=false")
        tags[key.strip()] = value.strip()
    return tags


@table_app.command("create")
def table_create(
    name: Annotated[str, typer.Argument(help="database.table")],
    column: Annotated[
        list[str], typer.Option("--column", "-c", help="name:type, repeatable (quote decimals)")
    ],
    user: User = None,
    root: Root = ".",
    catalog: Catalog = None,
    partition_by: Annotated[list[str] | None, typer.Option("--partition-by", "-p")] = None,
    description: Annotated[str, typer.Option()] = "",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="KEY=VALUE, repeatable")] = None,
) -> None:
    """Create a governed Delta table: -c id:int64 -c 'amount:decimal(12,2)' -p region."""
    try:
        schema, tags = parse_columns(column), parse_tags(tag or [])
    except LakeError as e:
        fail(e)
    with _session(root, catalog) as lk:
        lk.catalog.create_table(
            name,
            schema,
            partition_by=partition_by or None,
            description=description,
            tags=tags,
            user=user,
        )
        say(("created table ", "green"), name)


@table_app.command("list")
def table_list(
    database: Annotated[str | None, typer.Argument(help="Only this database.")] = None,
    user: User = None,
    root: Root = ".",
    catalog: Catalog = None,
) -> None:
    """List tables."""
    with _session(root, catalog) as lk:
        t = _table("table", "type", "version", "partitioned by", "description")
        for info in lk.catalog.list_tables(database, user=user):
            t.add_row(
                info.full_name,
                info.table_type,
                str(info.version),
                ", ".join(info.partition_by),
                info.description,
            )
        console.print(t)


@table_app.command("describe")
def table_describe(name: str, user: User = None, root: Root = ".", catalog: Catalog = None) -> None:
    """Show a table's columns, version, size and tags."""
    with _session(root, catalog) as lk:
        d = lk.catalog.describe(name, user=user)
    cols = _table("column", "type", "nullable", title=f"{d['name']} (v{d['version']}, {d['type']})")
    for c in d["columns"]:
        part = " (partition)" if c["name"] in d["partition_by"] else ""
        cols.add_row(c["name"] + part, c["type"], "yes" if c["nullable"] else "no")
    console.print(cols)
    for k in (
        "location",
        "description",
        "owner",
        "created_at",
        "num_files",
        "num_rows",
        "size_bytes",
        "tags",
    ):
        if k in d:
            say((f"{k}: ", "bold"), str(d[k]))


@table_app.command("history")
def table_history(
    name: str,
    user: User = None,
    root: Root = ".",
    catalog: Catalog = None,
    limit: Annotated[int | None, typer.Option(help="Newest N versions.")] = None,
) -> None:
    """Show a table's committed versions with user and operation."""
    with _session(root, catalog) as lk:
        rows = lk.history(name, limit, user=user)
    t = _table("version", "time", "user", "operation", "transaction")
    for h in rows:
        t.add_row(
            str(h["version"]),
            h["timestamp"].isoformat(timespec="seconds"),
            h["user"],
            h["operation"],
            (h["transaction"] or "")[:12],
        )
    console.print(t)


@table_app.command("drop")
def table_drop(
    name: str,
    user: User = None,
    root: Root = ".",
    catalog: Catalog = None,
    purge: Annotated[
        bool, typer.Option(help="Also delete the table's files (also after an earlier drop).")
    ] = False,
) -> None:
    """Drop a table; its folder stays unless --purge."""
    with _session(root, catalog) as lk:
        try:
            lk.catalog.drop_table(name, purge=purge, user=user)
        except TableNotFound:
            # Dropped earlier without --purge: the folder it left is what --purge is asked for.
            if not purge or not lk.catalog.purge_dropped(name, user=user):
                raise
            say(("purged ", "green"), f"the files {name} left when it was dropped")
            return
        if purge:
            say(("dropped ", "green"), f"{name} and its files")
        else:
            say(
                ("dropped ", "green"),
                f"{name}; its files stay in the lake's folder "
                f"(delete them with `lake table purge {name}`)",
            )


@table_app.command("purge")
def table_purge(
    name: Annotated[str, typer.Argument(help="database.table of a dropped table.")],
    user: User = None,
    root: Root = ".",
    catalog: Catalog = None,
) -> None:
    """Delete the files that dropped tables called NAME left behind (needs drop on NAME)."""
    with _session(root, catalog) as lk:
        n = lk.catalog.purge_dropped(name, user=user)
    if n:
        say(("purged ", "green"), f"{n} folder(s) left by dropped table {name}")
    else:
        say(f"nothing to purge: no dropped table {name} left files")


@app.command()
def compact(
    name: str,
    user: User = None,
    root: Root = ".",
    catalog: Catalog = None,
    target_size: Annotated[int | None, typer.Option(help="Target file size in bytes.")] = None,
    where: Annotated[
        str | None, typer.Option(help="Only partitions matching, e.g. \"region = 'eu'\".")
    ] = None,
    zorder: Annotated[
        list[str] | None, typer.Option("--zorder", help="Z-order by column, repeatable.")
    ] = None,
) -> None:
    """Compact a table's small files in one commit (concurrent appends never fail)."""
    with _session(root, catalog) as lk:
        with console.status(Text(f"compacting {name}")):
            m = lk.compact(name, user=user, target_size=target_size, where=where, zorder=zorder)
        say(
            ("compacted ", "green"),
            f"{name}: {m.get('numFilesRemoved', 0)} files -> {m.get('numFilesAdded', 0)}",
        )


@app.command()
def vacuum(
    name: str,
    user: User = None,
    root: Root = ".",
    catalog: Catalog = None,
    retention_hours: Annotated[
        float | None, typer.Option(help="Keep files of versions this recent.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only list what would be deleted.")] = False,
    force: Annotated[bool, typer.Option(help="Allow retention below the safe minimum.")] = False,
) -> None:
    """Delete data files no version inside the retention window (or a running transaction) needs."""
    with _session(root, catalog) as lk:
        files = lk.vacuum(
            name, user=user, retention_hours=retention_hours, dry_run=dry_run, force=force
        )
    verb = "would delete" if dry_run else "deleted"
    say(f"{verb} {len(files)} file(s) of {name}")


@table_app.command("partitions")
def table_partitions(
    name: str, user: User = None, root: Root = ".", catalog: Catalog = None
) -> None:
    """List a table's partitions with file count, rows and bytes."""
    with _session(root, catalog) as lk:
        parts = lk.catalog.partitions(name, user=user)
    t = _table("partition", "files", "rows", "bytes", title=name)
    for p in parts:
        label = ", ".join(f"{k}={v}" for k, v in p["partition"].items()) or "(unpartitioned)"
        t.add_row(label, str(p["num_files"]), str(p["num_rows"]), str(p["size_bytes"]))
    console.print(t)


@app.command()
def recover(root: Root = ".", catalog: Catalog = None) -> None:
    """Roll back Delta versions that crashed writers left past the committed versions (owner)."""
    with _session(root, catalog) as lk:
        done = lk.recover()
    say(f"rolled back: {done}" if done else "nothing to recover")


def main() -> None:
    """The `lake` console script."""
    quiet_ray()
    try:
        app()
    except LakeError as e:
        err.print(error_line(e))
        raise SystemExit(1) from None
