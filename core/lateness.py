"""Whether a task is late: overdue against its provider's published timings, or stalled.

Apart from `core.insight` (stats, failure groups, upstream health) because `videoq list` and
`show` ask only this, and a one-shot command's start-up pays for every module it imports.
"""

from __future__ import annotations

import functools
from datetime import datetime

from msgspec import Struct

from core.models import Task, TaskStatus, VideoRequest
from core.upstream import Estimate, expected_timing

STALLED_POLLS = 4
"""A running task whose last this-many polls reported no new progress has stalled."""


def estimate_of(task: Task) -> Estimate:
    """The provider's expected timing for the task's request, the same for every such task.

    The dashboard asks for every running row on every frame: cached, it builds no request.
    """
    return _estimate(task.provider, task.model, task.duration, task.hd, task.aspect_ratio)


@functools.lru_cache(maxsize=256)
def _estimate(provider: str, model: str, duration: int, hd: bool, aspect_ratio: str) -> Estimate:
    request = VideoRequest(
        prompt="-",
        provider=provider,
        model=model,
        duration=duration,
        hd=hd,
        aspect_ratio=aspect_ratio,
    )
    return expected_timing(request)


def overdue(task: Task, now: datetime, speedup: float = 1.0) -> bool:
    """Running past the end of the provider's published time range for this request.

    `speedup` is how much faster than real time the upstream's clock runs (the simulator's).
    """
    if task.status is not TaskStatus.RUNNING or task.started_at is None:
        return False
    elapsed = (now - task.started_at).total_seconds() * speedup
    return elapsed > estimate_of(task).high


def stalled(task: Task) -> bool:
    """Running, and its last STALLED_POLLS polls reported no new progress."""
    return task.status is TaskStatus.RUNNING and task.polls_without_progress >= STALLED_POLLS


def seconds_between(start: datetime, end: datetime) -> float:
    """Seconds from `start` to `end`, never below zero (clocks of two writers may disagree)."""
    return max(0.0, (end - start).total_seconds())


class Lateness(Struct, frozen=True):
    """Whether a task is overdue or stalled, with the times that say so."""

    overdue: bool = False
    stalled: bool = False
    # The provider's range for the request, in the upstream clock's seconds.
    expected_low: float = 0.0
    expected_high: float = 0.0
    # Time since the upstream accepted the job, in the same clock (None before that).
    elapsed: float | None = None


def lateness(task: Task, now: datetime, speedup: float = 1.0) -> Lateness:
    """How `task` stands against the provider's timings and its own recent progress."""
    estimate = estimate_of(task)
    elapsed = None
    if task.started_at is not None:
        end = task.completed_at or now
        elapsed = seconds_between(task.started_at, end) * speedup
    return Lateness(
        overdue=overdue(task, now, speedup),
        stalled=stalled(task),
        expected_low=estimate.low,
        expected_high=estimate.high,
        elapsed=elapsed,
    )
