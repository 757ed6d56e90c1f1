"""The server's settings: `[server]` (and `[server.oidc]`) in lake.toml, validated by pydantic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from catalog.errors import InvalidArgument


class OidcSettings(BaseModel):
    """JWT bearer tokens from an OIDC issuer whose public keys are configured here (no fetching)."""

    model_config = ConfigDict(extra="forbid")

    issuer: str
    audience: str
    # PEM public keys, or a JWKS document (a file path); one of them is needed.
    public_keys: list[str] = Field(default_factory=list)
    jwks_file: str | None = None
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    user_claim: str = "sub"
    leeway_s: float = 30.0


class ServerSettings(BaseModel):
    """Limits and lifetimes of `lake serve` (every key optional)."""

    model_config = ConfigDict(extra="forbid")

    max_query_bytes: int = Field(default=1_000_000, gt=0)  # SQL text of one statement
    ticket_ttl_s: float = Field(default=120.0, gt=0)  # a result not fetched by then is dropped
    max_open_results: int = Field(default=64, gt=0)  # results waiting or streaming, per user
    max_prepared: int = Field(default=256, gt=0)  # open prepared statements, per user
    session_ttl_s: float = Field(default=8 * 3600, gt=0)  # tokens minted by a password login
    batch_rows: int = Field(default=65_536, gt=0)  # rows per streamed record batch
    # A verified token is trusted this long before it is looked up again (a revocation takes
    # effect within it); 0 looks every call up.
    auth_cache_s: float = Field(default=1.0, ge=0, le=60)
    max_failures: int = Field(default=10, gt=0)  # failed logins per window, per client address
    failure_window_s: float = Field(default=60.0, gt=0)
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, gt=0)  # a job's workdir
    max_wait_s: float = Field(default=2.0, gt=0)  # one remote job.wait() round
    # Threads that run the lake's work (each holds a store connection; the store pools 12).
    workers: int = Field(default=8, gt=0, le=10)
    oidc: OidcSettings | None = None


def load_server_settings(raw: Mapping[str, Any]) -> ServerSettings:
    """`[server]` of a lake's parsed lake.toml; InvalidArgument names a bad key."""
    try:
        return ServerSettings.model_validate(dict(raw.get("server", {})))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidArgument(f"lake.toml [server] {where}: {first['msg']}") from None
