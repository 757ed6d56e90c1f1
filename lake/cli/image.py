"""`lake image ...`: the cache of unpacked job images (OCI layouts and tarballs).

The cache belongs to the user running the jobs (`$LAKEWARD_IMAGE_CACHE`, else
`~/.cache/lakeward/images`), not to one lake, so these commands take no `--root`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from batch.runtime.images import cached_images, default_cache_dir, prune_images
from lake.cli.common import console, fitted, say

image_app = typer.Typer(
    help="List and prune the unpacked job images.", no_args_is_help=True, rich_markup_mode=None
)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


@image_app.callback()
def image() -> None:
    """List and prune the unpacked job images."""


@image_app.command("list")
def image_list() -> None:
    """Every unpacked image: its ID, the name it was last used under, size and last use."""
    images = cached_images()
    t = fitted(
        ["image id", "last used (UTC)", "size", "used as"],
        [
            [i.digest.removeprefix("sha256:")[:12], _when(i.last_used), _size(i.size_bytes), i.name]
            for i in images
        ],
        whole={"image id", "last used (UTC)", "size"},
        fold="used as",
        right={"size"},
    )
    console.print(t)
    total = sum(i.size_bytes for i in images)
    say(f"{len(images)} image(s), {_size(total)} in {default_cache_dir()}")


@image_app.command("prune")
def image_prune(
    unused_days: Annotated[
        float, typer.Option("--unused-days", min=0, help="Only images unused for this many days.")
    ] = 0.0,
    dry_run: Annotated[bool, typer.Option(help="Only list what would be removed.")] = False,
) -> None:
    """Remove unpacked images (all, or those unused for --unused-days); images of running jobs
    stay. The next job that uses a removed image unpacks it again."""
    removed, busy = prune_images(unused_for_s=unused_days * 86400, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for i in removed:
        say(f"{verb} {i.digest.removeprefix('sha256:')[:12]} ({_size(i.size_bytes)}) {i.name}")
    for i in busy:
        say(f"kept {i.digest.removeprefix('sha256:')[:12]}: a running job uses it")
    freed = sum(i.size_bytes for i in removed)
    say(f"{verb} {len(removed)} image(s), {_size(freed)}")
