"""The lake's config file, `lake.toml` in the root; every key has a default."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalog.errors import InvalidArgument
from catalog.settings import Settings

DEFAULT_TOML = """\
# Lakeward lake configuration. Every key is optional; these are the defaults.

[catalog]
# url = "postgresql://lake@db-host/lake"  # metadata store (else $LAKE_CATALOG, else SQLite here)
txn_timeout_s = 300        # explicit transactions idle longer than this are aborted
lock_wait_s = 60           # a writer waits this long for a busy table, then CommitConflict
checkpoint_interval = 100  # Delta checkpoint every N committed versions
auto_compact = true        # background compaction (thresholds are table properties compaction.*)

[audit]
flush_interval_s = 2       # queued audit records move to system.audit this often

[query]
# memory_limit = "8GB"
# threads = 2
"""


@dataclass(frozen=True)
class Config:
    catalog: Settings = field(default_factory=Settings)
    memory_limit: str | None = None
    threads: int | None = None
    audit_flush_s: float = 2.0
    catalog_url: str | None = None  # [catalog] url: the metadata store (None: see lake.connect)
    raw: dict[str, Any] = field(default_factory=dict)


def load_config(root: Path) -> Config:
    """Read `root/lake.toml` (missing file: defaults); InvalidArgument names a bad key."""
    path = Path(root) / "lake.toml"
    if not path.exists():
        return Config()
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument(f"{path}: {e}") from None
    cat = dict(raw.get("catalog", {}))
    url = cat.pop("url", None)
    if url is not None and not isinstance(url, str):
        raise InvalidArgument(f"{path}: [catalog] url must be a string like postgresql://...")
    known = set(Settings.__dataclass_fields__)
    unknown = set(cat) - known
    if unknown:
        raise InvalidArgument(
            f"{path}: unknown [catalog] key(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    try:
        settings = Settings(**{k: type(getattr(Settings(), k))(v) for k, v in cat.items()})
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"{path}: bad [catalog] value: {e}") from None
    q = raw.get("query", {})
    audit = raw.get("audit", {})
    return Config(
        settings,
        q.get("memory_limit"),
        q.get("threads"),
        float(audit.get("flush_interval_s", 2.0)),
        url,
        raw,
    )
