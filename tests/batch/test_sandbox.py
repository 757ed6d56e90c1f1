"""Sandbox runtimes: real bubblewrap, real processes, real OCI images built here without network."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from batch.runtime import load_runtime, runtime_names
from batch.runtime.base import ExitStatus, Mount, SandboxSpec
from batch.runtime.bwrap import (
    BwrapRuntime,
    BwrapSandbox,
    delegated_cgroup,
    exit_status,
    oom_kills,
)
from batch.runtime.engine import EngineRuntime, engine_argv, engine_available, image_args
from batch.runtime.images import resolve_image
from catalog.errors import JobError

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20


@pytest.fixture
def rt(tmp_path) -> BwrapRuntime:
    return BwrapRuntime(cache_dir=tmp_path / "image-cache")


def run(rt, tmp_path, command, timeout=20, **kw) -> tuple[ExitStatus, str, str]:
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    for f in (out, err):
        f.unlink(missing_ok=True)
    box = rt.start(SandboxSpec(command, stdout=out, stderr=err, **kw))
    status = box.wait(timeout)
    assert status is not None, "sandbox did not finish"
    return status, out.read_text(), err.read_text()


def py(rt, tmp_path, code, **kw) -> tuple[ExitStatus, str, str]:
    return run(rt, tmp_path, ["python", "-c", textwrap.dedent(code)], **kw)


def wait_for(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pids_in_namespace(ns_of: int) -> list[int]:
    ns = os.readlink(f"/proc/{ns_of}/ns/pid")
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.readlink(f"/proc/{p}/ns/pid") == ns:
                    found.append(int(p))
            except OSError:
                pass
    return found


def all_gone(pids: list[int], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ---- host image -----------------------------------------------------------------------------


def test_host_python_in_workdir_with_env(rt, tmp_path, monkeypatch):
    monkeypatch.setenv("LAKEWARD_HOST_SECRET", "s3cret")
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(
        textwrap.dedent(
            """
            import json, os, sys
            import catalog.errors  # the Lakeward checkout is part of the host image
            try:
                open("written-here", "w")
                writable = True
            except OSError:
                writable = False
            print(json.dumps({
                "cwd": os.getcwd(), "prefix": sys.prefix, "executable": sys.executable,
                "env": dict(os.environ), "cwd_writable": writable,
                "code": sorted(os.listdir(".")),
            }))
            """
        )
    )
    status, out, err = run(rt, tmp_path, ["python", "train.py"], workdir=code, env={"K": "V"})
    assert status == ExitStatus(0, None, "SUCCEEDED"), err
    seen = json.loads(out)
    assert seen["cwd"] == "/opt/ml/code"
    assert seen["code"] == ["train.py"]
    assert seen["cwd_writable"] is False
    assert seen["prefix"] == sys.prefix
    assert seen["executable"] == os.path.join(os.path.dirname(sys.executable), "python")
    env = seen["env"]
    assert env["K"] == "V" and env["HOME"] == "/tmp"
    assert env["PATH"].split(":")[0] == os.path.dirname(sys.executable)
    assert "LAKEWARD_HOST_SECRET" not in env
    assert not (code / "written-here").exists()


def test_no_network_unless_asked_and_never_the_hosts_loopback(rt, tmp_path):
    # Ray, the metadata store and the server's internals listen on the host's loopback: a job
    # with network=True gets user-mode networking (a default route through tap0), never that.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    code = f"""
        import socket, sys
        names = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
        routes = [l.split()[0] for l in open("/proc/net/route").read().splitlines()[1:]
                  if l.split()[1] == "00000000"]
        print(",".join(sorted(names)), ",".join(routes))
        for host in ("127.0.0.1", "10.0.2.2"):
            try:
                socket.create_connection((host, {port}), timeout=2).close()
                sys.exit(3)
            except OSError:
                pass
        sys.exit(7)
        """
    try:
        status, out, _ = py(rt, tmp_path, code)
        assert status == ExitStatus(7, None, "EXIT_CODE")
        assert out.split() == ["lo"]
        status, out, _ = py(rt, tmp_path, code, network=True)
        assert status == ExitStatus(7, None, "EXIT_CODE")  # the host's loopback stays out of reach
        assert out.split() == ["lo,tap0", "tap0"]  # and the network is there: a default route
    finally:
        srv.close()


def test_pid_namespace_hides_host_processes(rt, tmp_path):
    status, out, err = py(
        rt,
        tmp_path,
        """
        import json, os
        print(json.dumps({
            "me": os.getpid(),
            "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
            "init": open("/proc/1/cmdline", "rb").read().split(b"\\0")[0].decode(),
        }))
        """,
    )
    assert status.reason == "SUCCEEDED", err
    seen = json.loads(out)
    host_init = Path("/proc/1/cmdline").read_bytes().split(b"\0")[0].decode()
    assert seen["init"] != host_init and "bwrap" in seen["init"]
    assert seen["me"] < 10
    assert os.getpid() not in seen["pids"] and max(seen["pids"]) < 100


def test_read_only_root_private_tmp(rt, tmp_path):
    host_tmp = Path("/tmp") / f"lakeward-visible-{os.getpid()}"
    host_tmp.write_text("host")
    try:
        status, out, err = py(
            rt,
            tmp_path,
            f"""
            import errno, os
            for path in ("/usr/lakeward-x", "/lakeward-x", "/etc/lakeward-x"):
                try:
                    open(path, "w")
                    print(path, "WRITABLE")
                except OSError as e:
                    print(path, errno.errorcode[e.errno])
            open("/tmp/scratch", "w").write("ok")
            print("tmp", open("/tmp/scratch").read(), os.path.exists({str(host_tmp)!r}))
            """,
        )
    finally:
        host_tmp.unlink()
    assert status.reason == "SUCCEEDED", err
    assert "WRITABLE" not in out
    assert out.count("EROFS") == 3
    assert "tmp ok False" in out


def test_output_visible_and_checkpoints_persist(rt, tmp_path):
    out_dir, ckpt, data = tmp_path / "out", tmp_path / "ckpt", tmp_path / "data"
    for d in (out_dir, ckpt, data):
        d.mkdir()
    (data / "part-0.parquet").write_text("rows")
    mounts = (
        Mount(data, "/opt/ml/input/data/orders"),
        Mount(out_dir, "/opt/ml/output/scores", read_only=False),
        Mount(ckpt, "/opt/ml/checkpoints", read_only=False),
    )
    code = """
        import os, pathlib
        ck = pathlib.Path("/opt/ml/checkpoints/step")
        step = int(ck.read_text()) + 1 if ck.exists() else 1
        ck.write_text(str(step))
        rows = open("/opt/ml/input/data/orders/part-0.parquet").read()
        pathlib.Path(f"/opt/ml/output/scores/out-{step}.txt").write_text(rows)
        try:
            open("/opt/ml/input/data/orders/x", "w")
        except OSError:
            print("input read-only")
        """
    for _ in range(2):
        status, out, err = py(rt, tmp_path, code, mounts=mounts)
        assert status.reason == "SUCCEEDED", err
        assert "input read-only" in out
    assert (ckpt / "step").read_text() == "2"
    assert sorted(p.name for p in out_dir.iterdir()) == ["out-1.txt", "out-2.txt"]
    assert (out_dir / "out-2.txt").read_text() == "rows"


def test_exit_codes(rt, tmp_path):
    assert py(rt, tmp_path, "pass")[0] == ExitStatus(0, None, "SUCCEEDED")
    assert py(rt, tmp_path, "import sys; sys.exit(3)")[0] == ExitStatus(3, None, "EXIT_CODE")
    status = py(rt, tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")[0]
    assert status == ExitStatus(None, signal.SIGSEGV, "KILLED")
    status, _, err = run(rt, tmp_path, ["/no/such/program"])
    assert status == ExitStatus(127, None, "EXIT_CODE") and "no/such/program" in err
    with pytest.raises(JobError, match="not found in image"):
        rt.start(SandboxSpec(["no-such-command-anywhere"]))


def test_sigterm_reaches_the_job(rt, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = """
        import pathlib, signal, sys, time
        out = pathlib.Path("/opt/ml/output")
        def on_term(sig, frame):
            (out / "terminated").write_text("checkpointed")
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
        (out / "ready").write_text("1")
        time.sleep(60)
        """
    mounts = (Mount(out_dir, "/opt/ml/output", read_only=False),)
    box = rt.start(SandboxSpec(["python", "-c", textwrap.dedent(code)], mounts=mounts))
    wait_for(out_dir / "ready")
    assert box.wait(0) is None
    box.signal(signal.SIGTERM)
    assert box.wait(10) == ExitStatus(0, None, "SUCCEEDED")
    assert (out_dir / "terminated").read_text() == "checkpointed"
    # a job without a handler dies of it
    box = rt.start(SandboxSpec(["sleep", "60"]))
    box.signal(signal.SIGTERM)
    assert box.wait(10) == ExitStatus(None, signal.SIGTERM, "KILLED")


def test_kill_kills_the_whole_tree(rt, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = """
        import subprocess, time
        kids = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
        open("/opt/ml/output/ready", "w").close()
        time.sleep(60)
        """
    mounts = (Mount(out_dir, "/opt/ml/output", read_only=False),)
    box = rt.start(SandboxSpec(["python", "-c", textwrap.dedent(code)], mounts=mounts))
    wait_for(out_dir / "ready")
    members = pids_in_namespace(box.init_pid)
    assert len(members) >= 4  # pid 1, python, two sleeps
    box.kill()
    assert box.wait(10) == ExitStatus(None, signal.SIGKILL, "KILLED")
    assert all_gone(members)
    box.kill()  # after the end: harmless
    box.signal(signal.SIGTERM)


def test_killing_bwrap_ends_the_sandbox(rt, tmp_path):
    box = rt.start(SandboxSpec(["sleep", "60"]))
    job = box.job_pid()
    members = pids_in_namespace(box.init_pid)
    assert job in members and box.init_pid in members
    os.kill(box.pid, signal.SIGKILL)  # what a chaos test does to "the sandbox process"
    status = box.wait(10)
    assert status is not None and status.reason == "KILLED"
    assert all_gone(members)


def test_memory_limit_reports_oom(rt, tmp_path):
    # with a delegated cgroup the kernel OOM-kills; without one RLIMIT_DATA raises MemoryError
    cgroup = delegated_cgroup() is not None
    limit = 256 * MiB
    status, _, err = py(rt, tmp_path, "x = bytearray(1 << 30)", memory_bytes=limit)
    assert status.reason == "OOM", err
    assert cgroup or "MemoryError" in err
    grow = """
        chunks = []
        while True:
            chunks.append(bytearray(16 << 20))
        """
    assert py(rt, tmp_path, grow, memory_bytes=limit)[0].reason == "OOM"
    assert py(rt, tmp_path, "x = bytearray(32 << 20)", memory_bytes=limit)[0].reason == "SUCCEEDED"
    # the hook runs the image's own sitecustomize too
    code = tmp_path / "code"
    code.mkdir()
    (code / "sitecustomize.py").write_text("import sys; print('theirs', file=sys.stderr)")
    status, _, err = py(
        rt,
        tmp_path,
        "x = bytearray(1 << 30)",
        memory_bytes=limit,
        workdir=code,
        env={"PYTHONPATH": "/opt/ml/code"},
    )
    assert status.reason == "OOM" and err.startswith("theirs")
    caught = """
        try:
            x = bytearray(1 << 30)
        except MemoryError:
            raise SystemExit(4)
        """
    expected = ExitStatus(None, 9, "OOM") if cgroup else ExitStatus(4, None, "EXIT_CODE")
    assert py(rt, tmp_path, caught, memory_bytes=limit)[0] == expected


def test_runtime_variables_never_reach_the_job(rt, tmp_path):
    # memory-limited (the OOM hook is on) or not: the job sees its own environment only
    code = "import os; print(sorted(k for k in os.environ if k.startswith('LAKEWARD')))"
    for kw in ({"memory_bytes": 256 * MiB}, {}):
        status, out, err = py(rt, tmp_path, code, env={"K": "V"}, **kw)
        assert status.reason == "SUCCEEDED", err
        assert out.strip() == "[]"
    status, out, _ = py(rt, tmp_path, "import os; print(os.environ['K'])", env={"K": "V"})
    assert out.strip() == "V"


def test_unavailable_names_the_missing_piece(monkeypatch):
    from batch.runtime import bwrap as bw

    assert bw.unavailable() is None  # this machine runs sandboxes
    monkeypatch.setattr(bw, "_works", False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert bw.unavailable() == "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    with pytest.raises(JobError, match="^bubblewrap \\(bwrap\\) is not installed: apt-get install"):
        load_runtime("bwrap")


def test_cpu_limit_pins_and_renices(rt, tmp_path):
    box = rt.start(
        SandboxSpec(
            ["python", "-c", "import os; print(sorted(os.sched_getaffinity(0)), os.nice(0))"],
            cpus=1,
            stdout=tmp_path / "out.log",
        )
    )
    assert box.wait(20).reason == "SUCCEEDED"
    affinity, nice = (tmp_path / "out.log").read_text().rsplit(" ", 1)
    assert int(nice) == 5
    expected = box.cpus if box.cpus is not None else sorted(os.sched_getaffinity(0))
    assert json.loads(affinity) == expected
    if len(os.sched_getaffinity(0)) > 1 and box.cpus is not None:
        assert len(box.cpus) == 1


def test_sandbox_outlives_the_thread_that_started_it(rt):
    # bwrap's --die-with-parent fires when the forking *thread* exits (Ray runs tasks on threads)
    started = []
    t = threading.Thread(target=lambda: started.append(rt.start(SandboxSpec(["sleep", "60"]))))
    t.start()
    t.join()
    box = started[0]
    assert box.wait(0.3) is None
    box.kill()
    assert box.wait(10).reason == "KILLED"


def test_die_with_parent(tmp_path):
    holder = tmp_path / "holder.py"
    holder.write_text(
        textwrap.dedent(
            """
            import threading, time
            from batch.runtime.base import SandboxSpec
            from batch.runtime.bwrap import BwrapRuntime
            boxes = [BwrapRuntime().start(SandboxSpec(["sleep", "60"]))]
            t = threading.Thread(
                target=lambda: boxes.append(BwrapRuntime().start(SandboxSpec(["sleep", "60"])))
            )
            t.start()
            t.join()
            print(*[p for b in boxes for p in (b.pid, b.init_pid, b.job_pid())], flush=True)
            time.sleep(60)
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(holder)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        members = []
        for bwrap_pid, init_pid, job_pid in (pids[:3], pids[3:]):
            members += [bwrap_pid, *pids_in_namespace(init_pid)]
            assert init_pid in members and job_pid in members
        assert all(alive(p) for p in members)
    finally:
        proc.kill()
        proc.wait()
    assert all_gone(members)


