"""End to end in the cloud shape: `videoq serve` (a real subprocess) + QStash fake + T8Star fake.

Web clients create tasks through the task API; QStash delivers signed steps to the service's
worker endpoint; the worker calls T8Star. Nothing here reaches into the service's process.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli import Cli
from tests.fakes.qstash import DEV_TOKEN
from tests.fakes.supabase import FakeSupabase
from tests.fakes.t8star import DEFAULT_KEY, FakeT8Star, JobScript
from tests.http_support import (
    CLIENT_LIMITS,
    JWT_SECRET,
    SECRET_KEY,
    USER_A,
    USER_B,
    RecordingQStash,
    ServeProcess,
    bearer,
    clean_env,
    fakes_env,
    free_port,
    parse_metrics,
)
from tests.waiting import wait_until

TERMINAL = {"succeeded", "failed", "cancelled"}
TERMINAL_WAIT = 150.0
"""Seconds a batch of tasks may take to end: generous, the suite runs in parallel on two cores."""
API_TIMEOUT = 30.0
"""Seconds one API call may take while `videoq serve` shares a busy machine."""
BYOK_KEY = "sk-byok-e2e-0f9e8d7c6b5a4f3e2d1c"
WRONG_BYOK_KEY = "sk-byok-wrong-99aa88bb77cc66dd"


@dataclass
class Cloud:
    qstash: RecordingQStash
    t8: FakeT8Star
    serve: ServeProcess
    client: httpx.AsyncClient
    db_path: Path
    jwt_secret: str = JWT_SECRET
    answers: list[str] = field(default_factory=list)

    def auth(self, user: str) -> dict[str, str]:
        """What a signed-in web client sends: its Supabase access token."""
        return bearer(user, secret=self.jwt_secret)

    async def generate(self, prompt: str, user: str = USER_A, **headers: str) -> str:
        response = await self.client.post(
            "/api/v1/video/generate",
            json={"prompt": prompt},
            headers={**self.auth(user), **headers},
        )
        self.answers.append(response.text)
        assert response.status_code == 202, response.text
        return str(response.json()["data"]["task_id"])

    async def generate_many(self, prompts: list[str], users: list[str] | None = None) -> list[str]:
        users = users or [USER_A] * len(prompts)
        gate = asyncio.Semaphore(16)

        async def one(prompt: str, user: str) -> str:
            async with gate:
                return await self.generate(prompt, user)

        return list(await asyncio.gather(*(one(p, u) for p, u in zip(prompts, users, strict=True))))

    async def tasks(self, user: str = USER_A) -> dict[str, dict[str, Any]]:
        response = await self.client.get("/api/v1/video/tasks?limit=1000", headers=self.auth(user))
        assert response.status_code == 200, response.text
        self.answers.append(response.text)
        return {task["id"]: task for task in response.json()["data"]["tasks"]}

    async def wait_terminal(
        self, ids: list[str], user: str = USER_A, timeout: float = TERMINAL_WAIT
    ) -> dict[str, dict[str, Any]]:
        """The tasks `ids` as the API shows them, once every one has ended."""
        tasks: dict[str, dict[str, Any]] = {}

        async def ended() -> bool:
            tasks.update(await self.tasks(user))
            return all(tasks.get(i, {}).get("status") in TERMINAL for i in ids)

        def left() -> str:
            return f"{[tasks.get(i, {}).get('status') for i in ids]}\n{self.serve.read_log()}"

        what = f"{len(ids)} tasks to end"
        await wait_until(ended, what, timeout, interval=0.05, detail=left)
        return {i: tasks[i] for i in ids}

    async def metrics(self) -> dict[str, float]:
        return parse_metrics((await self.client.get("/metrics")).text)

    def assert_every_delivery_verified(self) -> None:
        attempts = self.qstash.attempts()
        assert attempts, "QStash delivered nothing"
        assert all(a.status != 401 for a in attempts), "a delivery failed verification"


@asynccontextmanager
async def cloud(
    tmp_path: Path,
    *,
    speedup: str = "1000",
    time_scale: float = 0.01,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Cloud]:
    """The fakes, then `videoq serve` configured for them (and `env`); SIGTERM at the end."""
    env = env or {}
    t8 = FakeT8Star(api_keys=(DEFAULT_KEY, BYOK_KEY)).start()
    qstash = RecordingQStash(time_scale=time_scale).start()
    port = free_port()
    db_path = tmp_path / "videoq.db"
    settings = {
        "VIDEOQ_DB": str(db_path),
        "VIDEOQ_PUBLIC_URL": f"http://127.0.0.1:{port}",
        **fakes_env(qstash.url, t8.base_url),
        "SUPABASE_JWT_SECRET": env.get("SUPABASE_JWT_SECRET", JWT_SECRET),
        "VIDEOQ_SECRET_KEY": SECRET_KEY,
        "VIDEOQ_SPEEDUP": speedup,
        "VIDEOQ_TASK_DEADLINE": "1000000",
        "VIDEOQ_RECONCILE_INTERVAL": "0.5",
        "VIDEOQ_CONCURRENCY": "16",
        # The default: a step that outlives its timeout on a busy machine is submitted twice.
        "VIDEOQ_STEP_TIMEOUT": "30",
        # Load, not quotas, is what these tests are about (tests/integration/test_http_api.py).
        "VIDEOQ_API_SUBMITS_PER_MINUTE": "100000",
        "VIDEOQ_API_ACTIVE_TASKS": "100000",
        **env,
    }
    serve = ServeProcess(clean_env(**settings), port, tmp_path / "serve.log")
    try:
        await serve.start()
        async with httpx.AsyncClient(
            base_url=serve.url, timeout=API_TIMEOUT, limits=CLIENT_LIMITS
        ) as client:
            yield Cloud(qstash, t8, serve, client, db_path, settings["SUPABASE_JWT_SECRET"])
        assert serve.stop() == 0, serve.read_log()
        assert "videoq serve stopped" in serve.read_log()
    finally:
        if serve.process is not None and serve.process.poll() is None:
            serve.kill()
        qstash.stop()
        t8.stop()


def scripted(t8: FakeT8Star, prompts: list[str]) -> dict[str, tuple[str, str]]:
    """Script every prompt's job; returns the expected (status, url or reason) per prompt."""
    expected = {}
    for n, prompt in enumerate(prompts):
        if n % 7 == 3:
            t8.script_prompt(prompt, JobScript(polls=2, outcome="failure", reason=f"policy {n}"))
            expected[prompt] = ("failed", f"policy {n}")
        else:
            url = f"https://cdn.example/{n}.mp4"
            t8.script_prompt(prompt, JobScript(polls=3, progress=(30, 60), video_url=url))
            expected[prompt] = ("succeeded", url)
    return expected


