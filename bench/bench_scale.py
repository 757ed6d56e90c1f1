"""Scale-out costs, each measured side by side with the embedded setup in one run.

Parts (each a function returning result dicts; `main` runs those whose servers are available):
- `postgres`: the same lake with its catalog in PostgreSQL / in SQLite: 1,000-row append p50 and a
  2-table transaction. The server is $LAKE_BENCH_PG (an admin URL), else a throwaway one started
  with scripts/pg_cluster.sh and stopped after. An append costs PostgreSQL two round trips (the
  lock statement; ratify, audit record included, in one message ending in COMMIT).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_commit import SCHEMA, rows  # noqa: E402
from common import interleaved, p50, report  # noqa: E402

import lake  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str | None]:
    """An admin URL of a PostgreSQL server: $LAKE_BENCH_PG or a throwaway cluster (None: none)."""
    import os

    if os.environ.get("LAKE_BENCH_PG"):
        yield os.environ["LAKE_BENCH_PG"]
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pg"
        script = REPO / "scripts" / "pg_cluster.sh"
        started = subprocess.run(
            ["bash", str(script), "start", str(folder)], capture_output=True, text=True
        )
        if started.returncode != 0:
            print(f"postgres part skipped: {started.stderr.strip()[-300:]}", flush=True)
            yield None
            return
        try:
            yield started.stdout.strip().splitlines()[-1]
        finally:
            subprocess.run(["bash", str(script), "stop", str(folder)], check=False)


def fresh_database(server: str) -> str:
    import psycopg

    name = "lakeward_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.rsplit("/", 1)[0] + "/" + name


def open_lake(root: Path, catalog: str | None) -> lake.Lake:
    root.mkdir(parents=True)
    # The commit path alone: background compaction would add work to one side only.
    (root / "lake.toml").write_text("[catalog]\nauto_compact = false\n")
    lk = lake.connect(root, catalog=catalog)
    lk.catalog.create_database("b")
    lk.catalog.create_table("b.a", SCHEMA)
    lk.catalog.create_table("b.c", SCHEMA)
    return lk


def postgres(repeat: int = 200) -> list[dict]:
    """PostgreSQL catalog / SQLite catalog, same lake layout, same data, interleaved."""
    with postgres_server() as server:
        if server is None:
            return []
        data = rows()
        with tempfile.TemporaryDirectory() as tmp:
            pg_lake = open_lake(Path(tmp) / "pg", fresh_database(server))
            sq_lake = open_lake(Path(tmp) / "sqlite", None)
            try:

                def append(lk: lake.Lake) -> Callable[[], None]:
                    return lambda: lk.write("b.a", data, user="bench")

                def txn(lk: lake.Lake) -> Callable[[], None]:
                    def go() -> None:
                        with lk.transaction(user="bench") as tx:
                            tx.write("b.a", data)
                            tx.write("b.c", data)

                    return go

                ta, tb = interleaved(append(pg_lake), append(sq_lake), repeat, warmup=5)
                out = [
                    report(
                        "append p50: PostgreSQL catalog / SQLite catalog",
                        p50(ta),
                        p50(tb),
                        "<= 1.3",
                    )
                ]
                tc, td = interleaved(txn(pg_lake), txn(sq_lake), repeat // 2, warmup=3)
                out.append(
                    report("2-table transaction: PostgreSQL / SQLite", p50(tc), p50(td), "<= 1.6")
                )
                return out
            finally:
                pg_lake.close()
                sq_lake.close()


def main() -> list[dict]:
    return postgres()


if __name__ == "__main__":
    main()
