"""Upstream notify hooks over real HTTP: the hook each submit carries, the route that polls at
once, its refusals and limits, a hook racing a scheduled poll, and the cloud shape's message
count with QStash (the T8Star fake calls the hooks as the real one does)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from msgspec.structs import replace

from core.config import HOOK_PATH, Settings
from core.http.hooks import HOOK_BURST, HOOK_WINDOW
from core.models import Task, TaskStatus, VideoRequest
from core.notify_hooks import NotifyHooks
from core.runtime import Runtime
from core.upstream.t8star import T8StarUpstream
from tests.engine import Published
from tests.fakes.qstash import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY, DEV_TOKEN
from tests.fakes.t8star import DEFAULT_KEY, FakeT8Star, Fault, JobScript
from tests.http_support import (
    SECRET_KEY,
    RecordingQStash,
    hand_runtime,
    in_process,
    loopback_socket,
)
from tests.integration.test_http_worker import Rig as WorkerRig
from tests.waiting import wait_until

ALWAYS_RUNNING = JobScript(polls=1_000_000)
DONE_AT_ONCE = JobScript(polls=1)


class Rig(WorkerRig):
    """The worker endpoint's rig, with notify hooks on."""

    @property
    def hooks(self) -> NotifyHooks:
        assert self.runtime.hooks is not None
        return self.runtime.hooks

    async def running(self, script: JobScript, prompt: str = "a heron at dawn") -> Task:
        """A task submitted upstream, its first scheduled poll published but not delivered."""
        self.fake.script_prompt(prompt, script)
        task = await self.runtime.service.submit(VideoRequest(prompt=prompt))
        assert (await self.deliver(self.take(task.id).message)).status_code == 200
        return await self.task(task.id)

    def take(self, task_id: str) -> Published:
        """The oldest message published for `task_id`, taken off the queue."""
        published = next(p for p in self.queue.published if p.message.task_id == task_id)
        self.queue.published.remove(published)
        return published

    async def task(self, task_id: str) -> Task:
        task = await self.runtime.store.get(task_id)
        assert task is not None
        return task

    async def hook(self, task_id: str, token: str | None) -> httpx.Response:
        params = {"token": token} if token is not None else {}
        return await self.client.post(f"{HOOK_PATH}/{task_id}", params=params, json={})


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, **settings: Any) -> AsyncIterator[Rig]:
    """The fake T8Star, and a runtime on it served on loopback with `settings`."""
    with FakeT8Star() as fake:
        sock = loopback_socket()
        upstream = T8StarUpstream(fake.base_url, DEFAULT_KEY)
        no_public_url = settings.pop("public_url", "") is None
        # The fake is on loopback like the public URL, so T8Star can call back (hooks_enabled).
        settings.setdefault("t8star_base_url", fake.base_url)
        runtime, queue = hand_runtime(tmp_path / "videoq.db", sock, upstream, **settings)
        if no_public_url:
            # hand_runtime names a public URL; this is what an unset VIDEOQ_PUBLIC_URL leaves.
            runtime.settings = Settings(_env_file=None, secret_key=SECRET_KEY)  # type: ignore[call-arg]
            runtime.keys = replace(runtime.keys, subject=runtime.settings.worker_url)
        async with runtime, in_process(runtime, sock) as client:
            yield Rig(runtime, queue, client, fake)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with serving(tmp_path) as hooked:
        yield hooked


async def test_each_submit_carries_a_notify_hook_with_its_tasks_token(rig: Rig) -> None:
    task = await rig.running(ALWAYS_RUNNING)
    sent = rig.fake.submits()[0].body["notify_hook"]
    assert sent == rig.hooks.url(task.id, task.attempt)
    assert sent.startswith(f"{rig.runtime.settings.public_url}{HOOK_PATH}/{task.id}?token=1.")


async def test_a_valid_hook_polls_once_and_the_task_succeeds(rig: Rig) -> None:
    task = await rig.running(DONE_AT_ONCE)
    assert task.upstream_task_id is not None
    answered = await rig.fake.notify(task.upstream_task_id)
    assert answered == 200
    assert len(rig.fake.status_calls()) == 1
    done = await rig.task(task.id)
    assert done.status is TaskStatus.SUCCEEDED
    assert done.video_url
    # The hook spent no queue message: only the first scheduled poll was ever published.
    assert [p.message.seq for p in rig.queue.pending()] == [1]


async def test_a_hook_on_a_running_job_records_progress_and_keeps_the_scheduled_poll(
    rig: Rig,
) -> None:
    task = await rig.running(JobScript(polls=3, progress=(40, 75)))
    assert (await rig.hook(task.id, rig.hooks.token(task.id, 1))).status_code == 200
    polled = await rig.task(task.id)
    assert (polled.status, polled.progress, polled.polls) == (TaskStatus.RUNNING, 40, 0)
    # The scheduled poll published at submit is still the current one: it polls, not stale.
    scheduled = rig.take(task.id)
    assert rig.queue.pending() == []
    assert (await rig.deliver(scheduled.message)).status_code == 200
    assert len(rig.fake.status_calls()) == 2
    assert (await rig.task(task.id)).progress == 75


@pytest.mark.parametrize(
    "token",
    [None, "", "1.not-the-mac", "garbage", "1." + "A" * 43, "x" * 500, "1.é"],
    ids=["missing", "empty", "wrong mac", "no attempt", "well-formed wrong", "huge", "non-ascii"],
)
async def test_a_wrong_token_answers_401_and_calls_no_one(rig: Rig, token: str | None) -> None:
    task = await rig.running(DONE_AT_ONCE)
    answer = await rig.hook(task.id, token)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert rig.fake.status_calls() == []
    assert (await rig.task(task.id)).status is TaskStatus.RUNNING


