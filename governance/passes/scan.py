"""Replace each catalog table reference with the relation its user may read (wrap at the scan).

The relation SQL (file lists and all) is spliced in after generation, behind a per-query random
placeholder, so it is neither re-parsed nor reachable from the user's text.
"""

from __future__ import annotations

import secrets

from sqlglot import exp

from catalog.skipping import prune
from governance.context import QueryContext, TableRead
from governance.passes import metadata
from governance.passes.bind import bound
from governance.passes.guard import guarded
from governance.passes.metadata import META_INFO
from governance.passes.resolve import META_TABLE

META_RELATIONS = "lake_relations"

_OPS = {exp.EQ: "=", exp.NEQ: "!=", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}


def _literal(node: exp.Expression) -> tuple[bool, object]:
    if isinstance(node, exp.Cast):
        node = node.this
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        ok, v = _literal(node.this)
        return ok, -v if ok else None  # type: ignore[operator]
    if isinstance(node, exp.Literal):
        if node.is_string:
            return True, node.this
        try:
            return True, int(node.this)
        except ValueError:
            try:
                return True, float(node.this)
            except ValueError:
                return False, None
    if isinstance(node, exp.Boolean):
        return True, node.this
    return False, None


def _conjuncts(where: exp.Expression | None) -> list[exp.Expression]:
    if where is None:
        return []
    return list(where.this.flatten()) if isinstance(where.this, exp.And) else [where.this]


def _predicates(
    node: exp.Table, alias: str, columns: dict[str, str]
) -> list[tuple[str, str, object]]:
    """Constant predicates on this table's columns from the WHERE of the SELECT scanning it.

    `columns` maps each name the query can use for a column (lower-case) to the column."""
    select = node.parent.parent if isinstance(node.parent, (exp.From, exp.Join)) else None
    if not isinstance(select, exp.Select):
        return []
    joins = select.args.get("joins") or []
    if any(
        j.side or (j.kind or "").upper() in ("ANTI", "SEMI", "ASOF", "POSITIONAL") for j in joins
    ):
        return []
    single = not joins

    def mine(col: exp.Expression) -> str | None:
        if not isinstance(col, exp.Column) or col.name.lower() not in columns:
            return None
        name = columns[col.name.lower()]
        if col.args.get("db"):
            same = col.db.lower() == node.db.lower() and col.table.lower() == node.name.lower()
            return name if same and alias.lower() == node.name.lower() else None
        if col.table:
            return name if col.table.lower() == alias.lower() and not col.args.get("db") else None
        return name if single else None

    out: list[tuple[str, str, object]] = []
    for c in _conjuncts(select.args.get("where")):
        if type(c) in _OPS:
            op = _OPS[type(c)]
            for a, b, o in ((c.this, c.expression, op), (c.expression, c.this, _FLIP[op])):
                name = mine(a)
                ok, v = _literal(b)
                if name and ok:
                    out.append((name, o, v))
        elif isinstance(c, exp.In) and mine(c.this) and not c.args.get("query"):
            vals = [_literal(e) for e in c.expressions]
            if vals and all(ok for ok, _ in vals):
                out.append((mine(c.this), "in", [v for _, v in vals]))  # type: ignore[arg-type]
        elif isinstance(c, exp.Between) and mine(c.this):
            (ok1, lo), (ok2, hi) = _literal(c.args["low"]), _literal(c.args["high"])
            if ok1 and ok2:
                out += [(mine(c.this), ">=", lo), (mine(c.this), "<=", hi)]  # type: ignore[list-item]
        elif isinstance(c, exp.Is) and isinstance(c.expression, exp.Null) and mine(c.this):
            out.append((mine(c.this), "isnull", None))  # type: ignore[arg-type]
        elif (
            isinstance(c, exp.Not)
            and isinstance(c.this, exp.Is)
            and isinstance(c.this.expression, exp.Null)
            and mine(c.this.this)
        ):
            out.append((mine(c.this.this), "notnull", None))  # type: ignore[arg-type]
    return out


def _column_names(node: exp.Table, columns: tuple[str, ...]) -> dict[str, str]:
    """Each name the query can use for a column of this table (lower-case) -> the column: an
    alias column list (`AS o(a, b)`) renames the first columns in order."""
    renamed = node.alias_column_names
    return {(renamed[i] if i < len(renamed) else c).lower(): c for i, c in enumerate(columns)}


def _alias(node: exp.Table, alias: str) -> exp.TableAlias:
    """The table's alias for its relation, with any column list the query gave it."""
    columns = [exp.to_identifier(c, quoted=True) for c in node.alias_column_names]
    return exp.TableAlias(this=exp.to_identifier(alias, quoted=True), columns=columns or None)


def scan(expression: exp.Expression, ctx: QueryContext) -> exp.Expression:
    """Swap every resolved catalog table for a placeholder bound to its governed relation SQL."""
    nonce = secrets.token_hex(8)
    relations: dict[str, str] = expression.meta.setdefault(META_RELATIONS, {})
    tables = [t for t in expression.find_all(exp.Table) if META_TABLE in t.meta]
    qualified = {(t.db.lower(), t.name.lower()) for t in tables}
    if ctx.pinned is None:
        ctx.pinned = ctx.pin([t.meta[META_TABLE] for t in tables])
    for i, node in enumerate(tables):
        info = node.meta[META_TABLE]
        snapshot, view = bound(node, ctx)
        alias = node.alias or node.name
        names = _column_names(node, view.columns)
        preds = [p for p in _predicates(node, alias, names) if p[0] in view.prunable]
        keep = (
            prune(snapshot.files, snapshot.schema, snapshot.partition_columns, preds)
            if preds
            else None
        )
        scanned = snapshot.files.num_rows if keep is None else int(keep.true_count)
        ctx.reads.append(
            TableRead(
                info,
                snapshot.version,
                snapshot.files.num_rows,
                scanned,
                view.rules,
                view.row_cond is not None,
                view=view,
                stored=tuple(snapshot.schema.names),
            )
        )
        placeholder = f"__lw_{nonce}_{i}"
        relations[placeholder] = view.sql(snapshot.relation_sql(keep), guarded(node, view))
        node.replace(
            exp.Table(this=exp.to_identifier(placeholder, quoted=True), alias=_alias(node, alias))
        )
    for j, node in enumerate([t for t in expression.find_all(exp.Table) if META_INFO in t.meta]):
        placeholder = f"__lw_{nonce}_m{j}"
        relations[placeholder] = metadata.relation_sql(node.meta[META_INFO], ctx)
        node.replace(
            exp.Table(
                this=exp.to_identifier(placeholder, quoted=True),
                alias=_alias(node, node.alias or node.name),
            )
        )
    # db.table.column references now name the alias only.
    for col in expression.find_all(exp.Column):
        if col.args.get("db") and (col.db.lower(), col.table.lower()) in qualified:
            col.set("db", None)
            col.set("catalog", None)
    return expression


def emit(expression: exp.Expression) -> str:
    """Generate DuckDB SQL and splice the relations in for their placeholders."""
    sql = expression.sql(dialect="duckdb")
    for placeholder, rel in expression.meta.get(META_RELATIONS, {}).items():
        sql = sql.replace(f'"{placeholder}"', f"({rel})")
    return sql
