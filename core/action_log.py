"""The headless worker's log of what other processes did: cancels and retries from the feed."""

from __future__ import annotations

import logging

from core.models import TaskStatus
from core.store import TaskStore

log = logging.getLogger(__name__)


async def log_operator_actions(store: TaskStore) -> None:
    """Log the cancels and retries the change feed reports (the worker never makes those)."""
    seen: dict[str, tuple[TaskStatus | None, int]] = {}
    async for change in store.changes():
        task = change.task
        if task is None:
            continue
        known = seen.get(task.id)
        status, attempt = known or (None, 1)
        seen[task.id] = (task.status, task.attempt)
        if task.status is TaskStatus.CANCELLED and status is not TaskStatus.CANCELLED:
            log.info("task %s: %s -> cancelled (by another process)", task.id, status or "active")
        elif task.attempt > attempt and (known is not None or task.status is TaskStatus.QUEUED):
            # The feed may skip the queued row: this worker can take the retried task up (its
            # own write, told at once) before the tail reads the other process's change.
            log.info("task %s: queued again by another process (attempt %d)", task.id, task.attempt)