async def test_another_tasks_token_is_a_wrong_token(rig: Rig) -> None:
    task = await rig.running(DONE_AT_ONCE)
    other = await rig.running(DONE_AT_ONCE, prompt="another task")
    assert (await rig.hook(task.id, rig.hooks.token(other.id, 1))).status_code == 401
    assert rig.fake.status_calls() == []


async def test_a_finished_unknown_or_earlier_attempts_task_answers_404_without_a_poll(
    rig: Rig,
) -> None:
    task = await rig.running(DONE_AT_ONCE)
    token = rig.hooks.token(task.id, 1)
    assert (await rig.hook(task.id, token)).status_code == 200
    assert (await rig.task(task.id)).status is TaskStatus.SUCCEEDED
    calls = len(rig.fake.status_calls())
    unknown = "00000000-0000-4000-8000-000000000000"
    for task_id, token_of in [(task.id, token), (unknown, rig.hooks.token(unknown, 1))]:
        answer = await rig.hook(task_id, token_of)
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "not_found"
    # Attempt 2 does not exist: a hook made for it finds no task either.
    assert (await rig.hook(task.id, rig.hooks.token(task.id, 2))).status_code == 404
    assert len(rig.fake.status_calls()) == calls


async def test_a_flood_of_hooks_makes_only_a_few_upstream_calls(rig: Rig) -> None:
    task = await rig.running(ALWAYS_RUNNING)
    token = rig.hooks.token(task.id, 1)
    started = time.monotonic()
    concurrent = await asyncio.gather(*(rig.hook(task.id, token) for _ in range(40)))
    sequential = [await rig.hook(task.id, token) for _ in range(20)]
    windows = 1 + int((time.monotonic() - started) // HOOK_WINDOW)
    codes = [answer.status_code for answer in concurrent + sequential]
    assert set(codes) <= {200, 429}
    assert 200 in codes
    refused = next(answer for answer in concurrent + sequential if answer.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert 1 <= len(rig.fake.status_calls()) <= HOOK_BURST * windows
    assert codes.count(200) == len(rig.fake.status_calls())


async def test_a_hook_racing_the_scheduled_poll_makes_one_state_change(rig: Rig) -> None:
    task = await rig.running(DONE_AT_ONCE)
    assert task.upstream_task_id is not None
    # Both polls wait at the upstream together, so each reads the row before either writes.
    rig.fake.fault("status", Fault.slow(0.3), times=2)
    scheduled = rig.take(task.id).message
    results = await asyncio.gather(rig.deliver(scheduled), rig.fake.notify(task.upstream_task_id))
    assert (results[0].status_code, results[1]) == (200, 200)
    assert len(rig.fake.status_calls()) == 2
    done = await rig.task(task.id)
    assert done.status is TaskStatus.SUCCEEDED
    events = await rig.runtime.store.events(task.id)
    ends = [e for e in events if e.kind == "transition" and e.to_status is TaskStatus.SUCCEEDED]
    assert len(ends) == 1
    assert done.polls == 1


@pytest.mark.parametrize(
    "settings",
    [{"public_url": None}, {"upstream_hooks": False}, {"secret_key": None}],
    ids=["no public URL", "setting off", "no server secret"],
)
async def test_hooks_are_off_without_a_public_url_a_secret_or_the_setting(
    tmp_path: Path, settings: dict[str, Any]
) -> None:
    async with serving(tmp_path, **settings) as rig:
        assert rig.runtime.hooks is None
        assert not rig.runtime.worker.timing.schedule.hooked
        task = await rig.running(DONE_AT_ONCE)
        assert "notify_hook" not in rig.fake.submits()[0].body
        answer = await rig.client.post(f"{HOOK_PATH}/{task.id}", params={"token": "1.x"})
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"


def cloud_settings(tmp_path: Path, sock: Any, qstash: RecordingQStash, t8: FakeT8Star) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        db_path=tmp_path / "videoq.db",
        public_url=f"http://127.0.0.1:{sock.getsockname()[1]}",
        qstash_token=DEV_TOKEN,
        qstash_url=qstash.url,
        qstash_current_signing_key=DEV_CURRENT_SIGNING_KEY,
        qstash_next_signing_key=DEV_NEXT_SIGNING_KEY,
        t8star_api_key=DEFAULT_KEY,
        t8star_base_url=t8.base_url,
        secret_key=SECRET_KEY,
    )


async def test_through_qstash_a_hooked_job_costs_at_most_three_messages(tmp_path: Path) -> None:
    """The hook ends one job; the other's hook is lost and the safety-net poll ends it."""
    # QStash's waits run 100x fast: the first safety-net poll (3 min) comes after 1.8 s, while
    # the jobs end after 0.5 s of real time.
    with RecordingQStash(time_scale=0.01) as qstash, FakeT8Star() as fake:
        sock = loopback_socket()
        runtime = Runtime.from_settings(cloud_settings(tmp_path, sock, qstash, fake))
        async with runtime, in_process(runtime, sock, background=True):
            fake.script_default(JobScript(seconds=0.5))
            heard = await runtime.service.submit(VideoRequest(prompt="a hook is heard"))
            await wait_until(lambda: bool(fake.hook_calls()), "the fake to call the first hook")
            fake.silence_hooks()
            lost = await runtime.service.submit(VideoRequest(prompt="a hook is lost"))
            for task_id in (heard.id, lost.id):

                async def ended(task_id: str = task_id) -> bool:
                    task = await runtime.store.get(task_id)
                    return task is not None and task.status is TaskStatus.SUCCEEDED

                await wait_until(ended, f"task {task_id} to succeed")
        billed = qstash.billed_per_task()
    assert [call.answered for call in fake.hook_calls()] == [200]
    assert billed[heard.id] <= 3 and billed[lost.id] <= 3, billed
