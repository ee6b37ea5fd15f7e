"""StepWrites on one SQLite file: a step's row and its next message in one transaction.

The task store and the local queue share one `SqliteWriter` (`core.wiring` sets that up), so
the compare-and-set of the row and the insert of the message run in one savepoint of one group
transaction: both commit or neither does, a message is never visible before the row that
expects it, and a compare-and-set that misses takes its message back.
"""

from __future__ import annotations

from typing import Any

from core.models import Task
from core.queue.local import LocalQueue
from core.queue.local_db import publish_row
from core.sqlite_file import Undo
from core.steps import NextStep
from core.store.sqlite import PreparedUpdate, SqliteStore

_Outcome = tuple[tuple[Any, ...] | None, str, bool]


class SqliteStepWrites:
    """StepWrites for a SqliteStore and a LocalQueue that share one writer."""

    def __init__(self, store: SqliteStore, queue: LocalQueue) -> None:
        if store.writer is not queue.writer:
            raise ValueError("the store and the queue must share one SqliteWriter")
        self.store = store
        self.queue = queue

    async def poll_next(self, step: NextStep) -> Task | None:
        return await self._together(step, record_id=True)

    async def started(self, step: NextStep) -> Task | None:
        return await self._together(step, record_id=False)

    async def _together(self, step: NextStep, *, record_id: bool) -> Task | None:
        changes = {**step.changes, "message_id": ""} if record_id else step.changes
        # The empty message_id is a placeholder: the publish in the same transaction fills it.
        prepared = self.store.prepare_update(step.task_id, step.expect, changes, step.event)
        if prepared is None:
            return None
        row, cutoff = self.queue.prepare_publish(step.message, step.delay)
        id_at = prepared.columns.index("message_id") if record_id else None
        stored_row, message_id, stored = await self.store.run_write(
            self._write, prepared, row, cutoff, id_at
        )
        if stored_row is not None:
            self.queue.published(step.message, row, message_id, stored)
        return self.store.updated(step.task_id, stored_row)

    def _write(
        self, prepared: PreparedUpdate, row: tuple[Any, ...], cutoff: float, id_at: int | None
    ) -> _Outcome:
        """On the writer's thread: publish, then the compare-and-set; undo both if it missed."""
        message_id, stored = publish_row(self.store.writer.connection, row, cutoff)
        if id_at is not None:
            prepared.params[id_at] = message_id
        stored_row = self.store.apply_update(prepared)
        if stored_row is None:
            raise Undo((None, message_id, False))
        return stored_row, message_id, stored


def joined(store: object, queue: object) -> SqliteStepWrites | None:
    """One transaction per step for a SqliteStore and a LocalQueue on one file, else None.

    The queue then writes through the store's writer; a queue opened already keeps its own.
    """
    if not isinstance(store, SqliteStore) or not isinstance(queue, LocalQueue):
        return None
    if store.path.resolve() != queue.path.resolve():
        return None
    if queue.writer is not store.writer:
        if queue.is_open:
            return None
        queue.share_writer(store.writer)
    return SqliteStepWrites(store, queue)
