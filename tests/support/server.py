"""A real `lake serve` in a child process on 127.0.0.1 (an ephemeral port), and a lake to serve.

`ServedLake.start()` runs the CLI exactly as a user would and reads the address it announces;
`stop()` ends it by pid (SIGTERM, then SIGKILL), `kill()` SIGKILLs it.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

import lake

REPO = Path(__file__).resolve().parents[2]

POLICY = """\
g, admin, role:admin
p, role:admin, *, *, allow
p, role:admin, policy, describe, allow
p, role:auditor, system.audit, select, allow
g, admin, role:auditor
p, *, sales, describe, allow
p2, alice, sales.orders, eu_rows, "region = 'eu'", *
p2, bob, sales.orders, us_rows, "region = 'us'", id amount region
p, alice, sales.orders, insert, allow
p, alice, sales.orders, update, allow
p, alice, sales.orders, delete, allow
p, alice, sales.orders, alter, allow
p, alice, queue:default, submit, allow
p, bob, queue:default, submit, allow
p, alice, queue:default, alter, allow
"""

ORDERS = pa.table(
    {
        "id": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
        "amount": pa.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0]),
        "region": ["eu", "us", "eu", "us", "eu", "us"],
        "note": ["a", "b", "c", "d", "e", "f"],
    }
)

URL_RE = re.compile(r"on (grpc(?:\+tls)?://\S+)")


def lake_cli(*args: str, input: str | None = None, timeout: float = 120, env=None) -> str:
    """Run `lake ARGS` (the installed CLI); its stdout (CalledProcessError on failure)."""
    out = subprocess.run(
        [sys.executable, "-c", "from lake.cli import main; main()", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("LAKE_")}, **(env or {})},
        check=True,
    )
    return out.stdout


def make_lake(root: Path, extra_toml: str = "") -> Path:
    """A lake with sales.orders (eu and us rows) and the POLICY above; returns its root."""
    root.mkdir(parents=True, exist_ok=True)
    folder = root / "policy"
    folder.mkdir(exist_ok=True)
    (folder / "policy.csv").write_text(POLICY)
    with lake.connect(root, policy=folder) as lk:
        if extra_toml:
            (root / "lake.toml").write_text((root / "lake.toml").read_text() + extra_toml)
        lk.catalog.create_database("sales", exist_ok=True)
        lk.catalog.create_table("sales.orders", ORDERS.schema, exist_ok=True, description="orders")
        lk.write("sales.orders", ORDERS)
    return root


@dataclass
class ServedLake:
    """A lake root and the `lake serve` process serving it."""

    root: Path
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    url: str = ""
    log: Path | None = None

    def start(self, timeout: float = 120) -> ServedLake:
        self.log = self.root.parent / f"serve-{self.root.name}.log"
        out = open(self.log, "w")  # noqa: SIM115 - the child writes it for its life
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from lake.cli import main; main()",
                "serve",
                "--root",
                str(self.root),
                "--listen",
                "127.0.0.1:0",
                *self.args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text()
            m = URL_RE.search(text)
            if m:
                self.url = m.group(1)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"lake serve exited {self.proc.returncode}:\n{text}")
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"lake serve did not start:\n{self.log.read_text()}")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def token(self, user: str, *extra: str) -> str:
        return lake_cli("token", "create", user, "--root", str(self.root), *extra).strip()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def output(self) -> str:
        return self.log.read_text() if self.log else ""


def write_toml(root: Path, text: str) -> None:
    path = root / "lake.toml"
    path.write_text(path.read_text() + "\n" + textwrap.dedent(text))


# certificates ---------------------------------------------------------------------------------
@dataclass
class Certs:
    folder: Path

    def path(self, name: str) -> Path:
        return self.folder / name


def make_certs(folder: Path, clients: tuple[str, ...] = ("alice",)) -> Certs:
    """A CA, a server certificate for 127.0.0.1/localhost, and client certificates (CN=name,
    no subject alternative names) signed by the CA; plus a client signed by another CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def issue(cn: str, issuer=None, *, ca: bool = False, san: list | None = None):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer[0].subject if issuer else name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(issuer[1] if issuer else key, hashes.SHA256()), key

    def save(pair, stem: str) -> None:
        cert, key = pair
        (folder / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    ca = issue("lakeward-test-ca", ca=True)
    save(ca, "ca")
    loopback = ipaddress.ip_address("127.0.0.1")
    san = [x509.DNSName("localhost"), x509.IPAddress(loopback)]
    save(issue("localhost", ca, san=san), "server")
    for c in clients:
        save(issue(c, ca), c)
    other = issue("other-ca", ca=True)
    save(other, "other-ca")
    save(issue("alice", other), "forged")
    return Certs(folder)


def wait_for(predicate, timeout: float = 30, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        time.sleep(every)
    return False
