"""LocalQueue's SQLite side: the `queue_*` tables, on one thread, with group commit.

Every call runs on one dedicated thread, so the event loop never waits on the disk. Writes
submitted while an earlier batch is being written are committed together in the next
transaction (one thread hop and one commit for many publishes and outcomes), each in its own
savepoint so that one failing write does not take the others with it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from core import sqlite_file
from core.errors import QueueError

T = TypeVar("T")
NEVER = float("inf")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_messages (
    id TEXT PRIMARY KEY,
    dedup_id TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'dead')),
    deliver_at REAL NOT NULL,  -- due time; lease expiry while claimed; death time when dead
    retried INTEGER NOT NULL DEFAULT 0,
    lease TEXT,                -- claim token while a dispatcher holds it
    published_at REAL NOT NULL,
    last_status INTEGER,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_due ON queue_messages (deliver_at)
    WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS queue_dedup (
    dedup_id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    published_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_dedup_age ON queue_dedup (published_at);
-- One row per dispatching process, beaten every few seconds: who else works on this file.
CREATE TABLE IF NOT EXISTS queue_workers (
    owner TEXT PRIMARY KEY,
    beat REAL NOT NULL
) WITHOUT ROWID;
"""
BEAT = "INSERT INTO queue_workers (owner, beat) VALUES (?, ?) ON CONFLICT DO UPDATE SET beat = ?"
GONE = "DELETE FROM queue_workers WHERE owner = ? OR beat < ?"
_OTHERS = "SELECT count(*) FROM queue_workers WHERE owner != ? AND beat >= ?"
# One statement claims a batch: SQLite runs it under the write lock, so two dispatchers on one
# file never claim the same row. A row whose lease expired unanswered counts as a failed try.
_CLAIM = """
UPDATE queue_messages
SET lease = :token, deliver_at = :until, retried = retried + (lease IS NOT NULL),
    last_status = CASE WHEN lease IS NULL THEN last_status ELSE 0 END,
    reason = CASE WHEN lease IS NULL THEN reason ELSE 'no answer before the lease expired' END
WHERE id IN (SELECT id FROM queue_messages WHERE state = 'pending' AND deliver_at <= :now
             ORDER BY deliver_at LIMIT :limit)
RETURNING id, body, retried
"""
_NEXT_DUE = "SELECT min(deliver_at) FROM queue_messages WHERE state = 'pending'"
DONE = "DELETE FROM queue_messages WHERE id = ? AND lease = ?"
RETRY = """UPDATE queue_messages SET retried = retried + 1, deliver_at = ?, lease = NULL,
    last_status = ?, reason = ? WHERE id = ? AND lease = ?"""
DEAD = """UPDATE queue_messages SET state = 'dead', deliver_at = ?, lease = NULL,
    last_status = ?, reason = ? WHERE id = ? AND lease = ?"""
CANCEL = """DELETE FROM queue_messages WHERE state = 'pending'
    AND id IN (?1, (SELECT message_id FROM queue_dedup WHERE dedup_id = ?1))"""
# A dead letter requeued starts its retries afresh; its last reason stays until it is delivered.
REQUEUE_DEAD = """UPDATE queue_messages SET state = 'pending', deliver_at = ?, retried = 0
    WHERE id = ? AND state = 'dead'"""
