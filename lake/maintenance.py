"""Compaction and vacuum as operations of the catalog protocol (see catalog/compaction.py and
catalog/vacuum.py for how they stay out of concurrent writers' way)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from catalog import compaction
from catalog import vacuum as _vacuum
from catalog.catalog import Catalog

MIN_RETENTION_HOURS = _vacuum.MIN_RETENTION_HOURS


def compact(
    catalog: Catalog,
    name: str,
    user: str,
    target_size: int | None = None,
    zorder: Sequence[str] | None = None,
    where: str | None = None,
    partition: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Bin-pack small files into target-size files (optionally z-ordered) in ratified commits."""
    return compaction.compact(
        catalog,
        name,
        user,
        target_size=target_size,
        zorder=zorder,
        where=where,
        partition=partition,
    )


def vacuum(
    catalog: Catalog,
    name: str,
    user: str,
    retention_hours: float | None = None,
    dry_run: bool = False,
    force: bool = False,
    partition: Mapping[str, Any] | None = None,
) -> list[str]:
    """Delete data files no version within the retention window references; returns their paths."""
    return _vacuum.vacuum(catalog, name, user, retention_hours, dry_run, force, partition)
