"""`PolicyAccess`: the seam implemented by a policy engine."""

from __future__ import annotations

from catalog.snapshot import Snapshot
from catalog.store import TableInfo
from governance.access import View
from governance.policy.engine import PolicyEngine


class PolicyAccess:
    """Views of tables as a policy folder allows them."""

    def __init__(self, engine: PolicyEngine):
        self.engine = engine

    def view(self, user: str, table: TableInfo, snapshot: Snapshot) -> View:
        """The user's view of the table: visible columns, row and cell conditions, masks."""
        names = list(snapshot.schema.names)
        spec = self.engine.view(user, table.full_name, names)
        whole = (
            spec.row_cond is None
            and not spec.masks
            and not spec.cell_cond
            and list(spec.columns) == names
        )
        return View(
            columns=spec.columns,
            prunable=spec.prunable,
            rules=spec.rules,
            row_cond=spec.row_cond,
            cell_cond=dict(spec.cell_cond),
            masks=dict(spec.masks),
            whole=whole,
        )
