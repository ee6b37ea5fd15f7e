"""A step's row and its next message (a new task's row and its first message too): one
transaction when the store and the queue share a file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.errors import StoreError
from core.models import Task, TaskEvent, TaskStatus, VideoRequest, WorkMessage
from core.queue import Delivery, DeliveryResult
from core.queue.local import LocalQueue
from core.runtime import Runtime
from core.service import first_step
from core.sqlite_steps import SqliteStepWrites
from core.steps import NextStep, SeparateWrites
from core.store import Expect
from core.supervisor import supervise
from core.upstream import UpstreamState, UpstreamStatus
from tests.conformance.store_contract import new_task

RUNNING = TaskStatus.RUNNING


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    """The embedded runtime (SQLite store, local queue on one file), opened."""
    settings = Settings(_env_file=None, db_path=tmp_path / "v.db")  # type: ignore[call-arg]
    async with Runtime.from_settings(settings) as opened:
        yield opened


def poll(task: Task, seq: int) -> WorkMessage:
    return WorkMessage(task_id=task.id, attempt=task.attempt, step="poll", seq=seq)


def queued_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id FROM queue_messages ORDER BY deliver_at").fetchall()
    db.close()
    return [row[0] for row in rows]


async def running_task(runtime: Runtime) -> Task:
    return await runtime.store.insert(new_task(status=RUNNING, upstream_task_id="up-1"))


def event(task: Task) -> TaskEvent:
    return TaskEvent(task_id=task.id, kind="poll", attempt=task.attempt, actor="worker")


def first_poll(task: Task, delay: float = 0) -> NextStep:
    """The step of a running task's first poll: `polls` 0 → 1, poll 2 published."""
    expect = Expect(frozenset({RUNNING}), polls=0)
    return NextStep(task.id, expect, {"polls": 1}, event(task), poll(task, 2), delay)


async def test_the_embedded_store_and_queue_write_steps_in_one_transaction(
    runtime: Runtime, tmp_path: Path
) -> None:
    assert isinstance(runtime.steps, SqliteStepWrites)
    task = await running_task(runtime)

    written = await runtime.steps.poll_next(first_poll(task))

    assert written is not None and written.polls == 1
    assert queued_ids(tmp_path / "v.db") == [written.message_id]


async def test_a_compare_and_set_that_misses_takes_its_message_back(
    runtime: Runtime, tmp_path: Path
) -> None:
    task = await running_task(runtime)

    stale = Expect(frozenset({RUNNING}), polls=7)
    missed = await runtime.steps.poll_next(
        NextStep(task.id, stale, {"polls": 8}, event(task), poll(task, 9), 0)
    )
    queued = Expect(frozenset({TaskStatus.QUEUED}))
    started = await runtime.steps.started(
        NextStep(task.id, queued, {}, event(task), poll(task, 1), 0)
    )

    assert missed is None and started is None
    assert queued_ids(tmp_path / "v.db") == []
    assert runtime.queue.counts.published == 0  # type: ignore[attr-defined]


async def test_a_row_write_that_fails_publishes_nothing(runtime: Runtime, tmp_path: Path) -> None:
    task = await running_task(runtime)

    with pytest.raises(StoreError):
        # provider is NOT NULL: the update fails inside the transaction, after the publish.
        broken = {"provider": None}
        await runtime.steps.started(
            NextStep(task.id, Expect(frozenset({RUNNING})), broken, event(task), poll(task, 1), 0)
        )

    assert queued_ids(tmp_path / "v.db") == []
    assert await runtime.store.get(task.id) == task


async def deliver_once(
    runtime: Runtime,
    message: WorkMessage,
    write: Callable[[], Awaitable[object]],
    answer: DeliveryResult,
) -> None:
    """Deliver `message` through the local queue to a handler that runs `write`, then answers
    `answer`; stop once it has answered."""
    queue = runtime.queue
    assert isinstance(queue, LocalQueue)
    await queue.publish(message)
    stop = asyncio.Event()

    async def handler(delivery: Delivery) -> DeliveryResult:
        assert WorkMessage.from_bytes(delivery.body) == message
        await write()
        stop.set()
        return answer

    await asyncio.wait_for(queue.run(handler, stop), 10)


async def first_poll_delivered_after(runtime: Runtime, tmp_path: Path, sql: str) -> Task:
    """A running task's first poll, run by a local delivery whose message row another
    connection changes by `sql` just before the step's write; the task as written."""
    task = await running_task(runtime)

    async def changed_then_written() -> None:
        with sqlite3.connect(tmp_path / "v.db") as other:
            other.execute(sql)
        other.close()
        await runtime.steps.poll_next(first_poll(task, delay=60))

    await deliver_once(runtime, poll(task, 1), changed_then_written, DeliveryResult(200))
    written = await runtime.store.get(task.id)
    assert written is not None
    return written


