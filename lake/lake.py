"""The front door: `lake.connect(...)` returns a `Lake`.

A Lake wires the governed core together for one root: the catalog and its store, the locked
engine, the audit trail, the policy in force (kept in the catalog), and the one checkpoint
(`governance.gate.Gate`) every operation below goes through. Embedded, `user=` names the
principal a call acts for (trusted, like DuckDB's or SQLite's caller); without it, a call acts
as the lake's owner (administration).
"""

from __future__ import annotations

import atexit
import functools
import getpass
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from catalog import storage
from catalog.catalog import Catalog
from catalog.engine import Engine
from catalog.errors import InvalidArgument, LakeError
from catalog.store.roots import open_root_store
from catalog.txn import Transaction
from governance.audit import AuditLog
from governance.catalog_ops import GovernedCatalog
from governance.gate import Audit, Gate
from governance.locations import Locations
from governance.maintenance import Maintenance
from governance.policy.state import PolicyState
from governance.principal import Principal
from governance.sql import Explain, Queries
from governance.writer import GovernedWriter
from lake.autocompact import AutoCompactor
from lake.config import DEFAULT_TOML, load_config
from lake.policy import Policy
from lake.server import SCHEMES as SERVER_SCHEMES

if TYPE_CHECKING:
    from batch.api import Batch
    from catalog.ingestion.crawl import CrawlResult
    from catalog.ingestion.ingest import IngestResult
    from catalog.ingestion.stream import StreamResult
    from governance.loads import Loads
    from lake.batch_port import Handle
    from lake.server.client import RemoteLake


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (e.g. some containers)
        return "owner"


class LakeTransaction:
    """A multi-table transaction for one principal: governed, audited writes that commit all
    or nothing, and queries over its start snapshot plus its own writes."""

    def __init__(self, lake: Lake, tx: Transaction, principal: Principal):
        self.lake = lake
        self.tx = tx
        self.principal = principal
        self._writer = GovernedWriter(lake.gate, principal, tx)

    @property
    def id(self) -> str:
        return self.tx.id

    @property
    def state(self) -> str:
        return self.tx.state

    @property
    def user(self) -> str:
        return self.principal.name

    def __enter__(self) -> LakeTransaction:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.tx.state != "ACTIVE":
            return
        if exc_type is None:
            self.commit()
        else:
            self.cancel()

    def write(self, name: str, data: Any, mode: str = "append", **kw: Any) -> None:
        """Append or overwrite rows (see `Lake.write`)."""
        self._writer.write(name, data, mode=mode, **kw)

    def delete(self, name: str, where: str | None = None) -> dict[str, Any]:
        """Delete matching rows (see `Lake.delete`)."""
        return self._writer.delete(name, where)

    def update(self, name: str, set: Mapping[str, str], where: str | None = None) -> dict[str, Any]:
        """Set columns on matching rows (see `Lake.update`)."""
        return self._writer.update(name, set, where)

    def merge(self, name: str, source: Any, on: Any, **actions: Any) -> dict[str, Any]:
        """Upsert (see `Lake.merge`)."""
        return self._writer.merge(name, source, on, **actions)

    def sql(self, sql: str) -> pa.Table:
        """Run a read-only query inside the transaction: its start snapshot plus its own writes."""
        self.tx._check_active()
        return self.lake.queries.sql(self.principal, sql, self.tx)

    def commit(self) -> None:
        """Make every write visible at once, or none (raises CommitConflict)."""

        def go(audit: Audit) -> None:
            self.tx.audit_record = audit.slot  # queued in the ratifying store transaction
            self.tx.commit()

        self.lake.gate.run(self.principal, "commit", f"COMMIT transaction {self.id}", go)

    def cancel(self) -> None:
        """Roll back every write of the transaction."""
        self.tx.cancel()

    def extend(self, timeout_s: float | None = None) -> None:
        """Keep the transaction alive; optionally with a new idle timeout."""
        self.tx.extend(timeout_s)


