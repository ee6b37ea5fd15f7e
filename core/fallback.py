"""The in-process runner: while QStash cannot take steps (down, or the day's budget used up),
a long-running host runs due steps itself, from the store, through the worker's own step path.

Each step is the one the row is waiting for, run by `StepWorker.run_step`: a submit takes the
submit claim and a poll writes with a compare-and-set on `polls`, so when QStash comes back and
delivers the same step too, one of the two wins and the other stops. Once QStash takes messages
again, the held steps are handed back to it (`GuardedQueue.hand_back`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from core.errors import VideoqError
from core.models import Task, TaskStatus, WorkMessage, utcnow
from core.qstash_guard import GuardedQueue
from core.store import TaskStore
from core.worker import StepWorker

log = logging.getLogger(__name__)

BATCH = 500


def due_step(task: Task, now: datetime) -> WorkMessage | None:
    """The step `task` waits for if it is due at `now`, else None."""
    if task.step_claimed(now):
        return None  # a submit or a poll is in flight
    if task.next_poll_at is not None and task.next_poll_at > now:
        return None  # not due yet: a poll, or an automatic retry's held-back submit
    if task.status is TaskStatus.QUEUED:
        # The worker takes any submit of the current attempt.
        return WorkMessage(task_id=task.id, attempt=task.attempt, step="submit", seq=1)
    if task.status is TaskStatus.RUNNING:
        return WorkMessage(task_id=task.id, attempt=task.attempt, step="poll", seq=task.polls + 1)
    return None


@dataclass
class InProcessRunner:
    """Runs due steps in this process while the guard says so; hands held steps back after."""

    store: TaskStore
    worker: StepWorker
    guard: GuardedQueue
    concurrency: int = 8
    tick: float = 1.0
    steps_run: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Every `tick` seconds until `stop`: run due steps, or hand held ones back."""
        self.guard.runs_steps_here = True
        try:
            while not stop.is_set():
                try:
                    await self.run_once()
                except VideoqError as exc:
                    log.warning("in-process steps failed this round: %s", exc.message)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.tick)
                except TimeoutError:
                    pass
        finally:
            self.guard.runs_steps_here = False

    async def run_once(self) -> int:
        """One round; returns how many steps ran here (0 when QStash takes them)."""
        guard = self.guard
        guard.watch()
        if guard.held and (not guard.steps_run_here or guard.probe_due()):
            await self._forget_ended()
            await guard.hand_back()
        if guard.degraded and not guard.held and guard.probe_due() and not guard.meter.exhausted:
            await guard.probe()
        if not guard.steps_run_here:
            return 0
        now = utcnow()
        tasks = [
            *await self.store.list(statuses=[TaskStatus.QUEUED], limit=BATCH),
            *await self.store.list(statuses=[TaskStatus.RUNNING], limit=BATCH),
        ]
        steps = [step for task in tasks if (step := due_step(task, now)) is not None]
        gate = asyncio.Semaphore(self.concurrency)

        async def run(step: WorkMessage) -> None:
            async with gate:
                result = await self.worker.run_step(step)
            if result.ok:
                self.steps_run += 1
            log.debug("task %s: %s step ran in-process: %d", step.task_id, step.step, result.status)

        await asyncio.gather(*(run(step) for step in steps))
        return len(steps)

    async def _forget_ended(self) -> None:
        """Drop held steps of tasks that ended or moved on: handing them back would only cost
        QStash messages the worker acknowledges as stale."""
        for task_id, held in list(self.guard.held.items()):
            task = await self.store.get(task_id)
            if task is None or task.status.terminal or task.attempt != held.message.attempt:
                self.guard.held.pop(task_id, None)
