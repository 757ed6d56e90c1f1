"""`lake crawl` and `lake ingest`: load folders, files and query results, with progress bars.

`register(app)` adds both commands to the main `lake` app.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from catalog.errors import LakeError
from catalog.ingestion.crawl import CrawlResult
from lake.cli.common import CatalogUrl, Root, User, console, fail, say
from lake.cli.common import open_lake as _open

if TYPE_CHECKING:
    # Through the Lake's methods: the ingestion stack (pyarrow.dataset, csv, json) is loaded
    # only by the commands that ingest, not by every `lake` command.
    from catalog.ingestion.crawl import CrawlResult


def _progress(files: bool = True) -> Progress:
    """A bar over files (with the rows read so far), or just a rows counter for a query.

    Transient: gone when the command ends, also when it fails. Descriptions are literal.
    """
    by_file = (BarColumn(), MofNCompleteColumn(), TextColumn("files")) if files else ()
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False, style="progress.description"),
        *by_file,
        TextColumn("{task.fields[rows]:,} rows", markup=False, style="cyan"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # a log or a pipe gets the summary line only
    )


def took(seconds: float, rows: int) -> str:
    """'in 41 ms' or 'in 3.2 s (120,000 rows/s)': a rate only when it means something."""
    if seconds < 1:
        return f"in {seconds * 1000:.0f} ms"
    return f"in {seconds:.1f} s ({rows / seconds:,.0f} rows/s)"


def summary(result: CrawlResult) -> Table:
    """A rich table of what a crawl did, one row per table."""
    t = Table(
        title=Text(f"crawl of {result.path} into {result.database}"),
        header_style="bold cyan",
        show_lines=False,
    )
    t.add_column("table", no_wrap=True)
    t.add_column("action", no_wrap=True)
    for col in ("new files", "known", "rows", "columns"):
        t.add_column(col, justify="right")
    t.add_column("partitioned by")
    t.add_column("problems", ratio=1)
    style = {"created": "green", "updated": "green", "unchanged": "dim", "failed": "red"}
    for c in result.tables:
        cols = Text(str(len(c.schema)) if c.schema is not None else "")
        if c.new_columns:
            cols.append(f" (+{', '.join(c.new_columns)})", style="yellow")
        notes = Text("\n").join(
            [Text(p, style="red") for p in c.problems]
            + [Text(w, style="yellow") for w in c.warnings]
        )
        t.add_row(
            Text(c.name),
            Text(c.action, style=style.get(c.action, "")),
            str(len(c.files)),
            str(c.known),
            f"{c.rows:,}",
            cols,
            Text(", ".join(c.partition_by)),
            notes,
        )
    if result.ignored:
        t.caption = f"ignored {len(result.ignored)} file(s) that are not Parquet, CSV or JSON"
    return t


def crawl_command(
    path: Annotated[Path, typer.Argument(help="Folder (or file) of Parquet, CSV or JSON files.")],
    database: Annotated[
        str, typer.Option("--database", "-d", help="Database for the tables (created if missing).")
    ],
    user: User = None,
    root: Root = ".",
    catalog: CatalogUrl = None,
) -> None:
    """Crawl a folder of Parquet, CSV and JSON files into Delta tables.

    Infers and merges schemas, turns key=value folders into partitions, and appends only files
    not crawled before. Exits 1 if a table had problems (nothing of that table is written).
    """
    try:
        with _open(root, catalog) as lk, _progress() as bar:
            task = bar.add_task(f"crawling {path}", total=None, rows=0)

            def show(rows: int, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total or None, rows=rows)

            result = lk.crawl(path, database=database, user=user, on_progress=show)
    except LakeError as e:
        fail(e)
    console.print(summary(result))
    console.print(
        f"{len(result.created)} created, {len(result.updated)} updated, "
        f"{len(result.failed)} failed; {result.files} files, {result.rows:,} rows"
    )
    if result.failed:
        raise typer.Exit(1)


def ingest_command(
    table: Annotated[str, typer.Argument(help="database.table (created if missing).")],
    source: Annotated[
        str,
        typer.Argument(
            help="A file, folder or glob of Parquet/CSV/JSON, or a SQLAlchemy URL with --query."
        ),
    ],
    user: User = None,
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="SELECT to run on the SOURCE database.")
    ] = None,
    mode: Annotated[str, typer.Option(help="append or overwrite.")] = "append",
    schema_mode: Annotated[
        str | None,
        typer.Option("--schema-mode", help="merge: add the source's new columns to the table."),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="parquet, csv, tsv or json (default: by name).")
    ] = None,
    root: Root = ".",
    catalog: CatalogUrl = None,
) -> None:
    """Load files or a query result into a table, streamed, in one atomic commit."""
    src: str | tuple[str, str] = (source, query) if query is not None else source
    try:
        with _open(root, catalog) as lk, _progress(files=query is None) as bar:
            task = bar.add_task(f"ingesting into {table}", total=None, rows=0)

            def show(rows: int, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total or None, rows=rows)

            result = lk.ingest(
                table,
                src,
                user=user,
                mode=mode,
                format=fmt,
                schema_mode=schema_mode,
                on_progress=show,
            )
    except LakeError as e:
        fail(e)
    what = f"{len(result.files)} file(s)" if result.files else "the query"
    if not result.committed:
        say((f"nothing to {mode}", "yellow"), f": {what} held no rows")
        return
    done = (
        "created and loaded"
        if result.created
        else {"overwrite": "overwrote"}.get(mode, "appended to")
    )
    say(
        (done, "green"),
        f" {table}: {result.rows:,} rows from {what} {took(result.seconds, result.rows)}, "
        f"version {result.version}",
    )


def register(app: typer.Typer) -> None:
    """Add `crawl` and `ingest` to the main `lake` app."""
    app.command("crawl")(crawl_command)
    app.command("ingest")(ingest_command)
