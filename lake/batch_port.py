"""The lake as the batch package sees it (`batch.port.LakePort`), over the governed core.

Every decision the scheduler needs (queue grants, job visibility, input snapshots, output
commits) is made here through the lake's gate, for the principal a job acts for, so an
embedded scheduler thread and a detached actor decide exactly alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

from batch.lakeio import app_id
from catalog.errors import CommitConflict, JobError
from catalog.writes import app_version
from governance.gate import Gate
from governance.principal import JOB, Principal
from governance.sql import Queries
from governance.writer import GovernedWriter


class BatchPort:
    """`LakePort` for one lake: its gate and its queries, and who the owner is."""

    def __init__(self, gate: Gate, queries: Queries, who: Callable[[Any], Principal]):
        self.gate = gate
        self.queries = queries
        self.who = who

    def _principal(self, user: str | None, *, job: bool = False) -> Principal:
        p = self.who(user)
        return Principal.user(p.name, auth=JOB) if job and not p.privileged else p

    def allowed(self, user: str | None, resource: str, action: str) -> bool:
        return self.gate.allowed(self.who(user), resource, action)

    def one_policy(self) -> AbstractContextManager[None]:
        return self.gate.one_policy()

    def principal_name(self, user: str | None) -> str:
        return self.who(user).name

    def is_admin(self, user: str | None) -> bool:
        return self.who(user).privileged

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
        self.gate.record(
            self.who(user), action, statement, decision, reason=reason, rows=rows, tables=tables
        )

    def check_table(self, user: str | None, table: str, action: str) -> str:
        p = self.who(user)
        info = self.gate.lookup(p, table)
        if action == "select":
            self.gate.view(p, info, self.gate.columns(info))  # a select grant or a filter
        else:
            self.gate.require(p, action, info.full_name)
        if action == "insert" and info.table_type != "GOVERNED":
            raise JobError(
                f"output table {info.full_name} is external (read-only); use a governed table"
            )
        return info.full_name

    def read_input(self, user: str | None, table: str) -> tuple[pa.Table, int]:
        p = self._principal(user, job=True)
        version = self.gate.lookup(p, table).version
        result = self.queries.sql(p, f"SELECT * FROM {table} VERSION AS OF {version}")
        return result, version

    def commit_outputs(
        self, user: str | None, job_id: str, outputs: Mapping[str, tuple[str, pa.Table]]
    ) -> dict[str, dict[str, Any]]:
        p = self._principal(user, job=True)
        aid = app_id(job_id)
        for round_ in range(5):
            tx = self.gate.catalog.transaction(p.name)
            writer = GovernedWriter(self.gate, p, tx)
            done: dict[str, dict[str, Any]] = {}
            try:
                for name, (table, data) in outputs.items():
                    held: list[DeltaTable] = []

                    def fresh(dt: DeltaTable, held: list[DeltaTable] = held) -> bool:
                        held.append(dt)
                        return (app_version(dt, aid) or 0) < 1

                    wrote = writer.append_once(
                        table,
                        data,
                        app_txns=[(aid, 1)],
                        precheck=fresh,
                        params={"job": job_id},
                        metadata={"lakeward.job": job_id},
                        statement=f"batch job {job_id} output to {table}",
                    )
                    done[name] = {
                        "table": table,
                        "version": held[0].version() if wrote else None,
                        "rows": data.num_rows if wrote else 0,
                        "skipped": not wrote,
                    }
                tx.commit()
                return done
            except CommitConflict:
                tx.cancel()
                if round_ == 4:
                    raise
                time.sleep(0.05 * (round_ + 1))
            except BaseException:
                tx.cancel()
                raise
        return {}


@dataclass
class Handle:
    """An opened lake for a detached scheduler (`batch.port.LakeHandle`)."""

    root: Path
    store_url: str
    config: Mapping[str, Any]
    port: BatchPort
    ray_address: str | None
    close: Callable[[], None]
