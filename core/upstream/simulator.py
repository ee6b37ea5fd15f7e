"""A local stand-in for the upstream: realistic timings, rising progress and some failures.

It keeps no state. The upstream id carries the submit time, the job class (duration, hd) and a
random token; every answer is computed from the id and the clock, so a worker restarted after a
crash keeps polling the same id and hears the same story.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from msgspec import Struct

from core.errors import UpstreamError
from core.models import VideoRequest
from core.upstream import Estimate, UpstreamState, UpstreamStatus
from core.upstream.t8star_rules import (
    FAILURE,
    IN_PROGRESS,
    MODELS,
    NOT_START,
    PRO_MODEL,
    PRO_ONLY_DURATION,
    PROVIDER,
    SUCCESS,
)

log = logging.getLogger(__name__)

SIM_ID = re.compile(r"^sim-(10|15|25)(h?)-(\d{1,16})-([0-9a-f]{12})$")
VIDEO_HOST = "https://simulator.videoq.invalid"
# Share of failures that strike after 90 % progress (content moderation of the finished video).
LATE_FAILURE_SHARE = 0.35
FAILURE_REASONS = (
    "Content policy violation: the prompt or the generated video was flagged by moderation",
    "生成失败，请重试",
    "视频内容审核未通过",
    "upstream overloaded, please try again later",
    "The video could not be generated because it may violate our content policy",
    "任务超时，请重新提交",
    "internal error while rendering the video",
)


class SimPlan(Struct, frozen=True):
    """What will happen to one simulated job, in seconds of simulated time since submit."""

    queue_seconds: float
    run_seconds: float
    fails: bool
    fail_at: float  # fraction of the run at which a failing job fails
    reason: str

    @property
    def total_seconds(self) -> float:
        return self.queue_seconds + self.run_seconds * (self.fail_at if self.fails else 1.0)


class SimId(Struct, frozen=True):
    """The parts of a simulator upstream id."""

    duration: int
    hd: bool
    submitted_ms: int
    token: str

    def __str__(self) -> str:
        return f"sim-{self.duration}{'h' if self.hd else ''}-{self.submitted_ms}-{self.token}"

    @classmethod
    def parse(cls, upstream_task_id: str) -> SimId | None:
        match = SIM_ID.match(upstream_task_id)
        if match is None:
            return None
        duration, hd, submitted_ms, token = match.groups()
        return cls(int(duration), hd == "h", int(submitted_ms), token)


def plan_for(sim_id: SimId, failure_rate: float) -> SimPlan:
    """Draw the job's fate from its id alone (the same id always gets the same plan)."""
    seed = hashlib.sha256(str(sim_id).encode()).digest()
    rng = random.Random(int.from_bytes(seed[:8], "big"))
    estimate = _estimate(sim_id.duration, sim_id.hd)
    # Draw every value in a fixed order so that failure_rate only changes the fate.
    queue_seconds = rng.uniform(3.0, 15.0)
    run_seconds = rng.triangular(estimate.low, estimate.typical * 1.5, estimate.typical)
    fate, late, early_at, late_at = rng.random(), rng.random(), rng.random(), rng.random()
    reason = rng.choice(FAILURE_REASONS)
    fail_at = 0.9 + 0.09 * late_at if late < LATE_FAILURE_SHARE else 0.05 + 0.8 * early_at
    return SimPlan(queue_seconds, run_seconds, fate < failure_rate, fail_at, reason)


@functools.cache
def _estimate(duration: int, hd: bool) -> Estimate:
    model = PRO_MODEL if hd or duration == PRO_ONLY_DURATION else MODELS[0]
    request = VideoRequest(prompt="-", model=model, duration=duration, hd=hd)
    return PROVIDER.expected_timing(request)


def progress_at(fraction: float) -> int:
    """Reported progress for a fraction of the run: quick at first, slower near the end."""
    fraction = min(max(fraction, 0.0), 1.0)
    return min(99, int(100 * (1.0 - (1.0 - fraction) ** 1.5)))


