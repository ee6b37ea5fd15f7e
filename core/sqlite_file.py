"""How videoq opens its SQLite file, which the task store and the local queue share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import NoneType
from typing import Any, TypeVar

from core.errors import StoreError

T = TypeVar("T")
log = logging.getLogger(__name__)

# The sqlite3 module binds a None, or bytes, only after looking for its adapter the slow way:
# two failed attribute look-ups, each raising and clearing an AttributeError (0.6 µs a None,
# about eight a step, and 0.4 µs more for a message's body than a registered adapter). A
# registered adapter is found at once: an empty set's `discard` does nothing and answers None,
# and `bytes.__bytes__` answers the very bytes, both from C. Process-wide, and every connection
# binds the same NULL and BLOB as before: only the way to them is shorter.
sqlite3.register_adapter(NoneType, set().discard)
sqlite3.register_adapter(bytes, bytes.__bytes__)

CHECKPOINT_EVERY = 1.0
"""Seconds between WAL checkpoints of a busy writer (SQLite's own would run on every ~1,000th
page, on the committing thread, with an fsync)."""
WAL_RESTART_FRAMES = 4096
"""WAL frames (pages, 16 MiB at 4 KiB) past which a checkpoint also restarts the log.

A PASSIVE checkpoint copies the log into the file but never rewinds it while writes go on, so
under sustained load the log would grow for as long as the load lasts (500 MB in three seconds
of submits). RESTART waits for the write lock, copies what is left and makes the next write
start the log again; writes wait meanwhile, on the writer's thread, never on the loop's."""
SLOW_COMMIT = 0.05
"""Seconds a batch may hold the loop's thread when its writes took over SLOW_WRITE each (a
slow or stalled disk: a healthy one commits a write in a tenth of a millisecond). The second
such batch within SLOW_DISK_BACKOFF seconds sends the batches of the next SLOW_DISK_BACKOFF
seconds to the writer's thread. One alone is a hiccup, not a slow disk: a checkpoint's sync
stalls a commit now and then (60 ms, measured on a busy 2-core VM), and a single hiccup sent
a whole benchmark run to the thread, at a quarter more CPU per step."""
SLOW_WRITE = 0.001
SLOW_DISK_BACKOFF = 10.0
WAL_KEEP_BYTES = 64 * 1024 * 1024
"""What a restarted log keeps of its file (`journal_size_limit`); a larger one is cut back."""


def connect(
    path: Path, busy_timeout: float, *, cached_statements: int = 128, any_thread: bool = False
) -> sqlite3.Connection:
    """A connection in autocommit mode (callers BEGIN themselves), in WAL mode, waiting on locks.

    `any_thread`: usable from threads other than this one (its owner keeps uses apart).
    """
    try:
        db = sqlite3.connect(
            path,
            isolation_level=None,
            timeout=busy_timeout,
            cached_statements=cached_statements,
            check_same_thread=not any_thread,
        )
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the SQLite file: {exc}") from None
    try:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        # WAL with NORMAL survives a crashed process; only a power cut may lose the last commits.
        db.execute("PRAGMA synchronous = NORMAL")
        # 16 MiB of page cache (the default is 2 MiB): the hot indexes stay in memory.
        db.execute("PRAGMA cache_size = -16384")
    except BaseException:
        db.close()
        raise
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT on `db`, rolled back when the block (or the COMMIT) raises.

    IMMEDIATE takes the write lock up front: a compare-and-set never upgrades a read lock
    mid-way.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
            db.execute("ROLLBACK")
        raise


_Op = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", BaseException | None, Any]


class SqliteWriter:
    """One writing connection to the file, with group commit, on the loop's thread when it can.

    Writes submitted in one turn of the event loop (or while an earlier batch commits) go
    together in the next transaction, so that one failing write does not take the others with
    it (see `_commit`); a write's future resolves only once its transaction has committed. The
    task store and the local queue of one process share one writer when they use the same file
    (`core.wiring.step_writes`), so a step's row and its next message commit in one transaction
    and never fight over the file's write lock.

    Where the batch runs: on the loop's thread, when the file's write lock is free at once. A
    commit in WAL mode with synchronous=NORMAL writes to the page cache and syncs nothing (the
    checkpoints that sync run on a thread of their own), so a batch of small writes costs less
    there than the two thread hops around it. When another connection holds the lock, or the
    writer's thread is busy with a `call`, the batch goes to that thread, which waits for the
    lock up to `busy_timeout`: the loop never waits for a lock. Writes that may touch many rows
    (pruning) use `bulk_write`, always on the thread. Opened and closed once per user: the
    connection closes with its last user.
    """

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.users = 0
        self._db: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._writes: deque[_Op] = deque()
        self._flushing = False
        # Held by whichever thread uses the connection: the loop's never waits for it.
        self._using = threading.Lock()
        # Checkpoints run on a thread and connection of their own, off the committing path.
        self._checkpointer: ThreadPoolExecutor | None = None
        self._checkpoint_db: sqlite3.Connection | None = None
        self._checkpoint_at = 0.0
        self._checkpointing = False
        # Until then (monotonic seconds) batches commit on the thread: the disk was slow.
        self._thread_until = 0.0
        # When the last batch that held the loop too long ended (`_note_duration`).
        self._slow_at = -SLOW_DISK_BACKOFF

    @property
    def is_open(self) -> bool:
        return self._executor is not None

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection, for functions that run on the writer's thread (raises once closed)."""
        if self._db is None:
            raise sqlite3.OperationalError("the database connection is closed")
        return self._db

    async def open(self) -> None:
        """Start the thread and connect, unless another user of this writer already has."""
        self.users += 1
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="videoq-sqlite")
        try:
            self._db = await self.call(self._connect)
        except BaseException:
            self.users -= 1
            await self._shutdown()
            raise

    async def close(self) -> None:
        """Let go of this user's share; the last one closes the connection and the thread."""
        self.users = max(0, self.users - 1)
        if self.users == 0:
            await self._shutdown()

    async def _shutdown(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            await loop.run_in_executor(checkpointer, self._close_checkpointer)
            checkpointer.shutdown(wait=True)
        await loop.run_in_executor(executor, self._disconnect)
        executor.shutdown(wait=True)
        self._fail_waiting()

    def _maybe_checkpoint(self) -> None:
        """Copy the WAL into the file at most every CHECKPOINT_EVERY seconds, off this path."""
        now = time.monotonic()
        if self._checkpointing or now < self._checkpoint_at or self._executor is None:
            return
        self._checkpoint_at = now + CHECKPOINT_EVERY
        self._checkpointing = True
        if self._checkpointer is None:
            self._checkpointer = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="videoq-checkpoint"
            )
        self._checkpointer.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            if self._checkpoint_db is None:
                self._checkpoint_db = connect(self.path, self.busy_timeout, cached_statements=4)
            db = self._checkpoint_db
            # PASSIVE never waits for (nor holds up) a writer; what it leaves, the next one takes.
            _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames >= WAL_RESTART_FRAMES:
                db.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error as exc:
            log.warning("%s: WAL checkpoint failed, will try again: %s", self.path, exc)
        finally:
            self._checkpointing = False

    def _close_checkpointer(self) -> None:
        db, self._checkpoint_db = self._checkpoint_db, None
        if db is not None:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        db = connect(self.path, self.busy_timeout, cached_statements=512, any_thread=True)
        # No checkpoint after our commits: `_checkpoint` does them on its own thread.
        db.execute("PRAGMA wal_autocheckpoint = 0")
        # On the loop's thread a busy file is an answer, not a wait (`_patiently` waits).
        db.execute("PRAGMA busy_timeout = 0")
        # The writer rewinds the log after a RESTART checkpoint: then it cuts the file back.
        db.execute(f"PRAGMA journal_size_limit = {WAL_KEEP_BYTES}")
        return db

    def _disconnect(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the thread, outside any batch (it manages its own transaction)."""
        if self._executor is None:
            raise sqlite3.OperationalError("the database connection is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._patiently, fn, args)

    async def bulk_write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in a transaction of its own on the thread: for writes of many rows,
        which the loop should not wait for."""
        return await self.call(self._transacted, fn, args)

    def read_here(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the read `fn(*args)` on the connection, on the caller's thread, at once.

        Outside any transaction (a batch on this thread has always committed by now), so
        the read sees the file as it is. Raises `sqlite3.OperationalError` when the
        connection is in use on the writer's thread, or closed: then the caller reads on a
        connection of its own. A short read only: the writer's thread waits meanwhile.
        """
        if self._db is None or not self._using.acquire(blocking=False):
            raise sqlite3.OperationalError("the writer's connection is in use")
        try:
            return fn(*args)
        finally:
            self._using.release()

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` inside the next group transaction; its committed result."""
        if self._executor is None:
            raise sqlite3.OperationalError("the database connection is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writes.append((fn, args, future))
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._flush_next_turn, loop)
        return await future

    # -- on the loop's thread ---------------------------------------------------------------

    def _flush_next_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit after one more turn of the loop: the tasks the last commit woke run in this
        one, and their next writes join the batch (fewer, larger commits: docs/benchmarks.md,
        "Engine speed, fourth pass")."""
        loop.call_soon(self._flush_here, loop)

    def _flush_here(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit the waiting writes here, or hand them to the thread if the file is busy."""
        if self._executor is None:
            self._flushing = False
            self._fail_waiting()
            return
        if time.monotonic() < self._thread_until or not self._using.acquire(blocking=False):
            # A slow disk lately, or a `call` running on the thread: the thread commits.
            self._executor.submit(self._flush, loop)
            return
        batch = self._take_batch()
        started = time.monotonic()
        try:
            outcomes = self._commit(batch)
            self._note_duration(time.monotonic() - started, len(batch))
        except Exception as exc:
            if is_busy(exc):
                # Another connection writes: nothing of the batch ran (BEGIN IMMEDIATE failed).
                self._writes.extendleft(reversed(batch))
                self._executor.submit(self._flush, loop)
                return
            outcomes = [(op[2], exc, None) for op in batch]
        finally:
            self._using.release()
        self._resolve(loop, outcomes)

    def _note_duration(self, seconds: float, writes: int) -> None:
        """After the second batch in a while that held the loop too long, commit on the thread
        for a while."""
        if seconds < SLOW_COMMIT or seconds < SLOW_WRITE * writes:
            return  # quick, or a large batch at a healthy pace
        now = time.monotonic()
        hiccup = now - self._slow_at > SLOW_DISK_BACKOFF
        self._slow_at = now
        if hiccup:
            log.debug("%s: %d writes took %.0f ms to commit", self.path, writes, seconds * 1000)
            return
        self._thread_until = now + SLOW_DISK_BACKOFF
        log.warning("%s: %d writes took %.0f ms to commit; committing off the event loop for "
                    "%.0f s", self.path, writes, seconds * 1000, SLOW_DISK_BACKOFF)  # fmt: skip

    # -- on the thread ----------------------------------------------------------------------

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._take_batch()
        try:
            outcomes = self._patiently(self._commit, (batch,))
        except Exception as exc:  # every waiter must hear back, whatever went wrong
            outcomes = [(op[2], exc, None) for op in batch]
        try:
            loop.call_soon_threadsafe(self._resolve, loop, outcomes)
        except RuntimeError:
            pass  # the loop is gone: nobody is waiting any more

    def _patiently(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """Run `fn(*args)` holding the connection, waiting up to busy_timeout for the file."""
        with self._using:
            db = self._db
            if db is None:
                return fn(*args)  # connecting, or closed (`connection` then raises)
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            try:
                return fn(*args)
            finally:
                if self._db is not None:
                    self._db.execute("PRAGMA busy_timeout = 0")

    def _transacted(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with transaction(self.connection):
            return fn(*args)

    def _take_batch(self) -> list[_Op]:
        batch: list[_Op] = []
        while self._writes:
            batch.append(self._writes.popleft())
        return batch

    def _commit(self, batch: list[_Op]) -> list[_Outcome]:
        """Run the batch in one transaction; should a write fail, run it again write by write.

        Most batches fail nowhere, and a savepoint around each write costs two statements
        per write. So the first pass runs them bare; a write that raises rolls that pass back,
        and the second pass gives each write its own savepoint, so that only the failing one
        answers its error. The writes are SQL on this connection and nothing else, so running
        them again after a rollback is safe.
        """
        try:
            with transaction(self.connection):
                return [(future, None, fn(*args)) for fn, args, future in batch]
        except Exception as exc:
            if is_busy(exc):
                raise  # BEGIN found the file locked: nothing ran, a second pass would wait again
            return self._commit_one_by_one(batch)

    def _commit_one_by_one(self, batch: list[_Op]) -> list[_Outcome]:
        db = self.connection
        outcomes: list[_Outcome] = []
        with transaction(db):
            for fn, args, future in batch:
                db.execute("SAVEPOINT op")
                try:
                    outcomes.append((future, None, fn(*args)))
                except Exception as exc:
                    if not db.in_transaction:
                        raise  # SQLite rolled the whole batch back (disk full, I/O error)
                    db.execute("ROLLBACK TO op")
                    outcomes.append((future, exc, None))
                db.execute("RELEASE op")
        return outcomes

    # -- back on the loop -------------------------------------------------------------------

    def _resolve(self, loop: asyncio.AbstractEventLoop, outcomes: list[_Outcome]) -> None:
        for future, error, value in outcomes:
            if future.done():
                continue  # its caller was cancelled; the write happened all the same
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)
        if self._writes and self._executor is not None:
            loop.call_soon(self._flush_next_turn, loop)
        else:
            self._flushing = False
            self._fail_waiting()
        self._maybe_checkpoint()

    def _fail_waiting(self) -> None:
        while self._writes:
            future = self._writes.popleft()[2]
            if not future.done():
                future.set_exception(sqlite3.OperationalError("the database connection is closed"))


def is_busy(exc: BaseException) -> bool:
    """Whether SQLite refused for a lock another connection holds (SQLITE_BUSY or _LOCKED)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
