"""The lake's config file, `lake.toml` in the root; every key has a default.

The whole file is validated by pydantic models (`LakeToml`): an unknown section or key, or a
value of the wrong type, is an InvalidArgument with one line per problem. A section another
part of Lakeward reads is added to `LakeToml` with its model.

Validating costs pydantic's import (~0.1 s), so the validated result is kept in
`_lakeward/config.json` keyed by the file's text and the models' source: one-shot commands
then read that instead while the file is unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalog import settings as settings_module
from catalog import storage
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

# Object-store options for s3:// roots and tables (else lake.connect(storage_options=...) and
# the AWS_* environment; keep credentials in the environment).
# [storage]
# AWS_ENDPOINT_URL = "http://127.0.0.1:9000"
# AWS_REGION = "us-east-1"
# AWS_ALLOW_HTTP = "true"

# Batch jobs (lake job submit). Uncomment to change a default.
# [batch]
# preempt_grace_s = 2            # SIGTERM, this many seconds, then SIGKILL (LAKE_PREEMPT_GRACE_S)
# scheduler = "thread"           # "thread" (in the lake process) or "actor" (detached Ray actor)
# ray_num_cpus = 4               # logical CPUs of a local Ray (default: the compute's cpus)
#
# [batch.compute.on_demand]
# cpus = 2                       # capacity (default: this machine's CPUs)
# memory = "8GiB"                # largest job memory (default: this machine's)
#
# [batch.compute.spot]
# cpus = 2
# interruption_rate_per_hour = 0 # the spot interruption simulator (0: only lake job interrupt)
# notice_s = 2                   # SIGTERM notice before SIGKILL for spot interruptions
#
# [batch.queues.default]         # more queues: [batch.queues.NAME]
# priority = 1                   # higher runs first
# compute = ["spot", "on_demand"] # tried in this order (spot only for --spot jobs)
# share_decay_s = 600            # half-life of fair-share usage
# share_by = "user"              # "user", "name" (job name) or "none"
#
# [batch.queues.default.weights]
# alice = 2                      # fair-share weight of a user (others 1)
"""
MEMO = Path("_lakeward") / "config.json"


@dataclass(frozen=True)
class Config:
    catalog: Settings = field(default_factory=Settings)
    memory_limit: str | None = None
    threads: int | None = None
    audit_flush_s: float = 2.0
    catalog_url: str | None = None  # [catalog] url: the metadata store (None: see lake.connect)
    raw: dict[str, Any] = field(default_factory=dict)
    storage: dict[str, str] = field(default_factory=dict)  # [storage]: object-store options


def load_config(root: Path | str) -> Config:
    """Read `root/lake.toml` (missing file: defaults); InvalidArgument names every bad key.

    A root in an object store is read through `catalog.storage` (no memo is kept there)."""
    if storage.is_remote(root):
        try:
            text = storage.read_text(storage.join(str(root), "lake.toml"))
        except FileNotFoundError:
            return Config()
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise InvalidArgument(f"lake.toml is not valid TOML: {e}") from None
        return _config(_validate(raw), raw)
    path = Path(root) / "lake.toml"
    if not path.exists():
        return Config()
    text = path.read_text()
    key = hashlib.sha256(text.encode() + _models_stamp()).hexdigest()
    memo = Path(root) / MEMO
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        kept = json.loads(memo.read_text())
        if kept["key"] == key:
            return _config(kept["valid"], kept["raw"])
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument(f"lake.toml is not valid TOML: {e}") from None
    valid = _validate(raw)
    with contextlib.suppress(OSError):
        memo.parent.mkdir(exist_ok=True)
        tmp = memo.with_name(f".config.{os.getpid()}.json")
        tmp.write_text(json.dumps({"key": key, "valid": valid, "raw": raw}, default=str))
        os.replace(tmp, memo)
    return _config(valid, raw)


def _config(valid: dict[str, Any], raw: dict[str, Any]) -> Config:
    q, audit, cat = valid["query"], valid["audit"], dict(valid["catalog"])
    url = cat.pop("url", None)
    opts = {
        k: str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in valid.get("storage", {}).items()
    }
    return Config(
        Settings(**cat), q["memory_limit"], q["threads"], audit["flush_interval_s"], url, raw, opts
    )


def _validate(raw: dict[str, Any]) -> dict[str, Any]:
    """The file's values checked and completed with defaults (InvalidArgument otherwise)."""
    from pydantic import ValidationError

    from lake.config_model import LakeToml

    try:
        return LakeToml.model_validate(raw).model_dump(mode="json", exclude={"batch", "server"})
    except ValidationError as e:
        from catalog.settings import config_error

        raise config_error(e.errors(), "", LakeToml) from None


def _models_stamp() -> bytes:
    """Changes when the code that validates changes (a key added, a default changed)."""
    repo = Path(__file__).resolve().parents[1]  # the packages sit side by side
    sources = [repo / "lake" / "config_model.py", repo / "batch" / "config.py"]
    sources.append(Path(settings_module.__file__))
    return "".join(f"{p}:{p.stat().st_mtime_ns if p.exists() else 0};" for p in sources).encode()
