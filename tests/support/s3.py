"""An S3 API server for tests: `scripts/s3_server.sh` starts one (moto's standalone server).

`LAKE_TEST_S3` names it (its URL; `scripts/s3_server.sh run` sets it); `LAKE_TEST_STORAGE=s3`
also puts every lake the tests open in it: a root the tests name under the pytest temporary
folder (tmp_path / "lake") is opened as `s3://lakeward-tests/<that same path>`, so test
processes and their worker processes (which open roots they are handed with `open_root`) map a
root the same way, and each test's lakes are apart like its folders. The lakes reach the server
through the standard AWS_* environment variables (set here), which `lake.connect` reads.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

BUCKET = "lakeward-tests"
SKIP_REASON = (
    "no S3 API server for the tests: run `make test` (it starts one with scripts/s3_server.sh) "
    "or set LAKE_TEST_S3=http://127.0.0.1:PORT"
)


def server_url() -> str | None:
    """The URL of the test S3 server, if there is one."""
    return os.environ.get("LAKE_TEST_S3") or None


def lakes_in_s3() -> bool:
    """Whether every lake of the tests lives in the S3 server (LAKE_TEST_STORAGE=s3)."""
    return os.environ.get("LAKE_TEST_STORAGE") == "s3" and server_url() is not None


def require_server() -> str:
    url = server_url()
    if url is None:
        pytest.skip(SKIP_REASON)
    return url


def options(url: str | None = None) -> dict[str, str]:
    """Storage options that reach the test server (any credentials do)."""
    return {
        "AWS_ENDPOINT_URL": url or require_server(),
        "AWS_ACCESS_KEY_ID": "lakeward-test",
        "AWS_SECRET_ACCESS_KEY": "lakeward-test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }


def set_environment() -> None:
    """Point the AWS_* variables at the test server (done once, before any lake opens, so
    worker processes inherit them) and make its bucket."""
    url = server_url()
    if url is None:
        return
    os.environ.update(options(url))
    make_bucket(BUCKET, url)


def make_bucket(name: str, url: str | None = None) -> None:
    import boto3  # moto[server]'s dependency: only the tests create buckets

    o = options(url)
    client = boto3.client(
        "s3",
        endpoint_url=o["AWS_ENDPOINT_URL"],
        aws_access_key_id=o["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=o["AWS_SECRET_ACCESS_KEY"],
        region_name=o["AWS_REGION"],
    )
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=name)


def fresh_prefix() -> str:
    """A new empty s3:// prefix in the test bucket."""
    require_server()
    return f"s3://{BUCKET}/p-{uuid.uuid4().hex[:12]}"


_TMP = os.path.realpath(tempfile.gettempdir())


def mapped(root: Any) -> Any:
    """The root a test names, as the tests' lakes open it: in the S3 server when
    LAKE_TEST_STORAGE=s3 and the root lies in the temporary folder, else as given. A lake.toml
    the test wrote in the local folder is copied along."""
    text = str(root)
    if not lakes_in_s3() or "://" in text:
        return root
    local = os.path.realpath(os.path.expanduser(text))
    if not local.startswith(_TMP + "/"):
        return root
    uri = f"s3://{BUCKET}{local}"
    toml = Path(local) / "lake.toml"
    if toml.is_file():
        from catalog import storage

        storage.write_bytes(uri + "/lake.toml", toml.read_bytes())
    return uri


def open_root(root: Any, **kw: Any) -> Any:
    """`lake.connect` of a root as the tests map it (for worker processes)."""
    import lake

    return lake.connect(mapped(root), **kw)