def queue_rows(path: Path, columns: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        rows = db.execute(f"SELECT {columns} FROM queue_messages").fetchall()
    db.close()
    return rows


async def test_a_local_delivery_is_acknowledged_by_the_step_it_runs(
    runtime: Runtime, tmp_path: Path
) -> None:
    """The step's row, its next message and the ack commit together: whatever the handler
    answers after that, the delivery is done (its step has moved the row on)."""
    task = await running_task(runtime)
    step = first_poll(task, delay=60)

    await deliver_once(
        runtime,
        poll(task, 1),
        lambda: runtime.steps.poll_next(step),
        DeliveryResult(503, reason="after the write"),
    )

    written = await runtime.store.get(task.id)
    assert written is not None and written.polls == 1
    assert queued_ids(tmp_path / "v.db") == [written.message_id]
    assert runtime.queue.counts.delivered == 1  # type: ignore[attr-defined]
    assert runtime.queue.counts.retried == 0  # type: ignore[attr-defined]


async def test_a_step_whose_delivery_lost_its_lease_adds_its_message_and_acks_nothing(
    runtime: Runtime, tmp_path: Path
) -> None:
    """The delivered row is rewritten as the next message only while the delivery holds its
    lease; once another dispatcher took the message over, the row stays theirs."""
    written = await first_poll_delivered_after(
        runtime, tmp_path, "UPDATE queue_messages SET lease = 'another-dispatcher'"
    )

    assert written.polls == 1
    leases = dict(queue_rows(tmp_path / "v.db", "id, lease"))
    assert leases[written.message_id] is None  # the next poll, pending
    assert len(leases) == 2 and set(leases.values()) == {"another-dispatcher", None}
    assert runtime.queue.counts.delivered == 0  # type: ignore[attr-defined]


async def test_the_row_a_step_rewrites_starts_afresh_as_its_next_message(
    runtime: Runtime, tmp_path: Path
) -> None:
    """The delivered row keeps none of its own delivery's history: a retried delivery with a
    failure on record becomes a next message as a publish would store it."""
    written = await first_poll_delivered_after(
        runtime, tmp_path, "UPDATE queue_messages SET retried = 2, last_status = 503, reason = 'x'"
    )

    rows = queue_rows(tmp_path / "v.db", "id, dedup_id, state, retried, lease, last_status, reason")
    next_poll = poll(written, 2).dedup_id
    assert rows == [(written.message_id, next_poll, "pending", 0, None, None, None)]


async def test_a_step_that_ends_its_task_acknowledges_its_delivery_in_the_same_write(
    runtime: Runtime, tmp_path: Path
) -> None:
    task = await running_task(runtime)
    expect = Expect(frozenset({RUNNING}), polls=0)
    changes = {"status": TaskStatus.SUCCEEDED, "polls": 1, "video_url": "https://x.test/v.mp4"}

    await deliver_once(
        runtime,
        poll(task, 1),
        lambda: runtime.steps.finished(task.id, expect, changes, event(task)),
        DeliveryResult(503, reason="later"),
    )

    ended = await runtime.store.get(task.id)
    assert ended is not None and ended.status is TaskStatus.SUCCEEDED
    assert queued_ids(tmp_path / "v.db") == []
    assert runtime.queue.counts.delivered == 1  # type: ignore[attr-defined]
    assert runtime.queue.counts.retried == 0  # type: ignore[attr-defined]


async def test_every_step_of_a_worker_run_acks_its_delivery_in_the_steps_own_write(
    tmp_path: Path,
) -> None:
    """Each delivered message is acked in the transaction that records its step (the one with
    the step's history row), the step that ends the task included: no ack of its own. A step
    with a next message rewrites the delivered row as that message, in one statement."""
    settings = Settings(_env_file=None, db_path=tmp_path / "v.db", sim_speedup=100_000)  # type: ignore[call-arg]
    transactions: list[list[str]] = []

    def trace(statement: str) -> None:
        if statement == "BEGIN IMMEDIATE":
            transactions.append([])
        elif transactions:
            transactions[-1].append(statement)

    async with Runtime.from_settings(settings) as runtime:
        runtime.store.writer.connection.set_trace_callback(trace)  # type: ignore[attr-defined]
        task = await runtime.service.submit(VideoRequest.parse({"prompt": "a fox"}))
        await asyncio.wait_for(supervise(runtime, asyncio.Event(), until_idle=True), 30)
        ended = await runtime.store.get(task.id)

    def has(transaction: list[str], start: str) -> bool:
        return any(statement.startswith(start) for statement in transaction)

    deleted = [t for t in transactions if has(t, "DELETE FROM queue_messages")]
    replaced = [t for t in transactions if has(t, "UPDATE queue_messages SET id =")]
    assert ended is not None and ended.status.terminal  # the simulator fails one job in ten
    assert len(deleted) == 1  # the step that ended the task: no next message
    assert len(replaced) >= 1  # the submit, then each poll but the last
    assert all(has(t, "INSERT INTO task_events") for t in deleted + replaced)
    assert not any(has(t, "INSERT INTO queue_messages") for t in deleted + replaced)


async def test_a_local_worker_run_claims_its_submits_and_none_of_its_polls(
    tmp_path: Path,
) -> None:
    """The queue's lease makes a local poll the only delivery of its step: no claim is written
    before its upstream call (a submit's is, always)."""
    settings = Settings(_env_file=None, db_path=tmp_path / "v.db", sim_speedup=100_000)  # type: ignore[call-arg]
    claims: list[str] = []
    claim_sql = "UPDATE video_tasks SET step_lease_until = '"

    def trace(statement: str) -> None:
        if statement.startswith(claim_sql):
            claims.append(statement)

    async with Runtime.from_settings(settings) as runtime:
        runtime.store.writer.connection.set_trace_callback(trace)  # type: ignore[attr-defined]
        tasks = [await runtime.service.submit(VideoRequest.parse({"prompt": "a fox"}))]
        tasks.append(await runtime.service.submit(VideoRequest.parse({"prompt": "a hen"})))
        await asyncio.wait_for(supervise(runtime, asyncio.Event(), until_idle=True), 30)
        ended = [await runtime.store.get(task.id) for task in tasks]

    assert all(task is not None and task.status.terminal and task.polls >= 1 for task in ended)
    assert len(claims) == 2 and all("AND status IN ('queued')" in claim for claim in claims)


async def test_a_poll_run_on_its_own_writes_its_claim(runtime: Runtime) -> None:
    """Not every caller holds a queue's lease (the fallback runs steps itself): a poll run
    through `run_step` still claims its step before the upstream call."""
    task = await running_task(runtime)
    seen: list[Task | None] = []

    async def status(*args: object) -> UpstreamStatus:
        seen.append(await runtime.store.get(task.id))
        return UpstreamStatus(UpstreamState.RUNNING, "IN_PROGRESS", 10)

    upstream = runtime.worker.upstreams[task.provider]
    upstream.status = status  # type: ignore[method-assign,assignment]
    assert (await runtime.worker.run_step(poll(task, 1))).ok
    [during] = seen
    assert during is not None and during.step_claimed(datetime.now(UTC))


async def test_a_step_of_another_task_leaves_the_delivery_to_its_answer(
    runtime: Runtime, tmp_path: Path
) -> None:
    delivered, other = await running_task(runtime), await running_task(runtime)
    step = first_poll(other, delay=60)

    await deliver_once(
        runtime,
        poll(delivered, 1),
        lambda: runtime.steps.poll_next(step),
        DeliveryResult(503, reason="later"),
    )

    written = await runtime.store.get(other.id)
    assert written is not None and written.polls == 1
    assert len(queued_ids(tmp_path / "v.db")) == 2  # the other's next poll, and this one again
    assert runtime.queue.counts.delivered == 0  # type: ignore[attr-defined]
    assert runtime.queue.counts.retried == 1  # type: ignore[attr-defined]


async def test_a_submit_stores_its_task_and_first_message_in_one_transaction(
    runtime: Runtime, tmp_path: Path
) -> None:
    task = await runtime.service.submit(VideoRequest.parse({"prompt": "a fox", "duration": 10}))

    [message_id] = queued_ids(tmp_path / "v.db")
    assert isinstance(runtime.queue, LocalQueue)
    queued = await runtime.queue.get(message_id)
    assert queued is not None
    assert WorkMessage.from_bytes(queued.body) == first_step(task.id, 1)
    assert await runtime.store.get(task.id) == task
    assert task.status is TaskStatus.QUEUED and task.message_id == first_step(task.id, 1).dedup_id
    with sqlite3.connect(tmp_path / "v.db") as db:  # written with the row, not as a publish
        assert db.execute("SELECT count(*) FROM queue_dedup").fetchone() == (0,)
    db.close()


async def test_a_submit_whose_message_cannot_be_stored_leaves_no_task(
    runtime: Runtime, tmp_path: Path
) -> None:
    with sqlite3.connect(tmp_path / "v.db") as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON queue_messages BEGIN"
            " SELECT RAISE(ABORT, 'no room for messages'); END"
        )
    db.close()

    with pytest.raises(StoreError, match="no room for messages"):
        await runtime.service.submit(VideoRequest.parse({"prompt": "a fox", "duration": 10}))

    assert await runtime.store.list() == []
    assert queued_ids(tmp_path / "v.db") == []


def test_stores_and_queues_on_different_files_write_separately(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, db_path=tmp_path / "v.db")  # type: ignore[call-arg]
    built = Runtime.from_settings(settings)
    other = Runtime.from_settings(settings.replace(db_path=tmp_path / "w.db"))

    mixed = Runtime(settings, built.store, other.queue, built.upstream, built.keys)

    assert isinstance(mixed.steps, SeparateWrites)
