"""lake.toml as pydantic models: what `lake.config` validates the file against.

Kept apart from `lake.config` so that commands reading an unchanged file never import pydantic.
"""

from __future__ import annotations

import dataclasses
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from batch.config import BatchSection
from catalog.settings import Settings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _catalog_section() -> type[BaseModel]:
    """[catalog]: every field of catalog.settings.Settings, with its default; numbers >= 0."""
    hints = get_type_hints(Settings)
    # the metadata store's URL lives here too (else $LAKE_CATALOG, else SQLite in the root)
    fields: dict[str, Any] = {"url": (str | None, None)}
    for f in dataclasses.fields(Settings):
        kind = hints[f.name]
        fields[f.name] = (kind, f.default if kind is bool else Field(f.default, ge=0))
    return create_model("CatalogSection", __base__=_Section, **fields)


CatalogSection = _catalog_section()


class AuditSection(_Section):
    """[audit]."""

    flush_interval_s: float = Field(2.0, ge=0)


class QuerySection(_Section):
    """[query]: DuckDB's limits."""

    memory_limit: str | None = None
    threads: int | None = Field(None, ge=1)


class StorageSection(_Section):
    """[storage]: object-store options (the keys of `lake.connect(storage_options=...)`, e.g.
    AWS_ENDPOINT_URL, AWS_REGION, AWS_ALLOW_HTTP). Values are strings (or booleans/numbers,
    written as strings); credentials belong in the environment, not in this file."""

    model_config = ConfigDict(extra="allow", strict=False)

    @model_validator(mode="after")
    def _keys(self) -> StorageSection:
        for key, value in (self.model_extra or {}).items():
            if not key.isupper() or not key.replace("_", "").isalnum():
                raise ValueError(
                    f"{key!r} is not a storage option (they are written like AWS_REGION)"
                )
            if not isinstance(value, str | bool | int | float):
                raise ValueError(f"{key} must be a string")
        return self


class LakeToml(_Section):
    """The whole file."""

    catalog: CatalogSection = CatalogSection()  # type: ignore[valid-type]
    audit: AuditSection = AuditSection()
    query: QuerySection = QuerySection()
    batch: BatchSection = BatchSection()
    storage: StorageSection = StorageSection()
    # `lake serve`'s own model (lake/server) validates [server] when the server starts
    server: dict[str, Any] = Field(default_factory=dict)
