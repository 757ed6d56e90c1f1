"""The reference lake: a second lake that holds exactly what one user sees of another.

`materialise(src, user, root)` copies every table `user` may know of in `src` into a new lake,
as the user sees it: only their columns, only their rows, NULL where a cell is hidden from
them, masked values where a column is masked, no table they may not describe, nothing of a
database they may not know of. What the reference holds is computed from the user's view
alone, so it holds nothing hidden: an attack that observes anything different in `src` than
in the reference (rows as a multiset, column names and types, error class and message, write
results) learned something it may not see.

With `mirror=True` (the default) the reference's policy also has the *shape* of the user's
rights, so that answers which depend on rights rather than on data agree as well: the same
actions are granted; a table the user sees only part of is partial in the reference too (an
extra all-NULL column `zz_hidden` the user lacks, conditions that hold on every row where the
user's view has row or cell conditions, an identity mask where a column is masked). None of
that carries information about hidden data. With `mirror=False` the policy grants the user
plain select on every table copied (the "all-allowing" reference).

`observe(fn, lk)` runs one attack and returns what the user can observe of it, normalised so
that the two lakes' answers compare with `==`; `leaks(obs, fx)` lists hidden things (paths,
policy text, hidden names and values) found in an observation.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

import lake
from lake.errors import AccessDenied, LakeError

from support.batch import BATCH_TOML

HIDDEN_COLUMN = "zz_hidden"
ACTIONS = ("insert", "update", "delete", "alter", "drop")


# ------------------------------------------------------------------------------------------
# Materialising one user's view
# ------------------------------------------------------------------------------------------


def _principal(src: Any, user: str) -> Any:
    return src.principal(user) if hasattr(src, "principal") else user


def _allowed(src: Any, user: str, resource: str, action: str) -> bool:
    return bool(src.policy.allowed(user, resource, action))


def _spec(src: Any, user: str, info: Any) -> Any:
    """The user's view of a table (None: all of it); AccessDenied without select."""
    if hasattr(src, "gate"):
        gate = src.gate
        return gate.view(_principal(src, user), info, gate.columns(info))
    return src.policy.view(user, info.full_name)  # the tree before the one checkpoint


def _describable(src: Any, user: str, info: Any) -> bool:
    if hasattr(src, "gate"):
        return src.gate.may_describe(_principal(src, user), info)
    return src.policy.may_describe(user, info)


def _tautology(column: str) -> str:
    # Holds on every row (also NULLs) but is not the literal TRUE, so the view stays filtered.
    q = '"' + column.replace('"', '""') + '"'
    return f"({q} IS NULL OR {q} IS NOT NULL)"