# ---- images ---------------------------------------------------------------------------------


def make_rootfs(root: Path) -> Path:
    """A tiny image from host binaries and the libraries ldd names (no network)."""
    progs = [shutil.which("dash") or shutil.which("sh"), shutil.which("cat"), shutil.which("ls")]
    files: set[str] = set()
    for prog in progs:
        files.add(prog)
        for line in subprocess.run(["ldd", prog], capture_output=True, text=True).stdout.split(
            "\n"
        ):
            for word in line.split():
                if word.startswith("/"):
                    files.add(word)
    for f in files:
        dest = root / f.lstrip("/")
        if f in progs:
            dest = root / "bin" / ("sh" if f == progs[0] else Path(f).name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)  # follows links: real files
    os.symlink("bin", root / "sbin")
    (root / "etc").mkdir()
    (root / "etc" / "image-name").write_text("tiny\n")
    (root / "opt" / "vendor").mkdir(parents=True)
    (root / "opt" / "vendor" / "README").write_text("vendored\n")
    (root / "run").mkdir()  # the runtime mounts below /opt and /run: both must stay visible
    (root / "run" / "image-run").write_text("run\n")
    return root


IMAGE_SCRIPT = (
    "cat /etc/image-name /opt/vendor/README /run/image-run; ls /; echo $GREETING;"
    " echo written > /opt/ml/output/x; test -e /work && exit 9; exit 0"
)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("images")
    rootfs = make_rootfs(base / "rootfs")
    layout = base / "layout"

    def umoci(*args: str) -> None:
        subprocess.run(["umoci", *args], check=True, capture_output=True)

    umoci("init", "--layout", str(layout))
    umoci("new", "--image", f"{layout}:tiny")
    umoci("insert", "--rootless", "--image", f"{layout}:tiny", str(rootfs), "/")
    umoci("config", "--image", f"{layout}:tiny", "--config.env", "PATH=/bin")
    umoci("config", "--image", f"{layout}:tiny", "--config.env", "GREETING=hello-oci")
    tarball = base / "tiny.tar"
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{layout}:tiny", f"docker-archive:{tarball}:tiny:1"],
        check=True,
        capture_output=True,
    )
    return {"rootfs": rootfs, "layout": layout, "tarball": tarball}


