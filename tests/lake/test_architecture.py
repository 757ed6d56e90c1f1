"""The house rules, checked on the import graph (grimp, the engine behind import-linter).

The graph is built in a fresh interpreter whose path holds only the repository, so the test
folders (tests/lake, tests/catalog, ...) are not mistaken for parts of the packages.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, grimp
g = grimp.build_graph(
    "lake", "catalog", "governance", "batch", include_external_packages=False, cache_dir=None
)
illegal = g.find_illegal_dependencies_for_layers(
    layers=("lake", {"governance", "batch"}, "catalog"), containers=set()
)
cross = [
    (a, b) for a, b in (("governance", "batch"), ("batch", "governance"))
    if g.chain_exists(importer=a, imported=b, as_packages=True)
]
cycles = sorted({
    tuple(sorted((m, i)))
    for m in g.modules
    for i in g.find_modules_directly_imported_by(m)
    if g.chain_exists(importer=i, imported=m)
})
print(json.dumps({
    "illegal": sorted(f"{d.importer} -> {d.imported}" for d in illegal),
    "cross": cross,
    "cycles": cycles,
}))
"""


@pytest.fixture(scope="module")
def findings() -> dict:
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + PROBE],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


def test_arrows_run_one_way(findings):
    # lake -> governance and batch -> catalog; nothing imports lake.
    assert findings["illegal"] == []


def test_governance_and_batch_never_import_each_other(findings):
    assert findings["cross"] == []


def test_no_import_circles_inside_a_package(findings):
    # Imports inside functions and under TYPE_CHECKING count: both still tie modules together.
    assert findings["cycles"] == []