class Simulator:
    """The local simulated upstream, speaking T8Star's contract; time runs `speedup` times faster
    than the wall clock."""

    name = "simulator"
    provider = PROVIDER.name
    accepts_notify_hook = False

    def __init__(
        self,
        speedup: float = 1.0,
        failure_rate: float = 0.1,
        seed: int | None = None,
        *,
        transient_rate: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if speedup <= 0:
            raise ValueError("speedup must be positive")
        if not 0.0 <= failure_rate <= 1.0 or not 0.0 <= transient_rate <= 1.0:
            raise ValueError("failure_rate and transient_rate must be between 0 and 1")
        self.speedup = speedup
        self.failure_rate = failure_rate
        self.transient_rate = transient_rate
        self._clock = clock
        self._random = random.Random(seed)

    def describe(self) -> str:
        return f"simulator (speed x{self.speedup:g}; set T8STAR_API_KEY for the real upstream)"

    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""

    async def submit(
        self, request: VideoRequest, api_key: str | None = None, notify_hook: str | None = None
    ) -> str:
        """Accept the job at once and return an id that carries everything status needs.

        Stateless, it has no one to call `notify_hook` later, so it never does.
        """
        token = f"{self._random.getrandbits(48):012x}"
        sim_id = SimId(request.duration, request.hd, int(self._clock() * 1000), token)
        log.debug("upstream task %s: accepted by the simulator", sim_id)
        return str(sim_id)

    async def status(self, upstream_task_id: str, api_key: str | None = None) -> UpstreamStatus:
        """Where the job stands now, as the real upstream would say it."""
        sim_id = SimId.parse(upstream_task_id)
        if sim_id is None:
            raise UpstreamError(
                "the simulator does not know this task (404)", transient=False, http_status=404
            )
        elapsed = max(0.0, (self._clock() * 1000 - sim_id.submitted_ms) / 1000) * self.speedup
        self._maybe_transient(sim_id, elapsed)
        return answer_at(sim_id, plan_for(sim_id, self.failure_rate), elapsed)

    def _maybe_transient(self, sim_id: SimId, elapsed: float) -> None:
        if self.transient_rate <= 0:
            return
        # One draw per ten simulated seconds, so a retry a little later usually gets through.
        bucket = f"{sim_id}:{int(elapsed // 10)}"
        draw = int.from_bytes(hashlib.sha256(bucket.encode()).digest()[:4], "big") / 2**32
        if draw < self.transient_rate:
            log.info("upstream task %s: simulated overload", sim_id)
            raise UpstreamError("T8Star server error (503)", transient=True, http_status=503)


def answer_at(sim_id: SimId, plan: SimPlan, elapsed: float) -> UpstreamStatus:
    """The status answer `elapsed` simulated seconds after submit."""
    if elapsed < plan.queue_seconds:
        return UpstreamStatus(UpstreamState.PENDING, NOT_START, 0)
    fraction = (elapsed - plan.queue_seconds) / plan.run_seconds
    if plan.fails and fraction >= plan.fail_at:
        return UpstreamStatus(UpstreamState.FAILED, FAILURE, 100, fail_reason=plan.reason)
    if fraction >= 1.0:
        return UpstreamStatus(UpstreamState.SUCCEEDED, SUCCESS, 100, video_url=video_url(sim_id))
    return UpstreamStatus(UpstreamState.RUNNING, IN_PROGRESS, progress_at(fraction))


def video_url(sim_id: SimId) -> str:
    """A stable, plausible CDN-style URL for a finished simulated video."""
    day = datetime.fromtimestamp(sim_id.submitted_ms / 1000, UTC).strftime("%Y%m%d")
    name = hashlib.sha256(f"video:{sim_id}".encode()).hexdigest()[:30]
    return f"{VIDEO_HOST}/cdn/{day}/{name}.mp4"
