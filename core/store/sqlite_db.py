"""The synchronous SQLite side of SqliteStore: schema, column encoding, and the statements.

`Database` runs on the store's one thread only. Its tables are `video_tasks` (one column per
Task field: timestamps as fixed-width ISO-8601 UTC text, hd as 0/1), `task_images` (a task's
images, read only by the submit),
`task_events` (the history) and `change_log` (what the live feed of other processes tails).
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

import msgspec

from core.errors import StoreError
from core.models import TASK_COLUMNS, ChangeOp, Task, TaskEvent, TaskStatus
from core.sqlite_file import transaction
from core.store import unreadable_row

logger = logging.getLogger(__name__)

EVENT_COLUMNS: tuple[str, ...] = TaskEvent.__struct_fields__
CHANGE_LOG_RETENTION = 600.0
"""Seconds a change_log row is kept; a feed that falls further behind re-syncs."""
PRUNE_EVERY = 60.0
_SELECT = ", ".join(TASK_COLUMNS)
_SQL_TYPES = {
    "time": "TEXT",
    "json": "TEXT",
    "text": "TEXT",
    "bool": "INTEGER",
    "int": "INTEGER",
    "float": "REAL",
}


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The annotation without `| None`, and whether None was allowed."""
    if get_origin(annotation) in (Union, UnionType):
        args = get_args(annotation)
        (inner,) = [arg for arg in args if arg is not NoneType]
        return inner, NoneType in args
    return annotation, False


def _kind(annotation: Any) -> str:
    inner, _ = _unwrap(annotation)
    if get_origin(inner) is Literal:
        inner = type(get_args(inner)[0])
    elif get_origin(inner) is not None:
        return "json"
    return {datetime: "time", bool: "bool", int: "int", float: "float"}.get(inner, "text")


_FIELDS = {
    field.name: field for model in (TaskEvent, Task) for field in msgspec.structs.fields(model)
}
_KINDS = {name: _kind(field.type) for name, field in _FIELDS.items()}


