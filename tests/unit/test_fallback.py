"""Which step the in-process runner takes for a task while QStash cannot take messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from msgspec.structs import replace

from core.fallback import due_step
from core.models import Task, TaskStatus, VideoRequest

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SOON = NOW + timedelta(seconds=30)
PAST = NOW - timedelta(seconds=1)


def task(**fields: object) -> Task:
    return replace(Task.new(VideoRequest(prompt="a fox")), **fields)


def test_a_queued_task_is_submitted_and_a_running_one_polled_when_due() -> None:
    submit = due_step(task(attempt=2), NOW)
    assert submit is not None and (submit.step, submit.attempt, submit.seq) == ("submit", 2, 1)
    poll = due_step(task(status=TaskStatus.RUNNING, polls=3, next_poll_at=PAST), NOW)
    assert poll is not None and (poll.step, poll.seq) == ("poll", 4)


def test_nothing_is_due_while_a_step_is_claimed_or_held_back() -> None:
    assert due_step(task(step_lease_until=SOON), NOW) is None  # a submit in flight
    running = task(status=TaskStatus.RUNNING, next_poll_at=PAST, step_lease_until=SOON)
    assert due_step(running, NOW) is None  # a poll in flight
    assert due_step(task(status=TaskStatus.RUNNING, next_poll_at=SOON), NOW) is None
    assert due_step(task(next_poll_at=SOON), NOW) is None  # an automatic retry's backoff
    assert due_step(task(status=TaskStatus.SUCCEEDED), NOW) is None
