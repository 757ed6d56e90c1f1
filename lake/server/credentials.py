"""Credentials the server accepts: bearer tokens and password hashes, in the metadata store.

Tables are prefixed `server_` and live beside the catalog's (like the batch package's `batch_`
tables), with their own versioned migrations. A token is shown once, when it is created; only
its SHA-256 is kept (a token is 256 random bits, so a fast hash is enough; a password is not,
and gets argon2id). Sessions are tokens too: a password login through the Flight handshake
mints a short-lived one, listed and revocable like any other.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from catalog.errors import InvalidArgument
from catalog.store.connections import Connections
from governance.principal import check_user_name

PREFIX = "lkw_"
_TOKEN_RE = re.compile(r"lkw_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")

metadata = sa.MetaData()

meta = sa.Table(
    "server_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

tokens = sa.Table(
    "server_tokens",
    metadata,
    sa.Column("id", sa.String(12), primary_key=True),
    sa.Column("user", sa.String(255), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # token | session
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("note", sa.Text, nullable=False, default=""),
)

passwords = sa.Table(
    "server_passwords",
    metadata,
    sa.Column("user", sa.String(255), primary_key=True),
    sa.Column("hash", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


def _v1(conn: sa.Connection) -> None:
    for t in (meta, tokens, passwords):
        t.create(conn, checkfirst=True)


# Append only: a released migration never changes; index + 1 is the schema version.
MIGRATIONS: list[Callable[[sa.Connection], None]] = [_v1]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sa.Connection) -> int:
    """Bring the server tables up to SCHEMA_VERSION inside the caller's transaction."""
    current = 0
    if sa.inspect(conn).has_table(meta.name):
        row = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).first()
        current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"server schema v{current} is newer than this Lakeward (v{SCHEMA_VERSION}); upgrade"
        )
    for step in MIGRATIONS[current:]:
        step(conn)
    if current == 0:
        conn.execute(sa.insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
    elif current < SCHEMA_VERSION:
        conn.execute(
            sa.update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION))
        )
    return SCHEMA_VERSION


@dataclass(frozen=True)
class TokenInfo:
    """A stored token, without its secret."""

    id: str
    user: str
    kind: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    note: str = ""

    @property
    def active(self) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > time.time()
        )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# Compared against when a token id is unknown, so a miss costs what a hit costs.
_DUMMY = _digest("lakeward-no-such-token")


class CredentialStore:
    """Tokens and passwords of one metadata store."""

    def __init__(self, url: str, hasher: PasswordHasher | None = None):
        self.url = url
        self._db = Connections(url)
        self.hasher = hasher or PasswordHasher()
        with self._db.write() as conn:
            migrate(conn)

    def close(self) -> None:
        self._db.close()

    # tokens ------------------------------------------------------------------------------------
    def create_token(
        self,
        user: str,
        *,
        expires_in_s: float | None = None,
        kind: str = "token",
        note: str = "",
    ) -> tuple[str, TokenInfo]:
        """A new token for `user`: (the secret, shown only now; what is stored)."""
        check_user_name(user)
        if expires_in_s is not None and expires_in_s <= 0:
            raise InvalidArgument("a token's lifetime must be positive")
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        now = time.time()
        info = TokenInfo(
            token_id, user, kind, now, now + expires_in_s if expires_in_s else None, None, note
        )
        with self._db.write() as conn:
            if kind == "session":  # sessions pile up; drop the long-dead ones as new ones come
                conn.execute(
                    sa.delete(tokens).where(
                        tokens.c.kind == "session", tokens.c.expires_at < now - 86400
                    )
                )
            conn.execute(
                sa.insert(tokens).values(
                    id=token_id,
                    user=user,
                    kind=kind,
                    digest=_digest(secret),
                    created_at=now,
                    expires_at=info.expires_at,
                    revoked_at=None,
                    note=note,
                )
            )
        return f"{PREFIX}{token_id}_{secret}", info

    def verify_token(self, token: str) -> tuple[str, str] | None:
        """(user, kind) for a token that authenticates, or None (malformed, unknown, wrong,
        expired or revoked: one answer for all)."""
        m = _TOKEN_RE.fullmatch(token)
        if m is None:
            return None
        token_id, secret = m.groups()
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(
                    tokens.c.user,
                    tokens.c.kind,
                    tokens.c.digest,
                    tokens.c.expires_at,
                    tokens.c.revoked_at,
                ).where(tokens.c.id == token_id)
            ).first()
        good = hmac.compare_digest(_digest(secret), row.digest if row else _DUMMY)
        if row is None or not good or row.revoked_at is not None:
            return None
        if row.expires_at is not None and row.expires_at <= time.time():
            return None
        return row.user, row.kind

    def list_tokens(self, user: str | None = None, *, sessions: bool = False) -> list[TokenInfo]:
        """Stored tokens (never their secrets), oldest first."""
        q = sa.select(tokens).order_by(tokens.c.created_at)
        if user is not None:
            q = q.where(tokens.c.user == user)
        if not sessions:
            q = q.where(tokens.c.kind == "token")
        with self._db.read() as conn:
            rows = conn.execute(q).all()
        return [
            TokenInfo(r.id, r.user, r.kind, r.created_at, r.expires_at, r.revoked_at, r.note or "")
            for r in rows
        ]

    def revoke_token(self, token_id: str) -> bool:
        """Revoke a token (or session) by its id, or by the token itself; False if unknown."""
        m = _TOKEN_RE.fullmatch(token_id)
        tid = m.group(1) if m else token_id
        with self._db.write() as conn:
            done = conn.execute(
                sa.update(tokens)
                .where(tokens.c.id == tid, tokens.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        return done.rowcount > 0

    # passwords ---------------------------------------------------------------------------------
    def set_password(self, user: str, password: str) -> None:
        """Store `user`'s password as an argon2id hash (replacing any)."""
        check_user_name(user)
        if not isinstance(password, str) or len(password) < 8:
            raise InvalidArgument("a password has at least 8 characters")
        digest = self.hasher.hash(password)
        with self._db.write() as conn:
            conn.execute(sa.delete(passwords).where(passwords.c.user == user))
            conn.execute(
                sa.insert(passwords).values(user=user, hash=digest, updated_at=time.time())
            )

    def remove_password(self, user: str) -> bool:
        """Forget `user`'s password; False if there was none."""
        with self._db.write() as conn:
            return conn.execute(sa.delete(passwords).where(passwords.c.user == user)).rowcount > 0

    def verify_password(self, user: str, password: str) -> bool:
        """Whether `password` is `user`'s (argon2 compares in constant time)."""
        with self._db.read() as conn:
            row = conn.execute(sa.select(passwords.c.hash).where(passwords.c.user == user)).first()
        try:
            # An unknown user still pays one verification, so timing tells nothing.
            ok = self.hasher.verify(row.hash if row else _missing_hash(self.hasher), password)
        except (VerificationError, InvalidHashError):
            return False
        return ok and row is not None


_MISSING: dict[int, str] = {}


def _missing_hash(hasher: PasswordHasher) -> str:
    key = id(hasher)
    if key not in _MISSING:
        _MISSING[key] = hasher.hash(secrets.token_urlsafe(16))
    return _MISSING[key]
