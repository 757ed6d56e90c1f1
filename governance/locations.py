"""Files outside tables (contract rule 11): which paths and URLs a user may read.

Crawl, ingest and register_table read a path only under a `location:PREFIX` the user holds
select on, judged on the path as it really is: `..` and symlinks resolved first. The lake's own
files (its root, every table's folder, the metadata store, the policy folder) are never a
readable location, for anyone. Every refusal is the same sentence, whatever is or is not there.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from catalog.errors import AccessDenied

REFUSED = (
    "{user} may not read that location: it is not under a location they hold select on "
    "(a policy line `p, USER, location:PREFIX, select, allow` grants one)"
)

_OBJECT_STORES = ("s3://", "s3a://", "gs://", "gcs://", "az://", "abfs://", "abfss://")


def resolve(target: str) -> str:
    """The location a path or URL really names: symlinks and `..` resolved for local paths,
    `..` collapsed and credentials dropped for URLs (the form `location:` grants are written in)."""
    text = str(target)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if "://" in text:
        return _url(text)
    return os.path.realpath(os.path.expanduser(text))


def _url(text: str) -> str:
    parts = urlsplit(text)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    path = posixpath.normpath(parts.path) if parts.path else ""
    if text.startswith(_OBJECT_STORES):
        path = path if path != "." else ""
    elif parts.scheme.startswith("sqlite") and path not in ("", "/"):
        # sqlite:///relative.db and sqlite:////abs.db: the file is what counts, written the
        # way SQLAlchemy writes an absolute one.
        raw = parts.path[1:] if parts.path.startswith("/") else parts.path
        return f"{parts.scheme}:///{os.path.realpath(raw)}"
    return urlunsplit((parts.scheme, host, path, "", ""))


def local_file(location: str) -> str | None:
    """The local file a resolved location reads, if any (a path, or a SQLite database URL)."""
    if location.startswith("/"):
        return location
    if location.startswith("sqlite") and ":///" in location:
        return location.split(":///", 1)[1] or None
    return None


def _object_key(location: str) -> str | None:
    """An object-store location in one spelling (s3a:// is s3://), for prefix comparisons; None
    for anything else. A lake in an object store owns its prefix as a local root its folder."""
    if not location.startswith(_OBJECT_STORES):
        return None
    text = "s3://" + location[len("s3a://") :] if location.startswith("s3a://") else location
    return _url(text).rstrip("/")


class Locations:
    """Decides reads of files outside tables for one lake."""

    def __init__(self, owned: Callable[[], Iterable[tuple[str, str]]]):
        # `owned()` lists the lake's own folders and files as (kind, absolute path); kinds are
        # "root", "table", "store" and "policy".
        self.owned = owned

    def check(self, user: str, target: str, allowed: Callable[[str], bool]) -> str:
        """The resolved location if `allowed("location:" + it)` and it is not the lake's own;
        AccessDenied with the one refusal sentence otherwise."""
        location = resolve(target)
        if self.owns(location) or not allowed("location:" + location):
            raise AccessDenied(REFUSED.format(user=user))
        return location

    def owns(
        self, location: str, *, kinds: Iterable[str] = ("root", "table", "store", "policy")
    ) -> bool:
        """Whether a resolved location is, lies in or holds one of the lake's own files (of
        these kinds)."""
        file = local_file(location) or _object_key(location)
        if file is None:
            return False
        wanted = set(kinds)
        for kind, own in self.owned():
            if kind not in wanted:
                continue
            own = _object_key(own) or os.path.realpath(own)
            if file == own or file.startswith(own.rstrip("/") + "/"):
                return True
            if own.startswith(file.rstrip("/") + "/"):
                return True  # a folder that holds the lake's files (a crawl of `/`)
        return False


def owned_paths(
    root: Path, store_url: str, tables: Iterable[str], policy: str
) -> list[tuple[str, str]]:
    """The lake's own files: the root, table folders, a SQLite store's file, the policy."""
    out = [("root", str(root))]
    out += [("table", t) for t in tables if t.startswith("/") or t.startswith(_OBJECT_STORES)]
    if store_url.startswith("sqlite"):
        file = urlsplit(store_url).path
        if file:
            out.append(("store", file[1:] if file.startswith("//") else file))
    if policy and policy.startswith("/"):
        out.append(("policy", policy))
    return out
