"""`lake job ...`, `lake queue ...` and `lake schedule ...`: batch jobs from the command line.

Every command acts for `--user` (default: the lake's owner on an embedded lake) through the
same checks as `lk.batch` (contract section 3, rule 13). Tables are laid out for 80 columns:
ids, states and times are never cut.
"""

from __future__ import annotations

import codecs
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Column
from rich.text import Text

from lake.cli.common import CatalogUrl, Root, User, console, fitted, line, say, session, table
from lake.cli.common import open_lake as _open

if TYPE_CHECKING:
    from batch.api import Batch, Job

job_app = typer.Typer(
    help="Submit, watch, cancel and interrupt batch jobs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
queue_app = typer.Typer(
    help="Job queues and compute.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
schedule_app = typer.Typer(
    help="Cron schedules that submit jobs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

JobId = Annotated[str, typer.Argument(help="Job id (array children: JOBID:INDEX).")]
COLORS = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "STARTING": "cyan",
    "SPOT_INTERRUPTED": "yellow",
    "INTERRUPTED": "yellow",
    "REQUEUED": "yellow",
    "START_FAILED": "red",
}
# batch.store.TERMINAL, spelled here so that catalog commands do not load the batch store
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
COLD_START_NOTE_S = 1.5  # STARTING this long with no attempt started: say why
WIDE = 110  # from this width on, `job list` shows reasons in a column, not under the table


def batch_of(lk: Any) -> Batch:
    """The lake's Batch."""
    return lk.batch


def _when(t: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "" if t is None else datetime.fromtimestamp(t, UTC).strftime(fmt)


def _state(s: str) -> Text:
    return Text(s, style=COLORS.get(s, ""))


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} must be NAME=VALUE, not {v!r}")
        out[key] = val
    return out


def _spawn_server(root: Path | str, catalog: str | None) -> None:
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
    root = sys.argv[1]  # a folder or an object-store prefix, as given
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
    user: User = None,
    root: Root = ".",
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
        bool, typer.Option("--wait", help="Wait for the end, one line per event.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Wait, and stream the job's output too.")
    ] = False,
) -> None:
    """Submit a job: lake job submit -u etl --spot --checkpoint -- python train.py"""
    wait = wait or follow
    with session(root, catalog) as lk:
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
        say("submitted ", (j.id, "bold"), f" to queue {queue}")
        if not wait:
            say(f"  follow it: lake job status {j.id}; lake job logs {j.id} --follow")
            if not b.scheduler_alive():
                _spawn_server(lk.root, catalog)
            return
        try:
            final = watch(b, j, follow=follow)
        except KeyboardInterrupt:
            say(f"stopped watching; {j.id} goes on in the background (lake job status {j.id})")
            b.close()
            _spawn_server(lk.root, catalog)
            raise typer.Exit(130) from None
        show(b, j.id, user)
        if final != "SUCCEEDED":
            raise typer.Exit(1)


_printed = [0]  # event lines printed so far: output that follows one gets its header again


def _event(what: str, *detail: str | tuple[str, str]) -> None:
    """One event line: time (when seen: lines stay in order), what happened, details."""
    when = _when(time.time(), "%H:%M:%S")
    console.print(line((when + " ", "dim"), (f"{what:<11} ", COLORS.get(what, "bold")), *detail))
    _printed[0] += 1


class Tail:
    """What a job's attempts wrote since the last call, read from their log files.

    For following a job the caller may already read (the submitter, or after one audited
    `logs` call): polling the API instead would audit every poll.
    """

    def __init__(self, b: Batch, job_id: str, attempt: int | None = None):
        self.b, self.job_id, self.attempt = b, job_id, attempt
        self.read: dict[tuple[int, str], int] = {}
        self.decoders: dict[tuple[int, str], Any] = {}
        self.current: tuple[int, str] | None = None
        self.events = _printed[0]

    def new(self, attempts: list[Any]) -> str:
        if self.events != _printed[0]:  # events came in between: name the stream again
            self.events, self.current = _printed[0], None
        out = []
        for a in attempts:
            if self.attempt is not None and a.number != self.attempt:
                continue
            folder = Path(a.log_dir or self.b.paths.attempt(self.job_id, a.number))
            for stream in ("stdout", "stderr"):
                key = (a.number, stream)
                try:
                    with open(folder / f"{stream}.log", "rb") as f:
                        f.seek(self.read.get(key, 0))
                        data = f.read()
                except OSError:
                    continue
                if not data:
                    continue
                self.read[key] = self.read.get(key, 0) + len(data)
                decode = self.decoders.setdefault(
                    key, codecs.getincrementaldecoder("utf-8")("replace")
                ).decode
                if key != self.current:
                    out.append(f"==> attempt {a.number} {stream} <==\n")
                    self.current = key
                out.append(decode(data))
        return "".join(out)


