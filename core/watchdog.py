"""Time limits for many tasks at once, on one timer: what `asyncio.timeout` does, for less.

`asyncio.timeout` arms a timer of the event loop for each block and disarms it on the way out;
on uvloop that is a libuv timer started and stopped per block, about 4 % of a step when every
local delivery ran two of them (docs/benchmarks.md, "Engine speed, seventh pass"). A
`Watchdog` keeps one timer for all the blocks it limits, armed for the earliest time limit;
when it fires it cancels every block past its limit and re-arms for the next. A block that
starts with a later limit than the armed one, the usual case when every limit is the same
length, costs a dict insert and a delete.

As with `asyncio.timeout`, the cut block's cancellation becomes `TimeoutError` where the block
ends, unless something else cancelled the task as well: then the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType


class Watchdog:
    """Cuts the blocks it limits (`limit`) once their time is up, with one timer for all.

    It serves one event loop at a time: used on another, it forgets the blocks of the last.
    """

    def __init__(self) -> None:
        self._running: dict[Limit, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None

    def limit(self, seconds: float) -> Limit:
        """`with watchdog.limit(s):` around awaits in a task: TimeoutError after `s` seconds."""
        return Limit(self, seconds)

    @property
    def running(self) -> int:
        """How many blocks are inside their limit now."""
        return len(self._running)

    def _current(self) -> tuple[asyncio.Task[object], asyncio.AbstractEventLoop]:
        """The task running now, and its loop (the loop of the last call, most often: asking
        for it by name spares Python 3.11 a getpid() per call)."""
        loop = self._loop
        task = asyncio.current_task(loop) if loop is not None else None
        if task is not None and loop is not None:
            return task, loop
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a time limit needs to run inside a task")
        loop = task.get_loop()
        if loop is not self._loop:
            # A loop of its own (a new test's, a new command's): what was armed on the last
            # one will never fire here, and its blocks are not ours to cut.
            self._loop, self._running = loop, {}
            self._timer, self._timer_at = None, math.inf
        return task, loop

    def _start(self, limit: Limit, loop: asyncio.AbstractEventLoop) -> None:
        self._running[limit] = None
        if limit.due < self._timer_at:
            self._arm(loop, limit.due)

    def _end(self, limit: Limit) -> None:
        self._running.pop(limit, None)  # gone already if the block began on an earlier loop
        # The timer stays armed: firing for no one costs less than disarming each time.

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(at, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._timer_at = None, math.inf
        now, next_due = loop.time(), math.inf
        for limit in self._running:
            if limit.cut:
                continue  # cancelled already, still unwinding
            if limit.due <= now:
                limit.cut = True
                limit.task.cancel()
            else:
                next_due = min(next_due, limit.due)
        if next_due < math.inf:
            self._arm(loop, next_due)


class Limit:
    """One block's time limit (a context manager; see `Watchdog.limit`)."""

    __slots__ = ("watchdog", "seconds", "task", "due", "cut", "_cancelling")

    def __init__(self, watchdog: Watchdog, seconds: float) -> None:
        self.watchdog = watchdog
        self.seconds = seconds
        self.cut = False

    def __enter__(self) -> Limit:
        task, loop = self.watchdog._current()
        self.task = task
        self.due = loop.time() + self.seconds
        self._cancelling = task.cancelling()
        self.watchdog._start(self, loop)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.watchdog._end(self)
        if self.cut and exc_type is asyncio.CancelledError:
            # Ours alone (no other cancel came meanwhile): the block ran out of time.
            if self.task.uncancel() <= self._cancelling:
                raise TimeoutError from exc
