"""Typed errors for every layer.

They live in the lowest layer so that `catalog`, `governance` and `batch` can raise them without
importing `lake`; `lake.errors` re-exports them under the public names.
"""

from __future__ import annotations


class LakeError(Exception):
    """Base of every error Lakeward raises on purpose."""


class InvalidArgument(LakeError, ValueError):
    """An argument has the wrong type, shape or value."""


class AccessDenied(LakeError):
    """The user may not do this; the message never reveals what they may not see."""


class SQLError(LakeError):
    """The SQL cannot be parsed, is not a read-only query, or refers to something unknown."""


class PolicyError(LakeError):
    """A policy file is wrong; names the file and line."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        self.file, self.line = file, line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(where + message)


class TableNotFound(LakeError, KeyError):
    """No such table (or database) in the catalog."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "table not found"


class TableNotAccessible(AccessDenied, TableNotFound):
    """Under a policy: the table does not exist or the user may not know it does.

    Both cases raise this same error with the same text, so existence never leaks; it is an
    AccessDenied and a TableNotFound at once.
    """


class DatabaseNotFound(TableNotFound):
    """No such database in the catalog."""


class TableExists(LakeError):
    """A table (or database) of that name already exists."""


class DatabaseExists(TableExists):
    """A database of that name already exists."""


class SchemaMismatch(LakeError):
    """Data does not match the table schema and schema evolution was not asked for."""


class UnsupportedFeature(LakeError):
    """The Delta table uses a feature Lakeward cannot read correctly yet, so it refuses to read it."""


class DataFileMissing(UnsupportedFeature):
    """A file the table's log refers to (a data or deletion-vector file) is gone: removed by
    hand or by a vacuum that ignored the retention window. Restore it or roll the table back."""


class CommitConflict(LakeError):
    """A concurrent commit changed what this one read; retry the whole operation."""

    retryable = True


class TransactionError(LakeError):
    """The transaction is not active: committed, cancelled or expired."""


class StorageError(LakeError, OSError):
    """The object store (or the disk) refused or failed an operation; the message says which
    location and why, never a credential. Check the storage options and retry."""


class JobError(LakeError):
    """A batch job cannot be submitted or has failed."""


__all__ = [
    "LakeError",
    "InvalidArgument",
    "AccessDenied",
    "SQLError",
    "PolicyError",
    "TableNotFound",
    "DatabaseNotFound",
    "TableNotAccessible",
    "TableExists",
    "DatabaseExists",
    "SchemaMismatch",
    "UnsupportedFeature",
    "DataFileMissing",
    "CommitConflict",
    "TransactionError",
    "StorageError",
    "JobError",
]
