"""The Queue conformance suite against QStashQueue, through the QStash fake over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from qstash import AsyncQStash
from qstash.errors import QStashError

from core.queue import Delivery, DeliveryHandler, DeliveryResult
from core.queue.qstash import QStashQueue
from tests.conformance.queue_contract import QueueContract, Recorder, accept
from tests.fakes.qstash import DEV_CURRENT_SIGNING_KEY, DEV_TOKEN, DeliveryReceiver, FakeQStash

TIME_SCALE = 0.0001
"""QStash-side waits run 10,000 times faster: retries after 1.2 ms, 15 ms and 181 ms."""

SLOW_TIME_SCALE = 10.0
"""For `slow_backoff`: the first retry then waits 2 minutes, a Retry-After of 0.05 s 0.5 s."""


class QStashHarness:
    """QStashQueue publishing to the fake, which delivers over HTTP to a loopback receiver.

    The receiver verifies each delivery, turns it into a `Delivery` for the handler and the
    handler's DeliveryResult into the HTTP answer (status, Retry-After, non-retryable header).
    """

    def __init__(self, fake: FakeQStash, receiver: DeliveryReceiver) -> None:
        self.fake = fake
        self.receiver = receiver
        self.retries = 3
        self.queue = QStashQueue(DEV_TOKEN, receiver.url, base_url=fake.url, retries=self.retries)
        self.destination = receiver.url
        self.signing_key = DEV_CURRENT_SIGNING_KEY
        self.delay = 5000.0  # 0.5 s in real time
        self.handler: DeliveryHandler = Recorder(accept)
        self._delivering = False
        self._api = AsyncQStash(DEV_TOKEN, base_url=fake.url, retry=False)
        receiver.set_handler(self._deliver)

    def set_handler(self, handler: DeliveryHandler) -> None:
        self.handler = handler

    async def start(self) -> None:
        self._delivering = True

    async def stop(self) -> None:
        self._delivering = False

    async def pending(self, message_id: str) -> bool:
        try:
            await self._api.message.get(message_id)
        except QStashError as exc:
            if "404" in str(exc):
                return False
            raise
        return True

    async def dead_letter_ids(self) -> list[str]:
        return [message.message_id for message in (await self._api.dlq.list()).messages]

    async def slow_backoff(self) -> None:
        self.fake.set_time_scale(SLOW_TIME_SCALE)

    async def close(self) -> None:
        await self.queue.close()
        await self._api.http._client.aclose()

    async def _deliver(self, delivery: Delivery) -> DeliveryResult:
        if not self._delivering:
            return DeliveryResult(503, reason="the harness is not delivering")
        return await self.handler(delivery)


@pytest.fixture
async def queue_harness() -> AsyncIterator[QStashHarness]:
    with FakeQStash(time_scale=TIME_SCALE) as fake:
        async with DeliveryReceiver() as receiver:
            harness = QStashHarness(fake, receiver)
            await harness.queue.open()
            yield harness
            await harness.stop()
            await harness.close()


class TestQStashQueueContract(QueueContract):
    """Every promise of the Queue port, kept by QStash (as the fake plays it)."""
