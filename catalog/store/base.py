"""The metadata store interface: one small abstract class, backends chosen from a URL."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class DatabaseInfo:
    name: str
    description: str = ""
    owner: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass(frozen=True)
class TableInfo:
    id: int
    database: str
    name: str
    location: str
    table_type: str  # GOVERNED (Lakeward writes it) or EXTERNAL (read-only, follows its log)
    schema_json: str
    partition_by: tuple[str, ...]
    description: str
    tags: Mapping[str, str]
    owner: str
    created_at: datetime
    version: int  # the ratified Delta version: readers never see past it
    properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.database}.{self.name}"


@dataclass(frozen=True)
class CommitInfo:
    table_id: int
    version: int
    seq: int
    txn_id: str
    user: str
    operation: str
    committed_at: datetime
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TxnInfo:
    id: str
    user: str
    state: str  # ACTIVE COMMITTED CANCELLED ABORTED
    started_at: datetime
    last_active: datetime
    timeout_s: float
    snapshot_seq: int


@dataclass(frozen=True)
class LockHolder:
    """Who holds a table's write lock, and whether it may be taken from them."""

    token: str
    owner: str  # node:pid:start of the holding process (see catalog.locks.owner_id)
    expired: bool  # its lease ran out: the holder stopped renewing it (dead, paused or cut off)
    txn_state: str | None = None  # the holder's explicit transaction, if it is one
    txn_idle_until: datetime | None = None  # ... which is aborted when idle past this


@dataclass(frozen=True)
class Ratify:
    """One table's move in a commit: the pointer goes from `expected` to `new`."""

    table_id: int
    expected: int
    new: int
    operations: tuple[tuple[int, str, Mapping[str, Any]], ...]  # (version, operation, params)


@dataclass(frozen=True)
class PolicyRecord:
    """The policy installed in a catalog: its text, content version and who installed it."""

    seq: int
    version: str
    csv: str
    model: str | None
    source: str
    installed_by: str
    installed_at: datetime


