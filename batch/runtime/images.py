"""Sandbox images: "host", a rootfs folder, or an OCI layout / docker-archive tarball.

OCI layouts and tarballs are unpacked once with `umoci` (tarballs first copied to an OCI layout by
`skopeo`) into a cache folder named by the image digest, so the second use costs a `stat`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from catalog.errors import JobError

HOST = "host"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The host's system folders the "host" image shows (read-only); symlinks such as /bin -> usr/bin
# are recreated as symlinks.
HOST_SYSTEM = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
_TAG = "lakeward"  # the tag images get in the intermediate OCI layouts we write


@dataclass(frozen=True)
class Image:
    """A resolved image: what to show at / and the environment the image declares."""

    name: str
    # (host path, path inside) pairs to show read-only; parents before children.
    roots: tuple[tuple[Path, str], ...]
    env: dict[str, str] = field(default_factory=dict)
    digest: str | None = None  # "sha256:..." for OCI images and tarballs
    host: bool = False


def default_cache_dir() -> Path:
    """Where unpacked images live: $LAKEWARD_IMAGE_CACHE, else $XDG_CACHE_HOME/lakeward/images."""
    if os.environ.get("LAKEWARD_IMAGE_CACHE"):
        return Path(os.environ["LAKEWARD_IMAGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lakeward" / "images"


def resolve_image(image: str, cache_dir: Path | None = None) -> Image:
    """Resolve an image name to its root folders, unpacking (once) OCI images and tarballs."""
    if image == HOST:
        return host_image()
    path, tag = split_ref(image)
    if path is None:
        raise JobError(
            f"image {image!r} not found: use 'host', a rootfs folder, an OCI layout folder "
            "(optionally 'folder:tag'), or a docker-archive / OCI tarball"
        )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if path.is_dir() and (path / "oci-layout").exists():
        return _oci_layout(image, path, tag, cache)
    if path.is_dir():
        if (path / "rootfs").is_dir() and (path / "config.json").is_file():
            return _bundle(image, path, None)  # an unpacked OCI runtime bundle
        return Image(image, _rootfs_roots(path), {"PATH": DEFAULT_PATH})
    return _tarball(image, path, cache)


@functools.cache
def host_image() -> Image:
    """The host's system folders and the Python environment running Lakeward, read-only."""
    roots: list[tuple[Path, str]] = []
    for name in HOST_SYSTEM:
        p = Path("/") / name
        if p.is_symlink() or p.is_dir():
            roots.append((p, "/" + name))
    shown = [str(p) for p, _ in roots if not p.is_symlink()]
    for extra in _python_paths():
        real = str(Path(extra).resolve())
        for dest in dict.fromkeys((extra, real)):  # the path Python uses and, if a link, its target
            if not any(dest == s or dest.startswith(s + "/") for s in shown):
                roots.append((Path(real), dest))
                shown.append(dest)
    path = f"{os.path.dirname(sys.executable)}:{DEFAULT_PATH}"
    return Image(HOST, tuple(roots), {"PATH": path}, host=True)


