"""The QStash guard's rules: the budget's pacing and holding, and the outage fallback's states."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import cast

import pytest

from core.errors import QueueError
from core.models import WorkMessage
from core.qstash_guard import (
    POLL_STRETCH,
    PROBE_EVERY,
    PROBE_TASK_ID,
    GuardedQueue,
    UsageMeter,
    is_held,
)
from core.store import TaskStore, Usage
from tests.engine import HandQueue

NOON = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@dataclass
class UsageTable:
    """The store's usage table, in memory."""

    days: dict[date, Usage] = field(default_factory=dict)

    async def add_usage(self, day: date, published: int = 0, delivered: int = 0) -> Usage:
        old = self.days.get(day, Usage(day))
        self.days[day] = Usage(day, old.published + published, old.delivered + delivered)
        return self.days[day]


@dataclass
class FlakyQueue(HandQueue):
    """A hand queue whose publishes fail while `down` is set."""

    down: bool = False
    cancelled: list[str] = field(default_factory=list)

    async def publish(self, message: WorkMessage, delay: float = 0.0) -> str:
        if self.down:
            raise QueueError("QStash answered HTTP 500")
        return await super().publish(message, delay)

    async def cancel(self, message_id: str) -> None:
        self.cancelled.append(message_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def meter(budget: int | None, table: UsageTable | None = None) -> UsageMeter:
    return UsageMeter(cast(TaskStore, table or UsageTable()), budget, clock=lambda: NOON)


def guarded(budget: int | None = None) -> tuple[GuardedQueue, FlakyQueue, Clock]:
    inner, clock = FlakyQueue(), Clock()
    guard = GuardedQueue(inner, meter(budget), fallback_after=60.0, clock=clock)
    return guard, inner, clock


async def down_past_the_threshold(guard: GuardedQueue, inner: FlakyQueue, clock: Clock) -> None:
    """QStash refuses a publish, then the fallback threshold passes."""
    inner.down = True
    with pytest.raises(QueueError):
        await guard.publish(poll(1))
    clock.now += 61


def poll(seq: int, task_id: str = "t1") -> WorkMessage:
    return WorkMessage(task_id=task_id, attempt=1, step="poll", seq=seq)


@pytest.mark.parametrize(
    ("used", "factor"), [(0, 1.0), (79, 1.0), (80, POLL_STRETCH), (100, POLL_STRETCH)]
)
def test_polls_stretch_from_eighty_percent_of_the_budget(used: int, factor: float) -> None:
    usage = meter(100)
    usage.count(published=used)
    assert usage.pace(10.0) == 10.0 * factor


def test_no_budget_never_stretches_or_holds() -> None:
    usage = meter(None)
    usage.count(published=10_000)
    assert usage.pace(10.0) == 10.0 and not usage.exhausted


def test_the_near_budget_warning_is_logged_once_a_day(caplog: pytest.LogCaptureFixture) -> None:
    usage = meter(10)
    usage.count(published=9)
    with caplog.at_level(logging.WARNING, "core.qstash_guard"):
        usage.pace(1.0)
        usage.pace(1.0)
    assert [r.message.count("of the daily budget 10") for r in caplog.records] == [1]


async def test_counts_reach_the_store_and_every_host_adds_to_one_day() -> None:
    table = UsageTable()
    first, second = meter(None, table), meter(None, table)
    first.count(published=2, delivered=1)
    second.count(delivered=4)
    await first.close()
    await second.close()
    assert table.days[NOON.date()] == Usage(NOON.date(), 2, 5)
    assert (await first.refresh()).total == 7


async def test_at_the_budget_steps_are_held_never_published_nor_dropped() -> None:
    guard, inner, _ = guarded(budget=2)
    await guard.publish(poll(1))
    await guard.publish(poll(2))
    held_id = await guard.publish(poll(3))
    assert is_held(held_id) and len(inner.published) == 2
    assert guard.held["t1"].message == poll(3)
    await guard.cancel(held_id)
    assert inner.cancelled == []  # no queue has a held step


async def test_a_short_outage_raises_as_before_and_holds_nothing() -> None:
    guard, inner, clock = guarded()
    guard.runs_steps_here = True
    inner.down = True
    with pytest.raises(QueueError):
        await guard.publish(poll(1))
    clock.now += 59
    with pytest.raises(QueueError):
        await guard.publish(poll(2))
    assert not guard.degraded and guard.held == {}


async def test_past_fallback_after_a_host_that_runs_steps_holds_them() -> None:
    guard, inner, clock = guarded()
    await down_past_the_threshold(guard, inner, clock)
    assert guard.degraded and not guard.steps_run_here
    with pytest.raises(QueueError):  # nobody here would run a held step
        await guard.publish(poll(2))
    guard.runs_steps_here = True
    assert guard.steps_run_here
    assert is_held(await guard.publish(poll(3)))
    text = guard.degraded_text()
    assert text is not None and text.startswith("degraded: QStash unreachable since ")


async def test_while_down_only_one_real_publish_per_probe_interval() -> None:
    guard, inner, clock = guarded()
    guard.runs_steps_here = True
    await down_past_the_threshold(guard, inner, clock)
    await guard.publish(poll(2, "a"))  # the probe: fails, held
    inner.down = False
    await guard.publish(poll(2, "b"))  # within the probe interval: held without trying
    assert inner.published == [] and guard.degraded
    clock.now += PROBE_EVERY
    assert not is_held(await guard.publish(poll(2, "c")))
    assert not guard.degraded and guard.degraded_text() is None


async def test_held_steps_are_handed_back_with_the_delay_they_have_left() -> None:
    guard, inner, clock = guarded()
    guard.runs_steps_here = True
    await down_past_the_threshold(guard, inner, clock)
    assert is_held(await guard.publish(poll(4), delay=30.0))
    clock.now += 10
    inner.down = False
    assert await guard.hand_back() == 1
    [sent] = inner.published
    assert (sent.message, sent.delay) == (poll(4), 20.0)
    assert guard.held == {} and not guard.degraded


async def test_with_nothing_held_a_probe_message_finds_qstash_back() -> None:
    guard, inner, clock = guarded()
    await down_past_the_threshold(guard, inner, clock)
    assert not await guard.probe() and guard.degraded
    inner.down = False
    assert await guard.probe() and not guard.degraded
    [sent] = inner.published
    assert sent.message.task_id == PROBE_TASK_ID  # no task has it: acknowledged as stale
