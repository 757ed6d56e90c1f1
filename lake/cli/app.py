"""The `lake` app: init, sql, explain, tables, databases, maintenance and the demo."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer
from rich.table import Table

from catalog.errors import InvalidArgument, LakeError
from lake.cli.batch import job_app, queue_app, schedule_app
from lake.cli.common import CatalogUrl as Catalog
from lake.cli.common import Root, User, console, err, render
from lake.cli.common import fail as _fail
from lake.cli.common import open_lake as _open
from lake.cli.demo import run as run_demo
from lake.cli.ingest import register as register_ingest
from lake.cli.policy import policy_app
from lake.cli.server import register as register_server

app = typer.Typer(
    help="Lakeward: governed Delta tables, policy-rewritten SQL, sandboxed batch jobs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
table_app = typer.Typer(
    help="Create, list, describe, show history of and drop tables.", no_args_is_help=True
)
db_app = typer.Typer(help="Create, list and drop databases.", no_args_is_help=True)
app.add_typer(table_app, name="table")
app.add_typer(db_app, name="db")
app.add_typer(policy_app, name="policy")
app.add_typer(job_app, name="job")
app.add_typer(queue_app, name="queue")
app.add_typer(schedule_app, name="schedule")
register_ingest(app)
register_server(app)


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


@app.command()
def init(
    root: Annotated[Path, typer.Argument(help="Folder for the new lake.")] = Path("."),
    catalog: Catalog = None,
    admin: Annotated[
        str | None, typer.Option("--admin", help="User who becomes admin (default: you).")
    ] = None,
) -> None:
    """Create a lake (root folder, lake.toml, metadata store) and a starter policy folder."""
    from lake.lake import write_starter_policy

    try:
        who = admin or getpass.getuser()
        folder = write_starter_policy(Path(root), who)
        with _open(root, catalog) as lk:
            console.print(f"[green]lake ready[/] at {lk.root} (catalog: {lk.store.url})")
            console.print(
                f"policy folder {folder}: [bold]{who}[/] is admin; everyone else is denied "
                "until you grant more"
            )
    except LakeError as e:
        _fail(e)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A read-only SQL query.")],
    user: User,
    root: Root = Path("."),
    catalog: Catalog = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    limit: Annotated[int, typer.Option(help="Rows to show in table format.")] = 50,
) -> None:
    """Run a query as a user and print the result."""
    try:
        with _open(root, catalog) as lk:
            result = lk.sql(query, user=user)
    except LakeError as e:
        _fail(e)
    if fmt == "json":
        console.print_json(json.dumps(result.to_pylist(), default=str))
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
    user: User,
    root: Root = Path("."),
    catalog: Catalog = None,
) -> None:
    """Show the SQL that would run for a user's query, and what it reads."""
    try:
        with _open(root, catalog) as lk:
            console.print(str(lk.explain(query, user=user)), markup=False)
    except LakeError as e:
        _fail(e)


@db_app.command("create")
def db_create(
    name: str,
    root: Root = Path("."),
    catalog: Catalog = None,
    description: Annotated[str, typer.Option(help="What the database holds.")] = "",
) -> None:
    """Create a database."""
    try:
        with _open(root, catalog) as lk:
            lk.catalog.create_database(name, description=description)
            console.print(f"[green]created database[/] {name}")
    except LakeError as e:
        _fail(e)


@db_app.command("list")
def db_list(root: Root = Path("."), catalog: Catalog = None) -> None:
    """List databases."""
    with _open(root, catalog) as lk:
        t = Table("database", "description", "owner", "created", header_style="bold cyan")
        for d in lk.catalog.list_databases():
            t.add_row(d.name, d.description, d.owner, d.created_at.isoformat(timespec="seconds"))
        console.print(t)


@db_app.command("drop")
def db_drop(
    name: str,
    root: Root = Path("."),
    catalog: Catalog = None,
    cascade: Annotated[bool, typer.Option(help="Drop its tables too.")] = False,
) -> None:
    """Drop a database."""
    try:
        with _open(root, catalog) as lk:
            lk.catalog.drop_database(name, cascade=cascade)
            console.print(f"[green]dropped database[/] {name}")
    except LakeError as e:
        _fail(e)


def parse_columns(specs: list[str]) -> pa.Schema:
    """'name:type' specs to an Arrow schema ('id:int64', 'amount:decimal(12,2)', 'ts:timestamp')."""
    fields = []
    for spec in specs:
        name, _, typ = spec.partition(":")
        typ = typ.strip().lower()
        if not name or not typ:
            raise InvalidArgument(f"column spec {spec!r} must be name:type")
        if typ.startswith("decimal(") and typ.endswith(")"):
            p, _, s = typ[8:-1].partition(",")
            fields.append(pa.field(name, pa.decimal128(int(p), int(s or 0))))
        elif typ in ARROW_TYPES:
            fields.append(pa.field(name, ARROW_TYPES[typ]))
        else:
            raise InvalidArgument(
                f"unknown type {typ!r}; known: {', '.join(sorted(ARROW_TYPES))}, decimal(p,s)"
            )
    return pa.schema(fields)