def run_image(rt, tmp_path, image: str, **kw) -> str:
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "x").unlink(missing_ok=True)
    mounts = (Mount(out_dir, "/opt/ml/output", read_only=False),)
    command = ["sh", "-c", IMAGE_SCRIPT]
    status, out, err = run(rt, tmp_path, command, image=image, mounts=mounts, **kw)
    assert status == ExitStatus(0, None, "SUCCEEDED"), err
    assert (out_dir / "x").read_text() == "written\n"
    assert out.startswith("tiny\nvendored\nrun\n")
    return out


def test_rootfs_folder_image(rt, tmp_path, images):
    out = run_image(rt, tmp_path, str(images["rootfs"]), memory_bytes=64 * MiB)
    listing = out.split()
    assert {"bin", "etc", "opt", "proc", "tmp", "dev"} <= set(listing)
    assert "usr" not in listing  # nothing of the host's system leaks in
    with pytest.raises(JobError, match="not found in image"):
        rt.start(SandboxSpec(["python", "-c", "pass"], image=str(images["rootfs"])))


def image_id(layout: Path) -> str:
    """The digest of the image's config: its ID in every form (layout, OCI or docker archive)."""
    index = json.loads((layout / "index.json").read_text())
    manifest = index["manifests"][0]["digest"].replace(":", "/")
    return json.loads((layout / "blobs" / manifest).read_text())["config"]["digest"]


