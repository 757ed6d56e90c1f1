"""The server's credentials and helpers, on their own: what is stored, what is accepted."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from lake.cli.server import parse_duration
from lake.errors import InvalidArgument, SQLError
from lake.server.auth import FailureLimiter
from lake.server.credentials import CredentialStore
from lake.server.metadata import like
from lake.server.statements import bind_parameters


@pytest.fixture
def creds(tmp_path):
    store = CredentialStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield store
    store.close()


def test_a_token_is_shown_once_and_only_its_hash_is_kept(creds, tmp_path):
    token, info = creds.create_token("alice", expires_in_s=60, note="ci")
    secret = token.split("_", 2)[2]
    assert creds.verify_token(token) == ("alice", "token")
    with sa.create_engine(f"sqlite:///{tmp_path / 'store.db'}").connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM server_tokens")).all()
    assert len(rows) == 1
    assert all(secret not in str(v) for v in rows[0])
    assert info.id in token and info.expires_at > time.time()
    assert [t.id for t in creds.list_tokens()] == [info.id]


def test_wrong_expired_revoked_and_malformed_tokens_verify_as_none(creds):
    token, info = creds.create_token("alice")
    assert creds.verify_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert creds.verify_token("lkw_" + "0" * 12 + "_" + "x" * 43) is None
    assert creds.verify_token("nonsense") is None
    short, _ = creds.create_token("bob", expires_in_s=0.2)
    time.sleep(0.3)
    assert creds.verify_token(short) is None
    assert creds.revoke_token(info.id) is True
    assert creds.verify_token(token) is None
    assert creds.revoke_token(info.id) is False
    with pytest.raises(InvalidArgument):
        creds.create_token("role:admin")
    with pytest.raises(InvalidArgument):
        creds.create_token("*")


def test_passwords_are_argon2id_hashes(creds, tmp_path):
    creds.set_password("alice", "correct horse battery")
    with sa.create_engine(f"sqlite:///{tmp_path / 'store.db'}").connect() as conn:
        [(stored,)] = conn.execute(sa.text("SELECT hash FROM server_passwords")).all()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert creds.verify_password("alice", "correct horse battery")
    assert not creds.verify_password("alice", "correct horse batterY")
    assert not creds.verify_password("nobody", "correct horse battery")
    with pytest.raises(InvalidArgument, match="at least 8"):
        creds.set_password("alice", "short")
    assert creds.remove_password("alice")
    assert not creds.verify_password("alice", "correct horse battery")


def test_failure_limiter_blocks_past_the_limit_until_the_window_passes():
    lim = FailureLimiter(limit=3, window_s=0.5)
    for _ in range(2):
        lim.fail("10.0.0.1")
    assert not lim.blocked("10.0.0.1")
    lim.fail("10.0.0.1")
    assert lim.blocked("10.0.0.1") and not lim.blocked("10.0.0.2")
    time.sleep(0.6)
    assert not lim.blocked("10.0.0.1")


def test_parameters_are_bound_as_literals_never_as_sql():
    q = bind_parameters("SELECT * FROM t WHERE a = ? AND b > ?", ["x' OR '1'='1", 3])
    assert q == "SELECT * FROM t WHERE a = 'x'' OR ''1''=''1' AND b > 3"
    assert bind_parameters("SELECT 1", []) == "SELECT 1"
    with pytest.raises(InvalidArgument, match="2 parameters, 1 given"):
        bind_parameters("SELECT ?, ?", [1])
    with pytest.raises(InvalidArgument, match="not supported"):
        bind_parameters("SELECT ?", [object()])
    with pytest.raises(SQLError):
        bind_parameters("SELECT ? FROM (", [1])


def test_like_patterns_and_durations():
    assert like("sa%").fullmatch("sales") and not like("sa%").fullmatch("xsales")
    assert like("s_les").fullmatch("sales") and like(r"a\_b").fullmatch("a_b")
    assert not like(r"a\_b").fullmatch("axb") and like(None) is None
    assert parse_duration("30d") == 30 * 86400 and parse_duration("90m") == 5400
    assert parse_duration("45") == 45
    with pytest.raises(InvalidArgument):
        parse_duration("soon")
