"""Packaging (issue 8 item 8): a non-editable install ships everything.

Builds a wheel of the repository, installs it (without dependencies) into a fresh virtual
environment that sees this environment's dependencies through a `.pth` line, and runs the
installed `lake demo` and a governed query from a folder outside the source tree, with nothing
of the repository on the path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("lake", "catalog", "governance", "batch")

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (
        f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    )
    return r.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    # A copy of the sources only: building in the repository would leave build/ and egg-info.
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "tests", "bench", "build", "*.egg-info", "__pycache__", "demo-lake*"
        ),
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    dist = base / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        base,
        env,
        240,
    )
    (wheel,) = dist.glob("lakeward-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "governance/policy/model.conf" in names
    for pkg in (*PACKAGES, "governance/policy", "catalog/ingestion", "lake/cli"):
        assert f"{pkg}/__init__.py" in names, pkg
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], base, env, 120)
    py = venv / "bin" / "python"
    site = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            base,
            env,
            60,
        ).strip()
    )
    # The dependencies come from this environment (not the project: it is installed editable
    # here, and .pth files of an added folder are not read).
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        base,
        env,
        240,
    )
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv, env


def test_the_wheel_imports_from_its_install_not_the_sources(installed, tmp_path):
    venv, env = installed
    out = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import lake, catalog, governance.policy.engine as e, batch; "
            "print(lake.__file__); print(e.DEFAULT_MODEL.is_file())",
        ],
        tmp_path,
        env,
        120,
    )
    where, model = out.split()
    assert where.startswith(str(venv)) and not where.startswith(str(REPO)), where
    assert model == "True"


def test_the_installed_cli_runs_the_demo(installed, tmp_path):
    venv, env = installed
    out = _run(
        [str(venv / "bin" / "lake"), "demo", "--root", str(tmp_path / "demo")], tmp_path, env, 280
    )
    assert "demo finished" in out


def test_a_policy_without_a_model_loads_from_the_wheel(installed, tmp_path):
    venv, env = installed
    script = textwrap.dedent(
        """
        import sys, pyarrow as pa, lake
        root, policy = sys.argv[1], sys.argv[2]
        with lake.connect(root) as lk:
            lk.catalog.create_database("d")
            lk.catalog.create_table("d.t", pa.schema([("id", pa.int64()), ("r", pa.string())]))
            lk.write("d.t", pa.table({"id": [1, 2], "r": ["eu", "us"]}))
        with lake.connect(root, policy=policy) as lk:
            print(lk.sql("SELECT id FROM d.t", user="ann").column("id").to_pylist())
        """
    )
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.csv").write_text("p2, ann, d.t, eu, \"r = 'eu'\", *\n")  # no model.conf
    (tmp_path / "run.py").write_text(script)
    out = _run(
        [str(venv / "bin" / "python"), "run.py", str(tmp_path / "lk"), str(policy)],
        tmp_path,
        env,
        120,
    )
    assert out.strip() == "[1]"
