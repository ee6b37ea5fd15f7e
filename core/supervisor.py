"""Runs the background work of a process, the dispatcher and the reconciler, until it stops."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from core.action_log import log_operator_actions
from core.errors import ConfigError, StoreError, VideoqError
from core.models import ACTIVE
from core.queue import dispatches_in_process
from core.runtime import Runtime

if TYPE_CHECKING:
    from core.fallback import InProcessRunner

log = logging.getLogger(__name__)

IDLE_CHECK_INTERVAL = 0.5
STORE_CHECK_INTERVAL = 1.0
STORE_WRITE_FAILURES_TOLERATED = 5
"""Write probes in a row that may fail before a headless worker gives up on its store."""


async def supervise(
    runtime: Runtime,
    stop: asyncio.Event,
    *,
    until_idle: bool = False,
    log_actions: bool = False,
    watch_store: bool = False,
) -> None:
    """Deliver steps to the worker and reconcile until `stop` is set (or all is idle).

    With `log_actions`, cancels and retries made by other processes are logged too, so a
    headless worker's log tells every state change. With `watch_store`, a store that keeps
    refusing writes ends it with a StoreError that says why, instead of retrying forever.
    """
    queue = runtime.queue
    settings = runtime.settings
    jobs = [
        asyncio.create_task(
            runtime.reconciler.run(stop, settings.reconcile_interval), name="reconciler"
        )
    ]
    if dispatches_in_process(queue):
        # In-process deliveries skip the signature: they never cross a network.
        dispatcher = queue.run(runtime.worker.handle_local, stop)
        jobs.append(asyncio.create_task(dispatcher, name="dispatcher"))
    elif runtime.guard is not None:
        # QStash delivers over HTTP; this host runs due steps itself only while QStash cannot.
        jobs.append(asyncio.create_task(in_process_runner(runtime).run(stop), name="fallback"))
    else:
        raise ConfigError("this queue delivers over HTTP: run `videoq serve`")
    if until_idle:
        jobs.append(asyncio.create_task(_stop_when_idle(runtime, stop), name="idle-watch"))
    if watch_store:
        jobs.append(asyncio.create_task(_watch_store(runtime, stop), name="store-watch"))
    # The action log follows the feed forever: it is stopped with the others, not awaited.
    watchers = [asyncio.create_task(log_operator_actions(runtime.store))] if log_actions else []
    try:
        await asyncio.gather(*jobs)
    finally:
        stop.set()
        jobs += watchers
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)


def in_process_runner(runtime: Runtime) -> InProcessRunner:
    """The runner that takes over QStash's steps on this host while QStash cannot take them."""
    from core.fallback import InProcessRunner

    assert runtime.guard is not None
    settings = runtime.settings
    speedup = runtime.upstream.speedup * settings.speedup
    tick = max(0.05, min(1.0, settings.poll_min_interval / speedup))
    return InProcessRunner(
        runtime.store, runtime.worker, runtime.guard, settings.concurrency, tick=tick
    )


async def active_count(runtime: Runtime) -> int:
    """How many tasks are queued or running."""
    counts = await runtime.store.count_by_status()
    return sum(counts.get(status, 0) for status in ACTIVE)


async def _stop_when_idle(runtime: Runtime, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if await active_count(runtime) == 0:
            log.info("no task is queued or running: stopping")
            stop.set()
            return
        try:
            await asyncio.wait_for(stop.wait(), timeout=IDLE_CHECK_INTERVAL)
        except TimeoutError:
            pass


async def _watch_store(runtime: Runtime, stop: asyncio.Event) -> None:
    """Raise StoreError once the store has refused too many writes in a row."""
    failures = 0
    while not stop.is_set():
        try:
            await runtime.store.probe_write()
            failures = 0
        except VideoqError as exc:
            failures += 1
            log.warning("task store refused a write (%d in a row): %s", failures, exc.message)
            if failures >= STORE_WRITE_FAILURES_TOLERATED:
                raise StoreError(f"the task store takes no writes: {exc.message}") from exc
        try:
            await asyncio.wait_for(stop.wait(), timeout=STORE_CHECK_INTERVAL)
        except TimeoutError:
            pass
