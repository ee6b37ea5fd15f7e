"""The use cases: submit, cancel, retry, list, get, prune. The CLI, the dashboard and the HTTP
API all come through here, so these rules live in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from msgspec import Struct

from core import history
from core.errors import InvalidRequest, InvalidState, QueueError, TaskNotFound
from core.models import (
    LOCAL_USER,
    Task,
    TaskEvent,
    TaskStatus,
    VideoRequest,
    WorkMessage,
    cancel_refusal,
    end_changes,
    retry_refusal,
    utcnow,
)
from core.queue import Queue
from core.steps import SeparateWrites, StepWrites
from core.store import Expect, TaskPage, TaskStore, prunable

if TYPE_CHECKING:
    from core.crypto import KeyBox  # cryptography loads only when a key box is built

log = logging.getLogger(__name__)

MAX_LIST_LIMIT = 1000
# How many candidates an ambiguous id prefix lists.
AMBIGUOUS_LISTED = 5
PUBLISH_WAIT = 3.0
"""Seconds a submit or retry waits for the queue to take its first step. Past that, the task
is answered as stored and queued, and the reconciler publishes the step after its grace period,
so a hanging queue service slows no caller down for its whole client timeout."""
_ID_CHARACTERS = frozenset("0123456789abcdef-")
# History note, for people, on the event that queued an attempt with the user's own upstream
# key (BYOK); the rule reads the task's own_key column.
OWN_KEY_NOTE = "with the user's own upstream key"
BYOK_HEADER = "X-Upstream-Api-Key"
"""The task API's header for a user's own upstream key; a refused retry names it."""

# What a retry clears: the previous attempt's upstream job and result.
_RETRY_RESET: dict[str, Any] = {
    "progress": 0,
    "upstream_task_id": None,
    "video_url": None,
    "error_message": None,
    "message_id": None,
    "polls": 0,
    "polls_without_progress": 0,
    "upstream_status": None,
    "last_polled_at": None,
    "next_poll_at": None,
    "step_lease_until": None,
    "started_at": None,
    "completed_at": None,
}


class TaskDetail(Struct, frozen=True):
    task: Task
    history: list[TaskEvent]


class TaskService:
    """Submit, cancel, retry and read tasks, on behalf of an actor (who did it, from where)."""

    def __init__(
        self,
        store: TaskStore,
        queue: Queue,
        key_box: KeyBox | None = None,
        *,
        publish_wait: float = PUBLISH_WAIT,
        steps: StepWrites | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.key_box = key_box
        self.publish_wait = publish_wait
        # A new task's row and its first message: one transaction where store and queue allow.
        self.steps = steps or SeparateWrites(store, queue)

    async def submit(
        self,
        request: VideoRequest,
        *,
        user_id: str = LOCAL_USER,
        actor: str = "cli",
        upstream_api_key: str | None = None,
    ) -> Task:
        """Store a validated request as a queued task and publish its first step."""
        task = Task.new(request, user_id=user_id)
        task.upstream_key_ciphertext = self._seal(upstream_api_key)
        task.own_key = bool(upstream_api_key)
        # The queue's id for the step is known only after the publish, which comes after the
        # insert (a failed publish is the reconciler's to mend): the dedup id, known now, makes
        # the insert the submit's one write, so a dashboard sees one change per submit.
        first = first_step(task.id, 1)
        task.message_id = first.dedup_id
        event = TaskEvent(
            task_id=task.id,
            kind="transition",
            attempt=1,
            to_status=TaskStatus.QUEUED,
            actor=actor,
            detail=OWN_KEY_NOTE if upstream_api_key else None,
        )
        task, published = await self.steps.submitted(task, event, request.images, first)
        log.info(
            "task %s: submitted by %s (%s, %ss, %s)",
            task.id,
            actor,
            task.model,
            task.duration,
            task.aspect_ratio,
        )
        return task if published else await self._publish_submit(task)

    async def cancel(self, task_id: str, *, actor: str = "cli", user_id: str | None = None) -> Task:
        """Cancel a queued or running task; nothing touches it afterwards."""
        task = await self.get(task_id, user_id=user_id)
        if refused := cancel_refusal(task):
            raise InvalidState(refused)
        changes = end_changes(TaskStatus.CANCELLED, utcnow())
        event = history.transition(task, TaskStatus.CANCELLED, actor=actor, action=True)
        updated = await self.store.update(
            task.id, Expect(frozenset({task.status}), task.attempt), changes, event
        )
        if updated is None:
            return await self._raced(task_id, "cancel", actor, user_id)
        log.info("task %s: %s -> cancelled by %s", task.id, task.status, actor)
        if task.message_id:
            await self._drop_message(task)
        return updated

    async def retry(
        self,
        task_id: str,
        *,
        actor: str = "cli",
        user_id: str | None = None,
        upstream_api_key: str | None = None,
        delay: float = 0.0,
    ) -> Task:
        """Queue a failed or cancelled task again as a new attempt (optionally with a BYOK key).

        `delay` holds its first step back that many seconds (an automatic retry's backoff).
        """
        task = await self.get(task_id, user_id=user_id)
        if refused := retry_refusal(task):
            raise InvalidState(refused)
        if task.own_key and not upstream_api_key:
            raise InvalidRequest(own_key_needed(task), field=BYOK_HEADER)
        changes = dict(
            _RETRY_RESET,
            status=TaskStatus.QUEUED,
            attempt=task.attempt + 1,
            queued_at=utcnow(),
            upstream_key_ciphertext=self._seal(upstream_api_key),
            own_key=bool(upstream_api_key),
            message_id=first_step(task.id, task.attempt + 1).dedup_id,
        )
        if delay > 0:
            # When the held-back step is due: the reconciler leaves it alone until then.
            changes["next_poll_at"] = utcnow() + timedelta(seconds=delay)
        event = history.transition(
            task, TaskStatus.QUEUED, actor=actor, action=True, attempt=task.attempt + 1
        )
        if upstream_api_key:
            event.detail = OWN_KEY_NOTE
        updated = await self.store.update(
            task.id, Expect(frozenset({task.status}), task.attempt), changes, event
        )
        if updated is None:
            return await self._raced(task_id, "retry", actor, user_id, upstream_api_key)
        log.info(
            "task %s: %s -> queued by %s (attempt %d)", task.id, task.status, actor, updated.attempt
        )
        return await self._publish_submit(updated, delay)

    async def get(self, task_id: str, *, user_id: str | None = None) -> Task:
        """The task, or TaskNotFound (also when it belongs to someone else)."""
        task = await self.store.get(task_id)
        if task is None or (user_id is not None and task.user_id != user_id):
            raise TaskNotFound(task_id)
        return task

    async def detail(self, task_id: str, *, user_id: str | None = None) -> TaskDetail:
        task = await self.get(task_id, user_id=user_id)
        return TaskDetail(task, await self.store.events(task.id))

    async def list(
        self,
        *,
        statuses: Collection[TaskStatus] | None = None,
        user_id: str | None = None,
        limit: int = 100,
    ) -> TaskPage:
        """Tasks newest first, and the rows set apart because they do not decode."""
        limit = max(1, min(limit, MAX_LIST_LIMIT))
        return await self.store.list(statuses=statuses, user_id=user_id, limit=limit)

    async def prune(
        self, before: datetime, statuses: Collection[TaskStatus], *, dry_run: bool = False
    ) -> dict[TaskStatus, int]:
        """Delete the finished tasks in `statuses` last changed before `before` (see the port)."""
        try:
            prunable(statuses)
        except ValueError as exc:
            raise InvalidRequest(str(exc), field="status") from None
        deleted = await self.store.prune(before, statuses, dry_run=dry_run)
        if not dry_run:
            log.info("pruned %d finished tasks last changed before %s", sum(deleted.values()),
                     before.isoformat())  # fmt: skip
        return deleted

    async def resolve_id(self, prefix: str) -> str:
        """Expand a short id (as the dashboard and `list` show it) to the full task id."""
        if len(prefix) >= 36:  # a whole id: the caller's lookup says whether it exists
            return prefix
        short = prefix.lower()
        if not short or not set(short) <= _ID_CHARACTERS:
            raise TaskNotFound(prefix)
        matches = await self.store.list(id_prefix=short, limit=AMBIGUOUS_LISTED + 1)
        if len(matches) == 1:
            return matches[0].id
        if matches:
            listed = "".join(f"\n  {t.id}  {t.status}" for t in matches[:AMBIGUOUS_LISTED])
            more = "\n  …" if len(matches) > AMBIGUOUS_LISTED else ""
            raise InvalidState(
                f"id prefix {prefix!r} matches several tasks; give more characters:{listed}{more}"
            )
        raise TaskNotFound(prefix)

    async def _publish_submit(self, task: Task, delay: float = 0.0) -> Task:
        """Publish the first step of the task's attempt; the row already names its message."""
        try:
            async with asyncio.timeout(self.publish_wait):
                await self.queue.publish(first_step(task.id, task.attempt), delay)
        except (QueueError, TimeoutError) as exc:
            # A publish cut short may still have reached the queue: the reconciler's copy is
            # then a duplicate submit, which the worker's submit claim runs once.
            reason = (
                exc.message
                if isinstance(exc, QueueError)
                else f"no answer from the queue within {self.publish_wait:g} s"
            )
            log.warning(
                "task %s: first step not published, the reconciler will retry: %s", task.id, reason
            )
        return task

    def _seal(self, upstream_api_key: str | None) -> str | None:
        if not upstream_api_key:
            return None
        if self.key_box is None:
            raise InvalidState(
                "this server cannot keep your own upstream key: VIDEOQ_SECRET_KEY is not set"
            )
        return self.key_box.seal(upstream_api_key)

    async def _raced(
        self,
        task_id: str,
        action: str,
        actor: str,
        user_id: str | None,
        upstream_api_key: str | None = None,
    ) -> Task:
        # The row moved between our read and our write; decide again on the fresh row.
        log.info("task %s: %s by %s raced another change, trying again", task_id, action, actor)
        if action == "cancel":
            return await self.cancel(task_id, actor=actor, user_id=user_id)
        return await self.retry(
            task_id, actor=actor, user_id=user_id, upstream_api_key=upstream_api_key
        )

    async def _drop_message(self, task: Task) -> None:
        try:
            await self.queue.cancel(task.message_id or "")
        except QueueError as exc:
            log.debug("task %s: pending message not dropped: %s", task.id, exc.message)


def first_step(task_id: str, attempt: int) -> WorkMessage:
    """The submit step that starts an attempt (its dedup id is the row's first message_id)."""
    return WorkMessage(task_id=task_id, attempt=attempt, step="submit", seq=1)


def own_key_needed(task: Task) -> str:
    """Why `task` cannot be retried without its submitter's own upstream key."""
    return (
        f"task {task.id[:8]} ran with its submitter's own upstream key, which was erased when "
        f"it ended; retry it with the key again (the task API's {BYOK_HEADER} header)"
    )
