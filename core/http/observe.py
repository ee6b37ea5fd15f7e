"""`GET /healthz` (are the store and the queue reachable) and `GET /metrics` (Prometheus text)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.errors import VideoqError
from core.http.envelope import ok
from core.metrics import CONTENT_TYPE, Scrape
from core.models import TaskStatus
from core.runtime import Runtime

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 5.0
DELIVERY_OUTCOMES = ("ok", "retry", "unauthorized", "malformed", "too_large", "crashed")
_PROBE_ID = "00000000-0000-0000-0000-000000000000"


class Observer:
    """Health checks and metrics of one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def healthz(self, request: Request) -> Response:
        """200 when the store and the queue answer, 503 (saying which does not) otherwise."""
        del request
        checks = {"store": await self._check(self._store), "queue": await self._check(self._queue)}
        guard = self.runtime.guard
        carrying_on = False
        if guard is not None and (degraded := guard.degraded_text()) is not None:
            # Down QStash with a host running the steps is degraded, not broken.
            carrying_on = guard.runs_steps_here
            where = "due steps run on this host" if carrying_on else "no host here runs steps"
            checks["queue"] = f"{degraded}; {where}"
        if checks["store"] == "ok" and (checks["queue"] == "ok" or carrying_on):
            return ok(checks)
        broken = ", ".join(f"{name}: {value}" for name, value in checks.items() if value != "ok")
        error = {"code": "unavailable", "message": f"not healthy ({broken})"}
        # Unlike other errors this one keeps its data: which check failed, for the operator.
        return JSONResponse({"ok": False, "data": checks, "error": error}, status_code=503)

    async def metrics(self, request: Request) -> Response:
        """Every counter and gauge in the Prometheus text format."""
        del request
        return Response(await self.render_metrics(), media_type=CONTENT_TYPE)

    async def render_metrics(self) -> bytes:
        scrape = Scrape()
        await self._task_metrics(scrape)
        self._worker_metrics(scrape)
        await self._queue_metrics(scrape)
        await self._qstash_metrics(scrape)
        scrape.single(
            "reconciler_republished_total",
            "counter",
            "Steps re-published by the reconciler because their message was lost or late.",
            self.runtime.reconciler.republished,
        )
        return scrape.render()

    async def _task_metrics(self, scrape: Scrape) -> None:
        try:
            counts = await asyncio.wait_for(self.runtime.store.count_by_status(), CHECK_TIMEOUT)
        except (VideoqError, TimeoutError) as exc:
            log.warning("metrics: task counts unavailable: %s", _why(exc))
            scrape.single("store_up", "gauge", "Whether the task store answered.", 0)
            return
        scrape.single("store_up", "gauge", "Whether the task store answered.", 1)
        scrape.single(
            "store_unreadable_rows_total",
            "counter",
            "Task rows a list skipped because they could not be decoded (their ids are logged).",
            self.runtime.store.feed.unreadable_rows,
        )
        scrape.family(
            "tasks",
            "gauge",
            "Tasks by status.",
            [({"status": status.value}, counts.get(status, 0)) for status in TaskStatus],
        )

    def _worker_metrics(self, scrape: Scrape) -> None:
        stats = self.runtime.worker.stats
        outcomes = dict.fromkeys(DELIVERY_OUTCOMES, 0) | stats.deliveries
        scrape.family(
            "deliveries_total",
            "counter",
            "Deliveries the worker answered, by outcome.",
            [({"outcome": name}, count) for name, count in sorted(outcomes.items())],
        )
        scrape.family(
            "upstream_calls_total",
            "counter",
            "Calls to the upstream video API, by result.",
            [
                ({"result": "ok"}, stats.upstream_calls - stats.upstream_errors),
                ({"result": "error"}, stats.upstream_errors),
            ],
        )
        scrape.include(stats.upstream_latency)
        scrape.include(stats.poll_lateness)

    async def _queue_metrics(self, scrape: Scrape) -> None:
        try:
            stats = await asyncio.wait_for(self.runtime.queue.stats(), CHECK_TIMEOUT)
        except (VideoqError, TimeoutError) as exc:
            log.warning("metrics: queue counters unavailable: %s", _why(exc))
            return
        scrape.single(
            "queue_publish_errors_total",
            "counter",
            "Publishes the queue refused or that failed (the reconciler publishes them again).",
            stats.publish_errors,
        )
        if stats.messages:
            scrape.family(
                "local_queue_messages_total",
                "counter",
                "Messages of the embedded local queue, by what happened to them.",
                [({"event": name}, value) for name, value in stats.messages.items()],
            )
        if stats.pending is not None:
            scrape.single(
                "local_queue_pending",
                "gauge",
                "Messages of the embedded local queue not delivered yet (in flight included).",
                stats.pending,
            )

    async def _qstash_metrics(self, scrape: Scrape) -> None:
        guard, usage = self.runtime.guard, self.runtime.usage
        if guard is None or usage is None:
            return
        try:
            today = await asyncio.wait_for(usage.refresh(), CHECK_TIMEOUT)
        except (VideoqError, TimeoutError) as exc:
            log.warning("metrics: QStash usage unavailable: %s", _why(exc))
            today = usage.today()
        scrape.family(
            "qstash_messages_today",
            "gauge",
            "QStash messages this UTC day, by kind (QStash bills both, retries included).",
            [({"kind": "published"}, today.published), ({"kind": "delivered"}, today.delivered)],
        )
        if usage.budget is not None:
            scrape.single(
                "qstash_daily_budget", "gauge", "VIDEOQ_QSTASH_DAILY_BUDGET.", usage.budget
            )
        since = guard.unreachable_since if guard.degraded else None
        scrape.single(
            "qstash_degraded",
            "gauge",
            "1 while QStash has refused publishes for longer than VIDEOQ_QSTASH_FALLBACK_AFTER.",
            int(since is not None),
        )
        scrape.single(
            "qstash_unreachable_since_seconds",
            "gauge",
            "Unix time QStash became unreachable, while degraded (else 0).",
            since.timestamp() if since is not None else 0,
        )
        scrape.single(
            "qstash_held_steps_total",
            "counter",
            "Steps held back from QStash (QStash down, or the daily budget used up).",
            guard.held_total,
        )

    async def _check(self, probe: Any) -> str:
        try:
            await asyncio.wait_for(probe(), CHECK_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            log.warning("health check failed: %s", _why(exc))
            return f"unreachable ({_why(exc)})"
        return "ok"

    async def _store(self) -> None:
        await self.runtime.store.get(_PROBE_ID)
        # A store can answer reads and refuse every write (read-only, disk full): probe both.
        await self.runtime.store.probe_write()

    async def _queue(self) -> None:
        await self.runtime.queue.health()


def _why(exc: BaseException) -> str:
    if isinstance(exc, VideoqError):
        return exc.message
    if isinstance(exc, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT:.0f}s"
    # Client libraries may put response bodies in their messages: the type is enough.
    return type(exc).__name__
