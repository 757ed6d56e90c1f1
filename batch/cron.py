"""A small cron parser: five fields (minute hour day-of-month month day-of-week), UTC.

Supports `*`, lists `1,5`, ranges `1-5`, steps `*/15` and `10-30/5`, names (`mon`, `jan`), and
the shorthands @hourly @daily @weekly @monthly @yearly. Day-of-month and day-of-week combine
with OR when both are restricted, as in Vixie cron.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from catalog.errors import InvalidArgument

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_SHORT = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_FIELDS = ("minute", "hour", "day of month", "month", "day of week")


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression; `next(after)` is the first matching minute after `after`."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    dom_any: bool
    dow_any: bool

    def matches(self, t: datetime) -> bool:
        if t.minute not in self.minutes or t.hour not in self.hours or t.month not in self.months:
            return False
        return self._day_ok(t)

    def next(self, after: datetime) -> datetime:
        """The next time strictly after `after` (aware datetimes; naive means UTC)."""
        if after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
        t = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_ok(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if self.matches(t):
                return t
            t += timedelta(minutes=1)
        raise InvalidArgument(f"cron {self.text!r} never fires")

    def _day_ok(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.dom_any or self.dow_any:
            return dom and dow
        return dom or dow


def _value(token: str, names: list[str] | None, offset: int) -> int:
    if names and token.lower()[:3] in names:
        return names.index(token.lower()[:3]) + offset
    if not token.isdigit():
        raise ValueError(token)
    return int(token)


def _field(text: str, i: int) -> tuple[frozenset[int], bool]:
    lo, hi = _BOUNDS[i]
    names = _MONTHS if i == 3 else _DAYS if i == 4 else None
    offset = 1 if i == 3 else 0
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step_s = part.partition("/")
        step = int(step_s) if step_s else 1
        if step < 1:
            raise ValueError(part)
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a_s, b_s = rng.split("-", 1)
            a, b = _value(a_s, names, offset), _value(b_s, names, offset)
        else:
            a = _value(rng, names, offset)
            b = hi if step_s else a
        if not (lo <= a <= hi and lo <= b <= hi and a <= b):
            raise ValueError(part)
        out.update(range(a, b + 1, step))
    if i == 4 and 7 in out:
        out = (out - {7}) | {0}
    return frozenset(out), text == "*"


def parse_cron(text: str) -> Cron:
    """Parse a five-field cron expression; InvalidArgument names the bad field."""
    if not isinstance(text, str):
        raise InvalidArgument(f"a cron expression must be a string, not {text!r}")
    expr = _SHORT.get(text.strip().lower(), text.strip())
    parts = expr.split()
    if len(parts) != 5:
        raise InvalidArgument(
            f"cron {text!r} must have 5 fields (minute hour day month weekday), e.g. '*/5 * * * *'"
        )
    sets = []
    for i, p in enumerate(parts):
        try:
            sets.append(_field(p, i))
        except ValueError:
            lo, hi = _BOUNDS[i]
            raise InvalidArgument(
                f"cron {text!r}: bad {_FIELDS[i]} field {p!r} (allowed {lo}-{hi}, *, lists, ranges, /steps)"
            ) from None
    return Cron(
        text,
        sets[0][0],
        sets[1][0],
        sets[2][0],
        sets[3][0],
        sets[4][0],
        sets[2][1],
        sets[4][1],
    )
