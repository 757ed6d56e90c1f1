"""`lake serve`: open the lake, prove identities, answer Flight SQL until stopped.

The server process is the only one that opens the metadata store and the files; it runs the
lake's batch scheduler too (Ray, when jobs need it, listens on 127.0.0.1 only).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.flight as fl

from catalog.errors import InvalidArgument
from lake.lake import Lake, connect
from lake.server.auth import Authenticator
from lake.server.credentials import CredentialStore
from lake.server.service import LakeFlightServer
from lake.server.settings import load_server_settings

DEFAULT_LISTEN = "127.0.0.1:8815"
log = logging.getLogger("lakeward.server")


@dataclass
class Running:
    """A started server: its address, and how to stop it."""

    url: str
    server: LakeFlightServer
    lake: Lake
    credentials: CredentialStore

    def stop(self) -> None:
        """Stop answering, then close the lake (its scheduler, audit trail and store)."""
        with contextlib.suppress(Exception):
            self.server.shutdown()
        self.lake.close()
        self.credentials.close()


def parse_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT (or [V6]:PORT); InvalidArgument otherwise."""
    host, sep, port = str(listen).rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InvalidArgument(f"--listen must be HOST:PORT (e.g. {DEFAULT_LISTEN}), not {listen!r}")
    return host, int(port)


def start(
    root: str | Path,
    *,
    catalog: str | None = None,
    listen: str = DEFAULT_LISTEN,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
    client_ca: str | Path | None = None,
    policy: str | Path | None = None,
) -> Running:
    """Open the lake at `root` and start serving it on `listen`."""
    host, port = parse_listen(listen)
    # Many short calls on many threads: hand the GIL over sooner than the 5 ms default.
    sys.setswitchinterval(0.0005)
    if (tls_cert is None) != (tls_key is None):
        raise InvalidArgument("--tls-cert and --tls-key go together")
    if client_ca is not None and tls_cert is None:
        raise InvalidArgument("--client-ca (mutual TLS) needs --tls-cert and --tls-key")
    certs = (
        [fl.CertKeyPair(Path(tls_cert).read_bytes(), Path(tls_key).read_bytes())]
        if tls_cert is not None and tls_key is not None
        else []
    )
    ca = Path(client_ca).read_bytes() if client_ca is not None else None
    if not certs and not _is_loopback(host):
        log.warning(
            "serving %s without TLS: tokens and passwords cross the network in clear; "
            "add --tls-cert and --tls-key",
            host,
        )
    lk = connect(root, catalog=catalog, policy=policy)
    creds = None
    try:
        settings = load_server_settings(lk.config.raw)
        creds = CredentialStore(lk.store.url)
        auth = Authenticator(creds, settings, root=lk.root, mtls=ca is not None)
        scheme = "grpc+tls" if certs else "grpc"
        shown = f"[{host}]" if _is_v6(host) else host
        server = LakeFlightServer(
            lk,
            f"{scheme}://{shown}:{port}",
            auth=auth,
            settings=settings,
            tls_certificates=certs,
            client_ca=ca,
        )
        lk.batch.start()  # the scheduler lives in the server (it holds the store's lease)
    except BaseException:
        if creds is not None:
            creds.close()
        lk.close()
        raise
    return Running(f"{scheme}://{shown}:{server.port}", server, lk, creds)


def serve(announce: Callable[[str], None] = print, **kw: object) -> None:
    """Run `start(**kw)` until SIGINT or SIGTERM; `announce` gets the address once listening."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    running = start(**kw)  # type: ignore[arg-type]
    try:
        announce(running.url)
        while not stop.wait(0.5):
            pass
    finally:
        running.stop()
        for s, h in previous.items():
            signal.signal(s, h)


def _is_v6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
