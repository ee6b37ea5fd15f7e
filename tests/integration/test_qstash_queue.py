"""QStashQueue through the unmodified SDK against the QStash fake, then a loopback receiver."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from qstash import AsyncQStash
from qstash.errors import QStashError

from core.errors import QueueError
from core.models import WorkMessage
from core.queue import Delivery, DeliveryResult
from core.queue.qstash import QStashQueue
from tests.fakes.qstash import DEV_TOKEN, DeliveryReceiver, FakeQStash

BAD_TOKEN = "eyJVc2VySUQiOiJub2JvZHkiLCJQYXNzd29yZCI6InNlY3JldC10b2tlbi12YWx1ZSJ9"


def step(task_id: str = "t1", seq: int = 1, attempt: int = 1) -> WorkMessage:
    return WorkMessage(task_id=task_id, attempt=attempt, step="poll", seq=seq)


@pytest.fixture
async def queue(fake_qstash: FakeQStash, receiver: DeliveryReceiver) -> AsyncIterator[QStashQueue]:
    q = QStashQueue(DEV_TOKEN, receiver.url, base_url=fake_qstash.url)
    await q.open()
    yield q
    await q.close()


async def test_a_step_is_delivered_signed_with_its_exact_bytes(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, queue: QStashQueue
) -> None:
    message = step()
    message_id = await queue.publish(message)
    await receiver.wait_for(lambda: len(receiver.received) == 1)
    got = receiver.received[0]
    assert got.verified, got.reason
    assert WorkMessage.from_bytes(got.delivery.body) == message
    assert got.delivery.body == message.to_bytes()
    assert got.delivery.headers["content-type"] == "application/json"
    assert got.message_id == message_id and got.retried == 0
    assert queue.describe() == f"qstash: {fake_qstash.url}"


async def test_a_republished_step_is_deduplicated_and_returns_the_first_id(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, queue: QStashQueue
) -> None:
    first = await queue.publish(step(), delay=30)
    again = await queue.publish(step(), delay=30)
    next_attempt = await queue.publish(step(attempt=2), delay=30)
    assert again == first and next_attempt != first
    assert fake_qstash.deduplicated == 1 and fake_qstash.publishes == 2
    assert queue.publish_errors == 0


async def test_delays_are_rounded_up_to_whole_seconds_and_zero_sends_none(
    receiver: DeliveryReceiver,
) -> None:
    held = {}
    with FakeQStash(time_scale=1.0) as fake_qstash:  # unscaled, so the messages wait to be read
        queue = QStashQueue(DEV_TOKEN, receiver.url, base_url=fake_qstash.url)
        qstash_sdk = AsyncQStash(DEV_TOKEN, base_url=fake_qstash.url, retry=False)
        await queue.open()
        for seq, delay in [(1, 0.2), (2, 2.0), (3, 2.01)]:
            message = await qstash_sdk.message.get(await queue.publish(step(seq=seq), delay=delay))
            held[delay] = message.not_before - message.created_at
        queue.destination = "http://127.0.0.1:9/worker"  # undeliverable: stays to be read
        message = await qstash_sdk.message.get(await queue.publish(step(seq=4), delay=0))
        await queue.close()
        await qstash_sdk.http._client.aclose()
    assert held == {0.2: 1000, 2.0: 2000, 2.01: 3000}
    assert message.not_before == message.created_at


async def test_a_delayed_step_arrives_after_its_scaled_delay(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, queue: QStashQueue
) -> None:
    message_id = await queue.publish(step(), delay=90)
    await fake_qstash.wait_for(lambda: message_id in fake_qstash.delivered())
    assert [r.message_id for r in receiver.received] == [message_id]


async def test_retries_and_flow_control_travel_with_the_message(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    queue = QStashQueue(
        DEV_TOKEN,
        receiver.url,
        base_url=fake_qstash.url,
        retries=5,
        flow_control_key="t8star",
        parallelism=4,
        rate=10,
        period=60,
    )
    await queue.open()
    message = await qstash_sdk.message.get(await queue.publish(step(), delay=3600))
    await queue.close()
    assert message.max_retries == 5
    assert message.flow_control is not None
    assert message.flow_control.key == "t8star"
    assert (message.flow_control.parallelism, message.flow_control.rate) == (4, 10)
    assert message.flow_control.period == 60


async def test_without_limits_no_flow_control_is_sent(
    qstash_sdk: AsyncQStash, queue: QStashQueue
) -> None:
    message = await qstash_sdk.message.get(await queue.publish(step(), delay=3600))
    assert message.flow_control is None


async def test_retries_back_off_then_dead_letter(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver
) -> None:
    async def always_busy(delivery: Delivery) -> DeliveryResult:
        return DeliveryResult(503)

    receiver.set_handler(always_busy)
    queue = QStashQueue(DEV_TOKEN, receiver.url, base_url=fake_qstash.url, retries=2)
    await queue.open()
    message_id = await queue.publish(step())
    await fake_qstash.wait_for(lambda: len(fake_qstash.dead_letters()) == 1)
    await queue.close()
    assert [r.retried for r in receiver.for_message(message_id)] == [0, 1, 2]


async def test_retry_after_from_the_worker_is_honoured(receiver: DeliveryReceiver) -> None:
    async def wait_once(delivery: Delivery) -> DeliveryResult:
        if delivery.headers["upstash-retried"] == "0":
            return DeliveryResult(503, retry_after=0.01)
        return DeliveryResult(200)

    receiver.set_handler(wait_once)
    with FakeQStash(time_scale=1.0) as fake_qstash:  # unscaled: the default first retry waits 12 s
        queue = QStashQueue(DEV_TOKEN, receiver.url, base_url=fake_qstash.url)
        await queue.open()
        message_id = await queue.publish(step())
        await fake_qstash.wait_for(lambda: message_id in fake_qstash.delivered(), timeout=5)
        await queue.close()
    assert [r.retried for r in receiver.received] == [0, 1]


async def test_a_non_retryable_answer_dead_letters_without_retry(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, queue: QStashQueue
) -> None:
    async def never(delivery: Delivery) -> DeliveryResult:
        return DeliveryResult(489, non_retryable=True, reason="malformed")

    receiver.set_handler(never)
    message_id = await queue.publish(step())
    await fake_qstash.wait_for(lambda: len(fake_qstash.dead_letters()) == 1)
    assert fake_qstash.deliveries()[message_id] == 1


async def test_every_delivery_duplicated_reaches_the_worker_twice(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, queue: QStashQueue
) -> None:
    fake_qstash.duplicate_deliveries()
    ids = [await queue.publish(step(seq=seq)) for seq in (1, 2)]
    await fake_qstash.wait_for(lambda: set(ids) <= set(fake_qstash.delivered()))
    assert fake_qstash.deliveries() == {ids[0]: 2, ids[1]: 2}
    assert all(r.verified for r in receiver.received)


async def test_deliveries_verify_through_the_next_key_after_a_rotation(
    fake_qstash: FakeQStash, qstash_sdk: AsyncQStash, queue: QStashQueue
) -> None:
    old_current, old_next = fake_qstash.keys
    await qstash_sdk.signing_key.rotate()
    async with (
        DeliveryReceiver(current_key=old_current, next_key=old_next) as both,
        DeliveryReceiver(current_key=old_current, next_key=None) as current_only,
    ):
        for seq, rx in enumerate((both, current_only), start=1):
            queue.destination = rx.url
            await queue.publish(step(seq=seq))
        await both.wait_for(lambda: len(both.received) == 1)
        await current_only.wait_for(lambda: len(current_only.received) >= 1)
    assert both.received[0].verified
    assert not current_only.received[0].verified


async def test_a_bad_token_raises_queue_error_without_the_token(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    queue = QStashQueue(BAD_TOKEN, receiver.url, base_url=fake_qstash.url)
    await queue.open()
    with caplog.at_level(logging.DEBUG), pytest.raises(QueueError) as raised:
        await queue.publish(step())
    await queue.close()
    assert "401" in raised.value.message and "QSTASH_TOKEN" in raised.value.message
    assert BAD_TOKEN not in str(raised.value) and BAD_TOKEN not in repr(raised.value)
    assert BAD_TOKEN not in caplog.text
    assert queue.publish_errors == 1


@pytest.mark.parametrize(
    ("how", "refusals", "failures"),
    # A dropped connection is retried twice by the SDK itself, so 3 refusals make 1 failure.
    [("error", 2, 2), ("rate_limit", 2, 2), ("close", 3, 1)],
)
async def test_refused_publishes_raise_queue_error_and_are_counted(
    fake_qstash: FakeQStash,
    receiver: DeliveryReceiver,
    queue: QStashQueue,
    how: str,
    refusals: int,
    failures: int,
) -> None:
    fake_qstash.refuse_publishes(refusals, how=how)
    for seq in range(1, failures + 1):
        with pytest.raises(QueueError, match="QStash publish failed"):
            await queue.publish(step(seq=seq))
    assert queue.publish_errors == failures and fake_qstash.refused == refusals
    message_id = await queue.publish(step(seq=9))
    await fake_qstash.wait_for(lambda: message_id in fake_qstash.delivered())


async def test_an_unreachable_qstash_raises_queue_error(receiver: DeliveryReceiver) -> None:
    queue = QStashQueue(DEV_TOKEN, receiver.url, base_url="http://127.0.0.1:9")
    await queue.open()
    with pytest.raises(QueueError, match="could not reach http://127.0.0.1:9"):
        await queue.publish(step())
    await queue.close()
    assert queue.publish_errors == 1


async def test_a_colon_in_the_deduplication_id_is_refused_before_publishing(
    fake_qstash: FakeQStash, queue: QStashQueue
) -> None:
    with pytest.raises(QueueError, match="':'"):
        await queue.publish(step(task_id="a:b"))
    assert fake_qstash.publish_requests == 0


async def test_cancel_prevents_delivery_and_ignores_unknown_ids(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash, queue: QStashQueue
) -> None:
    cancelled = await queue.publish(step(seq=1), delay=3600)
    await queue.cancel(cancelled)
    with pytest.raises(QStashError, match="404"):
        await qstash_sdk.message.get(cancelled)
    await queue.cancel(cancelled)  # already gone: not an error
    await queue.cancel("")
    delivered = await queue.publish(step(seq=2))
    await fake_qstash.wait_for(lambda: delivered in fake_qstash.delivered())
    assert [r.message_id for r in receiver.received] == [delivered]


async def test_cancel_failures_raise_queue_error(receiver: DeliveryReceiver) -> None:
    queue = QStashQueue(DEV_TOKEN, receiver.url, base_url="http://127.0.0.1:9")
    await queue.open()
    with pytest.raises(QueueError, match="cancel"):
        await queue.cancel("msg_x")
    await queue.close()


async def test_a_closed_queue_refuses_to_publish(queue: QStashQueue) -> None:
    await queue.close()
    with pytest.raises(QueueError, match="not open"):
        await queue.publish(step())
    await queue.open()


async def test_health_refuses_a_bad_token_every_time_and_stats_count_failed_publishes(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver
) -> None:
    queue = QStashQueue(BAD_TOKEN, receiver.url, base_url=fake_qstash.url)
    await queue.open()
    try:
        for _ in range(2):  # a failed check is never cached
            with pytest.raises(QueueError, match="401"):
                await queue.health()
        with pytest.raises(QueueError):
            await queue.publish(step())
        stats = await queue.stats()
    finally:
        await queue.close()
    assert (stats.publish_errors, stats.pending, dict(stats.messages)) == (1, None, {})