def _csv(*fields: str) -> str:
    def one(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if ("," in v or '"' in v or v != v.strip()) else v

    return ", ".join(one(f) for f in fields)


@dataclasses.dataclass
class Copied:
    """One table of the reference: its schema and what the user's view of it looked like."""

    name: str
    schema: pa.Schema
    partial: bool
    lines: list[str]


def _copy_table(src: Any, dst: Any, user: str, info: Any, mirror: bool) -> Copied | None:
    name = info.full_name
    raw_schema = src.catalog.snapshot(info).schema if hasattr(src.catalog, "snapshot") else None
    if raw_schema is None:  # pragma: no cover - every tree has snapshots
        raise AssertionError("source catalog has no snapshots")
    try:
        spec = _spec(src, user, info)
    except AccessDenied:
        if not _describable(src, user, info):
            return None
        # Describe only: the columns they may describe, no rows.
        known = [f for f in raw_schema if _allowed(src, user, f"{name}.{f.name}", "describe")]
        schema = pa.schema(known)
        dst.catalog.create_table(name, schema, description=info.description, tags=info.tags)
        lines = [_csv("p", user, name, "describe", "allow")]
        return Copied(name, schema, False, lines + _action_lines(src, user, name, schema))
    rows = src.sql(f"SELECT * FROM {name}", user=user)
    raw = {f.name: f for f in raw_schema}
    fields = []
    for f in rows.schema:
        nullable = raw[f.name].nullable or rows.column(f.name).null_count > 0
        fields.append(pa.field(f.name, f.type, nullable=nullable))
    visible = [f.name for f in fields]
    hidden = [f for f in raw_schema if f.name not in visible]
    masks = dict(spec.masks) if spec is not None else {}
    cells = dict(spec.cell_cond) if spec is not None else {}
    row_cond = spec.row_cond if spec is not None else None
    partial = bool(hidden or masks or cells or row_cond)
    extra = []
    if mirror and hidden:
        required = any(not f.nullable for f in hidden)
        extra = [pa.field(HIDDEN_COLUMN, pa.int64(), nullable=not required)]
    schema = pa.schema(fields + extra)
    parts = [c for c in src.catalog.snapshot(info).partition_columns if c in visible]
    dst.catalog.create_table(
        name, schema, partition_by=parts or None, description=info.description, tags=info.tags
    )
    data = rows.cast(pa.schema(fields))
    if extra:
        data = data.append_column(extra[0], pa.array([0] * data.num_rows, pa.int64()))
    if data.num_rows:
        dst.write(name, data, user="etl")
    lines = _select_lines(user, name, visible, row_cond, cells, masks, mirror)
    return Copied(name, schema, partial, lines + _action_lines(src, user, name, schema))


def _select_lines(
    user: str,
    name: str,
    visible: list[str],
    row_cond: str | None,
    cells: dict[str, str],
    masks: dict[str, str],
    mirror: bool,
) -> list[str]:
    if not mirror:
        return [_csv("p", user, name, "select", "allow")]
    lines = []
    taut = _tautology(visible[0])
    plain = [c for c in visible if c not in cells]
    if row_cond is None:
        if not cells and len(plain) == len(visible):
            lines.append(_csv("p", user, name, "select", "allow"))
        else:
            lines += [_csv("p", user, f"{name}.{c}", "select", "allow") for c in plain]
        if cells:
            lines.append(_csv("p2", user, name, "cells", taut, " ".join(cells)))
    elif plain:
        # Plain columns are in every pair, cell-filtered ones in only some.
        lines.append(_csv("p2", user, name, "rows", taut, " ".join(plain)))
        if cells:
            lines.append(_csv("p2", user, name, "cells", taut, " ".join(plain + list(cells))))
    else:  # every column is cell-filtered: one pair per column keeps each one partial
        lines += [_csv("p2", user, name, f"cells{i}", taut, c) for i, c in enumerate(cells)]
    lines += [_csv("p3", f"{name}.{c}", f'"{c}"') for c in masks]
    return lines


def _action_lines(src: Any, user: str, name: str, schema: pa.Schema) -> list[str]:
    lines = []
    for action in ACTIONS:
        if not _allowed(src, user, name, action):
            continue
        lines.append(_csv("p", user, name, action, "allow"))
        if action in ("insert", "update"):
            for f in schema:
                if f.name != HIDDEN_COLUMN and not _allowed(src, user, f"{name}.{f.name}", action):
                    lines.append(_csv("p", user, f"{name}.{f.name}", action, "deny"))
    return lines


def materialise(
    src: Any,
    user: str,
    root: Path,
    *,
    policy: Path,
    catalog: str | None = None,
    lines: Iterable[str] = (),
    mirror: bool = True,
    toml: str = BATCH_TOML,
) -> Any:
    """A new lake at `root` holding exactly what `user` sees of every table of `src`, governed
    by a policy (written to the folder `policy`) that grants `user` what they hold in `src`
    (see the module docstring), plus `lines` verbatim (locations, queues). Returns it open."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "lake.toml").write_text(toml)
    copied: list[Copied] = []
    dbs: set[str] = set()
    with lake.connect(root, catalog=catalog) as dst:
        for d in src.catalog.list_databases():
            if d.name == "system":
                continue
            infos = [i for i in src.catalog.list_tables(d.name)]
            known = [i for i in infos if _describable(src, user, i)]
            grants = [a for a in ("describe", "select", "create", *ACTIONS)]
            if not known and not any(_allowed(src, user, d.name, a) for a in grants):
                continue
            dst.catalog.create_database(d.name, d.description, tags=dict(d.tags or {}))
            dbs.add(d.name)
            for info in known:
                c = _copy_table(src, dst, user, info, mirror)
                if c is not None:
                    copied.append(c)
    out = ["p, etl, *, *, allow"]
    if _allowed(src, user, "*", "create"):
        out.append(_csv("p", user, "*", "create", "allow"))
    for db in sorted(dbs):
        for action in ("select", "describe", "create", *ACTIONS):
            if _allowed(src, user, db, action):  # a grant on the database itself
                out.append(_csv("p", user, db, action, "allow"))
    for c in copied:
        out += c.lines
    out += list(lines)
    policy.mkdir(parents=True, exist_ok=True)
    (policy / "policy.csv").write_text("\n".join(dict.fromkeys(out)) + "\n")
    return lake.connect(root, catalog=catalog, policy=policy)


# ------------------------------------------------------------------------------------------
# The fixture: a user with a row filter, a denied column, a masked column, a cell filter, and
# no access to a third table (nor to a whole database)
# ------------------------------------------------------------------------------------------

EMP = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        ("region", pa.string()),
        ("name", pa.string()),
        ("ssn", pa.string()),
        ("phone", pa.string()),
        ("salary", pa.int64()),
        ("notes", pa.string()),
    ]
)
EMP_ROWS = pa.table(
    {
        "id": [1, 2, 3, 4, 5, 6, 7, 8],
        "region": ["eu", "eu", "us", "us", "apac", "apac", "eu", "latam"],
        "name": ["Ada", "Bo", "Cy", "Di", "Ezekiel", "Fenwick", "Gus", "Horatio"],
        "ssn": ["111-11", "222-22", "333-33", "444-44", "555-55", "666-66", "777-77", "888-88"],
        "phone": [
            "+44 1001",
            "+44 1002",
            "+1 2003",
            "+1 2004",
            "+61 3005",
            "+61 3006",
            "+44 1007",
            "+55 4008",
        ],
        "salary": [101, 202, 303, 404, 50505, 60606, 707, 80808],
        "notes": [f"memo-{i}" for i in range(1, 9)],
    },
    schema=EMP,
)
SECRET = pa.table({"id": [1, 2], "code": ["Zanzibar", "Quixotic"]})
VAULT = pa.table({"id": [1], "key": ["Xylophone"]})
ORDERS = pa.schema([("id", pa.int64()), ("region", pa.string()), ("amount", pa.float64())])
DEPT = pa.table({"id": [1, 2], "dept": ["ops", "law"]})

USER = "alice"
# Values and names alice may never observe in the source lake.
HIDDEN_VALUES = (
    ["ssn", "notes", "memo-", "Zanzibar", "Quixotic", "Xylophone", "vault", "secret"]
    + list(EMP_ROWS.column("ssn").to_pylist())
    + ["Ezekiel", "Fenwick", "Horatio", "50505", "60606", "80808"]
    + ["+44 1001", "+1 2003", "+61 3005", "+55 4008"]
)
POLICY_TEXT = ("region IN", "region =", "right(phone", "concat(", "policy.csv")

POLICY = """\
p, etl, *, *, allow
p, bob, hr, *, allow
p, bob, queue:default, submit, allow
p2, alice, hr.emp, mine, "region IN ('eu', 'us')", * -salary
p2, alice, hr.emp, pay, "region = 'eu'", id salary
p, alice, hr.emp.ssn, select, deny
p, alice, hr.emp.notes, select, deny
p3, hr.emp.phone, "concat('***', right(phone, 2))"
p, alice, hr.emp, insert, allow
p, alice, hr.emp, update, allow
p, alice, hr.emp, delete, allow
p, alice, hr.emp, alter, allow
p, alice, hr.dept, select, allow
p, alice, sales, *, allow
p, alice, sandbox, *, allow
p, alice, queue:default, submit, allow
"""


def user_lines(base: Path) -> list[str]:
    """The location grants alice holds (the same in both lakes): everything under `base` (both
    lakes live there: only the rule that a lake's own files are never readable protects
    them), and SQLite databases of the landing folder."""
    queue = [_csv("p", USER, "queue:default", "submit", "allow")]
    return [
        _csv("p", USER, f"location:{base}", "select", "allow"),
        _csv("p", USER, f"location:sqlite:///{base}/landing", "select", "allow"),
        *queue,
    ]


@dataclasses.dataclass
class Pair:
    """The source lake and alice's reference lake, with where everything lives."""

    base: Path
    real: Any
    ref: Any
    landing: Path

    @property
    def both(self) -> tuple[Any, Any]:
        return self.real, self.ref

    def root(self, lk: Any) -> Path:
        return Path(lk.root)

    def store_file(self, lk: Any) -> Path:
        return self.base / ("store-real" if lk is self.real else "store-ref") / "catalog.db"

    def policy_dir(self, lk: Any) -> Path:
        return self.base / ("policy-real" if lk is self.real else "policy-ref")

    def observe(self, fn: Callable[[Any], Any]) -> tuple[Any, Any]:
        """What alice observes of `fn` on each lake (real first)."""
        return observe(fn, self.real), observe(fn, self.ref)

    def same(self, fn: Callable[[Any], Any], *, allow: Sequence[str] = ()) -> Any:
        """Run `fn` on both lakes; assert alice observes the same and nothing hidden; return
        the observation."""
        a, b = self.observe(fn)
        assert a == b, f"the source lake answers differently from the reference:\n{a}\n{b}"
        found = leaks(a, self, allow)
        assert not found, f"the answer holds hidden things {found}: {a}"
        return a

    def close(self) -> None:
        for lk in (self.real, self.ref):
            batch = lk.__dict__.get("batch")
            if batch is not None:
                batch.close()
            lk.close()


def build(base: Path, *, mirror: bool = True, policy: str = POLICY, toml: str = BATCH_TOML) -> Pair:
    """The source lake (data of etl, bob and the owner; store and policy outside its root) and
    alice's reference lake, side by side under `base`."""
    base.mkdir(parents=True, exist_ok=True)
    landing = base / "landing"
    landing.mkdir()
    store = f"sqlite:///{base / 'store-real' / 'catalog.db'}"
    root = base / "real"
    root.mkdir()
    (root / "lake.toml").write_text(toml)
    with lake.connect(root, catalog=store) as lk:
        for db in ("hr", "sales", "sandbox", "vault"):
            lk.catalog.create_database(db, description=f"{db} data")
        lk.catalog.create_table("hr.emp", EMP, tags={"pii": "true"}, description="people")
        lk.write("hr.emp", EMP_ROWS.slice(0, 5), user="etl")
        lk.write("hr.emp", EMP_ROWS.slice(5), user="etl")  # two files: hidden rows in both
        lk.delete("hr.emp", where="id = 6", user="etl")  # a deleted hidden row left in an old file
        lk.write("hr.emp", EMP_ROWS.slice(5, 1), user="etl")
        lk.catalog.create_table("hr.secret", SECRET.schema)
        lk.write("hr.secret", SECRET, user="etl")
        lk.catalog.create_table("hr.dept", DEPT.schema)
        lk.write("hr.dept", DEPT, user="etl")
        lk.catalog.create_table("vault.keys", VAULT.schema)
        lk.write("vault.keys", VAULT, user="etl")
        lk.catalog.create_table("sales.orders", ORDERS, partition_by=["region"])
        lk.write("sales.orders", _orders(0, 6), user="etl")
        lk.write("sales.orders", _orders(6, 6), user="etl")
    folder = base / "policy-real"
    folder.mkdir()
    (folder / "policy.csv").write_text(policy + "\n".join(user_lines(base)) + "\n")
    real = lake.connect(root, catalog=store, policy=folder)
    ref = materialise(
        real,
        USER,
        base / "ref",
        policy=base / "policy-ref",
        catalog=f"sqlite:///{base / 'store-ref' / 'catalog.db'}",
        lines=user_lines(base),
        mirror=mirror,
        toml=toml,
    )
    return Pair(base, real, ref, landing)


def _orders(start: int, n: int) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "region": [("eu", "us")[i % 2] for i in ids],
            "amount": [float(i) for i in ids],
        },
        schema=ORDERS,
    )


