"""When to poll the upstream next: few polls (each one is a billed queue message), none wasted."""

from __future__ import annotations

from dataclasses import dataclass

from core.upstream import Estimate

# With notify hooks the upstream says when a job changes, so scheduled polls are only a safety
# net for a lost hook: the first once the typical time and half as much again have passed, later
# ones between max_interval and this many times it.
HOOKED_FIRST_FACTOR = 1.5
HOOKED_STRETCH = 4.0


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """Poll timings in seconds of the upstream's clock (the simulator's clock may run faster).

    The first poll comes near the expected lower bound of the job; later ones aim at the time the
    reported progress says is left, within [min_interval, max_interval], and stretch while progress
    does not move. With `hooked` (the upstream calls back when the job changes) polls are a
    safety net: later and further apart.
    """

    min_interval: float = 3.0
    max_interval: float = 30.0
    stretch: float = 2.0
    hooked: bool = False

    def first_delay(self, estimate: Estimate) -> float:
        if self.hooked:
            return max(self.max_interval, estimate.typical * HOOKED_FIRST_FACTOR)
        return max(self.min_interval, estimate.low)

    def next_delay(
        self,
        *,
        estimate: Estimate,
        elapsed: float,
        since_last_poll: float,
        progress: int | None,
        previous_progress: int | None,
    ) -> float:
        """Seconds until the next poll of a job running for `elapsed` seconds."""
        if progress is not None and previous_progress is not None and progress <= previous_progress:
            return self._clamp(since_last_poll * self.stretch)
        if progress is not None and 0 < progress < 100 and elapsed > 0:
            return self._clamp(elapsed * (100 - progress) / progress)
        if elapsed < estimate.typical:
            return self._clamp(estimate.typical - elapsed)
        return self._clamp(since_last_poll * self.stretch)

    def _clamp(self, seconds: float) -> float:
        if self.hooked:
            return min(self.max_interval * HOOKED_STRETCH, max(self.max_interval, seconds))
        return min(self.max_interval, max(self.min_interval, seconds))
