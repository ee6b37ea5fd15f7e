"""Per-user limits of the task API, counted from the store so several hosts share them."""

from __future__ import annotations

from datetime import timedelta

from core.config import Settings
from core.http.envelope import QuotaExceeded, RateLimited
from core.models import TaskStatus, VideoRequest, utcnow
from core.store import TaskStore

WINDOW = timedelta(minutes=1)
# How long a client over the active-task quota should wait before it asks again.
ACTIVE_RETRY_AFTER = 30


async def check_submit(
    store: TaskStore, settings: Settings, user_id: str, video: VideoRequest
) -> None:
    """Refuse a submit that would pass one of `user_id`'s limits (RateLimited, QuotaExceeded)."""
    image_chars = sum(len(image) for image in video.images)
    if image_chars > settings.api_image_bytes:
        raise QuotaExceeded(
            f"images: {image_chars} bytes is over the limit of {settings.api_image_bytes} "
            "bytes per task (VIDEOQ_API_IMAGE_BYTES)",
            retry_after=0,
        )
    await _per_minute(store, settings.api_submits_per_minute, user_id)
    counts = await store.count_by_status(user_id)
    active = counts.get(TaskStatus.QUEUED, 0) + counts.get(TaskStatus.RUNNING, 0)
    if active >= settings.api_active_tasks:
        raise QuotaExceeded(
            f"you have {active} queued or running tasks, the limit "
            f"(VIDEOQ_API_ACTIVE_TASKS = {settings.api_active_tasks}); wait for some to end",
            retry_after=ACTIVE_RETRY_AFTER,
        )


async def _per_minute(store: TaskStore, limit: int, user_id: str) -> None:
    # The limit is reached only if the user's limit-th newest task is less than a minute old.
    oldest = await store.created_at_of_newest(user_id, limit)
    if oldest is None:
        return
    since = utcnow() - oldest
    if since < WINDOW:
        wait = max(1, int((WINDOW - since).total_seconds()) + 1)
        raise RateLimited(
            f"you submitted {limit} tasks in the last minute, the limit "
            f"(VIDEOQ_API_SUBMITS_PER_MINUTE = {limit}); retry in {wait} s",
            retry_after=wait,
        )
