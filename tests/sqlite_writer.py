"""A second process for the SQLite feed tests: writes one task to a store file, then exits.

Run: `python -m tests.sqlite_writer <db path> <updates>`. It inserts a queued task, applies
`updates` compare-and-set writes to its progress and prints the task's id.
"""

from __future__ import annotations

import asyncio
import sys

from core.models import Task, TaskEvent, TaskStatus, VideoRequest
from core.store import Expect
from core.store.sqlite import SqliteStore


async def write(path: str, updates: int) -> str:
    """Insert one task and update it `updates` times; returns its id."""
    store = SqliteStore(path)
    await store.open()
    try:
        task = Task.new(VideoRequest(prompt="written by another process"))
        event = TaskEvent(
            task_id=task.id, kind="transition", attempt=1, to_status=TaskStatus.QUEUED
        )
        await store.insert(task, event)
        for progress in range(1, updates + 1):
            changes = {"progress": progress}
            updated = await store.update(task.id, Expect.of(TaskStatus.QUEUED), changes)
            assert updated is not None, "nobody else writes this task"
        return task.id
    finally:
        await store.close()


if __name__ == "__main__":
    print(asyncio.run(write(sys.argv[1], int(sys.argv[2]))), flush=True)