def _columns_sql(model: Any) -> list[str]:
    return [
        f"{field.name} {_SQL_TYPES[_KINDS[field.name]]}"
        + ("" if _unwrap(field.type)[1] else " NOT NULL")
        for field in msgspec.structs.fields(model)
        if field.name != "id"
    ]


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS video_tasks (id TEXT PRIMARY KEY NOT NULL, {", ".join(_columns_sql(Task))});
CREATE INDEX IF NOT EXISTS video_tasks_created ON video_tasks (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS video_tasks_status ON video_tasks (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS video_tasks_user ON video_tasks (user_id, created_at DESC, id DESC);
DROP INDEX IF EXISTS video_tasks_status_updated;
CREATE TABLE IF NOT EXISTS task_events (
    id INTEGER PRIMARY KEY, {", ".join(_columns_sql(TaskEvent))});
CREATE INDEX IF NOT EXISTS task_events_task ON task_events (task_id, id);
CREATE TABLE IF NOT EXISTS store_probe (id INTEGER PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS task_images (task_id TEXT NOT NULL, position INTEGER NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (task_id, position));
CREATE TABLE IF NOT EXISTS change_log (seq INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL, op TEXT NOT NULL, origin TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS qstash_usage (day TEXT PRIMARY KEY NOT NULL,
    published INTEGER NOT NULL DEFAULT 0, delivered INTEGER NOT NULL DEFAULT 0);
"""  # noqa: E501
# Write amplification: every step rewrites updated_at, so an index on it (the reconciler's
# filter, which reads only active tasks through video_tasks_status) cost a B-tree write per step
# and is dropped. Neither task_events ids nor change_log seqs need AUTOINCREMENT, whose
# sqlite_sequence row cost a page write per commit (files made before keep it): a new rowid is
# one past the largest, and the tailers' "never a seq used twice" holds because `_PRUNE` only
# deletes rows older than a recent one, so the newest row is never pruned.
# Tasks per owner and status, kept by triggers in the writing transaction, so counting reads a
# few rows instead of scanning the table. Made (and filled from the table) once per file.
_COUNTS = (
    """CREATE TABLE task_counts (user_id TEXT NOT NULL, status TEXT NOT NULL,
    tasks INTEGER NOT NULL, PRIMARY KEY (user_id, status)) WITHOUT ROWID""",
    "INSERT INTO task_counts SELECT user_id, status, count(*) FROM video_tasks GROUP BY 1, 2",
    """CREATE TRIGGER task_counts_insert AFTER INSERT ON video_tasks BEGIN
    INSERT INTO task_counts VALUES (new.user_id, new.status, 1)
        ON CONFLICT DO UPDATE SET tasks = tasks + 1;
END""",
    """CREATE TRIGGER task_counts_delete AFTER DELETE ON video_tasks BEGIN
    UPDATE task_counts SET tasks = tasks - 1 WHERE user_id = old.user_id AND status = old.status;
END""",
    """CREATE TRIGGER task_counts_update AFTER UPDATE OF status, user_id ON video_tasks
WHEN old.status IS NOT new.status OR old.user_id IS NOT new.user_id BEGIN
    UPDATE task_counts SET tasks = tasks - 1 WHERE user_id = old.user_id AND status = old.status;
    INSERT INTO task_counts VALUES (new.user_id, new.status, 1)
        ON CONFLICT DO UPDATE SET tasks = tasks + 1;
END""",
)
_ADD_USAGE = """INSERT INTO qstash_usage (day, published, delivered) VALUES (?, ?, ?)
ON CONFLICT (day) DO UPDATE SET published = published + excluded.published,
    delivered = delivered + excluded.delivered
RETURNING published, delivered"""
# Columns added since the first release: (definition, backfill) to add them to an older file.
_ADDED_COLUMNS: dict[str, tuple[str, str | None]] = {
    # Earlier versions marked an own-key attempt only by this note on the event that queued it.
    "own_key": (
        "INTEGER NOT NULL DEFAULT 0",
        "UPDATE video_tasks SET own_key = 1 WHERE id IN (SELECT task_id FROM task_events"
        " WHERE detail = 'with the user''s own upstream key')",
    ),
    "polls_without_progress": ("INTEGER NOT NULL DEFAULT 0", None),
}
# Files made before task_images kept the images in the row: move them out, once.
_MOVE_IMAGES = (
    "ALTER TABLE video_tasks ADD COLUMN image_count INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE video_tasks ADD COLUMN image_bytes INTEGER NOT NULL DEFAULT 0",
    "INSERT OR IGNORE INTO task_images (task_id, position, data)"
    " SELECT t.id, j.key, j.value FROM video_tasks AS t, json_each(t.images) AS j"
    " WHERE json_valid(t.images)",
    "UPDATE video_tasks SET image_count = (SELECT count(*) FROM task_images WHERE task_id = id),"
    " image_bytes = (SELECT coalesce(sum(length(CAST(data AS BLOB))), 0) FROM task_images"
    " WHERE task_id = id)",
    "ALTER TABLE video_tasks DROP COLUMN images",
)
_INSERT = f"INSERT INTO video_tasks ({_SELECT}) VALUES ({', '.join('?' * len(TASK_COLUMNS))})"
_INSERT_EVENT = (
    f"INSERT INTO task_events ({', '.join(EVENT_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
)
_INSERT_IMAGE = "INSERT INTO task_images (task_id, position, data) VALUES (?, ?, ?)"
_IMAGES = "SELECT data FROM task_images WHERE task_id = ? ORDER BY position"
GET = f"SELECT {_SELECT} FROM video_tasks WHERE id = ?"
_VERSION = "SELECT version FROM video_tasks WHERE id = ?"
# Walks the video_tasks_user index only (it holds created_at): no row is read.
NEWEST_CREATED = """SELECT created_at FROM video_tasks WHERE user_id = ?
ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?"""
_LOG = "INSERT INTO change_log (task_id, op, origin, at) VALUES (?, ?, ?, ?)"
_TAIL = f"""SELECT c.task_id, c.op, {", ".join(f"t.{name}" for name in TASK_COLUMNS)}
FROM change_log AS c JOIN video_tasks AS t ON t.id = c.task_id
WHERE c.seq > ? AND c.seq <= ? AND c.origin <> ? ORDER BY c.seq"""
_PROBE = "INSERT OR REPLACE INTO store_probe (id, at) VALUES (1, ?)"
_BOUNDS = "SELECT (SELECT min(seq) FROM change_log), (SELECT max(seq) FROM change_log)"
_PRUNABLE = "status IN ({}) AND updated_at < ?"
_PRUNE_TASKS = """DELETE FROM video_tasks WHERE id IN (SELECT id FROM video_tasks WHERE {} LIMIT ?)
RETURNING id, status"""
_PRUNE = """DELETE FROM change_log
WHERE seq < (SELECT seq FROM change_log WHERE at >= ? ORDER BY seq LIMIT 1)"""


_RFC3339 = msgspec.json.Encoder().encode


def encode_time(moment: datetime | str) -> str:
    """Fixed-width ISO-8601 UTC text, so text order is time order (naive means UTC)."""
    if type(moment) is datetime and moment.tzinfo is UTC and moment.microsecond:
        # What every step writes, about six times a step. With microseconds the RFC 3339 text
        # has the fixed width already: msgspec writes it as isoformat() would, but for "Z" in
        # place of "+00:00", in a seventh of the time (0.17 µs vs 1.3).
        return _RFC3339(moment)[1:-2].decode() + "+00:00"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _encode_json(value: Any) -> str:
    return json.dumps(list(value))


def _encode_bool(value: Any) -> int:
    return int(bool(value))


def _encode_plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


_ENCODERS = {"time": encode_time, "json": _encode_json, "bool": _encode_bool}


def _coder(name: str) -> Callable[[Any], Any] | None:
    """How column `name`'s values are encoded: None where they are stored as they are."""
    kind = _KINDS[name]
    if kind in _ENCODERS:
        return _ENCODERS[kind]
    inner, _ = _unwrap(_FIELDS[name].type)
    return _encode_plain if isinstance(inner, type) and issubclass(inner, Enum) else None


_ENCODE = {name: _coder(name) for name in _KINDS}


def encode(name: str, value: Any) -> Any:
    """A column value as SQLite stores it."""
    coder = _ENCODE[name]
    return value if value is None or coder is None else coder(value)


@functools.lru_cache(maxsize=512)
def encode_values(names: tuple[str, ...]) -> Callable[[Sequence[Any]], list[Any]]:
    """A function that encodes the values of the columns `names`, given in that order (a Task's
    or TaskEvent's `msgspec.structs.astuple()`, or an update's values).

    The hot paths' form of `encode`: one pass over the values, no look-up per column, and no
    call at all for a column stored as it is (a plain text or number).
    """
    coders = tuple(_ENCODE[name] for name in names)

    def encoded(values: Sequence[Any]) -> list[Any]:
        return [
            value if coder is None or value is None else coder(value)
            for coder, value in zip(coders, values, strict=True)
        ]

    return encoded


encode_task = encode_values(TASK_COLUMNS)
encode_event = encode_values(EVENT_COLUMNS)


_TASK_COLUMN_SET = frozenset(TASK_COLUMNS)
# Each task column's Python type and whether it may be None (`stored_as_is`).
_NATIVE = {name: _unwrap(_FIELDS[name].type) for name in TASK_COLUMNS}


def stored_as_is(names: tuple[str, ...], values: Sequence[Any]) -> bool:
    """Whether the `values` of task columns `names` read back from the file as these very values.

    True for the types a Task holds (a datetime only in UTC); a value the encoding would
    normalise (an ISO string, a naive or non-UTC datetime, an int for a bool) is not.
    """
    for (kind, optional), value in zip(_natives(names), values, strict=True):
        if value is None:
            if not optional:
                return False
        elif type(value) is not kind or (kind is datetime and value.tzinfo is not UTC):
            return False
    return True


@functools.lru_cache(maxsize=512)
def _natives(names: tuple[str, ...]) -> tuple[tuple[Any, bool], ...]:
    return tuple(_NATIVE[name] for name in names)


def check_columns(names: Collection[str], what: str) -> None:
    """Raise ValueError unless every name is a task column (they are spliced into SQL)."""
    if _TASK_COLUMN_SET.issuperset(names):
        return
    unknown = sorted(set(names) - _TASK_COLUMN_SET)
    raise ValueError(f"{what} names unknown task column(s): {', '.join(unknown)}")


@functools.lru_cache(maxsize=64)
def status_values(statuses: frozenset[TaskStatus]) -> tuple[str, ...]:
    """The statuses as stored, sorted (a compare-and-set expects few distinct sets)."""
    return tuple(sorted({TaskStatus(status).value for status in statuses}))


@functools.lru_cache(maxsize=512)
def update_sql(
    columns: tuple[str, ...],
    statuses: int,
    attempt: bool,
    polls: bool,
    extra: tuple[str, ...],
    lease_free: bool = False,
) -> str:
    """The compare-and-set statement for one shape of update (few shapes exist).

    `lease_free`: the row holds no step lease live at the moment given last.
    """
    sets = [f"{name} = ?" for name in columns] + ["version = version + 1", "updated_at = ?"]
    where = ["id = ?", f"status IN ({', '.join('?' * statuses)})"]
    where += ["attempt = ?"] * attempt + ["polls = ?"] * polls
    where += [f"{name} IS ?" for name in extra]  # IS: an expected None matches NULL
    # `not Task.step_claimed(now)` in SQL; fixed-width UTC text sorts in time order.
    where += ["(step_lease_until IS NULL OR step_lease_until <= ?)"] * lease_free
    return f"UPDATE video_tasks SET {', '.join(sets)} WHERE {' AND '.join(where)} RETURNING version"


def list_sql(
    statuses: int | None, *, user: bool, updated_before: bool, updated_since: bool, id_range: bool
) -> str:
    """The SELECT behind `list()`, newest first; parameters in the order of the arguments."""
    where = [f"status IN ({', '.join('?' * statuses)})"] if statuses is not None else []
    where += ["user_id = ?"] * user + ["updated_at < ?"] * updated_before
    where += ["updated_at >= ?"] * updated_since
    where += ["id >= ? AND id < ?"] * id_range
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {_SELECT} FROM video_tasks{clause} ORDER BY created_at DESC, id DESC LIMIT ?"


def decode_task(row: tuple[Any, ...]) -> Task:
    """A `video_tasks` row (columns in TASK_COLUMNS order) as a Task, checked by msgspec."""
    try:
        return Task.from_row(dict(zip(TASK_COLUMNS, row, strict=True)))
    except ValueError as exc:
        raise unreadable_row(row[0], exc) from exc


ChangeRow = tuple[ChangeOp, tuple[Any, ...]]

_PREPARING: dict[str, threading.Lock] = {}
_PREPARING_GUARD = threading.Lock()


def _preparing(path: Path) -> threading.Lock:
    """One lock per file, so this process's stores bring it up to date one at a time.

    Stores opening an old file at once otherwise each run every migration step, and their
    busy handlers can starve one another past the busy timeout; other processes still wait
    on SQLite's own lock.
    """
    with _PREPARING_GUARD:
        return _PREPARING.setdefault(str(path.resolve()), threading.Lock())


class Database:
    """The synchronous side; every method runs on the store's one thread."""

    def __init__(
        self, db: sqlite3.Connection, path: Path, origin: str, *, prepare: bool = True
    ) -> None:
        self.origin = origin
        self.db = db
        if prepare:  # the reading connection opens a file its writing twin prepared
            with _preparing(path):
                self._prepare(path)
        self.data_version = -1
        self.next_prune = time.monotonic() + PRUNE_EVERY

    def _prepare(self, path: Path) -> None:
        self.db.executescript(_SCHEMA)
        if "images" in self._columns():
            self._move_images()
        for column in sorted(set(_ADDED_COLUMNS) - self._columns()):
            self._add_column(column)
        if not self._has_table("task_counts"):
            self._keep_counts()
        if missing := sorted(set(TASK_COLUMNS) - self._columns()):
            raise StoreError(
                f"the task database {path} was made by another videoq version "
                f"(no column {', '.join(missing)}); move it away to start afresh"
            )

    def _has_table(self, name: str) -> bool:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self.db.execute(sql, (name,)).fetchone() is not None

    def _keep_counts(self) -> None:
        """Make the kept counts of a file that has none yet, filled from its tasks."""
        with transaction(self.db):
            if self._has_table("task_counts"):
                return  # another process opening the same file made them first
            for statement in _COUNTS:
                self.db.execute(statement)
        logger.debug("task database: counts by status are kept from now on")

    def _add_column(self, column: str) -> None:
        """Bring a file made by an earlier videoq up to date with one added column."""
        definition, backfill = _ADDED_COLUMNS[column]
        with transaction(self.db):
            if column in self._columns():
                return  # another process opening the same file added it first
            self.db.execute(f"ALTER TABLE video_tasks ADD COLUMN {column} {definition}")
            if backfill:
                self.db.execute(backfill)
        logger.info("task database: added column %s", column)

    def _move_images(self) -> None:
        """Move the images of a file made before task_images out of the task rows."""
        with transaction(self.db):
            if "images" not in self._columns():
                return  # another process opening the same file moved them first
            for statement in _MOVE_IMAGES:
                self.db.execute(statement)
        logger.info("task database: moved images out of the task rows")

    def _columns(self) -> set[str]:
        return {row[1] for row in self.db.execute("PRAGMA table_info(video_tasks)")}

    def close(self) -> None:
        self.db.close()

    # The writes below run inside the writer's group transaction (SqliteWriter.write).

    def insert(
        self, task_id: str, values: list[Any], event: list[Any] | None, images: tuple[str, ...]
    ) -> None:
        try:
            self.db.execute(_INSERT, values)
            self.db.executemany(_INSERT_IMAGE, [(task_id, *item) for item in enumerate(images)])
            self._logged(task_id, "INSERT", event)
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"task {task_id}: a task with this id already exists") from exc

    def images(self, task_id: str) -> tuple[str, ...]:
        return tuple(row[0] for row in self.db.execute(_IMAGES, (task_id,)))

    def update(
        self, task_id: str, sql: str, params: list[Any], event: list[Any] | None, *, told: bool
    ) -> int | None:
        """The row's new version, or None when the compare-and-set did not apply.

        `told`: a change-log row tells other processes' feeds.
        """
        row = self.db.execute(sql, params).fetchone()
        if row is None:
            return None
        self._logged(task_id, "UPDATE", event, told)
        return int(row[0])

    def _logged(self, task_id: str, op: str, event: list[Any] | None, told: bool = True) -> None:
        if event is not None:
            self.db.execute(_INSERT_EVENT, event)
        if told:
            self.db.execute(_LOG, (task_id, op, self.origin, time.time()))

    def probe_write(self) -> None:
        """One small real write (an update that matches nothing writes no page)."""
        self.db.execute("INSERT OR REPLACE INTO store_probe (id, at) VALUES (1, ?)", (time.time(),))

    def add_usage(self, day: str, published: int, delivered: int) -> tuple[int, int]:
        """Add to one day's QStash message counts; the day's totals after."""
        with transaction(self.db):
            row = self.db.execute(_ADD_USAGE, (day, published, delivered)).fetchone()
        return int(row[0]), int(row[1])

    def get(self, task_id: str) -> tuple[Any, ...] | None:
        return self.db.execute(GET, (task_id,)).fetchone()

    def version(self, task_id: str) -> int | None:
        """The row's version alone (None: no such task)."""
        row = self.db.execute(_VERSION, (task_id,)).fetchone()
        return None if row is None else int(row[0])

    def select(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, params).fetchall()

    def add_event(self, event: list[Any]) -> None:
        self.db.execute(_INSERT_EVENT, event)

    def events(self, task_id: str) -> list[tuple[Any, ...]]:
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM task_events WHERE task_id = ? ORDER BY id"
        return self.db.execute(sql, (task_id,)).fetchall()

    def count_by_status(self, user_id: str | None) -> list[tuple[str, int]]:
        # The kept counts (task_counts): a few rows per owner, however many tasks there are.
        if user_id is None:
            sql = "SELECT status, sum(tasks) FROM task_counts GROUP BY status"
            return self.db.execute(sql).fetchall()
        sql = "SELECT status, tasks FROM task_counts WHERE user_id = ?"
        return self.db.execute(sql, (user_id,)).fetchall()

    def count_prunable(self, statuses: list[str], before: str) -> list[tuple[str, int]]:
        """How many tasks `prune_tasks` would delete, per status."""
        where = _PRUNABLE.format(", ".join("?" * len(statuses)))
        sql = f"SELECT status, count(*) FROM video_tasks WHERE {where} GROUP BY status"
        return self.db.execute(sql, [*statuses, before]).fetchall()

    def prune_tasks(self, statuses: list[str], before: str, batch: int) -> list[tuple[str, int]]:
        """Delete up to `batch` such tasks with their history and images; counts per status."""
        sql = _PRUNE_TASKS.format(_PRUNABLE.format(", ".join("?" * len(statuses))))
        rows = self.db.execute(sql, [*statuses, before, batch]).fetchall()
        ids = [(task_id,) for task_id, _ in rows]
        self.db.executemany("DELETE FROM task_events WHERE task_id = ?", ids)
        self.db.executemany("DELETE FROM task_images WHERE task_id = ?", ids)
        return list(Counter(status for _, status in rows).items())

    def last_seq(self) -> int:
        """Where tailing starts: the newest change_log row now."""
        self.data_version = self.db.execute("PRAGMA data_version").fetchone()[0]
        return self.db.execute(_BOUNDS).fetchone()[1] or 0

    def tail(self, seq: int) -> tuple[int, bool, list[ChangeRow]] | None:
        """Other writers' changes after `seq` (newest row per task), or None if none committed.

        Returns the new position, whether rows after `seq` were pruned unseen, and the rows.
        """
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        if version == self.data_version:
            return None  # no other connection has committed since the last look
        self.data_version = version
        self.db.execute("BEGIN")
        try:
            first, last = self.db.execute(_BOUNDS).fetchone()
            if last is None or last <= seq:
                return None
            latest: dict[str, ChangeRow] = {}
            for task_id, op, *row in self.db.execute(_TAIL, (seq, last, self.origin)):
                if task_id in latest and latest[task_id][0] == "INSERT":
                    op = "INSERT"  # the subscriber has not seen it yet
                latest.pop(task_id, None)
                latest[task_id] = (op, tuple(row))
        finally:
            self.db.execute("COMMIT")
        return last, first > seq + 1, list(latest.values())

    def prune(self) -> None:
        """Forget change_log rows past their retention (every live feed has read them)."""
        self.next_prune = time.monotonic() + PRUNE_EVERY
        self.db.execute(_PRUNE, (time.time() - CHANGE_LOG_RETENTION,))
