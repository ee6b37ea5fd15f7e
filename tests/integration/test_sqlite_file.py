"""The one way videoq opens its SQLite file, used by the task store and the local queue alike."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from core import sqlite_file
from core.errors import StoreError
from core.queue.local_db import QueueDb
from core.store.sqlite import SqliteStore


def settings_of(db: sqlite3.Connection) -> tuple[str, int, int]:
    mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    synchronous = db.execute("PRAGMA synchronous").fetchone()[0]
    busy = db.execute("PRAGMA busy_timeout").fetchone()[0]
    return mode, synchronous, busy


def test_a_connection_is_in_wal_mode_with_normal_sync_and_a_busy_timeout(tmp_path: Path) -> None:
    db = sqlite_file.connect(tmp_path / "videoq.db", 2.5)
    try:
        assert settings_of(db) == ("wal", 1, 2500)
        assert db.isolation_level is None
    finally:
        db.close()


async def test_the_store_and_the_queue_open_the_file_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "videoq.db"
    store, queue = SqliteStore(path, busy_timeout=3.0), QueueDb(path, busy_timeout=3.0)
    await store.open()
    await queue.open()
    try:
        # Each adapter's own connection, read on the thread that owns it.
        from_store = await store._call(lambda: settings_of(store._open_db.db))
        from_queue = await queue._read(settings_of)
    finally:
        await queue.close()
        await store.close()

    assert from_store == from_queue == ("wal", 1, 3000)


def test_none_and_bytes_bind_as_null_and_blob_through_registered_adapters(
    tmp_path: Path,
) -> None:
    db = sqlite_file.connect(tmp_path / "videoq.db", 1.0)
    try:
        db.execute("CREATE TABLE t (v)")
        db.executemany("INSERT INTO t VALUES (?)", [(None,), (b"\x00body",)])
        stored = db.execute("SELECT typeof(v), v FROM t ORDER BY rowid").fetchall()
    finally:
        db.close()
    for kind in (type(None), bytes):  # the short way to each
        assert (kind, sqlite3.PrepareProtocol) in sqlite3.adapters
    assert stored == [("null", None), ("blob", b"\x00body")]


def test_an_unopenable_path_fails_without_leaving_a_connection(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "videoq.db"
    with pytest.raises(StoreError, match="cannot open the SQLite file") as refused:
        sqlite_file.connect(path, 1.0)
    assert str(path) in refused.value.message


async def test_a_failing_write_in_a_group_takes_only_its_own_changes_back(tmp_path: Path) -> None:
    writer = sqlite_file.SqliteWriter(tmp_path / "videoq.db", 2.0)
    await writer.open()
    try:
        await writer.call(
            lambda: writer.connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        )
        gate = threading.Event()

        def held() -> None:  # keeps the writer's thread busy while the group below queues up
            gate.wait(5.0)

        def put(key: int, value: str) -> int:
            writer.connection.execute("INSERT INTO t VALUES (?, ?)", (key, value))
            return key

        def put_then_clash(key: int) -> None:
            writer.connection.execute("INSERT INTO t VALUES (?, 'half')", (key,))
            writer.connection.execute("INSERT INTO t VALUES (1, 'clash')")  # k = 1 is taken

        first = asyncio.ensure_future(writer.call(held))
        await asyncio.sleep(0.05)
        group = asyncio.gather(
            writer.write(put, 1, "one"),
            writer.write(put_then_clash, 2),
            writer.write(put, 3, "three"),
            return_exceptions=True,
        )
        await asyncio.sleep(0.05)
        gate.set()
        await first
        one, clash, three = await group
        rows = await writer.call(lambda: writer.connection.execute("SELECT * FROM t").fetchall())
    finally:
        await writer.close()

    assert (one, three) == (1, 3)
    assert isinstance(clash, sqlite3.IntegrityError)
    assert sorted(rows) == [(1, "one"), (3, "three")]  # nothing of the failing write stays


async def _table_writer(path: Path) -> sqlite_file.SqliteWriter:
    writer = sqlite_file.SqliteWriter(path, 2.0)
    await writer.open()
    await writer.call(lambda: writer.connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
    return writer


class Puts:
    """A write that inserts its key into `t` and notes the thread it ran on."""

    def __init__(self, writer: sqlite_file.SqliteWriter) -> None:
        self.writer = writer
        self.threads: list[int] = []

    def __call__(self, key: int) -> int:
        self.threads.append(threading.get_ident())
        self.writer.connection.execute("INSERT INTO t VALUES (?)", (key,))
        return key


async def test_writes_commit_on_the_loops_thread_while_the_file_is_free(tmp_path: Path) -> None:
    writer = await _table_writer(tmp_path / "videoq.db")
    put = Puts(writer)
    try:
        assert await asyncio.gather(writer.write(put, 1), writer.write(put, 2)) == [1, 2]
        assert await writer.bulk_write(put, 3) == 3
    finally:
        await writer.close()
    here = threading.get_ident()
    assert put.threads[:2] == [here, here]
    assert put.threads[2] != here  # a bulk write never runs on the loop's thread


async def test_a_read_here_sees_the_file_now_and_refuses_while_the_thread_holds_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "videoq.db"
    writer = await _table_writer(path)
    other = sqlite_file.connect(path, 1.0)
    holding, release = threading.Event(), threading.Event()

    def count() -> tuple[int, int]:
        rows = writer.connection.execute("SELECT count(*) FROM t").fetchone()[0]
        return rows, threading.get_ident()

    def hold() -> None:
        holding.set()
        release.wait(5.0)

    try:
        await writer.write(Puts(writer), 1)
        other.execute("INSERT INTO t VALUES (2)")  # another connection's commit is seen too
        assert writer.read_here(count) == (2, threading.get_ident())
        held = asyncio.ensure_future(writer.call(hold))
        assert await asyncio.to_thread(holding.wait, 5.0)
        with pytest.raises(sqlite3.OperationalError, match="in use"):
            writer.read_here(count)
        release.set()
        await held
        assert writer.read_here(count)[0] == 2
    finally:
        release.set()
        other.close()
        await writer.close()
    with pytest.raises(sqlite3.OperationalError):
        writer.read_here(count)


async def test_a_write_waits_for_a_busy_file_on_the_writers_thread(tmp_path: Path) -> None:
    """While another connection holds the write lock, the loop runs on; the write commits once
    the lock is free, within the busy timeout."""
    path = tmp_path / "videoq.db"
    writer = await _table_writer(path)
    other = sqlite_file.connect(path, 1.0)
    put = Puts(writer)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (1)")
        waiting = asyncio.ensure_future(writer.write(put, 2))
        turns = 0
        for _ in range(20):  # the loop is free while the write waits for the lock
            await asyncio.sleep(0.01)
            turns += 1
        assert turns == 20 and not waiting.done()
        other.execute("COMMIT")
        assert await asyncio.wait_for(waiting, 5.0) == 2
        rows = await writer.call(lambda: writer.connection.execute("SELECT k FROM t").fetchall())
    finally:
        other.close()
        await writer.close()
    assert put.threads == [put.threads[0]] and put.threads[0] != threading.get_ident()
    assert sorted(rows) == [(1,), (2,)]


async def test_after_slow_commits_the_writers_thread_commits_for_a_while(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Commits that held the loop (a slow or stalled disk) send the next ones off it; one slow
    commit alone (a hiccup) does not."""
    writer = await _table_writer(tmp_path / "videoq.db")
    put = Puts(writer)

    def slow_put(key: int) -> int:
        time.sleep(sqlite_file.SLOW_COMMIT * 1.5)  # as a write stuck on the disk
        return put(key)

    try:
        assert await writer.write(slow_put, 1) == 1
        assert await writer.write(put, 2) == 2
        assert "committing off the event loop" not in caplog.text
        assert await writer.write(slow_put, 3) == 3
        assert await writer.write(put, 4) == 4
    finally:
        await writer.close()
    here = threading.get_ident()
    assert put.threads[:3] == [here] * 3 and put.threads[3] != here
    assert "committing off the event loop" in caplog.text


