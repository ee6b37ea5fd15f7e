"""Finds tasks whose next step was never published (or got lost) and publishes it again.

The worker ignores any step that is not the one the row is waiting for, so a re-published step
racing the original is harmless; this turns "the queue lost a message" or "a publish failed after
the row was written" into a delay.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

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
        """Run passes every `interval` seconds until `stop` is set.

        The first pass waits one interval too: at start-up the queue first delivers what was
        waiting for a worker, which a pass at once would publish again as if it had been lost.
        """
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
            if stop.is_set():
                return
            try:
                await self.run_once()
            except VideoqError as exc:
                log.warning("reconciler pass failed: %s", exc.message)

    async def run_once(self, now: datetime | None = None) -> int:
        """One pass as of `now`; returns how many steps were re-published."""
        now = now or utcnow()
        cutoff = now - timedelta(seconds=self.grace)
        count = 0
        queued = await self.store.list(
            statuses=[TaskStatus.QUEUED], updated_before=cutoff, limit=BATCH
        )
        for task in queued:
            claimed = task.step_lease_until is not None and task.step_lease_until >= now
            held_back = task.next_poll_at is not None and task.next_poll_at >= cutoff
            if not claimed and not held_back:
                count += await self._resubmit(task, now)
        running = await self.store.list(
            statuses=[TaskStatus.RUNNING], updated_before=cutoff, limit=BATCH
        )
        for task in running:
            if task.next_poll_at is None or task.next_poll_at < cutoff:
                count += await self._repoll(task, now)
        self.republished += count
        return count

    async def _resubmit(self, task: Task, now: datetime) -> int:
        # The worker takes any submit of the current attempt; a sequence number per grace
        # period gives a fresh deduplication id, yet reconcilers in several workers that
        # notice the same task in the same period still publish it only once.
        seq = 1 + int(now.timestamp() // self.grace)
        message = WorkMessage(task_id=task.id, attempt=task.attempt, step="submit", seq=seq)
        message_id = await self.queue.publish(message)
        if message_id == task.message_id:
            return 0
        log.info("task %s: submit re-published by the reconciler", task.id)
        expect = Expect(frozenset({TaskStatus.QUEUED}), task.attempt)
        await self.store.update(task.id, expect, {"message_id": message_id})
        return 1

    async def _repoll(self, task: Task, now: datetime) -> int:
        # Count the lost poll as made, so the new one has a fresh sequence number (and
        # deduplication id) and the lost one, should it ever turn up, is stale.
        expect = Expect(frozenset({TaskStatus.RUNNING}), task.attempt, task.polls)
        moved = await self.store.update(
            task.id, expect, {"polls": task.polls + 1, "next_poll_at": now}
        )
        if moved is None:
            return 0
        message = WorkMessage(
            task_id=task.id, attempt=task.attempt, step="poll", seq=moved.polls + 1
        )
        message_id = await self.queue.publish(message)
        log.info("task %s: poll %d re-published by the reconciler", task.id, message.seq)
        await self.store.update(
            task.id,
            Expect.of(TaskStatus.RUNNING, attempt=task.attempt, polls=moved.polls),
            {"message_id": message_id},
        )
        return 1
