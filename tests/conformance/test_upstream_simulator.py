"""The Upstream conformance suite against the simulator, on a clock the test moves."""

from __future__ import annotations

import pytest

from core.upstream import Upstream
from core.upstream.simulator import SimId, Simulator, plan_for
from tests.conformance.upstream_contract import REQUEST, Point, UpstreamContract

NOW = 1_750_000_000.0


class SimDriver:
    """Chooses each job's fate through the failure rate and moves the simulator's clock."""

    def __init__(self) -> None:
        self.now = NOW
        self.simulator = Simulator(seed=7, clock=lambda: self.now)

    async def job(self, upstream: Upstream, point: Point) -> str:
        self.now = NOW
        self.simulator.failure_rate = 1.0 if point == "failed" else 0.0
        upstream_id = await upstream.submit(REQUEST)
        sim_id = SimId.parse(upstream_id)
        assert sim_id is not None
        plan = plan_for(sim_id, self.simulator.failure_rate)
        offsets = {
            "fresh": 0.0,
            "running": plan.queue_seconds + plan.run_seconds * min(plan.fail_at, 0.5),
            "succeeded": plan.total_seconds + 1.0,
            "failed": plan.total_seconds + 1.0,
        }
        self.now = NOW + offsets[point]
        return upstream_id

    def trouble_next_poll(self) -> None:
        self.simulator.transient_rate = 1.0

    def refuse_next_submit(self) -> bool:
        return False


@pytest.fixture
def driver() -> SimDriver:
    return SimDriver()


@pytest.fixture
def upstream(driver: SimDriver) -> Simulator:
    return driver.simulator


class TestSimulator(UpstreamContract):
    """Every promise of the Upstream port, kept by the simulator."""
