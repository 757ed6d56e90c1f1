"""Name every result column from the user's own text, before anything is rewritten.

DuckDB names an unaliased projection after the SQL it runs. Once the scan pass has put each
table's governed relation in place, a projection holding a subquery (`SELECT (SELECT max(id) FROM
hr.emp)`, EXISTS, IN, ARRAY, ...) would be named after that relation: denied columns, the policy's
filter and mask SQL, file paths. So every projection whose text a later pass may change (it holds
a table reference, or a `db.table.column` name that scan shortens) gets an explicit alias: its own
text as written, in DuckDB's dialect. This runs for every user, admins included, and in every
SELECT of the query (derived tables, CTEs and set-operation arms pass their names on through `*`).
Projections no pass changes (bare columns, stars, expressions over columns) keep DuckDB's own
names, which then come from the user's text too.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.errors import ErrorLevel

DIALECT = "duckdb"


def _rewritten_later(node: exp.Expression) -> bool:
    """Does a later pass change how this projection renders?"""
    if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
        return False  # a bare column is named after the column, however it is qualified
    for sub in node.walk():
        if isinstance(sub, exp.Table):
            return True
        if isinstance(sub, exp.Column) and sub.args.get("db"):
            return True
    return False


def text_of(node: exp.Expression) -> str:
    """The user's text of one expression, as the result column's name."""
    return node.sql(
        dialect=DIALECT, normalize_functions="lower", unsupported_level=ErrorLevel.IGNORE
    )


def name_columns(expression: exp.Expression) -> exp.Expression:
    """Alias each unaliased projection a later pass would rewrite with its own text (in place)."""
    for select in list(expression.find_all(exp.Select)):
        select.set(
            "expressions",
            [
                p
                if isinstance(p, (exp.Alias, exp.Star)) or not _rewritten_later(p)
                else exp.alias_(p, text_of(p), quoted=True)
                for p in select.expressions
            ],
        )
    return expression