def check_results(tasks: dict[str, dict[str, Any]], expected: dict[str, tuple[str, str]]) -> None:
    for task in tasks.values():
        status, detail = expected[task["prompt"]]
        assert task["status"] == status, task
        if status == "succeeded":
            assert (task["video_url"], task["progress"]) == (detail, 100)
        else:
            assert task["error_message"] == detail


def store_settings(request: pytest.FixtureRequest, store: str) -> dict[str, str]:
    """Nothing for SQLite; the fake Supabase project's URL, service key and JWT secret."""
    if store == "sqlite":
        return {}
    fake: FakeSupabase = request.getfixturevalue("empty_supabase")
    return {
        "SUPABASE_URL": fake.url,
        "SUPABASE_SERVICE_ROLE_KEY": fake.service_role_key,
        "SUPABASE_JWT_SECRET": fake.jwt_secret,
    }


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "supabase"])
async def test_a_hundred_tasks_through_the_api_all_end_with_the_right_result(
    tmp_path: Path, request: pytest.FixtureRequest, store: str
) -> None:
    async with cloud(tmp_path, env=store_settings(request, store)) as c:
        prompts = [f"scene {n:03d}" for n in range(100)]
        expected = scripted(c.t8, prompts)
        users = [USER_A if n % 2 else USER_B for n in range(100)]
        ids = await c.generate_many(prompts, users)
        done = await c.wait_terminal([i for i, u in zip(ids, users, strict=True) if u == USER_A])
        done |= await c.wait_terminal([i for i, u in zip(ids, users, strict=True) if u == USER_B],
                                      USER_B)  # fmt: skip
        assert set(done) == set(ids)
        check_results(done, expected)
        assert set(await c.tasks(USER_A)).isdisjoint(await c.tasks(USER_B))
        twice = {p: n for p in prompts if (n := len(c.t8.submits(p))) != 1}
        assert not twice, f"submits per prompt: {twice}\n{c.serve.read_log()[-5000:]}"
        c.assert_every_delivery_verified()
        await c.qstash.wait_for(lambda: c.qstash.pending() == 0, what="QStash to drain")
        assert c.qstash.dead_letters() == []
        metrics = await c.metrics()
        assert metrics['videoq_deliveries_total{outcome="unauthorized"}'] == 0
        assert metrics['videoq_deliveries_total{outcome="ok"}'] == sum(
            1 for a in c.qstash.attempts() if a.status == 200
        )
        succeeded = sum(status == "succeeded" for status, _ in expected.values())
        assert metrics['videoq_tasks{status="succeeded"}'] == succeeded