def _write(text: str) -> None:
    if text:
        console.file.flush()
        sys.stdout.write(text)
        sys.stdout.flush()


class Progress:
    """The events of one job, each printed once: the job's own states as they are seen, and
    every attempt's start, run and end from the attempt records (so none is missed however
    briefly it lasted)."""

    def __init__(self) -> None:
        self.state: str | None = None
        self.said: set[tuple[int, str]] = set()  # (attempt, STARTING | RUNNING | ENDED)
        self.seen: dict[int, float] = {}  # attempt -> when this process first saw it
        self.noted = False

    def update(self, row: dict[str, Any], attempts: list[Any]) -> None:
        status = row["status"]
        if self.state is None and status != "SUBMITTED":
            # Every job begins SUBMITTED; the scheduler may have moved it on before the first
            # look, and the story still starts where the job did.
            self._job_state({**row, "status": "SUBMITTED", "status_reason": ""})
            self.state = "SUBMITTED"
        if status != self.state and status in ("SUBMITTED", "PENDING", "RUNNABLE"):
            self._job_state(row)
        self.state = status
        for a in attempts:
            self.seen.setdefault(a.number, time.monotonic())
            self._once(a, "STARTING", f"attempt {a.number} on {a.compute}")
            if a.started_at is not None and a.reason != "START_FAILED":
                self._once(a, "RUNNING", f"attempt {a.number} on {a.compute}")
            if a.ended_at is not None and (a.number, "ENDED") not in self.said:
                self.said.add((a.number, "ENDED"))
                _attempt_ended(a, row)
        waiting = [a for a in attempts if a.started_at is None and a.ended_at is None]
        if (
            waiting
            and not self.noted
            and time.monotonic() - self.seen[waiting[-1].number] > COLD_START_NOTE_S
        ):
            self.noted = True
            say((" " * 9 + _cold_start_note(), "dim"))

    def _once(self, a: Any, what: str, detail: str) -> None:
        if (a.number, what) not in self.said:
            self.said.add((a.number, what))
            _event(what, detail)

    def _job_state(self, row: dict[str, Any]) -> None:
        reason = row["status_reason"] or ""
        if row["status"] == "SUBMITTED":
            _event("SUBMITTED", f"queue {row['queue']}")
        elif not reason.startswith("requeued after"):  # said by the REQUEUED event
            _event(row["status"], reason)

    def finish(self, row: dict[str, Any]) -> None:
        if row["status"] == "SUCCEEDED":
            n = row["attempts"]
            _event("SUCCEEDED", f"after {n} attempt{'s' if n != 1 else ''}")
        else:
            _event(row["status"], row["status_reason"] or "")


def watch(b: Batch, j: Job, follow: bool = False) -> str:
    """Print each event of the job once (state changes, every attempt's start, run and end, an
    interruption and its requeue), and with `follow` the job's output as it comes; returns
    the final state."""
    b.changed_signal()  # the scheduler starts here if none runs
    events = Progress()
    tail = Tail(b, j.id) if follow else None
    while True:
        row = j.refresh()
        attempts = j.attempts
        events.update(row, attempts)
        if tail is not None:  # read after the state: at the end, nothing written is missed
            _write(tail.new(attempts))
        if row["status"] in TERMINAL:
            events.finish(row)
            return row["status"]
        time.sleep(0.1)


def _cold_start_note() -> str:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return "starting a local Ray for this lake (10-25 s on a cold lake)"
    return "waiting for a Ray worker to start the attempt"


def _attempt_ended(a: Any, row: dict[str, Any]) -> None:
    if a.reason in (None, "SUCCEEDED"):
        return
    took = f" after {a.duration_s:.2f} s" if a.duration_s is not None else ""
    if a.reason == "SPOT_INTERRUPTED":
        kept = ", checkpoint kept" if a.useful_s else ""
        _event("INTERRUPTED", f"attempt {a.number} ({a.detail}){took}{kept}")
        if row["status"] not in TERMINAL:
            _event("REQUEUED", f"attempt {a.number + 1} will run next (no retry spent)")
    elif a.reason == "START_FAILED":
        _event("ENDED", f"attempt {a.number} could not start: {a.detail}")
    else:
        reason = (a.reason, COLORS.get(a.reason, ""))
        _event("ENDED", f"attempt {a.number}: ", reason, f" {a.detail or ''}{took}")


