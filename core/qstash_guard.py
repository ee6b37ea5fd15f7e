"""QStash's guard: the messages QStash bills per UTC day, the daily budget, and outages.

`UsageMeter` counts what QStash bills (messages published and deliveries received, retries
included) in the store, per UTC day, and holds the budget's one pacing rule. `GuardedQueue`
wraps the QStash queue: over the budget, or while QStash has refused publishes for longer than
`VIDEOQ_QSTASH_FALLBACK_AFTER` on a host that runs steps itself, a step is *held* instead of
published: the row keeps its next step due in the store (a held message id), and that host's
in-process runner (`core.fallback`) runs it. Nothing is dropped; a held step on a host that
runs none waits for the reconciler to publish it again once QStash takes messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar

from core.errors import QueueError, VideoqError
from core.models import WorkMessage, utcnow
from core.queue import DeadLetter, Queue, QueueStats
from core.store import TaskStore, Usage

log = logging.getLogger(__name__)

NEAR_BUDGET = 0.8
"""Share of the daily budget from which polls stretch."""
POLL_STRETCH = 3.0
"""How much longer polls wait once the day's messages near the budget."""
PROBE_EVERY = 5.0
"""Seconds between two real publishes while QStash is down; the steps between are held."""
PROBE_TASK_ID = "qstash-probe"
"""The task a probe message names: none has this id, so its delivery is acknowledged as stale."""
HELD_PREFIX = "held:"
"""Message ids of held steps start with this: no queue has them, the host runs them."""


def is_held(message_id: str | None) -> bool:
    """Whether a row's message id names a held step rather than a queued message."""
    return bool(message_id) and str(message_id).startswith(HELD_PREFIX)


