"""The durable job model: SQLAlchemy tables in the lake's metadata store, versioned migrations.

Tables are prefixed `batch_` and live beside the catalog's in the same database (SQLite file or
PostgreSQL). Times are UNIX seconds (float): cheap to compare and the same on every backend.
Writers on SQLite use BEGIN IMMEDIATE and WAL like the catalog store, so any process can read
job states while the scheduler writes them.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa

from catalog.store.connections import Connections

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", *TERMINAL)

metadata = sa.MetaData()

meta = sa.Table(
    "batch_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

definitions = sa.Table(
    "batch_definitions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # digest of the spec
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

jobs = sa.Table(
    "batch_jobs",
    metadata,
    sa.Column("id", sa.String(96), primary_key=True),
    sa.Column("parent_id", sa.String(96), nullable=True, index=True),
    sa.Column("array_index", sa.Integer, nullable=True),
    sa.Column("array_size", sa.Integer, nullable=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("user", sa.String(255), nullable=False),
    # "owner": submitted by the lake's owner without user=; the job acts as the owner too.
    sa.Column("acting", sa.String(16), nullable=False, server_default="user"),
    sa.Column("queue", sa.String(255), nullable=False),
    sa.Column("share_id", sa.String(255), nullable=False),
    sa.Column("definition_id", sa.String(32), nullable=False),
    sa.Column("spot", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("status_reason", sa.Text, nullable=False, default=""),
    sa.Column("inputs", sa.Text, nullable=False, default="{}"),
    sa.Column("outputs", sa.Text, nullable=False, default="{}"),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("failures", sa.Integer, nullable=False, default=0),
    sa.Column("interruptions", sa.Integer, nullable=False, default=0),
    sa.Column("control", sa.String(16), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("ended_at", sa.Float, nullable=True),
    sa.Column("useful_s", sa.Float, nullable=False, default=0.0),
    sa.Column("total_s", sa.Float, nullable=False, default=0.0),
    sa.Column("schedule", sa.String(255), nullable=True),
    sa.Column("result", sa.Text, nullable=False, default="{}"),
)

deps = sa.Table(
    "batch_deps",
    metadata,
    sa.Column("job_id", sa.String(96), primary_key=True),
    sa.Column("dep_id", sa.String(96), primary_key=True, index=True),
)

attempts = sa.Table(
    "batch_attempts",
    metadata,
    sa.Column("job_id", sa.String(96), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # STARTING RUNNING ENDED
    sa.Column("compute", sa.String(32), nullable=False),
    sa.Column("owner", sa.String(255), nullable=False),  # the scheduler that launched it
    sa.Column("node", sa.String(255), nullable=True),
    sa.Column("worker_pid", sa.Integer, nullable=True),
    sa.Column("sandbox_pid", sa.Integer, nullable=True),
    sa.Column("scratch", sa.Text, nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("signal", sa.Integer, nullable=True),
    sa.Column("reason", sa.String(32), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("ended_at", sa.Float, nullable=True),
    sa.Column("useful_s", sa.Float, nullable=True),
    sa.Column("lost_s", sa.Float, nullable=True),
    sa.Column("log_dir", sa.Text, nullable=True),
)

shares = sa.Table(
    "batch_share_usage",
    metadata,
    sa.Column("queue", sa.String(255), primary_key=True),
    sa.Column("share_id", sa.String(255), primary_key=True),
    sa.Column("usage", sa.Float, nullable=False),  # decayed CPU-seconds
    sa.Column("updated_at", sa.Float, nullable=False),
)

schedules = sa.Table(
    "batch_schedules",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("cron", sa.String(255), nullable=False),
    sa.Column("user", sa.String(255), nullable=False),
    sa.Column("submit", sa.Text, nullable=False),  # submit() keyword arguments as JSON
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("next_run", sa.Float, nullable=False),
    sa.Column("last_run", sa.Float, nullable=True),
    sa.Column("last_job", sa.String(96), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

lineage = sa.Table(
    "batch_lineage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(96), nullable=False, index=True),
    sa.Column("user", sa.String(255), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),  # read | write
    sa.Column("name", sa.String(255), nullable=False),  # input/output name
    sa.Column("table_name", sa.String(511), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=True),
    sa.Column("at", sa.Float, nullable=False),
)

# Outbox of accepted submissions not yet in the lake's audit trail: written in the job's own
# transaction, forwarded in batches, so submitting costs one store transaction, not two.
audit_outbox = sa.Table(
    "batch_audit_outbox",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(96), nullable=False),
    sa.Column("user", sa.String(255), nullable=False),
    sa.Column("queue", sa.String(255), nullable=False),
    sa.Column("statement", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)

leases = sa.Table(
    "batch_leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)


def _v1(conn: sa.Connection) -> None:
    for t in (
        meta,
        definitions,
        jobs,
        deps,
        attempts,
        shares,
        schedules,
        lineage,
        leases,
        audit_outbox,
    ):
        t.create(conn, checkfirst=True)
    conn.execute(
        sa.text(
            "CREATE INDEX IF NOT EXISTS batch_jobs_queue_status ON batch_jobs (status, queue, created_at)"
        )
    )


def _v2(conn: sa.Connection) -> None:
    # A scheduler tick reads what changed and the head of each (queue, share), never the whole
    # queue; job listings page newest first. Each query below has the index it seeks on.
    for ddl in (
        "DROP INDEX IF EXISTS batch_jobs_queue_status",
        "DROP INDEX IF EXISTS ix_batch_jobs_status",
        "CREATE INDEX IF NOT EXISTS batch_jobs_status_created ON batch_jobs (status, created_at)",
        "CREATE INDEX IF NOT EXISTS batch_jobs_heads "
        "ON batch_jobs (status, queue, share_id, created_at, array_index)",
        "CREATE INDEX IF NOT EXISTS batch_jobs_parents ON batch_jobs (status) "
        "WHERE array_size IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS batch_jobs_ended ON batch_jobs (ended_at)",
        "CREATE INDEX IF NOT EXISTS batch_jobs_control ON batch_jobs (control) "
        "WHERE control IS NOT NULL",
        'CREATE INDEX IF NOT EXISTS batch_jobs_user_created ON batch_jobs ("user", created_at)',
    ):
        conn.execute(sa.text(ddl))


def _v3(conn: sa.Connection) -> None:
    cols = {c["name"] for c in sa.inspect(conn).get_columns("batch_jobs")}
    if "acting" not in cols:
        conn.execute(
            sa.text("ALTER TABLE batch_jobs ADD COLUMN acting VARCHAR(16) NOT NULL DEFAULT 'user'")
        )


# Append only: a released migration never changes; index + 1 is the schema version.
MIGRATIONS: list[Callable[[sa.Connection], None]] = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sa.Connection) -> int:
    """Bring the batch tables up to SCHEMA_VERSION inside the caller's transaction."""
    current = 0
    if sa.inspect(conn).has_table(meta.name):
        row = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).first()
        current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"batch schema v{current} is newer than this Lakeward (v{SCHEMA_VERSION}); upgrade"
        )
    for step in MIGRATIONS[current:]:
        step(conn)
    if current == 0:
        conn.execute(sa.insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
    elif current < SCHEMA_VERSION:
        conn.execute(
            sa.update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION))
        )
    return SCHEMA_VERSION


