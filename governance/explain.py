"""What `explain` tells a user: their query over their view, and the rules that shaped it.

Everyone sees their own query, normalised (`Explain.sql`), the columns they have of each table it
reads (`Explain.columns`), and the names of the rules that applied: a row filter by its NAME,
"mask on <column>", "grant on <resource>", "deny on a column". None of that depends on what the
user may not see, so a reference lake that holds exactly the user's view materialised gives the
same `sql` and `columns` (and the same text, apart from the rule names). Only a user with
`describe` on resource `policy` (an administrator, the owner) also sees where each rule is
written and its SQL, the versions and files read, and the SQL that runs, with the lake's paths
replaced by table names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from governance.context import TableRead
from governance.policy.lines import PolicyLine


@dataclass(frozen=True)
class Rule:
    """One policy rule that applied to a table the query reads."""

    kind: str  # "row filter", "mask", "grant" or "deny"
    name: str  # what it is called: "row filter eu_rows", "mask on salary", "grant on hr"
    where: str | None = None  # policy.csv:LINE, for users who may describe the policy
    sql: str | None = None  # its SQL (filter and columns, or mask), likewise

    def __str__(self) -> str:
        text = self.name
        if self.where:
            text += f" ({self.where})"
        return f"{text}: {self.sql}" if self.sql else text


@dataclass(frozen=True)
class ExplainedTable:
    """One catalog table a query reads, as its user may know it."""

    name: str
    columns: tuple[str, ...]  # the user's columns, in table order
    rules: tuple[Rule, ...]
    # Which version, for users who may describe the policy; how many of its files the query
    # scans, also for users who see the table whole (under a row filter file counts would tell
    # how the hidden rows are spread). Neither is in the text of users who may not describe the
    # policy: a reference lake has other versions and files.
    version: int | None = None
    files_total: int | None = None
    files_scanned: int | None = None


@dataclass(frozen=True)
class Explain:
    """The user's query over their view, the tables it reads and the rules that applied."""

    sql: str
    tables: tuple[ExplainedTable, ...]
    rewritten: str | None = None  # the SQL that runs: only for users who may describe the policy

    @property
    def reads(self) -> tuple[ExplainedTable, ...]:
        return self.tables

    @property
    def columns(self) -> dict[str, tuple[str, ...]]:
        """Each table read -> the columns the user has of it."""
        return {t.name: t.columns for t in self.tables}

    @property
    def rules(self) -> list[str]:
        """Every rule that applied, as text."""
        return [str(r) for t in self.tables for r in t.rules]

    def __str__(self) -> str:
        lines = [self.sql, ""]
        for t in self.tables:
            head = f"-- {t.name}"
            if t.version is not None:  # a user who may describe the policy
                head += f" v{t.version}, {t.files_scanned}/{t.files_total} files"
            lines.append(f"{head}: {', '.join(t.columns)}")
            lines += [f"--   {r}" for r in t.rules]
        if self.rewritten:
            lines += ["", "-- runs as:", self.rewritten]
        return "\n".join(lines)


Lookup = Callable[[str], PolicyLine | None]  # "policy.csv:7" -> the rule written there
_WHERE = re.compile(r"\S+:\d+")


def explain(
    query: str, reads: tuple[TableRead, ...], sql: str, describer: bool, line: Lookup
) -> Explain:
    """The explanation of a compiled query for its user; `describer`: may describe the policy."""
    tables: dict[str, ExplainedTable] = {}
    for r in reads:
        name = r.table.full_name
        if name in tables:
            continue  # the same table read twice (a self-join): one entry
        view = r.view
        whole = view is None or view.whole
        shown = describer or whole
        tables[name] = ExplainedTable(
            name,
            tuple(view.columns) if view is not None else r.stored,
            tuple(_rule(text, describer, line) for text in r.rules),
            version=r.version if describer else None,
            files_total=r.files_total if shown else None,
            files_scanned=r.files_scanned if shown else None,
        )
    rewritten = _without_paths(sql, reads) if describer else None
    return Explain(query, tuple(tables.values()), rewritten)


def _rule(text: str, describer: bool, line: Lookup) -> Rule:
    """A rule as the engine names it ("policy.csv:7 p2 eu_rows", "policy.csv:9 p3 mask salary",
    "policy.csv:3 p, alice, hr, select, allow"), for this user."""
    where, _, rest = text.partition(" ")
    if not _WHERE.fullmatch(where):
        where, rest = "", text  # no file and line: the rule as Casbin answered
    source = line(where) if where else None
    shown = where if describer and where else None
    kind, _, body = rest.partition(" ")
    if kind == "p2":
        sql = f"{source.values[3]}; columns {source.values[4]}" if source else None
        return Rule("row filter", f"row filter {body}", shown, sql if describer else None)
    if kind == "p3":
        column = body.removeprefix("mask ")
        sql = source.values[1] if source else None
        return Rule("mask", f"mask on {column}", shown, sql if describer else None)
    fields = [f.strip() for f in rest.removeprefix("p").lstrip(", ").split(",")]
    resource = fields[1] if len(fields) > 1 else "?"
    if fields and fields[-1].lower() == "deny":
        target = resource if describer else "a column"
        return Rule("deny", f"deny on {target}", shown)
    return Rule("grant", f"grant on {resource}", shown)


def _without_paths(sql: str, reads: tuple[TableRead, ...]) -> str:
    """The SQL that runs with each table's location written as <db.table>."""
    for r in sorted(reads, key=lambda r: -len(r.table.location)):
        sql = sql.replace(r.table.location.rstrip("/") + "/", f"<{r.table.full_name}>/")
    return sql
