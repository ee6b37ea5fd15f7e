"""Five-field cron expressions as QStash schedules take them (`*/5 * * * *`), and a scaled clock."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

# (name, lowest, highest) of minute, hour, day of month, month, day of week (0 = Sunday).
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 6))


@dataclass(frozen=True)
class Cron:
    """The minutes, hours, days, months and weekdays a cron expression fires at."""

    expression: str
    allowed: tuple[frozenset[int], ...]
    # Whether day of month and day of week are both restricted (neither starts with `*`): then
    # cron fires on a day that matches either of them, not only on days matching both.
    either_day: bool = False

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """Parse `*`, `N`, `A-B`, `*/N`, `A-B/N` and comma lists; ValueError if malformed."""
        parts = expression.split()
        if len(parts) != len(_FIELDS):
            raise ValueError(f"invalid cron expression {expression!r}: want 5 fields")
        allowed = tuple(_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True))
        either_day = not parts[2].startswith("*") and not parts[4].startswith("*")
        return cls(expression, allowed, either_day)

    def matches(self, moment: datetime) -> bool:
        """Whether the schedule fires in the minute `moment` falls in (UTC)."""
        minute, hour, day, month, weekday = self.allowed
        by_date = moment.day in day
        by_weekday = (moment.isoweekday() % 7) in weekday
        on_day = (by_date or by_weekday) if self.either_day else (by_date and by_weekday)
        return moment.minute in minute and moment.hour in hour and moment.month in month and on_day


def _field(text: str, name: str, lowest: int, highest: int) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if span == "*":
                start, stop = lowest, highest
            elif "-" in span:
                start, stop = (int(n) for n in span.split("-", 1))
            else:
                start = stop = int(span)
        except ValueError:
            raise ValueError(f"invalid cron {name} {text!r}") from None
        if step < 1 or not lowest <= start <= stop <= highest:
            raise ValueError(f"invalid cron {name} {text!r}: out of {lowest}-{highest}")
        values.update(range(start, stop + 1, step))
    return frozenset(values)


@dataclass
class ScaledClock:
    """Wall-clock time that runs `1 / time_scale` times faster, from the moment it is made."""

    time_scale: float
    _virtual: float = field(default_factory=time.time)
    _real: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        """Seconds since the epoch on the scaled clock."""
        real = time.monotonic()
        self._virtual += (real - self._real) / self.time_scale
        self._real = real
        return self._virtual

    @staticmethod
    def at(seconds: float) -> datetime:
        """`seconds` since the epoch as a UTC datetime."""
        return datetime.fromtimestamp(seconds, UTC)

    def real_seconds(self, virtual: float) -> float:
        """How long `virtual` seconds of this clock take in real time."""
        return max(0.0, virtual) * self.time_scale
