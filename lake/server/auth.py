"""Who is calling: every Flight call's credential proven, or the call refused "unauthenticated".

Accepted: `authorization: Bearer TOKEN` (a token from `lake token create`, a session from a
password login, or, when `[server.oidc]` is configured, a JWT signed by one of its keys); a
password through the Flight handshake (`authorization: Basic ...`), which answers with a session
token; or, on a server started with `--client-ca`, the verified client certificate (gRPC's peer
identity: the subject's common name for a certificate without subject alternative names).

A missing, malformed, wrong, expired or revoked credential gets the same "unauthenticated" and
nothing more. Failed attempts are counted per client address (per user name during the
handshake, which Flight runs before it tells anyone the caller's address); past the limit a
client is refused without its credential being looked at until the window passes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import threading
import time
from collections import deque
from pathlib import Path

import jwt
import pyarrow.flight as fl
from cachetools import TTLCache
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from catalog.errors import InvalidArgument
from governance.principal import Principal
from lake.server.credentials import PREFIX, CredentialStore
from lake.server.settings import OidcSettings, ServerSettings
from lake.server.wire import ACTING

MIDDLEWARE = "lakeward-auth"


def refused() -> fl.FlightUnauthenticatedError:
    """The one answer to a credential that does not prove anyone."""
    return fl.FlightUnauthenticatedError("unauthenticated")


class FailureLimiter:
    """Failed attempts per key in a sliding window; a key past `limit` is blocked."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000):
        self.limit, self.window = limit, window_s
        self.max_keys = max_keys
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        q = self._fails.get(key)
        while q and q[0] <= now - self.window:
            q.popleft()
        if q is not None and not q:
            del self._fails[key]
            return None
        return q

    def blocked(self, key: str) -> bool:
        with self._lock:
            q = self._recent(key, time.monotonic())
            return q is not None and len(q) >= self.limit

    def fail(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._fails) >= self.max_keys:  # a flood of addresses: forget the oldest
                for k in list(self._fails)[: self.max_keys // 10]:
                    del self._fails[k]
            q = self._recent(key, now)
            if q is None:
                q = self._fails[key] = deque()
            q.append(now)


class JwtVerifier:
    """JWTs from one OIDC issuer, checked against the keys configured in lake.toml."""

    def __init__(self, cfg: OidcSettings, root: Path):
        self.cfg = cfg
        try:
            self.keys: list[object] = [load_pem_public_key(k.encode()) for k in cfg.public_keys]
        except ValueError as e:
            raise InvalidArgument(
                f"[server.oidc] public_keys: not a PEM public key ({e})"
            ) from None
        self.jwks: jwt.PyJWKSet | None = None
        if cfg.jwks_file:
            path = Path(cfg.jwks_file)
            self.jwks = jwt.PyJWKSet.from_json(
                (path if path.is_absolute() else root / path).read_text()
            )
        if not self.keys and self.jwks is None:
            raise InvalidArgument("[server.oidc] needs public_keys or jwks_file")

    def user(self, token: str) -> str | None:
        """The user a JWT names (its `user_claim`), or None if it does not verify."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        candidates: list[object] = list(self.keys)
        if self.jwks is not None:
            kid = header.get("kid")
            candidates += [k.key for k in self.jwks.keys if kid is None or k.key_id == kid]
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=self.cfg.algorithms,
                    audience=self.cfg.audience,
                    issuer=self.cfg.issuer,
                    leeway=self.cfg.leeway_s,
                    options={"require": ["exp", "iss", "aud"]},
                )
            except jwt.PyJWTError:
                continue
            name = claims.get(self.cfg.user_claim)
            return name if isinstance(name, str) else None
        return None


class Authenticator:
    """Turns a call's credential into a Principal (or refuses it)."""

    def __init__(
        self,
        store: CredentialStore,
        settings: ServerSettings,
        *,
        root: Path,
        mtls: bool = False,
    ):
        self.store = store
        self.settings = settings
        self.mtls = mtls
        self.jwt = JwtVerifier(settings.oidc, root) if settings.oidc else None
        self.limiter = FailureLimiter(settings.max_failures, settings.failure_window_s)
        # Clients send their token on every call (a query is three or four calls over ADBC).
        self._verified: TTLCache[str, tuple[str, str]] | None = (
            TTLCache(maxsize=100_000, ttl=settings.auth_cache_s) if settings.auth_cache_s else None
        )
        self._cache_lock = threading.Lock()

    def cached(self, context: fl.ServerCallContext) -> Principal | None:
        """The principal of a call whose token was verified moments ago (None: it takes a
        look-up in the store, `principal`)."""
        mw = context.get_middleware(MIDDLEWARE)
        header = mw.header if mw is not None else ""
        kind, _, cred = header.partition(" ")
        if self._verified is None or kind.lower() != "bearer" or not cred.startswith(PREFIX):
            return None
        client = _address(context.peer())
        if self.limiter.blocked(client.rsplit(":", 1)[0]):
            return None
        key = hashlib.sha256(cred.strip().encode()).hexdigest()
        with self._cache_lock:
            hit = self._verified.get(key)
        return Principal.user(hit[0], auth=hit[1], client=client) if hit else None

    def principal(self, context: fl.ServerCallContext) -> Principal:
        """The authenticated principal of a call; FlightUnauthenticatedError otherwise."""
        client = _address(context.peer())
        host = client.rsplit(":", 1)[0]
        if self.limiter.blocked(host):
            raise refused()
        mw = context.get_middleware(MIDDLEWARE)
        header = mw.header if mw is not None else ""
        user, how = None, ""
        if header:
            user, how = self._bearer(header)
        elif self.mtls:
            identity = context.peer_identity()
            user = identity.decode(errors="replace") if identity else None
            how = "mtls"
        if user is None:
            self.limiter.fail(host)
            raise refused()
        try:
            return Principal.user(user, auth=how, client=client)
        except InvalidArgument:  # a certificate or token naming no possible user
            self.limiter.fail(host)
            raise refused() from None

    def _bearer(self, header: str) -> tuple[str | None, str]:
        kind, _, cred = header.partition(" ")
        cred = cred.strip()
        if kind.lower() != "bearer" or not cred:
            return None, ""
        if cred.startswith(PREFIX):
            found = self._verify_token(cred)
            return (found[0], found[1]) if found else (None, "")
        if self.jwt is not None and cred.count(".") == 2:
            return self.jwt.user(cred), "jwt"
        return None, ""

    def _verify_token(self, token: str) -> tuple[str, str] | None:
        if self._verified is None:
            return self.store.verify_token(token)
        key = hashlib.sha256(token.encode()).hexdigest()  # the secret itself is never kept
        with self._cache_lock:
            hit = self._verified.get(key)
        if hit is not None:
            return hit
        found = self.store.verify_token(token)
        if found is not None:  # only successes: a failure is counted and looked up afresh
            with self._cache_lock:
                self._verified[key] = found
        return found

    def login(self, header: str) -> str:
        """A session token for a valid `Basic` credential (the handshake); refused otherwise."""
        kind, _, encoded = header.partition(" ")
        try:
            user, sep, password = (
                base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            user, sep, password = "", "", ""
        keys = ["handshake", f"user:{user.lower()}"]
        if kind.lower() != "basic" or not sep or not user:
            self.limiter.fail(keys[0])
            raise refused()
        # The handshake comes without the caller's address: limit by user, and overall.
        if self.limiter.blocked(keys[1]) or _global_blocked(self.limiter, keys[0]):
            raise refused()
        with contextlib.suppress(InvalidArgument):
            if self.store.verify_password(user, password):
                token, _info = self.store.create_token(
                    user, expires_in_s=self.settings.session_ttl_s, kind="session"
                )
                return token
        for k in keys:
            self.limiter.fail(k)
        raise refused()


def _global_blocked(limiter: FailureLimiter, key: str) -> bool:
    # Spraying many user names: the handshake overall allows ten times one user's failures.
    with limiter._lock:
        q = limiter._recent(key, time.monotonic())
        return q is not None and len(q) >= limiter.limit * 10


def _address(peer: str) -> str:
    """gRPC's peer ("ipv4:127.0.0.1:5000", "ipv6:%5B::1%5D:5000") as host:port."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return rest.replace("%5B", "[").replace("%5D", "]")
    return peer


class _Call(fl.ServerMiddleware):
    def __init__(self, header: str, issued: str | None, acting: str | None = None):
        self.header = header
        self.issued = issued
        self.acting = acting

    def sending_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.issued}"} if self.issued else {}


class AuthMiddleware(fl.ServerMiddlewareFactory):
    """Keeps each call's credential for the service; answers a password handshake with a
    session token (the headers are sent before the service sees the call)."""

    def __init__(self, auth: Authenticator, *, handshake: bool = True):
        super().__init__()
        self.auth = auth
        self.handshake = handshake  # False with --client-ca: Flight then has no handshake

    def start_call(self, info: fl.CallInfo, headers: dict[str, list]) -> _Call:
        values = headers.get("authorization") or [""]
        header = values[0] if isinstance(values[0], str) else values[0].decode(errors="replace")
        basic = header[:6].lower() == "basic "
        if self.handshake and info.method == fl.FlightMethod.HANDSHAKE and basic:
            return _Call("", self.auth.login(header))
        acting = (headers.get(ACTING) or [None])[0]
        return _Call(header, None, acting if isinstance(acting, str) else None)


class AcceptHandshake(fl.ServerAuthHandler):
    """Lets the Flight handshake complete (the middleware has already answered it); every call
    is then authenticated by `Authenticator.principal`."""

    def authenticate(self, outgoing: fl.ServerAuthSender, incoming: fl.ServerAuthReader) -> None:
        return None

    def is_valid(self, token: bytes) -> bytes:
        return b""
