"""Where a lake's files live: a local folder or an object store (`s3://bucket/prefix`).

Every module that touches a file of the lake (tables' logs, staging folders, the snapshot cache,
the root's records, batch jobs' files) goes through these functions, which take a *location*:
an absolute local path or an `s3://bucket/key` URI. Local paths go straight to `os` (exactly
as fast as before); object-store URIs go through obstore, the Python binding of the Rust
`object_store` crate delta-rs itself writes with, so both take the same options (the keys of
`storage_options`: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_ALLOW_HTTP, ...) and any
S3-compatible store (AWS S3, MinIO, R2, moto) works the same.

Options are found per location: `configure(prefix, options)` binds options to a bucket or
prefix (a lake binds its root's), the longest bound prefix wins, and the standard `AWS_*`
environment variables fill in what is not given. Options hold credentials: nothing here puts
them in a message, and `public(options)` is what may be shown.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from catalog.errors import InvalidArgument, StorageError

SCHEMES = ("s3://", "s3a://")  # s3a:// (Hadoop's name) is read as s3://
# Keys whose values are secrets: never shown, logged or recorded.
SECRET_KEYS = frozenset(
    {"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_TOKEN"}
)
# What the AWS_* environment may contribute (the object_store keys delta-rs reads too).
_ENV_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ALLOW_HTTP",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "AWS_S3_ALLOW_UNSAFE_RENAME",
    "AWS_CONDITIONAL_PUT",
)

_RETRIES = {
    "max_retries": 4,
    "retry_timeout": timedelta(seconds=20),
    "backoff": {
        "init_backoff": timedelta(milliseconds=100),
        "max_backoff": timedelta(seconds=2),
        "base": 2.0,
    },
}
_bound: dict[str, dict[str, str]] = {}  # prefix URI -> options
_default: dict[str, str] = {}  # for locations of buckets no prefix is bound in
_stores: dict[tuple, Any] = {}
_lock = threading.Lock()


# locations ---------------------------------------------------------------------------------------
def is_remote(location: str | os.PathLike[str]) -> bool:
    """Whether a location is an object-store URI."""
    return str(location).startswith(SCHEMES)


def normalize(location: str | os.PathLike[str]) -> str:
    """The canonical form of a location: an absolute local path, or `s3://bucket/key` without
    a trailing slash. InvalidArgument for another scheme or a URI with `..`."""
    text = str(location)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if text.startswith("s3a://"):
        text = "s3://" + text[len("s3a://") :]
    if "://" not in text:
        return os.path.abspath(os.path.expanduser(text))
    if not is_remote(text):
        raise InvalidArgument(
            f"unsupported storage {text.split('://')[0]}://; use a local path or s3://bucket/prefix"
        )
    bucket, _, key = text[len("s3://") :].partition("/")
    parts = [p for p in key.split("/") if p not in ("", ".")]
    if not bucket or ".." in parts or "@" in bucket:
        raise InvalidArgument(f"{_shown(text)} is not a valid s3://bucket/prefix location")
    return "s3://" + "/".join([bucket, *parts])


def _shown(uri: str) -> str:
    return uri.split("?", 1)[0]


def join(location: str, *parts: str) -> str:
    """A location under another (parts are relative, '/'-separated)."""
    if is_remote(location):
        return "/".join([location.rstrip("/"), *(p.strip("/") for p in parts if p)])
    return os.path.join(location, *parts)


def parent(location: str) -> str:
    """The folder holding a location."""
    return posixpath.dirname(location) if is_remote(location) else os.path.dirname(location)


def relative(location: str, base: str) -> str:
    """`location` relative to `base` ('/'-separated)."""
    if is_remote(location):
        return location[len(base.rstrip("/")) + 1 :]
    return os.path.relpath(location, base)


def under(location: str, base: str) -> bool:
    """Whether `location` is `base` or inside it."""
    base = base.rstrip("/")
    return location == base or location.startswith(base + "/")


# options -----------------------------------------------------------------------------------------
def env_options() -> dict[str, str]:
    """The storage options the standard AWS_* environment variables give."""
    return {k: os.environ[k] for k in _ENV_KEYS if os.environ.get(k)}


def _merged(options: Mapping[str, Any] | None) -> dict[str, str]:
    return {**env_options(), **{str(k).upper(): str(v) for k, v in (options or {}).items()}}


def configure(prefix: str | None, options: Mapping[str, Any] | None) -> None:
    """Use `options` (over the environment's) for every location under `prefix`; with prefix
    None, for locations in buckets no prefix is bound in (a local lake's `s3://` tables)."""
    if prefix is None:
        with _lock:
            _default.clear()
            _default.update(_merged(options) if options else {})
        return
    if not is_remote(prefix):
        return
    merged = _merged(options)
    with _lock:
        _bound[normalize(prefix)] = merged


def options(location: str) -> dict[str, str]:
    """The storage options of an object-store location (its longest bound prefix, else the
    environment's); {} for a local path."""
    if not is_remote(location):
        return {}
    best = None
    with _lock:
        for prefix in _bound:
            if under(location, prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        if best is not None:
            return dict(_bound[best])
        bucket = "s3://" + location[len("s3://") :].split("/", 1)[0]
        for prefix, opts in _bound.items():  # another prefix of the same bucket: same store
            if under(prefix, bucket):
                return dict(opts)
        if _default:
            return dict(_default)
    return env_options()


def delta_options(location: str) -> dict[str, str] | None:
    """`storage_options` for delta-rs at a location (None for a local path)."""
    return options(location) or None if is_remote(location) else None


def open_delta(location: str, version: int | None = None) -> Any:
    """delta-rs's DeltaTable at a location (its latest version, or `version`), with the
    location's storage options."""
    from deltalake import DeltaTable

    return DeltaTable(location, version=version, storage_options=delta_options(location))


def public(opts: Mapping[str, Any]) -> dict[str, str]:
    """Options safe to show: the secrets left out."""
    return {k: str(v) for k, v in opts.items() if str(k).upper() not in SECRET_KEYS}


def _store(location: str) -> tuple[Any, str]:
    """(obstore store of the location's bucket, the key inside it)."""
    from obstore.store import S3Store

    if not location.startswith("s3://"):
        location = normalize(location)
    bucket, _, key = location[len("s3://") :].partition("/")
    opts = options(location)
    cache_key = (bucket, tuple(sorted(opts.items())))
    with _lock:
        store = _stores.get(cache_key)
        if store is None:
            config = {k: v for k, v in opts.items() if k != "AWS_DEFAULT_REGION"}
            if "AWS_REGION" not in config and opts.get("AWS_DEFAULT_REGION"):
                config["AWS_REGION"] = opts["AWS_DEFAULT_REGION"]
            if "AWS_ENDPOINT_URL_S3" in config:
                config.setdefault("AWS_ENDPOINT_URL", config.pop("AWS_ENDPOINT_URL_S3"))
            config.pop("AWS_CONDITIONAL_PUT", None)
            config.pop("AWS_S3_ALLOW_UNSAFE_RENAME", None)
            try:
                # A store that does not answer fails in seconds, not after object_store's
                # default 3 minutes of retries.
                store = S3Store(bucket, config=config, retry_config=_RETRIES)
            except Exception as e:  # noqa: BLE001 - obstore's message names the key, not values
                raise StorageError(f"cannot open s3://{bucket}: {_message(e)}") from None
            _stores[cache_key] = store
    return store, key


def _message(e: BaseException) -> str:
    # obstore's messages can be long (a request with its URL, a response body): its kind and
    # the HTTP status say enough, and no endpoint or query string is repeated.
    text = str(e)
    status = re.search(r"\b([45]\d\d) [A-Z][A-Za-z ]+", text)
    kind = type(e).__name__.removesuffix("Error") or "object store"
    return f"{kind} error" + (f" ({status.group(0).strip()})" if status else "")


def _not_found(e: BaseException) -> bool:
    from obstore.exceptions import NotFoundError

    return isinstance(e, NotFoundError)


@contextlib.contextmanager
def _errors(location: str) -> Iterator[None]:
    from obstore.exceptions import BaseError

    try:
        yield
    except BaseError as e:
        if _not_found(e):
            raise FileNotFoundError(location) from None
        raise StorageError(f"object store error at {_shown(location)}: {_message(e)}") from None


# reading -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stat:
    """What a file's identity and age are."""

    size: int
    mtime_ns: int
    ident: str  # inode on disk; e-tag in an object store

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9


def _stat_of(meta: Mapping[str, Any]) -> Stat:
    when: datetime = meta["last_modified"]
    return Stat(int(meta["size"]), int(when.timestamp() * 1e9), str(meta.get("e_tag") or ""))


def stat(location: str) -> Stat | None:
    """A file's size, modification time and identity; None if it does not exist."""
    if not is_remote(location):
        try:
            st = os.stat(location)
        except OSError:
            return None
        return Stat(st.st_size, st.st_mtime_ns, str(st.st_ino))
    import obstore

    store, key = _store(location)
    try:
        with _errors(location):
            return _stat_of(obstore.head(store, key))
    except FileNotFoundError:
        return None


def exists(location: str) -> bool:
    """Whether a file exists (a folder too, for a local path)."""
    if not is_remote(location):
        return os.path.exists(location)
    return stat(location) is not None


def is_dir(location: str) -> bool:
    """Whether a folder exists (in an object store: whether any object lies under it)."""
    if not is_remote(location):
        return os.path.isdir(location)
    import obstore

    store, key = _store(location)
    with _errors(location):
        stream = obstore.list(store, prefix=key.rstrip("/") + "/", chunk_size=1)
        return any(True for _ in stream)


def listdir(location: str) -> list[str]:
    """Names directly inside a folder (files and sub-folders); FileNotFoundError if it is
    missing (in an object store: if nothing lies under it)."""
    if not is_remote(location):
        return os.listdir(location)
    import obstore

    store, key = _store(location)
    prefix = key.rstrip("/") + "/" if key else ""
    with _errors(location):
        out = obstore.list_with_delimiter(store, prefix or None)
    names = [o["path"][len(prefix) :] for o in out["objects"]]
    names += [p[len(prefix) :].rstrip("/") for p in out["common_prefixes"]]
    if not names:
        raise FileNotFoundError(location)
    return names


def scan(location: str) -> list[tuple[str, Stat]]:
    """(name, stat) of each file directly inside a folder; FileNotFoundError if it is missing."""
    if not is_remote(location):
        out = []
        with os.scandir(location) as it:
            for entry in it:
                if entry.is_file():
                    st = entry.stat()
                    out.append((entry.name, Stat(st.st_size, st.st_mtime_ns, str(st.st_ino))))
        return out
    import obstore

    store, key = _store(location)
    prefix = key.rstrip("/") + "/"
    with _errors(location):
        found = obstore.list_with_delimiter(store, prefix)
    if not found["objects"] and not found["common_prefixes"]:
        raise FileNotFoundError(location)
    return [(o["path"][len(prefix) :], _stat_of(o)) for o in found["objects"]]


def walk(location: str) -> Iterator[tuple[str, Stat]]:
    """(path relative to `location`, stat) of every file under a folder, at any depth."""
    if not is_remote(location):
        for folder, _dirs, files in os.walk(location):
            rel = os.path.relpath(folder, location)
            for name in files:
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # removed while we walked
                yield (
                    os.path.normpath(os.path.join(rel, name)),
                    Stat(st.st_size, st.st_mtime_ns, str(st.st_ino)),
                )
        return
    import obstore

    store, key = _store(location)
    prefix = key.rstrip("/") + "/"
    with _errors(location):
        for chunk in obstore.list(store, prefix=prefix, chunk_size=1000):
            for o in chunk:
                yield o["path"][len(prefix) :], _stat_of(o)


def read_bytes(location: str) -> bytes:
    """A whole file; FileNotFoundError if it is missing."""
    if not is_remote(location):
        with open(location, "rb") as f:
            return f.read()
    import obstore

    store, key = _store(location)
    with _errors(location):
        return bytes(obstore.get(store, key).bytes())


def read_text(location: str) -> str:
    """A whole file as UTF-8 text."""
    return read_bytes(location).decode("utf-8")


def read_range(location: str, start: int, length: int) -> bytes:
    """`length` bytes of a file from `start`."""
    if not is_remote(location):
        with open(location, "rb") as f:
            f.seek(start)
            return f.read(length)
    import obstore

    store, key = _store(location)
    with _errors(location):
        return bytes(obstore.get_range(store, key, start=start, length=length))


# writing -----------------------------------------------------------------------------------------
def write_bytes(location: str, data: bytes) -> None:
    """Replace a file with `data` at once: readers see the old or the new content, never part
    (a temporary file renamed on disk; one PUT in an object store)."""
    if not is_remote(location):
        os.makedirs(os.path.dirname(location), exist_ok=True)
        tmp = f"{location}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, location)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return
    import obstore

    store, key = _store(location)
    with _errors(location):
        obstore.put(store, key, data)


def create(location: str, data: bytes) -> bool:
    """Write a file only if it does not exist yet (O_EXCL on disk, a conditional PUT in an
    object store); whether this call created it."""
    if not is_remote(location):
        os.makedirs(os.path.dirname(location), exist_ok=True)
        try:
            fd = os.open(location, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    import obstore
    from obstore.exceptions import AlreadyExistsError, PreconditionError

    store, key = _store(location)
    with _errors(location):
        try:
            obstore.put(store, key, data, mode="create")
        except (AlreadyExistsError, PreconditionError):
            return False
    return True


def upload(local_path: str, location: str) -> None:
    """Copy a local file to a location."""
    if not is_remote(location):
        os.makedirs(os.path.dirname(location), exist_ok=True)
        shutil.copyfile(local_path, location)
        return
    import obstore

    store, key = _store(location)
    with _errors(location), open(local_path, "rb") as f:
        obstore.put(store, key, f)


def download(location: str, local_path: str) -> None:
    """Copy a file at a location to a local path."""
    os.makedirs(os.path.dirname(local_path) or ".", exist_ok=True)
    if not is_remote(location):
        shutil.copyfile(location, local_path)
        return
    import obstore

    store, key = _store(location)
    with _errors(location), open(local_path, "wb") as f:
        for chunk in obstore.get(store, key).stream():
            f.write(chunk)


def upload_tree(local_dir: str, location: str) -> int:
    """Copy every file under a local folder to a location; returns how many."""
    n = 0
    for folder, _dirs, files in os.walk(local_dir):
        for name in files:
            src = os.path.join(folder, name)
            upload(src, join(location, os.path.relpath(src, local_dir).replace(os.sep, "/")))
            n += 1
    return n


def download_tree(location: str, local_dir: str) -> int:
    """Copy every file under a location into a local folder; returns how many."""
    n = 0
    for rel, _st in list(walk(location)) if is_dir(location) else []:
        download(join(location, rel), os.path.join(local_dir, *rel.split("/")))
        n += 1
    return n


def makedirs(location: str) -> None:
    """Make a folder and its parents (nothing to do in an object store)."""
    if not is_remote(location):
        os.makedirs(location, exist_ok=True)


def delete(location: str) -> None:
    """Delete a file; nothing if it is missing."""
    if not is_remote(location):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(location)
        return
    import obstore

    store, key = _store(location)
    with contextlib.suppress(FileNotFoundError), _errors(location):
        obstore.delete(store, key)


def delete_tree(location: str) -> None:
    """Delete a folder and everything under it; nothing if it is missing."""
    if not is_remote(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    import obstore

    store, key = _store(location)
    prefix = key.rstrip("/") + "/"
    with _errors(location):
        for chunk in obstore.list(store, prefix=prefix, chunk_size=1000):
            obstore.delete(store, [o["path"] for o in chunk])


def rename(src: str, dst: str) -> None:
    """Move a file (in an object store: copy, then delete the source)."""
    if not is_remote(src):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.rename(src, dst)
        return
    import obstore

    store, key = _store(src)
    _, dst_key = _store(dst)
    with _errors(src):
        obstore.rename(store, key, dst_key)


def remove_empty_dirs(root: str, folders: set[str]) -> None:
    """Remove now-empty local folders, from `folders` up to (not including) `root`; object
    stores have no folders."""
    if is_remote(root):
        return
    for folder in sorted(folders, key=len, reverse=True):
        while os.path.normpath(folder) != root and folder.startswith(root):
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = os.path.dirname(folder)


# reading files in place (DuckDB, Parquet footers) -------------------------------------------------
class RemoteFile:
    """A read-only file in an object store whose position is kept per thread: DuckDB's Python
    file system seeks and then reads as two calls, from several threads on one handle, so each
    thread's reads are ranged GETs at its own position (no shared cursor to race on)."""

    def __init__(self, location: str, size: int | None = None):
        self.location = location
        self.size = stat_required(location).size if size is None else size
        self._pos = threading.local()
        self.closed = False

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.tell(), self.size)[whence]
        self._pos.value = base + offset
        return self._pos.value

    def tell(self) -> int:
        return getattr(self._pos, "value", 0)

    def read(self, n: int = -1) -> bytes:
        pos = self.tell()
        if n is None or n < 0 or pos + n > self.size:
            n = self.size - pos
        data = read_range(self.location, pos, n) if n > 0 else b""
        self._pos.value = pos + len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> RemoteFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def stat_required(location: str) -> Stat:
    """A file's stat; FileNotFoundError if it is missing."""
    st = stat(location)
    if st is None:
        raise FileNotFoundError(location)
    return st


def open_input(location: str) -> Any:
    """A seekable binary file to read (pyarrow reads Parquet footers from it)."""
    return open(location, "rb") if not is_remote(location) else RemoteFile(location)


def duckdb_filesystem(allowed: frozenset[str]) -> Any:
    """An fsspec file system for DuckDB's `register_filesystem` that serves `s3://` reads of
    files under the `allowed` prefixes only (DuckDB's allowed_directories checks them too)."""
    import cachetools
    import fsspec  # loaded only by lakes that read an object store

    prefixes = tuple(p.rstrip("/") + "/" for p in allowed if is_remote(p))
    # A data file never changes once written (Delta names each one anew), so its size and time
    # are asked once: DuckDB asks for them at every open, a HEAD request each.
    stats: cachetools.LRUCache[str, Stat] = cachetools.LRUCache(maxsize=100_000)
    stats_lock = threading.Lock()

    def file_stat(location: str) -> Stat:
        # FileNotFoundError if missing (never remembered: a missing file may yet be restored)
        with stats_lock:
            st = stats.get(location)
        if st is None:
            st = stat_required(location)
            with stats_lock:
                stats[location] = st
        return st

    class _Files(fsspec.AbstractFileSystem):
        protocol = ("s3",)
        cachable = False

        @property
        def fsid(self) -> str:
            return "lakeward-object-store"

        def _check(self, path: str) -> str:
            location = normalize(path if is_remote(path) else "s3://" + path)
            if not (location + "/").startswith(prefixes):
                raise PermissionError("that location is not readable by this engine")
            return location

        def _open(self, path: str, mode: str = "rb", **kw: Any) -> Any:
            if "r" not in mode or "+" in mode:
                raise PermissionError("the engine only reads")
            location = self._check(path)
            return RemoteFile(location, size=file_stat(location).size)

        def info(self, path: str, **kw: Any) -> dict[str, Any]:
            location = self._check(path)
            with contextlib.suppress(FileNotFoundError):
                return {"name": location, "size": file_stat(location).size, "type": "file"}
            if is_dir(location):
                return {"name": location, "size": 0, "type": "directory"}
            raise FileNotFoundError(location)

        def modified(self, path: str) -> datetime:
            return datetime.fromtimestamp(file_stat(self._check(path)).mtime)

        def ls(self, path: str, detail: bool = True, **kw: Any) -> list[Any]:
            location = self._check(path)
            found = [
                {"name": join(location, name), "size": st.size, "type": "file"}
                for name, st in scan(location)
            ]
            return found if detail else [f["name"] for f in found]

    return _Files()
