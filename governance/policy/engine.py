"""The policy engine: one policy (policy.csv and its model) loaded into Casbin, and per-user
decisions from it.

Casbin answers allow/deny questions (`enforce_ex`) with our subject, resource and action
matchers; the view of a table (columns, rows, cells, masks) is built from those answers and the
p2/p3 lines Casbin loaded. Decisions are cached per (user, table, columns). An engine is
immutable: a new policy version is a new engine (see governance.policy.state).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import casbin
from casbin.model import Model

from catalog.errors import AccessDenied, PolicyError
from governance.policy.adapter import LinesAdapter
from governance.policy.enforcer import Enforcer
from governance.policy.lines import PolicyLine, parse_text
from governance.policy.resources import action_matches, effective_tags, pattern_matches
from governance.policy.sqltext import PolicySQLError, is_true, normalize

DEFAULT_MODEL = Path(__file__).with_name("model.conf")

_UNFIT = (
    "{user} may not read {table} at this version: a policy rule on it does not fit its columns "
    "(an administrator can find it with `lake policy check`)"
)

# (database.table) -> (columns in table order, catalog tags by resource) or None if unknown
TableLookup = Callable[[str], "tuple[list[str], dict[str, dict[str, str]]] | None"]


@dataclass(frozen=True)
class Pair:
    """One select grant on a table: a row condition (None = all rows) and the columns it shows."""

    cond: str | None
    columns: frozenset[str]
    rule: str


@dataclass(frozen=True)
class ViewSpec:
    """What one user sees of one table."""

    table: str
    columns: tuple[str, ...]  # visible, in table order
    row_cond: str | None  # None: every row
    cell_cond: Mapping[str, str]  # column -> condition for its cells, where narrower than rows
    masks: Mapping[str, str]  # column -> mask SQL over raw columns
    rules: tuple[str, ...] = field(default=())

    @property
    def prunable(self) -> frozenset[str]:
        """Columns whose raw statistics describe what the user sees (no mask, no cell filter)."""
        return frozenset(c for c in self.columns if c not in self.masks and c not in self.cell_cond)


@dataclass(frozen=True)
class PolicyText:
    """A policy as it is installed in a catalog: the text of policy.csv and of its model.

    `model` is None for the shipped default model. `source` says where it was read from (for
    administrators; never shown to users).
    """

    csv: str
    model: str | None = None
    source: str = ""

    @property
    def model_text(self) -> str:
        return self.model if self.model is not None else DEFAULT_MODEL.read_text()

    @property
    def version(self) -> str:
        """A content hash: the same text is the same version wherever it is installed."""
        return hashlib.sha256((self.model_text + "\0" + self.csv).encode()).hexdigest()[:16]


def read_folder(folder: Path) -> PolicyText:
    """Read a policy folder (policy.csv, optional model.conf); PolicyError if it cannot be read."""
    folder = Path(folder)
    csv = folder / "policy.csv"
    if not csv.is_file():
        raise PolicyError(f"no policy.csv in {folder}", str(csv))
    model_path = folder / "model.conf"
    try:
        model = model_path.read_text(encoding="utf-8") if model_path.is_file() else None
        text = csv.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError(f"cannot read the policy: {e}", str(csv)) from None
    return PolicyText(text, model, str(folder.resolve()))


@dataclass(frozen=True)
class LoadedPolicy:
    text: PolicyText
    lines: tuple[PolicyLine, ...]
    model_text: str
    version: str


CSV_NAME = "policy.csv"  # rules are named policy.csv:LINE wherever the text came from


def load_text(text: PolicyText) -> LoadedPolicy:
    """Parse a policy text; PolicyError names the file and line of the first bad line."""
    model_text = text.model_text
    arity = model_arity(model_text, "model.conf" if text.model is not None else str(DEFAULT_MODEL))
    lines = tuple(parse_text(text.csv, CSV_NAME, arity))
    return LoadedPolicy(text, lines, model_text, text.version)


def model_arity(model_text: str, where: str) -> dict[str, int]:
    m = Model()
    try:
        m.load_model_from_text(model_text)
    except Exception as e:  # noqa: BLE001 - casbin raises plain exceptions
        raise PolicyError(f"bad model: {e}", where) from None
    arity = {}
    for sec in ("p", "g"):
        for key, ast in m.model.get(sec, {}).items():
            arity[key] = len(ast.tokens) if sec == "p" else ast.value.count("_")
    for needed in ("p", "p2", "p3", "g", "g2"):
        if needed not in arity:
            raise PolicyError(f"the model must define {needed}", where)
    return arity


class PolicyEngine:
    """Decisions for one loaded and checked policy (see `governance.policy.check.load_checked`)."""

    def __init__(self, loaded: LoadedPolicy, tables: TableLookup):
        self.tables = tables
        self._lock = threading.RLock()
        self._policy = loaded
        enforcer = Enforcer(self._model(loaded.model_text), LinesAdapter(loaded.lines))
        with self._lock:
            self._policy = loaded
            self._enforcer = enforcer
            self._users: dict[str, frozenset[str]] = {}
            self._user_enforcers: dict[str, casbin.Enforcer] = {}
            self._views: dict[tuple, ViewSpec] = {}
            self._by_subject: dict[str, list[PolicyLine]] = {}
            for line in loaded.lines:
                if line.ptype in ("p", "p2"):
                    self._by_subject.setdefault(line.values[0].lower(), []).append(line)
            self._g2 = [(r, t) for r, t in enforcer.get_named_grouping_policy("g2")]
            self._masks = [line for line in loaded.lines if line.ptype == "p3"]

    @property
    def version(self) -> str:
        return self._policy.version

    @property
    def text(self) -> PolicyText:
        return self._policy.text

    def line(self, where: str) -> PolicyLine | None:
        """The rule written at `where` ("policy.csv:7"), if there is one."""
        return next((ln for ln in self._policy.lines if ln.where == where), None)

    @staticmethod
    def _model(text: str) -> Model:
        m = Model()
        m.load_model_from_text(text)
        return m

    # subjects ----------------------------------------------------------------------------------
    def subjects(self, user: str) -> frozenset[str]:
        """The user, '*', and every role reachable through g lines from either (lower-case)."""
        user = user.lower()
        with self._lock:
            hit = self._users.get(user)
            if hit is not None:
                return hit
            subs = {user.lower(), "*"}
            for who in (user, "*"):
                subs.update(r.lower() for r in self._enforcer.get_implicit_roles_for_user(who))
            out = frozenset(subs)
            self._users[user] = out
            return out

    def _enforcer_for(self, user: str) -> casbin.Enforcer:
        # A small Casbin enforcer holding only this user's rules: with 10,000 lines, Casbin's
        # linear scan per question would otherwise cost tens of milliseconds.
        with self._lock:
            e = self._user_enforcers.get(user)
            if e is not None:
                return e
            subs = self.subjects(user)
            lines = [
                line for s in subs for line in self._by_subject.get(s, ()) if line.ptype == "p"
            ]
            lines.sort(key=lambda x: (x.file, x.line))
            e = Enforcer(self._model(self._policy.model_text), LinesAdapter(lines))
            e.add_function("subjectMatch", lambda r, p: p.lower() in subs)
            e.add_function("actionMatch", action_matches)
            e.add_function("resourceMatch", lambda r, p: pattern_matches(p, r, self._tags_now))
            self._user_enforcers[user] = e
            return e

    def _rule(self, explain: list[str]) -> str:
        for line in self._policy.lines:
            if line.ptype == "p" and list(line.values) == list(explain):
                return f"{line.where} p {', '.join(line.values)}"
        return "p " + ", ".join(explain)

    def _ask(
        self, user: str, resource: str, action: str, tags: dict
    ) -> tuple[bool, str | None, bool]:
        """(allowed, rule, denied) for one question."""
        e = self._enforcer_for(user)
        self._tags_now = tags
        ok, explain = e.enforce_ex(user, resource, action)
        denied = bool(explain) and explain[-1].lower() == "deny"
        return ok, (self._rule(explain) if explain else None), denied

    # decisions ---------------------------------------------------------------------------------
    def allowed(self, user: str, resource: str, action: str) -> bool:
        """May `user` do `action` on `resource` (a database, table, column, queue, location or
        the policy)?"""
        with self._lock:
            tags = self._tags_for(resource)
            return self._ask(user, resource, action, tags)[0]

    def _tags_for(self, table: str) -> dict[str, dict[str, str]]:
        known = self.tables(table) if table.count(".") >= 1 else None
        if known is None:
            return {}
        columns, catalog_tags = known
        base = ".".join(table.split(".")[:2])
        resources = [base.split(".")[0], base] + [f"{base}.{c}" for c in columns]
        g2 = [
            (r, f"tag:{k}={v}") for r, kv in catalog_tags.items() for k, v in kv.items()
        ] + self._g2
        return effective_tags(g2, resources)

    def view(self, user: str, table: str, columns: list[str]) -> ViewSpec:
        """The view of `table` for `user`; AccessDenied if the user has no select grant on it."""
        key = (user, table, tuple(columns))
        with self._lock:
            hit = self._views.get(key)
            if hit is not None:
                return hit
            spec = self._build_view(user, table, columns)
            if len(self._views) > 4096:
                self._views.clear()
            self._views[key] = spec
            return spec

    def _build_view(self, user: str, table: str, columns: list[str]) -> ViewSpec:
        refuse = AccessDenied(f"{user} may not select from {table}")
        tags = self._tags_for(table)
        ok, rule, denied = self._ask(user, table, "select", tags)
        if denied:
            raise refuse
        rules: list[str] = [rule] if ok and rule else []
        pairs: list[Pair] = [Pair(None, frozenset(columns), rule or "")] if ok else []
        removed: set[str] = set()
        for c in columns:
            okc, rc, deniedc = self._ask(user, f"{table}.{c}", "select", tags)
            if deniedc:
                removed.add(c)
                rules.append(rc or "")
            elif okc and not ok:
                pairs.append(Pair(None, frozenset([c]), rc or ""))
                if rc and rc not in rules:
                    rules.append(rc)
        pairs += self._filters(user, table, columns)
        rules += [p.rule for p in pairs if " p2 " in p.rule]
        if not pairs:
            raise refuse
        visible = tuple(
            c for c in columns if c not in removed and any(c in p.columns for p in pairs)
        )
        if not visible:
            raise refuse
        row_cond = (
            None
            if any(p.cond is None for p in pairs)
            else " OR ".join(f"({p.cond})" for p in pairs)
        )
        cell: dict[str, str] = {}
        for c in visible:
            having = [p for p in pairs if c in p.columns]
            if any(p.cond is None for p in having) or len(having) == len(pairs):
                continue  # every row the user sees shows this cell
            cell[c] = " OR ".join(f"({p.cond})" for p in having)
        masks = self._mask_for(user, table, visible, tags, rules)
        return ViewSpec(
            table, visible, row_cond, cell, masks, tuple(dict.fromkeys(r for r in rules if r))
        )

    def _filters(self, user: str, table: str, columns: list[str]) -> list[Pair]:
        subs = self.subjects(user)
        out = []
        for s in subs:
            for line in self._by_subject.get(s, ()):
                if (
                    line.ptype != "p2"
                    or not pattern_matches(line.values[1], table, {})
                    or line.values[1].count(".") != 1
                ):
                    continue
                _, _, name, cond, cols = line.values
                try:
                    cond_sql = None if is_true(cond) else normalize(cond, columns)[0]
                    chosen = parse_columns(cols, columns)
                except (PolicySQLError, ValueError):
                    # Fail closed: a filter that no longer fits the table grants nothing. The
                    # message names neither the rule nor its text: both are the policy's.
                    raise AccessDenied(_UNFIT.format(user=user, table=table)) from None
                out.append(Pair(cond_sql, chosen, f"{line.where} p2 {name}"))
        out.sort(key=lambda p: p.rule)
        return out

    def _mask_for(
        self, user: str, table: str, visible: tuple[str, ...], tags: dict, rules: list[str]
    ) -> dict[str, str]:
        masks: dict[str, str] = {}
        for c in visible:
            res = f"{table}.{c}"
            line = next(
                (
                    m
                    for m in self._masks
                    if pattern_matches(m.values[0], res, tags) and m.values[0].count(".") == 2
                ),
                None,
            )
            if line is None:
                continue
            if self._ask(user, res, "unmask", tags)[0]:
                continue
            known = self.tables(table)
            try:
                masks[c] = normalize(line.values[1], known[0] if known else None)[0]
            except PolicySQLError:
                raise AccessDenied(_UNFIT.format(user=user, table=table)) from None
            rules.append(f"{line.where} p3 mask {c}")
        return masks


def parse_columns(spec: str, columns: list[str]) -> frozenset[str]:
    """COLUMNS of a p2 line: `*`, `* -a -b` or `a b c`; ValueError on a malformed spec."""
    words = spec.split()
    known = {c.lower(): c for c in columns}
    if not words:
        raise ValueError("empty column list")
    if words[0] == "*":
        minus = words[1:]
        if any(not w.startswith("-") or len(w) < 2 for w in minus):
            raise ValueError(f"after '*' only '-column' exclusions may follow: {spec!r}")
        drop = {w[1:].lower() for w in minus}
        unknown = drop - set(known)
        if unknown:
            raise ValueError(f"unknown column(s) {sorted(unknown)}")
        return frozenset(c for c in columns if c.lower() not in drop)
    if any(w.startswith("-") or w == "*" for w in words):
        raise ValueError(f"exclusions need a leading '*': {spec!r}")
    unknown = {w.lower() for w in words} - set(known)
    if unknown:
        raise ValueError(f"unknown column(s) {sorted(unknown)}")
    return frozenset(known[w.lower()] for w in words)
