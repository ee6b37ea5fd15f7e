"""Automatic retries against the T8Star fake: transient reasons retried, others not, capped."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from msgspec import ValidationError

from core.auto_retry import ACTOR, AutoRetrier, AutoRetryPolicy
from core.config import DEFAULT_AUTO_RETRY_REASONS, Settings
from core.models import TaskStatus, utcnow
from core.reconciler import Reconciler
from core.upstream.t8star import T8StarUpstream
from tests.engine import Engine, open_engine
from tests.fakes.t8star import DEFAULT_KEY, FakeT8Star, JobScript

OVERLOADED = "upstream overloaded, please try again later"
POLICY = AutoRetryPolicy(re.compile(DEFAULT_AUTO_RETRY_REASONS, re.I), max_retries=2, backoff=10)


@pytest.fixture
def fake() -> Iterator[FakeT8Star]:
    with FakeT8Star() as server:
        yield server


@pytest.fixture
async def engine(tmp_path: Path, fake: FakeT8Star) -> AsyncIterator[Engine]:
    upstream = T8StarUpstream(fake.base_url, DEFAULT_KEY, timeout=httpx.Timeout(1.0))
    engine = await open_engine(tmp_path / "videoq.db", upstream)
    engine.worker.after_failure = AutoRetrier(POLICY, engine.service, speedup=1.0).consider
    yield engine
    await upstream.close()
    await engine.store.close()


def submit_delays(engine: Engine) -> list[float]:
    return [p.delay for p in engine.queue.published if p.message.step == "submit"]


async def test_a_transient_failure_is_retried_with_backoff_until_the_cap(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_default(JobScript(polls=1, outcome="failure", reason=OVERLOADED))
    task = await engine.submit()
    delays = []
    while engine.queue.published:
        delays += submit_delays(engine)
        await engine.drain(limit=1)
    done = await engine.task(task.id)
    assert (done.status, done.attempt) == (TaskStatus.FAILED, 3)
    assert delays == [0.0, 10.0, 20.0]  # the user's submit, then two automatic retries
    retries = [e for e in await engine.store.events(task.id) if e.kind == "action"]
    assert [(e.actor, e.attempt) for e in retries] == [(ACTOR, 2), (ACTOR, 3)]
    assert len(fake.submits()) == 3


async def test_a_permanent_failure_is_not_retried(engine: Engine, fake: FakeT8Star) -> None:
    fake.script_default(JobScript(polls=1, outcome="failure", reason="视频内容审核未通过"))
    task = await engine.submit()
    await engine.drain()
    done = await engine.task(task.id)
    assert (done.status, done.attempt) == (TaskStatus.FAILED, 1)
    assert len(fake.submits()) == 1


async def test_a_retry_that_succeeds_stops_the_automatic_retries(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_next(JobScript(polls=1, outcome="failure", reason="服务繁忙，请稍后再试"))
    fake.script_default(JobScript(polls=1))
    task = await engine.submit()
    await engine.drain()
    done = await engine.task(task.id)
    assert (done.status, done.attempt) == (TaskStatus.SUCCEEDED, 2)


def test_automatic_retries_are_off_unless_configured_and_a_bad_pattern_is_named() -> None:
    assert AutoRetryPolicy.from_settings(Settings(_env_file=None)) is None  # type: ignore[call-arg]
    on = Settings(_env_file=None, VIDEOQ_AUTO_RETRY_MAX=1)  # type: ignore[call-arg]
    policy = AutoRetryPolicy.from_settings(on)
    assert policy is not None and policy.delay(0) == 60.0 and policy.delay(1) is None
    with pytest.raises(ValidationError, match="is not a regular expression"):
        Settings(_env_file=None, VIDEOQ_AUTO_RETRY_REASONS="(unclosed")  # type: ignore[call-arg]


async def test_the_reconciler_leaves_a_held_back_retry_alone_until_it_is_due(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_default(JobScript(polls=1, outcome="failure", reason=OVERLOADED))
    task = await engine.submit()
    await engine.drain(limit=2)  # the submit, then the failing poll: retried in 10 s
    queued = await engine.task(task.id)
    assert (queued.status, queued.attempt) == (TaskStatus.QUEUED, 2)
    reconciler = Reconciler(engine.store, engine.queue, grace=2.0)
    before = len(engine.queue.published)
    assert await reconciler.run_once(utcnow() + timedelta(seconds=5)) == 0
    assert await reconciler.run_once(utcnow() + timedelta(seconds=15)) == 1
    assert len(engine.queue.published) == before + 1
