"""Metadata store: choose a backend from a URL (pyiceberg's `load_catalog` shape)."""

from __future__ import annotations

from pathlib import Path

from catalog.errors import InvalidArgument
from catalog.store.base import (
    CommitInfo,
    DatabaseInfo,
    LockHolder,
    MetadataStore,
    PolicyRecord,
    Ratify,
    TableInfo,
    TxnInfo,
)
from catalog.store.connections import normalize_url

__all__ = [
    "CommitInfo",
    "DatabaseInfo",
    "LockHolder",
    "MetadataStore",
    "PolicyRecord",
    "Ratify",
    "TableInfo",
    "TxnInfo",
    "load_store",
    "normalize_url",
]


def load_store(url: str | None, root: Path | None = None) -> MetadataStore:
    """Open the metadata store at `url` (None: SQLite file inside the lake root)."""
    if url is None:
        if root is None:
            raise InvalidArgument("a metadata store needs a URL or a lake root")
        if "://" in str(root):
            raise InvalidArgument(
                "a lake in an object store needs a shared catalog: pass "
                "catalog='postgresql://...' (or set [catalog] url in its lake.toml, or $LAKE_CATALOG)"
            )
        url = f"sqlite:///{Path(root) / '_lakeward' / 'catalog.db'}"
    url = normalize_url(url)
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    from catalog.store.sql import SqlStore

    return SqlStore(url)
