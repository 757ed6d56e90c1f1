"""`lake job ...`, `lake queue ...` and `lake schedule ...`: batch jobs from the command line."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Column, Table

from catalog.errors import LakeError
from lake.cli.common import CatalogUrl, Root, User, console
from lake.cli.common import fail as _fail
from lake.cli.common import open_lake as _open

if TYPE_CHECKING:
    from batch.api import Batch, Job

job_app = typer.Typer(
    help="Submit, watch, cancel and interrupt batch jobs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
queue_app = typer.Typer(
    help="Job queues and compute.", no_args_is_help=True, pretty_exceptions_enable=False
)
schedule_app = typer.Typer(
    help="Cron schedules that submit jobs.", no_args_is_help=True, pretty_exceptions_enable=False
)

JobId = Annotated[str, typer.Argument(help="Job id (array children: JOBID:INDEX).")]
COLORS = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "STARTING": "cyan",
}


def batch_of(lk: Any) -> Batch:
    """The lake's Batch."""
    return lk.batch


@contextmanager
def _session(root: Path, catalog: str | None) -> Iterator[Any]:
    """An open lake for one command; a LakeError becomes one red line and exit code 1."""
    lk = None
    try:
        lk = _open(root, catalog)
        yield lk
    except LakeError as e:
        _fail(e)
    finally:
        if lk is not None:
            lk.close()


def _when(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _status(s: str) -> str:
    color = COLORS.get(s)
    return f"[{color}]{s}[/]" if color else s


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} must be NAME=VALUE, not {v!r}")
        out[key] = val
    return out


def _spawn_server(root: Path, catalog: str | None) -> None:
    # An embedded lake has no long-lived scheduler: start one in the background that exits
    # after a minute without work, so `lake job submit` without --wait still runs the job.
    args = [sys.executable, "-c", "from lake.cli.batch import serve_main; serve_main()", str(root)]
    if catalog:
        args.append(catalog)
    subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def serve_main() -> None:
    """Entry point of the background scheduler: argv = [root, catalog?]."""
    root = Path(sys.argv[1])
    catalog = sys.argv[2] if len(sys.argv) > 2 else None
    lk = _open(root, catalog)
    try:
        b = batch_of(lk)
        if not b.scheduler_alive():
            b.serve(idle_exit_s=60)
    finally:
        lk.close()


# jobs -------------------------------------------------------------------------------------------
@job_app.callback()
def job() -> None:
    """Submit, watch, cancel and interrupt batch jobs."""


@job_app.command(
    "submit",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": False},
)
def submit(
    command: Annotated[list[str], typer.Argument(help="The command, after --: -- python train.py")],
    user: User,
    root: Root = Path("."),
    catalog: CatalogUrl = None,
    queue: Annotated[str, typer.Option(help="Job queue.")] = "default",
    image: Annotated[
        str, typer.Option(help="'host', a rootfs folder or an image tarball.")
    ] = "host",
    cpus: Annotated[float, typer.Option(help="CPUs per attempt.")] = 1.0,
    memory: Annotated[str, typer.Option(help="Memory per attempt, e.g. 512MiB, 2GiB.")] = "1GiB",
    env: Annotated[list[str], typer.Option("--env", "-e", help="NAME=VALUE (repeatable).")] = [],  # noqa: B006
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds per attempt.")] = None,
    retries: Annotated[int, typer.Option(help="Retries after failed attempts.")] = 0,
    spot: Annotated[bool, typer.Option("--spot", help="May run on spot compute.")] = False,
    checkpoint: Annotated[
        bool, typer.Option("--checkpoint", help="Keep /opt/ml/checkpoints across attempts.")
    ] = False,
    array_size: Annotated[int | None, typer.Option(help="Run N children JOBID:0..N-1.")] = None,
    depends_on: Annotated[
        list[str], typer.Option("--depends-on", help="Job id (repeatable).")
    ] = [],  # noqa: B006
    workdir: Annotated[Path | None, typer.Option(help="Folder mounted at /opt/ml/code.")] = None,
    inputs: Annotated[
        list[str], typer.Option("--input", help="NAME=database.table, read as --user (repeatable).")
    ] = [],  # noqa: B006
    outputs: Annotated[
        list[str], typer.Option("--output", help="NAME=database.table, committed on success.")
    ] = [],  # noqa: B006
    name: Annotated[str | None, typer.Option(help="Job name.")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the end, showing progress.")
    ] = False,
) -> None:
    """Submit a job: lake job submit -u etl --spot --checkpoint -- python train.py"""
    with _session(root, catalog) as lk:
        b = batch_of(lk)
        b.autostart = wait
        j = b.submit(
            command,
            user=user,
            image=image,
            queue=queue,
            cpus=cpus,
            memory=memory,
            env=_pairs(env, "--env"),
            timeout_s=timeout,
            retries=retries,
            spot=spot,
            checkpoint=checkpoint,
            array_size=array_size,
            depends_on=list(depends_on),
            workdir=workdir,
            inputs=_pairs(inputs, "--input"),
            outputs=_pairs(outputs, "--output"),
            name=name,
        )
        console.print(f"submitted [bold]{j.id}[/] to queue {queue}")
        if not wait:
            if not b.scheduler_alive():
                _spawn_server(lk.root, catalog)
            return
        final = _watch(b, j)
        _show(b, j.id)
        if final != "SUCCEEDED":
            raise typer.Exit(1)