@pytest.mark.slow
async def test_duplicated_deliveries_submit_once_per_attempt(tmp_path: Path) -> None:
    async with cloud(tmp_path) as c:
        c.qstash.duplicate_deliveries()
        prompts = [f"twin {n}" for n in range(20)]
        expected = scripted(c.t8, prompts)
        ids = await c.generate_many(prompts)
        check_results(await c.wait_terminal(ids), expected)
        assert any(a.duplicate for a in c.qstash.attempts())
        assert {p: len(c.t8.submits(p)) for p in prompts} == dict.fromkeys(prompts, 1)
        c.assert_every_delivery_verified()


@pytest.mark.slow
async def test_refused_publishes_lose_no_task(tmp_path: Path) -> None:
    async with cloud(tmp_path) as c:
        prompts = [f"refused {n}" for n in range(20)]
        expected = scripted(c.t8, prompts)
        c.qstash.refuse_publishes(seconds=1.5)
        ids = await c.generate_many(prompts)  # answered at once: the tasks are stored
        assert {t["status"] for t in (await c.tasks()).values()} == {"queued"}
        check_results(await c.wait_terminal(ids), expected)
        metrics = await c.metrics()
        assert metrics["videoq_queue_publish_errors_total"] >= 20
        assert metrics["videoq_reconciler_republished_total"] >= 20
        assert c.qstash.refused >= 20


@pytest.mark.slow
async def test_a_killed_service_is_restarted_and_every_task_finishes(tmp_path: Path) -> None:
    # The fake keeps QStash's ten-minute dedup window: the reconciler's re-publishes must not
    # depend on it expiring.
    async with cloud(tmp_path) as c:
        prompts = [f"survivor {n}" for n in range(30)]
        for n, prompt in enumerate(prompts):
            c.t8.script_prompt(prompt, JobScript(polls=8, video_url=f"https://cdn.example/{n}"))
        c.qstash.delay_deliveries(0.05)
        ids = await c.generate_many(prompts)

        async def ten_running() -> bool:
            return sum(t["status"] == "running" for t in (await c.tasks()).values()) >= 10

        await wait_until(
            ten_running, "ten tasks running", 30, interval=0.02, detail=c.serve.read_log
        )
        c.serve.kill()
        before = await _statuses_in_db(c.db_path)
        assert set(before) & {"queued", "running"}, "killed too late to prove anything"
        await c.serve.start()
        done = await c.wait_terminal(ids)
        assert {t["status"] for t in done.values()} == {"succeeded"}
        assert {t["prompt"]: t["video_url"] for t in done.values()} == {
            p: f"https://cdn.example/{n}" for n, p in enumerate(prompts)
        }
        c.assert_every_delivery_verified()