@pytest.mark.slow
async def test_the_log_stays_bounded_under_sustained_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PASSIVE checkpoints alone never rewind a log that is written to all the time: the log
    is rewound (and its file cut back) while the writes go on."""
    monkeypatch.setattr(sqlite_file, "CHECKPOINT_EVERY", 0.1)
    monkeypatch.setattr(sqlite_file, "WAL_KEEP_BYTES", 1024 * 1024)
    path = tmp_path / "videoq.db"
    monkeypatch.setattr(sqlite_file, "WAL_RESTART_FRAMES", 256)
    writer = sqlite_file.SqliteWriter(path, 2.0)
    await writer.open()
    wal = Path(f"{path}-wal")
    blob = b"x" * 3000  # one row per page: a frame or more per commit

    def put() -> None:
        writer.connection.execute("INSERT INTO t (v) VALUES (?)", (blob,))

    try:
        await writer.call(
            lambda: writer.connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
        )
        # Writes without a pause until the log file is cut back (it was rewound), or 10 s.
        largest, shrank = 0, False
        deadline = asyncio.get_running_loop().time() + 10.0
        while not shrank and asyncio.get_running_loop().time() < deadline:
            await writer.write(put)
            size = wal.stat().st_size
            shrank = size < largest and largest > sqlite_file.WAL_KEEP_BYTES
            largest = max(largest, size)
    finally:
        await writer.close()
    assert shrank, f"the log grew to {largest} bytes and was never rewound"
