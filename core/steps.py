"""StepWrites: how a step writes its task's row together with the task's next queue message.

Where the store and the queue are one SQLite file (`core.sqlite_steps`), both commit in one
transaction, a new task's row and its first message too. Elsewhere (`SeparateWrites`) they are
two writes, in the order that is safe for each step: a poll publishes before it writes (a
message for a task that moved on is harmless, a write without its message would stall the
task); a submit writes first (it must not publish for a task that was cancelled meanwhile) and
leaves a lost publish to the reconciler, as does a new task's first message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from msgspec import Struct

from core.errors import QueueError
from core.models import Task, TaskEvent, WorkMessage
from core.queue import Queue
from core.store import Expect, TaskStore

log = logging.getLogger(__name__)


class NextStep(Struct, frozen=True):
    """A step's compare-and-set of its task's row, and the task's next message."""

    task_id: str
    expect: Expect
    changes: Mapping[str, Any]
    event: TaskEvent
    message: WorkMessage
    delay: float


class StepWrites(Protocol):
    """Writes a step's row and publishes its next message."""

    async def submitted(
        self, task: Task, event: TaskEvent, images: Sequence[str], message: WorkMessage
    ) -> tuple[Task, bool]:
        """Store a new task and, where one transaction can hold both, its first message.

        Returns the stored task, and whether its message was stored with it (if not, the
        caller publishes it).
        """
        ...

    async def poll_next(self, step: NextStep) -> Task | None:
        """Publish the message and apply the changes with its id as `message_id`.

        Returns the new row, or None when the row no longer matched `expect`.
        """
        ...

    async def started(self, step: NextStep) -> Task | None:
        """Apply the changes and, when they applied, publish the message.

        A publish that fails after the write is logged, not raised: the reconciler makes it.
        """
        ...

    async def finished(
        self, task_id: str, expect: Expect, changes: Mapping[str, Any], event: TaskEvent
    ) -> Task | None:
        """Apply a step's last changes, which publish no message (the task ends).

        Returns the new row, or None when the row no longer matched `expect`.
        """
        ...


class SeparateWrites:
    """A store and a queue that share no transaction: two writes, the safe one first."""

    def __init__(self, store: TaskStore, queue: Queue) -> None:
        self.store = store
        self.queue = queue

    async def submitted(
        self, task: Task, event: TaskEvent, images: Sequence[str], message: WorkMessage
    ) -> tuple[Task, bool]:
        return await self.store.insert(task, event, images), False

    async def poll_next(self, step: NextStep) -> Task | None:
        message_id = await self.queue.publish(step.message, step.delay)
        changes = {**step.changes, "message_id": message_id}
        return await self.store.update(step.task_id, step.expect, changes, step.event)

    async def started(self, step: NextStep) -> Task | None:
        task = await self.store.update(step.task_id, step.expect, step.changes, step.event)
        if task is not None:
            try:
                await self.queue.publish(step.message, step.delay)
            except QueueError as exc:
                log.warning("task %s: %s not published, the reconciler will: %s",
                            step.task_id, step.message.step, exc.message)  # fmt: skip
        return task

    async def finished(
        self, task_id: str, expect: Expect, changes: Mapping[str, Any], event: TaskEvent
    ) -> Task | None:
        return await self.store.update(task_id, expect, changes, event)
