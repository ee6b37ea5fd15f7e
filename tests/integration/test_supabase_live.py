"""A live subscriber ends with exactly the database's rows, even with its socket dropped.

The 200-task runs go through the real worker (local queue, simulator) on the Supabase store that
`SUPABASE_URL` and `SUPABASE_SERVICE_ROLE_KEY` select; the subscriber is a second store, as a
dashboard in another process would be.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from realtime.message import PostgresChangesMessage, ServerMessageAdapter

from core.config import Settings
from core.models import Task, TaskEvent, TaskStatus, VideoRequest
from core.runtime import Runtime
from core.store import Expect
from core.store.supabase import SupabaseStore
from core.supervisor import supervise
from tests.fakes.supabase import FakeSupabase

QUEUED, RUNNING = TaskStatus.QUEUED, TaskStatus.RUNNING
SUCCEEDED, FAILED, CANCELLED = TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED
CONCURRENCY = 16
TASKS = 200


class Mirror:
    """What a dashboard keeps: a snapshot after every SYNC, then events kept by highest version."""

    def __init__(self, store: SupabaseStore) -> None:
        self.store = store
        self.rows: dict[str, Task] = {}
        self.syncs = 0
        self.events = 0
        self._changed = asyncio.Event()

    async def follow(self) -> None:
        async with aclosing(self.store.changes()) as feed:
            async for change in feed:
                if change.op == "SYNC":
                    snapshot = await self.store.list(limit=100_000)
                    self.rows = {t.id: _newer(t, self.rows.get(t.id)) for t in snapshot}
                    self.syncs += 1
                elif change.op == "DELETE" and change.task is not None:
                    self.rows.pop(change.task.id, None)
                elif change.task is not None:
                    self.rows[change.task.id] = _newer(change.task, self.rows.get(change.task.id))
                self.events += change.op != "SYNC"
                self._changed.set()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    async def wait_for_events(self, count: int) -> None:
        """Wait until the mirror has applied `count` row events."""
        await self.wait_for(lambda: self.events >= count)

    async def wait_for_syncs(self, count: int) -> None:
        """Wait until the mirror has re-synced `count` times in all."""
        await self.wait_for(lambda: self.syncs >= count)


def _newer(task: Task, known: Task | None) -> Task:
    return known if known is not None and known.version > task.version else task


class Driver:
    """Walks tasks through legal transitions with compare-and-set writes, like the worker."""

    def __init__(self, store: SupabaseStore) -> None:
        self.store = store

    async def write(self, task: Task, expect: Expect, changes: dict, to: TaskStatus | None) -> Task:
        event = None
        if to is not None:
            event = TaskEvent(task_id=task.id, kind="transition", attempt=task.attempt,
                              from_status=task.status, to_status=to)  # fmt: skip
        updated = await self.store.update(task.id, expect, changes, event)
        assert updated is not None, f"task {task.id}: compare-and-set lost with no rival"
        return updated

    async def run_task(self, index: int) -> None:
        task = await self.store.insert(Task.new(VideoRequest(prompt=f"clip {index}")))
        if index % 7 == 3:
            await self.write(task, Expect.of(QUEUED, attempt=1), {"status": CANCELLED}, CANCELLED)
            return
        task = await self._run_attempt(task, fail=index % 5 == 0)
        if index % 10 == 0:  # retry the failed ones once, as `videoq retry` does
            retry = {"status": QUEUED, "attempt": 2, "progress": 0, "polls": 0,
                     "error_message": None, "upstream_task_id": None}  # fmt: skip
            task = await self.write(task, Expect.of(FAILED, attempt=1), retry, QUEUED)
            await self._run_attempt(task, fail=False)

    async def _run_attempt(self, task: Task, fail: bool) -> Task:
        attempt = task.attempt
        started = {"status": RUNNING, "upstream_task_id": f"up-{task.id}-{attempt}",
                   "started_at": datetime.now(UTC)}  # fmt: skip
        task = await self.write(task, Expect.of(QUEUED, attempt=attempt), started, RUNNING)
        for polls, progress in enumerate((30, 60, 90), start=1):
            step = {"progress": progress, "polls": polls, "upstream_status": "IN_PROGRESS"}
            task = await self.write(task, Expect.of(RUNNING, attempt=attempt), step, None)
        end = FAILED if fail else SUCCEEDED
        outcome: dict = {"status": end, "completed_at": datetime.now(UTC)}
        if fail:
            outcome["error_message"] = "upstream said no"
        else:
            outcome |= {"progress": 100, "video_url": "https://example.com/clip.mp4"}
        return await self.write(task, Expect.of(RUNNING, attempt=attempt), outcome, end)

    async def run(self, count: int) -> None:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(index: int) -> None:
            async with gate:
                await self.run_task(index)

        await asyncio.gather(*(one(index) for index in range(count)))


async def drop_during(fake: FakeSupabase, mirror: Mirror, drops: int, every: int) -> None:
    """Drop the subscriber's socket each `every` events, `drops` times; let it re-sync."""
    for n in range(1, drops + 1):
        await mirror.wait_for_events(n * every)
        syncs = mirror.syncs
        assert await fake.drop_sockets() == 1
        await mirror.wait_for_syncs(syncs + 1)


