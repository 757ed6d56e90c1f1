"""The front door: `lake.connect(...)` returns a `Lake`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from catalog.catalog import Catalog
from catalog.engine import Engine
from catalog.errors import InvalidArgument
from catalog.store import load_store
from catalog.txn import Transaction
from governance.access import Access, OpenAccess
from lake import maintenance, query
from lake.config import DEFAULT_TOML, load_config


class LakeTransaction(Transaction):
    """A catalog transaction that can also run queries on its own snapshot and writes."""

    lake: Lake

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
        self.ray_address = ray_address
        self.policy_path = Path(policy) if policy else None
        self.access: Access = OpenAccess()
        self.catalog.reap()
        self.catalog.recover()

    # context manager ---------------------------------------------------------------------------
    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the engine and the metadata store connections."""
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
        return self.catalog.implicit(user)

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
        """Append or overwrite rows in one atomic commit."""
        self._implicit(user).write(table, data, mode, schema_mode=schema_mode, where=where)

    def delete(self, table: str, where: str | None = None, *, user: str) -> dict[str, Any]:
        """Delete matching rows in one atomic commit."""
        return self._implicit(user).delete(table, where)

    def update(
        self, table: str, set: Mapping[str, str], where: str | None = None, *, user: str
    ) -> dict[str, Any]:
        """Set columns to SQL expressions on matching rows in one atomic commit."""
        return self._implicit(user).update(table, set, where)

    def merge(
        self, table: str, source: Any, on: str | Sequence[str], *, user: str, **actions: Any
    ) -> dict[str, Any]:
        """Upsert: see `Transaction.merge` for the actions."""
        return self._implicit(user).merge(table, source, on, **actions)

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
    ) -> dict[str, Any]:
        """Rewrite small files into target-size files, in one ratified commit."""
        return maintenance.compact(self.catalog, table, user, target_size, zorder)

    def vacuum(
        self,
        table: str,
        *,
        user: str,
        retention_hours: float | None = None,
        dry_run: bool = False,
        force: bool = False,
    ) -> list[str]:
        """Delete files no longer referenced by versions inside the retention window."""
        return maintenance.vacuum(self.catalog, table, user, retention_hours, dry_run, force)

    def recover(self) -> dict[str, list[int]]:
        """Roll back Delta versions a crashed writer left past the catalog's committed version."""
        return self.catalog.recover()


def connect(
    root: str | Path,
    catalog: str | None = None,
    ray_address: str | None = None,
    policy: str | Path | None = None,
) -> Lake:
    """Open (creating if missing) the lake at `root`; see the README for the options."""
    return Lake(root, catalog=catalog, ray_address=ray_address, policy=policy)
