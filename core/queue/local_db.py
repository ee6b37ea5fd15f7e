"""LocalQueue's SQLite side: the `queue_*` tables, on one thread, with group commit.

Every call runs on the thread of a `SqliteWriter` (core/sqlite_file.py), so the event loop never
waits on the disk. Writes submitted while an earlier batch is being written are committed
together in the next transaction, each in its own savepoint so that one failing write does not
take the others with it. The writer is the task store's when both use one file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from msgspec import Struct

from core.errors import QueueError
from core.sqlite_file import SqliteWriter

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
# What a publish writes of a message (`prepare_publish`'s row, in this order); the other
# columns start as the schema's defaults leave them, which _REPLACE sets over an old row.
_PUBLISHED = ("id", "dedup_id", "body", "deliver_at", "published_at")
_INSERT = f"INSERT INTO queue_messages ({', '.join(_PUBLISHED)}) VALUES (?, ?, ?, ?, ?)"
_FRESH = "state = 'pending', retried = 0, lease = NULL, last_status = NULL, reason = NULL"
# DONE and an insert in one: the delivered row becomes the next message (`replace_row`).
_REPLACE = f"""UPDATE queue_messages SET {", ".join(f"{name} = ?" for name in _PUBLISHED)},
    {_FRESH} WHERE id = ? AND lease = ?"""
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


class QueuedMessage(Struct, frozen=True):
    """A message still held by the queue: pending, in flight or dead-lettered."""

    id: str
    dedup_id: str
    body: bytes
    state: Literal["pending", "in_flight", "dead"]
    deliver_at: float  # due time (lease expiry when in flight, death time when dead)
    retried: int
    last_status: int | None
    reason: str | None


class Claim(Struct, frozen=True):
    """A message this dispatcher holds the lease of, identified by its claim token."""

    id: str
    body: bytes
    retried: int
    token: str


class QueueDb:
    """The queue tables in one SQLite file, reached through one writer thread."""

    def __init__(self, path: Path, busy_timeout: float, writer: SqliteWriter | None = None) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        # Shared with the task store when both use one file (see SqliteWriter).
        self.writer = writer or SqliteWriter(path, busy_timeout)
        self._opened = False

    async def open(self) -> None:
        """Start the thread, connect, and create the tables if they are missing."""
        if self._opened:
            return
        await self.writer.open()
        self._opened = True
        await self._through(self.writer.call, self._create_tables, ())

    async def close(self) -> None:
        """Let go of the connection (the last user of the writer closes it)."""
        if self._opened:
            self._opened = False
            await self.writer.close()

    @property
    def is_open(self) -> bool:
        return self._opened and self.writer.is_open

    # -- the calls LocalQueue makes ---------------------------------------------------------

    async def publish(self, row: tuple[Any, ...], dedup_cutoff: float) -> tuple[str, bool]:
        """Insert `row` unless its dedup id was published after the cutoff: (id, inserted)."""
        return await self._write(publish_row, row, dedup_cutoff)

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
        return await self._bulk_write(_changed_many, sql, [(cutoff,)])

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

    # -- plumbing ---------------------------------------------------------------------------

    def _create_tables(self, db: sqlite3.Connection) -> None:
        db.executescript(_SCHEMA)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)` in the writer's next group transaction."""
        return await self._through(self.writer.write, fn, args)

    async def _bulk_write(self, fn: Callable[..., T], *args: Any) -> T:
        """A write of many rows: on the writer's thread, in a transaction of its own."""
        return await self._through(self.writer.bulk_write, fn, args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)` on the writer's thread, outside any transaction."""
        return await self._through(self.writer.call, fn, args)

    async def _through(
        self, how: Callable[..., Awaitable[T]], fn: Callable[..., T], args: tuple[Any, ...]
    ) -> T:
        if not self._opened:
            raise QueueError("the local queue is not open")
        try:
            return await how(self._with_db, fn, args)
        except sqlite3.Error as exc:
            raise _queue_error(exc) from exc

    def _with_db(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        return fn(self.writer.connection, *args)


def publish_row(db: sqlite3.Connection, row: tuple[Any, ...], cutoff: float) -> tuple[str, bool]:
    """Store a message unless its dedup id was published after `cutoff`: (its id, stored)."""
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
    insert_row(db, row)
    return message_id, True


def insert_row(db: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    """Store a message whose dedup id no other publish can have (no dedup look-up)."""
    db.execute(_INSERT, row)


def ack_row(db: sqlite3.Connection, claim: Claim) -> bool:
    """Delete a delivered message in the caller's transaction, if `claim` still holds its lease."""
    return _changed(db, DONE, (claim.id, claim.token))


def replace_row(db: sqlite3.Connection, claim: Claim, row: tuple[Any, ...]) -> bool:
    """`ack_row(claim)` and `insert_row(row)` in the caller's transaction, as one statement:
    the delivered message's row is rewritten as the new one (one row changed instead of one
    deleted and one added). False, with nothing written, when `claim` lost its lease: the
    caller inserts `row` then."""
    return _changed(db, _REPLACE, (*row, claim.id, claim.token))


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
