"""Cron schedules, parsed and evaluated by croniter: five fields (minute hour day-of-month month
day-of-week), UTC, with names (`mon`, `jan`), lists, ranges, steps and the shorthands @hourly
@daily @weekly @monthly @yearly. Day-of-month and day-of-week combine with OR when both are
restricted, as in Vixie cron (croniter's default).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import CroniterError, croniter

from catalog.errors import InvalidArgument

_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_BOUNDS = ("0-59", "0-23", "1-31", "1-12 or jan-dec", "0-7 or sun-sat")


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression; `next(after)` is the first matching minute after `after`."""

    text: str
    expression: str  # the five fields (a shorthand expanded by croniter)

    def next(self, after: datetime) -> datetime:
        """The next time strictly after `after` (aware datetimes; naive means UTC)."""
        if after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
        try:
            return croniter(self.expression, after.astimezone(UTC)).get_next(datetime)
        except CroniterError:
            raise InvalidArgument(f"cron {self.text!r} never fires") from None


def parse_cron(text: str) -> Cron:
    """Parse a five-field cron expression; InvalidArgument names the bad field."""
    if not isinstance(text, str):
        raise InvalidArgument(f"a cron expression must be a string, not {text!r}")
    expr = text.strip()
    if not expr.startswith("@") and len(expr.split()) != 5:
        raise InvalidArgument(
            f"cron {text!r} must have 5 fields (minute hour day month weekday), e.g. '*/5 * * * *'"
        )
    if croniter.is_valid(expr):
        return Cron(text, expr.lower() if expr.startswith("@") else expr)
    if expr.startswith("@"):
        raise InvalidArgument(
            f"cron {text!r}: unknown shorthand; use @hourly, @daily, @weekly, @monthly or @yearly"
        )
    parts = expr.split()
    for i, part in enumerate(parts):
        alone = " ".join(part if j == i else "*" for j in range(5))
        if not croniter.is_valid(alone):
            raise InvalidArgument(
                f"cron {text!r}: bad {_FIELDS[i]} field {part!r} "
                f"(allowed {_BOUNDS[i]}, *, lists, ranges, /steps)"
            )
    raise InvalidArgument(f"cron {text!r} is not a valid cron expression")