def _watch(b: Batch, j: Job) -> str:
    from batch.store import TERMINAL

    b._ensure_scheduler()
    last = None
    with console.status(f"{j.id}: SUBMITTED") as spinner:
        while True:
            row = j.refresh()
            now = (row["status"], row["attempts"], row["status_reason"])
            if now != last:
                last = now
                text = f"{j.id}: {row['status']} (attempt {row['attempts']})"
                if row["status_reason"]:
                    text += f" - {row['status_reason']}"
                spinner.update(text)
                console.print(
                    f"[dim]{_when(time.time())}[/] {_status(row['status'])} {text.split(': ', 1)[1]}"
                )
            if row["status"] in TERMINAL:
                return row["status"]
            time.sleep(0.1)


def _show(b: Batch, job_id: str) -> None:
    j = b.get(job_id)
    row = j.refresh()
    t = Table(show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    goodput = j.goodput
    lost = j.work_lost
    for k, v in [
        ("job", row["id"]),
        ("name", row["name"]),
        ("user", row["user"]),
        ("queue", row["queue"]),
        ("status", _status(row["status"])),
        ("reason", row["status_reason"]),
        ("attempts", str(row["attempts"])),
        ("interruptions", str(row["interruptions"])),
        (
            "goodput",
            ""
            if goodput is None
            else f"{goodput:.1%} ({row['useful_s']:.1f} of {row['total_s']:.1f} s useful)",
        ),
        ("work lost", ", ".join(f"{x:.2f} s" for x in lost) if lost else ""),
        ("created", _when(row["created_at"])),
        ("ended", _when(row["ended_at"])),
    ]:
        if v:
            t.add_row(k, v)
    if row["array_size"]:
        counts: dict[str, int] = {}
        for c in j.children:
            counts[c.status] = counts.get(c.status, 0) + 1
        t.add_row("children", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    console.print(t)
    attempts = j.attempts
    if attempts:
        at = Table(
            "#",
            Column("compute", no_wrap=True),
            "node",
            "started",
            "seconds",
            "exit",
            Column("reason", no_wrap=True),
            "detail",
            "lost s",
            header_style="bold cyan",
        )
        for a in attempts:
            dur = a.duration_s
            at.add_row(
                str(a.number),
                a.compute,
                a.node or "",
                _when(a.started_at),
                "" if dur is None else f"{dur:.2f}",
                "" if a.exit_code is None else str(a.exit_code),
                _status(a.reason or a.status),
                a.detail or "",
                "" if a.lost_s is None else f"{a.lost_s:.2f}",
            )
        console.print(at)
    lineage = j.lineage
    if lineage:
        lt = Table("direction", "name", "table", "version", header_style="bold cyan")
        for r in lineage:
            lt.add_row(r["direction"], r["name"], r["table_name"], str(r["version"]))
        console.print(lt)


@job_app.command("status")
def status(job_id: JobId, root: Root = Path("."), catalog: CatalogUrl = None) -> None:
    """State, attempts (exit code, reason), goodput, work lost and lineage of a job."""
    with _session(root, catalog) as lk:
        _show(batch_of(lk), job_id)


@job_app.command("logs")
def logs(
    job_id: JobId,
    root: Root = Path("."),
    catalog: CatalogUrl = None,
    attempt: Annotated[int | None, typer.Option(help="Only this attempt.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")
    ] = False,
) -> None:
    """Print a job's logs (kept per attempt in lake storage)."""
    from batch.store import TERMINAL

    lk = None
    try:
        lk = _open(root, catalog)
        b = batch_of(lk)
        j = b.get(job_id)
        shown = 0
        while True:
            text = j.logs(attempt=attempt)
            if len(text) > shown:
                sys.stdout.write(text[shown:])
                sys.stdout.flush()
                shown = len(text)
            if not follow or j.status in TERMINAL:
                if follow:
                    rest = j.logs(attempt=attempt)[shown:]
                    sys.stdout.write(rest)
                return
            time.sleep(0.25)
    except LakeError as e:
        _fail(e)
    except KeyboardInterrupt:
        return
    finally:
        if lk is not None:
            lk.close()


@job_app.command("list")
def list_jobs(
    root: Root = Path("."),
    catalog: CatalogUrl = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    state: Annotated[str | None, typer.Option("--status", help="Only this state.")] = None,
    user: Annotated[
        str | None, typer.Option("--user", "-u", envvar="LAKE_USER", help="User to list for.")
    ] = None,
    submitted_by: Annotated[
        str | None, typer.Option("--submitted-by", help="Only this user's jobs.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Jobs per page.")] = 50,
    page: Annotated[int, typer.Option(min=1, help="Page (1: the newest jobs).")] = 1,
) -> None:
    """List the jobs a user may see, newest first, one page at a time."""
    with _session(root, catalog) as lk:
        jobs = batch_of(lk).list(
            queue,
            state.upper() if state else None,
            user=user,
            submitted_by=submitted_by,
            limit=limit,
            offset=(page - 1) * limit,
        )
        t = Table(
            Column("job", no_wrap=True),
            "name",
            "user",
            "queue",
            Column("status", no_wrap=True),
            "attempts",
            "created",
            "reason",
            header_style="bold cyan",
        )
        for j in jobs:
            r = j._row or j.refresh()
            t.add_row(
                r["id"] + (f" [dim]x{r['array_size']}[/]" if r["array_size"] else ""),
                r["name"],
                r["user"],
                r["queue"],
                _status(r["status"]),
                str(r["attempts"]),
                _when(r["created_at"]),
                r["status_reason"],
            )
        console.print(t)
        if len(jobs) == limit:
            console.print(f"page {page} of the newest first; the next: --page {page + 1}")


@job_app.command("cancel")
def cancel(job_id: JobId, root: Root = Path("."), catalog: CatalogUrl = None) -> None:
    """Cancel a job (a running attempt gets SIGTERM, grace, SIGKILL)."""
    with _session(root, catalog) as lk:
        batch_of(lk).cancel(job_id)
        console.print(f"cancel requested for {job_id}")


@job_app.command("interrupt")
def interrupt(job_id: JobId, root: Root = Path("."), catalog: CatalogUrl = None) -> None:
    """Deliver a spot interruption now: notice (SIGTERM), grace, SIGKILL, requeue."""
    with _session(root, catalog) as lk:
        batch_of(lk).interrupt(job_id)
        console.print(f"interruption delivered to {job_id}")


@job_app.command("serve")
def serve(
    root: Root = Path("."),
    catalog: CatalogUrl = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="Exit after this many seconds without work.")
    ] = None,
) -> None:
    """Run the lake's scheduler in the foreground (embedded lakes; Ctrl-C stops it)."""
    lk = _open(root, catalog)
    try:
        b = batch_of(lk)
        console.print(f"scheduling jobs of {lk.root} (Ctrl-C to stop)")
        b.serve(idle_exit_s=idle_exit)
    finally:
        lk.close()


