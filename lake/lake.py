"""The front door: `lake.connect(...)` returns a `Lake`."""

from __future__ import annotations

import atexit
import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from catalog import compaction
from catalog.catalog import Catalog
from catalog.data import to_arrow
from catalog.engine import Engine
from catalog.errors import AccessDenied, InvalidArgument, LakeError
from catalog.store import load_store
from catalog.txn import Transaction
from catalog.vacuum import vacuum as vacuum_table
from governance.access import Access
from governance.audit import AuditLog, make_record
from lake import query
from lake.autocompact import AutoCompactor
from lake.config import DEFAULT_TOML, load_config
from lake.policy import Policy, authorize_write

if TYPE_CHECKING:
    from batch.api import Batch
    from catalog.ingestion.crawl import CrawlResult
    from catalog.ingestion.ingest import IngestResult
    from catalog.ingestion.stream import StreamResult

T = TypeVar("T")


class LakeTransaction(Transaction):
    """A catalog transaction that can also run queries on its own snapshot and writes.

    Its writes are governed and audited like the lake's single writes.
    """

    lake: Lake

    def write(self, name: str, data: Any, mode: str = "append", **kw: Any) -> None:
        data = to_arrow(data)

        def go() -> None:
            actions = ["insert"] if mode == "append" else ["insert", "delete"]
            w = authorize_write(
                self.lake.policy,
                self.user,
                name,
                actions,
                columns=data.schema.names,
                where=kw.get("where"),
            )
            if w != kw.get("where") and mode == "overwrite":
                raise AccessDenied(
                    f"{self.user} sees only some rows of {name}; overwrite would replace hidden rows"
                )
            super(LakeTransaction, self).write(name, data, mode, **kw)

        self.lake._governed(
            self.user,
            "write",
            name,
            f"{mode} {name} (transaction {self.id})",
            go,
            rows=getattr(data, "num_rows", None),
        )

    def delete(self, name: str, where: str | None = None) -> dict[str, Any]:
        def go() -> dict[str, Any]:
            w = authorize_write(self.lake.policy, self.user, name, ["delete"], where=where)
            return super(LakeTransaction, self).delete(name, w)

        return self.lake._governed(
            self.user, "delete", name, f"DELETE FROM {name} WHERE {where}", go
        )

    def update(self, name: str, set: Mapping[str, str], where: str | None = None) -> dict[str, Any]:
        def go() -> dict[str, Any]:
            w = authorize_write(
                self.lake.policy,
                self.user,
                name,
                ["update"],
                columns=list(set or {}),
                reads=[str(v) for v in (set or {}).values()],
                where=where,
            )
            return super(LakeTransaction, self).update(name, set, w)

        return self.lake._governed(
            self.user, "update", name, f"UPDATE {name} SET {dict(set or {})}", go
        )

    def merge(self, name: str, source: Any, on: Any, **actions: Any) -> dict[str, Any]:
        source = to_arrow(source)

        def go() -> dict[str, Any]:
            needed = ["insert", "update"] + (["delete"] if "delete" in actions.values() else [])
            if authorize_write(
                self.lake.policy, self.user, name, needed, columns=source.schema.names
            ):
                raise AccessDenied(
                    f"{self.user} sees only some rows of {name}; merge needs the whole table"
                )
            return super(LakeTransaction, self).merge(name, source, on, **actions)

        return self.lake._governed(self.user, "merge", name, f"MERGE INTO {name}", go)

    def sql(self, sql: str) -> pa.Table:
        """Run a read-only query inside the transaction: its start snapshot plus its own writes."""
        self._check_active()
        return query.run_sql(self.lake, sql, self.user, tx=self)


