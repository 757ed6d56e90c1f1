"""Compaction and vacuum as ratified commits of the catalog protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties

from catalog.catalog import Catalog
from catalog.errors import InvalidArgument

_HOOKS = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)
MIN_RETENTION_HOURS = 168


def compact(
    catalog: Catalog,
    name: str,
    user: str,
    target_size: int | None = None,
    zorder: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Bin-pack small files into target-size files (optionally z-ordered) in one ratified commit."""
    if target_size is not None and (not isinstance(target_size, int) or target_size <= 0):
        raise InvalidArgument("target_size must be a positive number of bytes")
    cols = list(zorder or [])

    def op(dt: DeltaTable, props: CommitProperties) -> dict[str, Any]:
        if cols:
            missing = [c for c in cols if c not in dt.schema().to_arrow().names]
            if missing:
                raise InvalidArgument(f"z-order column(s) {missing} are not in {name}")
            return dt.optimize.z_order(
                cols,
                target_size=target_size,
                commit_properties=props,
                post_commithook_properties=_HOOKS,
            )
        return dt.optimize.compact(
            target_size=target_size, commit_properties=props, post_commithook_properties=_HOOKS
        )

    tx = catalog.implicit(user)
    return tx.run_maintenance(name, "OPTIMIZE", {"target_size": target_size, "zorder": cols}, op)


def vacuum(
    catalog: Catalog,
    name: str,
    user: str,
    retention_hours: float | None = None,
    dry_run: bool = False,
    force: bool = False,
) -> list[str]:
    """Delete data files no version within the retention window references; returns their paths."""
    hours = MIN_RETENTION_HOURS if retention_hours is None else retention_hours
    if hours < 0:
        raise InvalidArgument("retention_hours must be >= 0")
    if hours < MIN_RETENTION_HOURS and not force:
        raise InvalidArgument(
            f"retention_hours={hours:g} is below the safe minimum of {MIN_RETENTION_HOURS} h: "
            "readers and transactions of older versions could lose their files. Pass force=True "
            "if you are sure."
        )

    def op(dt: DeltaTable, props: CommitProperties) -> list[str]:
        return dt.vacuum(
            retention_hours=int(hours),
            dry_run=dry_run,
            enforce_retention_duration=False,
            commit_properties=props,
            post_commithook_properties=_HOOKS,
        )

    tx = catalog.implicit(user)
    return tx.run_maintenance(name, "VACUUM", {"retention_hours": hours, "dry_run": dry_run}, op)