def test_oci_layout_image_cached_by_digest(rt, tmp_path, images):
    layout = images["layout"]
    out = run_image(rt, tmp_path, f"{layout}:tiny")
    assert "hello-oci" in out  # the image config's environment
    digest = image_id(layout)
    cached = rt.cache_dir / digest.replace(":", "-")
    assert (cached / "rootfs" / "bin" / "sh").exists()
    inode = cached.stat().st_ino
    t = time.perf_counter()
    again = resolve_image(str(layout), rt.cache_dir)  # one image: the tag may be omitted
    assert time.perf_counter() - t < 0.05
    assert again.digest == digest and cached.stat().st_ino == inode
    run_image(rt, tmp_path, str(layout))


def test_docker_archive_image_cached_by_digest(rt, tmp_path, images):
    import hashlib
    import tarfile

    tarball = images["tarball"]
    out = run_image(rt, tmp_path, str(tarball))
    assert "hello-oci" in out
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        config = tar.extractfile(manifest[0]["Config"]).read()
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    image = resolve_image(str(tarball), rt.cache_dir)
    assert image.digest == digest
    assert (rt.cache_dir / digest.replace(":", "-") / "rootfs").is_dir()
    t = time.perf_counter()
    assert resolve_image(str(tarball), rt.cache_dir).digest == digest
    assert time.perf_counter() - t < 0.05


