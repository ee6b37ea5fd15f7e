"""Watchdog: one timer cuts every block past its time limit, as asyncio.timeout does one."""

from __future__ import annotations

import asyncio

import pytest

from core.watchdog import Watchdog
from tests.waiting import TIMEOUT


async def _sleep_within(watchdog: Watchdog, limit: float, seconds: float) -> str:
    try:
        with watchdog.limit(limit):
            await asyncio.sleep(seconds)
    except TimeoutError:
        return "cut"
    return "done"


async def test_only_the_blocks_past_their_limit_are_cut() -> None:
    watchdog = Watchdog()
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            _sleep_within(watchdog, 0.05, 3600),
            _sleep_within(watchdog, 5.0, 0.01),
            _sleep_within(watchdog, 0.05, 3600),
            _sleep_within(watchdog, 5.0, 0.2),  # outlives the first timer, not its own limit
        ),
        TIMEOUT,
    )
    assert outcomes == ["cut", "done", "cut", "done"]
    assert watchdog.running == 0


async def test_a_shorter_limit_started_later_is_kept_to() -> None:
    # The timer is armed for the first block's hour; the second block's limit comes first.
    watchdog = Watchdog()
    long = asyncio.create_task(_sleep_within(watchdog, 3600, 3600))
    await asyncio.sleep(0)
    assert await asyncio.wait_for(_sleep_within(watchdog, 0.05, 3600), TIMEOUT) == "cut"
    assert not long.done() and watchdog.running == 1
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long
    assert watchdog.running == 0


async def test_the_timer_re_arms_for_blocks_that_started_after_it() -> None:
    watchdog = Watchdog()
    first = asyncio.create_task(_sleep_within(watchdog, 0.05, 3600))
    await asyncio.sleep(0.03)
    second = asyncio.create_task(_sleep_within(watchdog, 0.05, 3600))
    assert await asyncio.wait_for(asyncio.gather(first, second), TIMEOUT) == ["cut", "cut"]


async def test_a_cut_block_cancelled_from_outside_as_well_stays_cancelled() -> None:
    watchdog = Watchdog()
    cut = asyncio.Event()

    async def stubborn() -> None:
        with watchdog.limit(0.01):
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cut.set()  # the watchdog's cancel, swallowed
            await asyncio.sleep(3600)

    task = asyncio.create_task(stubborn())
    await asyncio.wait_for(cut.wait(), TIMEOUT)
    task.cancel()  # a stop: not to be taken for the time limit
    with pytest.raises(asyncio.CancelledError):
        await task
    assert watchdog.running == 0


async def test_a_block_that_ends_in_time_is_not_cancelled_later() -> None:
    watchdog = Watchdog()
    assert await _sleep_within(watchdog, 0.02, 0) == "done"
    await asyncio.sleep(0.05)  # the timer fires for no one
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    assert await _sleep_within(watchdog, 0.02, 0.001) == "done"


def test_a_watchdog_moved_to_a_new_loop_still_cuts_there() -> None:
    # The first loop ends with the timer armed for its block, which never fires: a block on
    # the next loop with a later limit must arm a timer of its own.
    watchdog = Watchdog()

    async def leave_one_running() -> None:
        asyncio.create_task(_sleep_within(watchdog, 0.05, 3600))
        await asyncio.sleep(0)

    asyncio.run(leave_one_running())

    async def cut_quickly() -> str:
        return await asyncio.wait_for(_sleep_within(watchdog, 0.2, 3600), TIMEOUT)

    assert asyncio.run(cut_quickly()) == "cut"
    assert watchdog.running == 0
