"""The TaskStore port on SQLite: one WAL-mode file, compare-and-set writes, a tailed change log.

Writes run on a `SqliteWriter`'s thread (group commit; the local queue's too when both use the
file), reads on a reading thread, so the event loop never waits on a lock another process
holds; only `get` reads one row on the loop's thread, giving up at once on a busy file. Writes
made through this instance reach its subscribers directly; writes by other processes (or other
instances) reach them through `change_log`, which the feed tails every few tens of milliseconds
while anyone is subscribed (a `PRAGMA data_version` check first, so an idle file costs next to
nothing). The local queue keeps its own tables in the file.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import sqlite3
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec.structs
from msgspec import Struct, ValidationError

from core import sqlite_file
from core.errors import StoreError
from core.models import TASK_COLUMNS, Task, TaskChange, TaskEvent, TaskStatus
from core.sqlite_file import SqliteWriter
from core.store import (
    STORE_SET_COLUMNS,
    Expect,
    FeedState,
    FeedStatus,
    StepClaim,
    TaskPage,
    Usage,
    prune_in_batches,
    readable_tasks,
    status_counts,
)
from core.store.sqlite_db import (
    EVENT_COLUMNS,
    NEWEST_CREATED,
    ChangeRow,
    Database,
    check_columns,
    decode_task,
    encode,
    encode_event,
    encode_task,
    encode_time,
    encode_values,
    list_sql,
    status_values,
    stored_as_is,
    update_sql,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
_SYNC = TaskChange("SYNC")
_LIVE = "sqlite: local file"
_HERE_BUSY_TIMEOUT = 0.01
"""Seconds a read on the loop's thread may wait for a busy file before the reader takes it."""
Stored = int | tuple[Any, ...] | None
"""What an update on the writer's thread answers (`apply_update`)."""
KNOWN_ROWS = 10_000
"""Rows of unfinished tasks a store keeps as it last wrote them (see `KnownRows`)."""


class _Subscriber:
    """One `changes()` iterator's buffer; a writer never waits for it."""

    def __init__(self, limit: int) -> None:
        self.items: list[TaskChange] = []
        self.ready = asyncio.Event()
        self.limit = limit
        self.closed = False

    def push(self, change: TaskChange) -> None:
        if len(self.items) >= self.limit:
            # Too slow to keep up: drop the backlog and make it load a fresh snapshot instead.
            logger.warning("a live feed subscriber fell %d changes behind; re-syncing", self.limit)
            self.items = [_SYNC]
        self.items.append(change)
        self.ready.set()

    def close(self) -> None:
        self.closed = True
        self.ready.set()

    async def take(self) -> list[TaskChange] | None:
        """Everything buffered (waiting for at least one), or None once the store is closed."""
        while not self.items:
            if self.closed:
                return None
            self.ready.clear()
            await self.ready.wait()
        items, self.items = self.items, []
        return items


class KnownRows:
    """The row of each unfinished task as this store last wrote it, so writes need not read it.

    Every write of a task row bumps its `version`. An update whose new version is one past the
    known row's changed nothing but what it set, so the new row is the known one with those
    changes applied: no column needs to come back from the file. Any other version (another
    process wrote in between) and the row is read back as before. Finished tasks are dropped,
    and past `limit` the oldest entry goes.
    """

    def __init__(self, limit: int = KNOWN_ROWS) -> None:
        self.limit = limit
        self._rows: OrderedDict[str, Task] = OrderedDict()

    def get(self, task_id: str) -> Task | None:
        return self._rows.get(task_id)

    def put(self, task: Task) -> None:
        rows = self._rows
        if task.status.terminal:
            rows.pop(task.id, None)
            return
        rows[task.id] = task
        rows.move_to_end(task.id)
        if len(rows) > self.limit:
            rows.popitem(last=False)

    def forget(self, task_id: str) -> None:
        self._rows.pop(task_id, None)


class PreparedUpdate(Struct):
    """One compare-and-set, ready to run on the writer's thread.

    `known` is the row as this store last wrote it, when the changes are values that read back
    as themselves (`stored_as_is`); `updated_at` is the time the statement sets. `told`: the
    change log and the feed hear of it (all but a step's claim, see `claim_step`).
    """

    task_id: str
    sql: str
    params: builtins.list[Any]
    event: builtins.list[Any] | None
    changes: dict[str, Any]
    updated_at: datetime
    known: Task | None
    told: bool = True


