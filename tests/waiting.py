"""The one way a test waits: look at a condition until it holds, or fail naming what was awaited."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

POLL_INTERVAL = 0.005
"""Seconds between two looks at a condition; everything waited for here is on loopback."""

TIMEOUT = 30.0
"""Seconds a wait allows by default: generous, as the suite runs in parallel on two cores."""

Condition = Callable[[], bool | Awaitable[bool]]


async def wait_until(
    condition: Condition,
    what: str = "the condition",
    timeout: float = TIMEOUT,
    *,
    interval: float = POLL_INTERVAL,
    pause: Callable[[float], Awaitable[object]] = asyncio.sleep,
    detail: Callable[[], str] | None = None,
) -> None:
    """Pause until `condition()` holds; TimeoutError naming `what` after `timeout` seconds.

    `condition` may return an awaitable; `detail()` (a log, say) is added to the error.
    """
    deadline = time.monotonic() + timeout
    while not await _holds(condition):
        if time.monotonic() >= deadline:
            raise TimeoutError(_timed_out(what, timeout, detail))
        await pause(interval)


def wait_until_sync(
    condition: Callable[[], bool],
    what: str = "the condition",
    timeout: float = TIMEOUT,
    *,
    interval: float = POLL_INTERVAL,
    detail: Callable[[], str] | None = None,
) -> None:
    """Sleep until `condition()` holds, for tests without an event loop; TimeoutError as above."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(_timed_out(what, timeout, detail))
        time.sleep(interval)


async def _holds(condition: Condition) -> bool:
    result = condition()
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


def _timed_out(what: str, timeout: float, detail: Callable[[], str] | None) -> str:
    message = f"timed out after {timeout:g}s waiting for {what}"
    return f"{message}\n{detail()}" if detail is not None else message
