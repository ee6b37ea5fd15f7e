"""The task API over real HTTP: the envelope, every error code, per-user scoping, BYOK."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import pytest

from core.errors import StoreError
from core.http.envelope import BodyLimits
from core.models import LOCAL_USER, TaskStatus, VideoRequest
from core.runtime import Runtime
from core.store.supabase import SupabaseStore
from core.upstream.simulator import Simulator
from core.upstream.t8star import T8StarUpstream
from tests.cli import Cli
from tests.engine import HandQueue
from tests.fakes.supabase import FakeSupabase
from tests.fakes.t8star import DEFAULT_KEY, FakeT8Star
from tests.http_support import (
    JWT_SECRET,
    USER_A,
    USER_B,
    bearer,
    hand_runtime,
    in_process,
    loopback_socket,
    user_token,
)

GENERATE = "/api/v1/video/generate"
BYOK_KEY = "sk-user-own-key-5b2f0c9e4d7a41c3"
SMALL = BodyLimits(api=4096)


@dataclass
class Api:
    runtime: Runtime
    queue: HandQueue
    client: httpx.AsyncClient

    async def generate(
        self, body: Any = None, user: str = USER_A, **headers: str
    ) -> httpx.Response:
        sent = {**bearer(user), **headers}
        if isinstance(body, bytes | str):
            return await self.client.post(GENERATE, content=body, headers=sent)
        return await self.client.post(GENERATE, json=body or {"prompt": "a fox"}, headers=sent)

    async def task_id(self, user: str = USER_A, **fields: Any) -> str:
        response = await self.generate({"prompt": "a fox", **fields}, user)
        assert response.status_code == 202, response.text
        return str(response.json()["data"]["task_id"])

    async def stored(self) -> int:
        return len(await self.runtime.store.list(limit=1000))


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["ok"] is False and body["data"] is None
    return dict(body["error"])


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeT8Star]:
    # The API never calls the upstream (the worker does), so one fake serves the whole module.
    with FakeT8Star(api_keys=(DEFAULT_KEY, BYOK_KEY)) as server:
        yield server


async def open_api(tmp_path: Path, fake: FakeT8Star, **settings: Any) -> AsyncIterator[Api]:
    sock = loopback_socket()
    upstream = settings.pop("upstream", None) or T8StarUpstream(fake.base_url, DEFAULT_KEY)
    limits = settings.pop("limits", SMALL)
    runtime, queue = hand_runtime(tmp_path / "videoq.db", sock, upstream, **settings)
    async with runtime, in_process(runtime, sock, limits=limits) as client:
        yield Api(runtime, queue, client)


@pytest.fixture
async def api(tmp_path: Path, fake: FakeT8Star) -> AsyncIterator[Api]:
    async for opened in open_api(tmp_path, fake):
        yield opened


# -- generate ---------------------------------------------------------------------------------


async def test_generate_answers_the_task_id_and_queues_the_first_step(api: Api) -> None:
    response = await api.generate({"prompt": "a fox in the snow", "model": "sora-2-pro",
                                   "duration": 25, "aspect_ratio": "9:16", "hd": True})  # fmt: skip
    assert response.status_code == 202
    body = response.json()
    assert body["ok"] is True and body["error"] is None
    task = await api.runtime.store.get(body["data"]["task_id"])
    assert task is not None and task.user_id == USER_A and task.status is TaskStatus.QUEUED
    assert (task.model, task.duration, task.aspect_ratio, task.hd) == (
        "sora-2-pro",
        25,
        "9:16",
        True,
    )
    [published] = api.queue.published
    assert published.message.task_id == task.id and published.message.step == "submit"
    history = await api.runtime.store.events(task.id)
    assert history[0].actor == f"api:{USER_A}"


AUTH_CASES = {
    "no token": {},
    "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
    "bad token": {"Authorization": "Bearer not.a.jwt"},
    "wrong secret": bearer(secret="another-secret-that-is-long-enough-0123456789"),
    "expired": bearer(expires_in=-60),
    "anon key": bearer(audience="anon"),
    "no sub": {"Authorization": "Bearer " + jwt.encode(
        {"aud": "authenticated", "exp": 9999999999}, JWT_SECRET, algorithm="HS256")},
    "alg none": {"Authorization": "Bearer " + jwt.encode(
        {"sub": USER_A, "aud": "authenticated", "exp": 9999999999}, "", algorithm="none")},
}  # fmt: skip


@pytest.mark.parametrize("case", list(AUTH_CASES))
async def test_unauthenticated_calls_are_refused_and_store_nothing(api: Api, case: str) -> None:
    headers = AUTH_CASES[case]
    calls = [
        api.client.post(GENERATE, json={"prompt": "a fox"}, headers=headers),
        api.client.get("/api/v1/video/tasks", headers=headers),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 401, response.text
        assert error_of(response)["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert await api.stored() == 0 and api.queue.published == []


async def test_a_token_for_the_embedded_owner_reads_nothing(api: Api) -> None:
    await api.runtime.service.submit(
        VideoRequest.parse({"prompt": "from the CLI"}), user_id=LOCAL_USER, actor="cli"
    )
    token = {"Authorization": f"Bearer {user_token(LOCAL_USER)}"}
    response = await api.client.get("/api/v1/video/tasks", headers=token)
    assert response.status_code == 401 and error_of(response)["code"] == "unauthorized"
    assert LOCAL_USER in error_of(response)["message"]


async def test_an_expired_token_says_so(api: Api) -> None:
    response = await api.client.get("/api/v1/video/tasks", headers=bearer(expires_in=-60))
    assert "expired" in error_of(response)["message"]


# Text PostgreSQL cannot hold: refused on every store alike, never a 503 on Supabase alone.
NUL_CASES: list[tuple[dict[str, Any], str]] = [
    ({"prompt": "a fox \u0000 snow"}, "prompt"),
    ({"prompt": "a fox", "images": ["https://x.test/a\u0000.png"]}, "images"),
    ({"prompt": "a fox", "model": "sora-2\u0000"}, "model"),
]
VALIDATION_CASES: list[tuple[dict[str, Any], str]] = [
    ({}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x" * 4001}, "prompt"),
    ({"prompt": 42}, "prompt"),
    ({"prompt": "a fox", "model": "sora-3"}, "model"),
    ({"prompt": "a fox", "aspect_ratio": "4:3"}, "aspect_ratio"),
    ({"prompt": "a fox", "duration": 12}, "duration"),
    ({"prompt": "a fox", "duration": 25}, "duration"),
    ({"prompt": "a fox", "hd": True}, "hd"),
    ({"prompt": "a fox", "hd": "maybe"}, "hd"),
    ({"prompt": "a fox", "images": ["ftp://x/y.png"]}, "images"),
    ({"prompt": "a fox", "images": [f"https://x.test/{n}.png" for n in range(5)]}, "images"),
    ({"prompt": "a fox", "images": "https://x.test/a.png"}, "images"),
    ({"prompt": "a fox", "webhook": "https://x.test"}, "webhook"),
    *NUL_CASES,
]


@pytest.mark.parametrize(("body", "field"), VALIDATION_CASES)
async def test_every_validation_rule_names_its_field_and_stores_nothing(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = await api.client.post(GENERATE, json=body, headers=bearer())
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "invalid_request" and error["field"] == field
    assert error["message"].startswith(field)
    assert await api.stored() == 0 and api.queue.published == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"", 400, "malformed_json"),
        (b"\xff\xfe", 400, "malformed_json"),
        (b"[" * 2000 + b"]" * 2000, 400, "malformed_json"),
        (b'["a fox"]', 422, "invalid_request"),
        (b'{"prompt": "a fox \\ud800"}', 422, "invalid_request"),
        (b'{"prompt": "' + b"x" * 5000 + b'"}', 413, "payload_too_large"),
    ],
)
async def test_bodies_that_are_not_a_small_json_object(
    api: Api, body: bytes, status: int, code: str
) -> None:
    response = await api.generate(body)
    assert response.status_code == status
    assert error_of(response)["code"] == code
    assert await api.stored() == 0 and api.queue.published == []


async def test_an_oversized_body_without_content_length_is_cut_off(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(10):
            yield b"x" * 1000

    response = await api.client.post(GENERATE, content=chunks(), headers=bearer())
    assert response.status_code == 413 and error_of(response)["code"] == "payload_too_large"
    assert await api.stored() == 0


# -- reading, cancelling, retrying --------------------------------------------------------------


async def test_list_and_detail_show_only_the_callers_tasks(api: Api) -> None:
    mine = [await api.task_id(prompt=f"mine {n}") for n in range(3)]
    theirs = await api.task_id(USER_B)
    listed = (await api.client.get("/api/v1/video/tasks", headers=bearer())).json()["data"]
    assert [task["id"] for task in listed["tasks"]] == list(reversed(mine))
    assert all("upstream_key_ciphertext" not in task for task in listed["tasks"])
    detail = await api.client.get(f"/api/v1/video/tasks/{mine[0]}", headers=bearer())
    data = detail.json()["data"]
    assert data["task"]["id"] == mine[0] and data["history"][0]["to_status"] == "queued"
    for path in (f"/api/v1/video/tasks/{theirs}",):
        response = await api.client.get(path, headers=bearer())
        assert response.status_code == 404 and error_of(response)["code"] == "not_found"


async def test_the_task_list_and_detail_never_carry_image_payloads(api: Api) -> None:
    image = "data:image/png;base64," + "Q" * 2_000
    task_id = await api.task_id(images=[image, "https://x.test/a.png"])
    listed = await api.client.get("/api/v1/video/tasks", headers=bearer())
    detail = await api.client.get(f"/api/v1/video/tasks/{task_id}", headers=bearer())
    for response in (listed, detail):
        assert response.status_code == 200 and "QQQQ" not in response.text
    [task] = listed.json()["data"]["tasks"]
    assert (task["image_count"], task["image_bytes"]) == (2, len(image) + 20)


async def test_another_users_task_cannot_be_cancelled_or_retried(api: Api) -> None:
    theirs = await api.task_id(USER_B)
    for action in ("cancel", "retry"):
        response = await api.client.post(f"/api/v1/video/{action}/{theirs}", headers=bearer())
        assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    task = await api.runtime.store.get(theirs)
    assert task is not None and task.status is TaskStatus.QUEUED


async def test_cancel_then_retry_and_the_invalid_states(api: Api) -> None:
    task_id = await api.task_id()
    retried = await api.client.post(f"/api/v1/video/retry/{task_id}", headers=bearer())
    assert retried.status_code == 409 and error_of(retried)["code"] == "invalid_state"
    cancelled = await api.client.post(f"/api/v1/video/cancel/{task_id}", headers=bearer())
    assert cancelled.status_code == 200
    assert cancelled.json()["data"]["task"]["status"] == "cancelled"
    again = await api.client.post(f"/api/v1/video/cancel/{task_id}", headers=bearer())
    assert again.status_code == 409 and "already cancelled" in error_of(again)["message"]
    retried = await api.client.post(f"/api/v1/video/retry/{task_id}", headers=bearer())
    assert retried.status_code == 200
    assert (
        retried.json()["data"]["task"]["status"],
        retried.json()["data"]["task"]["attempt"],
    ) == (
        "queued",
        2,
    )
    detail = (await api.client.get(f"/api/v1/video/tasks/{task_id}", headers=bearer())).json()
    actions = [e for e in detail["data"]["history"] if e["kind"] == "action"]
    assert [(e["to_status"], e["actor"]) for e in actions] == [
        ("cancelled", f"api:{USER_A}"),
        ("queued", f"api:{USER_A}"),
    ]


async def test_list_filters_and_its_bad_parameters(api: Api) -> None:
    kept = await api.task_id()
    gone = await api.task_id()
    await api.client.post(f"/api/v1/video/cancel/{gone}", headers=bearer())

    async def ids(query: str) -> list[str]:
        response = await api.client.get(f"/api/v1/video/tasks?{query}", headers=bearer())
        assert response.status_code == 200, response.text
        return [task["id"] for task in response.json()["data"]["tasks"]]

    assert await ids("status=queued") == [kept]
    assert await ids("status=cancelled") == [gone]
    assert await ids("status=queued,cancelled") == [gone, kept]
    assert await ids("status=queued&status=cancelled&limit=1") == [gone]
    for query, field in [("status=done", "status"), ("limit=0", "limit"), ("limit=x", "limit"),
                         ("limit=1001", "limit")]:  # fmt: skip
        response = await api.client.get(f"/api/v1/video/tasks?{query}", headers=bearer())
        assert response.status_code == 422 and error_of(response)["field"] == field


async def test_unknown_ids_paths_and_methods_answer_in_the_envelope(api: Api) -> None:
    for path in (
        "/api/v1/video/tasks/not-a-uuid",
        "/api/v1/video/tasks/" + "0" * 8 + "-0000-4000-8000-" + "0" * 12,
    ):
        response = await api.client.get(path, headers=bearer())
        assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    response = await api.client.get("/api/v1/video/nothing-here")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    response = await api.client.get(GENERATE)
    assert response.status_code == 405 and error_of(response)["code"] == "method_not_allowed"


async def test_a_trailing_slash_answers_not_found_never_a_redirect_from_the_host(api: Api) -> None:
    response = await api.client.get(
        "/api/v1/video/tasks/", headers={**bearer(), "Host": "evil.example"}
    )
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    assert "location" not in response.headers


async def test_failures_inside_answer_without_internals(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(**kwargs: Any) -> Any:
        raise RuntimeError("password=hunter2 at /srv/secret.py line 3")

    async def offline(**kwargs: Any) -> Any:
        raise StoreError("could not connect to db.internal:5432 as admin")

    monkeypatch.setattr(api.runtime.service, "list", broken)
    with caplog.at_level(logging.ERROR):
        response = await api.client.get("/api/v1/video/tasks", headers=bearer())
    assert response.status_code == 500 and error_of(response)["code"] == "internal"
    assert "hunter2" not in response.text and "Traceback" not in response.text
    assert "hunter2" in caplog.text  # the operator still gets the whole story
    monkeypatch.setattr(api.runtime.service, "list", offline)
    response = await api.client.get("/api/v1/video/tasks", headers=bearer())
    assert response.status_code == 503 and error_of(response)["code"] == "unavailable"
    assert "db.internal" not in response.text


# -- BYOK ---------------------------------------------------------------------------------------


async def test_an_own_key_is_stored_sealed_never_answered_and_erased_on_cancel(api: Api) -> None:
    response = await api.generate(**{"X-Upstream-Api-Key": BYOK_KEY})
    assert response.status_code == 202 and BYOK_KEY not in response.text
    task_id = response.json()["data"]["task_id"]
    row = await api.runtime.store.get(task_id)
    assert row is not None and row.upstream_key_ciphertext
    assert BYOK_KEY not in row.upstream_key_ciphertext
    assert api.runtime.key_box is not None
    assert api.runtime.key_box.open(row.upstream_key_ciphertext) == BYOK_KEY
    assert BYOK_KEY not in json.dumps([msgspec.to_builtins(p.message) for p in api.queue.published])
    detail = await api.client.get(f"/api/v1/video/tasks/{task_id}", headers=bearer())
    assert BYOK_KEY not in detail.text and "ciphertext" not in detail.text
    cancelled = await api.client.post(f"/api/v1/video/cancel/{task_id}", headers=bearer())
    assert cancelled.status_code == 200
    row = await api.runtime.store.get(task_id)
    assert row is not None and row.upstream_key_ciphertext is None


async def test_retrying_an_own_key_task_needs_the_key_again(api: Api) -> None:
    own = {"X-Upstream-Api-Key": BYOK_KEY}
    task_id = (await api.generate(**own)).json()["data"]["task_id"]
    await api.client.post(f"/api/v1/video/cancel/{task_id}", headers=bearer())
    refused = await api.client.post(f"/api/v1/video/retry/{task_id}", headers=bearer())
    assert refused.status_code == 422 and error_of(refused)["field"] == "X-Upstream-Api-Key"
    assert "ran with its submitter's own upstream key" in error_of(refused)["message"]
    row = await api.runtime.store.get(task_id)
    assert row is not None and row.status is TaskStatus.CANCELLED and row.own_key
    retried = await api.client.post(f"/api/v1/video/retry/{task_id}", headers={**bearer(), **own})
    assert retried.status_code == 200 and BYOK_KEY not in retried.text
    row = await api.runtime.store.get(task_id)
    assert row is not None and row.attempt == 2 and row.upstream_key_ciphertext and row.own_key


async def test_a_task_without_an_own_key_retries_without_one(api: Api) -> None:
    task_id = (await api.generate()).json()["data"]["task_id"]
    await api.client.post(f"/api/v1/video/cancel/{task_id}", headers=bearer())
    retried = await api.client.post(f"/api/v1/video/retry/{task_id}", headers=bearer())
    assert retried.status_code == 200
    assert retried.json()["data"]["task"]["own_key"] is False


@pytest.mark.parametrize("key", [b"", b"has spaces in it", b"x" * 513, "naïve-key".encode()])
async def test_an_unusable_own_key_is_refused_without_being_repeated(api: Api, key: bytes) -> None:
    # Raw bytes: some of these keys are not valid text, so the header is built from bytes.
    headers = {**{k.encode(): v.encode() for k, v in bearer().items()}, b"X-Upstream-Api-Key": key}
    response = await api.client.post(GENERATE, json={"prompt": "a fox"}, headers=headers)
    assert response.status_code == 422
    error = error_of(response)
    assert error["field"] == "X-Upstream-Api-Key"
    assert not key.strip() or key.decode() not in response.text
    assert await api.stored() == 0


async def test_an_own_key_without_a_server_secret_is_refused_and_nothing_stored(
    tmp_path: Path, fake: FakeT8Star
) -> None:
    async for api in open_api(tmp_path, fake, secret_key=None):
        response = await api.generate(**{"X-Upstream-Api-Key": BYOK_KEY})
        assert response.status_code == 422
        assert "VIDEOQ_SECRET_KEY" in error_of(response)["message"]
        assert BYOK_KEY not in response.text
        assert await api.stored() == 0 and api.queue.published == []
        assert (await api.generate()).status_code == 202  # without a key it works


async def test_an_own_key_on_a_simulator_server_is_refused(
    tmp_path: Path, fake: FakeT8Star
) -> None:
    async for api in open_api(tmp_path, fake, upstream=Simulator(speedup=100)):
        response = await api.generate(**{"X-Upstream-Api-Key": BYOK_KEY})
        assert response.status_code == 422 and "simulator" in error_of(response)["message"]
        assert await api.stored() == 0


async def test_no_sign_in_configured_answers_unavailable(tmp_path: Path, fake: FakeT8Star) -> None:
    async for api in open_api(tmp_path, fake, supabase_jwt_secret=None):
        response = await api.generate()
        assert response.status_code == 503
        assert "SUPABASE_JWT_SECRET" in error_of(response)["message"]
        assert await api.stored() == 0


def test_user_token_helper_makes_supabase_shaped_tokens() -> None:
    claims = jwt.decode(user_token(), JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    assert claims["sub"] == USER_A and claims["role"] == "authenticated"


async def test_cors_lets_only_the_configured_origins_in(tmp_path: Path, fake: FakeT8Star) -> None:
    async for api in open_api(
        tmp_path, fake, cors_origins="https://app.example, https://b.example/"
    ):
        preflight = {
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-upstream-api-key",
        }
        allowed = await api.client.options(GENERATE, headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-upstream-api-key" in allowed.headers["access-control-allow-headers"].lower()
        other = await api.client.options(
            GENERATE, headers={**preflight, "Origin": "https://x.example"}
        )
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        response = await api.generate(Origin="https://b.example")
        assert response.status_code == 202
        assert response.headers["access-control-allow-origin"] == "https://b.example"


# -- what a user sends reaches an operator's terminal inert -----------------------------------

HOSTILE = "fox \u001b]0;PWNED\u0007\u001b[2J snow"


async def test_escape_sequences_in_a_prompt_are_stored_intact_and_shown_inert(
    api: Api, tmp_path: Path
) -> None:
    task_id = await api.task_id(prompt=HOSTILE)
    stored = await api.runtime.store.get(task_id)
    assert stored is not None and stored.prompt == HOSTILE
    cli = Cli.on(tmp_path / "videoq.db")
    for args in (("show", task_id), ("list",), ("list", "--json")):
        done = cli.run(*args)
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stdout and "\x07" not in done.stdout, args
        assert "fox" in done.stdout and "snow" in done.stdout


# -- per-user limits ------------------------------------------------------------------------------


async def test_submits_per_minute_are_limited_per_user_with_retry_after(
    tmp_path: Path, fake: FakeT8Star
) -> None:
    async for api in open_api(tmp_path, fake, api_submits_per_minute=3):
        for n in range(3):
            await api.task_id(prompt=f"fox {n}")
        response = await api.generate({"prompt": "one too many"})
        assert response.status_code == 429
        error = error_of(response)
        assert (
            error["code"] == "rate_limited" and "VIDEOQ_API_SUBMITS_PER_MINUTE" in error["message"]
        )
        assert int(response.headers["retry-after"]) >= 1
        assert await api.stored() == 3
        await api.task_id(USER_B)  # another user has a limit of their own
        # The CLI's own submits go through the service, which no API limit applies to.
        await api.runtime.service.submit(VideoRequest.parse({"prompt": "from the CLI"}))


async def test_active_tasks_and_image_bytes_are_quotas(tmp_path: Path, fake: FakeT8Star) -> None:
    async for api in open_api(tmp_path, fake, api_active_tasks=2, api_image_bytes=40):
        await api.task_id()
        big = await api.generate({"prompt": "a fox", "images": ["https://x.test/" + "a" * 40]})
        assert big.status_code == 429 and error_of(big)["code"] == "quota_exceeded"
        assert "VIDEOQ_API_IMAGE_BYTES" in error_of(big)["message"]
        await api.task_id()
        response = await api.generate({"prompt": "a third"})
        assert response.status_code == 429 and error_of(response)["code"] == "quota_exceeded"
        assert "VIDEOQ_API_ACTIVE_TASKS" in error_of(response)["message"]
        assert "retry-after" in response.headers and await api.stored() == 2


# -- the same refusals on the Supabase store ------------------------------------------------------


def _on_supabase(fake_supabase: FakeSupabase) -> SupabaseStore:
    return SupabaseStore(fake_supabase.url, fake_supabase.service_role_key)


@pytest.mark.parametrize(("body", "field"), NUL_CASES)
async def test_a_nul_is_refused_naming_its_field_on_supabase_too(
    tmp_path: Path, fake: FakeT8Star, empty_supabase: FakeSupabase, body: Any, field: str
) -> None:
    async for api in open_api(tmp_path, fake, store=_on_supabase(empty_supabase)):
        response = await api.client.post(GENERATE, json=body, headers=bearer())
        assert response.status_code == 422, response.text
        error = error_of(response)
        assert error["code"] == "invalid_request" and error["field"] == field
        assert await api.stored() == 0 and api.queue.published == []


async def test_the_per_user_limits_hold_on_supabase_too(
    tmp_path: Path, fake: FakeT8Star, empty_supabase: FakeSupabase
) -> None:
    store = _on_supabase(empty_supabase)
    async for api in open_api(tmp_path, fake, store=store, api_submits_per_minute=2):
        await api.task_id()
        await api.task_id()
        response = await api.generate({"prompt": "one too many"})
        assert response.status_code == 429 and error_of(response)["code"] == "rate_limited"
        assert int(response.headers["retry-after"]) >= 1
        await api.task_id(USER_B)
    store = _on_supabase(empty_supabase)
    async for api in open_api(tmp_path, fake, store=store, api_active_tasks=3):
        await api.task_id()  # user A's third queued task; the fourth is one too many
        response = await api.generate({"prompt": "a fourth active task"})
        assert response.status_code == 429 and error_of(response)["code"] == "quota_exceeded"
        assert "VIDEOQ_API_ACTIVE_TASKS" in error_of(response)["message"]
        assert "retry-after" in response.headers and await api.stored() == 4  # and B's