class Lake:
    """One lake: a root folder of Delta tables, a metadata store, a query engine."""

    def __init__(
        self,
        root: str | Path,
        catalog: str | None = None,
        ray_address: str | None = None,
        policy: str | Path | None = None,
    ):
        if "://" in str(root) and not str(root).startswith("file://"):
            raise InvalidArgument(
                f"object-store roots ({str(root).split('://')[0]}://) are not supported by this build; "
                "use a local folder"
            )
        self.root = Path(str(root).removeprefix("file://")).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        toml = self.root / "lake.toml"
        if not toml.exists():
            toml.write_text(DEFAULT_TOML)
        self.config = load_config(self.root)
        self.store = load_store(catalog, self.root)
        self.catalog = Catalog(self.root, self.store, self.config.catalog)
        self.engine = Engine(self.root, self.config.memory_limit, self.config.threads)
        self.engine.prepare()
        self.ray_address = ray_address
        self.audit = AuditLog(self.catalog, self.config.audit_flush_s)
        self._audit_tl = threading.local()
        folder = Path(policy).expanduser().resolve() if policy else self.root / "policy"
        if policy and not folder.is_dir():
            raise InvalidArgument(f"policy folder {folder} does not exist")
        self.policy = Policy(self, folder if folder.is_dir() else None)
        self.catalog.reap()
        self.catalog.recover()
        self.autocompact = (
            AutoCompactor(self.catalog).start() if self.config.catalog.auto_compact else None
        )
        self._closed = False
        # Background threads inside native code at interpreter exit can crash the process.
        atexit.register(self.close)

    @property
    def access(self) -> Access:
        """The governance seam in force: the policy's views, or open access without a policy."""
        return self.policy.access

    # context manager ---------------------------------------------------------------------------
    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @functools.cached_property
    def batch(self) -> Batch:
        """Batch jobs of this lake (the scheduler starts on first use)."""
        from batch.api import Batch

        return Batch.from_lake(
            self,
            authorize_write=lambda user, table, columns: authorize_write(
                self.policy, user, table, ["insert"], columns=columns
            ),
            lake_factory=functools.partial(
                connect,
                str(self.root),
                catalog=self.store.url,
                ray_address=self.ray_address,
                policy=self.policy.folder,
            ),
        )

    def close(self) -> None:
        """Stop batch work, flush the audit trail, release the engine and the store (idempotent)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if self.autocompact is not None:
            self.autocompact.close()
        if "batch" in self.__dict__:
            self.batch.close()  # first: it forwards queued submission records to the audit
        self.audit.close()
        self.engine.close()
        self.store.close()

    # queries -----------------------------------------------------------------------------------
    def sql(self, sql: str, *, user: str) -> pa.Table:
        """Run a read-only SQL query over catalog tables as `user`; returns a pyarrow.Table."""
        return query.run_sql(self, sql, user)

    def explain(self, sql: str, *, user: str) -> query.Explain:
        """The rewritten SQL for `sql` as `user`, and the tables, versions and rules it reads."""
        return query.explain(self, sql, user)

    # writes ------------------------------------------------------------------------------------
    def transaction(self, *, user: str, timeout_s: float | None = None) -> LakeTransaction:
        """Start a multi-table transaction; use it as a context manager or commit/cancel it."""
        self.catalog.reap()
        tx = LakeTransaction(self.catalog, user, timeout_s=timeout_s)
        tx.lake = self
        return tx

    begin = transaction

    def _implicit(self, user: str) -> Transaction:
        tx = self.catalog.implicit(user)
        tx.audit_record = getattr(self._audit_tl, "rec", None)
        return tx

    def _governed(
        self,
        user: str,
        action: str,
        table: str,
        statement: str,
        fn: Callable[[], T],
        *,
        rows: int | None = None,
    ) -> T:
        rec = make_record(user, action, statement, "allowed", rows=rows)
        self._audit_tl.rec = rec  # picked up by _implicit: queued inside the commit itself
        try:
            result = fn()
        except AccessDenied as e:
            self.audit.record(
                user, action, statement, "denied", tables=[(table, -1)], reason=str(e)
            )
            raise
        except LakeError as e:
            self.audit.record(user, action, statement, "error", tables=[(table, -1)], reason=str(e))
            raise
        finally:
            self._audit_tl.rec = None
        if rec.get("queued"):
            self.audit.started()
        else:  # nothing to commit (e.g. a delete matching no rows): audit on its own
            info = self.catalog.table(table)
            self.audit.record(
                user,
                action,
                statement,
                "allowed",
                tables=[(info.full_name, info.version)],
                rows=rows,
            )
        return result

    def write(
        self,
        table: str,
        data: Any,
        *,
        user: str,
        mode: str = "append",
        schema_mode: str | None = None,
        where: str | None = None,
    ) -> None:
        """Append or overwrite rows in one atomic commit (needs insert; overwrite also delete)."""
        data = to_arrow(data)

        def go() -> None:
            actions = ["insert"] if mode == "append" else ["insert", "delete"]
            w = authorize_write(
                self.policy, user, table, actions, columns=data.schema.names, where=where
            )
            if w != where and mode == "overwrite":
                raise AccessDenied(
                    f"{user} sees only some rows of {table}; overwrite would replace hidden rows"
                )
            self._implicit(user).write(table, data, mode, schema_mode=schema_mode, where=where)

        self._governed(
            user,
            mode if mode == "overwrite" else "write",
            table,
            f"{mode} {table}",
            go,
            rows=getattr(data, "num_rows", None),
        )

    def delete(self, table: str, where: str | None = None, *, user: str) -> dict[str, Any]:
        """Delete matching rows in one atomic commit (a filtered user deletes only visible rows)."""

        def go() -> dict[str, Any]:
            w = authorize_write(self.policy, user, table, ["delete"], where=where)
            return self._implicit(user).delete(table, w)

        return self._governed(user, "delete", table, f"DELETE FROM {table} WHERE {where}", go)

    def update(
        self, table: str, set: Mapping[str, str], where: str | None = None, *, user: str
    ) -> dict[str, Any]:
        """Set columns to SQL expressions on matching rows in one atomic commit."""

        def go() -> dict[str, Any]:
            w = authorize_write(
                self.policy,
                user,
                table,
                ["update"],
                columns=list(set or {}),
                reads=[str(v) for v in (set or {}).values()],
                where=where,
            )
            return self._implicit(user).update(table, set, w)

        return self._governed(
            user, "update", table, f"UPDATE {table} SET {dict(set or {})} WHERE {where}", go
        )

    def merge(
        self, table: str, source: Any, on: str | Sequence[str], *, user: str, **actions: Any
    ) -> dict[str, Any]:
        """Upsert: see `Transaction.merge` for the actions (needs insert and update)."""
        source = to_arrow(source)

        def go() -> dict[str, Any]:
            needed = ["insert", "update"] + (["delete"] if "delete" in actions.values() else [])
            w = authorize_write(self.policy, user, table, needed, columns=source.schema.names)
            if w is not None:
                raise AccessDenied(
                    f"{user} sees only some rows of {table}; merge needs the whole table"
                )
            return self._implicit(user).merge(table, source, on, **actions)

        return self._governed(user, "merge", table, f"MERGE INTO {table}", go)

    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Committed versions, newest first, with user and operation."""
        return self.catalog.history(table, limit)

    def compact(
        self,
        table: str,
        *,
        user: str,
        target_size: int | None = None,
        zorder: Sequence[str] | None = None,
        where: str | None = None,
        partition: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Rewrite small files into target-size files (z-ordered on `zorder` columns) in one
        ratified OPTIMIZE commit; a second one only if a concurrent delete or overwrite replaced
        some of the files meanwhile (that part is redone on the fresh snapshot).

        where ("region = 'eu'") or partition ({"region": "eu"}) limit it to some partitions.
        Concurrent appends never fail because of it: the rewrite runs without the table lock.
        """
        return compaction.compact(
            self.catalog,
            table,
            user,
            target_size=target_size,
            zorder=zorder,
            where=where,
            partition=partition,
        )

    def vacuum(
        self,
        table: str,
        *,
        user: str,
        retention_hours: float | None = None,
        dry_run: bool = False,
        force: bool = False,
        partition: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Delete files no longer referenced by versions inside the retention window."""
        return vacuum_table(self.catalog, table, user, retention_hours, dry_run, force, partition)

    def crawl(self, path: str | Path, *, database: str, user: str, **kw: Any) -> CrawlResult:
        """Crawl a folder of Parquet/CSV/JSON files into Delta tables (see lake.crawl)."""
        from catalog.ingestion.crawl import crawl

        return crawl(self, path, database=database, user=user, **kw)

    def ingest(
        self, table: str, source: Any, *, user: str, mode: str = "append", **kw: Any
    ) -> IngestResult:
        """Load files or ("sqlalchemy-url", "SELECT ...") into a table, streamed, in one commit."""
        from catalog.ingestion.ingest import ingest

        return ingest(self, table, source, user=user, mode=mode, **kw)

    def append_stream(
        self, table: str, batches: Iterable[tuple[int, Any]], *, user: str, app_id: str
    ) -> StreamResult:
        """Append (seq, data) micro-batches exactly once per app_id, also across crashes."""
        from catalog.ingestion.stream import append_stream

        return append_stream(self, table, batches, user=user, app_id=app_id)

    def recover(self) -> dict[str, list[int]]:
        """Roll back Delta versions a crashed writer left past the catalog's committed version."""
        return self.catalog.recover()


STARTER_POLICY = """\
# Lakeward policy (see the README's Governance section). Deny by default: only what is granted
# here is allowed. Lines: g (roles), g2 (tags), p (grants and denies), p2 (row/cell filters),
# p3 (column masks).
g, {admin}, role:admin
p, role:admin, *, *, allow
p, role:admin, queue:*, submit, allow
p, role:auditor, system.audit, select, allow
"""


def write_starter_policy(root: Path, admin: str) -> Path:
    """Write root/policy/policy.csv making `admin` the admin, unless a policy already exists."""
    folder = Path(root).expanduser().resolve() / "policy"
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "policy.csv"
    if not csv.exists():
        csv.write_text(STARTER_POLICY.format(admin=admin))
    return folder


def connect(
    root: str | Path,
    catalog: str | None = None,
    ray_address: str | None = None,
    policy: str | Path | None = None,
) -> Lake:
    """Open (creating if missing) the lake at `root`; see the README for the options."""
    return Lake(root, catalog=catalog, ray_address=ray_address, policy=policy)
