"""Jobs and lake tables: governed input snapshots, exactly-once output commits, lineage."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties, write_deltalake
from deltalake import Transaction as DeltaTransaction

from catalog.data import check_schema
from catalog.errors import AccessDenied, CommitConflict, JobError
from catalog.txn import Transaction, table_schema

_HOOKS = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)
SqlFn = Callable[[str, str], pa.Table]


def app_id(job_id: str) -> str:
    """The Delta application-transaction id that makes a job's output commit idempotent."""
    return f"lakeward.job.{job_id}"


def materialize_inputs(
    catalog: Any, sql: SqlFn, user: str, inputs: dict[str, str], dest: Path
) -> list[tuple[str, str, int]]:
    """Snapshot each input table as `user` (governance applies) into dest/NAME/*.parquet.

    Reads a pinned version (VERSION AS OF) so lineage names exactly what the job saw. Returns
    [(name, table, version)]; an existing snapshot (an earlier attempt's) is reused.
    """
    read = []
    for name, table in inputs.items():
        folder = dest / name
        marker = dest / f".{name}.version"  # beside the folder: the job sees only Parquet files
        if marker.exists() and folder.is_dir():
            read.append((name, table, int(marker.read_text())))
            continue
        version = catalog.table(table).version
        result = sql(f"SELECT * FROM {table} VERSION AS OF {version}", user)
        tmp = dest / f".{name}.{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        pq.write_table(result, tmp / "part-00000.parquet")
        shutil.rmtree(folder, ignore_errors=True)
        os.rename(tmp, folder)
        marker.write_text(str(version))
        read.append((name, table, version))
    return read


def _read_output(folder: Path) -> pa.Table | None:
    files = sorted(p for p in folder.rglob("*.parquet") if p.is_file())
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


def commit_outputs(
    catalog: Any,
    user: str,
    job_id: str,
    outputs: dict[str, str],
    out_dir: Path,
    authorize: Callable[[str, str, list[str]], None] | None = None,
    attempts: int = 5,
) -> dict[str, dict[str, Any]]:
    """Commit every output folder to its table in one transaction, at most once per job.

    Each table's commit carries the application transaction (`lakeward.job.ID`, 1). Under the
    table lock the ratified snapshot is checked for it first, so a retried job, a repeated
    commit after a scheduler crash, or an interrupted attempt never lands rows twice.
    Returns {name: {"table", "version", "rows", "skipped"}}.
    """
    data = {}
    for name, table in outputs.items():
        t = _read_output(out_dir / name)
        if t is not None:
            if authorize is not None:
                authorize(user, table, t.schema.names)
            data[name] = (table, t)
    if not data:
        return {}
    aid = app_id(job_id)
    for round_ in range(attempts):
        done: dict[str, dict[str, Any]] = {}
        tx = Transaction(catalog, user)
        try:
            for name, (table, t) in data.items():

                def op(
                    dt: DeltaTable, props: CommitProperties, name=name, table=table, t=t, done=done
                ) -> None:
                    if (dt.transaction_version(aid) or 0) >= 1:
                        done[name] = {"table": table, "version": None, "rows": 0, "skipped": True}
                        return
                    check_schema(t.schema, table_schema(dt), table)
                    write_deltalake(
                        dt,
                        t,
                        mode="append",
                        commit_properties=CommitProperties(
                            custom_metadata={
                                **(props.custom_metadata or {}),
                                "lakeward.job": job_id,
                            },
                            max_commit_retries=0,
                            app_transactions=[DeltaTransaction(aid, 1)],
                        ),
                        post_commithook_properties=_HOOKS,
                    )
                    done[name] = {
                        "table": table,
                        "version": dt.version(),
                        "rows": t.num_rows,
                        "skipped": False,
                    }

                tx.run_maintenance(table, "WRITE", {"mode": "append", "job": job_id}, op)
            tx.commit()
            return done
        except CommitConflict:
            tx.cancel()
            if round_ == attempts - 1:
                raise
            time.sleep(0.05 * (round_ + 1))
        except BaseException:
            tx.cancel()
            raise
    raise JobError("unreachable")


def default_authorize(policy_allowed: Callable[[str, str, str], bool]) -> Callable[..., None]:
    """An output check from `policy_allowed` alone: the user needs insert on the table."""

    def check(user: str, table: str, columns: list[str]) -> None:
        if not policy_allowed(user, table, "insert"):
            raise AccessDenied(f"{user} may not insert into {table}")

    return check
