"""The Delta operations behind every write: what runs on a table while its lock is held.

Each function takes the writer's DeltaTable at the ratified version and the commit properties
the catalog protocol prepared, and makes one tentative Delta commit with delta-rs (see
`catalog.txn`, which ratifies it). Metrics count rows, never files: file counts would tell how
rows the caller may not see are spread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import sqlglot
from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties, write_deltalake
from deltalake import Transaction as AppTransaction
from sqlglot import exp
from sqlglot.errors import ParseError

from catalog.data import check_schema
from catalog.errors import InvalidArgument, SQLError

# Post-commit checkpoints would land before ratification; the catalog makes them after.
HOOKS = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)

Precheck = Callable[[DeltaTable], bool]


def table_schema(dt: DeltaTable) -> pa.Schema:
    """The Arrow schema of the version a writer holds."""
    return pa.schema(dt.schema().to_arrow())


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


def app_version(dt: DeltaTable, app_id: str) -> int | None:
    """The version an application last recorded in this snapshot of the table, or None."""
    return dt.transaction_version(app_id)


def _props(
    props: CommitProperties, app_txns: Sequence[tuple[str, int]], extra: Mapping[str, str]
) -> CommitProperties:
    return CommitProperties(
        custom_metadata={**(props.custom_metadata or {}), **extra},
        max_commit_retries=0,
        app_transactions=[AppTransaction(a, int(v)) for a, v in app_txns] or None,
    )


def append(
    dt: DeltaTable,
    props: CommitProperties,
    data: pa.Table | pa.RecordBatchReader,
    *,
    table: str,
    app_txns: Sequence[tuple[str, int]] = (),
    precheck: Precheck | None = None,
    schema_mode: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> bool:
    """The one exactly-once append: add `data` and record `app_txns` in the same commit.

    `precheck(dt)` runs with the lock held, on the ratified version the commit will follow;
    when it returns False nothing is written and this returns False (e.g. the stream batch,
    crawled file or job output is already there). Table columns the data lacks are written as
    NULL. Returns True when a commit was made.
    """
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
        commit_properties=_props(props, app_txns, metadata or {}),
        post_commithook_properties=HOOKS,
    )
    return True


def overwrite(
    dt: DeltaTable,
    props: CommitProperties,
    data: pa.Table | pa.RecordBatchReader,
    *,
    table: str,
    where: str | None = None,
    schema_mode: str | None = None,
) -> None:
    """Replace the table's rows (or those matching `where`: replaceWhere) with `data`."""
    current = table_schema(dt)
    if schema_mode is None:
        check_schema(data.schema, current, table)
        data = with_missing_columns(data, current)
    write_deltalake(
        dt,
        data,
        mode="overwrite",
        schema_mode=schema_mode,
        predicate=where,
        commit_properties=props,
        post_commithook_properties=HOOKS,
    )


def check_known(names: Iterable[str], known: Iterable[str], table: str, what: str) -> None:
    """SQLError naming the columns of `names` that are not in `known` (case-insensitive).

    Writers check against the table; governance checks against the user's view with this same
    function, so a hidden column errs exactly like one that does not exist.
    """
    have = {k.lower() for k in known}
    unknown = list(dict.fromkeys(c for c in names if c.lower() not in have))
    if unknown:
        raise SQLError(f"{what} unknown column(s) {', '.join(map(repr, unknown))} in {table}")


def columns_in(sql: str | None) -> list[str]:
    """Column names a SQL predicate or expression reads, in order of appearance."""
    if not sql:
        return []
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except ParseError as e:
        raise SQLError(
            f"cannot parse {sql!r}: {e.errors[0]['description'] if e.errors else e}"
        ) from None
    return list(dict.fromkeys(c.name for c in tree.find_all(exp.Column)))


def delete(
    dt: DeltaTable, props: CommitProperties, where: str | None, *, table: str
) -> dict[str, Any]:
    """Delete the rows matching `where` (all when None); returns {"num_deleted_rows": n}."""
    check_known(columns_in(where), table_schema(dt).names, table, "the predicate names")
    m = dt.delete(where, commit_properties=props, post_commithook_properties=HOOKS)
    return {"num_deleted_rows": int(m.get("num_deleted_rows", 0))}


def update(
    dt: DeltaTable,
    props: CommitProperties,
    set: Mapping[str, str],
    where: str | None,
    *,
    table: str,
) -> dict[str, Any]:
    """Set columns to SQL expressions on matching rows; returns {"num_updated_rows": n}."""
    names = table_schema(dt).names
    check_known(set, names, table, "update of")
    reads = [c for v in set.values() for c in columns_in(str(v))] + columns_in(where)
    check_known(reads, names, table, "the update names")
    m = dt.update(
        updates=dict(set),
        predicate=where,
        commit_properties=props,
        post_commithook_properties=HOOKS,
    )
    return {"num_updated_rows": int(m.get("num_updated_rows", 0))}


MERGE_METRICS = (
    "num_source_rows",
    "num_target_rows_inserted",
    "num_target_rows_updated",
    "num_target_rows_deleted",
)


def merge(
    dt: DeltaTable,
    props: CommitProperties,
    source: pa.Table,
    predicate: str,
    *,
    table: str,
    when_matched: str | Mapping[str, str] | None,
    when_not_matched: str | Mapping[str, str] | None,
    when_not_matched_by_source: str | None,
) -> dict[str, Any]:
    """Upsert `source` (alias s) into the table (alias t); returns row counts."""
    check_schema(source.schema, table_schema(dt), table)
    m = dt.merge(
        source,
        predicate,
        source_alias="s",
        target_alias="t",
        commit_properties=props,
        post_commithook_properties=HOOKS,
    )
    if when_matched == "update":
        m = m.when_matched_update_all()
    elif when_matched == "delete":
        m = m.when_matched_delete()
    elif isinstance(when_matched, Mapping):
        m = m.when_matched_update(updates=dict(when_matched))
    if when_not_matched == "insert":
        m = m.when_not_matched_insert_all()
    elif isinstance(when_not_matched, Mapping):
        m = m.when_not_matched_insert(updates=dict(when_not_matched))
    if when_not_matched_by_source == "delete":
        m = m.when_not_matched_by_source_delete()
    metrics = m.execute()
    return {k: int(metrics.get(k, 0)) for k in MERGE_METRICS}


def merge_predicate(source: pa.Table, on: str | Sequence[str]) -> str:
    """The merge condition: `on` key columns (t.k = s.k AND ...) or a predicate over t. and s."""
    if isinstance(on, str) and not on.replace("_", "a").isalnum():
        return on
    keys = [on] if isinstance(on, str) else list(on)
    if not keys:
        raise InvalidArgument("merge needs at least one key column in on=")
    missing = [k for k in keys if k not in source.schema.names]
    if missing:
        raise InvalidArgument(f"merge key(s) {missing} are not columns of the source")
    return " AND ".join(f't."{k}" = s."{k}"' for k in keys)


def check_merge_actions(
    when_matched: Any, when_not_matched: Any, when_not_matched_by_source: Any
) -> None:
    """InvalidArgument unless each merge action is one of its allowed values or a mapping."""
    for choice, allowed in (
        (when_matched, ("update", "delete", None)),
        (when_not_matched, ("insert", None)),
        (when_not_matched_by_source, ("delete", None)),
    ):
        if not isinstance(choice, Mapping) and choice not in allowed:
            raise InvalidArgument(f"merge action {choice!r} is not one of {allowed} or a mapping")