def show(b: Batch, job_id: str, user: Any = None) -> None:
    """The job's state, attempts and lineage, laid out for 80 columns."""
    j = b.get(job_id, user=user)
    row = j.refresh()
    t = table(Column(style="bold", no_wrap=True), Column(overflow="fold"), show_header=False)
    goodput = j.goodput
    lost = j.work_lost
    for k, v in [
        ("job", row["id"]),
        ("name", row["name"]),
        ("user", row["user"]),
        ("queue", row["queue"]),
        ("status", _state(row["status"])),
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
        ("created", _when(row["created_at"]) + " UTC"),
        ("ended", _when(row["ended_at"]) + " UTC" if row["ended_at"] else ""),
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
        at = fitted(
            ["#", "compute", "started", "secs", "exit", "reason", "lost s", "detail"],
            [
                [
                    str(a.number),
                    a.compute,
                    _when(a.started_at, "%H:%M:%S"),
                    "" if a.duration_s is None else f"{a.duration_s:.2f}",
                    "" if a.exit_code is None else str(a.exit_code),
                    _state(a.reason or a.status),
                    "" if a.lost_s is None else f"{a.lost_s:.2f}",
                    a.detail or "",
                ]
                for a in attempts
            ],
            whole={"#", "compute", "started", "secs", "exit", "reason", "lost s"},
            fold="detail",
            right={"#", "secs", "exit", "lost s"},
        )
        console.print(at)
    lineage = j.lineage
    if lineage:
        lt = table("direction", "name", "table", "version")
        for r in lineage:
            lt.add_row(r["direction"], r["name"], r["table_name"], str(r["version"]))
        console.print(lt)


@job_app.command("status")
def status(job_id: JobId, user: User = None, root: Root = ".", catalog: CatalogUrl = None) -> None:
    """State, attempts (exit code, reason), goodput, work lost and lineage of a job."""
    with session(root, catalog) as lk:
        show(batch_of(lk), job_id, user)


@job_app.command("logs")
def logs(
    job_id: JobId,
    user: User = None,
    root: Root = ".",
    catalog: CatalogUrl = None,
    attempt: Annotated[int | None, typer.Option(help="Only this attempt.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")
    ] = False,
) -> None:
    """Print a job's logs (kept per attempt in lake storage); of an array job, its children's."""
    with session(root, catalog) as lk:
        j = batch_of(lk).get(job_id, user=user)
        row = j.refresh()
        if row["array_size"]:
            _array_logs(j, row, follow)
            return
        if not follow:
            _write(j.logs(attempt=attempt))
            return
        j.logs(attempt=attempt)  # checked and audited once; then the files are followed
        tail = Tail(batch_of(lk), row["id"], attempt)
        try:
            while True:
                done = j.status in TERMINAL  # read before the logs: nothing written after is lost
                _write(tail.new(j.attempts))
                if done:
                    return
                time.sleep(0.25)
        except KeyboardInterrupt:
            return


def _array_logs(j: Job, row: dict[str, Any], follow: bool) -> None:
    kids = j.children
    n = row["array_size"]
    if follow:
        say(
            f"{j.id} is an array job of {n} children; follow one with "
            f"lake job logs {j.id}:INDEX --follow (INDEX 0-{n - 1})"
        )
        return
    printed = False
    for c in kids:
        text = c.logs()
        if text:
            say((f"==> {c.id} ({c.status}) <==", "bold"))
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            printed = True
    if not printed:
        say(f"{j.id} is an array job of {n} children; none has logged anything yet")
    say((f"one child's logs: lake job logs {j.id}:INDEX (INDEX 0-{n - 1})", "dim"))


@job_app.command("list")
def list_jobs(
    user: User = None,
    root: Root = ".",
    catalog: CatalogUrl = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    state: Annotated[str | None, typer.Option("--status", help="Only this state.")] = None,
    submitted_by: Annotated[
        str | None, typer.Option("--submitted-by", help="Only jobs this user submitted.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Jobs per page.")] = 50,
    page: Annotated[int, typer.Option(min=1, help="Page (1: the newest jobs).")] = 1,
) -> None:
    """List the jobs --user may see, newest first, one page at a time."""
    with session(root, catalog) as lk:
        jobs = batch_of(lk).list(
            queue,
            state.upper() if state else None,
            user=user,
            submitted_by=submitted_by,
            limit=limit,
            offset=(page - 1) * limit,
        )
        rows = [j._row or j.refresh() for j in jobs]
    wide = console.width >= WIDE
    headers = ["job", "status", "try", "created (UTC)", "user", "queue", "name"]
    table_rows, notes = [], []
    for r in rows:
        jid = r["id"] + (f" x{r['array_size']}" if r["array_size"] else "")
        cells = [
            jid,
            _state(r["status"]),
            str(r["attempts"]),
            _when(r["created_at"], "%m-%d %H:%M:%S"),
            r["user"],
            r["queue"],
            r["name"],
        ]
        if wide:
            cells.append(r["status_reason"])
        elif r["status_reason"]:
            notes.append((r["id"], r["status_reason"]))
        table_rows.append(cells)
    t = fitted(
        headers + (["reason"] if wide else []),
        table_rows,
        whole={"job", "status", "try", "created (UTC)"},
        fold="reason" if wide else None,
        right={"try"},
    )
    console.print(t)
    for jid, reason in notes:
        console.print(line((jid, "bold"), "  ", reason))
    if len(rows) == limit:
        console.print(f"page {page}, newest first; the next: --page {page + 1}")


@job_app.command("cancel")
def cancel(job_id: JobId, user: User = None, root: Root = ".", catalog: CatalogUrl = None) -> None:
    """Cancel a job (a running attempt gets SIGTERM, grace, SIGKILL)."""
    with session(root, catalog) as lk:
        batch_of(lk).cancel(job_id, user=user)
        say(f"cancel requested for {job_id}")


@job_app.command("interrupt")
def interrupt(
    job_id: JobId, user: User = None, root: Root = ".", catalog: CatalogUrl = None
) -> None:
    """Deliver a spot interruption now: notice (SIGTERM), grace, SIGKILL, requeue.

    Only a job running on spot compute can be interrupted; cancel an on-demand one instead.
    """
    with session(root, catalog) as lk:
        batch_of(lk).interrupt(job_id, user=user)
        say(f"interruption delivered to {job_id}: notice, grace, kill, requeue")


@job_app.command("serve")
def serve(
    root: Root = ".",
    catalog: CatalogUrl = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="Exit after this many seconds without work.")
    ] = None,
) -> None:
    """Run the lake's scheduler in the foreground (embedded lakes; Ctrl-C stops it)."""
    with session(root, catalog) as lk:
        b = batch_of(lk)
        say(f"scheduling jobs of {lk.root} (Ctrl-C to stop)")
        b.serve(idle_exit_s=idle_exit)


