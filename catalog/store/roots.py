"""Which metadata store a lake root uses, and the guard that it always uses the same one.

A root records the catalog it was first opened with in `_lakeward/catalog.json`: the catalog's
id (chosen when the catalog was created) and its URL without the password. Every later open of
the root must reach a catalog with that id, whatever URL names it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import sqlalchemy as sa

from catalog import storage
from catalog.errors import InvalidArgument
from catalog.store import MetadataStore, load_store

BINDING = Path("_lakeward") / "catalog.json"
IN_ROOT = "root"  # the recorded URL of the default catalog: SQLite inside the root
ENV = "LAKE_CATALOG"


def redact(url: str) -> str:
    """The URL without its password (safe to record, log and show)."""
    try:
        parsed = sa.engine.make_url(url)
        return parsed._replace(password=None).render_as_string(hide_password=False)
    except sa.exc.ArgumentError:
        return url.split("@", 1)[-1]


def _binding(root: Path | str) -> str:
    return storage.join(str(root), "_lakeward", "catalog.json")


def _read(root: Path | str) -> dict | None:
    try:
        return json.loads(storage.read_text(_binding(root)))
    except FileNotFoundError:
        if storage.exists(storage.join(str(root), "_lakeward", "catalog.db")):
            return {"catalog": IN_ROOT}  # a root from before roots recorded their catalog
        return None
    except (OSError, ValueError) as e:
        raise InvalidArgument(
            f"the lake root's {BINDING} is unreadable ({e}); restore it or remove it to rebind"
        ) from None


def _record(root: Path | str, url: str | None, catalog_id: int) -> dict:
    """Write the binding unless another process just did (O_EXCL, or a conditional PUT in an
    object store); returns the binding in force."""
    path = _binding(root)
    binding = {"catalog": IN_ROOT if url is None else redact(url), "catalog_id": catalog_id}
    if not storage.create(path, json.dumps(binding).encode()):
        return json.loads(storage.read_text(path))
    return binding


def choose_url(root: Path | str, url: str | None, configured: str | None) -> str | None:
    """The catalog URL for `root` (None: SQLite inside the root).

    In order: `url` (lake.connect's `catalog=`), `configured` (lake.toml `[catalog] url`), the
    catalog the root was first opened with, `$LAKE_CATALOG`, else SQLite inside the root.
    """
    if url or configured:
        return url or configured
    bound = _read(root)
    if bound is not None:
        recorded = bound["catalog"]
        if recorded == IN_ROOT:
            return None
        env = os.environ.get(ENV)
        # The environment may carry the password the record leaves out.
        return env if env and redact(env) == recorded else recorded
    return os.environ.get(ENV) or None


def open_root_store(
    root: Path | str, url: str | None = None, configured: str | None = None
) -> MetadataStore:
    """Open the metadata store of a lake root (see `choose_url`), checking it is the root's own.

    Raises InvalidArgument when the root was first opened with another catalog.
    """
    chosen = choose_url(root, url, configured)
    bound = _read(root)
    if bound is not None and "catalog_id" not in bound and chosen is not None:
        raise _mismatch(bound, chosen)
    store = load_store(chosen, root)
    try:
        catalog_id = store.catalog_id()
        if bound is None or "catalog_id" not in bound:
            bound = _record(root, chosen, catalog_id)
        if bound["catalog_id"] != catalog_id:
            raise _mismatch(bound, chosen)
    except BaseException:
        store.close()
        raise
    return store


def _mismatch(bound: dict, chosen: str | None) -> InvalidArgument:
    recorded = bound["catalog"]
    had = "its own SQLite catalog" if recorded == IN_ROOT else f"the catalog at {recorded}"
    asked = "its own SQLite catalog" if chosen is None else f"{redact(chosen)}"
    return InvalidArgument(
        f"this lake root uses {had}, not {asked}: open it with the catalog it was created with "
        f"(catalog=..., lake.toml [catalog] url or ${ENV})"
    )
