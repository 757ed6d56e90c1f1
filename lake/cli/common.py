"""What every `lake` command shares: consoles, common options, opening a lake, failing.

Nothing from data or from an error is ever read as Rich markup: both consoles have markup off,
and styled output is built from `rich.text.Text` pieces (`say`, `line`), whose strings are
always literal.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import pyarrow as pa
import typer
from rich import box
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from catalog.errors import LakeError

if TYPE_CHECKING:
    from lake.lake import Lake

console = Console(highlight=False, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)  # one line

Root = Annotated[
    str,
    typer.Option(
        "--root", "-r", envvar="LAKE_ROOT", help="Lake root: a folder or s3://bucket/prefix."
    ),
]
CatalogUrl = Annotated[
    str | None,
    typer.Option(
        "--catalog", envvar="LAKE_CATALOG", help="Metadata store URL (default: SQLite in the root)."
    ),
]
User = Annotated[
    str | None,
    typer.Option(
        "--user",
        "-u",
        envvar="LAKE_USER",
        help="User the command acts for (default: the lake's owner, on an embedded lake).",
    ),
]

Piece = str | tuple[str, str]  # literal text, or (literal text, style)


def line(*pieces: Piece) -> Text:
    """One line of output from literal pieces; a (text, style) pair is styled, never parsed."""
    return Text.assemble(*pieces)


def say(*pieces: Piece) -> None:
    """Print one line built by `line`."""
    console.print(line(*pieces))


def quiet_ray() -> None:
    """Keep Ray's banners and warnings (token auth, SIGTERM handler) out of what users see."""
    os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")
    # `import ray` sets its own "ray" logger to INFO; the levels of its children stay.
    for name in ("ray._private", "ray.util", "ray.runtime_env"):
        logging.getLogger(name).setLevel(logging.ERROR)


def open_lake(root: Path | str, catalog: str | None) -> Lake:
    """The lake at `root` for one command (or the server of --server / $LAKE_SERVER)."""
    from lake.cli.remote import connect_server, server_url
    from lake.lake import connect

    url = server_url()
    return connect_server(url) if url else connect(root, catalog=catalog)


@contextmanager
def session(root: Path | str, catalog: str | None) -> Iterator[Any]:
    """An open lake for one command; a LakeError becomes one red line and exit code 1."""
    lk = None
    try:
        lk = open_lake(root, catalog)
        yield lk
    except LakeError as e:
        fail(e)
    finally:
        if lk is not None:
            lk.close()


def fail(e: Exception) -> NoReturn:
    """Print an error as one red line (its text literal) and exit with status 1."""
    err.print(error_line(e))
    raise typer.Exit(1)


def error_line(e: Exception) -> Text:
    """`ErrorName: message`, the name in red, the message as it is."""
    return line((f"{type(e).__name__}: ", "bold red"), str(e))


PAD = (0, 1, 0, 0)  # one space after each cell: columns two apart, nothing at the edges


def table(*columns: Any, title: str | None = None, show_header: bool = True) -> Table:
    """A compact table (no outer box): fits 80 columns where a boxed one would not."""
    return Table(
        *columns,
        title=title,
        box=box.SIMPLE_HEAD,
        header_style="bold cyan",
        pad_edge=False,
        show_edge=False,
        show_header=show_header,
        padding=PAD,
    )


Cell = str | Text


def fitted(
    headers: list[str],
    rows: list[list[Cell]],
    *,
    whole: set[str],
    fold: str | None = None,
    right: set[str] = frozenset(),
    width: int | None = None,
) -> Table:
    """A table laid out for the terminal: columns in `whole` (ids, states, times) are never
    cut; the others share what is left and end in an ellipsis, except `fold`, which takes the
    rest and wraps."""
    width = width or console.width
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(headers)
    need = [
        max([len(h), *(len(c.plain if isinstance(c, Text) else c) for c in col)])
        for h, col in zip(headers, cols, strict=True)
    ]
    at = {h: i for i, h in enumerate(headers)}
    pool = width - 2 * (len(headers) - 1) - 1 - sum(need[at[h]] for h in whole)
    reserve = min(need[at[fold]], max(len(fold), 16)) if fold else 0
    pool -= reserve
    flexible = sorted(
        (i for i, h in enumerate(headers) if h not in whole and h != fold), key=need.__getitem__
    )
    give = {}
    for k, i in enumerate(flexible):
        give[i] = min(need[i], max(len(headers[i]), pool // (len(flexible) - k)))
        pool -= give[i]
    columns = []
    for i, h in enumerate(headers):
        justify = "right" if h in right else "left"
        if h in whole:
            columns.append(Column(h, width=need[i], no_wrap=True, justify=justify))
        elif h == fold:
            w = max(len(h), min(need[i], pool + reserve))
            columns.append(Column(h, width=w, overflow="fold"))
        else:
            columns.append(
                Column(h, width=give[i], no_wrap=True, overflow="ellipsis", justify=justify)
            )
    out = table(*columns)
    for r in rows:
        out.add_row(*r)
    return out


def render(t: pa.Table, title: str | None = None, limit: int = 50) -> Table:
    """A rich table of the first `limit` rows of an Arrow table (cells printed literally)."""
    out = Table(title=title, show_lines=False, header_style="bold cyan")
    for name in t.column_names:
        out.add_column(Text(name))
    for row in t.slice(0, limit).to_pylist():
        out.add_row(*[Text("NULL" if v is None else str(v)) for v in row.values()])
    if t.num_rows > limit:
        out.caption = f"{limit} of {t.num_rows} rows"
    return out
