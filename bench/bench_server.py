"""The server against the same governed calls in process, side by side in one run.

- governed 10M-row group-by through the ADBC Flight SQL client / `lk.sql` in process (goal <= 1.15)
- a 1M-row result streamed to the ADBC client / `lk.sql` in process (goal <= 1.3)
- 16 concurrent ADBC clients running governed point queries: throughput in process / through
  the server (goal: the server >= 0.8x, i.e. ratio <= 1.25), with p50 and p99 latency
- connect + authenticate p50, with a token and with a password (argon2id)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as adbc
import numpy as np
import pyarrow as pa
import pyarrow.flight as fl

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, p50, report  # noqa: E402

import lake  # noqa: E402

ROWS = 10_000_000
POINT_ROWS = 10_000
CLIENTS = 16
POLICY = """\
g, admin, role:admin
p, role:admin, *, *, allow
p2, analyst, b.events, all_valid, "v >= 0", *
p2, analyst, b.accounts, visible, "id >= 0", *
"""
REPO = Path(__file__).resolve().parents[1]


def build(root: Path) -> None:
    folder = root / "policy"
    folder.mkdir(parents=True)
    (folder / "policy.csv").write_text(POLICY)
    with lake.connect(root, policy=folder) as lk:
        lk.catalog.create_database("b")
        schema = pa.schema(
            [("id", pa.int64()), ("k", pa.int32()), ("region", pa.string()), ("v", pa.float64())]
        )
        lk.catalog.create_table("b.events", schema)
        rng = np.random.default_rng(1)
        chunk = 2_000_000
        for start in range(0, ROWS, chunk):
            n = min(chunk, ROWS - start)
            regions = np.array(["eu", "us", "apac", "latam"])[rng.integers(0, 4, n)]
            lk.write(
                "b.events",
                pa.table(
                    {
                        "id": np.arange(start, start + n, dtype=np.int64),
                        "k": rng.integers(0, 1000, n, dtype=np.int32),
                        "region": pa.array(regions),
                        "v": rng.random(n),
                    }
                ),
            )
        lk.catalog.create_table(
            "b.accounts", pa.schema([("id", pa.int64()), ("name", pa.string())])
        )
        ids = np.arange(POINT_ROWS, dtype=np.int64)
        lk.write("b.accounts", pa.table({"id": ids, "name": [f"n{i}" for i in ids]}))


def token(root: Path, user: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from lake.cli import main; main()",
            "token",
            "create",
            user,
            "--root",
            str(root),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return out.stdout.strip()


def set_password(root: Path, user: str, password: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from lake.cli import main; main()",
            "user",
            "set-password",
            user,
            "--root",
            str(root),
        ],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    log = root.parent / "serve.log"
    out = open(log, "w")  # noqa: SIM115 - the child writes the log for its life
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from lake.cli import main; main()",
            "serve",
            "--root",
            str(root),
            "--listen",
            "127.0.0.1:0",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        start_new_session=True,  # noqa: SIM115
    )
    for _ in range(600):
        text = log.read_text()
        if " on grpc://" in text:
            return proc, text.split(" on ", 1)[1].split()[0]
        if proc.poll() is not None:
            raise RuntimeError(text)
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def concurrent(fn_for_client, n_clients: int, per_client: int) -> tuple[float, list[float]]:
    """Run per_client calls in each of n_clients threads; (queries per second, latencies)."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n_clients + 1, timeout=600)

    def worker(i: int) -> None:
        try:
            call = fn_for_client(i)
            call()  # warm up this client
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            barrier.abort()
            return
        barrier.wait()
        mine = []
        for _ in range(per_client):
            t = time.perf_counter()
            call()
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        raise RuntimeError(f"a client failed: {errors[:1]}") from None
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if len(latencies) != n_clients * per_client:
        raise RuntimeError("a client failed while measuring")
    return len(latencies) / wall, latencies


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q))


