"""Sandbox images: "host", a rootfs folder, or an OCI layout / docker-archive tarball.

OCI layouts and tarballs are unpacked once with `umoci` (tarballs first copied to an OCI layout by
`skopeo`) into a cache folder named by the image ID (the digest of the image's config), so the
same image given as a layout, an OCI archive or a docker archive is unpacked once, and the second
use costs a `stat`. `cached_images` lists the cache and `prune_images` empties it; a running
sandbox holds its image (`hold`), so pruning never removes an image in use.
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
import time
from dataclasses import dataclass, field
from pathlib import Path

from catalog.errors import JobError

HOST = "host"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The host's system folders the "host" image shows (read-only); symlinks such as /bin -> usr/bin
# are recreated as symlinks.
HOST_SYSTEM = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
_TAG = "lakeward"  # the tag images get in the intermediate OCI layouts we write
REFS = "refs"  # cache subfolder: tarball path+mtime -> image ID memos
USED = ".lakeward-used"  # in a bundle: touched at every use (name it was used under)


@dataclass(frozen=True)
class Image:
    """A resolved image: what to show at / and the environment the image declares."""

    name: str
    # (host path, path inside) pairs to show read-only; parents before children.
    roots: tuple[tuple[Path, str], ...]
    env: dict[str, str] = field(default_factory=dict)
    digest: str | None = None  # the image ID ("sha256:" of its config) for OCI images, tarballs
    host: bool = False
    bundle: Path | None = None  # the cache folder it was unpacked to


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
    cached = bundle if digest else None  # a bundle folder of the user's is not ours to hold
    return Image(name, _rootfs_roots(bundle / "rootfs"), env, digest, bundle=cached)


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
    digest = image_id(lambda d: (layout / "blobs" / _blob(d)).read_bytes(), desc, name)
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


def _blob(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    if not algo.isalnum() or not hexd.isalnum():
        raise ValueError(f"bad digest {digest!r}")
    return f"{algo}/{hexd}"


def image_id(read_blob, desc: dict, name: str) -> str:
    """The config digest of the image a manifest (or, for an index, the manifest for this
    machine's platform) describes: what names an image whatever form it comes in."""
    try:
        doc = json.loads(read_blob(desc["digest"]))
        if "manifests" in doc:  # an index: the manifest skopeo would choose for this machine
            doc = json.loads(read_blob(_platform_manifest(doc["manifests"])["digest"]))
        return doc["config"]["digest"]
    except (OSError, ValueError, KeyError, TypeError, tarfile.TarError) as e:
        raise JobError(f"image {name!r}: cannot read its manifest ({e})") from e


_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


def _platform_manifest(manifests: list[dict]) -> dict:
    arch = _ARCH.get(os.uname().machine, os.uname().machine)
    for m in manifests:
        p = m.get("platform") or {}
        if p.get("os", "linux") == "linux" and p.get("architecture") == arch:
            return m
    if len(manifests) == 1:
        return manifests[0]
    raise ValueError(f"no manifest for linux/{arch}")


def _tarball(name: str, path: Path, cache: Path) -> Image:
    kind, digest = tarball_digest(path, name, cache)

    def unpack(work: Path) -> Path:
        layout = work / "layout"
        _run(["skopeo", "copy", "--quiet", f"{kind}:{path}", f"oci:{layout}:{_TAG}"], name)
        return _umoci_unpack(layout, _TAG, work, name)

    return _bundle(name, _cached(cache, digest, unpack, name), digest)


def tarball_digest(path: Path, name: str, cache: Path) -> tuple[str, str]:
    """The skopeo transport and the image digest of a tarball, remembered by path and mtime.

    Both are the image ID (the digest of the image's config), as for an OCI layout, so one
    image is unpacked once whatever form it comes in; neither needs the whole tarball hashed.
    """
    st = path.stat()
    memo_key = f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}".encode()
    memo = cache / REFS / hashlib.sha256(memo_key).hexdigest()
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
                kind = "oci-archive"
                digest = image_id(
                    lambda d: _member(tar, "blobs/" + _blob(d)), index["manifests"][0], name
                )
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
        _used(final, name)
        return final
    cache.mkdir(parents=True, exist_ok=True)
    with open(_lock_path(final), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits for the first unpack
        if (final / "rootfs").is_dir():
            _used(final, name)
            return final
        work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
        try:
            bundle = unpack(work)
            os.rename(bundle, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    _used(final, name)
    return final


def _lock_path(bundle: Path) -> Path:
    return bundle.parent / f".{bundle.name}.lock"


def _used(bundle: Path, name: str) -> None:
    """Remember when and under which name an unpacked image was last used (for list/prune)."""
    with contextlib.suppress(OSError):
        (bundle / USED).write_text(json.dumps({"name": name}))


def hold(image: Image) -> int | None:
    """Mark `image` in use until the returned fd is closed (prune skips it meanwhile)."""
    if image.bundle is None:
        return None
    fd = os.open(_lock_path(image.bundle), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    if not (image.bundle / "rootfs").is_dir():  # pruned between resolving and holding it
        os.close(fd)
        raise JobError(f"image {image.name!r} was removed from the cache meanwhile; try again")
    return fd


@dataclass(frozen=True)
class CachedImage:
    """One unpacked image in the cache."""

    digest: str
    name: str  # the name it was last used under
    last_used: float  # seconds since the epoch
    size_bytes: int
    path: Path


def cached_images(cache_dir: Path | None = None) -> list[CachedImage]:
    """Every unpacked image in the cache, most recently used first."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = []
    with contextlib.suppress(FileNotFoundError):
        for p in cache.iterdir():
            if p.name.startswith(".") or p.name == REFS or not (p / "rootfs").is_dir():
                continue
            algo, _, hexd = p.name.partition("-")
            try:
                used = p / USED
                name = json.loads(used.read_text()).get("name", "")
                last = used.stat().st_mtime
            except (OSError, ValueError):
                name, last = "", p.stat().st_mtime
            out.append(CachedImage(f"{algo}:{hexd}", name, last, _du(p), p))
    return sorted(out, key=lambda i: -i.last_used)


def prune_images(
    cache_dir: Path | None = None, *, unused_for_s: float = 0.0, dry_run: bool = False
) -> tuple[list[CachedImage], list[CachedImage]]:
    """Delete unpacked images not used for `unused_for_s` seconds (0: all), and what failed
    unpacks left; images a running sandbox holds stay. Returns (removed, kept in use)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    removed: list[CachedImage] = []
    busy: list[CachedImage] = []
    cutoff = time.time() - unused_for_s
    for img in cached_images(cache):
        if img.last_used > cutoff:
            continue
        with open(_lock_path(img.path), "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy.append(img)
                continue
            if not dry_run:
                # rename first: a half-deleted folder must never look like an unpacked image
                doomed = cache / f".prune-{img.path.name}-{os.getpid()}"
                os.rename(img.path, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
            removed.append(img)
    if not dry_run:
        for p in [*cache.glob(".unpack-*"), *cache.glob(".prune-*")]:
            if p.stat().st_mtime < time.time() - 3600:  # an unpack or prune that died
                shutil.rmtree(p, ignore_errors=True)
        shutil.rmtree(cache / REFS, ignore_errors=True)  # tarball memos: recomputed on use
    return removed, busy


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


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