def _python_paths() -> list[str]:
    """Folders the running Python needs: its prefixes, and a source checkout of Lakeward."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    paths.append(os.path.dirname(os.path.realpath(sys.executable)))
    # site folders outside the prefixes (user site, a .pth line naming another environment's);
    # only folders named like one, never an arbitrary path entry (it could hold a lake)
    paths += [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")]
    # an editable install imports the packages from the checkout, outside the prefixes
    checkout = Path(__file__).resolve().parents[2]
    for pkg in ("lake", "catalog", "governance", "batch"):
        if (checkout / pkg).is_dir():
            paths.append(str(checkout / pkg))
    out = []
    for p in sorted(dict.fromkeys(os.path.abspath(p) for p in paths), key=len):
        if os.path.isdir(p) and not any(p == q or p.startswith(q + "/") for q in out):
            out.append(p)
    return out


def _rootfs_roots(rootfs: Path) -> tuple[tuple[Path, str], ...]:
    return ((rootfs.resolve(), "/"),)


def split_ref(image: str) -> tuple[Path | None, str | None]:
    """'path' or 'path:tag' (for OCI layouts) -> (the existing path, resolved, and the tag)."""
    p = Path(image).expanduser()
    if p.exists():
        return p.resolve(), None
    head, sep, tag = image.rpartition(":")
    if sep and "/" not in tag and Path(head).expanduser().exists():
        return Path(head).expanduser().resolve(), tag
    return None, None


def _bundle(name: str, bundle: Path, digest: str | None) -> Image:
    """An OCI runtime bundle (what `umoci unpack` writes): rootfs/ plus config.json."""
    env = {"PATH": DEFAULT_PATH}
    try:
        config = json.loads((bundle / "config.json").read_text())
        for item in config.get("process", {}).get("env") or []:
            key, _, value = item.partition("=")
            env[key] = value
    except (OSError, ValueError) as e:
        raise JobError(f"image {name!r}: cannot read {bundle / 'config.json'}: {e}") from e
    return Image(name, _rootfs_roots(bundle / "rootfs"), env, digest)


def _oci_layout(name: str, layout: Path, tag: str | None, cache: Path) -> Image:
    try:
        index = json.loads((layout / "index.json").read_text())
    except (OSError, ValueError) as e:
        raise JobError(f"image {name!r}: not a readable OCI layout ({e})") from e
    manifests = index.get("manifests") or []
    tags = [m.get("annotations", {}).get("org.opencontainers.image.ref.name") for m in manifests]
    if tag is not None:
        found = [m for m, t in zip(manifests, tags, strict=True) if t == tag]
    else:
        found = manifests if len(manifests) == 1 else []
    if len(found) != 1:
        known = ", ".join(repr(t) for t in tags if t) or "none"
        raise JobError(
            f"image {name!r}: the OCI layout holds {len(manifests)} images (tags: {known}); "
            "name one as 'folder:tag'"
        )
    desc = found[0]
    digest = desc["digest"]
    ref_tag = desc.get("annotations", {}).get("org.opencontainers.image.ref.name")

    def unpack(work: Path) -> Path:
        src = layout
        if not ref_tag or desc.get("mediaType", "").endswith("image.index.v1+json"):
            # umoci needs a tagged, single-platform manifest; skopeo makes one
            src = work / "layout"
            _run(["skopeo", "copy", "--quiet", f"oci:{layout}", f"oci:{src}:{_TAG}"], name)
            return _umoci_unpack(src, _TAG, work, name)
        return _umoci_unpack(src, ref_tag, work, name)

    return _bundle(name, _cached(cache, digest, unpack, name), digest)


def _tarball(name: str, path: Path, cache: Path) -> Image:
    kind, digest = tarball_digest(path, name, cache)

    def unpack(work: Path) -> Path:
        layout = work / "layout"
        _run(["skopeo", "copy", "--quiet", f"{kind}:{path}", f"oci:{layout}:{_TAG}"], name)
        return _umoci_unpack(layout, _TAG, work, name)

    return _bundle(name, _cached(cache, digest, unpack, name), digest)


def tarball_digest(path: Path, name: str, cache: Path) -> tuple[str, str]:
    """The skopeo transport and the image digest of a tarball, remembered by path and mtime.

    A docker-archive's digest is its image ID (sha256 of the config); an OCI archive's is the
    manifest digest. Neither needs the whole tarball hashed.
    """
    st = path.stat()
    memo_key = f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}".encode()
    memo = cache / "refs" / hashlib.sha256(memo_key).hexdigest()
    with contextlib.suppress(OSError, ValueError):
        kind, digest = memo.read_text().split()
        return kind, digest
    try:
        with tarfile.open(path, "r:*") as tar:
            names = set(tar.getnames())
            if "manifest.json" in names:
                # docker-archive: the image ID (sha256 of the config) names the content
                manifest = json.loads(_member(tar, "manifest.json"))
                if len(manifest) != 1:
                    raise JobError(f"image {name!r}: the archive holds {len(manifest)} images")
                config = _member(tar, manifest[0]["Config"])
                kind, digest = "docker-archive", "sha256:" + hashlib.sha256(config).hexdigest()
            elif "index.json" in names:
                index = json.loads(_member(tar, "index.json"))
                kind, digest = "oci-archive", index["manifests"][0]["digest"]
            else:
                raise JobError(
                    f"image {name!r}: neither a docker-archive (manifest.json) "
                    "nor an OCI archive (index.json)"
                )
    except (tarfile.TarError, OSError, ValueError, KeyError, IndexError) as e:
        raise JobError(f"image {name!r}: cannot read the tarball: {e}") from e
    with contextlib.suppress(OSError):
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(f"{kind} {digest}\n")
    return kind, digest


def _member(tar: tarfile.TarFile, member: str) -> bytes:
    f = tar.extractfile(member)
    if f is None:
        raise JobError(f"{member} is not a file in {tar.name}")
    return f.read()


def _cached(cache: Path, digest: str, unpack, name: str) -> Path:
    """The bundle folder for `digest`, unpacking it at most once across processes."""
    algo, _, hexd = digest.partition(":")
    final = cache / f"{algo}-{hexd}"
    if (final / "rootfs").is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{algo}-{hexd}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits for the first unpack
        if (final / "rootfs").is_dir():
            return final
        work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
        try:
            bundle = unpack(work)
            os.rename(bundle, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def _umoci_unpack(layout: Path, tag: str, work: Path, name: str) -> Path:
    bundle = work / "bundle"
    _run(["umoci", "unpack", "--rootless", "--image", f"{layout}:{tag}", str(bundle)], name)
    return bundle


def _run(argv: list[str], name: str) -> None:
    if shutil.which(argv[0]) is None:
        raise JobError(f"image {name!r} needs `{argv[0]}` (Debian package {argv[0]}); install it")
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise JobError(f"image {name!r}: {argv[0]} failed: {msg[-1] if msg else proc.returncode}")
