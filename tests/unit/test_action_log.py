"""The headless worker's log of other processes' cancels and retries, from the change feed."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

import pytest
from msgspec.structs import replace

from core.action_log import log_operator_actions
from core.models import Task, TaskChange, TaskStatus, VideoRequest

TASK = replace(Task.new(VideoRequest(prompt="a fox")), status=TaskStatus.RUNNING)


class Feed:
    """A store's change feed that tells the given changes, then ends."""

    def __init__(self, *tasks: Task) -> None:
        self.tasks = tasks

    async def changes(self) -> AsyncGenerator[TaskChange, None]:
        yield TaskChange("SYNC")
        for task in self.tasks:
            yield TaskChange("UPDATE", task)


async def logged(caplog: pytest.LogCaptureFixture, *tasks: Task) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="core.action_log"):
        await log_operator_actions(Feed(*tasks))  # type: ignore[arg-type]
    return [record.getMessage() for record in caplog.records]


def at(status: TaskStatus, attempt: int = 1) -> Task:
    return replace(TASK, status=status, attempt=attempt)


async def test_a_cancel_and_a_retry_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    lines = await logged(
        caplog, at(TaskStatus.RUNNING), at(TaskStatus.CANCELLED), at(TaskStatus.QUEUED, 2)
    )
    assert lines == [
        f"task {TASK.id}: running -> cancelled (by another process)",
        f"task {TASK.id}: queued again by another process (attempt 2)",
    ]


async def test_a_retry_is_logged_when_the_feed_skips_its_queued_row(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # This worker took the retried task up before the tail read the other process's change.
    lines = await logged(caplog, at(TaskStatus.CANCELLED), at(TaskStatus.RUNNING, 2))
    assert lines[-1] == f"task {TASK.id}: queued again by another process (attempt 2)"


async def test_a_task_first_seen_running_a_later_attempt_is_not_called_a_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert await logged(caplog, at(TaskStatus.RUNNING, 2), at(TaskStatus.SUCCEEDED, 2)) == []
    assert await logged(caplog, at(TaskStatus.QUEUED, 3)) == [
        f"task {TASK.id}: queued again by another process (attempt 3)"
    ]