DROP_DEAD = "DELETE FROM queue_messages WHERE id = ? AND state = 'dead'"
_RELEASE = "UPDATE queue_messages SET lease = NULL, deliver_at = ? WHERE id = ? AND lease = ?"
_COLUMNS = "id, dedup_id, body, state, deliver_at, retried, lease, last_status, reason"


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message still held by the queue: pending, in flight or dead-lettered."""

    id: str
    dedup_id: str
    body: bytes
    state: Literal["pending", "in_flight", "dead"]
    deliver_at: float  # due time (lease expiry when in flight, death time when dead)
    retried: int
    last_status: int | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """A message this dispatcher holds the lease of, identified by its claim token."""

    id: str
    body: bytes
    retried: int
    token: str


_Op = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


class QueueDb:
    """The queue tables in one SQLite file, reached through one thread."""

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._writes: deque[_Op] = deque()
        self._flushing = False

    async def open(self) -> None:
        """Start the thread, connect, and create the tables if they are missing."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="videoq-queue")
        await self._on_thread(self._connect)

    async def close(self) -> None:
        """Close the connection and stop the thread; writes still waiting fail."""
        executor = self._executor
        if executor is None:
            return
        await self._on_thread(self._disconnect)
        self._executor = None
        executor.shutdown(wait=True)
        self._fail_waiting()

    @property
    def is_open(self) -> bool:
        return self._executor is not None

    # -- the calls LocalQueue makes ---------------------------------------------------------

    async def publish(self, row: tuple[Any, ...], dedup_cutoff: float) -> tuple[str, bool]:
        """Insert `row` unless its dedup id was published after the cutoff: (id, inserted)."""
        return await self._write(_publish, row, dedup_cutoff)

    async def claim(
        self, token: str, now: float, until: float, limit: int
    ) -> tuple[list[Claim], float]:
        """Lease up to `limit` due messages until `until`; also when the next one is due."""
        params = {"token": token, "now": now, "until": until, "limit": limit}
        rows, next_due = await self._write(_claim, params)
        return [Claim(row[0], row[1], row[2], token) for row in rows], next_due

    async def change(self, sql: str, params: tuple[Any, ...]) -> bool:
        """Run one write; True when it matched a row."""
        return await self._write(_changed, sql, params)

    async def release(self, claims: list[Claim], now: float) -> int:
        rows = [(now, claim.id, claim.token) for claim in claims]
        return await self._write(_changed_many, _RELEASE, rows)

    async def prune(self, cutoff: float) -> int:
        sql = "DELETE FROM queue_dedup WHERE published_at <= ?"
        return await self._write(_changed_many, sql, [(cutoff,)])

    async def next_due(self) -> float:
        """When the earliest pending message (or expiring lease) is due."""
        return await self._read(_next_due)

    async def select(self, where: str, params: tuple[Any, ...], now: float) -> list[QueuedMessage]:
        sql = f"SELECT {_COLUMNS} FROM queue_messages WHERE {where} ORDER BY deliver_at"
        return [_queued(row, now) for row in await self._read(_fetch_all, sql, params)]

    async def count_workers(self, owner: str, since: float) -> int:
        """How many dispatchers other than `owner` beat at `since` or later."""
        return int((await self._read(_fetch_all, _OTHERS, (owner, since)))[0][0])

    async def count_pending(self) -> int:
        sql = "SELECT count(*) FROM queue_messages WHERE state = 'pending'"
        return int((await self._read(_fetch_all, sql, ()))[0][0])

    # -- on the thread ----------------------------------------------------------------------

    def _connect(self) -> None:
        db = sqlite_file.connect(self.path, self.busy_timeout)
        try:
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _disconnect(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch: list[_Op] = []
        while self._writes:
            batch.append(self._writes.popleft())
        try:
            outcomes = self._commit(batch)
        except Exception as exc:  # every waiter must hear back, whatever went wrong
            outcomes = [(op[2], exc, None) for op in batch]
        try:
            loop.call_soon_threadsafe(self._resolve, loop, outcomes)
        except RuntimeError:
            pass  # the loop is gone: nobody is waiting any more

    def _commit(self, batch: list[_Op]) -> list[tuple[asyncio.Future[Any], Exception | None, Any]]:
        db = self._require()
        outcomes: list[tuple[asyncio.Future[Any], Exception | None, Any]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for fn, args, future in batch:
                db.execute("SAVEPOINT op")
                try:
                    outcomes.append((future, None, fn(db, *args)))
                except sqlite3.Error as exc:
                    db.execute("ROLLBACK TO op")
                    outcomes.append((future, exc, None))
                db.execute("RELEASE op")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return outcomes

    # -- plumbing ---------------------------------------------------------------------------

    def _resolve(
        self,
        loop: asyncio.AbstractEventLoop,
        outcomes: list[tuple[asyncio.Future[Any], Exception | None, Any]],
    ) -> None:
        for future, error, value in outcomes:
            if future.done():
                continue  # its caller was cancelled; the write happened all the same
            if error is not None:
                future.set_exception(_queue_error(error))
            else:
                future.set_result(value)
        if self._writes and self._executor is not None:
            self._executor.submit(self._flush, loop)
        else:
            self._flushing = False
            self._fail_waiting()

    def _fail_waiting(self) -> None:
        while self._writes:
            future = self._writes.popleft()[2]
            if not future.done():
                future.set_exception(QueueError("the local queue was closed"))

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise QueueError("the local queue is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writes.append((fn, args, future))
        if not self._flushing:
            self._flushing = True
            self._executor.submit(self._flush, loop)
        return await future

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._on_thread(self._with_db, fn, args)

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise QueueError("the local queue is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise _queue_error(exc) from exc

    def _with_db(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        return fn(self._require(), *args)

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.OperationalError("the queue database is closed")
        return self._db


def _publish(db: sqlite3.Connection, row: tuple[Any, ...], cutoff: float) -> tuple[str, bool]:
    message_id, dedup_id, _, _, published_at = row
    found = db.execute(
        "SELECT message_id FROM queue_dedup WHERE dedup_id = ? AND published_at > ?",
        (dedup_id, cutoff),
    ).fetchone()
    if found:
        return found[0], False
    db.execute(
        "INSERT OR REPLACE INTO queue_dedup VALUES (?, ?, ?)",
        (dedup_id, message_id, published_at),
    )
    db.execute(
        "INSERT INTO queue_messages (id, dedup_id, body, deliver_at, published_at)"
        " VALUES (?, ?, ?, ?, ?)",
        row,
    )
    return message_id, True


def _fetch_all(db: sqlite3.Connection, sql: str, params: Any) -> list[Any]:
    return db.execute(sql, params).fetchall()


def _claim(db: sqlite3.Connection, params: dict[str, Any]) -> tuple[list[Any], float]:
    rows = db.execute(_CLAIM, params).fetchall()
    return rows, params["now"] if len(rows) == params["limit"] else _next_due(db)


def _next_due(db: sqlite3.Connection) -> float:
    due = db.execute(_NEXT_DUE).fetchone()[0]
    return NEVER if due is None else float(due)


def _changed(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> bool:
    return db.execute(sql, params).rowcount > 0


def _changed_many(db: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> int:
    before = db.total_changes
    db.executemany(sql, rows)
    return db.total_changes - before


def _queued(row: tuple[Any, ...], now: float) -> QueuedMessage:
    message_id, dedup_id, body, state, deliver_at, retried, lease, last_status, reason = row
    if state == "pending" and lease is not None and deliver_at > now:
        state = "in_flight"
    return QueuedMessage(
        message_id, dedup_id, body, state, deliver_at, retried, last_status, reason
    )


def _queue_error(exc: Exception) -> Exception:
    if not isinstance(exc, sqlite3.Error):
        return exc  # a bug, not the database: let it show as itself
    error = QueueError(f"local queue database error: {exc}")
    error.__cause__ = exc
    return error
