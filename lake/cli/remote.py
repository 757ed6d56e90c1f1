"""Which server the CLI talks to (`--server` or $LAKE_SERVER), and connecting to it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lake.server.client import RemoteLake

_SERVER: dict[str, str] = {}


def use_server(url: str) -> None:
    """Make every command of this run talk to `url`."""
    _SERVER["url"] = url


def server_url() -> str | None:
    """The server the CLI talks to (--server or $LAKE_SERVER), if any."""
    return _SERVER.get("url") or os.environ.get("LAKE_SERVER") or None


def connect_server(url: str) -> RemoteLake:
    """A connection to `url` as the principal of $LAKE_TOKEN or the saved token
    ($LAKE_TLS_CA names the server's CA for grpc+tls://)."""
    from lake.server.client import RemoteLake

    return RemoteLake(url, tls_ca=os.environ.get("LAKE_TLS_CA") or None)
