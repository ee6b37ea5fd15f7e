"""Reads of the SQLite store do not wait for writes stuck behind another process's lock."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from core.models import Task, TaskStatus, VideoRequest
from core.store import Expect
from core.store.sqlite import SqliteStore
from core.upstream.simulator import Simulator
from tests.http_support import bearer, hand_runtime, in_process, loopback_socket
from tests.waiting import TIMEOUT

GENERATE = "/api/v1/video/generate"
TASKS = "/api/v1/video/tasks"

HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


async def test_reads_answer_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "videoq.db"
    # The store would wait far longer than the test for the lock: only a read that skips the
    # queue of writes can answer while it is held.
    store = SqliteStore(path, busy_timeout=TIMEOUT * 4)
    await store.open()
    task = await store.insert(Task.new(VideoRequest(prompt="a fox in the snow")))
    with _holding_the_lock(path) as release:
        write = asyncio.create_task(
            store.update(task.id, Expect.of(TaskStatus.QUEUED), {"progress": 5})
        )
        await asyncio.sleep(0)  # the write is now queued on the store's writing thread
        listed = await asyncio.wait_for(store.list(), TIMEOUT)
        got = await asyncio.wait_for(store.get(task.id), TIMEOUT)
        counts = await asyncio.wait_for(store.count_by_status(), TIMEOUT)
        assert [t.id for t in listed] == [task.id] and got is not None and got.progress == 0
        assert counts[TaskStatus.QUEUED] == 1
        assert not write.done()
        release()
    updated = await write
    assert updated is not None and updated.progress == 5
    await store.close()


async def test_get_tasks_answers_while_another_process_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "videoq.db"
    sock = loopback_socket()
    store = SqliteStore(path, busy_timeout=TIMEOUT * 4)
    runtime, _ = hand_runtime(path, sock, Simulator(), store=store)
    async with runtime, in_process(runtime, sock) as client:
        generated = await client.post(GENERATE, json={"prompt": "a fox"}, headers=bearer())
        task_id = generated.json()["data"]["task_id"]
        with _holding_the_lock(path) as release:
            write = asyncio.create_task(
                store.update(task_id, Expect.of(TaskStatus.QUEUED), {"progress": 5})
            )
            await asyncio.sleep(0)  # the write is now queued on the store's writing thread
            listed = await asyncio.wait_for(client.get(TASKS, headers=bearer()), TIMEOUT)
            assert listed.status_code == 200
            assert [task["id"] for task in listed.json()["data"]["tasks"]] == [task_id]
            assert not write.done()
            release()
        updated = await write
    assert updated is not None and updated.progress == 5


async def test_a_read_by_key_runs_on_the_writers_connection_while_it_is_free(
    tmp_path: Path,
) -> None:
    """Its cache holds what this process wrote; the loop's own connection would read the
    pages again after every commit (docs/benchmarks.md, eighth pass)."""
    store = SqliteStore(tmp_path / "videoq.db")
    await store.open()
    try:
        task = await store.insert(Task.new(VideoRequest(prompt="a fox in the snow")))
        traced: list[str] = []
        store.writer.connection.set_trace_callback(traced.append)
        got = await store.get(task.id)
        store.writer.connection.set_trace_callback(None)
    finally:
        await store.close()
    assert got is not None and got.id == task.id
    assert [s for s in traced if s.startswith("SELECT") and "FROM video_tasks" in s]


@contextlib.contextmanager
def _holding_the_lock(path: Path) -> Iterator[Callable[[], None]]:
    """Another process holds the write lock of `path` until the yielded function is called."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"

        def release() -> None:
            if holder.poll() is None and holder.stdin is not None and not holder.stdin.closed:
                holder.stdin.write("\n")
                holder.stdin.close()
                holder.wait(TIMEOUT)

        try:
            yield release
        finally:
            release()
