"""Finds tasks whose next step was never published (or got lost) and publishes it again.

The worker ignores any step that is not the one the row is waiting for, so a re-published step
racing the original is harmless; this turns "the queue lost a message" or "a publish failed after
the row was written" into a delay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from core.errors import VideoqError
from core.models import Task, TaskStatus, WorkMessage, utcnow
from core.queue import Queue
from core.store import Expect, TaskStore

log = logging.getLogger(__name__)

BATCH = 500


@dataclass
class PassReport:
    """What one pass did: tasks looked at, steps re-published, and whether it got through."""

    queued_seen: int = 0
    running_seen: int = 0
    resubmitted: int = 0
    repolled: int = 0
    complete: bool = True

    @property
    def republished(self) -> int:
        return self.resubmitted + self.repolled

    def as_dict(self) -> dict[str, int | bool]:
        """The counts as JSON-ready values, `republished` included."""
        return {**asdict(self), "republished": self.republished}


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
        return (await self.run_pass(now)).republished

    async def run_pass(
        self, now: datetime | None = None, budget: float | None = None
    ) -> PassReport:
        """One pass as of `now`, stopping early (`complete` false) once `budget` seconds passed.

        The budget keeps a pass inside one request's time limit on a serverless host; what it
        left is still stale at the next pass, so nothing is skipped for good.
        """
        ends = None if budget is None else time.monotonic() + budget
        report = PassReport()
        try:
            await self._pass(now or utcnow(), ends, report)
        finally:
            self.republished += report.republished
        return report

    async def _pass(self, now: datetime, ends: float | None, report: PassReport) -> None:
        cutoff = now - timedelta(seconds=self.grace)
        queued = await self.store.list(
            statuses=[TaskStatus.QUEUED], updated_before=cutoff, limit=BATCH
        )
        report.queued_seen = len(queued)
        for task in queued:
            if _out_of_time(ends, report):
                return
            # An automatic retry's submit is held back until its next_poll_at.
            held_back = task.next_poll_at is not None and task.next_poll_at >= cutoff
            if not task.step_claimed(now) and not held_back:
                report.resubmitted += await self._resubmit(task, now)
        running = await self.store.list(
            statuses=[TaskStatus.RUNNING], updated_before=cutoff, limit=BATCH
        )
        report.running_seen = len(running)
        for task in running:
            if _out_of_time(ends, report):
                return
            # A live claim is a poll in flight; one whose holder died expires and is taken here.
            overdue = task.next_poll_at is None or task.next_poll_at < cutoff
            if overdue and not task.step_claimed(now):
                report.repolled += await self._repoll(task, now)

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
        changes = {"polls": task.polls + 1, "next_poll_at": now, "step_lease_until": None}
        moved = await self.store.update(task.id, expect, changes)
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


def _out_of_time(ends: float | None, report: PassReport) -> bool:
    """Whether the pass's budget is spent; marks the report incomplete when it is."""
    if ends is not None and time.monotonic() >= ends:
        report.complete = False
    return not report.complete
