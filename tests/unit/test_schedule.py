"""The poll schedule: few polls per job, as each is a billed queue message (DESIGN §3)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.models import TaskStatus, VideoRequest
from core.schedule import PollSchedule
from core.upstream import expected_timing
from core.upstream.simulator import Simulator
from core.worker import WorkerTiming
from tests.engine import Published, open_engine


def polls_for_job(
    total: float, request: VideoRequest, schedule: PollSchedule, stall: float = 0
) -> int:
    """Polls a job finishing after `total` seconds costs, its progress linear after `stall` s."""
    estimate = expected_timing(request)
    now = schedule.first_delay(estimate)
    polls, last_poll, previous = 1, 0.0, None
    while now < total:
        progress = int(min(99, max(0, (now - stall) / (total - stall) * 100)))
        delay = schedule.next_delay(
            estimate=estimate,
            elapsed=now,
            since_last_poll=now - last_poll,
            progress=progress,
            previous_progress=previous,
        )
        assert schedule.min_interval <= delay <= schedule.max_interval
        previous, last_poll, now = progress, now, now + delay
        polls += 1
    return polls


SORA_10 = VideoRequest(prompt="x")


@pytest.mark.parametrize("total", [60, 90, 120, 150, 180])
def test_a_ten_second_job_costs_well_under_ten_polls(total: float) -> None:
    assert polls_for_job(total, SORA_10, PollSchedule()) <= 8


def test_a_two_minute_job_that_reports_no_progress_for_a_minute_stays_within_eight_polls() -> None:
    assert polls_for_job(120, SORA_10, PollSchedule(), stall=60) <= 8


def test_the_first_poll_waits_for_the_expected_lower_bound() -> None:
    hd = VideoRequest(prompt="x", model="sora-2-pro", hd=True)
    schedule = PollSchedule()
    assert schedule.first_delay(expected_timing(SORA_10)) == 60
    assert schedule.first_delay(expected_timing(hd)) > 400


def test_the_interval_stretches_while_progress_does_not_move() -> None:
    schedule = PollSchedule(min_interval=3, max_interval=30)
    estimate = expected_timing(SORA_10)
    delays = [
        schedule.next_delay(
            estimate=estimate, elapsed=300, since_last_poll=gap, progress=50, previous_progress=50
        )
        for gap in (3, 6, 12, 24)
    ]
    assert delays == [6, 12, 24, 30]


async def test_simulated_jobs_of_one_to_three_minutes_cost_at_most_eight_polls(
    tmp_path: Path,
) -> None:
    """The worker's real schedule against the simulator, its clock and ours 1000x fast."""
    simulator = Simulator(speedup=1000.0, failure_rate=0.0, seed=7)
    engine = await open_engine(tmp_path / "s.db", simulator, WorkerTiming(schedule=PollSchedule()))
    try:
        tasks = [await engine.submit(f"job {n}") for n in range(10)]

        async def deliver_later(published: Published) -> None:
            await asyncio.sleep(published.delay)
            # A poll can arrive before the previous one's row is written (it is published
            # first); the worker then asks for it again, and a queue would redeliver it.
            for _ in range(500):
                if (await engine.deliver(published.message))[0].ok:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"{published.message} refused for 5 s")

        in_flight: set[asyncio.Task[None]] = set()
        while engine.queue.published or in_flight:
            while engine.queue.published:
                in_flight.add(asyncio.create_task(deliver_later(engine.queue.take())))
            done_now, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for finished in done_now:
                finished.result()
        for task in tasks:
            done = await engine.task(task.id)
            assert done.status is TaskStatus.SUCCEEDED
            assert done.polls <= 8, f"{done.polls} polls for one job"
    finally:
        await engine.store.close()


def test_with_hooks_a_two_minute_job_whose_hook_is_lost_costs_one_poll() -> None:
    """The safety net: with hooks on, one scheduled poll finds a 2-minute job done (today 3)."""
    hooked = PollSchedule(hooked=True)
    estimate = expected_timing(SORA_10)
    assert hooked.first_delay(estimate) >= 120
    assert polls_for_job(120, SORA_10, PollSchedule()) == 3


def test_with_hooks_later_polls_are_further_apart() -> None:
    hooked, plain = PollSchedule(hooked=True), PollSchedule()
    estimate = expected_timing(SORA_10)
    for gap, progress, previous in [(3, 50, 50), (60, 90, 50), (300, 10, 10)]:
        delays = [
            schedule.next_delay(
                estimate=estimate,
                elapsed=300.0,
                since_last_poll=gap,
                progress=progress,
                previous_progress=previous,
            )
            for schedule in (hooked, plain)
        ]
        assert plain.max_interval <= delays[0] <= 4 * plain.max_interval
        assert delays[0] >= delays[1]
