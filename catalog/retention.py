"""The log and the store stay bounded: checkpoints, expired-log clean-up and store pruning.

Every `Settings.checkpoint_interval` ratified versions, right after the ratification (never
before, so neither ever covers a version that may still be rolled back), the committing process:

1. writes a Delta checkpoint of the version it just ratified (delta-rs);
2. deletes the log files that expired under the table's `delta.logRetentionDuration` (Delta's
   default: 30 days) with delta-rs's `cleanup_metadata`, which keeps every version younger than
   the retention readable (it keeps the checkpoint the oldest of them is rebuilt from);
3. prunes the metadata store to match: commit rows of versions no longer readable go, and
   transactions that ended long ago.

Time travel to a version inside the window keeps working; to one whose log was cleaned up it
raises a clear `InvalidArgument` (see `oldest_readable`).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

from deltalake import DeltaTable

from catalog import storage
from catalog.errors import InvalidArgument
from catalog.store import MetadataStore, TableInfo

log = logging.getLogger("lakeward.retention")

KEY = "delta.logRetentionDuration"
DEFAULT = "interval 30 days"
ENDED_TXN_KEEP = timedelta(days=1)  # finished transactions are kept this long for messages
_INTERVAL = re.compile(
    r"^\s*interval\s+(\d+)\s+(nanosecond|microsecond|millisecond|second|minute|hour|day|week)s?\s*$",
    re.IGNORECASE,
)
_UNIT_S = {
    "nanosecond": 1e-9,
    "microsecond": 1e-6,
    "millisecond": 1e-3,
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
    "week": 604800.0,
}
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(?:\.\d{10}\.\d{10})?\.parquet$")


def parse_interval(value: str, key: str = KEY) -> timedelta:
    """A Delta interval ('interval 30 days'); InvalidArgument naming the key if malformed."""
    m = _INTERVAL.match(str(value))
    if m is None:
        raise InvalidArgument(
            f"table property {key}={value!r} is not a Delta interval; write it like "
            f"'interval 30 days' (units: second, minute, hour, day, week)"
        )
    return timedelta(seconds=int(m.group(1)) * _UNIT_S[m.group(2).lower()])


def log_retention(config: dict[str, str] | None) -> str:
    """The table's log retention as written in its Delta configuration (or Delta's default)."""
    return (config or {}).get(KEY) or DEFAULT


def oldest_readable(location: str) -> int:
    """The oldest version whose state the log can still rebuild: 0 while the first commit is
    there, else the oldest checkpoint (clean-up never leaves a version without one below it)."""
    oldest_json, checkpoints = None, []
    for name in storage.listdir(storage.join(location, "_delta_log")):
        if name.endswith(".json") and len(name) == 25 and name[:20].isdigit():
            v = int(name[:20])
            oldest_json = v if oldest_json is None else min(oldest_json, v)
        elif m := _CHECKPOINT.match(name):
            checkpoints.append(int(m.group(1)))
    if oldest_json == 0 or not checkpoints:
        return 0
    return min(checkpoints)


def checkpoint_and_clean(store: MetadataStore, info: TableInfo, dt: DeltaTable) -> int:
    """Checkpoint `dt`'s (ratified) version, clean up expired log files and prune the store's
    rows of versions no longer readable; returns the oldest readable version."""
    dt.create_checkpoint()
    config = dict(dt.metadata().configuration or {})
    try:
        parse_interval(log_retention(config))
    except InvalidArgument as e:  # delta-rs would fall back silently; keep everything instead
        log.warning("%s: %s; its log is not cleaned up", info.full_name, e)
        return 0
    dt.cleanup_metadata()
    oldest = oldest_readable(info.location)
    if oldest > 0:
        store.prune_commits(info.id, oldest)
    store.prune_transactions(datetime.now(UTC) - ENDED_TXN_KEEP)
    return oldest
