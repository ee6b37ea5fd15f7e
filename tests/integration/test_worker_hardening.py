"""The worker under faults of issue #11: rotated secrets and store trouble."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from core.crypto import KeyBox
from core.errors import ConfigError
from core.models import TaskStatus, VideoRequest, utcnow
from core.reconciler import Reconciler
from core.service import TaskService
from core.upstream.t8star import T8StarUpstream
from tests.engine import Engine, open_engine
from tests.fakes.t8star import DEFAULT_KEY, FakeT8Star, JobScript

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
