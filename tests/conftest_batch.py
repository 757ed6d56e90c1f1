"""Batch test fixtures: one Ray for the whole session, and lakes with batch configured.

Test modules load them with `pytest_plugins = ["conftest_batch"]`; helpers are in batch_helpers.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from batch_helpers import BATCH_TOML

import lake


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray (4 logical CPUs: spot + on-demand capacity) shared by every batch test."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=4,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            namespace="lakeward-tests",
        )
    yield
    ray.shutdown()


@pytest.fixture
def make_lake(tmp_path: Path, ray_session: None) -> Iterator[Callable[..., Any]]:
    """make_lake(extra_toml="", policy=None) -> an open lake with batch configured."""
    opened: list[Any] = []

    def make(
        extra_toml: str = "", policy: str | None = None, name: str = "lake", base: str = BATCH_TOML
    ) -> Any:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        (root / "lake.toml").write_text(base + textwrap.dedent(extra_toml))
        folder = None
        if policy is not None:
            folder = root / "policy"
            folder.mkdir(exist_ok=True)
            (folder / "policy.csv").write_text(policy)
        lk = lake.connect(root, policy=folder)
        opened.append(lk)
        return lk

    yield make
    for lk in opened:
        b = getattr(lk, "_test_batch", None)
        if b is not None:
            b.close()
        lk.close()
