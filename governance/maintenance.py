"""Governed table maintenance: compaction and vacuum need `alter` on the table (rule 10).

What they answer holds no path (vacuum lists files relative to the table) and, for users who
see only part of a table, nothing about its files: how many there were, were rewritten or
were deleted depends on rows they may not see (compact answers `{}`, vacuum `[]`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from catalog import compaction
from catalog.errors import InvalidArgument
from catalog.store import TableInfo
from catalog.vacuum import vacuum as vacuum_table
from catalog.writes import columns_in
from governance.gate import Audit, Gate
from governance.principal import Principal


class Maintenance:
    """Compaction and vacuum of one lake's tables, through the gate."""

    def __init__(self, gate: Gate):
        self.gate = gate

    def _check_names(
        self,
        p: Principal,
        info: TableInfo,
        *,
        zorder: Sequence[str] | None = None,
        where: str | None = None,
        partition: Mapping[str, Any] | None = None,
    ) -> None:
        """Columns the user names must be ones they know of, failing for a hidden column exactly
        as the catalog fails for a column that does not exist (its messages, with only the
        columns the user knows of)."""
        known = {c.lower() for c in self.gate.known_columns(p, info)}
        z = [c for c in zorder or [] if str(c).lower() not in known]
        if z:
            raise InvalidArgument(f"z-order column(s) {z} are not in {info.full_name}")
        parts = list(self.gate.catalog.snapshot(info).partition_columns)
        shown = [c for c in parts if c.lower() in known]
        if shown == parts:
            return  # the catalog's own messages name only partition columns the user knows
        for what, names in (("where=", columns_in(where)), ("partition=", list(partition or {}))):
            by_lower = {c.lower(): c for c in shown}
            bad = [n for n in names if str(n).lower() not in by_lower]
            if bad:
                raise InvalidArgument(
                    f"{what} may name only partition columns (this table's: "
                    f"{', '.join(shown) or 'none'}); not {', '.join(map(repr, bad))}"
                )

    def compact(
        self,
        p: Principal,
        table: str,
        *,
        target_size: int | None = None,
        zorder: Sequence[str] | None = None,
        where: str | None = None,
        partition: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Rewrite small files into target-size files (see catalog.compaction.compact)."""

        def go(_: Audit) -> dict[str, Any]:
            info = self.gate.lookup(p, table)
            self.gate.require(p, "alter", info.full_name)
            self._check_names(p, info, zorder=zorder, where=where, partition=partition)
            metrics = compaction.compact(
                self.gate.catalog,
                info.full_name,
                p.name,
                target_size=target_size,
                zorder=zorder,
                where=where,
                partition=partition,
            )
            return metrics if self.gate.whole(p, info) else {}

        return self.gate.run(p, "compact", f"COMPACT {table}", go, table=table)

    def vacuum(
        self,
        p: Principal,
        table: str,
        *,
        retention_hours: float | None = None,
        dry_run: bool = False,
        force: bool = False,
        partition: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Delete files no version inside the retention window needs; returns them, relative to
        the table's folder."""

        def go(audit: Audit) -> list[str]:
            info = self.gate.lookup(p, table)
            self.gate.require(p, "alter", info.full_name)
            self._check_names(p, info, partition=partition)
            files = vacuum_table(
                self.gate.catalog,
                info.full_name,
                p.name,
                retention_hours,
                dry_run,
                force,
                partition,
            )
            audit.rows = len(files)
            if not self.gate.whole(p, info):
                return []
            return sorted(os.path.relpath(f, info.location) for f in files)

        action = "vacuum_dry_run" if dry_run else "vacuum"
        return self.gate.run(p, action, f"VACUUM {table}", go, table=table)
