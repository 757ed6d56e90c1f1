"""`lake serve`, `lake token ...`, `lake user ...`, `lake login`, and `--server` / $LAKE_SERVER:
the CLI as a client of a server, its token from $LAKE_TOKEN or the file `lake login` saves."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from catalog import storage
from catalog.errors import InvalidArgument, LakeError
from lake.cli.common import CatalogUrl, Root, console, err, fail, line, say
from lake.cli.remote import server_url

token_app = typer.Typer(
    help="Bearer tokens for the server: create, list, revoke.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
user_app = typer.Typer(
    help="Users' passwords for the server.", no_args_is_help=True, pretty_exceptions_enable=False
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' (or plain seconds) as seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise InvalidArgument(f"a duration is like 30d, 12h, 90m or 45s, not {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _when(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _credentials(root: Path, catalog: str | None):  # noqa: ANN202
    from lake.lake import connect
    from lake.server.credentials import CredentialStore

    lk = connect(root, catalog=catalog)
    return lk, CredentialStore(lk.store.url)


# the server -----------------------------------------------------------------------------------
def serve(
    root: Root = ".",
    catalog: CatalogUrl = None,
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to listen on (port 0: any free port).")
    ] = "127.0.0.1:8815",
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Server certificate (PEM).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="Its private key (PEM).")
    ] = None,
    client_ca: Annotated[
        Path | None,
        typer.Option("--client-ca", help="Require client certificates signed by this CA (mTLS)."),
    ] = None,
    background: Annotated[
        bool,
        typer.Option(
            "--background",
            help="Start the server in the background; print its PID once it listens.",
        ),
    ] = False,
) -> None:
    """Serve the lake over Arrow Flight SQL to authenticated clients (Ctrl-C stops it)."""
    if background:
        _in_background(sys.argv[1:], root)
        return
    import logging

    from lake.server.serve import serve as run

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    def announce(url: str) -> None:
        shown = root if storage.is_remote(root) else Path(root).resolve()
        typer.echo(f"serving {shown} on {url}")  # plain: scripts read the URL
        sys.stdout.flush()

    try:
        run(
            announce,
            root=root,
            catalog=catalog,
            listen=listen,
            tls_cert=tls_cert,
            tls_key=tls_key,
            client_ca=client_ca,
        )
    except (LakeError, OSError) as e:
        fail(e)


def _log_file(root: str) -> Path:
    if not storage.is_remote(root):
        return Path(root).resolve() / "_lakeward" / "serve.log"
    name = hashlib.sha256(root.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "lakeward" / f"serve-{name}.log"


def _in_background(argv: list[str], root: str) -> None:
    """Run `lake serve` (these arguments, less --background) detached, its output in the lake's
    serve.log (for a lake in an object store, in this host's cache folder); return once it
    listens, printing its PID (stdout) and its URL (stderr)."""
    log = _log_file(root)
    log.parent.mkdir(parents=True, exist_ok=True)
    args = [a for a in argv if a != "--background"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lake.cli", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        for ln in text.splitlines():
            if ln.startswith("serving "):
                err.print(line(ln, f" (pid {proc.pid}; stop it with: kill {proc.pid})"))
                typer.echo(str(proc.pid))
                return
        if proc.poll() is not None:
            fail(InvalidArgument(f"lake serve stopped: {text.strip().splitlines()[-1:] or ''}"))
        time.sleep(0.1)
    proc.kill()
    fail(InvalidArgument(f"lake serve did not start listening within 120 s (see {log})"))


def login(
    server: Annotated[str | None, typer.Option("--server", envvar="LAKE_SERVER")] = None,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Log in with this user's password.")
    ] = None,
) -> None:
    """Save a token for the CLI: read one from standard input, or with --user a password
    (the server answers with a session token)."""
    from lake.server.client import RemoteLake, token_file

    url = server or server_url()
    if not url:
        fail(InvalidArgument("name the server: --server grpc://HOST:PORT or $LAKE_SERVER"))
    secret = sys.stdin.readline().rstrip("\r\n")
    try:
        if user:
            lk = RemoteLake(
                url, username=user, password=secret, tls_ca=os.environ.get("LAKE_TLS_CA")
            )
            token = lk._auth[0][1].decode().removeprefix("Bearer ")
        else:
            lk = RemoteLake(url, token=secret, tls_ca=os.environ.get("LAKE_TLS_CA"))
            token = secret
        who = lk.user
        lk.close()
    except LakeError as e:
        fail(e)
    path = token_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    say(f"logged in to {url} as ", (who, "bold"), f"; token saved in {path}")


# tokens ---------------------------------------------------------------------------------------
@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Argument(help="The user the token authenticates.")],
    root: Root = ".",
    catalog: CatalogUrl = None,
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="Lifetime, e.g. 30d, 12h (default: none).")
    ] = None,
    note: Annotated[str, typer.Option(help="What the token is for.")] = "",
) -> None:
    """Create a token and print it once (only its hash is kept)."""
    try:
        seconds = parse_duration(expires_in) if expires_in else None
        lk, creds = _credentials(root, catalog)
        try:
            token, info = creds.create_token(user, expires_in_s=seconds, note=note)
            lk.gate.record(
                lk.owner, "token_create", f"create token {info.id} for {user}", "allowed"
            )
        finally:
            creds.close()
            lk.close()
    except LakeError as e:
        fail(e)
    typer.echo(token)
    until = f", expires {_when(info.expires_at)} UTC" if info.expires_at else ""
    err.print(f"token {info.id} for {user}{until}; it is shown only now")


@token_app.command("list")
def token_list(
    root: Root = ".",
    catalog: CatalogUrl = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's.")] = None,
    sessions: Annotated[bool, typer.Option(help="Include password-login sessions.")] = False,
) -> None:
    """Tokens (never their secrets): id, user, created, expires, state."""
    try:
        lk, creds = _credentials(root, catalog)
        try:
            rows = creds.list_tokens(user, sessions=sessions)
        finally:
            creds.close()
            lk.close()
    except LakeError as e:
        fail(e)
    t = Table("id", "user", "kind", "created", "expires", "state", "note", header_style="bold cyan")
    now = time.time()
    for r in rows:
        state = (
            "revoked"
            if r.revoked_at
            else ("expired" if r.expires_at and r.expires_at <= now else "active")
        )
        t.add_row(r.id, r.user, r.kind, _when(r.created_at), _when(r.expires_at), state, r.note)
    console.print(t)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (or the token itself).")],
    root: Root = ".",
    catalog: CatalogUrl = None,
) -> None:
    """Revoke a token: it is refused from the next call on."""
    try:
        lk, creds = _credentials(root, catalog)
        try:
            done = creds.revoke_token(token_id)
            if done:
                lk.gate.record(lk.owner, "token_revoke", f"revoke token {token_id[:16]}", "allowed")
        finally:
            creds.close()
            lk.close()
    except LakeError as e:
        fail(e)
    if not done:
        fail(InvalidArgument(f"no active token {token_id[:16]!r}; see lake token list"))
    console.print(f"token {token_id[:16]} revoked")


# passwords ------------------------------------------------------------------------------------
@user_app.command("set-password")
def set_password(
    user: Annotated[str, typer.Argument(help="The user.")],
    root: Root = ".",
    catalog: CatalogUrl = None,
) -> None:
    """Set a user's password, read from standard input (stored as an argon2id hash)."""
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        lk, creds = _credentials(root, catalog)
        try:
            creds.set_password(user, password)
            lk.gate.record(lk.owner, "set_password", f"set the password of {user}", "allowed")
        finally:
            creds.close()
            lk.close()
    except LakeError as e:
        fail(e)
    console.print(f"password of {user} set")


@user_app.command("remove-password")
def remove_password(
    user: Annotated[str, typer.Argument(help="The user.")],
    root: Root = ".",
    catalog: CatalogUrl = None,
) -> None:
    """Forget a user's password (password logins are refused from then on)."""
    try:
        lk, creds = _credentials(root, catalog)
        try:
            creds.remove_password(user)
        finally:
            creds.close()
            lk.close()
    except LakeError as e:
        fail(e)
    console.print(f"password of {user} removed")


def register(app: typer.Typer) -> None:
    """Add the server commands to the `lake` app (its --server option is the app's own)."""
    app.command("serve")(serve)
    app.command("login")(login)
    app.add_typer(token_app, name="token")
    app.add_typer(user_app, name="user")
