"""Static checks of a policy folder: every syntax error, semantic error and lint warning at once.

`check_folder` never stops at the first problem: a policy author fixes a whole file per round.
Checks that need the catalog (does a table exist, which columns does it have) run only when a
TableLookup is given; without one, only what the policy text alone can tell is checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import casbin
import sqlglot
from casbin.model import Model
from sqlglot import exp
from sqlglot.errors import SqlglotError

from catalog.errors import PolicyError
from governance.policy.adapter import LinesAdapter
from governance.policy.engine import (
    LoadedPolicy,
    PolicyText,
    TableLookup,
    load_text,
    model_arity,
    parse_columns,
)
from governance.policy.lines import ARITY, PolicyLine, parse_text_all
from governance.policy.resources import ACTIONS, location_covers
from governance.policy.sqltext import PolicySQLError, is_true, normalize

ERROR = "error"
WARNING = "warning"

Databases = Callable[[], set[str]]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TAG = re.compile(r"tag:([^=\s]+)=(\S(?:.*\S)?)\Z")
_QUEUE = re.compile(r"queue:(\*|[A-Za-z_][A-Za-z0-9_-]*)\Z")
_FALSE_WORDS = frozenset({"false", "1=0"})
_RESOURCE_FORMS = (
    "*, db, db.table or db.table.column (letters, digits and underscores; * for any segment), "
    "tag:KEY=VALUE, queue:NAME, location:PREFIX or policy"
)
# The actions each kind of non-data resource takes (contract section 3, rules 11-14).
_KIND_ACTIONS = {
    "queue": ("submit", "describe", "alter"),
    "location": ("select",),
    "policy": ("describe", "alter"),
}


@dataclass(frozen=True)
class Problem:
    """One finding about a policy folder, with the file and line it is about."""

    severity: str  # ERROR or WARNING
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.severity}: {self.message}"


# folder ----------------------------------------------------------------------------------------
def check_folder(
    folder: Path, tables: TableLookup | None, databases: Databases | None = None
) -> list[Problem]:
    """Every problem of a policy folder: its files, the syntax of policy.csv, then check_lines.

    `tables` answers "db.table" -> (columns, catalog tags) or None when the table does not exist;
    pass None when no catalog is at hand, and catalog checks are skipped. `databases` (optional)
    lists the catalog's databases, so that rules on a missing database can be reported.
    """
    folder = Path(folder)
    csv = folder / "policy.csv"
    if not folder.is_dir():
        return [Problem(ERROR, str(folder), None, f"no such folder: {folder}")]
    arity, problems = _check_model(folder)
    if not csv.is_file():
        msg = (
            f"no policy.csv in {folder}; a policy folder holds policy.csv and optionally model.conf"
        )
        return [*problems, Problem(ERROR, str(csv), None, msg)]
    text, read_problems = _read_policy(csv)
    problems += read_problems
    if text is None:
        return problems
    lines, syntax = parse_text_all(text, str(csv), arity)
    problems += [_from_policy_error(e) for e in syntax]
    problems += check_lines(lines, tables, databases)
    return _sorted(problems)


def _read_policy(csv: Path) -> tuple[str | None, list[Problem]]:
    try:
        text = csv.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return None, [Problem(ERROR, str(csv), None, f"cannot read policy.csv: {e}")]
    if text.startswith("\ufeff"):
        # The engine reads plain UTF-8, so the mark becomes part of the first line's type.
        msg = "the file starts with a byte-order mark (BOM); save it as UTF-8 without BOM"
        return text[1:], [Problem(ERROR, str(csv), 1, msg)]
    return text, []


def _check_model(folder: Path) -> tuple[dict[str, int], list[Problem]]:
    """The line arities to parse policy.csv with, and the problems of model.conf if present."""
    path = folder / "model.conf"
    if not path.is_file():
        return dict(ARITY), []
    try:
        text = path.read_text(encoding="utf-8")
        arity = model_arity(text, str(path))
    except (OSError, UnicodeDecodeError) as e:
        return dict(ARITY), [Problem(ERROR, str(path), None, f"cannot read model.conf: {e}")]
    except PolicyError as e:
        return dict(ARITY), [_from_policy_error(e)]
    problems = [
        Problem(
            ERROR,
            str(path),
            None,
            f"the model defines {ptype} with {arity[ptype]} field(s); Lakeward's {ptype} lines "
            f"have {n}: define {ptype} as in the default model",
        )
        for ptype, n in ARITY.items()
        if arity[ptype] != n
    ]
    trial = _try_model(text)
    if trial:
        problems.append(Problem(ERROR, str(path), None, f"bad model: {trial}"))
    # Lines are always read with Lakeward's arities: the engine indexes their fields by position.
    return {**arity, **ARITY}, problems


def _try_model(text: str) -> str | None:
    """Ask the model one question, as the engine will; the reason it fails, or None."""
    try:
        model = Model()
        model.load_model_from_text(text)
        enforcer = casbin.Enforcer(model, LinesAdapter([]))
        for name in ("subjectMatch", "resourceMatch", "actionMatch"):
            enforcer.add_function(name, lambda r, p: False)
        enforcer.enforce_ex("someone", "db", "select")
    except Exception as e:  # noqa: BLE001 - casbin raises anything from evaluating the model
        return f"the matcher or effect cannot be evaluated ({type(e).__name__}: {e})"
    return None


def _from_policy_error(e: PolicyError) -> Problem:
    # PolicyError's text starts with "file:line: "; Problem keeps the place separately.
    text = str(e)
    for prefix in (f"{e.file}:{e.line}: ", f"{e.file}: "):
        if e.file and text.startswith(prefix):
            text = text[len(prefix) :]
            break
    return Problem(ERROR, e.file or "", e.line, text)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file, p.line or 0))


# lines -----------------------------------------------------------------------------------------
def check_lines(
    lines: list[PolicyLine], tables: TableLookup | None, databases: Databases | None = None
) -> list[Problem]:
    """Semantic errors and lint warnings of parsed policy lines (see check_folder for the args)."""
    checker = _Checker(_Catalog(tables, databases))
    for line in lines:
        checker.check(line)
    checker.cross_checks(lines)
    return _sorted(checker.problems)


class _Catalog:
    """What the catalog knows; every answer is "unknown" when there is no catalog."""

    def __init__(self, tables: TableLookup | None, databases: Databases | None):
        self._tables = tables
        self._databases = {d.lower() for d in databases()} if databases else None
        self._cache: dict[str, list[str] | None] = {}

    def columns(self, table: str) -> list[str] | None:
        """The columns of an existing "db.table", else None (missing, wildcard or no catalog)."""
        table = table.lower()
        if self._tables is None or "*" in table:
            return None
        if table not in self._cache:
            found = self._tables(table)
            self._cache[table] = list(found[0]) if found is not None else None
        return self._cache[table]

    def missing(self, parts: list[str]) -> str | None:
        """The database, table or column a name (wildcards allowed) names that does not exist."""
        if self._tables is None:
            return None
        db = parts[0].lower()
        if db != "*" and self._databases is not None and db not in self._databases:
            return f"database {db!r}"
        if len(parts) < 2 or "*" in parts[:2]:
            return None
        table = f"{db}.{parts[1].lower()}"
        columns = self.columns(table)
        if columns is None:
            return f"table {table!r}"
        if len(parts) == 3 and parts[2] != "*" and parts[2].lower() not in _lower(columns):
            return f"column {parts[2]!r} of {table}"
        return None


@dataclass(frozen=True)
class _Grant:
    """A well-formed p line, for the shadowing check."""

    line: PolicyLine
    subject: str
    resource: str
    action: str
    effect: str


class _Checker:
    def __init__(self, catalog: _Catalog):
        self.catalog = catalog
        self.problems: list[Problem] = []
        self.grants: list[_Grant] = []
        self.masks: list[tuple[PolicyLine, list[str]]] = []

    def error(self, line: PolicyLine, message: str) -> None:
        self.problems.append(Problem(ERROR, line.file, line.line, message))

    def warn(self, line: PolicyLine, message: str) -> None:
        self.problems.append(Problem(WARNING, line.file, line.line, message))

    def check(self, line: PolicyLine) -> None:
        handler = getattr(self, f"_check_{line.ptype}", None)
        if handler is not None:  # line types a custom model adds mean nothing to Lakeward
            handler(line)

    # per line type -----------------------------------------------------------------------------
    def _check_g(self, line: PolicyLine) -> None:
        member, role = line.values
        if member == role:
            self.warn(line, f"{member!r} is made a member of itself; remove the line")

    def _check_g2(self, line: PolicyLine) -> None:
        resource, tag = line.values
        parts = _segments(resource, 3, wildcards=False)
        if parts is None:
            self.error(
                line,
                f"a tag goes on a database, table or column (db, db.table or db.table.column, "
                f"no wildcards), not on {resource!r}",
            )
        elif (missing := self.catalog.missing(parts)) is not None:
            self.warn(line, f"tag on {missing}, which does not exist; fix the name or remove it")
        if not _TAG.match(tag):
            self.error(line, f"the second field of a g2 line is tag:KEY=VALUE, not {tag!r}")

    def _check_p(self, line: PolicyLine) -> None:
        subject, resource, action, effect = line.values
        kind = _resource_kind(resource)
        ok = kind is not None
        if kind is None:
            self.error(line, f"malformed resource {resource!r}; write {_RESOURCE_FORMS}")
        if action != "*" and action.lower() not in ACTIONS:
            ok = False
            self.error(
                line, f"unknown action {action!r}; use one of {', '.join(sorted(ACTIONS))} or *"
            )
        if effect not in ("allow", "deny"):
            ok = False
            hint = (
                f" (in lower case: {effect.lower()})" if effect.lower() in ("allow", "deny") else ""
            )
            self.error(line, f"effect {effect!r} must be allow or deny{hint}")
        if not ok:
            return
        self._check_p_target(line, kind, resource, action.lower())
        self.grants.append(_Grant(line, subject.lower(), resource.lower(), action.lower(), effect))

    def _check_p_target(self, line: PolicyLine, kind: str, resource: str, action: str) -> None:
        if kind in _KIND_ACTIONS:
            takes = _KIND_ACTIONS[kind]
            if action in ("select", "unmask") and action not in takes:
                self.warn(
                    line,
                    f"{action} on {resource!r} never applies: a {kind} takes {', '.join(takes)}",
                )
            elif action not in (*takes, "*"):
                self.error(
                    line,
                    f"{resource!r} is a {kind}; it takes {', '.join(takes)} (or *), not {action!r}",
                )
            return
        if action == "submit":
            self.error(
                line,
                f"submit applies to queues only; write the resource as queue:NAME or queue:*, "
                f"not {resource!r}",
            )
            return
        if kind == "name":
            missing = self.catalog.missing(resource.split("."))
            if missing is not None:
                self.warn(line, f"rule on {missing}, which does not exist: it never applies")

    def _check_p2(self, line: PolicyLine) -> None:
        _, table, name, cond, cols = line.values
        parts = _segments(table, 2, wildcards=True, at_least=2)
        columns = None
        if parts is None:
            self.error(line, f"a filter is on db.table (* allowed per segment), not on {table!r}")
        elif (missing := self.catalog.missing(parts)) is not None:
            self.warn(line, f"filter {name!r} on {missing}, which does not exist: it never applies")
        else:
            columns = self.catalog.columns(table)
        if not is_true(cond):
            self._check_sql(line, cond, columns, f"row filter of {name!r}", table)
        if cond.strip().lower().replace(" ", "") in _FALSE_WORDS:
            self.warn(line, f"filter {name!r} has condition {cond!r}, so it never shows a row")
        self._check_columns(line, cols, columns, name, table)

    def _check_p3(self, line: PolicyLine) -> None:
        resource, mask = line.values
        parts = _segments(resource, 3, wildcards=True, at_least=3)
        columns = None
        if parts is None:
            self.error(
                line, f"a mask is on db.table.column (* allowed per segment), not on {resource!r}"
            )
        else:
            columns = self.catalog.columns(".".join(parts[:2]))
            self._check_mask_target(line, parts, columns)
            self.masks.append((line, [p.lower() for p in parts]))
        where = ".".join(parts[:2]) if parts else resource
        self._check_sql(line, mask, columns, "mask", where)

    def _check_mask_target(
        self, line: PolicyLine, parts: list[str], columns: list[str] | None
    ) -> None:
        table = ".".join(parts[:2])
        if columns is None:
            missing = self.catalog.missing(parts[:2])
            if missing is not None:
                self.warn(line, f"mask on {missing}, which does not exist: it never applies")
        elif parts[2] != "*" and parts[2].lower() not in _lower(columns):
            self.error(
                line,
                f"mask on column {parts[2]!r}, which {table} does not have; its columns are: "
                f"{', '.join(columns)}",
            )

    # SQL and columns ---------------------------------------------------------------------------
    def _check_sql(
        self, line: PolicyLine, sql: str, columns: list[str] | None, what: str, table: str
    ) -> None:
        try:
            normalize(sql, columns)
        except PolicySQLError as e:
            self.error(line, f"bad {what}: {e}{_columns_hint(sql, columns, table)}")
            return
        kind = _row_by_row_violation(sql)
        if kind:
            self.error(
                line,
                f"bad {what}: {sql!r} uses {kind}; it is computed for each row on its own, "
                "so use plain row expressions",
            )

    def _check_columns(
        self, line: PolicyLine, spec: str, columns: list[str] | None, name: str, table: str
    ) -> None:
        # Without the table, check the shape only: the names the spec mentions count as known.
        known = (
            columns if columns is not None else [w.lstrip("-") for w in spec.split() if w != "*"]
        )
        try:
            chosen = parse_columns(spec, known)
        except ValueError as e:
            hint = f"; {table} has columns: {', '.join(columns)}" if columns is not None else ""
            self.error(
                line,
                f"bad COLUMNS {spec!r} of filter {name!r}: {e}; write *, '* -a -b' or 'a b'{hint}",
            )
            return
        if columns is not None and not chosen:
            self.warn(line, f"filter {name!r} excludes every column of {table}: it shows nothing")

    # across lines ------------------------------------------------------------------------------
    def cross_checks(self, lines: list[PolicyLine]) -> None:
        duplicates = self._duplicates(lines)
        self._role_cycles([x for x in lines if x.ptype == "g"])
        self._overlapping_masks(duplicates)
        self._shadowing_denies(duplicates)

    def _duplicates(self, lines: list[PolicyLine]) -> set[PolicyLine]:
        first: dict[tuple, PolicyLine] = {}
        repeated: set[PolicyLine] = set()
        for line in lines:
            key = (line.ptype, line.values)
            if key in first:
                repeated.add(line)
                self.warn(line, f"duplicate of line {first[key].line}; remove one")
            else:
                first[key] = line
        return repeated

    def _role_cycles(self, g_lines: list[PolicyLine]) -> None:
        # Casbin compares role names exactly, so the graph does too.
        edges: dict[str, set[str]] = {}
        for line in g_lines:
            member, role = line.values
            if member != role:
                edges.setdefault(member, set()).add(role)
        for component in _cycles(edges):
            in_cycle = [x for x in g_lines if x.values[0] in component and x.values[1] in component]
            last = max(in_cycle, key=lambda x: x.line)
            self.warn(
                last,
                f"role cycle: {', '.join(sorted(component))} hold each other (lines "
                f"{', '.join(str(x.line) for x in sorted(in_cycle, key=lambda x: x.line))}); "
                "every member holds every role of the cycle, break it",
            )

    def _overlapping_masks(self, duplicates: set[PolicyLine]) -> None:
        seen: list[tuple[PolicyLine, list[str]]] = []
        for line, parts in self.masks:
            if line in duplicates:
                continue
            earlier = next((e for e in seen if _segments_cover(e[1], parts)), None)
            if earlier is None:
                seen.append((line, parts))
            elif earlier[1] == parts:
                self.warn(
                    line,
                    f"second mask on {line.values[0]!r}: the mask at line {earlier[0].line} "
                    "masks it already and wins; remove one",
                )
            else:
                self.warn(
                    line,
                    f"the mask at line {earlier[0].line} ({earlier[0].values[0]!r}) already covers "
                    f"{line.values[0]!r} and wins, so this mask never applies; remove one",
                )

    def _shadowing_denies(self, duplicates: set[PolicyLine]) -> None:
        grants = [g for g in self.grants if g.line not in duplicates]
        denies = [g for g in grants if g.effect == "deny"]
        allows_of: dict[str, list[_Grant]] = {}
        for g in grants:
            if g.effect == "allow":
                allows_of.setdefault(g.subject, []).append(g)
        for subject, allows in allows_of.items():
            mine = [d for d in denies if d.subject in (subject, "*")]
            covering = [[d for d in mine if _deny_covers(d, a)] for a in allows]
            if not all(covering):
                continue
            alone = [d for d in mine if all(d in c for c in covering)]
            culprit = alone[0] if alone else max({d for c in covering for d in c}, key=_at)
            lines = ", ".join(str(a.line.line) for a in allows)
            together = "" if alone else f" (with the other denies of {subject!r} or *)"
            self.warn(
                culprit.line,
                f"this deny{together} covers every allow of {subject!r} (line(s) {lines}), so "
                "they never apply; narrow the deny or remove the allows",
            )


# helpers ---------------------------------------------------------------------------------------
def _lower(names: Iterable[str]) -> set[str]:
    return {n.lower() for n in names}


def _at(grant: _Grant) -> tuple[str, int]:
    return grant.line.file, grant.line.line


def _segments(name: str, at_most: int, *, wildcards: bool, at_least: int = 1) -> list[str] | None:
    """The dot-separated segments of a db/table/column name, or None if it is not one."""
    parts = name.split(".")
    if not at_least <= len(parts) <= at_most:
        return None
    if all(_IDENT.match(p) or (wildcards and p == "*") for p in parts):
        return parts
    return None


def _resource_kind(resource: str) -> str | None:
    """'all', 'queue', 'tag' or 'name' for a well-formed p RESOURCE, else None."""
    if resource == "*":
        return "all"
    if resource.startswith("queue:"):
        return "queue" if _QUEUE.match(resource) else None
    if resource.startswith("location:"):
        return "location" if len(resource) > len("location:") else None
    if resource.lower() == "policy":
        return "policy"
    if resource.startswith("tag:"):
        return "tag" if _TAG.match(resource) else None
    return "name" if _segments(resource, 3, wildcards=True) is not None else None


def _segments_cover(pattern: list[str], name: list[str]) -> bool:
    """Does a name pattern cover every resource another name pattern covers?"""
    if len(pattern) > len(name):
        return False
    return all(p == "*" or p == n for p, n in zip(pattern, name, strict=False))


def _resource_covers(pattern: str, resource: str) -> bool:
    """Does a p RESOURCE cover everything another p RESOURCE can match (both lower-case)?"""
    if pattern == resource or pattern == "*":
        return True
    kind, other = _resource_kind(pattern), _resource_kind(resource)
    if kind in _KIND_ACTIONS or other in _KIND_ACTIONS:
        if kind != other:
            return False
        if kind == "queue":
            return pattern == "queue:*"
        if kind == "location":
            return location_covers(pattern[len("location:") :], resource[len("location:") :])
        return True
    if pattern.startswith("tag:") or resource.startswith("tag:") or resource == "*":
        return False
    return _segments_cover(pattern.split("."), resource.split("."))


def _deny_covers(deny: _Grant, allow: _Grant) -> bool:
    action_ok = deny.action == "*" or deny.action == allow.action
    return action_ok and _resource_covers(deny.resource, allow.resource)


def _columns_hint(sql: str, columns: list[str] | None, table: str) -> str:
    """The table's columns, when the expression names a column the table lacks."""
    if columns is None:
        return ""
    try:
        used = normalize(sql)[1]
    except PolicySQLError:
        return ""
    if _lower(used) <= _lower(columns):
        return ""
    return f"; {table} has columns: {', '.join(columns)}"


def _row_by_row_violation(sql: str) -> str | None:
    """'an aggregate function' or 'a window function' if the expression uses one."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except SqlglotError:
        return None  # normalize has already accepted it; nothing more to say
    if tree.find(exp.Window):
        return "a window function"
    if tree.find(exp.AggFunc):
        return "an aggregate function"
    return None


def _cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.add(top)
                    if top == node:
                        break
                if len(component) > 1:
                    out.append(component)
    return out


def load_checked(text: PolicyText, tables: TableLookup | None) -> LoadedPolicy:
    """Parse and check a policy text; PolicyError names the first error (and how many more).

    A policy with errors is never enforced: the one in force stays until it is fixed.
    """
    loaded = load_text(text)
    errors = [p for p in check_lines(list(loaded.lines), tables) if p.severity == ERROR]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more; run `lake policy check`)" if len(errors) > 1 else ""
        raise PolicyError(first.message + more, first.file, first.line)
    return loaded