# Hot paths are plain SQL: submit and status reads run thousands of times a second.
_INSERT_DEF = sa.text(
    "INSERT INTO batch_definitions (id, spec, created_at) VALUES (:id, :spec, :now) "
    "ON CONFLICT DO NOTHING"
)
_JOB_COLS = [c.name for c in jobs.columns]
_INSERT_JOB = sa.text(
    "INSERT INTO batch_jobs ("
    + ", ".join(f'"{c}"' for c in _JOB_COLS)
    + ") VALUES ("
    + ", ".join(f":{c}" for c in _JOB_COLS)
    + ")"
)
_INSERT_OUTBOX = sa.text(
    'INSERT INTO batch_audit_outbox (job_id, "user", queue, statement, at) '
    "VALUES (:job_id, :user, :queue, :statement, :at)"
)
_OUTBOX_COLS = ("job_id", "user", "queue", "statement", "at")
_INSERT_JOB_Q = (
    "INSERT INTO batch_jobs ("
    + ", ".join(f'"{c}"' for c in _JOB_COLS)
    + ") VALUES ("
    + ", ".join("?" for _ in _JOB_COLS)
    + ")"
)
_INSERT_OUTBOX_Q = (
    'INSERT INTO batch_audit_outbox (job_id, "user", queue, statement, at) VALUES (?, ?, ?, ?, ?)'
)
_INSERT_DEP = sa.text("INSERT INTO batch_deps (job_id, dep_id) VALUES (:job_id, :dep_id)")
_GET_JOB = sa.text("SELECT * FROM batch_jobs WHERE id = :id")
# Lease times are the database server's on PostgreSQL (hosts' clocks may disagree) and this
# host's on SQLite (one file, one host), passed as :now / :expires.
_DB_NOW = {"postgresql": "extract(epoch FROM clock_timestamp())::float8", "sqlite": ":now"}
_DB_EXPIRES = {"postgresql": f"{_DB_NOW['postgresql']} + :lease_s", "sqlite": ":expires"}