def test_one_image_is_unpacked_once_in_any_form(rt, tmp_path, images):
    from batch.runtime.images import cached_images, prune_images

    oci_archive = tmp_path / "tiny-oci.tar"
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{images['layout']}:tiny", f"oci-archive:{oci_archive}"],
        check=True,
        capture_output=True,
    )
    forms = [f"{images['layout']}:tiny", str(images["tarball"]), str(oci_archive)]
    digests = {resolve_image(f, rt.cache_dir).digest for f in forms}
    assert digests == {image_id(images["layout"])}
    assert len(cached_images(rt.cache_dir)) == 1  # one unpack, not one per form
    for f in forms:
        run_image(rt, tmp_path, f)
    # an image a running sandbox holds is never pruned; once it ends, it is
    box = rt.start(SandboxSpec(["sh", "-c", "sleep 30"], image=forms[1]))
    try:
        removed, busy = prune_images(rt.cache_dir)
        assert removed == [] and [i.digest for i in busy] == list(digests)
        assert (rt.cache_dir / next(iter(digests)).replace(":", "-") / "rootfs").is_dir()
    finally:
        box.kill()
        box.wait(10)
    removed, busy = prune_images(rt.cache_dir)
    assert [i.digest for i in removed] == list(digests) and busy == []
    assert cached_images(rt.cache_dir) == []
    run_image(rt, tmp_path, forms[2])  # unpacked again on the next use


