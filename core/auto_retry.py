"""Automatic retries of tasks that failed for a transient reason: off unless configured.

Each automatic retry is an ordinary retry (a new attempt, so a new upstream job), made by the
actor `auto-retry`, so the history and `videoq stats` show it like any other.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from core.config import Settings
from core.errors import VideoqError
from core.models import Task, TaskStatus
from core.service import TaskService

log = logging.getLogger(__name__)

ACTOR = "auto-retry"


@dataclass(frozen=True)
class AutoRetryPolicy:
    """Which failure reasons are retried, how often per task, and how long it waits first."""

    reasons: re.Pattern[str]
    max_retries: int
    backoff: float

    @classmethod
    def from_settings(cls, settings: Settings) -> AutoRetryPolicy | None:
        """The configured policy, or None when automatic retries are off."""
        if settings.auto_retry_max == 0:
            return None
        return cls(
            re.compile(settings.auto_retry_reasons, re.IGNORECASE),
            settings.auto_retry_max,
            settings.auto_retry_backoff,
        )

    def applies(self, task: Task) -> bool:
        """A failed task whose reason is transient, and that needs no key it no longer has."""
        return (
            task.status is TaskStatus.FAILED
            and not task.own_key
            and self.reasons.search(task.error_message or "") is not None
        )

    def delay(self, done: int) -> float | None:
        """The wait before automatic retry number `done + 1`, or None once none is left."""
        return None if done >= self.max_retries else self.backoff * 2**done


class AutoRetrier:
    """Queues a failed task again when the policy says its failure was transient."""

    def __init__(self, policy: AutoRetryPolicy, service: TaskService, speedup: float) -> None:
        self.policy = policy
        self.service = service
        self.speedup = speedup

    async def consider(self, task: Task) -> None:
        """After `task` failed: retry it later if its reason is transient and retries remain."""
        if not self.policy.applies(task):
            return
        try:
            history = await self.service.store.events(task.id)
            done = sum(1 for event in history if event.actor == ACTOR and event.kind == "action")
            delay = self.policy.delay(done)
            if delay is None:
                log.info("task %s: not retried again, %d automatic retries done", task.id, done)
                return
            retried = await self.service.retry(task.id, actor=ACTOR, delay=delay / self.speedup)
        except VideoqError as exc:
            # Someone retried or cancelled it meanwhile, or the store is away: nothing is lost,
            # the task stays failed and an operator can still retry it.
            log.info("task %s: no automatic retry: %s", task.id, exc.message)
            return
        log.info(
            "task %s: retried automatically in %.0f s (attempt %d): %s",
            task.id,
            delay,
            retried.attempt,
            task.error_message,
        )