class UsageMeter:
    """Counts QStash's billed messages per UTC day in the store and paces polls near the budget.

    Counts are added in memory at once and written by one background flush at a time, so the
    hot path never waits for the store; `flush()` writes what is left (at close, or at the end
    of a serverless request).
    """

    def __init__(
        self,
        store: TaskStore,
        budget: int | None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.budget = budget
        self._clock = clock
        self._stored = Usage(self._today())
        self._published = 0
        self._delivered = 0
        self._flusher: asyncio.Task[None] | None = None
        self._warned_on: date | None = None

    def _today(self) -> date:
        return self._clock().date()

    def today(self) -> Usage:
        """Today's counts: the store's at the last write, plus what is not written yet."""
        day = self._today()
        stored = self._stored if self._stored.day == day else Usage(day)
        return Usage(day, stored.published + self._published, stored.delivered + self._delivered)

    @property
    def near_budget(self) -> bool:
        return self.budget is not None and self.today().total >= NEAR_BUDGET * self.budget

    @property
    def exhausted(self) -> bool:
        return self.budget is not None and self.today().total >= self.budget

    def pace(self, delay: float) -> float:
        """The one pacing rule: near the budget, a poll waits `POLL_STRETCH` times longer."""
        if not self.near_budget:
            return delay
        usage, day = self.today(), self._today()
        if self._warned_on != day:
            self._warned_on = day
            log.warning(
                "QStash messages today: %d of the daily budget %d; polls wait %.0fx longer, and "
                "at the budget steps wait for the next UTC day or run on a long-running host",
                usage.total,
                self.budget,
                POLL_STRETCH,
            )
        return delay * POLL_STRETCH

    def count(self, *, published: int = 0, delivered: int = 0) -> None:
        """Count billed messages now; they reach the store in the background."""
        self._published += published
        self._delivered += delivered
        if self._flusher is None or self._flusher.done():
            try:
                self._flusher = asyncio.get_running_loop().create_task(self._flush_quietly())
            except RuntimeError:
                pass  # no loop (a synchronous caller): the next flush writes them

    async def refresh(self) -> Usage:
        """Write what is pending and read the day's totals every host counted."""
        await self.flush()
        if not (self._published or self._delivered):
            self._stored = await self.store.add_usage(self._today())
        return self.today()

    async def flush(self) -> None:
        """Write every count not written yet."""
        while self._published or self._delivered:
            published, delivered = self._published, self._delivered
            self._published = self._delivered = 0
            try:
                self._stored = await self.store.add_usage(self._today(), published, delivered)
            except BaseException:
                self._published += published
                self._delivered += delivered
                raise

    async def close(self) -> None:
        """Wait for the background flush, then write the rest."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        try:
            await self.flush()
        except VideoqError as exc:
            log.warning("QStash usage not written at close: %s", exc.message)

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except VideoqError as exc:
            log.warning("QStash usage not written yet (kept for the next write): %s", exc.message)


@dataclass
class Held:
    """A step this host kept instead of publishing it, and when it is due."""

    message: WorkMessage
    due: float  # time.monotonic()


class GuardedQueue:
    """The QStash queue behind the daily budget and the outage fallback (see the module)."""

    dispatches_in_process: ClassVar[bool] = False

    def __init__(
        self,
        inner: Queue,
        meter: UsageMeter,
        *,
        fallback_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.meter = meter
        self.fallback_after = fallback_after
        self.runs_steps_here = False
        """Set by a long-running host whose in-process runner runs held steps."""
        self.held: dict[str, Held] = {}
        """The newest held step of each task, handed to QStash once it takes messages again."""
        self.held_total = 0
        self.unreachable_since: datetime | None = None
        self._clock = clock
        self._failing_since: float | None = None
        self._failing_from_publish = False
        self._announced = False
        self._tried_at = float("-inf")

    # -- the state the runner, /healthz, /metrics and the dashboard read ----------------------

    @property
    def degraded(self) -> bool:
        """QStash has refused publishes (or pings) for longer than `fallback_after`."""
        since = self._failing_since
        return since is not None and self._clock() - since >= self.fallback_after

    @property
    def steps_run_here(self) -> bool:
        """Whether due steps should run in-process now: QStash down or the budget used up."""
        return self.runs_steps_here and (self.degraded or self.meter.exhausted)

    def degraded_text(self) -> str | None:
        """ "degraded: QStash unreachable since …" while degraded, else None."""
        if not self.degraded or self.unreachable_since is None:
            return None
        return f"degraded: QStash unreachable since {self.unreachable_since:%Y-%m-%d %H:%M:%S} UTC"

    # -- the Queue port -----------------------------------------------------------------------

    def describe(self) -> str:
        return self.inner.describe()

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def health(self) -> None:
        """QStash's health; a failed ping counts toward an outage, a good one ends only that."""
        try:
            await self.inner.health()
        except QueueError:
            self._failed(from_publish=False)
            raise
        if not self._failing_from_publish:
            self._recovered()

    async def stats(self) -> QueueStats:
        return await self.inner.stats()

    async def publish(self, message: WorkMessage, delay: float = 0.0) -> str:
        """Publish through QStash, or hold the step (over the budget, or QStash down here)."""
        self.watch()
        if self.meter.exhausted:
            return self._hold(message, delay)
        if self.degraded and self.runs_steps_here and not self.probe_due():
            return self._hold(message, delay)
        try:
            return await self._publish_now(message, delay)
        except QueueError:
            if self.degraded and self.runs_steps_here:
                return self._hold(message, delay)
            raise

    def probe_due(self) -> bool:
        """Whether a real publish may be tried now while QStash is down (one per PROBE_EVERY)."""
        return self._clock() - self._tried_at >= PROBE_EVERY

    async def cancel(self, message_id: str) -> None:
        if not is_held(message_id):
            await self.inner.cancel(message_id)

    async def dead_letters(self) -> list[DeadLetter]:
        return await self.inner.dead_letters()

    async def retry_dead(self, dead_id: str) -> bool:
        return await self.inner.retry_dead(dead_id)

    async def drop_dead(self, dead_id: str) -> bool:
        return await self.inner.drop_dead(dead_id)

    # -- handing held steps back ----------------------------------------------------------------

    async def hand_back(self) -> int:
        """Publish the held steps, each with the delay it has left, until one fails; returns
        how many went. While QStash is down the first one is the probe that finds it back."""
        sent = 0
        if self.meter.exhausted:
            return sent
        for task_id, held in list(self.held.items()):
            delay = max(0.0, held.due - self._clock())
            try:
                await self._publish_now(held.message, delay)
            except QueueError:
                break  # still down: the runner keeps running them here
            if self.held.get(task_id) is held:
                del self.held[task_id]
            sent += 1
        return sent

    async def probe(self) -> bool:
        """While down with no held step to try, publish a message no task waits for; True when
        QStash took it (the outage is over; it costs a message and its delivery)."""
        seq = max(1, int(time.time()))
        try:
            await self._publish_now(WorkMessage(task_id=PROBE_TASK_ID, attempt=1,
                                                step="poll", seq=seq), 0.0)  # fmt: skip
        except QueueError:
            return False
        return True

    async def _publish_now(self, message: WorkMessage, delay: float) -> str:
        self._tried_at = self._clock()
        try:
            message_id = await self.inner.publish(message, delay)
        except QueueError:
            self._failed(from_publish=True)
            raise
        self._recovered()
        self.meter.count(published=1)
        held = self.held.get(message.task_id)
        if held is not None and held.message.seq <= message.seq:
            del self.held[message.task_id]
        return message_id

    # -- state changes --------------------------------------------------------------------------

    def _hold(self, message: WorkMessage, delay: float) -> str:
        self.held[message.task_id] = Held(message, self._clock() + max(0.0, delay))
        self.held_total += 1
        log.debug("task %s: %s step %d held (%s)", message.task_id, message.step, message.seq,
                  "QStash down" if self.degraded else "over the daily budget")  # fmt: skip
        return f"{HELD_PREFIX}{message.dedup_id}"

    def _failed(self, *, from_publish: bool) -> None:
        if self._failing_since is None:
            self._failing_since = self._clock()
            self.unreachable_since = utcnow()
        self._failing_from_publish = self._failing_from_publish or from_publish
        self.watch()

    def watch(self) -> None:
        """Log once when an outage passes `fallback_after` (the runner calls it every round)."""
        if self.degraded and not self._announced:
            self._announced = True
            carry_on = "this host runs due steps itself" if self.runs_steps_here else (
                "steps wait for a long-running host or for QStash")  # fmt: skip
            log.warning("%s: %s", self.degraded_text(), carry_on)

    def _recovered(self) -> None:
        if self._failing_since is None:
            return
        if self._announced:
            log.warning(
                "QStash takes messages again (unreachable since %s): steps go through QStash",
                f"{self.unreachable_since:%Y-%m-%d %H:%M:%S} UTC",
            )
        self._failing_since = None
        self._failing_from_publish = False
        self._announced = False
        self.unreachable_since = None
