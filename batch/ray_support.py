"""Ray on demand: connect to `ray_address`, reuse a Ray this process already runs, or start one.

The cluster: `ray_address` (lake.connect's), else `[batch] ray_address`, else `$RAY_ADDRESS`.
Ray 2.60 authenticates with a token by default: a client of a cluster needs the cluster's token,
from `[batch] ray_auth_token_file`, or Ray's own `$RAY_AUTH_TOKEN` / `$RAY_AUTH_TOKEN_PATH`
(`ray get-auth-token` on the head prints it); token mode is then switched on for this process,
which must happen before the process first imports Ray (Ray reads it on import).

`ray.init` runs on a thread kept for the life of the process: Ray's shutdown at exit waits about
15 s for the driver when the thread that called `ray.init` has ended (e.g. a scheduler thread
stopped by `Lake.close`), which made every `lake job submit --wait` linger after the job ended.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from typing import Any

from batch.config import BatchConfig
from catalog.errors import InvalidArgument

_lock = threading.Lock()
_remote: Any = None


# Ray's switch for single-machine clusters: the node's address is then the loopback one, so
# GCS, the raylet, the workers and the agents listen on 127.0.0.1 and nothing else.
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def local_only() -> None:
    """Make a Ray this process starts bind only to 127.0.0.1 (call before ray.init)."""
    os.environ[LOCAL_ONLY_ENV] = "0"  # for Ray imported later, and for its child processes
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # Ray read the variable when it was imported


def cluster_address(address: str | None, cfg: BatchConfig) -> str | None:
    """The Ray cluster to use (None: a local Ray of this process)."""
    return address or cfg.ray_address or os.environ.get("RAY_ADDRESS") or None


def use_token(cfg: BatchConfig) -> None:
    """Switch this process to Ray's token authentication when a token is configured."""
    path = cfg.ray_auth_token_file
    if path:
        if not os.path.isfile(os.path.expanduser(path)):
            raise InvalidArgument(
                f"lake.toml [batch] ray_auth_token_file: no file at {path} "
                "(write the cluster's token there: `ray get-auth-token` on its head)"
            )
        os.environ["RAY_AUTH_TOKEN_PATH"] = os.path.expanduser(path)
    if path or os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def ensure_ray(address: str | None, cfg: BatchConfig) -> None:
    """Make sure this process is connected to Ray (local by default, a cluster if addressed)."""
    address = cluster_address(address, cfg)
    if address:
        use_token(cfg)  # before Ray is imported: it reads its authentication mode then
    import ray

    with _lock:
        if ray.is_initialized():
            return
        if address:
            _init_kept(address=address, namespace="lakeward", log_to_driver=False)
            return
        cpus = cfg.ray_num_cpus or sum(env.cpus for env in cfg.compute.values())
        local_only()
        _init_kept(
            num_cpus=max(1, int(round(cpus))),
            include_dashboard=False,
            namespace="lakeward",
            log_to_driver=False,
            configure_logging=False,
        )


def _init_kept(**kwargs: Any) -> None:
    """`ray.init(**kwargs)` on a daemon thread that then lives as long as the process."""
    import ray

    done: Future = Future()

    def keep() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as e:  # handed to the caller
            done.set_exception(e)
            return
        done.set_result(None)
        threading.Event().wait()

    threading.Thread(target=keep, name="lakeward-ray", daemon=True).start()
    done.result()


def remote_attempt() -> Any:
    """`batch.worker.run_attempt` as a Ray remote function (never retried by Ray itself)."""
    global _remote
    if _remote is None:
        import ray

        from batch.worker import run_attempt

        _remote = ray.remote(max_retries=0)(run_attempt)
    return _remote
