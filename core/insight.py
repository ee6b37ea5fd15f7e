"""What a generic queue cannot tell an operator: which jobs are late, why jobs fail, what they cost.

Everything here is read from the store (rows and their history) and the provider's published
timings; nothing is kept on the side, so every process that reads the store agrees.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from core.lateness import seconds_between
from core.models import TERMINAL, Task, TaskStatus
from core.store import TaskStore
from core.text import one_line

STATS_MAX_TASKS = 50_000
"""The most tasks one `stats` window reads; a longer window says it was cut."""

REASON_CHARS = 160

# What varies between two reports of one failure: ids, hashes, numbers.
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_VOLATILE = re.compile(rf"{_UUID}|\b(?=[0-9a-f]*\d)[0-9a-f]{{12,}}\b|\d+(?:\.\d+)?", re.I)


def reason_group(reason: str | None) -> str:
    """The failure reason with what varies between reports of it (ids, numbers) made `#`."""
    return _VOLATILE.sub("#", one_line(reason, REASON_CHARS)) or "(no reason given)"


@dataclass
class FailureGroup:
    """Failures that share a reason, once ids and numbers are set aside."""

    reason: str
    count: int = 0
    newest_at: datetime | None = None
    example: str = ""
    example_task: str = ""
    # Tasks that failed so and then succeeded on a retry.
    recovered: int = 0
    # The tasks in the group that are failed now (what a group retry would queue again).
    failed_now: list[str] = field(default_factory=list)


@dataclass
class ModelStats:
    """How one kind of job (model, duration) fared in the window."""

    model: str
    duration: int
    finished: int = 0
    succeeded: int = 0
    # Seconds from the attempt's queueing to its end, of the succeeded ones.
    p50_seconds: float | None = None
    p95_seconds: float | None = None
    polls_per_task: float = 0.0
    # One message for the submit and one per poll (redeliveries not counted).
    messages_per_task: float = 0.0

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.finished if self.finished else None


@dataclass
class Stats:
    """Failures by reason and results per kind of job, over a window ending now."""

    since: datetime
    failures: list[FailureGroup]
    models: list[ModelStats]
    # The window held more tasks than one read takes; the figures cover the newest ones.
    cut: bool = False


@dataclass(frozen=True)
class _Failure:
    task: Task
    reason: str
    at: datetime


async def collect_stats(store: TaskStore, since: datetime) -> Stats:
    """Read the tasks written since `since` and their failures, and sum them up."""
    found = await store.list(updated_since=since, limit=STATS_MAX_TASKS + 1)
    cut = len(found) > STATS_MAX_TASKS
    tasks = found[:STATS_MAX_TASKS]
    failures = [failure for task in tasks for failure in await _failures(store, task, since)]
    return Stats(since, group_failures(failures), model_stats(tasks, since), cut)


async def _failures(store: TaskStore, task: Task, since: datetime) -> list[_Failure]:
    if task.attempt == 1:
        # One attempt: the row itself says whether and why it failed.
        at = task.completed_at or task.updated_at
        if task.status is TaskStatus.FAILED and at >= since:
            return [_Failure(task, task.error_message or "", at)]
        return []
    return [
        _Failure(task, event.detail or "", event.at)
        for event in await store.events(task.id)
        if event.kind == "transition" and event.to_status is TaskStatus.FAILED
        if event.at >= since
    ]


def group_failures(failures: Iterable[_Failure]) -> list[FailureGroup]:
    """Failures grouped by reason, the largest group first."""
    groups: dict[str, FailureGroup] = {}
    recovered: dict[str, set[str]] = {}
    for failure in failures:
        key = reason_group(failure.reason)
        group = groups.setdefault(key, FailureGroup(reason=key))
        group.count += 1
        if group.newest_at is None or failure.at > group.newest_at:
            group.newest_at = failure.at
            group.example = one_line(failure.reason, REASON_CHARS)
            group.example_task = failure.task.id
        task = failure.task
        if task.status is TaskStatus.FAILED and task.id not in group.failed_now:
            group.failed_now.append(task.id)
        if task.status is TaskStatus.SUCCEEDED:
            recovered.setdefault(key, set()).add(task.id)
    for key, ids in recovered.items():
        groups[key].recovered = len(ids)
    return sorted(groups.values(), key=lambda g: (-g.count, g.reason))


def model_stats(tasks: Iterable[Task], since: datetime) -> list[ModelStats]:
    """Per model and duration, the tasks that ended (succeeded or failed) since `since`."""
    kinds: dict[tuple[str, int], list[Task]] = {}
    for task in tasks:
        ended = task.completed_at is not None and task.completed_at >= since
        if ended and task.status in TERMINAL and task.status is not TaskStatus.CANCELLED:
            kinds.setdefault((task.model, task.duration), []).append(task)
    return [_one_kind(model, duration, kinds[model, duration]) for model, duration in sorted(kinds)]


def _one_kind(model: str, duration: int, finished: list[Task]) -> ModelStats:
    succeeded = [task for task in finished if task.status is TaskStatus.SUCCEEDED]
    times = sorted(
        seconds_between(task.queued_at, task.completed_at)
        for task in succeeded
        if task.completed_at
    )
    polls = statistics.fmean(task.polls for task in finished)
    return ModelStats(
        model=model,
        duration=duration,
        finished=len(finished),
        succeeded=len(succeeded),
        p50_seconds=_percentile(times, 50),
        p95_seconds=_percentile(times, 95),
        polls_per_task=polls,
        messages_per_task=polls + 1,
    )


def _percentile(ordered: Sequence[float], percent: int) -> float | None:
    """The nearest-rank percentile of sorted values, or None for none."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * percent // 100))
    return ordered[rank - 1]


HEALTH_WINDOW = 300.0
"""Seconds of upstream calls the dashboard's upstream health covers."""


@dataclass(frozen=True)
class UpstreamHealth:
    """How the upstream answered lately: calls, how many failed on its side, how slowly."""

    calls: int
    failed: int
    p95_seconds: float | None

    @property
    def failed_share(self) -> float:
        return self.failed / self.calls if self.calls else 0.0


class RecentCalls:
    """The upstream calls of the last HEALTH_WINDOW seconds (bounded, whatever the rate)."""

    def __init__(
        self,
        window: float = HEALTH_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        most: int = 20_000,
    ) -> None:
        self.window = window
        self._clock = clock
        self._calls: deque[tuple[float, bool, float]] = deque(maxlen=most)

    def record(self, healthy: bool, seconds: float) -> None:
        """One call: whether the upstream answered it (a 429, 5xx or timeout is unhealthy)."""
        self._calls.append((self._clock(), healthy, seconds))

    def health(self) -> UpstreamHealth:
        since = self._clock() - self.window
        while self._calls and self._calls[0][0] < since:
            self._calls.popleft()
        latencies = sorted(seconds for _, _, seconds in self._calls)
        failed = sum(1 for _, healthy, _ in self._calls if not healthy)
        return UpstreamHealth(len(latencies), failed, _percentile(latencies, 95))
