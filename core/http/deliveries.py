"""The worker endpoint: one signed QStash delivery in, one worker step, one HTTP status out.

The status tells QStash what to do next (DESIGN §5): 2xx done; 489 with
`Upstash-NonRetryable-Error: true` never again; anything else redeliver, after `Retry-After`
seconds when the worker asked for a wait.
"""

from __future__ import annotations

import logging
import math

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from core.http.envelope import MalformedJson, PayloadTooLarge, read_body
from core.models import WorkMessage
from core.qstash_guard import UsageMeter
from core.queue import DEAD_REASON_CHARS, Delivery, DeliveryResult
from core.text import one_line
from core.worker import StepWorker

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 86_400  # QStash ignores a Retry-After beyond one day


class WorkerEndpoint:
    """POST handler for QStash deliveries; the worker verifies the signature itself."""

    def __init__(
        self, worker: StepWorker, body_limit: int, usage: UsageMeter | None = None
    ) -> None:
        self.worker = worker
        self.body_limit = body_limit
        self.usage = usage

    async def handle(self, request: Request) -> Response:
        """Answer one delivery."""
        if self.usage is not None:
            self.usage.count(delivered=1)  # QStash bills every delivery, a refused one too
        try:
            # The raw bytes first: the signature covers exactly these.
            body = await read_body(request, self.body_limit)
        except PayloadTooLarge:
            log.warning("refused a delivery over %d bytes", self.body_limit)
            self.worker.stats.count("too_large")
            return PlainTextResponse("payload too large", status_code=413)
        except MalformedJson:
            return PlainTextResponse("incomplete body", status_code=400)
        try:
            result = await self.worker.handle(Delivery(body, request.headers))
        except Exception:  # noqa: BLE001 - QStash redelivers on a 500; the trace goes to the log
            log.exception("task %s: the worker crashed on a delivery", _task_hint(body))
            self.worker.stats.count("crashed")
            return PlainTextResponse("retry later", status_code=500)
        return delivery_response(result)


def delivery_response(result: DeliveryResult) -> Response:
    """The HTTP answer QStash acts on for `result` (the reason stays in our log)."""
    headers: dict[str, str] = {}
    if result.retry_after is not None:
        seconds = min(MAX_RETRY_AFTER, max(1, math.ceil(result.retry_after)))
        headers["Retry-After"] = str(seconds)
    if result.non_retryable:
        headers["Upstash-NonRetryable-Error"] = "true"
    return PlainTextResponse(_text(result), status_code=result.status, headers=headers)


def _text(result: DeliveryResult) -> str:
    if result.ok:
        return "ok"
    if result.status == 401:
        return "unauthorized"  # why a signature failed is for our log, not for the caller
    text = "malformed message" if result.non_retryable else "retry later"
    # Only QStash reads this; it keeps the last answer in the DLQ, where `videoq dead` shows it.
    reason = one_line(result.reason, DEAD_REASON_CHARS)
    return f"{text}: {reason}" if reason and reason != text else text


def _task_hint(body: bytes) -> str:
    # Only for the crash log line, so a body that does not parse is not an error here.
    try:
        return WorkMessage.from_bytes(body).task_id
    except ValueError:
        return "?"