def _per_dialect(sql: str) -> dict[str, sa.TextClause]:
    return {d: sa.text(sql.format(now=_DB_NOW[d], expires=_DB_EXPIRES[d])) for d in _DB_NOW}


_LEASE_TAKE = _per_dialect(
    "INSERT INTO batch_leases (name, owner, expires_at) VALUES (:name, :owner, {expires}) "
    "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at "
    "WHERE batch_leases.owner = excluded.owner OR batch_leases.expires_at < {now} "
    "RETURNING owner"
)
_LEASE_STEAL = _per_dialect(
    "UPDATE batch_leases SET owner = :owner, expires_at = {expires} "
    "WHERE name = :name AND owner = :old"
)
_LEASE_HOLDER = sa.text("SELECT owner FROM batch_leases WHERE name = :name")
_LEASE_LEFT = _per_dialect(
    "SELECT owner, expires_at - {now} AS left_s FROM batch_leases WHERE name = :name"
)
_STATUS = sa.text("SELECT status FROM batch_jobs WHERE id = :id")


# What the scheduler reads of a job.
_SCHED = sa.select(
    jobs.c.id,
    jobs.c.parent_id,
    jobs.c.array_index,
    jobs.c.array_size,
    jobs.c.user,
    jobs.c.queue,
    jobs.c.share_id,
    jobs.c.definition_id,
    jobs.c.spot,
    jobs.c.status,
    jobs.c.control,
    jobs.c.attempts,
    jobs.c.created_at,
)


@functools.lru_cache(maxsize=256)
def _set_status_sql(reason: bool, final: bool, expect: int, ids: int) -> str:
    sets = ["status = :status", "updated_at = :now"]
    if reason:
        sets.append("status_reason = :reason")
    if final:
        sets.append("ended_at = :now")
    allowed = ", ".join(f":e{i}" for i in range(expect)) or "NULL"
    members = ", ".join(f":i{i}" for i in range(ids))
    return (
        f"UPDATE batch_jobs SET {', '.join(sets)} "
        f"WHERE id IN ({members}) AND status IN ({allowed}) RETURNING id"
    )


def row_dict(row: Any) -> dict[str, Any]:
    d = dict(row._mapping)
    for key in ("inputs", "outputs", "result"):
        if isinstance(d.get(key), str):
            d[key] = json.loads(d[key])
    return d


