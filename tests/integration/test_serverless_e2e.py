"""The service run the serverless way: a fresh app instance per request, QStash delivering every
step and calling the reconcile endpoint on its schedule, and no process in between."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from core.config import Settings
from core.http.asgi import ServerlessApp
from core.models import TaskStatus
from core.reconcile_schedule import Every, Outcome, ReconcileSchedule
from tests.fakes.loopback import LoopbackServer
from tests.fakes.qstash import FakeQStash
from tests.fakes.supabase import FakeSupabase
from tests.fakes.t8star import FakeT8Star
from tests.http_support import CLIENT_LIMITS, JWT_SECRET, bearer, fakes_env
from tests.waiting import wait_until

TASKS = 4
WAIT = 120.0
"""Seconds the tasks may take to end: generous, the suite shares two cores."""


class FreshPerRequest:
    """Serves every request with a new ServerlessApp, closed after it: nothing outlives one."""

    def __init__(self) -> None:
        self.instances = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.instances += 1
        app = ServerlessApp()  # reads the environment, as on a serverless host
        try:
            await app(scope, receive, send)
        finally:
            await app.aclose()


@pytest.fixture
def t8() -> Iterator[FakeT8Star]:
    with FakeT8Star() as fake:
        yield fake


@pytest.fixture
def qstash() -> Iterator[FakeQStash]:
    # A minute of the fake's clock lasts 3 s: each call builds a whole app, so not much faster.
    with FakeQStash(time_scale=0.05) as fake:
        yield fake


@pytest.fixture
def host() -> Iterator[tuple[LoopbackServer, FreshPerRequest]]:
    fresh = FreshPerRequest()

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[ASGIApp]:
        yield fresh

    with LoopbackServer("serverless-host", running) as server:
        yield server, fresh


@pytest.fixture(params=[pytest.param("supabase", marks=pytest.mark.slow), "sqlite"])
def environment(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    t8: FakeT8Star,
    qstash: FakeQStash,
    host: tuple[LoopbackServer, FreshPerRequest],
) -> None:
    for name in list(os.environ):
        if name.startswith(("VIDEOQ_", "T8STAR_", "QSTASH_", "SUPABASE_")):
            monkeypatch.delenv(name)
    settings = {
        "VIDEOQ_DB": str(tmp_path / "videoq.db"),
        "VIDEOQ_PUBLIC_URL": host[0].url,
        **fakes_env(qstash.url, t8.base_url),
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "VIDEOQ_SPEEDUP": "20",
        # The reconciler's grace is 3 x this / speedup, at least 2 s: a lost poll waits that long.
        "VIDEOQ_POLL_MAX_INTERVAL": "10",
        # QStash's flow control lets two steps run at once: every one builds a whole app, and
        # here they all share one event loop (on a serverless host each has its own process).
        "VIDEOQ_CONCURRENCY": "2",
    }
    if request.param == "supabase":  # the store a serverless deployment needs
        supabase: FakeSupabase = request.getfixturevalue("empty_supabase")
        settings["SUPABASE_URL"] = supabase.url
        settings["SUPABASE_SERVICE_ROLE_KEY"] = supabase.service_role_key
    for name, value in settings.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("environment")
async def test_tasks_succeed_with_a_fresh_app_per_request_and_a_lost_poll_recovered(
    t8: FakeT8Star, qstash: FakeQStash, host: tuple[LoopbackServer, FreshPerRequest]
) -> None:
    server, fresh = host
    async with ReconcileSchedule(Settings(_env_file=None)) as schedule:  # type: ignore[call-arg]
        created = await schedule.ensure(Every.parse("1m"))
    # QStash accepts the first poll and never delivers it: only the reconciler can save it.
    qstash.lose_publishes(1, body_contains=b'"step":"poll"')
    async with httpx.AsyncClient(
        base_url=server.url, headers=bearer(), timeout=30, limits=CLIENT_LIMITS
    ) as client:
        ids = [await _generate(client, f"serverless kite {n}") for n in range(TASKS)]
        tasks: dict[str, dict[str, object]] = {}

        async def all_succeeded() -> bool:
            answer = (await client.get("/api/v1/video/tasks?limit=100")).json()["data"]
            tasks.update({task["id"]: task for task in answer["tasks"]})
            return all(tasks.get(i, {}).get("status") == TaskStatus.SUCCEEDED for i in ids)

        def statuses() -> str:
            return json.dumps({i: tasks.get(i, {}).get("status") for i in ids})

        # Each look builds a whole app too: look once a second, not every 5 ms.
        await wait_until(
            all_succeeded, "every task to succeed", WAIT, interval=1.0, detail=statuses
        )
    [lost] = qstash.lost
    assert lost not in qstash.delivered()
    reconciles = [a for a in qstash.attempts() if a.message_id in _fired(qstash, created)]
    assert reconciles and all(a.status == 200 for a in reconciles)
    assert all(a.status != 401 for a in qstash.attempts())
    # Each task went upstream once, whatever the redeliveries and the re-published poll.
    prompts = sorted(r.body["prompt"] for r in t8.submits())
    assert prompts == sorted(f"serverless kite {n}" for n in range(TASKS))
    assert fresh.instances > len(ids) + len(reconciles)  # one instance per request, no reuse


async def _generate(client: httpx.AsyncClient, prompt: str) -> str:
    response = await client.post("/api/v1/video/generate", json={"prompt": prompt})
    assert response.status_code == 202, response.text
    return str(response.json()["data"]["task_id"])


def _fired(qstash: FakeQStash, created: Outcome) -> set[str]:
    return set(qstash.schedules.by_id[created.schedule_id].fired)
