"""Metadata store: choose a backend from a URL (pyiceberg's `load_catalog` shape)."""

from __future__ import annotations

from pathlib import Path

from catalog.errors import InvalidArgument
from catalog.store.base import (
    CommitInfo,
    DatabaseInfo,
    MetadataStore,
    PolicyRecord,
    Ratify,
    TableInfo,
    TxnInfo,
)

__all__ = [
    "CommitInfo",
    "DatabaseInfo",
    "MetadataStore",
    "PolicyRecord",
    "Ratify",
    "TableInfo",
    "TxnInfo",
    "load_store",
]


def load_store(url: str | None, root: Path | None = None) -> MetadataStore:
    """Open the metadata store at `url` (None: SQLite file inside the lake root)."""
    if url is None:
        if root is None:
            raise InvalidArgument("a metadata store needs a URL or a lake root")
        url = f"sqlite:///{Path(root) / '_lakeward' / 'catalog.db'}"
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme in ("sqlite", "postgresql", "postgres", "mysql"):
        from catalog.store.sql import SqlStore

        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        return SqlStore(url.replace("postgres://", "postgresql://", 1))
    raise InvalidArgument(
        f"unsupported catalog URL scheme {scheme!r}; use sqlite:/// or postgresql://"
    )
