"""The QStash fake, driven by the unmodified `qstash` SDK and delivering to a loopback receiver."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math

import httpx
import jwt
import pytest
from qstash import AsyncQStash
from qstash.errors import QStashError, RateLimitExceededError

from core.errors import SignatureError
from core.queue import Delivery, DeliveryHandler, DeliveryResult
from core.signing import verify
from tests.fakes.qstash import (
    DEV_CURRENT_SIGNING_KEY,
    DEV_NEXT_SIGNING_KEY,
    DEV_TOKEN,
    DeliveryReceiver,
    FakeQStash,
)
from tests.fakes.qstash.wire import (
    RetryDelay,
    default_backoff,
    parse_delay,
    parse_flow_value,
    parse_retry_after,
)

BODY = b'{"task_id":"t1","attempt":1,"step":"submit","seq":1}'
# A receiver port nobody listens on: deliveries to it fail with a connection error.
CLOSED_PORT_URL = "http://127.0.0.1:9/worker"


def statuses(status_codes: list[int]) -> DeliveryHandler:
    """A handler answering the given statuses in turn, then 200."""
    answers = iter(status_codes)

    async def handler(delivery: Delivery) -> DeliveryResult:
        return DeliveryResult(next(answers, 200))

    return handler


async def publish(qstash_sdk: AsyncQStash, url: str, **options: object) -> str:
    response = await qstash_sdk.message.publish(url=url, body=BODY, **options)  # type: ignore[arg-type]
    return response.message_id  # type: ignore[union-attr]


# Delivery.


async def test_a_delivery_carries_the_exact_body_headers_and_a_valid_signature(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    message_id = await publish(
        qstash_sdk,
        receiver.url,
        content_type="application/json",
        headers={"X-Request-Source": "tests"},
    )
    await receiver.wait_for(lambda: len(receiver.received) == 1)
    got = receiver.received[0]
    headers = got.delivery.headers
    assert got.verified, got.reason
    assert got.delivery.body == BODY
    assert headers["content-type"] == "application/json"
    assert headers["x-request-source"] == "tests"
    assert headers["upstash-message-id"] == message_id
    assert headers["upstash-retried"] == "0"
    assert headers["user-agent"] == "Upstash-QStash"
    assert headers["upstash-caller-ip"] == "127.0.0.1"
    claims = jwt.decode(headers["upstash-signature"], options={"verify_signature": False})
    assert claims["iss"] == "Upstash" and claims["sub"] == receiver.url and claims["nbf"] == 0
    assert claims["exp"] - claims["iat"] == 300 and claims["jti"].startswith("jwt_")
    assert claims["body"] == base64.urlsafe_b64encode(hashlib.sha256(BODY).digest()).decode()
    assert jwt.get_unverified_header(headers["upstash-signature"])["alg"] == "HS256"


async def test_the_destination_query_string_is_kept_from_the_raw_path(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    async def accept_any_subject(delivery: Delivery) -> DeliveryResult:
        return DeliveryResult(200)

    receiver.set_handler(accept_any_subject)
    await publish(qstash_sdk, receiver.url + "?x=1&y=2")
    await receiver.wait_for(lambda: len(receiver.received) == 1)
    token = receiver.received[0].delivery.headers["upstash-signature"]
    claims = verify(token, BODY, current_key=DEV_CURRENT_SIGNING_KEY, next_key=None, subject=None)
    assert claims["sub"] == receiver.url + "?x=1&y=2"


async def test_a_message_is_gone_once_delivered(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    message_id = await publish(qstash_sdk, receiver.url)
    await fake_qstash.wait_for(lambda: message_id in fake_qstash.delivered())
    with pytest.raises(QStashError, match="404"):
        await qstash_sdk.message.get(message_id)
    assert fake_qstash.pending() == 0


async def test_failures_are_retried_with_fresh_tokens_and_a_growing_retried_count(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    receiver.set_handler(statuses([500, 502]))
    message_id = await publish(qstash_sdk, receiver.url)
    await fake_qstash.wait_for(lambda: message_id in fake_qstash.delivered())
    retried = [r.retried for r in receiver.received]
    tokens = {r.delivery.headers["upstash-signature"] for r in receiver.received}
    assert retried == [0, 1, 2]
    assert len(tokens) == 3 and all(r.verified for r in receiver.received)
    assert fake_qstash.deliveries()[message_id] == 3


async def test_retries_run_out_into_the_dead_letter_queue(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    receiver.set_handler(statuses([503] * 10))
    message_id = await publish(qstash_sdk, receiver.url, retries=2)
    await fake_qstash.wait_for(lambda: len(fake_qstash.dead_letters()) == 1)
    assert [r.retried for r in receiver.received] == [0, 1, 2]
    dlq = await qstash_sdk.dlq.list()
    assert [m.message_id for m in dlq.messages] == [message_id]
    assert dlq.messages[0].response_status == 503


async def test_489_with_the_non_retryable_header_dead_letters_at_once(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    async def refuse(delivery: Delivery) -> DeliveryResult:
        return DeliveryResult(489, non_retryable=True)

    receiver.set_handler(refuse)
    message_id = await publish(qstash_sdk, receiver.url)
    await fake_qstash.wait_for(lambda: len(fake_qstash.dead_letters()) == 1)
    assert fake_qstash.deliveries()[message_id] == 1
    assert fake_qstash.dead_letters()[0]["responseStatus"] == 489


async def dead_lettered(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash, count: int
) -> list[str]:
    """Publish `count` messages that are refused for good; their dlqIds once all are dead."""

    async def refuse(delivery: Delivery) -> DeliveryResult:
        return DeliveryResult(489, non_retryable=True)

    receiver.set_handler(refuse)
    for _ in range(count):
        await publish(qstash_sdk, receiver.url)
    await fake_qstash.wait_for(lambda: len(fake_qstash.dead_letters()) == count)
    return [entry["dlqId"] for entry in fake_qstash.dead_letters()]


async def test_the_dlq_is_deleted_by_json_ids_by_query_ids_or_whole(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    first, second, third, fourth = await dead_lettered(fake_qstash, receiver, qstash_sdk, 4)
    assert await qstash_sdk.dlq.delete_many([first]) == 1
    query = await qstash_sdk.http.request(path=f"/v2/dlq?dlqIds={second}", method="DELETE")
    assert query == {"deleted": 1}
    assert [m.dlq_id for m in (await qstash_sdk.dlq.list()).messages] == [third, fourth]
    assert await qstash_sdk.http.request(path="/v2/dlq", method="DELETE") == {"deleted": 2}
    assert fake_qstash.dead_letters() == []


async def test_a_dlq_retry_publishes_a_new_message_with_the_same_body(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    [dlq_id] = await dead_lettered(fake_qstash, receiver, qstash_sdk, 1)
    receiver.set_handler(statuses([]))
    answer = await qstash_sdk.http.request(path=f"/v2/dlq/retry/{dlq_id}", method="POST")
    await fake_qstash.wait_for(lambda: answer["messageId"] in fake_qstash.delivered())
    assert receiver.received[-1].delivery.body == BODY
    assert fake_qstash.dead_letters() == []
    with pytest.raises(QStashError, match="404"):
        await qstash_sdk.http.request(path=f"/v2/dlq/retry/{dlq_id}", method="POST")


async def test_489_without_the_header_is_an_ordinary_failure(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    receiver.set_handler(statuses([489]))
    message_id = await publish(qstash_sdk, receiver.url)
    await fake_qstash.wait_for(lambda: message_id in fake_qstash.delivered())
    assert fake_qstash.deliveries()[message_id] == 2


async def test_connection_errors_are_retried_then_dead_lettered(
    fake_qstash: FakeQStash, qstash_sdk: AsyncQStash
) -> None:
    message_id = await publish(qstash_sdk, CLOSED_PORT_URL, retries=1)
    await fake_qstash.wait_for(lambda: len(fake_qstash.dead_letters()) == 1)
    attempts = fake_qstash.attempts()
    assert [(a.message_id, a.retried, a.status) for a in attempts] == [
        (message_id, 0, None),
        (message_id, 1, None),
    ]
    assert fake_qstash.dead_letters()[0]["responseStatus"] == 0


async def test_a_delivery_that_outlives_the_timeout_is_retried() -> None:
    hold = asyncio.Event()

    async def slow_first(delivery: Delivery) -> DeliveryResult:
        if delivery.headers["upstash-retried"] == "0":
            await hold.wait()
        return DeliveryResult(200)

    with FakeQStash(time_scale=0.001, delivery_timeout=0.2) as fake_qstash:
        client = AsyncQStash(DEV_TOKEN, base_url=fake_qstash.url, retry=False)
        async with DeliveryReceiver(slow_first) as rx:
            message_id = await publish(client, rx.url)
            await fake_qstash.wait_for(lambda: message_id in fake_qstash.delivered())
            hold.set()
        await client.http._client.aclose()
    assert [(a.retried, a.status, a.error) for a in fake_qstash.attempts()] == [
        (0, None, "timeout"),
        (1, 200, ""),
    ]


async def test_retry_after_zero_beats_the_twelve_second_backoff(
    receiver: DeliveryReceiver,
) -> None:
    async def busy_once(delivery: Delivery) -> DeliveryResult:
        first = delivery.headers["upstash-retried"] == "0"
        return DeliveryResult(429, retry_after=0) if first else DeliveryResult(200)

    receiver.set_handler(busy_once)
    with FakeQStash(time_scale=1.0) as fake_qstash:  # real backoff: the first retry waits 12 s
        client = AsyncQStash(DEV_TOKEN, base_url=fake_qstash.url, retry=False)
        message_id = await publish(client, receiver.url)
        await fake_qstash.wait_for(lambda: message_id in fake_qstash.delivered(), timeout=5)
        await client.http._client.aclose()


async def test_a_retry_after_beyond_one_day_falls_back_to_the_backoff(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    async def two_days_once(delivery: Delivery) -> DeliveryResult:
        first = delivery.headers["upstash-retried"] == "0"
        return DeliveryResult(503, retry_after=2 * 86400) if first else DeliveryResult(200)

    receiver.set_handler(two_days_once)  # honoured, 2 days x 0.001 would be 173 s
    message_id = await publish(qstash_sdk, receiver.url)
    await fake_qstash.wait_for(lambda: message_id in fake_qstash.delivered(), timeout=5)


async def test_a_retry_delay_expression_replaces_the_backoff(receiver: DeliveryReceiver) -> None:
    receiver.set_handler(statuses([500, 500]))
    with FakeQStash(time_scale=1.0) as fake_qstash:
        client = AsyncQStash(DEV_TOKEN, base_url=fake_qstash.url, retry=False)
        message_id = await publish(client, receiver.url, retry_delay="10 * retried")
        await fake_qstash.wait_for(lambda: message_id in fake_qstash.delivered(), timeout=5)
        await client.http._client.aclose()


# Publishing.


async def test_a_duplicate_deduplication_id_answers_202_with_the_first_id(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver
) -> None:
    url = f"{fake_qstash.url}/v2/publish/{receiver.url}"
    headers = {"Authorization": f"Bearer {DEV_TOKEN}", "Upstash-Deduplication-Id": "t1-1-submit-1"}
    async with httpx.AsyncClient() as http:
        first = await http.post(url, content=BODY, headers=headers)
        second = await http.post(url, content=BODY, headers=headers)
    assert first.status_code == 201 and second.status_code == 202
    assert second.json() == {"messageId": first.json()["messageId"], "deduplicated": True}
    await fake_qstash.wait_for(lambda: len(fake_qstash.delivered()) == 1)
    assert fake_qstash.publishes == 1 and fake_qstash.deduplicated == 1
    assert len(receiver.received) == 1


async def test_content_based_deduplication_accepts_the_sdk_spelling(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    first = await qstash_sdk.message.publish(
        url=receiver.url, body=BODY, content_based_deduplication=True
    )
    again = await qstash_sdk.message.publish(
        url=receiver.url, body=BODY, content_based_deduplication=True
    )
    other = await qstash_sdk.message.publish(
        url=receiver.url, body=b"{}", content_based_deduplication=True
    )
    assert again.message_id == first.message_id and again.deduplicated  # type: ignore[union-attr]
    assert other.message_id != first.message_id  # type: ignore[union-attr]


async def test_the_dedup_window_is_configurable(receiver: DeliveryReceiver) -> None:
    with FakeQStash(time_scale=0.001, dedup_window=0) as fake_qstash:
        client = AsyncQStash(DEV_TOKEN, base_url=fake_qstash.url, retry=False)
        first = await publish(client, receiver.url, deduplication_id="same")
        second = await publish(client, receiver.url, deduplication_id="same")
        await client.http._client.aclose()
    assert first != second


async def test_a_deduplication_id_with_a_colon_is_refused(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    with pytest.raises(QStashError, match="400.*cannot contain ':'"):
        await publish(qstash_sdk, receiver.url, deduplication_id="t1:1")
    assert fake_qstash.publishes == 0


async def test_a_bad_token_is_refused_with_401(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver
) -> None:
    bad = AsyncQStash("not-the-token", base_url=fake_qstash.url, retry=False)
    with pytest.raises(QStashError, match="401"):
        await publish(bad, receiver.url)
    await bad.http._client.aclose()
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{fake_qstash.url}/v2/publish/{receiver.url}", content=BODY)
        by_query = await http.post(
            f"{fake_qstash.url}/v2/publish/{receiver.url}", params={"qstash_token": DEV_TOKEN}
        )
    assert answer.status_code == 401 and "error" in answer.json()
    assert by_query.status_code == 201
    await fake_qstash.wait_for(lambda: len(fake_qstash.delivered()) == 1)
    assert receiver.received[0].verified  # the token parameter is not part of the destination


async def test_a_destination_without_a_scheme_is_refused(fake_qstash: FakeQStash) -> None:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {DEV_TOKEN}"}) as http:
        answer = await http.post(f"{fake_qstash.url}/v2/publish/example.com/worker", content=BODY)
    assert answer.status_code == 400
    assert "invalid scheme" in answer.json()["error"]


async def test_a_delay_holds_the_message_and_not_before_overrides_it(
    receiver: DeliveryReceiver,
) -> None:
    with FakeQStash(time_scale=1.0) as fake_qstash:
        client = AsyncQStash(DEV_TOKEN, base_url=fake_qstash.url, retry=False)
        delayed = await publish(client, receiver.url, delay="1d10h30m")
        pinned = await publish(client, receiver.url, delay="10s", not_before=4_000_000_000)
        prompt = await publish(client, receiver.url)
        await fake_qstash.wait_for(lambda: prompt in fake_qstash.delivered())
        held = await client.message.get(delayed)
        pinned_message = await client.message.get(pinned)
        await client.http._client.aclose()
    assert held.not_before - held.created_at == (86400 + 10 * 3600 + 30 * 60) * 1000
    assert pinned_message.not_before == 4_000_000_000_000
    assert [r.message_id for r in receiver.received] == [prompt]


async def test_a_scaled_delay_is_delivered(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    message_id = await publish(qstash_sdk, receiver.url, delay=60)
    await fake_qstash.wait_for(lambda: message_id in fake_qstash.delivered())


async def test_the_message_api_describes_a_pending_message(
    receiver: DeliveryReceiver,
) -> None:
    with FakeQStash() as fake_qstash:
        client = AsyncQStash(DEV_TOKEN, base_url=fake_qstash.url, retry=False)
        message_id = await publish(
            client, receiver.url, delay=3600, retries=5, headers={"X-A": "b"},
            retry_delay="1000", flow_control={"key": "t8star", "parallelism": 3},
        )  # fmt: skip
        message = await client.message.get(message_id)
        await client.http._client.aclose()
    assert message.url == receiver.url and message.method == "POST"
    assert message.max_retries == 5 and message.body == BODY.decode()
    assert message.headers == {"X-A": ["b"]}
    assert message.retry_delay_expression == "1000"
    assert message.flow_control is not None and message.flow_control.parallelism == 3


async def test_cancel_prevents_delivery(receiver: DeliveryReceiver) -> None:
    with FakeQStash(time_scale=1.0) as fake_qstash:
        client = AsyncQStash(DEV_TOKEN, base_url=fake_qstash.url, retry=False)
        cancelled = await publish(client, receiver.url, delay=3600)
        await client.message.cancel(cancelled)
        with pytest.raises(QStashError, match="404"):
            await client.message.get(cancelled)
        with pytest.raises(QStashError, match="404"):
            await client.message.cancel(cancelled)
        others = [await publish(client, receiver.url, delay=3600) for _ in range(2)]
        assert await client.message.cancel_many(others[:1]) == 1
        assert await client.message.cancel_all() == 1
        prompt = await publish(client, receiver.url)
        await fake_qstash.wait_for(lambda: prompt in fake_qstash.delivered())
        await client.http._client.aclose()
    assert [r.message_id for r in receiver.received] == [prompt]


async def test_stop_cancels_pending_deliveries(receiver: DeliveryReceiver) -> None:
    fake_qstash = FakeQStash(time_scale=1.0).start()
    client = AsyncQStash(DEV_TOKEN, base_url=fake_qstash.url, retry=False)
    await publish(client, receiver.url, delay=3600)
    await client.http._client.aclose()
    fake_qstash.stop()
    assert fake_qstash.pending() == 1 and receiver.received == []


async def test_a_non_utf8_body_is_described_in_base64(qstash_sdk: AsyncQStash) -> None:
    message_id = await publish(qstash_sdk, CLOSED_PORT_URL, delay=3600)
    raw = b"\xff\xfe"
    binary = await qstash_sdk.message.publish(url=CLOSED_PORT_URL, body=raw, delay=3600)
    message = await qstash_sdk.message.get(binary.message_id)  # type: ignore[union-attr]
    assert message.body_base64 == base64.b64encode(raw).decode() and message.body is None
    assert (await qstash_sdk.message.get(message_id)).body == BODY.decode()


# Signing keys.


async def test_keys_rotate_and_deliveries_then_verify_through_the_next_key(
    fake_qstash: FakeQStash, qstash_sdk: AsyncQStash
) -> None:
    keys = await qstash_sdk.signing_key.get()
    assert (keys.current, keys.next) == (DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY)
    rotated = await qstash_sdk.signing_key.rotate()
    assert rotated.current == DEV_NEXT_SIGNING_KEY and rotated.next.startswith("sig_")
    assert len(rotated.next) == 32 and fake_qstash.keys == (rotated.current, rotated.next)
    async with DeliveryReceiver() as rx:  # still configured with the pre-rotation pair
        await publish(qstash_sdk, rx.url)
        await rx.wait_for(lambda: len(rx.received) == 1)
        got = rx.received[0]
    assert got.verified
    token = got.delivery.headers["upstash-signature"]
    with pytest.raises(SignatureError):
        verify(token, BODY, current_key=DEV_CURRENT_SIGNING_KEY, next_key=None, subject=None)


# Flow control.


async def test_parallelism_caps_calls_in_flight_per_key(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    in_flight, peak = 0, 0
    release = asyncio.Event()

    async def hold(delivery: Delivery) -> DeliveryResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        in_flight -= 1
        return DeliveryResult(200)

    receiver.set_handler(hold)
    flow = {"key": "t8star", "parallelism": 2}
    ids = [await publish(qstash_sdk, receiver.url, flow_control=flow) for _ in range(5)]
    await receiver.wait_for(lambda: in_flight == 2)
    info = await qstash_sdk.flow_control.get("t8star")
    assert info.parallelism_max == 2 and info.parallelism_count == 2
    assert info.wait_list_size == 3
    release.set()
    await fake_qstash.wait_for(lambda: set(ids) <= set(fake_qstash.delivered()))
    assert peak == 2


async def test_rate_holds_calls_beyond_the_period_budget_in_the_wait_list(
    receiver: DeliveryReceiver,
) -> None:
    with FakeQStash(time_scale=1.0) as fake_qstash:  # a real one-minute period: the rest must wait
        client = AsyncQStash(DEV_TOKEN, base_url=fake_qstash.url, retry=False)
        flow = {"key": "t8star", "rate": 2, "period": 60}
        for _ in range(5):
            await publish(client, receiver.url, flow_control=flow)
        await receiver.wait_for(lambda: len(receiver.received) == 2)
        info = await client.flow_control.get("t8star")
        await client.http._client.aclose()
    assert (info.rate_max, info.rate_count, info.wait_list_size) == (2, 2, 3)
    assert len(receiver.received) == 2


# Hooks.


async def test_the_duplicate_hook_sends_the_next_delivery_twice(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    fake_qstash.duplicate_deliveries(1)
    twice = await publish(qstash_sdk, receiver.url)
    await fake_qstash.wait_for(lambda: twice in fake_qstash.delivered())
    once = await publish(qstash_sdk, receiver.url)
    await fake_qstash.wait_for(lambda: once in fake_qstash.delivered())
    copies = receiver.for_message(twice)
    assert fake_qstash.deliveries() == {twice: 2, once: 1}
    assert [c.retried for c in copies] == [0, 0] and all(c.verified for c in copies)
    assert len({c.delivery.headers["upstash-signature"] for c in copies}) == 2


async def test_the_duplicate_hook_can_duplicate_every_delivery_one_after_the_other(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    fake_qstash.duplicate_deliveries(concurrent=False)
    receiver.set_handler(statuses([500]))
    message_id = await publish(qstash_sdk, receiver.url)
    await fake_qstash.wait_for(lambda: message_id in fake_qstash.delivered())
    assert [a.duplicate for a in fake_qstash.attempts()] == [False, True, False, True]


async def test_the_delay_hook_still_delivers(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    fake_qstash.delay_deliveries(0.05)
    message_id = await publish(qstash_sdk, receiver.url)
    await fake_qstash.wait_for(lambda: message_id in fake_qstash.delivered())


@pytest.mark.parametrize(
    ("how", "error"),
    [("error", QStashError), ("rate_limit", RateLimitExceededError), ("close", httpx.HTTPError)],
)
async def test_refused_publishes_fail_then_recover(
    fake_qstash: FakeQStash,
    receiver: DeliveryReceiver,
    qstash_sdk: AsyncQStash,
    how: str,
    error: type[Exception],
) -> None:
    fake_qstash.refuse_publishes(2, how=how)
    for _ in range(2):
        with pytest.raises(error):
            await publish(qstash_sdk, receiver.url)
    message_id = await publish(qstash_sdk, receiver.url)
    await fake_qstash.wait_for(lambda: message_id in fake_qstash.delivered())
    assert (
        fake_qstash.refused == 2
        and fake_qstash.publishes == 1
        and fake_qstash.publish_requests == 3
    )


async def test_publishes_can_be_refused_until_accepted_again(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    fake_qstash.refuse_publishes(seconds=3600)
    with pytest.raises(QStashError, match="500"):
        await publish(qstash_sdk, receiver.url)
    fake_qstash.accept_publishes()
    message_id = await publish(qstash_sdk, receiver.url)
    await receiver.wait_for(lambda: len(receiver.for_message(message_id)) == 1)


# Wire formats.


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("1m", 60), ("2h", 7200), ("7d", 604800), ("1d10h30m", 124200)],
)
def test_delays_parse(text: str, seconds: int) -> None:
    assert parse_delay(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "1x", "s10", "1m 2s"])
def test_bad_delays_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_delay(text)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("120", 120.0),
        ("6m5s", 365.0),
        ("1h", 3600.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 40.0),  # 100 s past the epoch, seen from 60 s
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after_values_parse(value: str, seconds: float | None) -> None:
    assert parse_retry_after(value, now=60.0) == seconds


@pytest.mark.parametrize(
    ("expression", "retried", "seconds"),
    [
        ("1000", 0, 1.0),
        ("1000 * (1 + retried)", 2, 3.0),
        ("pow(2, retried) * 1000", 3, 8.0),
        ("max(1000, pow(2, retried) * 100)", 1, 1.0),
    ],
)
def test_retry_delay_expressions_evaluate_in_milliseconds(
    expression: str, retried: int, seconds: float
) -> None:
    assert RetryDelay(expression).seconds(retried) == seconds


@pytest.mark.parametrize("expression", ["__import__('os')", "retried.real", "1000 +", "x * 2"])
def test_unsafe_or_bad_retry_delay_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ValueError):
        RetryDelay(expression)


def test_the_default_backoff_follows_the_reference_table() -> None:
    table = [round(default_backoff(n)) for n in range(1, 7)]
    assert table == [12, 148, 1808, 22026, 86400, 86400]
    assert default_backoff(1) == math.exp(2.5)


def test_flow_control_values_parse() -> None:
    limits = parse_flow_value("parallelism=3, rate=10, period=1m")
    assert (limits.parallelism, limits.rate, limits.period) == (3, 10, 60.0)
    assert parse_flow_value("rate=5, period=30").period == 30.0
    assert parse_flow_value("").parallelism is None
    with pytest.raises(ValueError):
        parse_flow_value("parallelism=0")
