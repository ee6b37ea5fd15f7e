"""The upstream notify hook: T8Star calls it when a job changes, and we poll that task at once.

`POST {HOOK_PATH}/{task_id}?token=…` (GET too: the reference does not say which method T8Star
uses). The body is never read: what the job is doing is asked of T8Star by the worker's own poll
(`StepWorker.poll_now`, the same compare-and-set as a scheduled poll), so a forged body changes
nothing. A wrong token answers 401 and a finished or unknown task 404, both before any upstream
call; calls per task are limited (`HookLimiter`).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.config import HOOK_PATH
from core.errors import VideoqError
from core.http.envelope import error_response, fail, ok
from core.models import TaskStatus
from core.notify_hooks import NotifyHooks
from core.runtime import Runtime
from core.text import one_line

log = logging.getLogger(__name__)

HOOK_BURST = 3
HOOK_WINDOW = 10.0
_FORGET_AFTER = 4096  # tasks remembered before old entries are swept


class HookLimiter:
    """Per task: at most `burst` hook polls in any `window` seconds, and one at a time.

    It counts in this process only; on a host where every request may be a fresh process the
    token still keeps strangers out and the compare-and-set still keeps one state change.
    """

    def __init__(
        self,
        burst: int = HOOK_BURST,
        window: float = HOOK_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window = window
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}
        self._busy: set[str] = set()

    def take(self, task_id: str) -> float | None:
        """Admit one hook poll of `task_id` (None), or say how many seconds to wait."""
        now = self._clock()
        if task_id in self._busy:
            return 1.0
        calls = self._calls.setdefault(task_id, deque())
        while calls and calls[0] <= now - self.window:
            calls.popleft()
        if len(calls) >= self.burst:
            return calls[0] + self.window - now
        calls.append(now)
        self._busy.add(task_id)
        self._sweep(now)
        return None

    def release(self, task_id: str) -> None:
        """The hook poll `take` admitted has ended."""
        self._busy.discard(task_id)

    def _sweep(self, now: float) -> None:
        if len(self._calls) <= _FORGET_AFTER:
            return
        stale = [key for key, calls in self._calls.items() if calls[-1] <= now - self.window]
        for task_id in stale:
            del self._calls[task_id]


class HookEndpoint:
    """The notify-hook route of one runtime whose submits carry hooks."""

    def __init__(self, runtime: Runtime, hooks: NotifyHooks, limiter: HookLimiter | None = None):
        self.runtime = runtime
        self.hooks = hooks
        self.limiter = limiter or HookLimiter()

    def route(self) -> Route:
        return Route(HOOK_PATH + "/{task_id}", self.handle, methods=["POST", "GET"])

    async def handle(self, request: Request) -> Response:
        """Check the token and the limit, then poll the task once."""
        task_id = request.path_params["task_id"]
        attempt = self.hooks.attempt_of(task_id, request.query_params.get("token"))
        if attempt is None:
            # The id is the caller's text until the token vouches for it: logged cut and cleaned.
            shown = one_line(task_id, 64)
            log.warning("task %s: refused a notify hook with a bad or missing token", shown)
            return fail("unauthorized", "the hook token is missing or wrong", 401)
        wait = self.limiter.take(task_id)
        if wait is not None:
            log.info("task %s: notify hook rate-limited", task_id)
            headers = {"Retry-After": str(max(1, math.ceil(wait)))}
            message = "too many hook calls for this task; the scheduled poll will follow"
            return fail("rate_limited", message, 429, headers=headers)
        try:
            return await self._poll(task_id, attempt)
        except VideoqError as exc:
            return error_response(exc)
        finally:
            self.limiter.release(task_id)

    async def _poll(self, task_id: str, attempt: int) -> Response:
        task = await self.runtime.store.get(task_id)
        if task is None or task.attempt != attempt or task.status.terminal:
            return fail("not_found", "no running task for this hook", 404)
        if task.status is not TaskStatus.RUNNING:
            # Not submitted yet in this process's view: its first poll is already scheduled.
            return ok({"polled": False, "status": task.status}, 202)
        result = await self.runtime.worker.poll_now(task)
        if not result.ok:
            headers = {"Retry-After": str(max(1, math.ceil(result.retry_after or 1)))}
            message = "the poll failed; the scheduled poll will ask again"
            return fail("unavailable", message, 503, headers=headers)
        log.info("task %s: polled on a notify hook", task_id)
        return ok({"polled": True})
