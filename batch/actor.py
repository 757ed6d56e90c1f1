"""The scheduler as a detached Ray actor, one per lake, for `ray_address` clusters.

It outlives the client that created it: the client only writes rows and touches the wake file;
the actor opens the lake itself (through the factory the Lake passes in) and runs the same
`Scheduler` thread an embedded lake runs in-process.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from batch.ray_support import ensure_ray

if TYPE_CHECKING:
    from batch.api import Batch


def actor_name(store_url: str) -> str:
    """The actor's name: one scheduler per metadata store."""
    return "lakeward-batch-" + hashlib.sha1(store_url.encode()).hexdigest()[:12]


class SchedulerHost:
    """Body of the detached actor: opens the lake and runs its scheduler."""

    def __init__(self, lake_factory: Any):
        from batch.api import Batch

        self.lake = lake_factory()
        self.batch = Batch.from_lake(self.lake, ray_address=None)
        self.batch.start()

    def wake(self) -> bool:
        if self.batch._scheduler is not None:
            self.batch._scheduler.wake()
        return True

    def state(self) -> dict[str, Any]:
        s = self.batch._scheduler
        return {
            "leader": bool(s and s.leader),
            "running": sorted(s.running) if s else [],
            "last_error": s.last_error if s else None,
        }


def ensure_actor(batch: Batch) -> Any:
    """Get or create the lake's detached scheduler actor."""
    import ray

    ensure_ray(batch.ray_address, batch.cfg)
    handle = (
        ray.remote(SchedulerHost)
        .options(
            name=actor_name(batch.store.url),
            namespace="lakeward",
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            max_restarts=-1,
            max_concurrency=4,
        )
        .remote(batch.lake_factory)
    )
    handle.wake.remote()
    return handle
