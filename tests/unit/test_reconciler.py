"""The reconciler turns a lost message into a delay, never a lost task (DESIGN §3)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.errors import QueueError
from core.models import TaskStatus, WorkMessage, utcnow
from core.reconciler import Reconciler
from core.service import first_step
from core.upstream.simulator import Simulator
from tests.engine import Engine, HandQueue, open_engine


class RefusingQueue(HandQueue):
    """A queue service having an outage: refuses every publish while `down` is set, and never
    answers one while `hanging` is."""

    down: bool = False
    hanging: bool = False

    async def publish(self, message: WorkMessage, delay: float = 0.0) -> str:
        if self.down:
            raise QueueError("queue unreachable")
        if self.hanging:
            await asyncio.Event().wait()
        return await super().publish(message, delay)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    engine = await open_engine(tmp_path / "r.db", Simulator(speedup=1.0, failure_rate=0.0))
    engine.queue = engine.worker.queue = engine.service.queue = RefusingQueue()
    yield engine
    await engine.store.close()


def later(seconds: float) -> datetime:
    """A reconciler pass `seconds` from now, as if the message had been lost that long."""
    return utcnow() + timedelta(seconds=seconds)


async def test_a_task_whose_first_publish_failed_is_published_by_the_reconciler(
    engine: Engine,
) -> None:
    queue = engine.queue
    assert isinstance(queue, RefusingQueue)
    queue.down = True
    task = await engine.submit()
    # The row names its first step from the start; the failed publish changes nothing more.
    first = first_step(task.id, 1).dedup_id
    assert (await engine.task(task.id)).message_id == first and queue.published == []
    queue.down = False
    reconciler = Reconciler(engine.store, queue, grace=30)
    assert await reconciler.run_once() == 0  # too fresh to be called lost
    assert await reconciler.run_once(later(60)) == 1
    assert [p.message.step for p in queue.published] == ["submit"]
    assert (await engine.task(task.id)).message_id == queue.published[0].message_id


async def test_a_submit_does_not_wait_on_a_hanging_queue_and_is_published_later(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    queue = engine.queue
    assert isinstance(queue, RefusingQueue)
    queue.hanging = True
    engine.service.publish_wait = 0.05
    with caplog.at_level(logging.WARNING, logger="core.service"):
        task = await engine.submit()
    stored = await engine.task(task.id)
    assert stored.status is TaskStatus.QUEUED
    assert stored.message_id == first_step(task.id, 1).dedup_id
    assert "no answer from the queue within 0.05 s" in caplog.text
    queue.hanging = False
    assert await Reconciler(engine.store, queue, grace=30).run_once(later(60)) == 1
    assert (await engine.task(task.id)).message_id == queue.published[0].message_id


async def test_a_running_task_whose_poll_was_lost_is_polled_again(engine: Engine) -> None:
    task = await engine.submit()
    await engine.deliver(engine.queue.take().message)
    engine.queue.published.clear()  # the poll message is lost
    reconciler = Reconciler(engine.store, engine.queue, grace=30)
    assert await reconciler.run_once() == 0
    assert await reconciler.run_once(later(120)) == 1
    [republished] = engine.queue.published
    assert (republished.message.step, republished.message.seq) == ("poll", 2)
    await engine.deliver(WorkMessage(task_id=task.id, attempt=1, step="poll", seq=1))
    assert (await engine.task(task.id)).polls == 1, "the lost poll, turning up late, is stale"


async def test_reconcilers_of_several_workers_publish_a_lost_step_once(engine: Engine) -> None:
    await engine.submit()
    engine.queue.published.clear()
    first = Reconciler(engine.store, engine.queue, grace=30)
    second = Reconciler(engine.store, engine.queue, grace=30)
    moment = later(60)
    assert await first.run_once(moment) == 1
    assert await second.run_once(moment) == 0
    assert len(engine.queue.published) == 1


async def test_a_resubmit_racing_the_original_submits_once(engine: Engine) -> None:
    task = await engine.submit()
    await Reconciler(engine.store, engine.queue, grace=30).run_once(later(60))
    assert [p.message.step for p in engine.queue.published] == ["submit", "submit"]
    await engine.deliver(engine.queue.take().message)
    await engine.deliver(engine.queue.take().message)
    events = await engine.store.events(task.id)
    assert sum(1 for e in events if e.to_status is TaskStatus.RUNNING) == 1


async def test_finished_and_cancelled_tasks_are_left_alone(engine: Engine) -> None:
    task = await engine.submit()
    await engine.service.cancel(task.id)
    engine.queue.published.clear()
    assert await Reconciler(engine.store, engine.queue, grace=30).run_once(later(600)) == 0
    assert engine.queue.published == []
