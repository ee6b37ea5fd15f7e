"""The live feed drops while tasks keep changing; the snapshot after the reconnect recovers them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import Any

from core.models import TaskChange, TaskStatus
from core.runtime import Runtime
from core.store import TaskStore
from tests.dashboard_helpers import RecordingApp, make_settings, seed, wait_for


class CuttableFeed:
    """A store whose change feed can be cut (events are lost) and reconnected (a new SYNC).

    Everything else goes to the real store, so the app reads and writes real rows.
    """

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.connected = True
        self.lost = 0
        self._queue: asyncio.Queue[TaskChange] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def changes(self) -> AsyncIterator[TaskChange]:
        queue: asyncio.Queue[TaskChange] = asyncio.Queue()
        self._queue = queue

        async def pump() -> None:
            async for change in self.store.changes():
                if self.connected:
                    queue.put_nowait(change)
                else:
                    self.lost += 1

        pumping = asyncio.create_task(pump())
        try:
            while True:
                yield await queue.get()
        finally:
            pumping.cancel()
            with suppress(asyncio.CancelledError):
                await pumping

    def cut(self) -> None:
        self.connected = False

    def reconnect(self) -> None:
        """Resubscribe the way Realtime does: a SYNC, and nothing of what was missed."""
        self.connected = True
        assert self._queue is not None
        self._queue.put_nowait(TaskChange("SYNC"))


async def test_events_lost_while_disconnected_are_recovered_by_the_snapshot(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path / "feed.db")
    first, second = await seed(settings, 2)
    runtime = Runtime.from_settings(settings)
    feed = CuttableFeed(runtime.store)
    runtime.store = feed  # type: ignore[assignment]  # the app reads the feed; writes stay real
    app = RecordingApp(runtime)
    async with app.run_test(size=(160, 45)) as pilot, Runtime.from_settings(settings) as other:
        await wait_for(pilot, lambda: app.table.row_count == 2, "the seeded rows")
        feed.cut()
        await other.service.cancel(first.id, actor="cli")
        new = await other.service.submit(second.request(), actor="cli")
        await wait_for(pilot, lambda: feed.lost >= 2, "the feed to drop the changes")
        await pilot.pause()
        assert app.book.tasks[first.id].status is TaskStatus.QUEUED  # stale while cut
        assert new.id not in app.table.shown_ids

        feed.reconnect()
        await wait_for(
            pilot,
            lambda: (
                app.book.tasks[first.id].status is TaskStatus.CANCELLED
                and new.id in app.table.shown_ids
            ),
            "the snapshot to bring the missed changes",
        )
        assert app.stats.syncs == 2
        assert app.table.shown_ids[0] == new.id
        assert "cancelled" in app.table.row_text(app.table.index_of(first.id) or 0)
