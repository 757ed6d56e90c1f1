"""The policy in force for one client of a catalog (contract rule 14).

The policy lives in the catalog: every client, root and server of a catalog enforces the one
installed there and picks up a newly installed one on its next decision (one indexed read of the
policy's sequence number). A client that installed its policy from a folder also watches that
folder: an edit is checked and installed, and a broken edit fails closed (PolicyError on every
decision of that client) until it is fixed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from catalog.errors import PolicyError
from catalog.store import MetadataStore, PolicyRecord
from governance.policy.check import load_checked
from governance.policy.engine import PolicyEngine, PolicyText, TableLookup, load_text, read_folder


def _stamp(folder: Path) -> tuple:
    out = []
    for name in ("policy.csv", "model.conf"):
        try:
            st = os.stat(folder / name)
            out.append((name, st.st_mtime_ns, st.st_size, st.st_ino))
        except FileNotFoundError:
            out.append((name, None))
    return tuple(out)


class PolicyState:
    """The catalog's policy as this client enforces it: an engine per installed version."""

    def __init__(self, store: MetadataStore, tables: TableLookup):
        self.store = store
        self.tables = tables
        self._lock = threading.RLock()
        self._seq = -1
        self._engine: PolicyEngine | None = None
        self._watch: Path | None = None
        self._stamp: tuple | None = None
        self._broken: PolicyError | None = None
        # Called with (text, engine-or-None) to install a watched folder's edit; set by the gate.
        self.on_edit: Callable[[PolicyText], Any] | None = None

    # reading -----------------------------------------------------------------------------------
    def engine(self) -> PolicyEngine | None:
        """The engine of the policy in force now (None: the catalog has no policy, so
        governance is off); PolicyError while a watched folder holds a broken edit."""
        self._check_folder()
        seq = self.store.policy_seq()
        if seq != self._seq:
            with self._lock:
                if seq != self._seq:
                    self._load()
        if self._broken is not None:
            raise self._broken
        return self._engine

    def _load(self) -> None:
        record = self.store.policy()
        if record is None:
            self._engine, self._seq = None, 0
            return
        # An installed policy was checked when it was installed; loading it again only parses
        # it (a rule that no longer fits a table fails closed for that table alone).
        loaded = load_text(PolicyText(record.csv, record.model, record.source))
        self._engine = PolicyEngine(loaded, self.tables)
        self._seq = record.seq

    @property
    def version(self) -> str:
        """The content version of the policy in force ('' without one)."""
        engine = self.engine()
        return engine.version if engine is not None else ""

    def installed(self) -> PolicyRecord | None:
        """The catalog's policy record (text, source, who installed it), or None."""
        return self.store.policy()

    # installing --------------------------------------------------------------------------------
    def install(
        self, text: PolicyText, installed_by: str, audit: dict[str, Any] | None = None
    ) -> str:
        """Check `text` against the catalog and install it for every client; returns its
        version. PolicyError (nothing installed) if it has errors."""
        loaded = load_checked(text, self.tables)
        record = PolicyRecord(0, loaded.version, text.csv, text.model, text.source, "", None)
        for _ in range(20):
            expect = self.store.policy_seq()
            current = self.store.policy() if expect else None
            if current is not None and current.version == loaded.version:
                return loaded.version  # already in force: nothing to install, nothing to audit
            record = PolicyRecord(
                0, loaded.version, text.csv, text.model, text.source, installed_by, None
            )
            if self.store.install_policy(record, expect_seq=expect, audit=audit):
                return loaded.version
        raise PolicyError("the policy keeps changing under this client; try again")

    def watch(self, folder: Path) -> None:
        """Watch a policy folder this client installed from: its edits are installed."""
        self._watch = Path(folder).resolve()
        self._stamp = _stamp(self._watch)

    def _check_folder(self) -> None:
        if self._watch is None or self.on_edit is None:
            return
        stamp = _stamp(self._watch)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                self.on_edit(read_folder(self._watch))
                self._broken = None
            except PolicyError as e:
                self._broken = e
            self._stamp = stamp
