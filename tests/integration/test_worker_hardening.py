"""The worker under faults of issue #11: rotated secrets, store trouble, copies of one poll."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.crypto import KeyBox
from core.errors import ConfigError
from core.models import Task, TaskEvent, TaskStatus, VideoRequest, utcnow
from core.reconciler import Reconciler
from core.service import TaskService
from core.store import Expect
from core.store.supabase import SupabaseStore
from core.upstream.t8star import T8StarUpstream
from core.worker import SigningKeys, StepWorker
from tests.engine import FAST, KEY, NEXT_KEY, WORKER_URL, Engine, HandQueue, delivery, open_engine
from tests.fakes.t8star import DEFAULT_KEY, FakeT8Star, Fault, JobScript
from tests.waiting import wait_until

OLD_SECRET = "old-server-secret-0123456789abcdefghijkl"
NEW_SECRET = "new-server-secret-0123456789abcdefghijkl"
OWN_KEY = "sk-users-own-key-1234567890"


@pytest.fixture
def fake() -> Iterator[FakeT8Star]:
    with FakeT8Star(api_keys=(DEFAULT_KEY, OWN_KEY)) as server:
        yield server


@pytest.fixture
async def engine(tmp_path: Path, fake: FakeT8Star) -> AsyncIterator[Engine]:
    timeout = httpx.Timeout(1.0, connect=1.0)
    engine = await open_engine(
        tmp_path / "videoq.db", T8StarUpstream(fake.base_url, DEFAULT_KEY, timeout=timeout)
    )
    yield engine
    await engine.worker.upstreams["t8star"].close()
    await engine.store.close()


async def _submit_own_key(engine: Engine, secret: str) -> str:
    """Submit a task with the user's own key, sealed with `secret`; returns its id."""
    service = TaskService(engine.store, engine.queue, KeyBox(secret))
    request = VideoRequest.parse({"prompt": "a fox in the snow"})
    return (await service.submit(request, upstream_api_key=OWN_KEY)).id


# -- secret rotation ---------------------------------------------------------------------------


async def test_a_previous_secret_still_opens_a_stored_key(engine: Engine, fake: FakeT8Star) -> None:
    task_id = await _submit_own_key(engine, OLD_SECRET)
    engine.worker.key_box = KeyBox(NEW_SECRET, [OLD_SECRET])
    await engine.deliver(engine.queue.take().message)
    assert (await engine.task(task_id)).status is TaskStatus.RUNNING
    assert [call.authorization for call in fake.submits()] == [f"Bearer {OWN_KEY}"]


async def test_a_queued_task_whose_key_no_secret_opens_fails_at_once(
    engine: Engine, fake: FakeT8Star
) -> None:
    task_id = await _submit_own_key(engine, OLD_SECRET)
    engine.worker.key_box = KeyBox(NEW_SECRET)
    [result] = await engine.deliver(engine.queue.take().message)
    assert result.ok
    task = await engine.task(task_id)
    assert task.status is TaskStatus.FAILED
    assert task.error_message and "retry the task with the key" in task.error_message
    assert "timed out" not in task.error_message
    assert fake.submits() == []


