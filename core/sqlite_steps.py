"""StepWrites on one SQLite file: a step's row and its next message in one transaction.

The task store and the local queue share one `SqliteWriter` (`core.wiring` sets that up), so
the compare-and-set of the row and the insert of the message run in one write of one group
transaction: both commit or neither does, a message is never visible before the row that
expects it, and a compare-and-set that misses stores no message.

Such a message skips the queue's deduplication: its id (task, attempt, step, seq) is published
only after the compare-and-set that moves the row to that step (a submit to `running`, `polls`
on by one), and one such write wins per attempt and seq, whoever makes it: a step here, or the
reconciler, which counts a lost poll as made before it publishes the next seq. A new task's
first message is inserted with the row that creates the task, so no earlier copy exists; a
copy the reconciler publishes later (its message seemed lost) is run once by the worker's
submit claim, as any duplicate submit is.

A step that a local delivery runs also acks that delivery's message in the same write
(`LocalQueue.in_hand`): the step's outcome, its next message and the ack commit together, and
the queue has no ack of its own to write afterwards. With a next message, the ack and the
insert are one statement: the delivered row is rewritten as the next message
(`local_db.replace_row`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.models import Task, TaskEvent, WorkMessage
from core.queue.local import InHand, LocalQueue
from core.queue.local_db import ack_row, insert_row, replace_row
from core.steps import NextStep
from core.store import Expect
from core.store.sqlite import PreparedInsert, PreparedUpdate, SqliteStore, Stored


class SqliteStepWrites:
    """StepWrites for a SqliteStore and a LocalQueue that share one writer."""

    def __init__(self, store: SqliteStore, queue: LocalQueue) -> None:
        if store.writer is not queue.writer:
            raise ValueError("the store and the queue must share one SqliteWriter")
        self.store = store
        self.queue = queue

    async def submitted(
        self, task: Task, event: TaskEvent, images: Sequence[str], message: WorkMessage
    ) -> tuple[Task, bool]:
        row, _ = self.queue.prepare_publish(message)
        prepared = self.store.prepare_insert(task, event, images)
        stored = await self.store.run_write(self._insert, prepared, row)
        self.queue.published(message, row, row[0], stored=True)
        return self.store.inserted(prepared, stored), True

    async def poll_next(self, step: NextStep) -> Task | None:
        return await self._together(step, record_id=True)

    async def started(self, step: NextStep) -> Task | None:
        return await self._together(step, record_id=False)

    async def finished(
        self, task_id: str, expect: Expect, changes: Mapping[str, Any], event: TaskEvent
    ) -> Task | None:
        prepared = self.store.prepare_update(task_id, expect, changes, event)
        if prepared is None:
            return None
        return self.store.updated(prepared, await self._update(prepared, None))

    async def _together(self, step: NextStep, *, record_id: bool) -> Task | None:
        row, _ = self.queue.prepare_publish(step.message, step.delay)
        changes = {**step.changes, "message_id": row[0]} if record_id else step.changes
        prepared = self.store.prepare_update(step.task_id, step.expect, changes, step.event)
        if prepared is None:
            return None
        stored = await self._update(prepared, row)
        if stored is not None:
            self.queue.published(step.message, row, row[0], stored=True)
        return self.store.updated(prepared, stored)

    async def _update(self, prepared: PreparedUpdate, row: tuple[Any, ...] | None) -> Stored:
        """Run the update and its message (if any) in one write, which also acks the local
        delivery running this step, if there is one; marked acked once committed."""
        in_hand = self.queue.in_hand(prepared.task_id)
        stored, acked = await self.store.run_write(self._write, prepared, row, in_hand)
        if acked:
            assert in_hand is not None
            in_hand.acked = True
        return stored

    def _write(
        self, prepared: PreparedUpdate, row: tuple[Any, ...] | None, in_hand: InHand | None
    ) -> tuple[Stored, bool]:
        """In the group transaction: the compare-and-set, then, if it applied, its message (if
        any) and the ack of the delivery that ran the step (if it is still ours)."""
        stored = self.store.apply_update(prepared)
        if stored is None:
            return None, False
        db = self.store.writer.connection
        if row is None:
            return stored, in_hand is not None and ack_row(db, in_hand.claim)
        if in_hand is not None and replace_row(db, in_hand.claim, row):
            return stored, True  # the delivered message's row is the next message now
        insert_row(db, row)  # no delivery runs this step, or it lost its lease: no ack
        return stored, False

    def _insert(self, prepared: PreparedInsert, row: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """In the group transaction: the new task, then its first message."""
        stored = self.store.apply_insert(prepared)
        insert_row(self.store.writer.connection, row)
        return stored


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