# ------------------------------------------------------------------------------------------
# Observations
# ------------------------------------------------------------------------------------------

# Facts about a table's history and file layout, not about its rows: the reference cannot
# replay the source's history, so these are left out of the comparison (and checked for
# hidden things like everything else).
UNCOMPARED = frozenset({"version", "seconds", "created_at", "timestamp", "transaction"})


def normal(v: Any) -> Any:
    """A value the user observed, in a form that compares across the two lakes."""
    if isinstance(v, pa.Table):
        cols = [(f.name, str(f.type)) for f in v.schema]
        rows = sorted(repr(tuple(r.values())) for r in v.to_pylist())
        return ("table", cols, rows)
    if isinstance(v, pa.Schema):
        return ("schema", [(f.name, str(f.type)) for f in v])
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return normal({f.name: getattr(v, f.name) for f in dataclasses.fields(v)})
    if isinstance(v, dict):
        return {str(k): normal(x) for k, x in v.items() if k not in UNCOMPARED}
    if isinstance(v, (list, tuple)):
        return [normal(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return ("object", type(v).__name__)


def observe(fn: Callable[[Any], Any], lk: Any) -> tuple:
    """("ok", normalised answer) or ("error", class, message): all the user sees of `fn`."""
    try:
        out = fn(lk)
    except LakeError as e:
        return ("error", type(e).__name__, str(e))
    except Exception as e:  # noqa: BLE001 - an unexpected error is an observation too
        return ("crash", type(e).__name__, str(e))
    return ("ok", normal(out))


def leaks(obs: Any, pair: Pair, allow: Sequence[str] = ()) -> list[str]:
    """Hidden things found in an observation of the source lake: its paths, its policy text,
    hidden names and values (those the attack itself named are `allow`ed)."""
    text = repr(obs)
    found = []
    paths = [
        str(pair.root(pair.real)),
        str(pair.store_file(pair.real).parent),
        str(pair.policy_dir(pair.real)),
    ]
    for needle in [*paths, *POLICY_TEXT, *HIDDEN_VALUES]:
        if needle in allow:
            continue
        if needle in text:
            found.append(needle)
    return found


def job_script(folder: Path, body: str) -> Path:
    """A small job script in `folder` (for jobs that read governed inputs)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.py"
    path.write_text(textwrap.dedent(body))
    return path
