"""The rows of a task's history (`task_events`): transitions, polls and operator actions."""

from __future__ import annotations

from core.models import Task, TaskEvent, TaskStatus
from core.upstream import UpstreamStatus


def transition(
    task: Task,
    to: TaskStatus,
    *,
    actor: str = "worker",
    action: bool = False,
    attempt: int | None = None,
    detail: str | None = None,
) -> TaskEvent:
    """`task` leaving its status for `to`; `action` marks an operator's doing (cancel, retry)."""
    return TaskEvent(
        task_id=task.id,
        kind="action" if action else "transition",
        attempt=attempt or task.attempt,
        from_status=task.status,
        to_status=to,
        actor=actor,
        detail=detail,
    )


def poll(
    task: Task,
    answer: UpstreamStatus | None,
    latency_ms: float,
    *,
    http_status: int | None = None,
    detail: str | None = None,
) -> TaskEvent:
    """One status poll: what the upstream said (or the error), and how long it took."""
    return TaskEvent(
        task_id=task.id,
        kind="poll",
        attempt=task.attempt,
        actor="worker",
        upstream_status=answer.raw_status if answer else None,
        progress=answer.progress if answer else None,
        http_status=answer.http_status if answer else http_status,
        latency_ms=round(latency_ms, 1),
        detail=detail,
    )