async def test_a_running_task_whose_key_no_secret_opens_fails_at_once(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_default(JobScript(polls=5))
    task_id = await _submit_own_key(engine, OLD_SECRET)
    engine.worker.key_box = KeyBox(OLD_SECRET)
    await engine.deliver(engine.queue.take().message)
    assert (await engine.task(task_id)).status is TaskStatus.RUNNING
    engine.worker.key_box = KeyBox(NEW_SECRET)
    await engine.drain()
    task = await engine.task(task_id)
    assert task.status is TaskStatus.FAILED
    assert task.error_message and "retry the task with the key" in task.error_message
    assert fake.status_calls() == []


def test_a_short_previous_secret_is_refused_by_its_place() -> None:
    with pytest.raises(ConfigError, match="VIDEOQ_SECRET_KEY_PREVIOUS entry 1"):
        KeyBox(NEW_SECRET, ["short"])


# -- copies of one poll -----------------------------------------------------------------------


async def test_a_poll_whose_holder_died_is_taken_over_once_its_claim_expires(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_default(JobScript(polls=2))
    task, poll = await engine.submitted_with_first_poll()
    fake.fault("status", Fault.slow(30.0))
    holder = asyncio.create_task(engine.worker.handle(delivery(poll)))
    await wait_until(lambda: len(fake.status_calls()) == 1, "the poll to reach T8Star")
    holder.cancel()  # the holder dies mid-call: nothing releases its claim
    with pytest.raises(asyncio.CancelledError):
        await holder
    fake.clear_faults()
    # A copy (or the queue's redelivery) is acknowledged while the claim lives ...
    [copy] = await engine.deliver(poll)
    assert copy.ok and len(fake.status_calls()) == 1 and engine.queue.published == []
    claimed = await engine.task(task.id)
    assert claimed.step_lease_until is not None
    reconciler = Reconciler(engine.store, engine.queue, grace=1.0)
    assert await reconciler.run_once(utcnow() + timedelta(seconds=2)) == 0
    # ... and once it expired the reconciler publishes the poll again and the chain goes on.
    assert await reconciler.run_once(claimed.step_lease_until + timedelta(seconds=2)) == 1
    await engine.drain()
    done = await engine.task(task.id)
    assert done.status is TaskStatus.SUCCEEDED and len(fake.status_calls()) == 3


async def test_a_poll_cut_by_the_step_timeout_releases_its_claim(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_default(JobScript(polls=2))
    task, poll = await engine.submitted_with_first_poll()
    fake.fault("status", Fault.slow(30.0))
    engine.worker.timing = replace(engine.worker.timing, step_timeout=0.5)
    [timed_out] = await engine.deliver(poll)
    assert timed_out.status == 503
    assert (await engine.task(task.id)).step_lease_until is None
    fake.clear_faults()
    [redelivered] = await engine.deliver(poll)
    assert redelivered.ok and len(fake.status_calls()) == 2
    assert (await engine.task(task.id)).polls == 1


# -- an accepted submit ------------------------------------------------------------------------


async def test_the_step_timeout_does_not_cut_the_recording_of_an_accepted_submit(
    engine: Engine, fake: FakeT8Star, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cut, the row stays queued under its claim and is submitted upstream again at expiry.
    task = await engine.submit()
    message = engine.queue.take().message
    engine.worker.timing = replace(engine.worker.timing, step_timeout=1.0)
    step = asyncio.create_task(engine.worker.run_step(message))
    record = engine.store.update

    async def update_once_timed_out(
        task_id: str, expect: Expect, changes: Mapping[str, Any], event: TaskEvent | None = None
    ) -> Task | None:
        if changes.get("status") is TaskStatus.RUNNING:
            await wait_until(lambda: step.cancelling() > 0, "the step timeout to strike")
        return await record(task_id, expect, changes, event)

    monkeypatch.setattr(engine.store, "update", update_once_timed_out)
    result = await step
    assert result.status == 503 and result.reason == "step timed out"
    running = await engine.task(task.id)
    assert running.status is TaskStatus.RUNNING and running.upstream_task_id
    assert running.step_lease_until is None
    [again] = await engine.deliver(message)
    assert again.ok and len(fake.submits()) == 1


# -- text Postgres cannot hold -----------------------------------------------------------------


async def test_upstream_text_with_a_nul_is_stored_on_postgres_without_a_refusal(
    supabase_store: SupabaseStore, fake: FakeT8Star
) -> None:
    # PostgreSQL refuses NUL in text (22P05): stored raw, every poll would answer 503 forever.
    fake.script_default(JobScript(polls=2, outcome="failure", reason="bad \x00 frame \x1b[2J"))
    fake.fault("status", Fault.status_value("IN_\x00PROGRESS"))
    upstream = T8StarUpstream(fake.base_url, DEFAULT_KEY, timeout=httpx.Timeout(2.0))
    await upstream.open()
    queue = HandQueue()
    keys = SigningKeys(KEY, NEXT_KEY, WORKER_URL)
    worker = StepWorker(supabase_store, queue, {upstream.provider: upstream}, keys, FAST)
    try:
        task = await TaskService(supabase_store, queue).submit(VideoRequest(prompt="a fox"))
        for _ in range(3):
            result = await worker.handle(delivery(queue.take().message))
            assert result.ok, result.reason
    finally:
        await upstream.close()
    done = await supabase_store.get(task.id)
    assert done is not None and done.status is TaskStatus.FAILED
    assert done.error_message == "bad frame [2J"
    polled = [event.upstream_status for event in await supabase_store.events(task.id)]
    assert "IN_ PROGRESS" in polled and not any("\x00" in (text or "") for text in polled)


# -- store trouble -----------------------------------------------------------------------------


async def test_a_store_failure_reading_the_task_asks_for_redelivery(
    engine: Engine, tmp_path: Path
) -> None:
    await engine.submit()
    message = engine.queue.take().message
    await engine.store.close()
    [result] = await engine.deliver(message)
    assert not result.ok and not result.non_retryable and result.status == 503
    assert result.reason and "not open" in result.reason
    await engine.store.open()


async def test_one_undecodable_row_is_skipped_and_counted_while_the_others_go_on(
    engine: Engine, fake: FakeT8Star
) -> None:
    good = await engine.submit("a good task")
    bad = await engine.submit("a broken task")
    with sqlite3.connect(engine.store.path) as db:
        db.execute("UPDATE video_tasks SET created_at = 'not a time' WHERE id = ?", (bad.id,))
    assert [task.id for task in await engine.store.list()] == [good.id]
    assert engine.store.feed.unreadable_rows == 1
    reconciler = Reconciler(engine.store, engine.queue, grace=1.0)
    await reconciler.run_once(utcnow() + timedelta(hours=1))
    assert engine.store.feed.unreadable_rows == 2
    await engine.drain()
    assert (await engine.task(good.id)).status is TaskStatus.SUCCEEDED
