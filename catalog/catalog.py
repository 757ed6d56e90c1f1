"""The catalog: databases and governed Delta tables over a metadata store."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties

from catalog import locks, recovery, retention, snapshot_cache, storage
from catalog.errors import (
    DatabaseNotFound,
    DataFileMissing,
    InvalidArgument,
    LakeError,
    TableExists,
    TableNotFound,
    UnsupportedFeature,
)
from catalog.names import check_ident, split_name
from catalog.settings import Settings
from catalog.snapshot import Snapshot
from catalog.store import DatabaseInfo, MetadataStore, TableInfo
from catalog.txn import Transaction

log = logging.getLogger("lakeward.catalog")
# Post-commit checkpoints would land before ratification; the catalog makes them after.
_HOOKS = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)


def _schema_json(schema: pa.Schema) -> str:
    return json.dumps(
        [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]
    )


class Catalog:
    """Databases and tables of one lake; every table is a Delta table under ACID governance."""

    def __init__(self, root: Path | str, store: MetadataStore, settings: Settings | None = None):
        # A local folder (a Path) or an object-store prefix (an s3:// URI): `catalog.storage`.
        self.root = root if storage.is_remote(root) else Path(root)
        self.location = str(root)
        # Built snapshots of ratified versions, kept for the next process (catalog.snapshot_cache).
        self.snapshot_dir = storage.join(self.location, "_lakeward", "snapshots")
        self.store = store
        self.settings = settings or Settings()
        self._writers: dict[str, DeltaTable] = {}
        self._writers_lock = threading.Lock()
        self._infos: dict[tuple[str, str], TableInfo] = {}
        self._db_tags: dict[str, dict[str, str]] = {}
        self._commit_hooks: list[Callable[[TableInfo, int], None]] = []

    # databases ---------------------------------------------------------------------------------
    def create_database(
        self,
        name: str,
        description: str = "",
        *,
        owner: str = "",
        tags: Mapping[str, str] | None = None,
        exist_ok: bool = False,
    ) -> DatabaseInfo:
        """Create a database (a namespace of tables)."""
        name = check_ident(name, "database")
        existing = self.store.get_database(name)
        if existing is not None and exist_ok:
            return existing
        self.store.create_database(DatabaseInfo(name, description, owner, dict(tags or {})))
        return self.store.get_database(name)  # type: ignore[return-value]

    def list_databases(self) -> list[DatabaseInfo]:
        """All databases, by name."""
        return self.store.list_databases()

    def get_database(self, name: str) -> DatabaseInfo:
        """One database; DatabaseNotFound if missing."""
        info = self.store.get_database(check_ident(name, "database"))
        if info is None:
            raise DatabaseNotFound(f"database {name!r} not found")
        return info

    def database_tags(self, name: str) -> dict[str, str]:
        """A database's tags (cached: they are set when the database is created)."""
        hit = self._db_tags.get(name)
        if hit is None:
            hit = self._db_tags[name] = dict(self.get_database(name).tags)
        return hit

    def drop_database(self, name: str, *, cascade: bool = False, purge: bool = False) -> None:
        """Drop an empty database, or with cascade=True its tables too."""
        db = self.get_database(name).name
        tables = self.store.list_tables(db)
        if tables and not cascade:
            raise InvalidArgument(
                f"database {db!r} has {len(tables)} table(s); drop them or pass cascade=True"
            )
        for t in tables:
            self.drop_table(t.full_name, purge=purge)
        self.store.drop_database(db)
        self._db_tags.pop(db, None)

    # tables ------------------------------------------------------------------------------------
    def table(self, name: str, *, cached: bool = False) -> TableInfo:
        """Look a table up by 'database.table'; TableNotFound if missing.

        cached=True may return an entry of a table dropped since; only writers use it, and they
        re-check under the table lock.
        """
        db, tbl = split_name(name)
        if cached:
            hit = self._infos.get((db, tbl))
            if hit is not None:
                return hit
        info = self.store.get_table(db, tbl)
        if info is None:
            raise TableNotFound(f"table {db}.{tbl} not found")
        self._infos[(db, tbl)] = info
        return info

    def tables(self, names: Sequence[str]) -> dict[str, TableInfo]:
        """The entries of those of the tables named ('database.table') that exist, read in one
        statement (one snapshot of the store)."""
        keys = {name: split_name(name) for name in names}
        found = self.store.get_tables(keys.values())
        out = {}
        for name, key in keys.items():
            if key in found:
                out[name] = self._infos[key] = found[key]
        return out

    def forget(self, info: TableInfo) -> None:
        """Drop a cached table entry."""
        self._infos.pop((info.database, info.name), None)

    def _new_location(self, db: str, table: str) -> str:
        base = storage.join(self.location, db, table)
        try:
            if not storage.listdir(base):
                return base
        except FileNotFoundError:
            return base
        return storage.join(self.location, db, f"{table}-{uuid.uuid4().hex[:8]}")

    def create_table(
        self,
        name: str,
        schema: pa.Schema,
        *,
        partition_by: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        owner: str = "",
        properties: Mapping[str, str] | None = None,
        user: str = "",
        exist_ok: bool = False,
    ) -> TableInfo:
        """Create an empty governed Delta table under the lake root."""
        db, tbl = split_name(name)
        self.get_database(db)
        existing = self.store.get_table(db, tbl)
        if existing is not None:
            if exist_ok:
                return existing
            raise TableExists(f"table {db}.{tbl} already exists")
        if not isinstance(schema, pa.Schema):
            try:
                schema = pa.schema(schema)
            except (TypeError, ValueError) as e:
                raise InvalidArgument(f"schema must be a pyarrow.Schema: {e}") from None
        if len(schema) == 0:
            raise InvalidArgument("a table needs at least one column")
        if len(set(schema.names)) != len(schema.names):
            raise InvalidArgument("column names must be unique")
        parts = list(partition_by or [])
        missing = [p for p in parts if p not in schema.names]
        if missing:
            raise InvalidArgument(f"partition column(s) {missing} are not in the schema")
        if parts and len(parts) == len(schema):
            raise InvalidArgument(
                "a table needs at least one column that is not a partition column"
            )
        location = self._new_location(db, tbl)
        storage.makedirs(location)
        try:
            DeltaTable.create(
                location,
                schema,
                partition_by=parts or None,
                storage_options=storage.delta_options(location),
                name=tbl,
                description=description or None,
                commit_properties=CommitProperties(
                    custom_metadata={"lakeward.user": user, "lakeward.operation": "CREATE TABLE"}
                ),
            )
        except Exception as e:
            storage.delete_tree(location)
            raise InvalidArgument(f"cannot create {db}.{tbl}: {e}") from None
        info = TableInfo(
            id=0,
            database=db,
            name=tbl,
            location=str(location),
            table_type="GOVERNED",
            schema_json=_schema_json(schema),
            partition_by=tuple(parts),
            description=description,
            tags=dict(tags or {}),
            owner=owner or user,
            created_at=datetime.now(UTC),
            version=0,
            properties=dict(properties or {}),
        )
        try:
            return self.store.create_table(info, user, "CREATE TABLE")
        except TableExists:
            storage.delete_tree(location)
            raise

    def register_table(
        self,
        name: str,
        location: str | Path,
        *,
        governed: bool = False,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        user: str = "",
    ) -> TableInfo:
        """Adopt an existing Delta table in place.

        governed=False (default): an EXTERNAL table, read-only in Lakeward, reads follow its log.
        governed=True: Lakeward becomes its writer; versions past the adopted one are Lakeward's.
        """
        db, tbl = split_name(name)
        self.get_database(db)
        if self.store.get_table(db, tbl) is not None:
            raise TableExists(f"table {db}.{tbl} already exists")
        loc = (
            storage.normalize(location)
            if storage.is_remote(str(location))
            else str(Path(location).expanduser().resolve())
        )
        if not storage.is_dir(storage.join(loc, "_delta_log")):
            raise TableNotFound(f"no Delta table at {loc} (no _delta_log folder)")
        version = recovery.latest_version(loc)
        if version < 0:
            raise TableNotFound(f"no Delta table at {loc} (empty _delta_log)")
        # Refuses features we cannot read, before registering.
        snap = Snapshot.load(loc, version, cache_dir=self.snapshot_dir)
        info = TableInfo(
            id=0,
            database=db,
            name=tbl,
            location=loc,
            table_type="GOVERNED" if governed else "EXTERNAL",
            schema_json=_schema_json(snap.schema),
            partition_by=tuple(snap.partition_columns),
            description=description,
            tags=dict(tags or {}),
            owner=owner or user,
            created_at=datetime.now(UTC),
            version=version,
        )
        return self.store.create_table(info, user, "REGISTER TABLE")

    def list_tables(self, database: str | None = None) -> list[TableInfo]:
        """Tables of one database, or of all."""
        if database is not None:
            database = self.get_database(database).name
        return self.store.list_tables(database)

    def set_properties(
        self, name: str, properties: Mapping[str, str | None], *, user: str = "lakeward"
    ) -> TableInfo:
        """Set (or, with None, remove) table properties, e.g. compaction.* thresholds.

        Delta table properties (`delta.*`, e.g. delta.logRetentionDuration) are set in the
        table's Delta log by a ratified SET TBLPROPERTIES commit; the others are the catalog's.
        """
        info = self.table(name)
        delta = {k: v for k, v in properties.items() if k.startswith("delta.")}
        if delta:
            if info.table_type != "GOVERNED":
                raise InvalidArgument(f"{info.full_name} is an external table and read-only")
            if any(v is None for v in delta.values()):
                raise InvalidArgument("Delta table properties can be set, not removed")
            if retention.KEY in delta:
                retention.parse_interval(str(delta[retention.KEY]))

            def op(dt: DeltaTable, props: CommitProperties) -> None:
                dt.alter.set_table_properties(
                    {k: str(v) for k, v in delta.items()},
                    commit_properties=props,
                    post_commithook_properties=_HOOKS,
                )

            self.implicit(user).run_maintenance(
                info.full_name, "SET TBLPROPERTIES", {"properties": delta}, op
            )
        rest = {k: v for k, v in properties.items() if k not in delta}
        if rest:
            self.store.update_table(info.id, properties=rest)
        self.forget(info)
        return self.table(name)

    def describe(self, name: str) -> dict[str, Any]:
        """Everything the catalog knows about a table, with its current schema and size."""
        info = self.table(name)
        snap = self.snapshot(info)
        files = snap.files
        return {
            "name": info.full_name,
            "type": info.table_type,
            "location": info.location,
            "version": snap.version,
            "columns": [
                {"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in snap.schema
            ],
            "partition_by": list(snap.partition_columns),
            "description": info.description,
            "tags": dict(info.tags),
            "owner": info.owner,
            "created_at": info.created_at.isoformat(),
            "properties": dict(info.properties),
            "num_files": files.num_rows,
            # Summed in NumPy: pyarrow.compute costs a catalog command ~20 ms to import.
            "size_bytes": int(files["size_bytes"].to_numpy().sum()),
            "num_rows": int(files["num_records"].to_numpy().sum()),
        }

    def drop_table(self, name: str, *, purge: bool = False) -> None:
        """Remove a table from the catalog; its files stay unless purge=True (GOVERNED only)."""
        info = self.table(name)
        self.store.drop_table(info.id)
        self.forget(info)
        snapshot_cache.forget(self.snapshot_dir, info.location)
        with self._writers_lock:
            self._writers.pop(info.location, None)
        if purge:
            if info.table_type != "GOVERNED":
                raise InvalidArgument(
                    "purge=True deletes files only of GOVERNED tables; the entry is dropped"
                )
            storage.delete_tree(info.location)

    def dropped_folders(self, name: str) -> list[str]:
        """Folders that dropped governed tables called `name` left under the root: a Delta
        log at root/DB/TABLE or root/DB/TABLE-xxxxxxxx that no table of the catalog uses."""
        db, tbl = split_name(name)
        base = storage.join(self.location, db)
        try:
            names = sorted(storage.listdir(base))
        except (FileNotFoundError, NotADirectoryError):
            return []
        used = {_canonical(t.location) for t in self.store.list_tables()}
        found = []
        for entry in names:
            p = storage.join(base, entry)
            suffix = entry[len(tbl) + 1 :]
            ours = entry == tbl or (
                entry.startswith(tbl + "-") and len(suffix) == 8 and _is_hex(suffix)
            )
            if ours and storage.is_dir(storage.join(p, "_delta_log")) and _canonical(p) not in used:
                found.append(p)
        return found

    def purge_dropped(self, name: str) -> int:
        """Delete the folders `dropped_folders(name)` finds; returns how many."""
        folders = self.dropped_folders(name)
        for p in folders:
            storage.delete_tree(p)
        return len(folders)

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Ratified versions, newest first, with the user, operation and transaction of each."""
        info = self.table(name)
        return [
            {
                "version": c.version,
                "timestamp": c.committed_at,
                "user": c.user,
                "operation": c.operation,
                "transaction": c.txn_id or None,
                "parameters": dict(c.params),
            }
            for c in self.store.commits(info.id, limit)
        ]

    # versions ----------------------------------------------------------------------------------
    def current_version(self, info: TableInfo) -> int:
        """The version a reader outside a transaction sees now."""
        if info.table_type == "EXTERNAL":
            return recovery.latest_version(info.location)
        return self.store.pointers([info.id])[info.id]

    def version_as_of(
        self, info: TableInfo, *, version: int | None = None, timestamp: datetime | None = None
    ) -> int:
        """Resolve time travel to a ratified version; InvalidArgument if there is none."""
        current = self.current_version(info)
        if version is not None:
            if not isinstance(version, int) or version < 0 or version > current:
                raise InvalidArgument(
                    f"{info.full_name} has no version {version}; its versions are 0..{current}"
                )
            if version < current:
                self._check_retained(info, version, current)
            return version
        if timestamp is not None:
            if timestamp.tzinfo is None:
                timestamp = timestamp.replace(tzinfo=UTC)
            if info.table_type == "EXTERNAL":
                dt = storage.open_delta(info.location)
                for h in dt.history():
                    if h["timestamp"] / 1000 <= timestamp.timestamp():
                        return int(h["version"])
                v = None
            else:
                v = self.store.version_at_time(info.id, timestamp)
            if v is None:
                oldest = (
                    self.store.oldest_commit(info.id) if info.table_type != "EXTERNAL" else None
                )
                if oldest is not None and oldest.version > 0:
                    raise InvalidArgument(
                        f"{info.full_name} at {timestamp.isoformat()} is older than its log "
                        f"retention ({self._retention_text(info)}); the oldest time it can read "
                        f"is {oldest.committed_at.isoformat()}"
                    )
                raise InvalidArgument(f"{info.full_name} did not exist at {timestamp.isoformat()}")
            return v
        return current

    def _check_retained(self, info: TableInfo, version: int, current: int) -> None:
        """InvalidArgument if the version's log was cleaned up after the retention window."""
        if info.table_type == "EXTERNAL":
            oldest = retention.oldest_readable(info.location)
        else:
            row = self.store.oldest_commit(info.id)
            oldest = row.version if row is not None else 0
        if version < oldest:
            raise InvalidArgument(
                f"version {version} of {info.full_name} is older than its log retention "
                f"({self._retention_text(info)}) and its log was cleaned up; the oldest version "
                f"it can read is {oldest} (its versions are {oldest}..{current})"
            )

    def _retention_text(self, info: TableInfo) -> str:
        try:
            config = storage.open_delta(info.location).metadata().configuration
        except Exception:  # noqa: BLE001 - only for the message
            config = None
        return f"{retention.KEY} = {retention.log_retention(config)}"

    def snapshot(
        self, info: TableInfo, version: int | None = None, *, tentative: bool = False
    ) -> Snapshot:
        """The table's Delta snapshot at a ratified version (default: current)."""
        v = self.current_version(info) if version is None else version
        try:
            return Snapshot.load(info.location, v, cache=not tentative, cache_dir=self.snapshot_dir)
        except DataFileMissing:
            raise DataFileMissing(
                f"{info.full_name} at version {v}: a file its Delta log refers to is missing; "
                "restore it, or read another version"
            ) from None
        except LakeError:
            raise
        except Exception as e:
            raise UnsupportedFeature(f"cannot read {info.full_name} at version {v}: {e}") from None

    # writes ------------------------------------------------------------------------------------
    def transaction(self, user: str, *, timeout_s: float | None = None) -> Transaction:
        """Begin an explicit transaction (Lake Formation's StartTransaction)."""
        self.reap()
        return Transaction(self, user, timeout_s=timeout_s)

    def implicit(self, user: str, audit: dict[str, Any] | None = None) -> Transaction:
        """A one-write transaction that commits itself; `audit` (a record) is queued in the
        store transaction that ratifies the write."""
        tx = Transaction(self, user, implicit=True)
        tx.audit_record = audit
        return tx

    def writer_table(
        self, location: str, pointer: int, still_ours: Callable[[], bool] | None = None
    ) -> DeltaTable:
        """A DeltaTable at exactly the ratified version, for a writer that holds the table lock
        (`still_ours`: its fencing check, see `recovery.rollback_past`)."""
        recovery.rollback_past(location, pointer, still_ours)
        with self._writers_lock:
            dt = self._writers.get(location)
        try:
            if dt is None or dt.version() > pointer:
                dt = storage.open_delta(location, pointer)
            elif dt.version() < pointer:
                dt.update_incremental()
        except Exception:
            dt = storage.open_delta(location, pointer)
        if dt.version() != pointer:
            dt = storage.open_delta(location, pointer)
        with self._writers_lock:
            self._writers[location] = dt
        return dt

    def after_commit(self, info: TableInfo, dt: DeltaTable, old: int, new: int) -> None:
        """Post-commit work that is safe to lose: every `checkpoint_interval` versions a
        checkpoint, the expired log's clean-up and the store's pruning (`catalog.retention`),
        all of the version just ratified; cached writer state."""
        interval = self.settings.checkpoint_interval
        if interval and new // interval > old // interval:
            try:
                retention.checkpoint_and_clean(self.store, info, dt)
            except Exception as e:  # noqa: BLE001 - a missing checkpoint only slows log replay
                log.warning("%s: checkpoint or log clean-up failed: %s", info.full_name, e)
        with self._writers_lock:
            self._writers[info.location] = dt
        for hook in list(self._commit_hooks):
            with contextlib.suppress(Exception):  # a hook never fails a commit already made
                hook(info, new)

    def add_commit_hook(self, hook: Callable[[TableInfo, int], None]) -> None:
        """Call `hook(table_info, new_version)` after each ratified commit of this process.

        Hooks run on the committing thread, so they must be quick (e.g. enqueue work).
        """
        self._commit_hooks.append(hook)

    def remove_commit_hook(self, hook: Callable[[TableInfo, int], None]) -> None:
        """Stop calling a hook added with add_commit_hook."""
        with contextlib.suppress(ValueError):
            self._commit_hooks.remove(hook)

    def reap(self) -> int:
        """Abort transactions idle past their timeout and roll back what they left; returns how many."""
        n = 0
        for t in self.store.expired_txns():
            self.store.end_txn(t.id, "ABORTED")
            n += 1
        return n

    def recover(self, *, everywhere: bool = False) -> dict[str, list[int]]:
        """Roll back unratified Delta versions of governed tables no live writer holds.

        A writer writes past the catalog's version only while it holds the table's lock, and
        releases the lock as it ratifies; so a crash leaves such versions only on tables whose
        lock is still taken, the ones looked at by default (what opening a lake does: no cost
        per table). `everywhere=True` looks at every governed table. Either way the next writer
        of a table rolls back whatever is left (see `writer_table`)."""
        done = {}
        for info in self.store.list_tables() if everywhere else self.store.locked_tables():
            if info.table_type != "GOVERNED":
                continue
            try:
                if not recovery.has_versions_past(info.location, info.version):
                    continue
            except OSError:
                continue
            token = uuid.uuid4().hex
            try:
                pointer = locks.acquire(
                    self.store, info.id, token, self.settings.write_lease_s, wait_s=0.0
                )
            except LakeError:
                continue  # a live writer holds it and will roll back on its own
            try:
                removed = (
                    recovery.rollback_past(
                        info.location, pointer, lambda t=token: locks.valid(self.store, t)
                    )
                    if pointer is not None
                    else []
                )
            finally:
                self.store.unlock(token, [info.id])
            if removed:
                done[info.full_name] = removed
        return done


def _canonical(location: str) -> str:
    return (
        storage.normalize(location)
        if storage.is_remote(location)
        else str(Path(location).resolve())
    )


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