class PreparedInsert(Struct):
    """One new task's row, first event and images, ready to run on the writer's thread.

    `task` is set when its every value reads back as itself: the insert then reads nothing back.
    """

    task_id: str
    values: builtins.list[Any]
    events: builtins.list[Any] | None
    images: tuple[str, ...]
    task: Task | None


class SqliteStore:
    """Tasks in one SQLite file; the embedded default."""

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout: float = 10.0,
        poll_interval: float = 0.025,
        buffer_limit: int = 10_000,
        writer: SqliteWriter | None = None,
    ) -> None:
        self.path = Path(path)
        # Shared with the local queue when both use one file (core.wiring.step_writes).
        self.writer = writer or SqliteWriter(self.path, busy_timeout)
        self.feed = FeedStatus()
        self._busy_timeout = busy_timeout
        self._poll_interval = poll_interval
        self._buffer_limit = buffer_limit
        self._origin = uuid.uuid4().hex
        self._db: Database | None = None
        self._holds_writer = False
        # Reads by key on the loop's thread (`get`, `images`), opened on first use.
        self._here: Database | None = None
        # Reads have their own connection and thread: under WAL they never wait for a write
        # lock, so a write queued behind another process's lock does not hold them up.
        self._reader: Database | None = None
        self._read_executor: ThreadPoolExecutor | None = None
        self._subscribers: set[_Subscriber] = set()
        self._tailer: asyncio.Task[None] | None = None
        self._tail_ready: asyncio.Future[None] | None = None
        self._known = KnownRows()

    def describe(self) -> str:
        """`sqlite: <path>` for logs and the dashboard header."""
        return f"sqlite: {self.path}"

    async def open(self) -> None:
        """Open the file on the store's own thread and create the tables if they are missing."""
        if self._read_executor is not None:
            return
        self._read_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="videoq-store-read"
        )
        try:
            await self._run(self.writer.open)
            self._holds_writer = True
            self._db = await self._call(self._prepared)
            self._reader = await self._read(self._reading)
        except BaseException:
            await self._shutdown()
            raise
        self._set_feed(FeedState.LIVE, _LIVE)
        logger.debug("task store open: %s", self.describe())

    async def close(self) -> None:
        """End every live feed and close the file."""
        for subscriber in self._subscribers:
            subscriber.close()
        await self._stop_tailer()
        if self._read_executor is None:
            return
        await self._shutdown()
        self._set_feed(FeedState.OFFLINE, "sqlite: closed")

    def _prepared(self) -> Database:
        """The writing side, on the writer's connection, with the tables made (writer thread)."""
        return Database(self.writer.connection, self.path, self._origin)

    def _reading(self) -> Database:
        """The reading side on a connection of its own (reader thread)."""
        db = sqlite_file.connect(self.path, self._busy_timeout, cached_statements=512)
        return Database(db, self.path, self._origin, prepare=False)

    async def _shutdown(self) -> None:
        """Close the reading connection and let go of the writer."""
        here, self._here = self._here, None
        if here is not None:
            here.close()
        reader, executor = self._reader, self._read_executor
        self._reader, self._read_executor = None, None
        if executor is not None:
            if reader is not None:
                await asyncio.get_running_loop().run_in_executor(executor, reader.close)
            executor.shutdown(wait=True)
        self._db = None
        if self._holds_writer:
            self._holds_writer = False
            await self.writer.close()

    # -- reads and writes -------------------------------------------------------------------

    async def insert(
        self, task: Task, event: TaskEvent | None = None, images: Sequence[str] = ()
    ) -> Task:
        """Store a new task (its first history event and its images) in one transaction."""
        prepared = self.prepare_insert(task, event, images)
        return self.inserted(prepared, await self._write(self.apply_insert, prepared))

    def prepare_insert(
        self, task: Task, event: TaskEvent | None = None, images: Sequence[str] = ()
    ) -> PreparedInsert:
        """The values `insert()` writes, encoded."""
        row = msgspec.structs.astuple(task)
        values = encode_task(row)
        as_is = stored_as_is(TASK_COLUMNS, row)
        events = _event_values(event, task.id)
        return PreparedInsert(task.id, values, events, tuple(images), task if as_is else None)

    def apply_insert(self, prepared: PreparedInsert) -> tuple[Any, ...] | None:
        """Run a prepared insert on the writer's thread, inside its group transaction; the row
        as stored, unless the task reads back as itself (None then)."""
        db = self._open_db
        db.insert(prepared.task_id, prepared.values, prepared.events, prepared.images)
        return None if prepared.task is not None else db.get(prepared.task_id)

    def inserted(self, prepared: PreparedInsert, row: tuple[Any, ...] | None) -> Task:
        """The committed new task (from `apply_insert`'s answer), told to the feed."""
        stored = prepared.task if row is None else decode_task(row)
        assert stored is not None
        self._known.put(stored)
        self._publish(TaskChange("INSERT", stored))
        return stored

    async def images(self, task_id: str) -> tuple[str, ...]:
        return await self._read_here(Database.images, task_id)

    async def get(self, task_id: str) -> Task | None:
        row = await self._read_here(Database.get, task_id)
        return decode_task(row) if row is not None else None

    async def _read_here(self, read: Callable[[Database, str], T], key: str) -> T:
        """A read by key on the loop's thread, or on the reader's when that fails.

        Under WAL a read takes no lock a writer holds, and these look at a few cached pages:
        cheaper than the two thread hops of the reader. It never waits long for a busy file.
        The writer's connection first, whose cache holds what this process wrote: another
        connection's cache is stale after every commit here and reads its pages again
        (docs/benchmarks.md, eighth pass). Then, while a batch or call holds that connection
        on its thread, a connection of the loop's own.
        """
        try:
            return self.writer.read_here(read, self._open_db, key)
        except sqlite3.Error:
            pass  # in use on the writer's thread, or closed
        try:
            return read(self._here_db(), key)
        except sqlite3.Error:
            # Busy (another process is recovering the file) or not our thread: the reader's.
            return await self._read(read, self._open_reader, key)

    def _here_db(self) -> Database:
        if self._here is None:
            if self._read_executor is None:
                raise StoreError(f"the task store {self.path} is not open")
            db = sqlite_file.connect(self.path, _HERE_BUSY_TIMEOUT, cached_statements=16)
            self._here = Database(db, self.path, self._origin, prepare=False)
        return self._here

    async def list(
        self,
        *,
        statuses: Collection[TaskStatus] | None = None,
        user_id: str | None = None,
        updated_before: datetime | None = None,
        updated_since: datetime | None = None,
        id_prefix: str | None = None,
        limit: int = 100,
    ) -> TaskPage:
        """Tasks newest first (by created_at, then id), filtered."""
        if (statuses is not None and not statuses) or limit <= 0:
            return TaskPage()
        wanted = sorted({TaskStatus(s).value for s in statuses}) if statuses is not None else None
        params: builtins.list[Any] = [*(wanted or ())]
        if user_id is not None:
            params.append(user_id)
        if updated_before is not None:
            params.append(encode_time(updated_before))
        if updated_since is not None:
            params.append(encode_time(updated_since))
        if id_prefix is not None:
            # Ids compare as bytes and hold only [0-9a-f-], all below "g": an index range.
            params += [id_prefix, id_prefix + "g"]
        params.append(limit)
        count = None if wanted is None else len(wanted)
        sql = list_sql(
            count,
            user=user_id is not None,
            updated_before=updated_before is not None,
            updated_since=updated_since is not None,
            id_range=id_prefix is not None,
        )
        rows = await self._read(self._open_reader.select, sql, params)
        return readable_tasks(rows, decode_task, self.feed)

    async def created_at_of_newest(self, user_id: str, n: int) -> datetime | None:
        if n < 1:
            raise ValueError(f"n must be 1 or more, not {n}")
        rows = await self._read(self._open_reader.select, NEWEST_CREATED, [user_id, n - 1])
        return datetime.fromisoformat(rows[0][0]) if rows else None

    async def update(
        self,
        task_id: str,
        expect: Expect,
        changes: Mapping[str, Any],
        event: TaskEvent | None = None,
    ) -> Task | None:
        """Compare-and-set in one statement; None when the row no longer matches `expect`.

        STORE_SET_COLUMNS belong to the store: naming them in `changes` does nothing.
        """
        prepared = self.prepare_update(task_id, expect, changes, event)
        if prepared is None:
            return None
        return self.updated(prepared, await self._write(self.apply_update, prepared))

    async def claim_step(
        self,
        task_id: str,
        expect: Expect,
        lease_until: datetime,
        now: datetime,
        *,
        sole: bool = False,
    ) -> StepClaim:
        """One compare-and-set that also checks the lease; on a miss, the row read in the
        same write (one hop to the writer either way).

        The claim is not told to the change log and the feed: it moves only the step's lease,
        which no view shows, and the step's outcome follows it (one row and one feed event per
        step fewer). A `sole` step whose row is still in the file as this store last wrote it
        (`KnownRows`, the same version: one read by key) and matches takes that
        row and writes nothing; a row changed since, by anyone, is claimed as any other.
        """
        if sole:
            known = self._known.get(task_id)
            if (
                known is not None
                and expect.claimable(known, now)
                and await self._read_here(Database.version, task_id) == known.version
            ):
                return StepClaim(known, claimed=True)
        changes = {"step_lease_until": lease_until}
        prepared = self.prepare_update(task_id, expect, changes, lease_free_at=now, told=False)
        if prepared is None:
            return StepClaim(await self.get(task_id), claimed=False)
        stored, claimed = await self._write(self._claim_or_read, prepared)
        if claimed:
            return StepClaim(self.updated(prepared, stored), claimed=True)
        assert not isinstance(stored, int)
        return StepClaim(decode_task(stored) if stored is not None else None, claimed=False)

    def _claim_or_read(self, prepared: PreparedUpdate) -> tuple[Stored, bool]:
        stored = self.apply_update(prepared)
        if stored is not None:
            return stored, True
        return self._open_db.get(prepared.task_id), False

    def prepare_update(
        self,
        task_id: str,
        expect: Expect,
        changes: Mapping[str, Any],
        event: TaskEvent | None = None,
        *,
        lease_free_at: datetime | None = None,
        told: bool = True,
    ) -> PreparedUpdate | None:
        """The statement and values of `update()`; None when `expect` can match no row.

        `lease_free_at`: the row must also hold no step lease live at that moment. `told`: see
        `PreparedUpdate`.
        """
        check_columns(changes, "changes")
        check_columns(expect.extra, "expect.extra")
        if not expect.statuses:
            return None
        columns = tuple(name for name in changes if name not in STORE_SET_COLUMNS)
        extra = tuple(expect.extra)
        statuses = status_values(frozenset(expect.statuses))
        sql = update_sql(
            columns,
            len(statuses),
            expect.attempt is not None,
            expect.polls is not None,
            extra,
            lease_free_at is not None,
        )
        now = datetime.now(UTC)
        values = [changes[name] for name in columns]
        params = encode_values(columns)(values)
        as_is = stored_as_is(columns, values)
        params += [encode_time(now), task_id, *statuses]
        params += [value for value in (expect.attempt, expect.polls) if value is not None]
        params += [encode(name, expect.extra[name]) for name in extra]
        if lease_free_at is not None:
            params.append(encode_time(lease_free_at))
        known = self._known.get(task_id) if as_is else None
        event_values = _event_values(event, task_id)
        set_values = dict(zip(columns, values, strict=True))
        return PreparedUpdate(task_id, sql, params, event_values, set_values, now, known, told)

    def apply_update(self, prepared: PreparedUpdate) -> Stored:
        """Run a prepared update on the writer's thread, inside its group transaction.

        None when the compare-and-set missed; the new version when the known row was the one
        updated (`KnownRows`); else the row as stored now.
        """
        db = self._open_db
        version = db.update(
            prepared.task_id, prepared.sql, prepared.params, prepared.event, told=prepared.told
        )
        if version is None:
            return None
        known = prepared.known
        if known is not None and version == known.version + 1:
            return version
        return db.get(prepared.task_id)

    def updated(self, prepared: PreparedUpdate, stored: Stored) -> Task | None:
        """The committed row of an update as a Task (told to the feed), or None if it missed."""
        if stored is None:
            logger.debug("task %s: compare-and-set did not apply", prepared.task_id)
            return None
        if isinstance(stored, int):
            assert prepared.known is not None
            task = msgspec.structs.replace(
                prepared.known, **prepared.changes, updated_at=prepared.updated_at, version=stored
            )
        else:
            task = decode_task(stored)
        self._known.put(task)
        if prepared.told:
            self._publish(TaskChange("UPDATE", task))
        return task

    async def add_event(self, event: TaskEvent) -> None:
        values = _event_values(event, event.task_id)
        assert values is not None
        await self._write(self._open_db.add_event, values)

    async def events(self, task_id: str) -> builtins.list[TaskEvent]:
        """The task's history, oldest first."""
        rows = await self._read(self._open_reader.events, task_id)
        try:
            return [TaskEvent.from_row(dict(zip(EVENT_COLUMNS, row, strict=True))) for row in rows]
        except ValidationError as exc:
            raise StoreError(f"task {task_id}: its stored history cannot be read") from exc

    async def probe_write(self) -> None:
        """Commit a write to the probe table, as /healthz asks."""
        await self._write(self._open_db.probe_write)

    async def add_usage(self, day: date, published: int = 0, delivered: int = 0) -> Usage:
        """Add to the day's QStash message counts in one write; returns the day's totals."""
        totals = await self._call(self._open_db.add_usage, day.isoformat(), published, delivered)
        return Usage(day, *totals)

    async def count_by_status(self, user_id: str | None = None) -> dict[TaskStatus, int]:
        """Tasks per status, every status present (0 when there are none)."""
        return status_counts(await self._read(self._open_reader.count_by_status, user_id))

    async def prune(
        self, before: datetime, statuses: Collection[TaskStatus], *, dry_run: bool = False
    ) -> dict[TaskStatus, int]:
        """Delete finished tasks last written before `before`, a batch per transaction."""
        cutoff = encode_time(before)
        counts = await prune_in_batches(
            statuses,
            lambda wanted: self._read(self._open_reader.count_prunable, wanted, cutoff),
            lambda wanted, batch: self._run(
                self.writer.bulk_write, self._open_db.prune_tasks, wanted, cutoff, batch
            ),
            dry_run,
        )
        if not dry_run and any(counts.values()):
            self._publish(_SYNC)  # the change feed has no row to show for a deleted task
        return counts

    # -- the live feed ----------------------------------------------------------------------

    async def changes(self) -> AsyncGenerator[TaskChange, None]:
        """SYNC, then every INSERT/UPDATE with the full row, until the store closes.

        Close it with `contextlib.aclosing` (or `aclose()`) when done; that unsubscribes.
        """
        subscriber = _Subscriber(self._buffer_limit)
        self._subscribers.add(subscriber)
        try:
            await self._follow_others()
            yield _SYNC
            while (items := await subscriber.take()) is not None:
                for change in items:
                    yield change
        finally:
            self._subscribers.discard(subscriber)
            if not self._subscribers:
                await self._stop_tailer()

    def _publish(self, change: TaskChange) -> None:
        if not self._subscribers:
            return
        self.feed.last_event_at = datetime.now(UTC)
        for subscriber in self._subscribers:
            subscriber.push(change)

    async def _follow_others(self) -> None:
        """Start tailing the change log (once) and wait until its starting point is known."""
        if self._tailer is None or self._tailer.done() or self._tail_ready is None:
            self._tail_ready = asyncio.get_running_loop().create_future()
            self._tailer = asyncio.create_task(self._tail(self._tail_ready))
        await asyncio.shield(self._tail_ready)

    async def _stop_tailer(self) -> None:
        tailer, self._tailer, self._tail_ready = self._tailer, None, None
        if tailer is not None:
            tailer.cancel()
            await asyncio.gather(tailer, return_exceptions=True)

    async def _tail(self, ready: asyncio.Future[None]) -> None:
        """Poll `change_log` for other writers' changes while anyone is subscribed."""
        try:
            seq = await self._call(self._open_db.last_seq)
        except StoreError as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        failing = False
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                batch = await self._call(self._open_db.tail, seq)
            except StoreError as exc:
                if not failing:
                    logger.warning("live feed cannot read the change log: %s", exc.message)
                    self._set_feed(FeedState.RECONNECTING, f"sqlite: {exc.message}")
                failing = True
                continue
            if failing:
                failing = False
                self._set_feed(FeedState.LIVE, _LIVE)
                self._publish(_SYNC)  # the outage may have outlived the change log's retention
            if batch is not None:
                seq = self._dispatch(seq, *batch)

    def _dispatch(self, seq: int, last: int, missed: bool, rows: builtins.list[ChangeRow]) -> int:
        if missed:
            logger.warning("live feed missed pruned changes after #%d; re-syncing", seq)
            self._publish(_SYNC)
        for op, row in rows:
            try:
                self._publish(TaskChange(op, decode_task(row)))
            except StoreError as exc:
                logger.warning("%s; change dropped from the live feed", exc.message)
        return last

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def _open_db(self) -> Database:
        if self._db is None:
            raise StoreError(f"the task store {self.path} is not open")
        return self._db

    @property
    def _open_reader(self) -> Database:
        if self._reader is None:
            raise StoreError(f"the task store {self.path} is not open")
        return self._reader

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the writing connection's thread, outside the group transaction."""
        return await self._run(self.writer.call, fn, *args)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the write `fn` in the writer's next group transaction, then prune if it is time."""
        result = await self._run(self.writer.write, fn, *args)
        db = self._db
        if db is not None and time.monotonic() >= db.next_prune:
            try:
                await self._run(self.writer.bulk_write, db.prune)
            except StoreError as exc:
                # The write that got us here has committed; pruning can wait for the next turn.
                logger.warning("change log not pruned, will try again: %s", exc.message)
        return result

    async def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the writer's thread in its next group transaction (StoreError on failure).

        For writes that span the store's and the queue's tables (`core.sqlite_steps`).
        """
        return await self._write(fn, *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the reading connection's thread."""
        executor = self._read_executor
        if executor is None:
            raise StoreError(f"the task store {self.path} is not open")
        return await self._run(asyncio.get_running_loop().run_in_executor, executor, fn, *args)

    async def _run(self, how: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await `how(*args)`, with SQLite's errors turned into StoreErrors that say what failed."""
        if self._read_executor is None:
            raise StoreError(f"the task store {self.path} is not open")
        try:
            return await how(*args)
        except sqlite3.OperationalError as exc:
            if sqlite_file.is_busy(exc):
                raise StoreError(
                    f"the task database {self.path} stayed locked by another process for over "
                    f"{self._busy_timeout:.0f}s"
                ) from exc
            raise StoreError(f"the task database {self.path} failed: {_problem(exc)}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"the task database {self.path} failed: {_problem(exc)}") from exc

    def _set_feed(self, state: FeedState, detail: str) -> None:
        self.feed.state = state
        self.feed.detail = detail


def _event_values(event: TaskEvent | None, task_id: str) -> builtins.list[Any] | None:
    if event is None:
        return None
    values = encode_event(msgspec.structs.astuple(event))
    values[_EVENT_TASK_ID] = task_id
    return values


_EVENT_TASK_ID = EVENT_COLUMNS.index("task_id")


_PROBLEMS = {
    "SQLITE_READONLY": "it is read-only",
    "SQLITE_FULL": "the disk is full",
    "SQLITE_CORRUPT": "the file is corrupt",
    "SQLITE_NOTADB": "the file is corrupt (not an SQLite database)",
    "SQLITE_IOERR": "it cannot be written (read-only or immutable file, or a failing disk)",
    "SQLITE_CANTOPEN": "it cannot be opened",
}


def _problem(exc: sqlite3.Error) -> str:
    """SQLite's message with the problem named in plain words where the error code tells it."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    for prefix, words in _PROBLEMS.items():
        if name.startswith(prefix):
            return f"{words} ({exc})"
    return str(exc)
