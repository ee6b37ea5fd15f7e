"""Fixtures for the QStash tests: a fast fake, a delivery receiver, the SDK pointed at the fake.

Import them explicitly in a test module:
`from tests.fakes.qstash.fixtures import fake_fixture, receiver_fixture, sdk_fixture  # noqa: F401`
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from qstash import AsyncQStash

from tests.fakes.qstash.receiver import DeliveryReceiver
from tests.fakes.qstash.server import DEV_TOKEN, FakeQStash


@pytest.fixture(name="fake")
def fake_fixture() -> Iterator[FakeQStash]:
    """A running FakeQStash whose QStash-side waits take a thousandth of their time."""
    with FakeQStash(time_scale=0.001) as qstash:
        yield qstash


@pytest.fixture(name="receiver")
async def receiver_fixture() -> AsyncIterator[DeliveryReceiver]:
    """A DeliveryReceiver serving on this test's loop, accepting every delivery."""
    async with DeliveryReceiver() as rx:
        yield rx


@pytest.fixture(name="sdk")
async def sdk_fixture(fake: FakeQStash) -> AsyncIterator[AsyncQStash]:
    """The unmodified `qstash` SDK on the fake, without its own retries."""
    client = AsyncQStash(DEV_TOKEN, base_url=fake.url, retry=False)
    yield client
    await client.http._client.aclose()
