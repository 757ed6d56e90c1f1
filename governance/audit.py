"""The audit trail: every query, write, denial and policy reload, in the table `system.audit`.

A record is committed to the metadata store before the audited call returns (one small store
transaction, never a Delta commit on the query path); a background flusher moves records into
the Delta table in batches, exactly once (a Delta application transaction remembers the last
sequence number it holds). Reading `system.audit` flushes first.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from catalog import storage
from catalog.catalog import Catalog
from catalog.errors import AccessDenied, LakeError
from catalog.writes import app_version

TABLE = "system.audit"
APP_ID = "lakeward.audit"
SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("user", pa.string()),
        ("action", pa.string()),
        ("statement", pa.string()),
        ("tables", pa.string()),
        ("decision", pa.string()),
        ("reason", pa.string()),
        ("rules", pa.string()),
        ("rows", pa.int64()),
        ("auth", pa.string()),  # how the principal was established (asserted, token, ...)
        ("client", pa.string()),  # the caller's address, for remote clients
    ]
)
SYSTEM_USER = "lakeward"  # the system principal's name, on the audit table's own commits
# Closing a lake moves queued records into system.audit only when they have waited this long
# (or the lake's flusher has been running): see AuditLog.close.
CLOSE_FLUSH_AGE_S = 60.0


class AuditLog:
    """Durable, fail-closed audit records flushed to `system.audit`."""

    def __init__(self, catalog: Catalog, flush_interval_s: float = 2.0):
        self.catalog = catalog
        self.interval = flush_interval_s
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._rounds = 0  # flush rounds the background flusher has run

    def record(
        self,
        user: str,
        action: str,
        statement: str,
        decision: str,
        *,
        tables: Iterable[tuple[str, int]] = (),
        rules: Iterable[str] = (),
        rows: int | None = None,
        reason: str = "",
        auth: str = "",
        client: str = "",
    ) -> None:
        """Commit one audit record; AccessDenied (fail closed) if it cannot be written."""
        rec = make_record(
            user,
            action,
            statement,
            decision,
            tables=tables,
            rules=rules,
            rows=rows,
            reason=reason,
            auth=auth,
            client=client,
        )
        try:
            self.catalog.store.audit_append(rec)
        except Exception as e:  # noqa: BLE001 - any failure to audit refuses the call
            raise AccessDenied(
                f"the audit log cannot be written ({type(e).__name__}); refused"
            ) from None
        self._start()

    def started(self) -> None:
        """Make sure the flusher runs (for records committed inside a catalog commit)."""
        self._start()

    def _start(self) -> None:
        if self._thread is None and self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="lakeward-audit", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._rounds += 1
            with contextlib.suppress(Exception):  # records stay queued; the next round retries
                self.flush()

    def ensure_table(self) -> None:
        """Create `system.audit` if it does not exist yet."""
        self.catalog.create_database("system", "Lakeward's own tables", exist_ok=True)
        self.catalog.create_table(
            TABLE,
            SCHEMA,
            description="Audit trail of every query, write and denial",
            user=SYSTEM_USER,
            exist_ok=True,
        )

    def flush(self, limit: int = 50_000) -> int:
        """Move queued records into `system.audit`; returns how many were written.

        Exactly once: the table records the last sequence it holds as a Delta application
        transaction, checked again under the table lock before the append commits.
        """
        with self._flush_lock:
            for _ in range(5):
                pending = self.catalog.store.audit_pending(limit)
                if not pending:
                    return 0
                self.ensure_table()
                info = self.catalog.table(TABLE)
                seen = storage.open_delta(info.location, self.catalog.current_version(info))
                done = app_version(seen, APP_ID) or 0
                fresh = [(seq, rec) for seq, rec in pending if seq > done]
                top = pending[-1][0]
                if fresh:
                    wrote = self.catalog.implicit(SYSTEM_USER).append_once(
                        TABLE,
                        _table(fresh),
                        app_txns=[(APP_ID, top)],
                        # Under the lock: nobody flushed since we looked.
                        precheck=lambda dt, done=done: (app_version(dt, APP_ID) or 0) == done,
                        schema_mode="merge",  # older audit tables gain the newer columns
                        params={"upto": top},
                        operation="AUDIT",
                    )
                    if not wrote:
                        continue  # another process flushed meanwhile: look again
                self.catalog.store.audit_forget(top)
                return len(fresh)
            return 0

    def close(self) -> None:
        """Stop the flusher and flush what is queued if it is due (best effort: queued records
        are durable in the store, and any client's flush or read of system.audit moves them).

        A lake whose flusher has been running (a server, a notebook) flushes what is left. A
        short-lived one (a CLI command) leaves its few records queued unless the oldest has
        waited `CLOSE_FLUSH_AGE_S`: a Delta commit of system.audit per command would cost each
        command that commit, and the next one a rebuild of the table's snapshot."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(LakeError, OSError):
            if self._rounds or self._due():
                self.flush()

    def _due(self) -> bool:
        oldest = self.catalog.store.audit_pending(1)
        if not oldest:
            return False
        at = datetime.fromisoformat(oldest[0][1]["at"])
        return (datetime.now(UTC) - at).total_seconds() >= CLOSE_FLUSH_AGE_S


def make_record(
    user: str,
    action: str,
    statement: str,
    decision: str,
    *,
    tables: Iterable[tuple[str, int]] = (),
    rules: Iterable[str] = (),
    rows: int | None = None,
    reason: str = "",
    auth: str = "",
    client: str = "",
) -> dict[str, Any]:
    """One audit record as it is queued (and later written to system.audit)."""
    return {
        "auth": auth,
        "client": client,
        "at": datetime.now(UTC).isoformat(),
        "user": user,
        "action": action,
        "statement": statement,
        "tables": [{"table": t, "version": v} for t, v in tables],
        "decision": decision,
        "reason": reason,
        "rules": list(rules),
        "rows": rows,
    }


def _table(rows: list[tuple[int, dict[str, Any]]]) -> pa.Table:
    cols: dict[str, list[Any]] = {f.name: [] for f in SCHEMA}
    for seq, rec in rows:
        cols["seq"].append(seq)
        cols["at"].append(datetime.fromisoformat(rec["at"]))
        for k in ("user", "action", "statement", "decision", "reason", "auth", "client"):
            cols[k].append(rec.get(k) or "")
        cols["tables"].append(json.dumps(rec.get("tables") or []))
        cols["rules"].append(json.dumps(rec.get("rules") or []))
        cols["rows"].append(rec.get("rows"))
    return pa.table(cols, schema=SCHEMA)