class Lake:
    """One lake: a root folder of Delta tables, a metadata store, a query engine, a policy."""

    def __init__(
        self,
        root: str | Path,
        catalog: str | None = None,
        ray_address: str | None = None,
        policy: str | Path | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ):
        given = dict(storage_options or {})
        if storage.is_remote(str(root)) or str(root).startswith("s3a://"):
            # The root: an object-store prefix (s3://bucket/prefix); see catalog.storage.
            self.root: Path | str = storage.normalize(str(root))
            storage.configure(self.root, given)
            storage.create(storage.join(self.root, "lake.toml"), DEFAULT_TOML.encode())
        else:
            if "://" in str(root) and not str(root).startswith("file://"):
                storage.normalize(str(root))  # InvalidArgument naming the scheme
            self.root = Path(str(root).removeprefix("file://")).expanduser().resolve()
            self.root.mkdir(parents=True, exist_ok=True)
            toml = self.root / "lake.toml"
            if not toml.exists():
                toml.write_text(DEFAULT_TOML)
        self.location = str(self.root)
        self.config = load_config(self.root)
        # Options: connect's, over lake.toml [storage], over the AWS_* environment.
        self.storage_options = {**self.config.storage, **given}
        storage.configure(self.location, self.storage_options)
        if self.storage_options:
            storage.configure(None, self.storage_options)
        # DuckDB takes ~20 ms to start, mostly outside the GIL: it starts first, so a process's
        # first query (the CLI's, a restarted server's) finds it ready rather than waiting.
        self.engine = Engine(self.root, self.config.memory_limit, self.config.threads)
        self.engine.prepare()
        try:
            self.store = open_root_store(self.root, catalog, self.config.catalog_url)
        except BaseException:
            self.engine.close()
            raise
        self._closed = False
        try:
            self._open(ray_address, policy)
        except BaseException:
            self.engine.close()
            self.store.close()
            raise
        # Background threads inside native code at interpreter exit can crash the process.
        atexit.register(self.close)

    def _open(self, ray_address: str | None, policy: str | Path | None) -> None:
        raw = Catalog(self.root, self.store, self.config.catalog)
        self.ray_address = ray_address
        self.audit = AuditLog(raw, self.config.audit_flush_s)
        state = PolicyState(self.store, self._table_lookup)
        self.gate = Gate(raw, state, self.audit)
        self.owner = Principal.owner(_os_user())
        self.locations = Locations(self.gate.owned)
        self.catalog = GovernedCatalog(self.gate, self.locations, self.principal)
        self.queries = Queries(self.gate, self.engine)
        self.maintenance = Maintenance(self.gate)
        self.policy = Policy(self.gate, state, self.principal)
        local_policy = None if storage.is_remote(self.location) else Path(self.root) / "policy"
        folder = Path(policy).expanduser().resolve() if policy else local_policy
        if policy and not folder.is_dir():
            raise InvalidArgument(f"policy folder {folder} does not exist")
        self.policy.open(
            folder if folder is not None and folder.is_dir() else None, explicit=policy is not None
        )
        self._policy_arg = folder if policy else None
        raw.reap()
        raw.recover()
        self.autocompact = (
            AutoCompactor(raw, on_compacted=self._audit_compaction).start()
            if self.config.catalog.auto_compact
            else None
        )

    def _audit_compaction(self, info: Any, metrics: dict[str, Any]) -> None:
        self.gate.record(
            Principal.system(),
            "compact",
            f"auto-compaction of {info.full_name}",
            "allowed",
            tables=[(info.full_name, metrics.get("versions", [info.version])[-1])],
            reason=f"{metrics.get('numFilesRemoved', 0)} files -> {metrics.get('numFilesAdded', 0)}",
        )

    # principals --------------------------------------------------------------------------------
    def principal(self, user: Any = None) -> Principal:
        """The principal a call acts for: `user=` as given (a name or a Principal), or the
        lake's owner when None. InvalidArgument for a name that cannot be a user (rule 9)."""
        if user is None:
            return self.owner
        if isinstance(user, Principal):
            return user
        return Principal.user(user)

    def _table_lookup(self, name: str) -> tuple[list[str], dict[str, dict[str, str]]] | None:
        parts = name.split(".")
        if len(parts) < 2:
            return None
        raw = self.gate.catalog
        try:
            info = raw.table(".".join(parts[:2]), cached=True)
            columns = list(raw.snapshot(info).schema.names)
            db_tags = raw.database_tags(info.database)
        except LakeError:
            return None
        return columns, {info.database: db_tags, info.full_name: dict(info.tags)}

    # context manager ---------------------------------------------------------------------------
    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @functools.cached_property
    def loads(self) -> Loads:
        """Crawl, ingest and streams (loaded on first use: their readers of CSV, JSON and
        Parquet sources are a cost that queries and catalog commands never pay)."""
        from governance.loads import Loads

        return Loads(self.gate, self.catalog, self.locations)

    @functools.cached_property
    def batch(self) -> Batch:
        """Batch jobs of this lake (the scheduler starts on first use)."""
        # Loaded on first use, not a circle: catalog and SQL commands never pay for the batch
        # stack (batch never imports lake).
        from batch.api import Batch
        from lake.batch_port import BatchPort

        return Batch(
            root=self.root,
            store_url=self.store.url,
            config=self.config.raw,
            port=BatchPort(self.gate, self.queries, self.principal),
            ray_address=self.ray_address,
            handle_factory=functools.partial(
                open_handle,
                str(self.root),
                catalog=self.store.url,
                ray_address=self.ray_address,
                policy=str(self._policy_arg) if self._policy_arg else None,
                # the scheduler actor may run on a node without this process's environment
                storage_options=(
                    storage.options(self.location)
                    if storage.is_remote(self.location)
                    else self.storage_options
                )
                or None,
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
    def sql(self, sql: str, *, user: Any = None) -> pa.Table:
        """Run a read-only SQL query over catalog tables as `user`; returns a pyarrow.Table."""
        return self.queries.sql(self.principal(user), sql)

    def explain(self, sql: str, *, user: Any = None) -> Explain:
        """The SQL that runs for `sql` as `user`, and the tables, versions and rules it reads."""
        return self.queries.explain(self.principal(user), sql)

    # writes ------------------------------------------------------------------------------------
    def transaction(self, *, user: Any = None, timeout_s: float | None = None) -> LakeTransaction:
        """Start a multi-table transaction; use it as a context manager or commit/cancel it."""
        p = self.principal(user)
        return LakeTransaction(self, self.gate.catalog.transaction(p.name, timeout_s=timeout_s), p)

    begin = transaction

    def write(
        self,
        table: str,
        data: Any,
        *,
        user: Any = None,
        mode: str = "append",
        schema_mode: str | None = None,
        where: str | None = None,
    ) -> None:
        """Append or overwrite rows in one atomic commit (needs insert; overwrite also delete)."""
        GovernedWriter(self.gate, self.principal(user)).write(
            table, data, mode=mode, schema_mode=schema_mode, where=where
        )

    def delete(self, table: str, where: str | None = None, *, user: Any = None) -> dict[str, Any]:
        """Delete matching rows in one atomic commit (a filtered user deletes only visible rows)."""
        return GovernedWriter(self.gate, self.principal(user)).delete(table, where)

    def update(
        self, table: str, set: Mapping[str, str], where: str | None = None, *, user: Any = None
    ) -> dict[str, Any]:
        """Set columns to SQL expressions on matching rows in one atomic commit."""
        return GovernedWriter(self.gate, self.principal(user)).update(table, set, where)

    def merge(
        self, table: str, source: Any, on: str | Sequence[str], *, user: Any = None, **actions: Any
    ) -> dict[str, Any]:
        """Upsert: see `catalog.txn.Transaction.merge` for the actions (needs insert and update)."""
        return GovernedWriter(self.gate, self.principal(user)).merge(table, source, on, **actions)

    def history(
        self, table: str, limit: int | None = None, *, user: Any = None
    ) -> list[dict[str, Any]]:
        """Committed versions, newest first, with user and operation."""
        return self.catalog.history(table, limit, user=user)

    def compact(
        self,
        table: str,
        *,
        user: Any = None,
        target_size: int | None = None,
        zorder: Sequence[str] | None = None,
        where: str | None = None,
        partition: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Rewrite small files into target-size files (z-ordered on `zorder` columns) in one
        ratified OPTIMIZE commit (needs alter). where ("region = 'eu'") or partition
        ({"region": "eu"}) limit it to some partitions. Concurrent appends never fail because
        of it: the rewrite runs without the table lock."""
        return self.maintenance.compact(
            self.principal(user),
            table,
            target_size=target_size,
            zorder=zorder,
            where=where,
            partition=partition,
        )

    def vacuum(
        self,
        table: str,
        *,
        user: Any = None,
        retention_hours: float | None = None,
        dry_run: bool = False,
        force: bool = False,
        partition: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Delete files no version inside the retention window needs (needs alter); returns
        them, relative to the table's folder."""
        return self.maintenance.vacuum(
            self.principal(user),
            table,
            retention_hours=retention_hours,
            dry_run=dry_run,
            force=force,
            partition=partition,
        )

    def crawl(self, path: str | Path, *, database: str, user: Any = None, **kw: Any) -> CrawlResult:
        """Crawl a folder of Parquet/CSV/JSON files into tables (see catalog.ingestion.crawl)."""
        return self.loads.crawl(self.principal(user), path, database=database, **kw)

    def ingest(
        self, table: str, source: Any, *, user: Any = None, mode: str = "append", **kw: Any
    ) -> IngestResult:
        """Load files or ("sqlalchemy-url", "SELECT ...") into a table, streamed, in one commit."""
        return self.loads.ingest(self.principal(user), table, source, mode=mode, **kw)

    def append_stream(
        self, table: str, batches: Iterable[tuple[int, Any]], *, app_id: str, user: Any = None
    ) -> StreamResult:
        """Append (seq, data) micro-batches exactly once per app_id, also across crashes."""
        return self.loads.append_stream(self.principal(user), table, batches, app_id=app_id)

    def committed_seq(self, table: str, app_id: str, *, user: Any = None) -> int | None:
        """The newest micro-batch sequence `append_stream` committed for app_id, or None."""
        return self.loads.committed_seq(self.principal(user), table, app_id)

    def recover(self) -> dict[str, list[int]]:
        """Roll back Delta versions a crashed writer left past the catalog's committed version."""
        return self.gate.catalog.recover(everywhere=True)


STARTER_POLICY = """\
# Lakeward policy (see the README's Governance section). Deny by default: only what is granted
# here is allowed. Lines: g (roles), g2 (tags), p (grants and denies), p2 (row/cell filters),
# p3 (column masks).
g, {admin}, role:admin
p, role:admin, *, *, allow
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
    storage_options: Mapping[str, Any] | None = None,
    **server: Any,
) -> Lake | RemoteLake:
    """Open (creating if missing) the lake at `root`: a local folder or `s3://bucket/prefix`
    (then `storage_options`, lake.toml [storage] or the AWS_* environment say how to reach
    it, and `catalog` names the shared catalog); see the README for the options.

    `root` may be a server, "grpc://host:port" or "grpc+tls://host:port": the lake it serves,
    used as the principal `token=` (or `username=` and `password=`, or the client certificate
    `tls_cert=`/`tls_key=`; `tls_ca=` for the server's CA) authenticates; without a credential,
    $LAKE_TOKEN or the token `lake login` saved.
    """
    if str(root).startswith(SERVER_SCHEMES):
        if any(v is not None for v in (catalog, ray_address, policy, storage_options)):
            raise InvalidArgument(
                "catalog=, ray_address=, policy= and storage_options= belong to the server, "
                "not its clients"
            )
        # Loaded for a server URL only: Flight and protobuf are a client's cost, not a lake's.
        from lake.server.client import RemoteLake

        return RemoteLake(str(root), **server)
    if server:
        raise InvalidArgument(f"unexpected arguments {sorted(server)} for a local lake")
    return Lake(
        root,
        catalog=catalog,
        ray_address=ray_address,
        policy=policy,
        storage_options=storage_options,
    )


def open_handle(
    root: str,
    *,
    catalog: str | None,
    ray_address: str | None,
    policy: str | None,
    storage_options: Mapping[str, Any] | None = None,
) -> Handle:
    """Open the lake again for a detached batch scheduler (`batch.port.LakeHandle`)."""
    from lake.batch_port import BatchPort, Handle

    lk = connect(
        root, catalog=catalog, ray_address=None, policy=policy, storage_options=storage_options
    )
    port = BatchPort(lk.gate, lk.queries, lk.principal)
    return Handle(lk.root, lk.store.url, lk.config.raw, port, ray_address, lk.close)