def test_bad_specs_are_rejected(rt, tmp_path):
    fds = len(os.listdir("/proc/self/fd"))
    cases = [
        (SandboxSpec([]), "non-empty"),
        (SandboxSpec(["true"], workdir=tmp_path / "missing"), "not a folder"),
        (SandboxSpec(["true"], mounts=(Mount(tmp_path, "relative"),)), "absolute"),
        (SandboxSpec(["true"], mounts=(Mount(tmp_path, "/proc/x"),)), "reserved"),
        (SandboxSpec(["true"], mounts=(Mount(tmp_path / "nope", "/data"),)), "does not exist"),
        (SandboxSpec(["true"], image=str(tmp_path / "no-image")), "not found"),
        (SandboxSpec(["true"], cpus=0), "cpus"),
        (SandboxSpec(["true"], memory_bytes=-1), "memory"),
    ]
    for spec, message in cases:
        with pytest.raises(JobError, match=message):
            rt.start(spec)
    for spec in (SandboxSpec(["true"], memory_bytes=64 * MiB), SandboxSpec(["/no/such"])):
        rt.start(spec).wait()
    assert len(os.listdir("/proc/self/fd")) == fds  # nothing leaks, failed or not


# ---- status mapping, runtimes by name, engines ---------------------------------------------


def test_exit_status_mapping():
    def st(rc, started=True, sent=(), oom=False):
        return exit_status(rc, started=started, oom=oom, sent=set(sent))

    assert st(0) == ExitStatus(0, None, "SUCCEEDED")
    assert st(143, sent={15}) == ExitStatus(None, 15, "KILLED")
    assert st(143) == ExitStatus(None, 15, "KILLED")  # 128+N is read back as signal N
    assert st(137, sent={9}) == ExitStatus(None, 9, "KILLED")
    assert st(137, oom=True) == ExitStatus(None, 9, "OOM")  # cgroup oom_kill
    assert st(1, oom=True) == ExitStatus(1, None, "OOM")  # MemoryError under RLIMIT_DATA
    assert st(-9) == ExitStatus(None, 9, "KILLED")  # bwrap itself killed
    assert st(143, started=False, sent={15}) == ExitStatus(None, 15, "KILLED")  # before exec
    assert st(1, started=False) == ExitStatus(127, None, "EXIT_CODE")
    assert st(-9, started=False, sent={9}) == ExitStatus(None, 9, "KILLED")
    assert oom_kills("low 0\nhigh 3\nmax 2\noom 1\noom_kill 1\n") == 1
    assert oom_kills("oom_kill 0\n") == 0


