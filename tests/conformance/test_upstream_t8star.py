"""The Upstream conformance suite against the real T8Star client over the T8Star fake."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from core.upstream import Upstream
from core.upstream.t8star import T8StarUpstream
from tests.conformance.upstream_contract import REQUEST, Point, UpstreamContract
from tests.fakes.t8star import DEFAULT_KEY, FakeT8Star, Fault, JobScript

SCRIPTS: dict[Point, JobScript] = {
    "fresh": JobScript(polls=3, queued_polls=2),
    "running": JobScript(polls=5, progress=(37, 60, 80, 90)),
    "succeeded": JobScript(polls=1),
    "failed": JobScript(polls=1, outcome="failure", reason="内容违规\n content   flagged"),
}


class FakeDriver:
    """Scripts the fake's next job; a job's first poll answers the scripted point."""

    def __init__(self, fake: FakeT8Star) -> None:
        self.fake = fake

    async def job(self, upstream: Upstream, point: Point) -> str:
        self.fake.script_next(SCRIPTS[point])
        return await upstream.submit(REQUEST)

    def trouble_next_poll(self) -> None:
        self.fake.fault("status", Fault.http(503))

    def refuse_next_submit(self) -> bool:
        self.fake.fault("submit", Fault.http(400))
        return True


@pytest.fixture
def fake() -> Iterator[FakeT8Star]:
    with FakeT8Star() as server:
        yield server


@pytest.fixture
async def upstream(fake: FakeT8Star) -> AsyncIterator[T8StarUpstream]:
    timeout = httpx.Timeout(2.0, connect=2.0)
    async with T8StarUpstream(fake.base_url, DEFAULT_KEY, timeout=timeout) as client:
        yield client


@pytest.fixture
def driver(fake: FakeT8Star) -> FakeDriver:
    return FakeDriver(fake)


class TestT8StarUpstream(UpstreamContract):
    """Every promise of the Upstream port, kept by the T8Star client."""
