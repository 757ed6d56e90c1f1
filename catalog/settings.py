"""Tunables of the catalog, read from the lake's config file by `lake`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args, get_origin

from catalog.errors import InvalidArgument


@dataclass(frozen=True)
class Settings:
    txn_timeout_s: float = 300.0  # an explicit transaction idle longer than this is aborted
    # A table lock outlives its holder's last heartbeat (every third of this) by this long.
    write_lease_s: float = 15.0
    lock_wait_s: float = 60.0  # how long a writer waits for a busy table before CommitConflict
    checkpoint_interval: int = 100  # write a Delta checkpoint every N ratified versions
    auto_compact: bool = True  # compact small files in the background after commits


def config_error(errors: list[dict[str, Any]], section: str, model: Any) -> InvalidArgument:
    """One InvalidArgument for a pydantic validation of lake.toml's `[section]` by `model`:
    one line per problem, naming the table and key as written in the file."""
    lines = []
    for e in errors:
        *path, key = [str(p) for p in e["loc"]] or ["?"]
        where = ".".join([section, *path]) if section else ".".join(path)
        table = f"[{where}] " if where else ""
        if e["type"] == "extra_forbidden":
            known = sorted(_fields_at(model, path))
            hint = f"; known: {', '.join(known)}" if known else ""
            lines.append(f"lake.toml {table}has unknown key {key!r}{hint}")
            continue
        msg = str(e["msg"]).removeprefix("Value error, ")
        got = e.get("input")
        shown = "" if isinstance(got, dict) or e["type"] == "missing" else f" (not {got!r})"
        lines.append(f"lake.toml {table}{key}: {msg[:1].lower()}{msg[1:]}{shown}")
    return InvalidArgument("\n".join(lines))


def _fields_at(model: Any, path: list[str]) -> list[str]:
    """The keys the model allows in the table at `path` (a dict of models skips its key)."""
    current = model
    steps = list(path)
    while steps and current is not None:
        field = getattr(current, "model_fields", {}).get(steps.pop(0))
        current = None if field is None else field.annotation
        if get_origin(current) is dict:
            if not steps:
                return []
            steps.pop(0)
            current = get_args(current)[1]
    return list(getattr(current, "model_fields", {}))