@table_app.command("create")
def table_create(
    name: Annotated[str, typer.Argument(help="database.table")],
    column: Annotated[list[str], typer.Option("--column", "-c", help="name:type, repeatable")],
    root: Root = Path("."),
    catalog: Catalog = None,
    partition_by: Annotated[list[str] | None, typer.Option("--partition-by", "-p")] = None,
    description: Annotated[str, typer.Option()] = "",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="KEY=VALUE, repeatable")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", envvar="LAKE_USER")] = None,
) -> None:
    """Create a governed Delta table."""
    try:
        tags = dict(t.split("=", 1) for t in tag or [])
        with _open(root, catalog) as lk:
            lk.catalog.create_table(
                name,
                parse_columns(column),
                partition_by=partition_by or None,
                description=description,
                tags=tags,
                user=user,
            )
            console.print(f"[green]created table[/] {name}")
    except (LakeError, ValueError) as e:
        _fail(e)


@table_app.command("list")
def table_list(
    database: Annotated[str | None, typer.Argument(help="Only this database.")] = None,
    root: Root = Path("."),
    catalog: Catalog = None,
) -> None:
    """List tables."""
    try:
        with _open(root, catalog) as lk:
            t = Table(
                "table",
                "type",
                "version",
                "partitioned by",
                "description",
                header_style="bold cyan",
            )
            for info in lk.catalog.list_tables(database):
                t.add_row(
                    info.full_name,
                    info.table_type,
                    str(info.version),
                    ", ".join(info.partition_by),
                    info.description,
                )
            console.print(t)
    except LakeError as e:
        _fail(e)


@table_app.command("describe")
def table_describe(name: str, root: Root = Path("."), catalog: Catalog = None) -> None:
    """Show a table's columns, location, version and size."""
    try:
        with _open(root, catalog) as lk:
            d = lk.catalog.describe(name)
    except LakeError as e:
        _fail(e)
    cols = Table(
        "column",
        "type",
        "nullable",
        title=f"{d['name']} (v{d['version']}, {d['type']})",
        header_style="bold cyan",
    )
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
        console.print(f"[bold]{k}[/]: {d[k]}")


@table_app.command("history")
def table_history(
    name: str,
    root: Root = Path("."),
    catalog: Catalog = None,
    limit: Annotated[int | None, typer.Option(help="Newest N versions.")] = None,
) -> None:
    """Show a table's committed versions with user and operation."""
    try:
        with _open(root, catalog) as lk:
            rows = lk.history(name, limit)
    except LakeError as e:
        _fail(e)
    t = Table("version", "time", "user", "operation", "transaction", header_style="bold cyan")
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
    root: Root = Path("."),
    catalog: Catalog = None,
    purge: Annotated[bool, typer.Option(help="Also delete the table's files.")] = False,
) -> None:
    """Drop a table (its files stay unless --purge)."""
    try:
        with _open(root, catalog) as lk:
            lk.catalog.drop_table(name, purge=purge)
            console.print(f"[green]dropped[/] {name}" + (" and its files" if purge else ""))
    except LakeError as e:
        _fail(e)


@app.command()
def compact(
    name: str,
    user: User,
    root: Root = Path("."),
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
    try:
        with _open(root, catalog) as lk, console.status(f"compacting {name}"):
            m = lk.compact(name, user=user, target_size=target_size, where=where, zorder=zorder)
        console.print(
            f"[green]compacted[/] {name}: {m.get('numFilesRemoved', 0)} files -> {m.get('numFilesAdded', 0)}"
        )
    except LakeError as e:
        _fail(e)


@app.command()
def vacuum(
    name: str,
    user: User,
    root: Root = Path("."),
    catalog: Catalog = None,
    retention_hours: Annotated[
        float | None, typer.Option(help="Keep files of versions this recent.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only list what would be deleted.")] = False,
    force: Annotated[bool, typer.Option(help="Allow retention below the safe minimum.")] = False,
) -> None:
    """Delete data files no version inside the retention window (or a running transaction) needs."""
    try:
        with _open(root, catalog) as lk:
            files = lk.vacuum(
                name, user=user, retention_hours=retention_hours, dry_run=dry_run, force=force
            )
        verb = "would delete" if dry_run else "deleted"
        console.print(f"{verb} {len(files)} file(s) of {name}")
    except LakeError as e:
        _fail(e)


@table_app.command("partitions")
def table_partitions(name: str, root: Root = Path("."), catalog: Catalog = None) -> None:
    """List a table's partitions with file count, rows and bytes."""
    try:
        with _open(root, catalog) as lk:
            parts = lk.catalog.partitions(name)
    except LakeError as e:
        _fail(e)
    t = Table("partition", "files", "rows", "bytes", header_style="bold cyan", title=name)
    for p in parts:
        label = ", ".join(f"{k}={v}" for k, v in p["partition"].items()) or "(unpartitioned)"
        t.add_row(label, str(p["num_files"]), str(p["num_rows"]), str(p["size_bytes"]))
    console.print(t)


@app.command()
def recover(root: Root = Path("."), catalog: Catalog = None) -> None:
    """Roll back Delta versions that crashed writers left past the committed versions."""
    with _open(root, catalog) as lk:
        done = lk.recover()
    console.print(f"rolled back: {done}" if done else "nothing to recover")


@app.command()
def demo(
    root: Annotated[
        Path, typer.Option("--root", "-r", help="Where to build the demo lake.")
    ] = Path("./demo-lake"),
    fresh: Annotated[bool, typer.Option(help="Delete the demo lake first.")] = False,
) -> None:
    """Build a small sales lake and show tables, a multi-table transaction and time travel."""
    run_demo(root, fresh=fresh, console=console)


def main() -> None:
    os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")
    try:
        app()
    except LakeError as e:
        err.print(f"[bold red]{type(e).__name__}:[/] {e}")
        raise SystemExit(1) from None
