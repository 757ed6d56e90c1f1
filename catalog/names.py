"""Database and table names."""

from __future__ import annotations

import re

from catalog.errors import InvalidArgument

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def check_ident(name: str, what: str) -> str:
    """Validate a database or table name; names are case-insensitive and stored lower-case."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise InvalidArgument(
            f"invalid {what} name {name!r}: use letters, digits and underscores, starting with a "
            "letter or underscore (at most 128 characters)"
        )
    return name.lower()


def split_name(full: str) -> tuple[str, str]:
    """'db.table' -> ('db', 'table'), validated and lower-cased."""
    if not isinstance(full, str) or full.count(".") != 1:
        raise InvalidArgument(f"table names are 'database.table', got {full!r}")
    db, table = full.split(".")
    return check_ident(db, "database"), check_ident(table, "table")