class BatchStore:
    """Jobs, attempts, fair-share usage, schedules, lineage and the scheduler lease."""

    def __init__(self, url: str, *, migrate_schema: bool = True):
        self._db = Connections(url)
        self.url = self._db.url
        self._sqlite = self.url.startswith("sqlite")
        self._dialect = self._db.dialect
        self.write, self.read = self._db.write, self._db.read
        self._known_defs: set[str] = set()  # definitions this process already stored
        self.rows_read = 0  # job rows the scheduler's queries returned (its work, counted)
        if migrate_schema and self._db.schema_version(meta.name) != str(SCHEMA_VERSION):
            try:
                self._db.migrate(migrate)
            except BaseException:
                self._db.close()
                raise

    def close(self) -> None:
        self._db.close()

    # submit ----------------------------------------------------------------------------------
    def insert(
        self,
        definition: tuple[str, str],
        rows: list[dict[str, Any]],
        dep_rows: list[dict[str, str]],
        outbox: list[dict[str, Any]] | None = None,
    ) -> None:
        """Insert one definition (if new), jobs, dependency edges and audit outbox rows at once."""
        now = time.time()
        for r in rows:
            for key in ("inputs", "outputs", "result"):
                if not isinstance(r.get(key), str):
                    r[key] = json.dumps(r.get(key) or {})
        with self.write() as conn:
            if definition[0] not in self._known_defs:
                conn.execute(_INSERT_DEF, {"id": definition[0], "spec": definition[1], "now": now})
            if self._sqlite:
                # The submit hot path: the driver's executemany skips SQLAlchemy's per-statement
                # work, which costs more than SQLite's insert itself.
                cur = conn.connection.driver_connection.cursor()
                cur.executemany(_INSERT_JOB_Q, [tuple(r[c] for c in _JOB_COLS) for r in rows])
                if outbox:
                    cur.executemany(
                        _INSERT_OUTBOX_Q, [tuple(r[c] for c in _OUTBOX_COLS) for r in outbox]
                    )
                cur.close()
            else:
                conn.execute(_INSERT_JOB, rows)
                if outbox:
                    conn.execute(_INSERT_OUTBOX, outbox)
            if dep_rows:
                conn.execute(_INSERT_DEP, dep_rows)
        if len(self._known_defs) > 10_000:
            self._known_defs.clear()
        self._known_defs.add(definition[0])

    def definition(self, def_id: str) -> str:
        with self.read() as conn:
            return conn.execute(
                sa.select(definitions.c.spec).where(definitions.c.id == def_id)
            ).scalar_one()

    # reads -----------------------------------------------------------------------------------
    def job(self, job_id: str) -> dict[str, Any] | None:
        with self.read() as conn:
            row = conn.execute(_GET_JOB, {"id": job_id}).first()
        return row_dict(row) if row else None

    def status(self, job_id: str) -> str | None:
        with self.read() as conn:
            return conn.execute(_STATUS, {"id": job_id}).scalar()

    def existing(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(ids)
        if not ids:
            return {}
        with self.read() as conn:
            rows = conn.execute(
                sa.select(jobs.c.id, jobs.c.status, jobs.c.array_size).where(jobs.c.id.in_(ids))
            ).all()
        return {r.id: dict(r._mapping) for r in rows}

    def list(
        self,
        queue: str | None = None,
        status: str | None = None,
        *,
        parent: str | None = None,
        children: bool = False,
        limit: int | None = None,
        user: str | None = None,
        offset: int = 0,
        before: str | None = None,
        visible_to: tuple[str, Iterable[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """Jobs newest first (an array's children: by index), filtered, one page at a time.

        before: a job id; only jobs submitted before it (a cursor that new submissions do not
        shift). offset: rows of the result to skip first. visible_to: (user, queues): only the
        user's own jobs (never the owner's, whatever its name) and jobs of those queues.
        """
        if parent is not None:
            q = sa.select(jobs).order_by(jobs.c.array_index).where(jobs.c.parent_id == parent)
        else:
            q = sa.select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
            if not children:
                q = q.where(jobs.c.parent_id.is_(None))
        if queue is not None:
            q = q.where(jobs.c.queue == queue)
        if status is not None:
            q = q.where(jobs.c.status == status)
        if user is not None:
            q = q.where(jobs.c.user == user)
        if visible_to is not None:
            me, queues = visible_to
            own = (sa.func.lower(jobs.c.user) == me.lower()) & (jobs.c.acting != "owner")
            q = q.where(own | jobs.c.queue.in_(list(queues)))
        with self.read() as conn:
            if before is not None:
                at = conn.execute(sa.select(jobs.c.created_at).where(jobs.c.id == before)).scalar()
                if at is None:
                    return []
                q = q.where(
                    (jobs.c.created_at < at) | ((jobs.c.created_at == at) & (jobs.c.id < before))
                )
            if limit:
                q = q.limit(limit)
            if offset:
                q = q.offset(offset)
            return [row_dict(r) for r in conn.execute(q).all()]

    def has_live(self) -> bool:
        """Whether any job is not final yet (one index seek)."""
        live = [s for s in STATES if s not in TERMINAL]
        q = sa.select(jobs.c.id).where(jobs.c.status.in_(live)).limit(1)
        with self.read() as conn:
            return conn.execute(q).first() is not None

    def counts(self) -> dict[tuple[str, str], int]:
        q = (
            sa.select(jobs.c.queue, jobs.c.status, sa.func.count())
            .where(jobs.c.array_size.is_(None))
            .group_by(jobs.c.queue, jobs.c.status)
        )
        with self.read() as conn:
            return {(qn, st): int(n) for qn, st, n in conn.execute(q).all()}

    def child_counts(self, parent_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """{parent id: {status: number of children}} for array jobs."""
        ids = list(parent_ids)
        out: dict[str, dict[str, int]] = {}
        q = (
            sa.select(jobs.c.parent_id, jobs.c.status, sa.func.count())
            .where(jobs.c.parent_id.in_(ids))
            .group_by(jobs.c.parent_id, jobs.c.status)
        )
        with self.read() as conn:
            for pid, st, n in conn.execute(q).all():
                out.setdefault(pid, {})[st] = int(n)
        return out

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(
                sa.select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.attempt)
            ).all()
        return [dict(r._mapping) for r in rows]

    def deps_of(self, job_ids: Iterable[str]) -> dict[str, list[str]]:
        ids = list(job_ids)
        out: dict[str, list[str]] = {}
        with self.read() as conn:
            for i in range(0, len(ids), 500):
                for jid, dep in conn.execute(
                    sa.select(deps.c.job_id, deps.c.dep_id).where(
                        deps.c.job_id.in_(ids[i : i + 500])
                    )
                ).all():
                    out.setdefault(jid, []).append(dep)
        return out

    def statuses(self, ids: Iterable[str]) -> dict[str, str]:
        ids = list(set(ids))
        out: dict[str, str] = {}
        with self.read() as conn:
            for i in range(0, len(ids), 500):
                for jid, st in conn.execute(
                    sa.select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(ids[i : i + 500]))
                ).all():
                    out[jid] = st
        return out

    def lineage(self, job_id: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(lineage).order_by(lineage.c.id)
        if job_id is not None:
            q = q.where(lineage.c.job_id == job_id)
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(q).all()]

    # updates ---------------------------------------------------------------------------------
    def update_job(self, job_id: str, expect: Iterable[str] | None = None, **values: Any) -> bool:
        """Set fields of a job (only while its status is in `expect`, if given); True if done."""
        for key in ("inputs", "outputs", "result"):
            if key in values and not isinstance(values[key], str):
                values[key] = json.dumps(values[key])
        values.setdefault("updated_at", time.time())
        q = sa.update(jobs).where(jobs.c.id == job_id).values(**values)
        if expect is not None:
            q = q.where(jobs.c.status.in_(list(expect)))
        with self.write() as conn:
            return conn.execute(q).rowcount == 1

    def set_status_many(self, changes: list[tuple[str, str, str, Iterable[str]]]) -> list[str]:
        """[(job_id, new_status, reason, expected_statuses)] in one transaction; ids changed.

        The scheduler promotes a burst of submissions through here: one UPDATE ... RETURNING
        per kind of change (up to 500 jobs each), so the write lock, which submitters wait
        for, is held for a few statements, not one per job."""
        now = time.time()
        ids = [c[0] for c in changes]
        batches: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
        if len(set(ids)) == len(ids):
            for job_id, status, reason, expect in changes:
                batches.setdefault((status, reason, tuple(expect)), []).append(job_id)
            steps = list(batches.items())
        else:  # a job changed twice: in order, one change at a time
            steps = [((st, why, tuple(exp)), [jid]) for jid, st, why, exp in changes]
        done: list[str] = []
        with self.write() as conn:
            cur = conn.connection.driver_connection.cursor() if self._sqlite else None
            try:
                for (status, reason, expect), members in steps:
                    for i in range(0, len(members), 500):
                        chunk = members[i : i + 500]
                        sql = _set_status_sql(
                            bool(reason), status in TERMINAL, len(expect), len(chunk)
                        )
                        args = {"status": status, "now": now, "reason": reason}
                        args.update((f"e{k}", e) for k, e in enumerate(expect))
                        args.update((f"i{k}", j) for k, j in enumerate(chunk))
                        if cur is not None:
                            done += [r[0] for r in cur.execute(sql, args).fetchall()]
                        else:
                            done += [r[0] for r in conn.execute(sa.text(sql), args)]
            finally:
                if cur is not None:
                    cur.close()
        return done

    def set_control(self, job_id: str, control: str) -> dict[str, Any] | None:
        """Ask the scheduler to CANCEL or INTERRUPT a job; returns the job row, None if unknown."""
        with self.write() as conn:
            row = conn.execute(_GET_JOB, {"id": job_id}).first()
            if row is None:
                return None
            if row.status not in TERMINAL:
                conn.execute(
                    sa.update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(control=control, updated_at=time.time())
                )
            return row_dict(row)

    def set_control_children(self, parent_id: str, control: str) -> int:
        with self.write() as conn:
            return conn.execute(
                sa.update(jobs)
                .where((jobs.c.parent_id == parent_id) & jobs.c.status.not_in(list(TERMINAL)))
                .values(control=control, updated_at=time.time())
            ).rowcount

    def add_lineage(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            with self.write() as conn:
                conn.execute(sa.insert(lineage), rows)

    def outbox(self, limit: int = 5000, older_than: float | None = None) -> list[dict[str, Any]]:
        """Accepted submissions still to be forwarded to the audit trail, oldest first."""
        q = sa.select(audit_outbox).order_by(audit_outbox.c.seq).limit(limit)
        if older_than is not None:
            q = q.where(audit_outbox.c.at < time.time() - older_than)
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(q).all()]

    def outbox_done(self, seqs: Iterable[int]) -> None:
        seqs = list(seqs)
        with self.write() as conn:
            for i in range(0, len(seqs), 500):
                conn.execute(
                    sa.delete(audit_outbox).where(audit_outbox.c.seq.in_(seqs[i : i + 500]))
                )

    # scheduler -------------------------------------------------------------------------------
    def _rows(self, conn: sa.Connection, q: Any) -> list[dict[str, Any]]:
        out = [dict(r._mapping) for r in conn.execute(q).all()]
        self.rows_read += len(out)
        return out

    def controlled(self) -> list[dict[str, Any]]:
        """Jobs with a pending cancel/interrupt request."""
        with self.read() as conn:
            return self._rows(conn, _SCHED.where(jobs.c.control.is_not(None)))

    def in_status(
        self, status: str, limit: int, after: tuple[float, str] | None = None
    ) -> list[dict[str, Any]]:
        """The oldest jobs in a status, after a (created_at, id) cursor."""
        q = _SCHED.where(jobs.c.status == status)
        if after is not None:
            q = q.where(sa.tuple_(jobs.c.created_at, jobs.c.id) > sa.tuple_(*after))
        q = q.order_by(jobs.c.created_at, jobs.c.id).limit(limit)
        with self.read() as conn:
            return self._rows(conn, q)

    def ended_since(self, since: float) -> list[dict[str, Any]]:
        """Jobs that reached a final state at or after `since` (ids and parents)."""
        q = sa.select(jobs.c.id, jobs.c.parent_id).where(jobs.c.ended_at >= since)
        with self.read() as conn:
            return self._rows(conn, q)

    def waiting_on(self, dep_ids: Iterable[str]) -> list[dict[str, Any]]:
        """PENDING jobs that depend on any of these jobs."""
        ids = list(set(dep_ids))
        out: dict[str, dict[str, Any]] = {}
        with self.read() as conn:
            for i in range(0, len(ids), 500):
                q = (
                    _SCHED.join(deps, deps.c.job_id == jobs.c.id)
                    .where(deps.c.dep_id.in_(ids[i : i + 500]))
                    .where(jobs.c.status == "PENDING")
                )
                for r in self._rows(conn, q):
                    out[r["id"]] = r
        return list(out.values())

    def live_parents(self) -> list[dict[str, Any]]:
        """Array jobs not yet final (their state follows their children's)."""
        q = _SCHED.where(
            jobs.c.status.in_([s for s in STATES if s not in TERMINAL])
            & jobs.c.array_size.is_not(None)
        )
        with self.read() as conn:
            return self._rows(conn, q)

    def rows_of(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        """Scheduler rows of these jobs."""
        ids = list(set(ids))
        out: list[dict[str, Any]] = []
        with self.read() as conn:
            for i in range(0, len(ids), 500):
                out += self._rows(conn, _SCHED.where(jobs.c.id.in_(ids[i : i + 500])))
        return out

    def runnable_heads(self, per_share: int) -> list[dict[str, Any]]:
        """The oldest `per_share` RUNNABLE jobs of every (queue, share): what a dispatch can
        choose from, at a cost set by the number of shares, not of queued jobs.

        The shares are found by skipping along the index (one seek per share), not by a scan.
        """
        out: list[dict[str, Any]] = []
        key = (jobs.c.queue, jobs.c.share_id)
        first = sa.select(*key).where(jobs.c.status == "RUNNABLE").order_by(*key).limit(1)
        with self.read() as conn:
            at: tuple[str, str] | None = None
            while True:
                if at is None:
                    row = conn.execute(first).first()
                else:
                    # Two exact seeks (the next share of this queue, else the next queue): a
                    # row-value range would walk every job of the queue on SQLite.
                    row = (
                        conn.execute(
                            first.where((jobs.c.queue == at[0]) & (jobs.c.share_id > at[1]))
                        ).first()
                        or conn.execute(first.where(jobs.c.queue > at[0])).first()
                    )
                if row is None:
                    return out
                at = (row.queue, row.share_id)
                q = (
                    _SCHED.where(
                        (jobs.c.status == "RUNNABLE")
                        & (jobs.c.queue == at[0])
                        & (jobs.c.share_id == at[1])
                        & jobs.c.array_size.is_(None)
                    )
                    .order_by(jobs.c.created_at, jobs.c.array_index)
                    .limit(per_share)
                )
                out += self._rows(conn, q)

    def start_attempt(
        self, job_id: str, attempt: int, compute: str, owner: str, log_dir: str
    ) -> bool:
        """RUNNABLE -> STARTING and a new attempt row, atomically; False if the job moved."""
        now = time.time()
        with self.write() as conn:
            res = conn.execute(
                sa.update(jobs)
                .where((jobs.c.id == job_id) & (jobs.c.status == "RUNNABLE"))
                .values(status="STARTING", attempts=attempt, updated_at=now, status_reason="")
            )
            if res.rowcount != 1:
                return False
            conn.execute(
                sa.insert(attempts).values(
                    job_id=job_id,
                    attempt=attempt,
                    status="STARTING",
                    compute=compute,
                    owner=owner,
                    created_at=now,
                    log_dir=log_dir,
                )
            )
        return True

    def mark_running(
        self,
        job_id: str,
        attempt: int,
        *,
        node: str,
        worker_pid: int,
        sandbox_pid: int,
        scratch: str,
        started_at: float,
    ) -> None:
        """Called by the attempt itself once its sandbox runs."""
        with self.write() as conn:
            conn.execute(
                sa.update(attempts)
                .where(
                    (attempts.c.job_id == job_id)
                    & (attempts.c.attempt == attempt)
                    & (attempts.c.status == "STARTING")
                )
                .values(
                    status="RUNNING",
                    node=node,
                    worker_pid=worker_pid,
                    sandbox_pid=sandbox_pid,
                    scratch=scratch,
                    started_at=started_at,
                )
            )
            conn.execute(
                sa.update(jobs)
                .where(
                    (jobs.c.id == job_id)
                    & (jobs.c.status == "STARTING")
                    & (jobs.c.attempts == attempt)
                )
                .values(
                    status="RUNNING",
                    updated_at=started_at,
                    started_at=sa.func.coalesce(jobs.c.started_at, started_at),
                )
            )

    def end_attempt(
        self, job_id: str, attempt: int, fields: dict[str, Any], job_values: dict[str, Any]
    ) -> None:
        """Record how an attempt ended and move its job, in one transaction."""
        now = time.time()
        for key in ("result",):
            if key in job_values and not isinstance(job_values[key], str):
                job_values[key] = json.dumps(job_values[key])
        with self.write() as conn:
            conn.execute(
                sa.update(attempts)
                .where((attempts.c.job_id == job_id) & (attempts.c.attempt == attempt))
                .values(status="ENDED", **fields)
            )
            job_values = {"updated_at": now, **job_values}
            if job_values.get("status") in TERMINAL:
                job_values.setdefault("ended_at", now)
            conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(**job_values))

    def open_attempts(self) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(sa.select(attempts).where(attempts.c.status != "ENDED")).all()
        return [dict(r._mapping) for r in rows]

    def job_stats(self, job_id: str) -> dict[str, Any]:
        with self.read() as conn:
            row = conn.execute(
                sa.select(
                    jobs.c.attempts,
                    jobs.c.failures,
                    jobs.c.interruptions,
                    jobs.c.useful_s,
                    jobs.c.total_s,
                    jobs.c.result,
                ).where(jobs.c.id == job_id)
            ).one()
        return row_dict(row)

    # fair share ------------------------------------------------------------------------------
    def share_usage(self) -> dict[tuple[str, str], tuple[float, float]]:
        with self.read() as conn:
            rows = conn.execute(sa.select(shares)).all()
        return {(r.queue, r.share_id): (float(r.usage), float(r.updated_at)) for r in rows}

    def put_share_usage(self, queue: str, share_id: str, usage: float, at: float) -> None:
        with self.write() as conn:
            res = conn.execute(
                sa.update(shares)
                .where((shares.c.queue == queue) & (shares.c.share_id == share_id))
                .values(usage=usage, updated_at=at)
            )
            if res.rowcount == 0:
                conn.execute(
                    sa.insert(shares).values(
                        queue=queue, share_id=share_id, usage=usage, updated_at=at
                    )
                )

    # lease -----------------------------------------------------------------------------------
    def take_lease(
        self, name: str, owner: str, lease_s: float, steal: Callable[[str], bool]
    ) -> bool:
        """Take or renew the named lease (the scheduler's) for `lease_s`; True if `owner` holds it.

        One conditional upsert decides, so two processes can never both win; it is free when
        missing, expired by the database's clock, or when `steal(holder)` says its holder is gone.
        """
        args = {"name": name, "owner": owner, **self._clock(lease_s)}
        with self._db.single() as conn:
            if conn.execute(_LEASE_TAKE[self._dialect], args).first() is not None:
                return True
        with self.read() as conn:
            holder = conn.execute(_LEASE_HOLDER, {"name": name}).scalar()
        if holder is None or not steal(holder):
            return False
        with self._db.single() as conn:
            return conn.execute(_LEASE_STEAL[self._dialect], {**args, "old": holder}).rowcount == 1

    def _clock(self, lease_s: float) -> dict[str, float]:
        now = time.time()  # SQLite: one host; PostgreSQL statements read the server's clock
        return {"now": now, "expires": now + lease_s, "lease_s": lease_s}

    def lease_holder(self, name: str) -> tuple[str, float] | None:
        """(holder, when its lease ends in UNIX seconds by this host's clock) or None."""
        with self.read() as conn:
            row = conn.execute(
                _LEASE_LEFT[self._dialect], {"name": name, "now": time.time()}
            ).first()
        return (row.owner, time.time() + float(row.left_s)) if row else None

    def drop_lease(self, name: str, owner: str) -> None:
        with self.write() as conn:
            conn.execute(
                sa.delete(leases).where((leases.c.name == name) & (leases.c.owner == owner))
            )

    # schedules -------------------------------------------------------------------------------
    def put_schedule(self, row: dict[str, Any]) -> None:
        with self.write() as conn:
            conn.execute(sa.delete(schedules).where(schedules.c.name == row["name"]))
            conn.execute(sa.insert(schedules).values(**row))

    def schedules(self) -> list[dict[str, Any]]:
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(schedules)).all()]

    def delete_schedule(self, name: str) -> bool:
        with self.write() as conn:
            return conn.execute(sa.delete(schedules).where(schedules.c.name == name)).rowcount == 1

    def advance_schedule(
        self, name: str, expected_next: float, next_run: float, job_id: str
    ) -> bool:
        """Move a schedule to its next run; False if another scheduler already did."""
        with self.write() as conn:
            return (
                conn.execute(
                    sa.update(schedules)
                    .where((schedules.c.name == name) & (schedules.c.next_run == expected_next))
                    .values(next_run=next_run, last_run=time.time(), last_job=job_id)
                ).rowcount
                == 1
            )
