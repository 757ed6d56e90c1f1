"""What the batch package needs from the lake, as a small typed interface.

`batch` never imports `lake` or `governance`: the lake hands the scheduler an object with these
methods (the lake's own `lake.batch_port.BatchPort`), and every decision about jobs, their
governed inputs and their outputs is made at the lake's one checkpoint. `user` is the name of
the principal an operation acts for; None is the lake's owner (embedded administration). A job
acts for the user who submitted it (`acting` "owner" in its row: for the owner).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

import pyarrow as pa


class LakePort(Protocol):
    """The lake as the batch scheduler and API see it."""

    def allowed(self, user: str | None, resource: str, action: str) -> bool:
        """May `user` do `action` on `resource` (e.g. `queue:default`)?"""
        ...

    def one_policy(self) -> AbstractContextManager[None]:
        """Inside it, every decision is made under one version of the policy (read once)."""
        ...

    def principal_name(self, user: str | None) -> str:
        """The name `user` acts as (the owner's name for None); InvalidArgument for names
        that cannot be users (rule 9)."""
        ...

    def is_admin(self, user: str | None) -> bool:
        """Whether `user` is the lake's owner or the system (sees and controls every job)."""
        ...

    def audit(
        self,
        user: str | None,
        action: str,
        statement: str,
        decision: str,
        *,
        reason: str = "",
        rows: int | None = None,
        tables: tuple[tuple[str, int], ...] = (),
    ) -> None:
        """Append one audit record (fails closed)."""
        ...

    def check_table(self, user: str | None, table: str, action: str) -> str:
        """The table's full name if `user` may `action` it (select for an input, insert for an
        output); a table the user may not describe fails exactly like a missing one."""
        ...

    def read_input(self, user: str | None, table: str) -> tuple[pa.Table, int]:
        """The governed snapshot of `table` as `user` sees it, and the version it is of."""
        ...

    def commit_outputs(
        self, user: str | None, job_id: str, outputs: Mapping[str, tuple[str, pa.Table]]
    ) -> dict[str, dict[str, Any]]:
        """Commit each output {name: (table, data)} once per job, all in one transaction;
        returns {name: {"table", "version", "rows", "skipped"}}."""
        ...


class LakeHandle(Protocol):
    """An opened lake as a detached scheduler needs it: where it is and its port."""

    root: Any
    store_url: str
    config: Mapping[str, Any]
    port: LakePort
    ray_address: str | None

    def close(self) -> None: ...
