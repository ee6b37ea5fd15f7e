"""The reconcile endpoint (signed, one bounded pass) and the serverless app `core.http.asgi:app`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import signing
from core.config import RECONCILE_PATH, Settings
from core.http.asgi import ServerlessApp
from core.models import VideoRequest
from core.runtime import Runtime
from core.upstream.simulator import Simulator
from tests.engine import KEY, NEXT_KEY, HandQueue
from tests.fakes.qstash import DEV_CURRENT_SIGNING_KEY, DEV_TOKEN, FakeQStash
from tests.http_support import hand_runtime, in_process, loopback_socket
from tests.waiting import wait_until


def signed(url: str, body: bytes = b"", key: str = KEY) -> dict[str, str]:
    return {"Upstash-Signature": signing.sign(body, key, url)}


@dataclass
class Served:
    client: httpx.AsyncClient
    queue: HandQueue
    runtime: Runtime

    @property
    def url(self) -> str:
        return self.runtime.settings.reconcile_url


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Served]:
    sock = loopback_socket()
    # A short poll interval makes the reconciler's grace its floor, 2 s.
    runtime, queue = hand_runtime(tmp_path / "videoq.db", sock, Simulator(), poll_max_interval=0.5)
    async with runtime, in_process(runtime, sock) as client:
        yield Served(client, queue, runtime)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Upstash-Signature": "not-a-token"},
        "wrong-key",
        "worker-subject",
    ],
    ids=["unsigned", "malformed", "wrong-key", "signed-for-the-worker"],
)
async def test_a_reconcile_call_without_a_valid_signature_is_refused(
    service: Served, headers: Any
) -> None:
    if headers == "wrong-key":
        headers = signed(service.url, key="sig_someone-elses-key-0123456789abcdef")
    elif headers == "worker-subject":
        headers = signed(service.runtime.settings.worker_url)
    response = await service.client.post(RECONCILE_PATH, headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "ok": False,
        "data": None,
        "error": {
            "code": "unauthorized",
            "message": "a reconcile call must carry a valid QStash signature",
        },
    }
    assert service.queue.pending() == []


async def test_a_signed_call_runs_one_pass_and_says_what_it_did(service: Served) -> None:
    first = await service.client.post(RECONCILE_PATH, headers=signed(service.url, key=NEXT_KEY))
    assert first.status_code == 200
    assert first.json()["data"] == {
        "queued_seen": 0,
        "running_seen": 0,
        "resubmitted": 0,
        "repolled": 0,
        "republished": 0,
        "complete": True,
    }
    # A task whose submit message was lost: once past the grace, a call publishes it again.
    task = await service.runtime.service.submit(
        VideoRequest.parse({"prompt": "a kite"}), actor="cli"
    )
    lost = service.queue.take()
    data: dict[str, Any] = {}

    async def republished() -> bool:
        answer = await service.client.post(RECONCILE_PATH, headers=signed(service.url))
        data.update(answer.json()["data"])
        return bool(data["resubmitted"])

    await wait_until(republished, "the lost submit to be published again")
    assert data == {**data, "queued_seen": 1, "resubmitted": 1, "republished": 1}
    [again] = service.queue.pending()
    assert (again.message.task_id, again.message.step) == (task.id, "submit")
    assert again.message.dedup_id != lost.message.dedup_id


def local_settings(tmp_path: Path, **settings: Any) -> Settings:
    return Settings(_env_file=None, db_path=tmp_path / "videoq.db", **settings)  # type: ignore[call-arg]


def qstash_settings(tmp_path: Path, fake: FakeQStash, **settings: Any) -> Settings:
    return local_settings(
        tmp_path,
        qstash_token=DEV_TOKEN,
        qstash_url=fake.url,
        qstash_current_signing_key=DEV_CURRENT_SIGNING_KEY,
        **settings,
    )


async def get(app: ServerlessApp, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://videoq.test") as client:
        return await client.get(path)


@pytest.mark.parametrize(
    ("settings", "why"),
    [({}, "no QSTASH_TOKEN is set"), ({"queue": "local"}, "VIDEOQ_QUEUE=local")],
    ids=["no-token", "explicit"],
)
async def test_the_app_refuses_the_embedded_local_queue_and_names_the_setting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, settings: dict[str, str], why: str
) -> None:
    app = ServerlessApp(lambda: local_settings(tmp_path, **settings))
    with caplog.at_level(logging.ERROR, "core.http.asgi"):
        response = await get(app, "/healthz")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "config_error"
    assert why in error["message"] and "QSTASH_TOKEN" in error["message"]
    assert "needs a dispatcher process" in error["message"]
    assert any(why in record.getMessage() for record in caplog.records)
    assert not (tmp_path / "videoq.db").exists()  # nothing was built


async def test_a_lifespan_start_fails_on_the_local_queue(tmp_path: Path) -> None:
    app = ServerlessApp(lambda: local_settings(tmp_path))
    sent: list[MutableMapping[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "QSTASH_TOKEN" in sent[0]["message"]


async def test_the_app_is_built_on_first_use_and_leaves_nothing_running(
    tmp_path: Path, fake_qstash: FakeQStash
) -> None:
    app = ServerlessApp(lambda: qstash_settings(tmp_path, fake_qstash, step_timeout=30))
    assert not (tmp_path / "videoq.db").exists()
    try:
        first = await get(app, "/healthz")
        assert first.status_code == 200, first.text
        # No reconciler loop, dispatcher or feed: this test's task is the only one left.
        assert asyncio.all_tasks() == {asyncio.current_task()}
        runtime = app._built.runtime if app._built else None
        assert runtime is not None and runtime.settings.step_timeout == 8.0
        assert (await get(app, "/healthz")).status_code == 200
        assert app._built is not None and app._built.runtime is runtime  # a warm instance
    finally:
        await app.aclose()
