"""Governed table maintenance: compaction and vacuum need `alter` on the table (rule 10).

What they answer holds no path (vacuum lists files relative to the table) and, for users who
see only part of a table, no numbers about its files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from catalog import compaction
from catalog.errors import AccessDenied
from catalog.vacuum import vacuum as vacuum_table
from governance.gate import Audit, Gate
from governance.principal import Principal


class Maintenance:
    """Compaction and vacuum of one lake's tables, through the gate."""

    def __init__(self, gate: Gate):
        self.gate = gate

    def _whole(self, p: Principal, name: str) -> bool:
        info = self.gate.lookup(p, name)
        try:
            view = self.gate.view(p, info, self.gate.columns(info))
        except AccessDenied:
            return False
        return view is None or (
            not view.row_cond
            and not view.masks
            and not view.cell_cond
            and list(view.columns) == self.gate.columns(info)
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
            metrics = compaction.compact(
                self.gate.catalog,
                info.full_name,
                p.name,
                target_size=target_size,
                zorder=zorder,
                where=where,
                partition=partition,
            )
            if not self._whole(p, info.full_name):
                return {"compacted": bool(metrics.get("numFilesRemoved"))}
            return metrics

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
            return sorted(os.path.relpath(f, info.location) for f in files)

        action = "vacuum_dry_run" if dry_run else "vacuum"
        return self.gate.run(p, action, f"VACUUM {table}", go, table=table)
