"""`lake policy ...`: check a policy folder, apply it to a lake, explain what it does."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import cachetools
import typer
from rich.console import Console
from rich.text import Text

from catalog import storage
from catalog.catalog import Catalog
from catalog.errors import LakeError
from catalog.store import load_store
from governance.policy.check import ERROR, WARNING, Problem, check_folder
from governance.policy.engine import TableLookup
from lake.cli.common import Root, User, console, say, session

policy_app = typer.Typer(
    help="Check, apply and explain policies (policy.csv, model.conf).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

Folder = Annotated[Path, typer.Argument(help="Policy folder holding policy.csv.")]
OptRoot = Annotated[
    str | None,
    typer.Option(
        "--root",
        "-r",
        envvar="LAKE_ROOT",
        help="Root of an existing lake: its catalog tells which tables and columns exist.",
    ),
]
OptCatalog = Annotated[
    str | None,
    typer.Option(
        "--catalog", envvar="LAKE_CATALOG", help="Metadata store URL (default: SQLite in the root)."
    ),
]

STYLES = {ERROR: "red", WARNING: "yellow"}


@policy_app.callback()
def policy() -> None:
    """Check, apply and explain policies (policy.csv, model.conf)."""


CHECK_HELP = (
    "Print every problem of a policy folder; exit 1 if any is an error.\n\n"
    "With --root, rules are checked against the lake's tables and columns; without it, only "
    "what the policy files alone can tell is checked."
)


@policy_app.command("check", help=CHECK_HELP)
def check(folder: Folder, root: OptRoot = None, catalog: OptCatalog = None) -> None:
    """Print every problem of a policy folder and a summary; exit 1 if any is an error."""
    out = Console(highlight=False, markup=False, soft_wrap=True)
    if root is None:
        problems = check_folder(folder, None)
        out.print(Text("no --root: checks that need the catalog were skipped", style="dim"))
    else:
        problems = _check_with_lake(folder, root, catalog)
    for p in problems:
        out.print(Text(str(p), style=STYLES.get(p.severity, "")))
    errors = sum(p.severity == ERROR for p in problems)
    warnings = sum(p.severity == WARNING for p in problems)
    summary = f"{_count(errors, 'error')}, {_count(warnings, 'warning')}"
    out.print(
        Text(summary, style="bold " + ("red" if errors else "yellow" if warnings else "green"))
    )
    raise typer.Exit(1 if errors else 0)


def _check_with_lake(folder: Path, root: str, catalog: str | None) -> list[Problem]:
    # lake.connect creates a lake where there is none; checking must never do that. Nor does
    # it open the lake: that would enforce (and so stop at) a broken policy being fixed. The
    # catalog alone tells which tables and columns exist; this reads it as the lake's owner.
    if not storage.is_remote(root):
        root = str(Path(root).expanduser().resolve())
    if not storage.exists(storage.join(root, "lake.toml")):
        _usage(f"no lake at {root} (no lake.toml); pass the root of an existing lake or no --root")
    try:
        store = load_store(catalog, root)
    except LakeError as e:
        _usage(f"cannot open the catalog of the lake at {root}: {e}")
    try:
        tables, databases = catalog_lookup(Catalog(root, store))
        return check_folder(folder, tables, databases)
    finally:
        store.close()


def catalog_lookup(cat: Catalog) -> tuple[TableLookup, Callable[[], set[str]]]:
    """A TableLookup and a database lister over a lake's catalog.

    Table names come from the catalog's listing; a table's columns are read from its current
    snapshot the first time a rule names it.
    """
    db_tags = {d.name.lower(): dict(d.tags) for d in cat.list_databases()}
    infos = {info.full_name.lower(): info for info in cat.list_tables()}
    builtin = _builtin_tables(infos)

    def columns_of(name: str) -> list[str] | None:
        if name not in infos:
            return builtin.get(name)
        try:
            return list(cat.snapshot(infos[name]).schema.names)
        except LakeError:
            # An unreadable snapshot still names a table; its creation schema is the best guess.
            return [f["name"] for f in json.loads(infos[name].schema_json)]

    @cachetools.cached(cachetools.LRUCache(maxsize=4096))
    def tables(name: str) -> tuple[list[str], dict[str, dict[str, str]]] | None:
        name = name.lower()
        cols = columns_of(name)
        return None if cols is None else (cols, _tags_of(name, infos, db_tags))

    databases = set(db_tags) | {n.split(".")[0] for n in builtin}
    return tables, lambda: set(databases)


def _tags_of(
    name: str, infos: dict, db_tags: dict[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    db = name.split(".")[0]
    tags = {db: db_tags.get(db, {})}
    if name in infos:
        tags[name] = dict(infos[name].tags)
    return tags


def _builtin_tables(infos: dict) -> dict[str, list[str]]:
    """Tables Lakeward creates on first use, so rules on them are valid before they exist."""
    from governance import audit

    if audit.TABLE in infos:
        return {}
    return {audit.TABLE: list(audit.SCHEMA.names)}


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _usage(message: str) -> NoReturn:
    Console(stderr=True, highlight=False, soft_wrap=True).print(Text(message, style="bold red"))
    raise typer.Exit(2)


@policy_app.command("apply")
def apply(
    folder: Folder,
    user: User = None,
    root: Root = ".",
    catalog: OptCatalog = None,
) -> None:
    """Install a policy folder for every client of the lake's catalog (needs alter on policy).

    Nothing changes if the folder has an error; `lake policy check` lists them all.
    """
    with session(root, catalog) as lk:
        version = lk.policy.apply(folder, user=user)
    say(("applied ", "green"), f"policy {folder} (version {version[:12]})")


@policy_app.command("explain")
def explain(
    query: Annotated[str, typer.Argument(help="A read-only SQL query.")],
    user: User = None,
    root: Root = ".",
    catalog: OptCatalog = None,
) -> None:
    """Show a user's query over their view and the policy rules that shaped it (where each rule
    is written, its SQL and the SQL that runs only to users with describe on the policy)."""
    with session(root, catalog) as lk:
        ex = lk.explain(query, user=user)
    console.print(Text(ex.sql))
    for t in ex.tables:
        console.print()
        version = f" v{t.version}" if t.version is not None else ""
        say((t.name + version, "bold"))
        say(f"  columns: {', '.join(t.columns)}")
        if not t.rules:
            say("  (no rule: open access)")
        for rule in t.rules:
            say(f"  {rule}")
    if ex.rewritten:
        console.print()
        say(("runs as:", "bold"))
        console.print(Text(ex.rewritten))
