"""Guard every value a predicate could reach before a table's row filter.

DuckDB moves predicates down: through projections, joins, aggregates and set operations, into the
scan itself, where they run beside (or before) the row filter of a governed relation. A user
expression evaluated on a hidden row could then reveal it (an error, a failing cast). So in a
relation with a row filter each column the user sees is *guarded*: it reads `CASE WHEN <row
filter> THEN value END`, and whatever DuckDB evaluates early sees NULL, never a hidden value.

A guard costs DuckDB its statistics and its scan pushdown on that column (a join on a guarded
key plans badly), so a column goes unguarded only when the whole query proves that nothing but a
harmless comparison can take its value into a predicate. The proof follows the value by name,
over-approximating every route: a column reference of any scope (qualified or not, a struct
field's column, a whole-row reference), through every projection that passes it on (subquery
aliases, CTEs, set-operation arms, alias column lists, lateral aliases, scalar and IN
subqueries). A name is *unsafe*, and every column that reaches it guarded, when the value under it
reaches a WHERE, ON, HAVING or QUALIFY other than as an operand of a comparison that cannot fail
(`governance/passes/harmless.py`: a column against a literal of its kind, two columns of
comparable types, IS NULL, LIKE on strings). Values inside an aggregate or a window call are
evaluated above every filter and are never unsafe; a value computed by an expression is unsafe
as soon as its name reaches any predicate. What the proof cannot follow (a
star renamed by position, COLUMNS(), positional references, PIVOT, NATURAL joins, the whole row of
a derived table) guards every column of every row-filtered table.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow as pa
from sqlglot import exp

from governance import duckdb_builtins_generated as builtins
from governance.access import View
from governance.passes.bind import META_SNAPSHOT, META_VIEW
from governance.passes.harmless import Form, const_ok, harmless, pair_ok
from governance.passes.metadata import COLUMNS as INFO_COLUMNS
from governance.passes.metadata import META_INFO
from governance.passes.resolve import META_TABLE

META_GUARD = "lake_guard"

_FILTERS = frozenset({"where", "having", "qualify"})
_NEUTRAL = frozenset({"group", "order", "distinct", "windows", "limit", "offset", "sample"})
_JOIN_FILTERS = frozenset({"on", "match_condition"})
_TABLE_FUNCTIONS = ("unnest", "range", "generate_series")


@dataclass
class _Flows:
    """Where the values under each name go."""

    filters: list[tuple[str, Form]] = field(default_factory=list)
    exports: list[tuple[str, str, bool]] = field(default_factory=list)  # (from, to, unchanged)
    opaque: set[str] = field(default_factory=set)  # names of values from no known column
    everything: bool = False


def guard(expression: exp.Expression, _ctx: object = None) -> exp.Expression:
    """Decide, for every catalog table with a row filter, which of its columns are guarded."""
    tables = [t for t in expression.find_all(exp.Table) if META_VIEW in t.meta]
    filtered = [t for t in tables if t.meta[META_VIEW].row_cond is not None]
    if not filtered:
        return expression
    unsafe = _unsafe_names(expression, tables)
    for node in filtered:
        view: View = node.meta[META_VIEW]
        names = _query_names(node, view)
        node.meta[META_GUARD] = frozenset(
            c.lower() for c in view.columns if unsafe is None or names[c] & unsafe
        )
    return expression


def guarded(node: exp.Table, view: View) -> frozenset[str]:
    """The columns (lower-case) of this reference's view to guard; all of them unless the guard
    pass proved otherwise."""
    if view.row_cond is None:
        return frozenset()
    hit = node.meta.get(META_GUARD)
    return hit if hit is not None else frozenset(c.lower() for c in view.columns)


# --- names and types ------------------------------------------------------------------------------


def _query_names(node: exp.Table, view: View) -> dict[str, set[str]]:
    """Each view column -> the names (lower-case) the query can call it: an alias column list
    renames the first columns."""
    renamed = [c.lower() for c in node.alias_column_names]
    return {
        c: {c.lower(), renamed[i]} if i < len(renamed) else {c.lower()}
        for i, c in enumerate(view.columns)
    }


def _column_types(node: exp.Table, view: View) -> dict[str, pa.DataType | None]:
    """Type of each view column as stored; None where the view computes it (a mask)."""
    schema = node.meta[META_SNAPSHOT].schema
    return {
        c: None if c in view.masks or c not in schema.names else schema.field(c).type
        for c in view.columns
    }


def _unsafe_names(expression: exp.Expression, tables: list[exp.Table]) -> set[str] | None:
    """Names whose values may reach a predicate that could fail; None: every name."""
    types: dict[str, set] = defaultdict(set)
    aliases: dict[str, list[str]] = defaultdict(list)  # catalog table alias -> its names
    for node in tables:
        view = node.meta[META_VIEW]
        kinds = _column_types(node, view)
        for c, names in _query_names(node, view).items():
            for n in names:
                types[n].add(kinds[c])
                aliases[(node.alias or node.name).lower()].append(n)
    flows = _Flows()
    relations = _relations(expression, flows)
    _Walker(flows, relations, set(aliases), dict(aliases), set(types)).walk(expression)
    if flows.everything:
        return None
    return _solve(flows, types)


def _relations(expression: exp.Expression, flows: _Flows) -> set[str]:
    """Names of every relation (lower-case); records the names of values no column gives."""
    names: set[str] = set()
    for node in expression.find_all(exp.Table, exp.TableAlias, exp.CTE):
        if isinstance(node, exp.Table):
            names.add(node.name.lower())
            if node.alias:
                names.add(node.alias.lower())
            renamed = [c.lower() for c in node.alias_column_names]
            if META_INFO in node.meta:
                flows.opaque.update(INFO_COLUMNS.get(node.meta[META_INFO], ()))
                flows.opaque.update(renamed)
            elif isinstance(node.this, exp.Func):
                flows.opaque.update(renamed)
                flows.opaque.update(_TABLE_FUNCTIONS)
            elif META_TABLE not in node.meta and renamed:
                flows.everything = True  # a CTE's columns renamed by position
        elif isinstance(node, exp.TableAlias):
            if node.name:
                names.add(node.name.lower())
            if not isinstance(node.parent, (exp.Subquery, exp.Table, exp.CTE, exp.Lateral)):
                # VALUES and UNNEST outputs: no column of ours behind them.
                flows.opaque.update(c.name.lower() for c in node.columns)
                flows.opaque.update(_TABLE_FUNCTIONS)
        else:
            names.add(node.alias_or_name.lower())
    return names


def _solve(flows: _Flows, base: dict[str, set]) -> set[str]:
    """Fixpoint: which names carry values that may reach a predicate that could fail."""
    types: dict[str, set] = defaultdict(set, {k: set(v) for k, v in base.items()})
    for n in flows.opaque:
        types[n].add(None)
    for _, dst, same in flows.exports:
        if not same:
            types[dst].add(None)
    changed = True
    while changed:
        changed = False
        for src, dst, same in flows.exports:
            if same and not types[src] <= types[dst]:
                types[dst] |= types[src]
                changed = True
    for name, form in flows.filters:
        if not types[name]:
            types[name].add(None)  # a name no known column stands for
        for atom in form or ():
            if atom[0] == "col" and not types[atom[1]]:
                types[atom[1]].add(None)

    def ok(name: str, form: Form) -> bool:
        if form is None:
            return False
        for atom in form:
            if atom[0] == "null":
                continue
            if atom[0] == "const":
                if not all(const_ok(atom[1], atom[2], t) for t in types[name]):
                    return False
            elif not all(pair_ok(a, b) for a in types[name] for b in types[atom[1]]):
                return False
        return True

    reach = {name for name, _ in flows.filters}
    unsafe = {name for name, form in flows.filters if not ok(name, form)}
    changed = True
    while changed:
        changed = False
        for src, dst, same in flows.exports:
            if dst in reach and src not in reach:
                reach.add(src)
                changed = True
            if src not in unsafe and ((same and dst in unsafe) or (not same and dst in reach)):
                unsafe.add(src)
                changed = True
    return unsafe


# --- following values through the tree ------------------------------------------------------------


def _aggregate(node: exp.Expression) -> bool:
    """An aggregate call: its arguments are evaluated above every filter of its scope."""
    if not isinstance(node, exp.Func):
        return False
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
    elif isinstance(node, exp.AggFunc):
        name = type(node).sql_name().lower()
        if isinstance(node, exp.AnonymousAggFunc):
            name = node.name.lower()
    else:
        return False
    kinds = builtins.FUNCTIONS.get(name, ())
    return bool(kinds) and "scalar" not in kinds and "aggregate" in kinds


def _site(node: exp.Expression) -> tuple[exp.Expression | None, list[exp.Expression], bool]:
    """(scope, path from `node` up to the scope's direct child, sealed inside an aggregate or a
    window call)."""
    path = [node]
    sealed = False
    child, parent = node, node.parent
    while parent is not None:
        if isinstance(parent, (exp.Window, exp.Filter)) or _aggregate(parent):
            sealed = True
        if isinstance(parent, exp.Select):
            return parent, path, sealed
        if isinstance(parent, (exp.SetOperation, exp.Subquery)) and child.arg_key not in (
            "this",
            "expression",
        ):
            return parent, path, sealed
        path.append(parent)
        child, parent = parent, parent.parent
    return None, path, sealed


def _has_star(select: exp.Expression) -> bool:
    return isinstance(select, exp.Select) and any(
        isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
        for e in select.expressions
    )


def _arms(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.SetOperation):
        return _arms(node.this) + _arms(node.expression)
    if isinstance(node, exp.Subquery):
        return _arms(node.this)
    return [node]


def _item_name(item: exp.Expression) -> str | None:
    if isinstance(item, exp.Alias):
        return item.alias.lower()
    if isinstance(item, exp.Column) and not isinstance(item.this, exp.Star):
        return item.name.lower()
    return None


class _Walker:
    def __init__(
        self,
        flows: _Flows,
        relations: set[str],
        tables: set[str],
        table_columns: dict[str, list[str]],
        columns: set[str],
    ):
        self.flows = flows
        self.relations = relations  # every relation name or alias in the query
        self.tables = tables  # aliases of catalog tables
        self.table_columns = table_columns
        self.columns = columns  # every name a catalog column goes by

    def walk(self, root: exp.Expression) -> None:
        for node in root.walk():
            if isinstance(node, (exp.Pivot, exp.Columns, exp.PositionalColumn)):
                self._anything(node)
            elif isinstance(node, exp.Star):
                self._star(node, node)
            elif isinstance(node, exp.Column) and node.arg_key != "except_":
                self._column(node)
            elif isinstance(node, exp.Join):
                if str(node.args.get("method") or "").upper() == "NATURAL":
                    self.flows.everything = True
                for ident in node.args.get("using") or ():
                    name = ident.name.lower()
                    self.flows.filters.append((name, (("col", name),)))

    def _anything(self, node: exp.Expression) -> None:
        """A construct the proof does not follow: guard everything, unless nothing of it can
        reach a predicate."""
        scope, path, sealed = _site(node)
        if not (sealed or (scope is not None and path[-1].arg_key in _NEUTRAL)):
            self.flows.everything = True

    def _star(self, star: exp.Expression, node: exp.Expression) -> None:
        scope, path, sealed = _site(node)
        if sealed or scope is None or path[-1].arg_key in _NEUTRAL:
            return
        if isinstance(scope, exp.Select) and path[-1] is node and path[-1].arg_key == "expressions":
            kind, top, renamed = _consumer(scope)
            in_set = top is not scope
            if kind in ("root", "exists") or (kind == "derived" and not renamed and not in_set):
                return  # names pass on unchanged
        self.flows.everything = True

    def _column(self, col: exp.Column) -> None:
        if isinstance(col.this, exp.Star):
            table = col.table.lower()
            if table and table not in self.relations:
                self._anything(col)  # a struct's fields, by unknown names
            else:
                self._star(col, col)
            return
        name = col.name.lower()
        self.flow(col, name, True)
        for part in (col.args.get("table"), col.args.get("db"), col.args.get("catalog")):
            q = part.name.lower() if part is not None else ""
            if q and (q not in self.relations or q in self.columns):
                self.flow(col, q, False)  # `s.a` may be field a of a struct column s
        if not col.table and name in self.relations:
            if name in self.tables:
                for n in self.table_columns[name]:
                    self.flow(col, n, False)  # the whole row, as a struct
            else:
                self._anything(col)

    def flow(self, node: exp.Expression, name: str, same: bool) -> None:
        """The value under `name` sits at `node` (unchanged if `same`): record where it goes."""
        flows = self.flows
        scope, path, sealed = _site(node)
        if sealed:
            return
        if scope is None:
            flows.filters.append((name, None))
            return
        top = path[-1]
        key = top.arg_key
        if key in _NEUTRAL:
            return
        if key in _FILTERS or (
            key == "joins" and len(path) > 1 and path[-2].arg_key in _JOIN_FILTERS
        ):
            flows.filters.append((name, harmless(node) if same else None))
            return
        if key != "expressions" or not isinstance(scope, exp.Select):
            flows.filters.append((name, None))  # a table function, a lateral view, ...
            return
        alias = next((p for p in path if isinstance(p, exp.Alias)), None)
        item = alias or top
        unchanged = same and (item is node or (isinstance(item, exp.Alias) and item.this is node))
        self._export(scope, top, _item_name(item), name, unchanged)

    def _export(
        self, select: exp.Select, top: exp.Expression, own: str | None, name: str, same: bool
    ) -> None:
        kind, setop, renamed = _consumer(select)
        if kind == "exists":
            return
        if kind == "expr":
            self.flow(_expr_node(setop), name, same and len(select.expressions) == 1)
            return
        if kind == "unknown":
            self.flows.filters.append((name, None))
            return
        index = next(i for i, e in enumerate(select.expressions) if e is top)
        names = [own]
        arms = _arms(setop) if setop is not select else [select]
        if len(arms) > 1 and not _by_name(setop):
            if any(_has_star(a) for a in arms) and kind != "root":
                self.flows.everything = True
                return
            first = arms[0]
            if isinstance(first, exp.Select) and index < len(first.expressions):
                names.append(_item_name(first.expressions[index]))
            else:
                names.append(None)
        if renamed:
            if _has_star(select):
                self.flows.everything = True
                return
            if index < len(renamed):
                names.append(renamed[index])
        for dst in dict.fromkeys(names):
            if dst is None:
                if kind != "root":
                    self.flows.filters.append((name, None))  # passed on under DuckDB's own name
            elif dst != name or not same:
                self.flows.exports.append((name, dst, same))


def _by_name(node: exp.Expression) -> bool:
    return isinstance(node, exp.SetOperation) and bool(node.args.get("by_name"))


def _expr_node(top: exp.Expression) -> exp.Expression:
    """The expression node a subquery sits at in its enclosing query."""
    return top.parent if isinstance(top.parent, exp.Subquery) else top


def _consumer(select: exp.Select) -> tuple[str, exp.Expression, list[str]]:
    """Who reads a SELECT's columns: ("root" | "derived" | "expr" | "exists" | "unknown", the
    outermost set operation it is an arm of (or itself), the alias column names it is renamed
    by)."""
    node: exp.Expression = select
    while True:
        parent = node.parent
        if (
            isinstance(parent, exp.SetOperation)
            and node.arg_key in ("this", "expression")
            or (
                isinstance(parent, exp.Subquery)
                and not parent.alias
                and isinstance(parent.parent, exp.SetOperation)
            )
        ):
            node = parent
        else:
            break
    parent = node.parent
    if parent is None:
        return "root", node, []
    if isinstance(parent, exp.Exists) or (
        isinstance(parent, exp.Subquery) and isinstance(parent.parent, exp.Exists)
    ):
        return "exists", node, []
    if isinstance(parent, exp.Subquery) and node.arg_key == "this":
        holder = parent.parent
        if holder is None:
            return "root", node, []
        if isinstance(holder, (exp.From, exp.Join, exp.Lateral)) and parent.arg_key == "this":
            alias = parent.args.get("alias") or (
                holder.args.get("alias") if isinstance(holder, exp.Lateral) else None
            )
            return "derived", node, [c.name.lower() for c in alias.columns] if alias else []
        return "expr", node, []
    if isinstance(parent, exp.CTE):
        alias = parent.args.get("alias")
        return "derived", node, [c.name.lower() for c in alias.columns] if alias else []
    if isinstance(parent, (exp.Array, exp.In)):
        return "expr", node, []
    return "unknown", node, []
