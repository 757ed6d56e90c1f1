"""TLS, mutual TLS (the client certificate's CN is the user) and OIDC JWTs, with certificates and
keys the tests generate."""

from __future__ import annotations

import time

import adbc_driver_flightsql as adbc_flightsql
import adbc_driver_flightsql.dbapi as adbc
import jwt
import pyarrow.flight as fl
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import lake
from lake.errors import AccessDenied, LakeError

from support.server import ServedLake, make_certs, make_lake, write_toml


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"), clients=("alice", "bob"))


def test_tls_with_a_token(tmp_path, certs):
    root = make_lake(tmp_path / "lake")
    s = ServedLake(
        root,
        ["--tls-cert", str(certs.path("server.crt")), "--tls-key", str(certs.path("server.key"))],
    ).start()
    try:
        assert s.url.startswith("grpc+tls://")
        token = s.token("alice")
        with lake.connect(s.url, token=token, tls_ca=certs.path("ca.crt")) as a:
            assert a.sql("SELECT count(*) FROM sales.orders").column(0)[0].as_py() == 3
        kwargs = {
            "adbc.flight.sql.authorization_header": "Bearer " + token,
            adbc_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value: certs.path("ca.crt").read_text(),
        }
        with adbc.connect(s.url, db_kwargs=kwargs, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM sales.orders ORDER BY id")
            assert [r[0] for r in cur.fetchall()] == [1, 3, 5]
        # without the CA the server is not trusted; plaintext gets nowhere either
        with pytest.raises(LakeError):
            lake.connect(s.url, token=token)
        with pytest.raises(LakeError):
            lake.connect(s.url.replace("grpc+tls", "grpc"), token=token, timeout_s=5)
    finally:
        s.stop()


def test_mutual_tls_maps_the_certificate_cn_to_the_user(tmp_path, certs):
    root = make_lake(tmp_path / "lake")
    s = ServedLake(
        root,
        [
            "--tls-cert",
            str(certs.path("server.crt")),
            "--tls-key",
            str(certs.path("server.key")),
            "--client-ca",
            str(certs.path("ca.crt")),
        ],
    ).start()
    try:
        for user, ids in (("alice", [1, 3, 5]), ("bob", [2, 4, 6])):
            with lake.connect(
                s.url,
                tls_ca=certs.path("ca.crt"),
                tls_cert=certs.path(f"{user}.crt"),
                tls_key=certs.path(f"{user}.key"),
            ) as c:
                assert (c.user, c.auth) == (user, "mtls")
                got = c.sql("SELECT id FROM sales.orders ORDER BY id").column("id").to_pylist()
                assert got == ids
        kwargs = {
            adbc_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value: certs.path("ca.crt").read_text(),
            adbc_flightsql.DatabaseOptions.MTLS_CERT_CHAIN.value: certs.path("bob.crt").read_text(),
            adbc_flightsql.DatabaseOptions.MTLS_PRIVATE_KEY.value: certs.path(
                "bob.key"
            ).read_text(),
        }
        with adbc.connect(s.url, db_kwargs=kwargs, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM sales.orders ORDER BY id")
            assert [r[0] for r in cur.fetchall()] == [2, 4, 6]
        # a certificate from another CA, or none, does not get through the TLS handshake
        with pytest.raises(LakeError):
            lake.connect(
                s.url,
                tls_ca=certs.path("ca.crt"),
                tls_cert=certs.path("forged.crt"),
                tls_key=certs.path("forged.key"),
                timeout_s=10,
            )
        with pytest.raises(LakeError):
            lake.connect(s.url, tls_ca=certs.path("ca.crt"), token="lkw_x", timeout_s=10)
        # a token on top of a certificate is checked too: a bad one is refused
        with pytest.raises(AccessDenied, match="unauthenticated"):
            lake.connect(
                s.url,
                token="lkw_000000000000_" + "x" * 43,
                tls_ca=certs.path("ca.crt"),
                tls_cert=certs.path("alice.crt"),
                tls_key=certs.path("alice.key"),
            )
    finally:
        s.stop()


def test_jwt_bearer_tokens_from_a_configured_issuer(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = make_lake(tmp_path / "lake")
    write_toml(
        root,
        f"""
        [server.oidc]
        issuer = "https://idp.test"
        audience = "lakeward"
        public_keys = [{public.decode()!r}]
        """.replace("'", '"""'),
    )
    s = ServedLake(root).start()
    try:

        def make(sub: str, signer=key, **over) -> str:
            claims = {
                "sub": sub,
                "iss": "https://idp.test",
                "aud": "lakeward",
                "exp": int(time.time()) + 300,
                **over,
            }
            return jwt.encode(claims, signer, algorithm="RS256")

        with lake.connect(s.url, token=make("bob")) as b:
            assert (b.user, b.auth) == ("bob", "jwt")
            assert b.sql("SELECT id FROM sales.orders ORDER BY id").column(0).to_pylist() == [
                2,
                4,
                6,
            ]
        for bad in (
            make("bob", signer=other),
            make("bob", exp=int(time.time()) - 600),
            make("bob", aud="someone-else"),
            make("bob", iss="https://evil.test"),
            make("role:admin"),
        ):
            with pytest.raises(AccessDenied, match="unauthenticated"):
                lake.connect(s.url, token=bad)
        client = fl.connect(s.url)
        with pytest.raises(fl.FlightUnauthenticatedError):
            opts = fl.FlightCallOptions(headers=[(b"authorization", b"Bearer a.b.c")])
            list(client.do_action(fl.Action("lakeward.whoami", b"{}"), opts))
        client.close()
    finally:
        s.stop()
