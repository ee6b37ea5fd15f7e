"""Retry policy as data: how many retries a delivery gets and how long to wait before each."""

from __future__ import annotations

import math

from msgspec import Struct
from msgspec.structs import replace

from core.errors import ConfigError

DAY = 86400.0
# QStash waits min(1 day, e^(2.5 n)) seconds before retry n (n = 1 for the first retry).
_QSTASH_STEP = math.exp(2.5)


class RetryPolicy(Struct, frozen=True):
    """Exponential backoff: retry k (0-based) waits min(cap, base * factor**k) seconds.

    `retries` counts retries, not attempts: a message is delivered at most 1 + retries times.
    """

    retries: int
    base: float
    factor: float
    cap: float

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError(f"retries must be 0 or more, not {self.retries}")
        if not (self.base >= 0 and self.cap >= 0 and math.isfinite(self.cap)):
            raise ConfigError("retry base and cap must be finite and not negative")
        if not self.factor >= 1:
            raise ConfigError(f"retry factor must be at least 1, not {self.factor}")

    @classmethod
    def qstash(cls, retries: int = 3) -> RetryPolicy:
        """QStash's documented default: 3 retries after 12 s, 2 min 28 s and 30 min 8 s."""
        return cls(retries=retries, base=_QSTASH_STEP, factor=_QSTASH_STEP, cap=DAY)

    def delay(self, retried: int) -> float:
        """Seconds to wait before the next retry, when `retried` retries have happened so far."""
        if retried < 0:
            raise ValueError(f"retried must be 0 or more, not {retried}")
        try:
            return min(self.cap, self.base * self.factor**retried)
        except OverflowError:
            # A huge exponent only ever means "as long as allowed".
            return self.cap

    def exhausted(self, retried: int) -> bool:
        """True when an attempt that followed `retried` retries was the last one allowed."""
        return retried >= self.retries

    def delays(self) -> tuple[float, ...]:
        """Every wait this policy allows, in order."""
        return tuple(self.delay(retried) for retried in range(self.retries))

    def scaled(self, factor: float) -> RetryPolicy:
        """The same policy with every wait multiplied by `factor` (fast tests and demos)."""
        if not (factor > 0 and math.isfinite(factor)):
            raise ConfigError(f"a time scale must be a positive number, not {factor}")
        return replace(self, base=self.base * factor, cap=self.cap * factor)
