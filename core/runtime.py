"""Builds the adapters the settings ask for and runs the worker until told to stop."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field

from core.config import Settings
from core.errors import ConfigError
from core.models import ACTIVE, TaskStatus
from core.queue import Queue, dispatches_in_process
from core.reconciler import Reconciler
from core.schedule import PollSchedule
from core.secrets import KeyBox
from core.service import TaskService
from core.store import TaskStore
from core.upstream import DEFAULT_PROVIDER, Upstream, provider_for
from core.worker import SigningKeys, Worker, WorkerTiming

log = logging.getLogger(__name__)

IDLE_CHECK_INTERVAL = 0.5


def build_store(settings: Settings) -> TaskStore:
    if settings.uses_supabase:
        from core.store.supabase import SupabaseStore

        assert settings.supabase_url and settings.supabase_service_role_key
        return SupabaseStore(
            settings.supabase_url, settings.supabase_service_role_key.get_secret_value()
        )
    from core.store.sqlite import SqliteStore

    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(settings.db_path)


def build_upstream(settings: Settings) -> Upstream:
    if settings.t8star_api_key is None:
        from core.upstream.simulator import Simulator

        return Simulator(speed=settings.sim_speed, failure_rate=settings.sim_failure_rate)
    from core.upstream.t8star import T8StarUpstream

    return T8StarUpstream(settings.t8star_base_url, settings.t8star_api_key.get_secret_value())


def _local_signing_key() -> str:
    # Local deliveries are signed and verified inside one process, so a fresh key per process
    # keeps the worker's path identical to the cloud's without any key to configure.
    return "sig_" + secrets.token_urlsafe(24)


@dataclass
class Runtime:
    """Every part of one videoq process, wired together."""

    settings: Settings
    store: TaskStore
    queue: Queue
    upstream: Upstream
    keys: SigningKeys
    key_box: KeyBox | None = None
    worker: Worker = field(init=False)
    service: TaskService = field(init=False)
    reconciler: Reconciler = field(init=False)

    def __post_init__(self) -> None:
        scale = self.upstream.time_scale * self.settings.speedup
        timing = WorkerTiming(
            schedule=PollSchedule(self.settings.poll_min_interval, self.settings.poll_max_interval),
            deadline=self.settings.task_deadline,
            step_timeout=self.settings.step_timeout,
            speedup=self.settings.speedup,
        )
        upstreams = {self.upstream.provider: self.upstream}
        self.worker = Worker(self.store, self.queue, upstreams, self.keys, timing, self.key_box)
        self.service = TaskService(self.store, self.queue, self.key_box)
        grace = max(3 * self.settings.poll_max_interval / scale, 2.0)
        self.reconciler = Reconciler(self.store, self.queue, grace=grace)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        key_box = KeyBox(settings.secret_key.get_secret_value()) if settings.secret_key else None
        store = build_store(settings)
        queue, keys = _build_queue(settings)
        return cls(settings, store, queue, build_upstream(settings), keys, key_box)

    async def open(self) -> None:
        await self.store.open()
        await self.queue.open()
        await self.upstream.open()

    async def close(self) -> None:
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

    async def run_worker(
        self, stop: asyncio.Event, *, until_idle: bool = False, log_actions: bool = False
    ) -> None:
        """Deliver steps to the worker and reconcile until `stop` is set (or all is idle).

        With `log_actions`, cancels and retries made by other processes are logged too, so a
        headless worker's log tells every state change.
        """
        queue = self.queue
        if not dispatches_in_process(queue):
            raise ConfigError(
                "with QSTASH_TOKEN set, deliveries arrive over HTTP: run `videoq serve`"
            )
        jobs = [
            asyncio.create_task(queue.run(self.worker.handle, stop), name="dispatcher"),
            asyncio.create_task(
                self.reconciler.run(stop, self.settings.reconcile_interval), name="reconciler"
            ),
        ]
        if until_idle:
            jobs.append(asyncio.create_task(self._stop_when_idle(stop), name="idle-watch"))
        # The action log follows the feed forever: it is stopped with the others, not awaited.
        watchers = [asyncio.create_task(log_operator_actions(self.store))] if log_actions else []
        try:
            await asyncio.gather(*jobs)
        finally:
            stop.set()
            jobs += watchers
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)

    async def active_count(self) -> int:
        counts = await self.store.count_by_status()
        return sum(counts.get(status, 0) for status in ACTIVE)

    async def _stop_when_idle(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await self.active_count() == 0:
                log.info("no task is queued or running: stopping")
                stop.set()
                return
            try:
                await asyncio.wait_for(stop.wait(), timeout=IDLE_CHECK_INTERVAL)
            except TimeoutError:
                pass


async def log_operator_actions(store: TaskStore) -> None:
    """Log the cancels and retries the change feed reports (the worker never makes those)."""
    seen: dict[str, tuple[TaskStatus | None, int]] = {}
    async for change in store.changes():
        task = change.task
        if task is None:
            continue
        status, attempt = seen.get(task.id, (None, 1))
        seen[task.id] = (task.status, task.attempt)
        if task.status is TaskStatus.CANCELLED and status is not TaskStatus.CANCELLED:
            log.info("task %s: %s -> cancelled (by another process)", task.id, status or "active")
        elif task.status is TaskStatus.QUEUED and task.attempt > attempt:
            log.info("task %s: queued again by another process (attempt %d)", task.id, task.attempt)


def _build_queue(settings: Settings) -> tuple[Queue, SigningKeys]:
    leeway = settings.signature_leeway
    if settings.qstash_token is not None:
        from core.queue.qstash import QStashQueue

        if settings.qstash_current_signing_key is None:
            raise ConfigError("QSTASH_TOKEN is set but QSTASH_CURRENT_SIGNING_KEY is not")
        nxt = settings.qstash_next_signing_key
        keys = SigningKeys(
            settings.qstash_current_signing_key.get_secret_value(),
            nxt.get_secret_value() if nxt else None,
            settings.worker_url,
            leeway,
        )
        cloud_queue = QStashQueue(
            settings.qstash_token.get_secret_value(),
            settings.worker_url,
            base_url=settings.qstash_url,
            # Flow control keyed on the provider keeps parallel upstream calls under its limits.
            flow_control_key=provider_for(DEFAULT_PROVIDER).flow_control_key,
            parallelism=settings.concurrency,
        )
        return cloud_queue, keys
    from core.queue.local import LocalQueue
    from core.retry import RetryPolicy

    key = _local_signing_key()
    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    queue = LocalQueue(
        settings.db_path,
        signing_key=key,
        destination=settings.worker_url,
        retry=RetryPolicy(retries=8, base=1.0, factor=2.0, cap=300.0),
        concurrency=settings.concurrency,
        lease=settings.step_lease,
    )
    return queue, SigningKeys(key, None, settings.worker_url, leeway)
