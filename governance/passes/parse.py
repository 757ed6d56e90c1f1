"""Pass 0: parse one DuckDB statement into a sqlglot tree, or refuse the text.

Comments are dropped from the tree: they never change what a query means, and the SQL that runs is
regenerated from the tree, so user free text must not ride along into it.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from catalog.errors import AccessDenied, InvalidArgument, LakeError, SQLError

DIALECT = "duckdb"

# Statements that only read, but will be answered from the Lakeward catalog later.
NOT_YET_KEYWORDS = frozenset({"DESCRIBE", "DESC", "SHOW", "SUMMARIZE"})

# First words of DuckDB statements that are not queries; used to refuse them with the same error
# whether or not sqlglot can parse the rest (it cannot parse e.g. EXPORT DATABASE, CREATE SECRET).
STATEMENT_KEYWORDS = frozenset(
    {
        "ABORT",
        "ALTER",
        "ANALYZE",
        "ATTACH",
        "BEGIN",
        "CALL",
        "CHECKPOINT",
        "COMMENT",
        "COMMIT",
        "COPY",
        "CREATE",
        "DEALLOCATE",
        "DELETE",
        "DETACH",
        "DROP",
        "END",
        "EXECUTE",
        "EXPLAIN",
        "EXPORT",
        "FORCE",
        "GRANT",
        "IMPORT",
        "INSERT",
        "INSTALL",
        "LOAD",
        "MERGE",
        "PRAGMA",
        "PREPARE",
        "RESET",
        "REVOKE",
        "ROLLBACK",
        "SET",
        "START",
        "TRUNCATE",
        "UPDATE",
        "USE",
        "VACUUM",
    }
)

_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_PUNCTUATION = re.compile(r"^[()\[\]{},;.:+\-*/%<>=!|&^~@#]{1,3}$")


def statement_refusal(keyword: str) -> LakeError | None:
    """The error for a statement starting with `keyword`, or None if it may start a query."""
    word = keyword.upper()
    if word in NOT_YET_KEYWORDS:
        return SQLError(
            f"{word} is not supported yet: table and column listings will come from the "
            "Lakeward catalog; query the tables instead"
        )
    if word in STATEMENT_KEYWORDS:
        return AccessDenied(f"{word} statements are not allowed: only read-only queries can run")
    return None


def _first_word(sql: str) -> str | None:
    try:
        tokens = sqlglot.Dialect.get_or_raise(DIALECT).tokenize(sql)
    except Exception:  # a text that does not even tokenize has no first word worth reporting
        return None
    return tokens[0].text if tokens else None


def _describe(error: dict) -> str:
    """sqlglot's error description in plain words, without class names or token dumps."""
    text = str(error.get("description") or "")
    if text.startswith("Required keyword"):
        return "incomplete expression or clause"
    if text.startswith("Invalid expression / Unexpected token"):
        return "unexpected token"
    if text.startswith("Expecting "):
        return f"expected {text[len('Expecting ') :].strip()!r}"
    text = text.split(" but got ")[0].split("<")[0].strip()
    return text[:1].lower() + text[1:] if text else "invalid syntax"


def _syntax_error(error: ParseError) -> SQLError:
    detail = error.errors[0] if error.errors else {}
    where = ""
    if detail.get("line") and detail.get("col"):
        where = f" at line {detail['line']}, column {detail['col']}"
    # Only keywords, names and punctuation are quoted back; never the contents of a literal.
    token = str(detail.get("highlight") or "")
    near = f" near {token!r}" if _WORD.match(token) or _PUNCTUATION.match(token) else ""
    return SQLError(f"syntax error{where}{near}: {_describe(detail)}")


def _is_empty(statement: exp.Expression | None) -> bool:
    # `SELECT 1; -- note` yields a trailing Semicolon node that only carries the comment.
    return statement is None or (isinstance(statement, exp.Semicolon) and not statement.args)


def _drop_comments(tree: exp.Expression) -> exp.Expression:
    for node in tree.walk():
        node.pop_comments()
    return tree


def _parse_statements(sql: str) -> list[exp.Expression]:
    try:
        statements = sqlglot.parse(sql, read=DIALECT)
    except ParseError as error:
        refusal = statement_refusal(_first_word(sql) or "")
        raise (refusal or _syntax_error(error)) from None
    except TokenError:
        raise SQLError(
            "syntax error: the query has an unterminated string, quoted name or comment"
        ) from None
    except RecursionError:
        raise SQLError("the query is nested too deeply") from None
    except Exception:  # sqlglot raises arbitrary errors on some malformed input
        raise SQLError("syntax error: the query could not be parsed") from None
    return [s for s in statements if not _is_empty(s)]


def parse_query(sql: str) -> exp.Expression:
    """Parse exactly one DuckDB statement; raise SQLError if it is empty, invalid or several.

    Statements that sqlglot cannot parse but that start with a known non-query keyword (EXPORT
    DATABASE, CREATE SECRET, ...) raise the same error `validate` gives parsed ones: AccessDenied.
    """
    if not isinstance(sql, str):
        raise InvalidArgument(f"the query must be a string, not {type(sql).__name__}")
    statements = _parse_statements(sql)
    if not statements:
        raise SQLError("the query is empty")
    if len(statements) > 1:
        raise SQLError(
            f"only one statement can run at a time; found {len(statements)} separated by ';'"
        )
    return _drop_comments(statements[0])