class MetadataStore(abc.ABC):
    """Databases, tables, ratified versions, transactions and table locks.

    The commit point of every write is `ratify`: one store transaction that moves the pointers of
    all tables a Lakeward transaction touched, or none of them.
    """

    url: str

    # databases
    @abc.abstractmethod
    def create_database(self, info: DatabaseInfo) -> None: ...
    @abc.abstractmethod
    def get_database(self, name: str) -> DatabaseInfo | None: ...
    @abc.abstractmethod
    def list_databases(self) -> list[DatabaseInfo]: ...
    @abc.abstractmethod
    def drop_database(self, name: str) -> None: ...

    # tables
    @abc.abstractmethod
    def create_table(self, info: TableInfo, user: str, operation: str) -> TableInfo: ...
    @abc.abstractmethod
    def get_table(self, database: str, name: str) -> TableInfo | None: ...
    @abc.abstractmethod
    def get_tables(self, names: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TableInfo]:
        """The entries of those of the (database, table) names that exist, read in one
        snapshot of the store (one statement)."""

    @abc.abstractmethod
    def get_table_by_id(self, table_id: int) -> TableInfo | None: ...
    @abc.abstractmethod
    def list_tables(self, database: str | None = None) -> list[TableInfo]: ...
    @abc.abstractmethod
    def locked_tables(self) -> list[TableInfo]:
        """The tables whose lock is taken (held, or left by a writer that died)."""

    @abc.abstractmethod
    def drop_table(self, table_id: int) -> None: ...
    @abc.abstractmethod
    def update_table(self, table_id: int, **fields: Any) -> None: ...

    # versions
    @abc.abstractmethod
    def pointers(self, table_ids: Iterable[int]) -> dict[int, int]: ...
    @abc.abstractmethod
    def current_seq(self) -> int: ...
    @abc.abstractmethod
    def versions_at(self, table_ids: Iterable[int], seq: int) -> dict[int, int]: ...
    @abc.abstractmethod
    def commits(self, table_id: int, limit: int | None = None) -> list[CommitInfo]: ...
    @abc.abstractmethod
    def version_at_time(self, table_id: int, when: datetime) -> int | None: ...
    @abc.abstractmethod
    def ratify(
        self,
        moves: list[Ratify],
        txn_id: str,
        user: str,
        lock_token: str,
        close_txn: bool,
        audit: dict[str, Any] | None = None,
    ) -> int: ...

    # transactions
    @abc.abstractmethod
    def begin_txn(self, txn_id: str, user: str, timeout_s: float) -> TxnInfo: ...
    @abc.abstractmethod
    def get_txn(self, txn_id: str) -> TxnInfo | None: ...
    @abc.abstractmethod
    def touch_txn(self, txn_id: str, timeout_s: float | None = None) -> TxnInfo: ...
    @abc.abstractmethod
    def end_txn(self, txn_id: str, state: str) -> None: ...
    @abc.abstractmethod
    def expired_txns(self) -> list[TxnInfo]: ...
    @abc.abstractmethod
    def active_txns(self) -> list[TxnInfo]: ...

    # table locks: leases the holder renews (`renew_locks`) while it lives
    @abc.abstractmethod
    def try_lock(
        self, table_id: int, token: str, owner: str, lease_s: float
    ) -> tuple[int | None, LockHolder | None]:
        """Take the table's lock if free (or already `token`'s).

        (ratified version, None) when taken; (None, holder) when another holds it; (None, None)
        when the table does not exist (then no lock is kept).
        """

    @abc.abstractmethod
    def steal_lock(
        self, table_id: int, old_token: str, token: str, owner: str, lease_s: float
    ) -> int | None:
        """Take the lock from `old_token` (compare-and-set); the ratified version, or None if
        the lock moved meanwhile. The explicit transaction it belonged to is aborted."""

    @abc.abstractmethod
    def renew_locks(self, tokens: Iterable[str], lease_s: float) -> set[str]:
        """Extend the leases of every lock held by `tokens`; returns the tokens still holding one."""

    @abc.abstractmethod
    def unlock(self, token: str, table_ids: Iterable[int] | None = None) -> None: ...

    # named leases: one holder across processes and hosts, free once its holder stops renewing
    @abc.abstractmethod
    def take_lease(self, name: str, owner: str, lease_s: float) -> bool:
        """Take or renew the named lease for `lease_s`; whether `owner` holds it now."""

    @abc.abstractmethod
    def drop_lease(self, name: str, owner: str) -> None:
        """Release the named lease if `owner` holds it."""

    @abc.abstractmethod
    def lock_holder(self, table_id: int) -> LockHolder | None: ...

    # identity
    @abc.abstractmethod
    def catalog_id(self) -> int:
        """A number chosen when the catalog was created: the same for every URL that reaches it."""

    # audit
    @abc.abstractmethod
    def audit_append(self, record: dict[str, Any]) -> int: ...
    @abc.abstractmethod
    def audit_pending(self, limit: int) -> list[tuple[int, dict[str, Any]]]: ...
    @abc.abstractmethod
    def audit_forget(self, upto_seq: int) -> None: ...

    # policy ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def policy(self) -> PolicyRecord | None:
        """The policy in force (the newest installed), or None if the catalog has none."""

    @abc.abstractmethod
    def policy_seq(self) -> int:
        """The sequence number of the policy in force (0: none); one indexed read."""

    @abc.abstractmethod
    def install_policy(
        self, record: PolicyRecord, *, expect_seq: int, audit: dict[str, Any] | None = None
    ) -> int:
        """Install a policy if the one in force is still `expect_seq` (compare-and-set);
        returns the new sequence number, or 0 if another client installed one meanwhile.
        `audit` is queued in the same store transaction."""

    # retention: rows of what the log no longer holds go (see catalog.retention)
    @abc.abstractmethod
    def prune_commits(self, table_id: int, below_version: int) -> int:
        """Delete a table's commit rows of versions below `below_version`; returns how many."""

    @abc.abstractmethod
    def oldest_commit(self, table_id: int) -> CommitInfo | None:
        """The table's oldest commit row still kept (None if it has none)."""

    @abc.abstractmethod
    def prune_transactions(self, ended_before: datetime) -> int:
        """Delete transactions that ended before `ended_before`; returns how many."""

    @abc.abstractmethod
    def row_counts(self) -> dict[str, int]:
        """Rows per store table (commits, transactions, audit_pending, ...): for monitoring."""

    @abc.abstractmethod
    def close(self) -> None: ...
