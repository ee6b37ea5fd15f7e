"""The Upstream port: the video-generation API (T8Star, or the local simulator)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from core.models import VideoRequest


class UpstreamState(StrEnum):
    PENDING = "pending"  # NOT_START, SUBMITTED, QUEUED
    RUNNING = "running"  # IN_PROGRESS and any status we do not know
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class UpstreamStatus:
    """One answer of the status endpoint, normalised."""

    state: UpstreamState
    raw_status: str
    progress: int | None = None
    video_url: str | None = None
    fail_reason: str | None = None
    http_status: int = 200


@dataclass(frozen=True, slots=True)
class Estimate:
    """How long the upstream is expected to take for a request, in seconds of real time."""

    low: float
    typical: float


def expected_timing(request: VideoRequest) -> Estimate:
    """What the upstream's published timings lead us to expect for `request`.

    10 s videos take 1-3 minutes, 15 s about two minutes more, 25 s (pro only) longer still,
    and `hd` adds about eight minutes.
    """
    low, typical = {10: (60.0, 120.0), 15: (180.0, 240.0), 25: (300.0, 420.0)}[request.duration]
    if request.hd and request.duration != 25:
        low, typical = low + 420.0, typical + 480.0
    return Estimate(low=low, typical=typical)


class Upstream(Protocol):
    """Submits video requests and reports their status.

    Errors are raised as `core.errors.UpstreamError` with `transient` set.
    """

    name: str
    # How many times faster than real time this upstream's clock runs (the simulator's speed);
    # the worker divides its poll timings and deadlines by it.
    time_scale: float

    def describe(self) -> str: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def submit(self, request: VideoRequest, api_key: str | None = None) -> str:
        """Start a generation and return the upstream task id."""
        ...

    async def status(self, upstream_task_id: str, api_key: str | None = None) -> UpstreamStatus: ...