async def converge(store: SupabaseStore, mirror: Mirror) -> dict[str, Task]:
    """The database's final rows, once the subscriber holds exactly them."""
    final = {t.id: t for t in await store.list(limit=10_000)}
    await mirror.wait_for(lambda: mirror.rows == final)
    return final


def assert_frames_pass_the_client_model(fake: FakeSupabase) -> None:
    frames = [f for f in fake.sent_frames() if f["event"] == "postgres_changes"]
    assert frames
    for frame in frames:
        parsed = ServerMessageAdapter.validate_json(json.dumps(frame))
        assert isinstance(parsed, PostgresChangesMessage)


@asynccontextmanager
async def following(store: SupabaseStore) -> AsyncIterator[Mirror]:
    mirror = Mirror(store)
    follower = asyncio.create_task(mirror.follow())
    try:
        async with asyncio.timeout(10):
            await mirror.wait_for(lambda: mirror.syncs == 1)
        yield mirror
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


async def test_subscriber_follows_every_kind_of_transition(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    async with following(supabase_store) as mirror:
        async with asyncio.timeout(60):
            await asyncio.gather(
                Driver(supabase_store).run(30), drop_during(fake_supabase, mirror, 1, every=40)
            )
            final = await converge(supabase_store, mirror)

    statuses = {task.status for task in final.values()}
    assert statuses == {SUCCEEDED, FAILED, CANCELLED}
    assert any(task.attempt == 2 for task in final.values())
    assert mirror.syncs == 2
    assert_frames_pass_the_client_model(fake_supabase)


def worker_settings(fake: FakeSupabase, tmp_path: Path) -> Settings:
    """Settings as a user sets them for Supabase, with the simulator at 1000x speed."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        SUPABASE_URL=fake.url,
        SUPABASE_SERVICE_ROLE_KEY=fake.service_role_key,
        VIDEOQ_DB=str(tmp_path / "queue.db"),
        VIDEOQ_SIM_SPEED=1000,
        VIDEOQ_SIM_FAILURE_RATE=0.2,
        VIDEOQ_CONCURRENCY=16,
        VIDEOQ_TASK_DEADLINE=10_000_000,
        VIDEOQ_RECONCILE_INTERVAL=1,
    )


@pytest.mark.slow
@pytest.mark.parametrize("drops", [0, 3], ids=["no-drop", "3-drops"])
async def test_worker_run_ends_with_the_database_rows_on_the_subscriber(
    fake_supabase: FakeSupabase,
    supabase_store: SupabaseStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    drops: int,
) -> None:
    for name in ("QSTASH_TOKEN", "T8STAR_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    runtime = Runtime.from_settings(worker_settings(fake_supabase, tmp_path))
    assert runtime.describe()["store"] == supabase_store.describe()

    async def work() -> None:
        for index in range(TASKS):
            await runtime.service.submit(VideoRequest(prompt=f"clip {index}"))
        await supervise(runtime, asyncio.Event(), until_idle=True)

    async with runtime, following(supabase_store) as mirror:
        async with asyncio.timeout(150):
            await asyncio.gather(work(), drop_during(fake_supabase, mirror, drops, every=100))
            final = await converge(supabase_store, mirror)

    assert len(final) == TASKS
    assert all(task.status.terminal for task in final.values())
    assert mirror.syncs == drops + 1
    assert_frames_pass_the_client_model(fake_supabase)
