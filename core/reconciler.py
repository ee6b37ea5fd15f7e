"""Finds tasks whose next step was never published (or got lost) and publishes it again.

Deduplication ids make a re-publish of a step that is still on its way harmless, so this turns
"the queue lost a message" or "a publish failed after the row was written" into a delay.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from core.errors import VideoqError
from core.models import Task, TaskStatus, WorkMessage, utcnow
from core.queue import Queue
from core.store import Expect, TaskStore

log = logging.getLogger(__name__)

BATCH = 500


@dataclass
class Reconciler:
    """One pass finds stale queued and running tasks and re-publishes their step."""

    store: TaskStore
    queue: Queue
    # Real seconds a queued task may wait with no message, and a running task may be overdue
    # for its poll, before its step is published again.
    grace: float = 30.0
    republished: int = 0

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """Run passes every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            try:
                await self.run_once()
            except VideoqError as exc:
                log.warning("reconciler pass failed: %s", exc.message)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass

    async def run_once(self) -> int:
        """One pass; returns how many steps were re-published."""
        now = utcnow()
        cutoff = now - timedelta(seconds=self.grace)
        count = 0
        for task in await self.store.list(
            statuses=[TaskStatus.QUEUED], updated_before=cutoff, limit=BATCH
        ):
            if task.step_lease_until is None or task.step_lease_until < now:
                count += await self._republish(task, "submit", 1)
        for task in await self.store.list(
            statuses=[TaskStatus.RUNNING], updated_before=cutoff, limit=BATCH
        ):
            if task.next_poll_at is None or task.next_poll_at < cutoff:
                count += await self._republish(task, "poll", task.polls + 1)
        self.republished += count
        return count

    async def _republish(self, task: Task, step: str, seq: int) -> int:
        message = WorkMessage(task_id=task.id, attempt=task.attempt, step=step, seq=seq)  # type: ignore[arg-type]
        message_id = await self.queue.publish(message)
        if message_id == task.message_id:
            return 0
        log.info("task %s: %s step %d re-published by the reconciler", task.id, step, seq)
        changes = {"message_id": message_id}
        if step == "poll":
            changes["next_poll_at"] = utcnow()  # type: ignore[assignment]
        await self.store.update(
            task.id, Expect(frozenset({task.status}), task.attempt, task.polls), changes
        )
        return 1
