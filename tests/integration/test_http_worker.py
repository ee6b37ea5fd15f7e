"""The worker endpoint over real HTTP: signatures, status codes, Retry-After, body limits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from core import signing
from core.config import WORKER_PATH
from core.http import Service
from core.models import TaskStatus, VideoRequest, WorkMessage
from core.runtime import Runtime
from core.upstream.t8star import T8StarUpstream
from tests.engine import KEY, NEXT_KEY, HandQueue
from tests.fakes.t8star import DEFAULT_KEY, FakeT8Star, Fault, JobScript
from tests.http_support import hand_runtime, in_process, loopback_socket
from tests.waiting import wait_until

WRONG_KEY = "sig_3ZB6DVzB1wjE8S6rZ7eenA8Pxxxx"


@dataclass
class Rig:
    runtime: Runtime
    queue: HandQueue
    client: httpx.AsyncClient
    fake: FakeT8Star

    @property
    def worker_url(self) -> str:
        return self.runtime.settings.worker_url

    async def post(self, body: bytes, signature: str | None, **headers: str) -> httpx.Response:
        sent = {"Content-Type": "application/json", "Upstash-Message-Id": "msg_1", **headers}
        if signature is not None:
            sent["Upstash-Signature"] = signature
        return await self.client.post(WORKER_PATH, content=body, headers=sent)

    async def deliver(self, message: WorkMessage) -> httpx.Response:
        body = message.to_bytes()
        return await self.post(body, signing.sign(body, KEY, self.worker_url))

    def counted(self, outcome: str) -> int:
        return self.runtime.worker.stats.deliveries.get(outcome, 0)


@pytest.fixture
def fake() -> Iterator[FakeT8Star]:
    with FakeT8Star() as server:
        yield server


@pytest.fixture
async def rig(tmp_path: Path, fake: FakeT8Star) -> AsyncIterator[Rig]:
    sock = loopback_socket()
    upstream = T8StarUpstream(fake.base_url, DEFAULT_KEY, timeout=httpx.Timeout(2.0))
    runtime, queue = hand_runtime(tmp_path / "videoq.db", sock, upstream)
    async with runtime, in_process(runtime, sock) as client:
        yield Rig(runtime, queue, client, fake)


def stale() -> WorkMessage:
    # A step for a task that does not exist: verified deliveries of it are acknowledged.
    return WorkMessage(
        task_id="00000000-0000-4000-8000-000000000000", attempt=1, step="poll", seq=1
    )


def claims_token(body: bytes, key: str, **overrides: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "Upstash",
        "sub": "",
        "iat": now,
        "exp": now + 300,
        "nbf": 0,
        "jti": "jwt_test",
        "body": signing.body_hash(body),
    }
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="HS256")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", 401),
        ("malformed", 401),
        ("wrong key", 401),
        ("next key", 200),
        ("tampered body", 401),
        ("wrong subject", 401),
        ("expired", 401),
        ("issued 2 s in the future", 200),
        ("current key", 200),
    ],
)
async def test_signature_matrix(
    rig: Rig, caplog: pytest.LogCaptureFixture, case: str, expected: int
) -> None:
    body = stale().to_bytes()
    url, now = rig.worker_url, time.time()
    sent, signature = body, None
    if case == "malformed":
        signature = "not-a-jwt"
    elif case == "wrong key":
        signature = signing.sign(body, WRONG_KEY, url)
    elif case == "next key":
        signature = signing.sign(body, NEXT_KEY, url)
    elif case == "tampered body":
        signature = signing.sign(body, KEY, url)
        sent = body.replace(b'"seq":1', b'"seq":2')
    elif case == "wrong subject":
        signature = signing.sign(
            body, KEY, "https://elsewhere.example/api/v1/internal/video-worker"
        )
    elif case == "expired":
        signature = signing.sign(body, KEY, url, now=now - 400)
    elif case == "issued 2 s in the future":
        signature = claims_token(body, KEY, sub=url, iat=int(now) + 2, nbf=int(now) + 2)
    elif case == "current key":
        signature = signing.sign(body, KEY, url)
    with caplog.at_level(logging.WARNING, logger="core.worker"):
        response = await rig.post(sent, signature)
    assert response.status_code == expected
    if expected == 401:
        # The reason is for the operator's log, not for whoever sent the request.
        assert response.text == "unauthorized"
        assert "refused a delivery" in caplog.text
        assert rig.counted("unauthorized") == 1 and rig.counted("ok") == 0
    else:
        assert response.text == "ok" and rig.counted("ok") == 1


async def test_a_refused_delivery_changes_nothing(rig: Rig) -> None:
    task = await rig.runtime.service.submit(VideoRequest(prompt="a fox"))
    message = WorkMessage(task_id=task.id, attempt=1, step="submit", seq=1)
    body = message.to_bytes()
    response = await rig.post(body, signing.sign(body, WRONG_KEY, rig.worker_url))
    assert response.status_code == 401
    assert rig.fake.submits() == []
    assert (await rig.runtime.store.get(task.id)).status is TaskStatus.QUEUED  # type: ignore[union-attr]


async def test_a_malformed_message_is_refused_for_good(rig: Rig) -> None:
    for body in [b"{not json", b'{"task_id": "x", "attempt": 1}', b'{"task_id":"x","attempt":"1",'
                 b'"step":"submit","seq":1}', b"[]"]:  # fmt: skip
        response = await rig.post(body, signing.sign(body, KEY, rig.worker_url))
        assert response.status_code == 489
        assert response.headers["Upstash-NonRetryable-Error"] == "true"
    assert rig.counted("malformed") == 4


async def test_an_oversized_delivery_is_refused_before_it_is_read(rig: Rig) -> None:
    body = b'{"pad":"' + b"x" * 70_000 + b'"}'
    response = await rig.post(body, signing.sign(body, KEY, rig.worker_url))
    assert response.status_code == 413
    assert rig.counted("too_large") == 1 and rig.counted("unauthorized") == 0


async def test_submit_and_polls_through_the_endpoint_reach_success(rig: Rig) -> None:
    rig.fake.script_default(JobScript(polls=2))
    task = await rig.runtime.service.submit(VideoRequest(prompt="a fox"))
    for _ in range(10):
        if not rig.queue.published:
            break
        response = await rig.deliver(rig.queue.take().message)
        assert response.status_code == 200
    done = await rig.runtime.store.get(task.id)
    assert done is not None and done.status is TaskStatus.SUCCEEDED and done.video_url
    assert len(rig.fake.submits()) == 1


async def test_an_upstream_asking_to_wait_becomes_retry_after_in_whole_seconds(rig: Rig) -> None:
    rig.fake.fault("submit", Fault.rate_limited("7"))
    await rig.runtime.service.submit(VideoRequest(prompt="a fox"))
    response = await rig.deliver(rig.queue.take().message)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert "Upstash-NonRetryable-Error" not in response.headers


async def test_a_fractional_wait_is_rounded_up(rig: Rig) -> None:
    rig.fake.fault("submit", Fault.rate_limited("1.2"))
    await rig.runtime.service.submit(VideoRequest(prompt="a fox"))
    response = await rig.deliver(rig.queue.take().message)
    assert response.status_code == 503 and response.headers["Retry-After"] == "2"


async def test_a_crashing_worker_answers_500_without_a_trace(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def crash(message: WorkMessage) -> object:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(rig.runtime.worker, "run_step", crash)
    with caplog.at_level(logging.ERROR, logger="core.http.deliveries"):
        response = await rig.deliver(stale())
    assert response.status_code == 500
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert "crashed on a delivery" in caplog.text and stale().task_id in caplog.text


async def test_a_poll_that_overtakes_the_previous_ones_write_is_asked_again(rig: Rig) -> None:
    # The worker publishes poll n+1 before it records poll n; a fast queue can deliver it first.
    rig.fake.script_default(JobScript(polls=5))
    task = await rig.runtime.service.submit(VideoRequest(prompt="a fox"))
    assert (await rig.deliver(rig.queue.take().message)).status_code == 200
    early = WorkMessage(task_id=task.id, attempt=1, step="poll", seq=2)
    response = await rig.deliver(early)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert (await rig.deliver(rig.queue.take().message)).status_code == 200  # poll 1
    assert (await rig.deliver(early)).status_code == 200
    done = await rig.runtime.store.get(task.id)
    assert done is not None and done.polls == 2


async def test_a_forced_stop_drops_the_step_in_flight_and_leaves_no_connection_open(
    tmp_path: Path, fake: FakeT8Star
) -> None:
    # A second SIGTERM sets force_exit: uvicorn stops waiting for the requests in flight. Their
    # connections must still close with the service (QStash redelivers what got no answer)
    # instead of outliving it.
    sock = loopback_socket()
    upstream = T8StarUpstream(fake.base_url, DEFAULT_KEY, timeout=httpx.Timeout(5.0))
    runtime, queue = hand_runtime(tmp_path / "videoq.db", sock, upstream)
    fake.fault("submit", Fault.slow(1.0))
    async with runtime:
        service = Service(runtime, sock=sock, background=False, handle_signals=False)
        running = asyncio.create_task(service.run())
        await wait_until(lambda: service.started, what="the service to start")
        await runtime.service.submit(VideoRequest(prompt="a fox"))
        body = queue.take().message.to_bytes()
        headers = {
            "Content-Type": "application/json",
            "Upstash-Message-Id": "msg_1",
            "Upstash-Signature": signing.sign(body, KEY, runtime.settings.worker_url),
        }
        async with httpx.AsyncClient(base_url=runtime.settings.public_url, timeout=10) as client:
            in_flight = asyncio.create_task(client.post(WORKER_PATH, content=body, headers=headers))
            await wait_until(lambda: fake.submits() != [], what="the submit to reach T8Star")
            service.server.force_exit = True
            service.request_exit()
            assert await asyncio.wait_for(running, 10) == 0
            with pytest.raises(httpx.RemoteProtocolError):
                await in_flight
        # The step itself still ends on this loop: the task moved on and its first poll is out.
        await wait_until(lambda: bool(queue.published), what="the step to finish")
        task = (await runtime.service.list())[0]
        assert task.status is TaskStatus.RUNNING and task.upstream_task_id


async def test_thirty_concurrent_copies_of_one_poll_call_upstream_once(rig: Rig) -> None:
    # A replayed poll must not amplify into upstream traffic; the copies that find the poll in
    # flight are acknowledged (the holder publishes the next poll), so no retry is spent.
    rig.fake.script_default(JobScript(polls=5))
    task = await rig.runtime.service.submit(VideoRequest(prompt="a fox"))
    assert (await rig.deliver(rig.queue.take().message)).status_code == 200
    poll = rig.queue.take().message
    answers = await asyncio.gather(*(rig.deliver(poll) for _ in range(30)))
    assert [answer.status_code for answer in answers] == [200] * 30
    assert len(rig.fake.status_calls()) == 1
    after = await rig.runtime.store.get(task.id)
    assert after is not None and after.polls == 1 and after.step_lease_until is None
    assert [published.message.seq for published in rig.queue.published] == [2]