# queues -----------------------------------------------------------------------------------------
@queue_app.callback()
def queue() -> None:
    """Job queues and compute."""


@queue_app.command("list")
def queue_list(root: Root = Path("."), catalog: CatalogUrl = None) -> None:
    """Queues (priority, compute order, fair-share weights, jobs by state) and compute capacity."""
    with _session(root, catalog) as lk:
        b = batch_of(lk)
        t = Table(
            "queue",
            "priority",
            "compute",
            "weights",
            "runnable",
            "running",
            "succeeded",
            "failed",
            header_style="bold cyan",
        )
        for q in b.queues():
            c = q["counts"]
            t.add_row(
                q["name"],
                str(q["priority"]),
                " > ".join(q["compute"]),
                ", ".join(f"{k}={v:g}" for k, v in q["weights"].items()) or "equal",
                str(c["SUBMITTED"] + c["PENDING"] + c["RUNNABLE"]),
                str(c["STARTING"] + c["RUNNING"]),
                str(c["SUCCEEDED"]),
                str(c["FAILED"] + c["CANCELLED"]),
            )
        console.print(t)
        ct = Table(
            "compute", "cpus", "spot", "interruptions/h", "notice s", header_style="bold cyan"
        )
        for e in b.compute():
            ct.add_row(
                e["name"],
                f"{e['cpus']:g}",
                "yes" if e["spot"] else "no",
                f"{e['interruption_rate_per_hour']:g}",
                f"{e['notice_s']:g}",
            )
        console.print(ct)


