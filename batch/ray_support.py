"""Ray on demand: connect to `ray_address`, reuse a Ray this process already runs, or start one."""

from __future__ import annotations

import threading
from typing import Any

from batch.config import BatchConfig

_lock = threading.Lock()
_remote: Any = None


def ensure_ray(address: str | None, cfg: BatchConfig) -> None:
    """Make sure this process is connected to Ray (local by default, a cluster if addressed)."""
    import ray

    with _lock:
        if ray.is_initialized():
            return
        if address:
            ray.init(address=address, namespace="lakeward", log_to_driver=False)
            return
        cpus = cfg.ray_num_cpus or sum(env.cpus for env in cfg.compute.values())
        ray.init(
            num_cpus=max(1, int(round(cpus))),
            include_dashboard=False,
            namespace="lakeward",
            log_to_driver=False,
            configure_logging=False,
        )


def remote_attempt() -> Any:
    """`batch.worker.run_attempt` as a Ray remote function (never retried by Ray itself)."""
    global _remote
    if _remote is None:
        import ray

        from batch.worker import run_attempt

        _remote = ray.remote(max_retries=0)(run_attempt)
    return _remote