async def _statuses_in_db(db_path: Path) -> list[str]:
    def read() -> list[str]:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
            return [row[0] for row in db.execute("select status from video_tasks")]

    return await asyncio.to_thread(read)


async def test_byok_key_never_leaks_and_is_erased(tmp_path: Path) -> None:
    async with cloud(tmp_path) as c:
        c.qstash.delay_deliveries(0.3)  # hold the first step, to look at the stored row
        own = await c.generate("own key", **{"X-Upstream-Api-Key": BYOK_KEY})
        wrong = await c.generate("wrong key", **{"X-Upstream-Api-Key": WRONG_BYOK_KEY})
        plain = await c.generate("server key")
        held = await asyncio.to_thread(_ciphertexts, c.db_path)
        own_held, wrong_held = held[own], held[wrong]
        assert own_held and wrong_held and held[plain] is None
        assert BYOK_KEY not in own_held and WRONG_BYOK_KEY not in wrong_held
        c.qstash.delay_deliveries(0)
        done = await c.wait_terminal([own, wrong, plain])
        assert done[own]["status"] == "succeeded" and done[plain]["status"] == "succeeded"
        assert done[wrong]["status"] == "failed" and "key" in done[wrong]["error_message"]
        assert [r.authorization for r in c.t8.submits("own key")] == [f"Bearer {BYOK_KEY}"]
        assert [r.authorization for r in c.t8.submits("server key")] == [f"Bearer {DEFAULT_KEY}"]
        for task_id in (own, wrong, plain):
            detail = await c.client.get(f"/api/v1/video/tasks/{task_id}", headers=c.auth(USER_A))
            c.answers.append(detail.text)
        assert set((await asyncio.to_thread(_ciphertexts, c.db_path)).values()) == {None}
        listed = Cli.on(c.db_path).ok("list", "--json")
        shown = Cli.on(c.db_path).ok("show", own, "--json")
    places = {
        "queue messages": b"\n".join(c.qstash.bodies).decode(),
        "service log": c.serve.read_log(),
        "API answers": "\n".join(c.answers),
        "videoq list --json": listed,
        "videoq show --json": shown,
        "database file": _database_bytes(c.db_path),
    }
    assert json.loads(listed) and c.qstash.bodies
    for where, text in places.items():
        for key in (BYOK_KEY, WRONG_BYOK_KEY):
            assert key not in text, f"the BYOK key leaked into the {where}"


def _ciphertexts(db_path: Path) -> dict[str, str | None]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute("select id, upstream_key_ciphertext from video_tasks")
        return {row[0]: row[1] for row in rows}


def _database_bytes(db_path: Path) -> str:
    files = [db_path, db_path.with_name(db_path.name + "-wal")]
    return b"".join(p.read_bytes() for p in files if p.exists()).decode("latin-1")


@pytest.mark.slow
async def test_a_simulated_two_minute_job_costs_few_qstash_messages(tmp_path: Path) -> None:
    # Ten times real speed on both sides: QStash delays are real whole seconds, the job takes 12 s.
    async with cloud(tmp_path, speedup="10", time_scale=1.0) as c:
        c.t8.script_default(JobScript(seconds=12.0))
        ids = await c.generate_many([f"two minutes {n}" for n in range(5)])
        done = await c.wait_terminal(ids)
        assert {t["status"] for t in done.values()} == {"succeeded"}
        billed = c.qstash.billed_per_task()
        assert set(billed) == set(ids)
        assert max(billed.values()) <= 8, billed