# schedules --------------------------------------------------------------------------------------
@schedule_app.callback()
def schedule() -> None:
    """Cron schedules that submit jobs."""


@schedule_app.command("add")
def schedule_add(
    name: Annotated[str, typer.Argument(help="Schedule name.")],
    cron: Annotated[str, typer.Argument(help="Cron expression (UTC), e.g. '*/5 * * * *'.")],
    command: Annotated[list[str], typer.Argument(help="The command, after --.")],
    user: User,
    root: Root = Path("."),
    catalog: CatalogUrl = None,
    queue: Annotated[str, typer.Option(help="Job queue.")] = "default",
) -> None:
    """Submit COMMAND at every CRON time."""
    with _session(root, catalog) as lk:
        b = batch_of(lk)
        b.autostart = False
        s = b.schedule(name, cron, command, user=user, queue=queue)
        console.print(f"schedule [bold]{name}[/]: next run {s['next_run']:%Y-%m-%d %H:%M} UTC")


@schedule_app.command("list")
def schedule_list(root: Root = Path("."), catalog: CatalogUrl = None) -> None:
    """Every schedule with its next run."""
    lk = _open(root, catalog)
    try:
        t = Table(
            "name",
            "cron",
            "user",
            "queue",
            "command",
            "next run (UTC)",
            "last job",
            header_style="bold cyan",
        )
        for s in batch_of(lk).schedules():
            t.add_row(
                s["name"],
                s["cron"],
                s["user"],
                s["queue"],
                " ".join(s["command"] or []),
                f"{s['next_run']:%Y-%m-%d %H:%M}",
                s["last_job"] or "",
            )
        console.print(t)
    finally:
        lk.close()


@schedule_app.command("delete")
def schedule_delete(
    name: Annotated[str, typer.Argument(help="Schedule name.")],
    root: Root = Path("."),
    catalog: CatalogUrl = None,
) -> None:
    """Delete a schedule."""
    with _session(root, catalog) as lk:
        batch_of(lk).unschedule(name)
        console.print(f"deleted schedule {name}")
