"""The fake T8Star's notify hooks: it calls a job's `notify_hook` URL when the job changes.

The reference (shared/reference/t8star.md) says only that a submit accepts `notify_hook`, "a
callback URL the upstream calls when done". The method and the body are not documented;
inferred here: a POST whose JSON body is the job's status body (the same shape as
`GET /v2/videos/generations/{id}`), as relays built on the same software send. videoq never
reads that body (it polls instead), so the inference matters only to this fake.

A job scripted in seconds calls its hook when it ends; `FakeT8Star.notify` calls one at any
other moment (a job scripted in polls changes only when polled, so a test says when).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

# The callback's URL and body for a task id, or None when the job has no hook.
Snapshot = Callable[[str], tuple[str, dict[str, Any]] | None]
# A timer fires this much after the job's end, so the job reads as ended when it is looked at.
_AFTER_END = 0.01


@dataclass(frozen=True)
class HookCall:
    """One call of a notify hook, as the fake made it."""

    task_id: str
    url: str
    answered: int | None  # the HTTP status; None when the call did not get an answer


class HookCaller:
    """Calls notify hooks, from timers on the fake's loop or on demand; records every call."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._lock = threading.Lock()
        self._calls: list[HookCall] = []
        self._pending: set[asyncio.Task[int | None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._client: httpx.AsyncClient | None = None
        self.silenced = False  # set: hooks are lost on the way, never called

    @property
    def calls(self) -> list[HookCall]:
        with self._lock:
            return list(self._calls)

    async def open(self) -> None:
        """Open the client the timers call with (on the fake's loop)."""
        self._client = httpx.AsyncClient(timeout=10)

    async def close(self) -> None:
        """Cancel the timers and calls in flight, and close the client."""
        for timer in self._timers:
            timer.cancel()
        for pending in list(self._pending):
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        if self._client is not None:
            await self._client.aclose()

    def call_at_end(self, task_id: str, delay: float) -> None:
        """Call the job's hook `delay` seconds from now (on the fake's loop), when it ends."""
        loop = asyncio.get_running_loop()
        timer = loop.call_later(max(0.0, delay) + _AFTER_END, self._fire, task_id)
        self._timers.add(timer)

    def _fire(self, task_id: str) -> None:
        assert self._client is not None
        pending = asyncio.create_task(self.call(task_id, self._client))
        self._pending.add(pending)
        pending.add_done_callback(self._pending.discard)

    async def call(self, task_id: str, client: httpx.AsyncClient) -> int | None:
        """POST the job's status body to its hook; the HTTP status (None: no answer)."""
        snapshot = self._snapshot(task_id)
        if snapshot is None or self.silenced:
            return None
        url, body = snapshot
        answered: int | None = None
        with contextlib.suppress(httpx.HTTPError):
            answered = (await client.post(url, json=body)).status_code
        with self._lock:
            self._calls.append(HookCall(task_id, url, answered))
        return answered