# queues -----------------------------------------------------------------------------------------
@queue_app.callback()
def queue() -> None:
    """Job queues and compute."""


@queue_app.command("list")
def queue_list(root: Root = ".", catalog: CatalogUrl = None) -> None:
    """Queues (priority, compute order, fair-share weights, jobs by state) and compute capacity."""
    with session(root, catalog) as lk:
        b = batch_of(lk)
        queues, compute = b.queues(), b.compute()
    t = fitted(
        ["queue", "prio", "compute", "waiting", "running", "done", "failed", "weights"],
        [
            [
                q["name"],
                str(q["priority"]),
                " > ".join(q["compute"]),
                str(q["counts"]["SUBMITTED"] + q["counts"]["PENDING"] + q["counts"]["RUNNABLE"]),
                str(q["counts"]["STARTING"] + q["counts"]["RUNNING"]),
                str(q["counts"]["SUCCEEDED"]),
                str(q["counts"]["FAILED"] + q["counts"]["CANCELLED"]),
                ", ".join(f"{k}={v:g}" for k, v in q["weights"].items()) or "equal",
            ]
            for q in queues
        ],
        whole={"queue", "prio", "compute", "waiting", "running", "done", "failed"},
        fold="weights",
        right={"prio", "waiting", "running", "done", "failed"},
    )
    console.print(t)
    ct = table(
        Column("compute", no_wrap=True),
        Column("cpus", justify="right", no_wrap=True),
        Column("spot", no_wrap=True),
        Column("interruptions/h", justify="right", no_wrap=True),
        Column("notice s", justify="right", no_wrap=True),
    )
    for e in compute:
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
    user: User = None,
    root: Root = ".",
    catalog: CatalogUrl = None,
    queue: Annotated[str, typer.Option(help="Job queue.")] = "default",
) -> None:
    """Submit COMMAND at every CRON time."""
    with session(root, catalog) as lk:
        b = batch_of(lk)
        b.autostart = False
        s = b.schedule(name, cron, command, user=user, queue=queue)
        say("schedule ", (name, "bold"), f": next run {s['next_run']:%Y-%m-%d %H:%M} UTC")


@schedule_app.command("list")
def schedule_list(root: Root = ".", catalog: CatalogUrl = None) -> None:
    """Every schedule with its next run."""
    with session(root, catalog) as lk:
        schedules = batch_of(lk).schedules()
    t = table(
        Column("name", no_wrap=True),
        Column("cron", no_wrap=True),
        "user",
        "queue",
        Column("command", overflow="fold"),
        Column("next run (UTC)", no_wrap=True),
        Column("last job", no_wrap=True),
    )
    for s in schedules:
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


@schedule_app.command("delete")
def schedule_delete(
    name: Annotated[str, typer.Argument(help="Schedule name.")],
    user: User = None,
    root: Root = ".",
    catalog: CatalogUrl = None,
) -> None:
    """Delete a schedule (its owner's, or with alter on its queue)."""
    with session(root, catalog) as lk:
        batch_of(lk).unschedule(name, user=user)
        say(f"deleted schedule {name}")
