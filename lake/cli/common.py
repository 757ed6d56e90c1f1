"""What every `lake` command shares: consoles, common options, opening a lake, failing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pyarrow as pa
import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from lake.lake import Lake

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

Root = Annotated[Path, typer.Option("--root", "-r", envvar="LAKE_ROOT", help="Lake root folder.")]
CatalogUrl = Annotated[
    str | None,
    typer.Option(
        "--catalog", envvar="LAKE_CATALOG", help="Metadata store URL (default: SQLite in the root)."
    ),
]
User = Annotated[
    str, typer.Option("--user", "-u", envvar="LAKE_USER", help="User the command acts for.")
]


def open_lake(root: Path, catalog: str | None) -> Lake:
    """The lake at `root` for one command (or the server of --server / $LAKE_SERVER)."""
    from lake.cli.remote import connect_server, server_url
    from lake.lake import connect

    url = server_url()
    return connect_server(url) if url else connect(root, catalog=catalog)


def fail(e: Exception) -> None:
    """Print an error as one red line and exit with status 1."""
    err.print(f"[bold red]{type(e).__name__}:[/] {e}")
    raise typer.Exit(1)


def render(t: pa.Table, title: str | None = None, limit: int = 50) -> Table:
    """A rich table of the first `limit` rows of an Arrow table."""
    out = Table(title=title, show_lines=False, header_style="bold cyan")
    for name in t.column_names:
        out.add_column(name)
    for row in t.slice(0, limit).to_pylist():
        out.add_row(*["NULL" if v is None else str(v) for v in row.values()])
    if t.num_rows > limit:
        out.caption = f"{limit} of {t.num_rows} rows"
    return out