@pytest.mark.slow
async def test_signing_keys_rotate_without_losing_a_delivery(tmp_path: Path) -> None:
    async with cloud(tmp_path) as c:
        rotate = {"Authorization": f"Bearer {DEV_TOKEN}"}
        await c.client.post(f"{c.qstash.url}/v2/keys/rotate", headers=rotate)
        # QStash now signs with the old next key, which the service already accepts.
        first = await c.generate("after one roll")
        assert (await c.wait_terminal([first]))[first]["status"] == "succeeded"
        c.assert_every_delivery_verified()
        # A second roll before the settings follow: deliveries are refused until they do.
        await c.client.post(f"{c.qstash.url}/v2/keys/rotate", headers=rotate)
        second = await c.generate("after two rolls")
        await c.qstash.wait_for(lambda: any(a.status == 401 for a in c.qstash.attempts()))
        current, upcoming = c.qstash.keys
        assert c.serve.stop() == 0
        c.serve.env |= {"QSTASH_CURRENT_SIGNING_KEY": current, "QSTASH_NEXT_SIGNING_KEY": upcoming}
        await c.serve.start()
        assert (await c.wait_terminal([second]))[second]["status"] == "succeeded"
        assert "signature matches neither signing key" in c.serve.read_log()
        assert current not in c.serve.read_log() and upcoming not in c.serve.read_log()


@pytest.mark.slow
async def test_while_qstash_refuses_publishes_serve_runs_the_steps_then_hands_back(
    tmp_path: Path,
) -> None:
    async with cloud(tmp_path, env={"VIDEOQ_QSTASH_FALLBACK_AFTER": "0.5"}) as c:
        before = [f"before {n}" for n in range(6)]
        during = [f"during {n}" for n in range(6)]
        after = [f"after {n}" for n in range(4)]
        expected = scripted(c.t8, before + during + after)
        # Steps of the first tasks are in QStash when it starts refusing publishes: QStash
        # delivers those while this host runs the same steps from the store.
        ids = await c.generate_many(before)
        c.qstash.refuse_publishes()
        ids += await c.generate_many(during)

        async def degraded() -> bool:
            answer = (await c.client.get("/healthz")).json()
            return "degraded: QStash unreachable since" in answer["data"]["queue"]

        await wait_until(degraded, "/healthz to say QStash is unreachable", TERMINAL_WAIT)
        assert (await c.metrics())["videoq_qstash_degraded"] == 1
        check_results(await c.wait_terminal(ids), expected)
        assert c.qstash.refused > 0
        c.qstash.accept_publishes()

        async def recovered() -> bool:
            return not await degraded()

        await wait_until(recovered, "/healthz to say QStash is back", TERMINAL_WAIT)
        delivered = len(c.qstash.delivered())
        ids += await c.generate_many(after)
        check_results(await c.wait_terminal(ids), expected)
        assert len(c.qstash.delivered()) > delivered, "QStash never took the steps back"
        assert {p: len(c.t8.submits(p)) for p in expected} == dict.fromkeys(expected, 1)
        log = c.serve.read_log()
        assert "degraded: QStash unreachable since" in log
        assert "QStash takes messages again" in log
        c.assert_every_delivery_verified()


@pytest.mark.slow
async def test_over_the_daily_budget_steps_run_in_process_and_none_is_dropped(
    tmp_path: Path,
) -> None:
    budget = 20
    async with cloud(tmp_path, env={"VIDEOQ_QSTASH_DAILY_BUDGET": str(budget)}) as c:
        prompts = [f"thrifty {n}" for n in range(10)]
        expected = scripted(c.t8, prompts)
        ids = await c.generate_many(prompts)
        check_results(await c.wait_terminal(ids), expected)
        assert {p: len(c.t8.submits(p)) for p in prompts} == dict.fromkeys(prompts, 1)
        metrics = await c.metrics()
        assert metrics["videoq_qstash_daily_budget"] == budget
        published = metrics['videoq_qstash_messages_today{kind="published"}']
        delivered = metrics['videoq_qstash_messages_today{kind="delivered"}']
        assert published + delivered >= budget
        # Ten tasks need far more than 20 messages: past the budget the host ran the steps.
        # Steps published at once as the budget is crossed may pass it by the concurrency.
        assert c.qstash.publishes + c.qstash.deduplicated == published <= budget + 16
        assert metrics["videoq_qstash_held_steps_total"] > 0
        assert "of the daily budget" in c.serve.read_log()
