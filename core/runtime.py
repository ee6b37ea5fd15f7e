"""Every part of one videoq process, wired together: the adapters the settings choose
(`core.wiring`), the worker, the service and the reconciler, and the clock scaling they share."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from core.config import Settings
from core.errors import VideoqError
from core.queue import Queue
from core.service import TaskService
from core.signing_keys import SigningKeys
from core.steps import StepWrites
from core.store import TaskStore
from core.upstream import Upstream, provider_for
from core.wiring import build_queue, build_store, build_upstream, step_writes

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from core.crypto import KeyBox
    from core.notify_hooks import NotifyHooks
    from core.qstash_guard import GuardedQueue, UsageMeter
    from core.reconciler import Reconciler
    from core.worker import StepWorker


@dataclass
class Runtime:
    """Every part of one videoq process, wired together."""

    settings: Settings
    store: TaskStore
    queue: Queue
    upstream: Upstream
    keys: SigningKeys
    key_box: KeyBox | None = None
    usage: UsageMeter | None = None
    """QStash's billed messages per day, when the queue is QStash (then `queue` is guarded)."""
    service: TaskService = field(init=False)
    steps: StepWrites = field(init=False)

    def __post_init__(self) -> None:
        # Before anything opens: a store and a queue on one SQLite file share its writer.
        self.steps = step_writes(self.store, self.queue)
        self.service = TaskService(self.store, self.queue, self.key_box, steps=self.steps)

    @property
    def speedup(self) -> float:
        """How many times faster than real time task timings run (simulator and settings)."""
        return self.upstream.speedup * self.settings.speedup

    @cached_property
    def reconciler(self) -> Reconciler:
        """The reconciler, built on first use: one-shot commands never load it (start-up)."""
        from core.reconciler import Reconciler

        grace = max(3 * self.settings.poll_max_interval / self.speedup, 2.0)
        return Reconciler(self.store, self.queue, grace=grace)

    @cached_property
    def hooks(self) -> NotifyHooks | None:
        """The notify hooks submits carry, or None when off or the upstream calls no one back."""
        from core.notify_hooks import notify_hooks_for

        return notify_hooks_for(self.settings) if self.upstream.accepts_notify_hook else None

    @cached_property
    def worker(self) -> StepWorker:
        """The step worker, built on first use: one-shot commands never load it (start-up)."""
        from core.schedule import PollSchedule
        from core.worker import StepWorker, WorkerTiming

        settings = self.settings
        schedule = PollSchedule(
            settings.poll_min_interval, settings.poll_max_interval, hooked=self.hooks is not None
        )
        timing = WorkerTiming(
            schedule=schedule,
            deadline=self.settings.task_deadline,
            step_timeout=self.settings.step_timeout,
            speedup=self.settings.speedup,
        )
        from core.auto_retry import AutoRetrier, AutoRetryPolicy

        policy = AutoRetryPolicy.from_settings(self.settings)
        retrier = AutoRetrier(policy, self.service, self.speedup) if policy else None
        upstreams = {self.upstream.provider: self.upstream}
        worker = StepWorker(
            self.store,
            self.queue,
            upstreams,
            self.keys,
            timing,
            self.key_box,
            steps=self.steps,
            hooks=self.hooks,
            after_failure=retrier.consider if retrier else None,
        )
        if self.usage is not None:
            worker.pace = self.usage.pace
        return worker

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        """Build the adapters the settings choose; raises ConfigError on a bad choice."""
        key_box = None
        if settings.secret_key:
            from core.crypto import key_box_for  # cryptography only when BYOK is configured

            key_box = key_box_for(settings)
        upstream = build_upstream(settings)
        flow_control_key = provider_for(upstream.provider).flow_control_key
        queue, keys = build_queue(settings, flow_control_key)
        store = build_store(settings)
        usage = None
        if settings.uses_qstash:
            from core.qstash_guard import GuardedQueue, UsageMeter

            usage = UsageMeter(store, settings.qstash_daily_budget)
            queue = GuardedQueue(queue, usage, fallback_after=settings.qstash_fallback_after)
        return cls(settings, store, queue, upstream, keys, key_box, usage)

    @property
    def guard(self) -> GuardedQueue | None:
        """The QStash queue's guard (budget and outages), or None on the local queue."""
        if self.usage is None:
            return None  # only a QStash queue is guarded (and then qstash_guard is loaded)
        from core.qstash_guard import GuardedQueue

        return self.queue if isinstance(self.queue, GuardedQueue) else None

    async def open(self) -> None:
        await self.store.open()
        await self.queue.open()
        await self.upstream.open()
        if self.usage is not None:
            try:
                await self.usage.refresh()
            except VideoqError as exc:
                log.warning("QStash usage not read at start: %s", exc.message)

    async def close(self) -> None:
        if self.usage is not None:
            await self.usage.close()
        await self.upstream.close()
        await self.queue.close()
        await self.store.close()

    async def __aenter__(self) -> Runtime:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def describe(self) -> dict[str, str]:
        return {
            "store": self.store.describe(),
            "queue": self.queue.describe(),
            "upstream": self.upstream.describe(),
        }
