"""Governed appends that record Delta application transactions in the same commit.

`lk.write` records at most one app transaction and cannot look at the table before writing.
The crawler (one app transaction per crawled file) and exactly-once streams (check the
committed sequence, then append) need both, under the table lock, in one ratified commit.
This goes through the same catalog protocol (`Transaction.run_maintenance`), the same write
authorization and the same audit trail as `lk.write`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties, write_deltalake
from deltalake import Transaction as AppTransaction

from catalog.data import check_schema, to_arrow
from catalog.errors import InvalidArgument
from catalog.txn import table_schema
from lake.policy import authorize_write

if TYPE_CHECKING:
    from lake.lake import Lake

# Post-commit checkpoints would land before ratification; the catalog makes them after.
_HOOKS = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)


def app_version(dt: DeltaTable, app_id: str) -> int | None:
    """The version an application last recorded in this snapshot of the table, or None."""
    return dt.transaction_version(app_id)


def with_missing_columns(
    data: pa.Table | pa.RecordBatchReader, table: pa.Schema
) -> pa.Table | pa.RecordBatchReader:
    """`data` plus a NULL column for each table column it lacks (delta-rs wants them all)."""
    missing = [f.with_nullable(True) for f in table if f.name not in data.schema.names]
    if not missing:
        return data
    schema = pa.schema([*data.schema, *missing])

    def fill(batch: pa.RecordBatch) -> pa.RecordBatch:
        nulls = [pa.nulls(batch.num_rows, f.type) for f in missing]
        return pa.RecordBatch.from_arrays([*batch.columns, *nulls], schema=schema)

    if isinstance(data, pa.Table):
        return pa.Table.from_batches([fill(b) for b in data.to_batches()], schema=schema)
    return pa.RecordBatchReader.from_batches(schema, (fill(b) for b in data))


def append_with_app_txns(
    lk: Lake,
    table: str,
    data: Any,
    *,
    user: str,
    app_txns: Sequence[tuple[str, int]],
    precheck: Callable[[DeltaTable], bool] | None = None,
    schema_mode: str | None = None,
    params: Mapping[str, Any] | None = None,
    statement: str | None = None,
) -> bool:
    """Append `data` to `table` and record `app_txns` in the same ratified commit.

    `precheck(dt)` runs with the table lock held, on the ratified version the commit will follow;
    when it returns False nothing is written and this returns False. Returns True if committed.
    """
    if schema_mode not in (None, "merge"):
        raise InvalidArgument(f"schema_mode must be None or 'merge', not {schema_mode!r}")
    data = to_arrow(data)
    txns = [AppTransaction(app_id, int(version)) for app_id, version in app_txns]

    def op(dt: DeltaTable, props: CommitProperties) -> bool:
        if precheck is not None and not precheck(dt):
            return False
        current = table_schema(dt)
        if schema_mode is None:
            check_schema(data.schema, current, table)
        write_deltalake(
            dt,
            with_missing_columns(data, current),
            mode="append",
            schema_mode=schema_mode,
            commit_properties=CommitProperties(
                custom_metadata=props.custom_metadata,
                max_commit_retries=0,
                app_transactions=txns,
            ),
            post_commithook_properties=_HOOKS,
        )
        return True

    def go() -> bool:
        authorize_write(lk.policy, user, table, ["insert"], columns=data.schema.names)
        tx = lk._implicit(user)
        return bool(tx.run_maintenance(table, "WRITE", {"mode": "append", **(params or {})}, op))

    return lk._governed(user, "write", table, statement or f"append {table}", go)
