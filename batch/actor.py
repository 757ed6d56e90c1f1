"""The scheduler as a detached Ray actor, one per lake, for `ray_address` clusters.

It outlives the client calls that use it (the client only writes rows and touches the wake
file), not the client: `Batch.close()` stops it (its running attempts are requeued) and kills
it, so no actor is left behind; the next client to need one starts it again. The actor opens the
lake itself (through the factory the lake passes in, so it decides through
the same port and checkpoint as the lake) and runs the same `Scheduler` an embedded lake runs
in-process.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from typing import Any

from batch.config import BatchConfig, load_batch_config
from batch.port import LakeHandle
from batch.ray_support import ensure_ray
from batch.scheduler import Context, Paths, Scheduler
from batch.store import BatchStore
from batch.submit import Submitter


def actor_name(store_url: str) -> str:
    """The actor's name: one scheduler per metadata store."""
    return "lakeward-batch-" + hashlib.sha1(store_url.encode()).hexdigest()[:12]


class SchedulerHost:
    """Body of the detached actor: opens the lake and runs its scheduler."""

    def __init__(self, handle_factory: Callable[[], LakeHandle]):
        self.lake = handle_factory()
        cfg = load_batch_config(dict(self.lake.config))
        self.store = BatchStore(self.lake.store_url)
        paths = Paths(self.lake.root)
        submitter = Submitter(
            self.store, cfg, self.lake.port, paths.ship_code if paths.remote else None
        )
        ctx = Context(self.store, cfg, paths, self.lake.port, submitter, None)
        self.scheduler = Scheduler(ctx)
        self.scheduler.start()

    def wake(self) -> bool:
        self.scheduler.wake()
        return True

    def stop(self) -> bool:
        """Stop scheduling (running attempts get notice and are requeued), close the lake."""
        self.scheduler.stop()
        self.store.close()
        self.lake.close()
        return True

    def state(self) -> dict[str, Any]:
        s = self.scheduler
        return {"leader": bool(s.leader), "running": sorted(s.running), "last_error": s.last_error}


def ensure_actor(
    handle_factory: Callable[[], LakeHandle],
    store_url: str,
    ray_address: str | None,
    cfg: BatchConfig,
) -> Any:
    """Get or create the lake's detached scheduler actor."""
    import ray

    ensure_ray(ray_address, cfg)
    handle = (
        ray.remote(SchedulerHost)
        .options(
            name=actor_name(store_url),
            namespace="lakeward",
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            max_restarts=-1,
            max_concurrency=4,
        )
        .remote(handle_factory)
    )
    handle.wake.remote()
    return handle


def stop_actor(handle: Any, timeout: float = 20.0) -> None:
    """Stop the scheduler actor, then kill it (whatever state it is in)."""
    import ray

    with contextlib.suppress(Exception):  # dead or stuck: killed below all the same
        ray.get(handle.stop.remote(), timeout=timeout)
    with contextlib.suppress(Exception):  # already gone
        ray.kill(handle, no_restart=True)
