"""Files outside tables (contract rule 11): which paths and URLs a user may read.

Crawl, ingest and register_table read a path only under a `location:PREFIX` the user holds
select on, judged on the path as it really is: `..` and symlinks resolved first. A database
URL is judged without its user and password, and only with query parameters that cannot send
the connection elsewhere (or open another file); engines whose queries read local files
(DuckDB) are never a location. The lake's own files (its root, every table's folder, the
metadata store with its journal files, the policy folder) are never a readable location, for
anyone. Every refusal is the same sentence, whatever is or is not there.
"""

from __future__ import annotations

import os
import posixpath
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from catalog.errors import AccessDenied

REFUSED = (
    "{user} may not read that location: it is not under a location they hold select on "
    "(a policy line `p, USER, location:PREFIX, select, allow` grants one)"
)

_OBJECT_STORES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")
# Engines whose queries read any local file (read_csv, read_parquet, ATTACH, ...).
_FILE_ENGINES = frozenset({"duckdb"})
# Query parameters of a database URL that change neither where it connects nor what it opens;
# any other parameter (host, port, service, dbname, options, SQLite's uri, ...) is refused.
_SAFE_PARAMS = frozenset(
    {
        "sslmode",
        "connect_timeout",
        "application_name",
        "client_encoding",
        "charset",
        "timeout",
        "check_same_thread",
        "target_session_attrs",
    }
)
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433, "oracle": 1521}


def _scheme(raw: str) -> str:
    """The URL's kind without its driver: postgresql+psycopg -> postgresql."""
    scheme = raw.lower().split("+", 1)[0]
    return "postgresql" if scheme == "postgres" else scheme


def resolve(target: str) -> str:
    """The location a path or URL really names: symlinks and `..` resolved for local paths;
    for URLs the kind without driver, no user or password, `..` collapsed, no query (the form
    `location:` grants are written in)."""
    text = str(target)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if "://" in text:
        return _url(text)
    return os.path.realpath(os.path.expanduser(text))


def _url(text: str) -> str:
    parts = urlsplit(text)
    scheme = _scheme(parts.scheme)
    host = (parts.hostname or "").lower()
    if parts.port:
        host = f"{host}:{parts.port}"
    if scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////abs.db: the file is what counts, written the
        # way SQLAlchemy writes an absolute one.
        if parts.path in ("", "/"):
            return "sqlite://"
        raw = parts.path[1:] if parts.path.startswith("/") else parts.path
        return f"sqlite:///{os.path.realpath(raw)}"
    path = posixpath.normpath(parts.path) if parts.path else ""
    if path == ".":
        path = ""
    return urlunsplit((scheme, host, path, "", ""))


def local_file(location: str) -> str | None:
    """The local file a resolved location reads, if any (a path, or a SQLite database URL)."""
    if location.startswith("/"):
        return location
    if location.startswith("sqlite:///"):
        return location[len("sqlite:///") :] or None
    return None


def readable_form(target: str) -> bool:
    """Whether a path or URL may be a location at all: no engine that reads local files, no
    query parameter that redirects the connection or names another file."""
    text = str(target)
    if "://" not in text or text.startswith("file://"):
        return True
    parts = urlsplit(text)
    scheme = _scheme(parts.scheme)
    if scheme in _FILE_ENGINES:
        return False
    if scheme in _OBJECT_STORES:
        return not parts.query
    try:
        params = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        return False
    return all(k.lower() in _SAFE_PARAMS for k, _ in params)


class Locations:
    """Decides reads of files outside tables for one lake."""

    def __init__(self, owned: Callable[[], Iterable[tuple[str, str]]]):
        # `owned()` lists the lake's own files as (kind, path or URL); kinds are "root",
        # "table", "store" and "policy".
        self.owned = owned

    def fixed(self) -> Locations:
        """These locations with the lake's own files listed once, now (for one load)."""
        owned = list(self.owned())
        return Locations(lambda: owned)

    def check(self, user: str, target: str, allowed: Callable[[str], bool]) -> str:
        """The resolved location if `allowed("location:" + it)` and it is not the lake's own;
        AccessDenied with the one refusal sentence otherwise."""
        location = resolve(target)
        if not readable_form(target) or self.owns(location) or not allowed("location:" + location):
            raise AccessDenied(REFUSED.format(user=user))
        return location

    def owns(
        self, location: str, *, kinds: Iterable[str] = ("root", "table", "store", "policy")
    ) -> bool:
        """Whether a resolved location is, lies in or holds one of the lake's own files (of
        these kinds)."""
        wanted = set(kinds)
        file = local_file(location)
        for kind, own in self.owned():
            if kind not in wanted:
                continue
            if file is not None and own.startswith("/"):
                own = os.path.realpath(own)
                if _covers(own, file) or _covers(file, own):
                    return True  # (a folder that holds the lake's files: a crawl of `/`)
                if kind == "store" and file.startswith(own):
                    return True  # the store's journal files: catalog.db-wal, -shm, -journal
            elif file is None and "://" in own and _same_place(resolve(own), location):
                return True
        return False


def _covers(folder: str, path: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _same_place(own: str, location: str) -> bool:
    """Whether a URL location is, lies in or holds an owned URL (an object-store prefix, or a
    database on the same server, however the server is named)."""
    a, b = urlsplit(own), urlsplit(location)
    if _store_kind(a.scheme) != _store_kind(b.scheme):
        return False
    if a.scheme in _OBJECT_STORES:
        return a.hostname == b.hostname and (
            _covers(a.path or "/", b.path or "/") or _covers(b.path or "/", a.path or "/")
        )
    port = _DEFAULT_PORTS.get(a.scheme)
    if (a.port or port) != (b.port or port):
        return False
    if (a.path.strip("/") or "") != (b.path.strip("/") or ""):
        return False
    return bool(_addresses(a.hostname) & _addresses(b.hostname))


def _store_kind(scheme: str) -> str:
    """One spelling per kind of store: s3a:// names what s3:// does, gcs:// what gs:// does."""
    return {"s3a": "s3", "gcs": "gs", "abfss": "abfs"}.get(scheme, scheme)


def _addresses(host: str | None) -> set[str]:
    name = host or "localhost"
    try:
        found = {i[4][0] for i in socket.getaddrinfo(name, None)}
    except OSError:
        found = set()
    loopback = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}
    if name in loopback or found & {"127.0.0.1", "::1"} or any(a.startswith("127.") for a in found):
        found |= {"loopback"}
    return found | {name}


def owned_paths(
    root: Path, store_url: str, tables: Iterable[str], policy: str
) -> list[tuple[str, str]]:
    """The lake's own files: the root, table folders, the metadata store (a SQLite file or a
    database URL), the policy folder."""
    out = [("root", str(root))]
    out += [("table", t) for t in tables if t.startswith("/") or "://" in t]
    if store_url.startswith("sqlite"):
        file = local_file(resolve(store_url))
        if file:
            out.append(("store", file))
    elif store_url:
        out.append(("store", store_url))
    if policy and policy.startswith("/"):
        out.append(("policy", policy))
    return out