def main(repeat: int = 15) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lake"
        build(root)
        tok = token(root, "analyst")
        set_password(root, "analyst", "bench password 1")
        proc, url = start_server(root)
        lk = lake.connect(root)
        try:
            kw = {"adbc.flight.sql.authorization_header": "Bearer " + tok}
            conn = adbc.connect(url, db_kwargs=kw, autocommit=True)

            def remote(q: str):
                def run() -> pa.Table:
                    with conn.cursor() as cur:
                        cur.execute(q)
                        return cur.fetch_arrow_table()

                return run

            group = "SELECT k, count(*) AS n, sum(v) AS s FROM b.events GROUP BY k"
            a, b = interleaved(remote(group), lambda: lk.sql(group, user="analyst"), repeat)
            results.append(
                report("server: 10M-row group-by, ADBC / in process", p50(a), p50(b), "<= 1.15")
            )

            big = "SELECT id, k, v FROM b.events WHERE id < 1000000"
            assert remote(big)().num_rows == 1_000_000
            a, b = interleaved(remote(big), lambda: lk.sql(big, user="analyst"), repeat)
            results.append(
                report(
                    "server: 1M-row result streamed, ADBC / in process", p50(a), p50(b), "<= 1.3"
                )
            )
            conn.close()

            rng = np.random.default_rng(7)
            picks = rng.integers(0, POINT_ROWS, 10_000)
            point = "SELECT id, name FROM b.accounts WHERE id = {}"

            def in_process(i: int):
                it = iter(picks[i * 100 :].tolist() * 10)
                return lambda: lk.sql(point.format(next(it)), user="analyst")

            conns = [adbc.connect(url, db_kwargs=kw, autocommit=True) for _ in range(CLIENTS)]

            def through_server(i: int):
                it = iter(picks[i * 100 :].tolist() * 10)
                c = conns[i]

                def run() -> None:
                    with c.cursor() as cur:
                        cur.execute(point.format(next(it)))
                        cur.fetch_arrow_table()

                return run

            per = 40
            local_qps, local_lat = concurrent(in_process, CLIENTS, per)
            server_qps, server_lat = concurrent(through_server, CLIENTS, per)
            for c in conns:
                c.close()
            r = report(
                f"server: {CLIENTS} clients point queries, time/query server / in process",
                1 / server_qps,
                1 / local_qps,
                "<= 1.25 (>= 0.8x throughput)",
            )
            r.update(
                server_qps=server_qps,
                in_process_qps=local_qps,
                server_p50_ms=pct(server_lat, 50) * 1000,
                server_p99_ms=pct(server_lat, 99) * 1000,
                in_process_p50_ms=pct(local_lat, 50) * 1000,
                in_process_p99_ms=pct(local_lat, 99) * 1000,
            )
            print(
                f"    throughput: server {server_qps:.0f} q/s, in process {local_qps:.0f} q/s "
                f"({server_qps / local_qps:.2f}x); latency server p50 {r['server_p50_ms']:.1f} ms "
                f"p99 {r['server_p99_ms']:.1f} ms, in process p50 {r['in_process_p50_ms']:.1f} ms "
                f"p99 {r['in_process_p99_ms']:.1f} ms",
                flush=True,
            )
            results.append(r)

            def by_token() -> None:
                c = fl.connect(url)
                opts = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {tok}".encode())])
                list(c.do_action(fl.Action("lakeward.whoami", b"{}"), opts))
                c.close()

            def by_password() -> None:
                c = fl.connect(url)
                h = c.authenticate_basic_token("analyst", "bench password 1")
                list(
                    c.do_action(
                        fl.Action("lakeward.whoami", b"{}"), fl.FlightCallOptions(headers=[h])
                    )
                )
                c.close()

            a, b = interleaved(by_token, by_password, 15)
            print(
                f"{'server: connect + authenticate p50':<52} token {p50(a) * 1000:7.2f} ms  "
                f"password {p50(b) * 1000:7.2f} ms",
                flush=True,
            )
            results.append(
                {
                    "benchmark": "server: connect + authenticate p50",
                    "token_ms": p50(a) * 1000,
                    "password_ms": p50(b) * 1000,
                }
            )
        finally:
            lk.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
    print(f"load average: {os.getloadavg()}", flush=True)
    return results


if __name__ == "__main__":
    main()
