"""T8StarUpstream (real httpx) against the loopback T8Star fake: shapes, states, error classes."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from core.errors import UpstreamError
from core.models import VideoRequest
from core.upstream import UpstreamState
from core.upstream.t8star import (
    T8StarUpstream,
    parse_progress,
    parse_retry_after,
    parse_status,
    short_reason,
)
from tests.fakes.t8star import DEFAULT_KEY, RAW_BODY_MARKER, FakeT8Star, Fault, JobScript

OTHER_KEY = "sk-other-user-key-9876543210fedcba9876543210"
REQUEST = VideoRequest(prompt="a red fox running through snow")


@pytest.fixture
def fake() -> Iterator[FakeT8Star]:
    with FakeT8Star(api_keys=(DEFAULT_KEY, OTHER_KEY)) as server:
        yield server


@pytest.fixture
async def upstream(fake: FakeT8Star) -> AsyncIterator[T8StarUpstream]:
    async with T8StarUpstream(fake.base_url, DEFAULT_KEY) as client:
        yield client


def assert_clean(exc: UpstreamError, caplog: pytest.LogCaptureFixture) -> None:
    """Neither the key nor anything of the raw upstream body reaches the message or the logs."""
    for secret in (DEFAULT_KEY, OTHER_KEY, RAW_BODY_MARKER):
        assert secret not in str(exc)
        assert secret not in caplog.text
    assert "\n" not in str(exc)


# -- the happy paths ----------------------------------------------------------------------------


async def test_a_job_goes_from_queued_through_progress_to_a_video(
    fake: FakeT8Star, upstream: T8StarUpstream
) -> None:
    fake.script_next(JobScript(polls=4, queued_polls=1, video_url="https://cdn.example/v.mp4"))
    task_id = await upstream.submit(REQUEST)
    answers = [await upstream.status(task_id) for _ in range(4)]
    assert [a.state for a in answers] == [
        UpstreamState.PENDING,
        UpstreamState.RUNNING,
        UpstreamState.RUNNING,
        UpstreamState.SUCCEEDED,
    ]
    assert [a.raw_status for a in answers] == ["NOT_START", "IN_PROGRESS", "IN_PROGRESS", "SUCCESS"]
    assert [a.progress for a in answers] == [0, 50, 75, 100]
    assert answers[-1].video_url == "https://cdn.example/v.mp4"
    assert {a.http_status for a in answers} == {200}
    assert len(fake.status_calls(task_id)) == 4


async def test_the_submit_body_has_the_documented_shape(
    fake: FakeT8Star, upstream: T8StarUpstream
) -> None:
    pro = VideoRequest(
        prompt="a castle at dusk", model="sora-2-pro", duration=25, aspect_ratio="9:16",
        images=("https://img.example/a.png",),
    )  # fmt: skip
    await upstream.submit(pro)
    await upstream.submit(REQUEST)
    first, second = fake.submits()
    assert first.path == "/v2/videos/generations"
    assert first.authorization == f"Bearer {DEFAULT_KEY}"
    assert first.body == {
        "prompt": "a castle at dusk",
        "model": "sora-2-pro",
        "aspect_ratio": "9:16",
        "duration": "25",
        "hd": False,
        "images": ["https://img.example/a.png"],
    }
    assert second.body["duration"] == "10"
    assert "images" not in second.body


async def test_the_callers_key_overrides_the_configured_one(
    fake: FakeT8Star, upstream: T8StarUpstream
) -> None:
    task_id = await upstream.submit(REQUEST, api_key=OTHER_KEY)
    await upstream.status(task_id, api_key=OTHER_KEY)
    assert {r.authorization for r in fake.requests} == {f"Bearer {OTHER_KEY}"}


async def test_prefixed_task_ids_are_accepted_and_polled(
    fake: FakeT8Star, upstream: T8StarUpstream
) -> None:
    fake.script_next(JobScript(polls=1, task_id="veo3:1756693796-YQVHH4A3Lg"))
    task_id = await upstream.submit(REQUEST)
    assert task_id == "veo3:1756693796-YQVHH4A3Lg"
    assert (await upstream.status(task_id)).state is UpstreamState.SUCCEEDED


async def test_the_video_url_falls_back_to_data_video_url(
    fake: FakeT8Star, upstream: T8StarUpstream
) -> None:
    fake.script_next(JobScript(polls=1, url_field="video_url", video_url="https://x.example/1.mp4"))
    answer = await upstream.status(await upstream.submit(REQUEST))
    assert answer.video_url == "https://x.example/1.mp4"


def test_describe_names_the_base_url() -> None:
    assert T8StarUpstream("https://ai.t8star.cn/", "k").describe() == "t8star: https://ai.t8star.cn"


# -- failures the upstream reports ------------------------------------------------------------


async def test_a_late_failure_carries_its_reason_on_one_line(
    fake: FakeT8Star, upstream: T8StarUpstream
) -> None:
    fake.script_next(JobScript.late_failure(reason="视频内容审核未通过\n  (policy)"))
    task_id = await upstream.submit(REQUEST)
    answers = [await upstream.status(task_id) for _ in range(4)]
    assert [a.progress for a in answers[:3]] == [40, 75, 93]
    assert answers[-1].state is UpstreamState.FAILED
    assert answers[-1].raw_status == "FAILURE"
    assert answers[-1].fail_reason == "视频内容审核未通过 (policy)"


async def test_success_without_a_video_url_is_a_permanent_error(
    fake: FakeT8Star, upstream: T8StarUpstream
) -> None:
    fake.script_next(JobScript(polls=1, url_field=None))
    with pytest.raises(UpstreamError) as caught:
        await upstream.status(await upstream.submit(REQUEST))
    assert caught.value.message == "upstream reported success without a video URL"
    assert not caught.value.transient


@pytest.mark.parametrize(
    ("value", "state"),
    [
        ("QUEUED", UpstreamState.PENDING),
        ("SUBMITTED", UpstreamState.PENDING),
        ("NOT_START", UpstreamState.PENDING),
        ("UNKNOWN", UpstreamState.RUNNING),
        ("WEIRD", UpstreamState.RUNNING),
        ("", UpstreamState.RUNNING),
    ],
)
async def test_other_status_values_never_count_as_done(
    fake: FakeT8Star, upstream: T8StarUpstream, value: str, state: UpstreamState
) -> None:
    fake.script_next(JobScript(polls=1))  # the job itself is finished: only the value speaks
    task_id = await upstream.submit(REQUEST)
    fake.fault("status", Fault.status_value(value))
    answer = await upstream.status(task_id)
    assert (answer.state, answer.raw_status, answer.video_url) == (state, value, None)


async def test_a_just_created_id_may_be_unknown_for_a_while(
    fake: FakeT8Star, upstream: T8StarUpstream
) -> None:
    fake.script_next(JobScript(polls=3, not_found_polls=2))
    task_id = await upstream.submit(REQUEST)
    for _ in range(2):
        with pytest.raises(UpstreamError) as caught:
            await upstream.status(task_id)
        assert (caught.value.transient, caught.value.http_status) == (True, 404)
    assert (await upstream.status(task_id)).state is UpstreamState.RUNNING


# -- faults, classified -------------------------------------------------------------------------

FAULTS = [
    # endpoint, fault, transient, http_status, retry_after, message
    ("submit", Fault.rate_limited("7"), True, 429, 7.0, "T8Star rate limit reached (429)"),
    ("status", Fault.rate_limited("2.5"), True, 429, 2.5, "T8Star rate limit reached (429)"),
    ("status", Fault.rate_limited(None), True, 429, None, "T8Star rate limit reached (429)"),
    ("submit", Fault.http(500), True, 500, None, "T8Star server error (500)"),
    ("status", Fault.http(503), True, 503, None, "T8Star server error (503)"),
    ("submit", Fault.http(408), True, 408, None, "T8Star timed out (408)"),
    ("status", Fault.http(504), True, 504, None, "T8Star timed out (504)"),
    ("submit", Fault.http(401), False, 401, None, "T8Star rejected the API key (401)"),
    ("status", Fault.http(401), False, 401, None, "T8Star rejected the API key (401)"),
    ("submit", Fault.http(403), False, 403, None, "T8Star rejected the access (403)"),
    ("submit", Fault.http(400), False, 400, None, "T8Star rejected the request (400)"),
    ("submit", Fault.http(402), False, 402, None, "T8Star refused the call (402)"),
    ("submit", Fault.http(404), False, 404, None, "T8Star refused the call (404)"),
    ("status", Fault.http(404), True, 404, None, "T8Star does not know this task (404)"),
    ("submit", Fault.malformed(), True, 200, None, "upstream sent a malformed answer"),
    ("status", Fault.malformed(), True, 200, None, "upstream sent a malformed answer"),
]


@pytest.mark.parametrize(
    ("endpoint", "fault", "transient", "http_status", "retry_after", "message"), FAULTS
)
async def test_each_fault_is_classified_without_leaking_the_body(
    fake: FakeT8Star,
    upstream: T8StarUpstream,
    caplog: pytest.LogCaptureFixture,
    endpoint: str,
    fault: Fault,
    transient: bool,
    http_status: int,
    retry_after: float | None,
    message: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    task_id = await upstream.submit(REQUEST) if endpoint == "status" else None
    fake.fault(endpoint, fault)  # type: ignore[arg-type]
    with pytest.raises(UpstreamError) as caught:
        if task_id is None:
            await upstream.submit(REQUEST)
        else:
            await upstream.status(task_id)
    exc = caught.value
    assert (exc.message, exc.transient, exc.http_status) == (message, transient, http_status)
    assert exc.retry_after == retry_after
    assert_clean(exc, caplog)
    # The client never retries on its own: a retry is the queue's decision.
    assert len(fake.submits()) == 1
    assert len(fake.status_calls()) == (0 if task_id is None else 1)


async def test_a_wrong_key_is_refused_for_good_and_never_repeated(
    fake: FakeT8Star, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-key-that-the-fake-will-echo-back-000"
    async with T8StarUpstream(fake.base_url, wrong) as client:
        with pytest.raises(UpstreamError) as caught:
            await client.submit(REQUEST)
    assert (caught.value.transient, caught.value.http_status) == (False, 401)
    assert caught.value.message == "T8Star rejected the API key (401)"
    assert wrong not in str(caught.value) and wrong not in caplog.text
    assert_clean(caught.value, caplog)


async def test_without_any_key_nothing_is_sent(fake: FakeT8Star) -> None:
    async with T8StarUpstream(fake.base_url, None) as client:
        with pytest.raises(UpstreamError) as caught:
            await client.submit(REQUEST)
    assert (caught.value.message, caught.value.transient) == ("no T8Star API key configured", False)
    assert fake.requests == []


async def test_an_invalid_task_id_from_upstream_is_refused(
    fake: FakeT8Star, upstream: T8StarUpstream
) -> None:
    fake.script_next(JobScript(task_id="bad id/../x"))
    with pytest.raises(UpstreamError) as caught:
        await upstream.submit(REQUEST)
    assert (caught.value.message, caught.value.transient) == (
        "upstream returned an invalid task id",
        False,
    )


async def test_a_slow_answer_times_out_as_transient(
    fake: FakeT8Star, upstream: T8StarUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    task_id = await upstream.submit(REQUEST)
    fake.fault("status", Fault.slow(30))
    fake.fault("submit", Fault.slow(30))
    impatient = T8StarUpstream(fake.base_url, DEFAULT_KEY, timeout=httpx.Timeout(0.2, connect=5))
    async with impatient:
        with pytest.raises(UpstreamError) as status_caught:
            await impatient.status(task_id)
        with pytest.raises(UpstreamError) as submit_caught:
            await impatient.submit(REQUEST)
    for exc in (status_caught.value, submit_caught.value):
        assert (exc.message, exc.transient, exc.http_status) == (
            "T8Star did not answer in time",
            True,
            None,
        )
        assert_clean(exc, caplog)
    assert len(fake.status_calls(task_id)) == 1 and len(fake.submits()) == 2


async def test_an_unreachable_upstream_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with T8StarUpstream(f"http://127.0.0.1:{port}", DEFAULT_KEY) as client:
        with pytest.raises(UpstreamError) as caught:
            await client.submit(REQUEST)
    assert caught.value.transient
    assert caught.value.message.startswith("could not reach T8Star")


async def test_an_unchecked_id_never_reaches_the_url(
    fake: FakeT8Star, upstream: T8StarUpstream
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await upstream.status("../../v1/other")
    assert not caught.value.transient
    assert fake.requests == []


# -- parsing, pure ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("37%", 37), ("37", 37), (37, 37), (" 37 % ", 37), ("37.9%", 37), (99.5, 99),
        ("150%", 100), ("-5%", 0), ("", None), ("abc", None), (None, None), (True, None),
        ("nan%", None), ([], None),
    ],
)  # fmt: skip
def test_progress_is_read_from_text_or_numbers(raw: object, expected: int | None) -> None:
    assert parse_progress(raw) == expected


NOW = datetime(2025, 9, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0), ("0", 0.0), ("1.5", 1.5), ("-3", 0.0), ("999999", 3600.0),
        ("Mon, 01 Sep 2025 12:00:30 GMT", 30.0), ("Mon, 01 Sep 2025 11:00:00 GMT", 0.0),
        ("soon", None), ("", None), (None, None), ("inf", None),
    ],
)  # fmt: skip
def test_retry_after_is_seconds_or_an_http_date(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


@pytest.mark.parametrize("payload", [None, [], "SUCCESS", {}, {"status": 3}, {"progress": "10%"}])
def test_an_unexpected_shape_is_a_transient_malformed_answer(payload: object) -> None:
    with pytest.raises(UpstreamError) as caught:
        parse_status(payload)
    assert (caught.value.message, caught.value.transient) == (
        "upstream sent a malformed answer",
        True,
    )


def test_failure_reasons_are_short_single_lines_without_the_key() -> None:
    assert short_reason("") == "upstream reported failure without a reason"
    assert short_reason(None) == "upstream reported failure without a reason"
    assert short_reason("bad key sk-123 used", "sk-123") == "bad key *** used"
    long = short_reason("word " * 200)
    assert len(long) <= 300 and long.endswith("…") and "\n" not in long
    failed = parse_status({"status": "FAILURE", "fail_reason": "", "progress": "100%"})
    assert failed.fail_reason == "upstream reported failure without a reason"


def test_a_status_or_video_url_with_control_characters_is_never_taken_raw() -> None:
    # A NUL is more than PostgreSQL can store; an escape sequence would reach a terminal.
    odd = parse_status({"status": "IN_\x00PROGRESS\x1b[2J" + "x" * 100})
    assert odd.raw_status.startswith("IN_ PROGRESS [2J") and len(odd.raw_status) <= 64
    data = {"output": "https://v.example/a\x00.mp4", "video_url": "https://v.example/b.mp4"}
    done = parse_status({"status": "SUCCESS", "data": data})
    assert done.video_url == "https://v.example/b.mp4"