def test_load_runtime_by_name(tmp_path):
    assert runtime_names() == ["bwrap", "podman", "docker"]
    assert BwrapRuntime.available()
    rt = load_runtime()
    assert isinstance(rt, BwrapRuntime) and rt.name == "bwrap"
    box = load_runtime("bwrap", cache_dir=tmp_path).start(SandboxSpec(["true"]))
    assert isinstance(box, BwrapSandbox) and box.wait(10).reason == "SUCCEEDED"
    with pytest.raises(JobError, match="unknown sandbox runtime"):
        load_runtime("lxc")


@pytest.fixture
def engines(tmp_path, monkeypatch):
    """Put `docker`/`podman` clients on PATH that answer `info` like this machine's docker
    (no daemon) or, once `works` is set, like a working engine."""
    bin_dir = tmp_path / "engine-bin"
    bin_dir.mkdir()
    state = tmp_path / "engine-works"
    for name in ("docker", "podman"):
        client = bin_dir / name
        client.write_text(
            f"#!/bin/sh\n[ -e {state} ] && exit 0\n"
            "echo 'Cannot connect to the daemon. Is the daemon running?' >&2\nexit 1\n"
        )
        client.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    engine_available.cache_clear()
    yield state
    engine_available.cache_clear()


def test_engine_available_only_when_info_works(engines):
    assert engine_available("docker") is False and engine_available("podman") is False
    assert EngineRuntime.available() is False
    for name in ("docker", "podman"):
        with pytest.raises(JobError, match=rf"^{name} does not work here \(`{name} info` fails\)"):
            load_runtime(name)
    engines.touch()
    engine_available.cache_clear()
    assert EngineRuntime.available() is True
    assert load_runtime("podman").name == "podman"


def test_engine_command_line(tmp_path, images):

    code = tmp_path / "code"
    code.mkdir()
    spec = SandboxSpec(
        ["python", "train.py"],
        workdir=code,
        env={"TOKEN": "secret-value"},
        mounts=(
            Mount(tmp_path, "/opt/ml/output/scores", read_only=False),
            Mount(code, "/opt/ml/input/data/orders"),
        ),
        cpus=1.5,
        memory_bytes=512 * MiB,
    )
    argv = engine_argv("podman", spec, ["oci:/images/l:tiny"], "lakeward-1")
    assert argv[:4] == ["podman", "run", "--name", "lakeward-1"]
    assert argv[-3:] == ["oci:/images/l:tiny", "python", "train.py"]
    text = " ".join(argv)
    for part in (
        "--init",
        "--read-only",
        "--network none",
        "--cpus 1.5",
        f"--memory {512 * MiB} --memory-swap {512 * MiB}",
        f"type=bind,source={code},target=/opt/ml/code,readonly",
        "--workdir /opt/ml/code",
        f"type=bind,source={tmp_path},target=/opt/ml/output/scores ",
        f"type=bind,source={code},target=/opt/ml/input/data/orders,readonly",
        "--env HOME --env TOKEN",
        "--cap-drop ALL",
    ):
        assert part in text, part
    assert "secret-value" not in text
    assert "--network host" in " ".join(
        engine_argv("docker", SandboxSpec(["true"], network=True), ["img"], "n")
    )

    layout, rootfs, tarball = images["layout"], images["rootfs"], images["tarball"]
    assert image_args("podman", f"{layout}:tiny") == ([f"oci:{layout}:tiny"], None)
    assert image_args("podman", str(rootfs)) == (["--rootfs", str(rootfs)], None)
    assert image_args("podman", str(tarball)) == ([f"docker-archive:{tarball}"], None)
    ref, prepare = image_args("docker", str(tarball), tmp_path / "cache")
    assert ref[0].startswith("sha256:") and prepare[:2] == ["docker", "load"]
    assert image_args("docker", "python:3.11-slim") == (["python:3.11-slim"], None)
    with pytest.raises(JobError, match="bwrap"):
        image_args("docker", "host")
    with pytest.raises(JobError, match="folder"):
        image_args("docker", str(rootfs))
