"""SqliteStore's live feed across processes and instances: the change log tailed, not polled rows.

Every wait has a timeout; nothing here measures speed (see the latency script in the report).
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path

import pytest

from core.models import TaskChange, TaskStatus
from core.store import Expect, sqlite_db
from core.store.sqlite import SqliteStore
from tests.conformance.store_contract import new_task, next_change, of_task
from tests.waiting import TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
QUEUED = TaskStatus.QUEUED


async def opened(path: Path, **options: object) -> SqliteStore:
    store = SqliteStore(path, **options)  # type: ignore[arg-type]
    await store.open()
    return store


async def subscribed(store: SqliteStore) -> AsyncGenerator[TaskChange, None]:
    """The store's feed, past its first SYNC."""
    feed = store.changes()
    first = await asyncio.wait_for(anext(feed), TIMEOUT)
    assert first.op == "SYNC"
    return feed


async def run_writer(path: Path, updates: int) -> str:
    """Write one task from a second OS process; returns its id."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.sqlite_writer",
        str(path),
        str(updates),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode().strip()


async def test_changes_written_by_another_process_arrive(tmp_path: Path) -> None:
    path = tmp_path / "videoq.db"
    store = await opened(path)
    try:
        async with aclosing(await subscribed(store)) as feed:
            task_id = await run_writer(path, updates=3)
            # The log is read in batches: writes that land together arrive as one row.
            seen = [await next_change(feed, of_task(task_id, 1))]
            while seen[-1].task is not None and seen[-1].task.version < 4:
                seen.append(await next_change(feed, of_task(task_id, seen[-1].task.version + 1)))

        first, final = seen[0], seen[-1]
        assert first.op == "INSERT" and first.task is not None
        assert first.task.prompt == "written by another process"
        assert final.task is not None and final.task.progress == 3
        assert [e.kind for e in await store.events(task_id)] == ["transition"]
        assert store.feed.last_event_at is not None
    finally:
        await store.close()


async def test_two_instances_on_one_file_see_each_other(tmp_path: Path) -> None:
    path = tmp_path / "videoq.db"
    left, right = await opened(path), await opened(path)
    try:
        async with (
            aclosing(await subscribed(left)) as left_feed,
            aclosing(await subscribed(right)) as right_feed,
        ):
            from_right = await right.insert(new_task("from the right"))
            moved = await right.update(from_right.id, Expect.of(QUEUED), {"progress": 50})
            assert moved is not None
            seen_left = await next_change(left_feed, of_task(from_right.id, 2))

            from_left = await left.insert(new_task("from the left"))
            seen_right = await next_change(right_feed, of_task(from_left.id, 1))

        assert seen_left.task == moved
        assert seen_right.op == "INSERT" and seen_right.task == from_left
    finally:
        await left.close()
        await right.close()


async def test_own_writes_arrive_once_not_again_from_the_log(tmp_path: Path) -> None:
    path = tmp_path / "videoq.db"
    mine, other = await opened(path), await opened(path)
    try:
        async with aclosing(await subscribed(mine)) as feed:
            task = await mine.insert(new_task())
            await mine.update(task.id, Expect.of(QUEUED), {"progress": 1})
            # The other instance's write is logged after ours: once it arrives through the
            # tailed log, our own rows (earlier in the log) have been passed over.
            marker = await other.insert(new_task("marker"))
            seen: list[TaskChange] = []
            async for change in feed:
                seen.append(change)
                if change.task is not None and change.task.id == marker.id:
                    break

        versions = [c.task.version for c in seen if c.task is not None and c.task.id == task.id]
        assert versions == [1, 2]
    finally:
        await mine.close()
        await other.close()


async def test_a_slow_subscriber_is_told_to_resync_and_writers_never_wait(
    tmp_path: Path,
) -> None:
    store = await opened(tmp_path / "videoq.db", buffer_limit=3)
    try:
        async with aclosing(await subscribed(store)) as feed:
            task = await store.insert(new_task())
            for progress in range(1, 11):  # the subscriber reads nothing meanwhile
                assert await store.update(task.id, Expect.of(QUEUED), {"progress": progress})

            backlog = [await asyncio.wait_for(anext(feed), TIMEOUT) for _ in range(3)]

        assert backlog[0].op == "SYNC"
        assert backlog[-1].task is not None and backlog[-1].task.version == 11
    finally:
        await store.close()


async def test_a_feed_that_missed_pruned_changes_resyncs(tmp_path: Path) -> None:
    path = tmp_path / "videoq.db"
    store = await opened(path)
    try:
        async with aclosing(await subscribed(store)) as feed:
            task = await store.insert(new_task())
            await next_change(feed, of_task(task.id, 1))
            with sqlite3.connect(path) as db:  # one transaction: written, then pruned unread
                for _ in range(2):
                    db.execute(
                        "INSERT INTO change_log (task_id, op, origin, at)"
                        " VALUES (?, 'UPDATE', 'elsewhere', ?)",
                        (task.id, time.time()),
                    )
                db.execute("DELETE FROM change_log WHERE seq < (SELECT max(seq) FROM change_log)")
            db.close()

            resync = await next_change(feed, lambda change: change.op == "SYNC")
            again = await next_change(feed, of_task(task.id, 1))

        assert resync.task is None and again.task == task
    finally:
        await store.close()


async def test_closing_the_store_ends_its_feeds(tmp_path: Path) -> None:
    store = await opened(tmp_path / "videoq.db")
    feed = await subscribed(store)
    waiting = asyncio.ensure_future(anext(feed))

    await store.close()

    done, _ = await asyncio.wait({waiting}, timeout=TIMEOUT)
    assert waiting in done and isinstance(waiting.exception(), StopAsyncIteration)


async def test_an_abandoned_iterator_unsubscribes(tmp_path: Path) -> None:
    store = await opened(tmp_path / "videoq.db")
    try:
        async with aclosing(await subscribed(store)):
            pass
        task = await store.insert(new_task())  # nobody listens: nothing is buffered
        async with aclosing(await subscribed(store)) as feed:
            moved = await store.update(task.id, Expect.of(QUEUED), {"progress": 9})
            change = await next_change(feed, lambda change: change.op != "SYNC")
        assert change.task == moved
    finally:
        await store.close()


async def test_old_change_log_rows_are_pruned_but_never_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prune deletes only rows older than a recent one, so the newest row always stays and
    the next seq is a new one (new files' change_log has no AUTOINCREMENT, and a tailer at the
    old end must see the next change)."""
    monkeypatch.setattr(sqlite_db, "PRUNE_EVERY", 0.0)  # prune after every write
    path = tmp_path / "videoq.db"
    store = await opened(path)
    try:
        old = time.time() - 2 * sqlite_db.CHANGE_LOG_RETENTION
        with sqlite3.connect(path) as db:
            db.executemany(
                "INSERT INTO change_log (task_id, op, origin, at) VALUES ('t', 'UPDATE', 'x', ?)",
                [(old,)] * 3,
            )
        db.close()
        store.writer.connection.execute("BEGIN")
        store._open_db.prune()
        store.writer.connection.execute("COMMIT")
        with sqlite3.connect(path) as db:  # no recent row: nothing goes
            assert db.execute("SELECT seq FROM change_log").fetchall() == [(1,), (2,), (3,)]
            [(sql,)] = db.execute("SELECT sql FROM sqlite_master WHERE name = 'change_log'")
        db.close()
        assert "AUTOINCREMENT" not in sql

        task = await store.insert(new_task())

        with sqlite3.connect(path) as db:
            left = db.execute("SELECT seq, task_id, op FROM change_log").fetchall()
        db.close()
        assert left == [(4, task.id, "INSERT")]
    finally:
        await store.close()
