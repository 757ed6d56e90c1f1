"""Job workdirs uploaded by remote clients: a tar stream in, a read-only folder on the server.

Each upload is kept under the lake's private server folder, by principal and by the SHA-256 of
its bytes (the same workdir uploaded twice is stored once). Extraction uses tarfile's `data`
filter: no absolute paths, no `..`, no links leaving the folder, no devices; sizes are capped.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from catalog.errors import InvalidArgument
from governance.principal import Principal

_ID = re.compile(r"[0-9a-f]{64}")


class Uploads:
    """Upload folders under `root` (one per principal and content digest)."""

    def __init__(self, root: Path, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = max_bytes

    def _home(self, p: Principal) -> Path:
        return self.root / hashlib.sha256(p.name.lower().encode()).hexdigest()[:16]

    def put(self, p: Principal, chunks: Iterable[bytes]) -> str:
        """Store a tar stream; returns its id (InvalidArgument if too big or not a safe tar)."""
        home = self._home(p)
        home.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        with tempfile.NamedTemporaryFile(dir=home, suffix=".tar", delete=False) as tmp:
            try:
                for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise InvalidArgument(
                            f"the workdir is larger than {self.max_bytes} bytes "
                            "(server.max_upload_bytes)"
                        )
                    digest.update(chunk)
                    tmp.write(chunk)
            except BaseException:
                tmp.close()
                Path(tmp.name).unlink(missing_ok=True)
                raise
        upload = digest.hexdigest()
        final = home / upload
        try:
            if not final.is_dir():
                staging = Path(tempfile.mkdtemp(dir=home, prefix=".x-"))
                try:
                    self._extract(Path(tmp.name), staging)
                    try:
                        staging.rename(final)
                    except OSError:  # someone else stored the same upload meanwhile
                        shutil.rmtree(staging, ignore_errors=True)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
        finally:
            Path(tmp.name).unlink(missing_ok=True)
        return upload

    def _extract(self, tar_path: Path, into: Path) -> None:
        try:
            with tarfile.open(tar_path, mode="r:*") as tar:
                total = 0
                for member in tar.getmembers():
                    total += max(member.size, 0)
                    if total > self.max_bytes:
                        raise InvalidArgument(
                            f"the workdir unpacks to more than {self.max_bytes} bytes"
                        )
                tar.extractall(into, filter="data")
        except (tarfile.TarError, OSError) as e:
            raise InvalidArgument(
                f"the workdir upload is not a safe tar archive ({type(e).__name__})"
            ) from None
        for path in [into, *into.rglob("*")]:  # read-only for the job, readable by its sandbox
            with contextlib.suppress(OSError):
                path.chmod(0o755 if path.is_dir() else 0o644)

    def folder(self, p: Principal, upload: str) -> Path:
        """The folder of one of `p`'s uploads (InvalidArgument if there is no such upload)."""
        if not _ID.fullmatch(upload):
            raise InvalidArgument("unknown upload; upload the workdir again")
        path = self._home(p) / upload
        if not path.is_dir():
            raise InvalidArgument("unknown upload; upload the workdir again")
        return path
