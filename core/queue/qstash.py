"""The QStash Queue adapter: publishes worker steps through the `qstash` SDK's async client.

QStash delivers them, signed, to the worker endpoint of `videoq serve`; this side only publishes
and cancels. A publish that fails raises QueueError and is counted: the task row stays as it is
and the reconciler publishes the step again later (same deduplication id, so no double step).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import os
import re
import time
from collections.abc import Awaitable
from typing import ClassVar

import httpx
from qstash import AsyncQStash
from qstash.dlq import DlqMessage
from qstash.errors import DailyMessageLimitExceededError, QStashError, RateLimitExceededError
from qstash.http import BASE_URL, RetryConfig
from qstash.message import FlowControl, PublishResponse

from core import outbound
from core.errors import QueueError
from core.models import WorkMessage
from core.queue import DeadLetter, QueueStats

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 15.0
"""Seconds a publish or cancel may take before it counts as failed (the SDK's own is 600 s)."""
HEALTH_CACHE = 60.0
"""Seconds a good health check is trusted: load balancers probe every few seconds, and a QStash
API call per probe would be wasteful."""

# The SDK retries only calls that got no answer at all (and sleeps after the last try too);
# two quick retries cover a dropped connection, anything longer is the reconciler's job.
_SDK_RETRY = RetryConfig(retries=2, backoff=lambda attempt: 50.0 * (attempt + 1))
_STATUS = re.compile(r"status: (\d{3})")
# What a failed call can raise through the SDK: its own errors, httpx's, a timeout, and a
# malformed answer (JSON or shape).
_FAILURES = (QStashError, httpx.HTTPError, OSError, TimeoutError, ValueError, KeyError, TypeError)


def api_base_url(configured: str | None) -> str:
    """The QStash API the queue talks to: QSTASH_URL if set, else the SDK's default."""
    return (configured or os.environ.get("QSTASH_URL") or BASE_URL).rstrip("/")


class QStashQueue:
    """Queue port on QStash: deduplicated, delayed publishes with retries and flow control."""

    dispatches_in_process: ClassVar[bool] = False

    def __init__(
        self,
        token: str,
        destination: str,
        *,
        base_url: str | None = None,
        retries: int = 3,
        flow_control_key: str | None = None,
        parallelism: int | None = None,
        rate: int | None = None,
        period: int | None = None,
    ) -> None:
        self._token = token
        self.destination = destination
        self.base_url = api_base_url(base_url)
        self.retries = retries
        self.flow_control = _flow_control(flow_control_key, parallelism, rate, period)
        self.publish_errors = 0
        self._client: AsyncQStash | None = None
        self._healthy_until = 0.0

    def describe(self) -> str:
        """Where messages go, for logs and the dashboard header."""
        return f"qstash: {self.base_url}"

    async def open(self) -> None:
        """Create the SDK client (idempotent)."""
        if self._client is None:
            self._client = sdk_client(self._token, self.base_url)

    async def close(self) -> None:
        """Close the SDK client's connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await close_sdk_client(client)

    async def publish(self, message: WorkMessage, delay: float = 0.0) -> str:
        """Publish `message` after `delay` seconds (rounded up to whole seconds); returns its id."""
        dedup_id = message.dedup_id
        if ":" in dedup_id:
            raise QueueError(f"task {message.task_id}: deduplication id may not contain ':'")
        client = self._require_client()
        seconds = math.ceil(delay) if delay > 0 else 0
        try:
            response = await asyncio.wait_for(
                client.message.publish(
                    url=self.destination,
                    body=message.to_bytes(),
                    content_type="application/json",
                    deduplication_id=dedup_id,
                    retries=self.retries,
                    delay=seconds or None,
                    flow_control=self.flow_control,
                ),
                PUBLISH_TIMEOUT,
            )
        except _FAILURES as exc:
            self.publish_errors += 1
            reason = _reason(exc, self.base_url)
            log.warning("task %s: %s step %s not published: %s", message.task_id,
                        message.step, message.seq, reason)  # fmt: skip
            raise QueueError(f"task {message.task_id}: QStash publish failed: {reason}") from exc
        if not isinstance(response, PublishResponse):
            self.publish_errors += 1
            raise QueueError(f"task {message.task_id}: QStash answered a URL-group publish")
        if response.deduplicated:
            log.debug("task %s: %s was already published as %s", message.task_id, dedup_id,
                      response.message_id)  # fmt: skip
        return response.message_id

    async def cancel(self, message_id: str) -> None:
        """Drop a message QStash has not delivered yet; an unknown id is not an error."""
        if not message_id:
            return
        client = self._require_client()
        try:
            await asyncio.wait_for(client.message.cancel(message_id), PUBLISH_TIMEOUT)
        except _FAILURES as exc:
            if isinstance(exc, QStashError) and _status(exc) == 404:
                return  # delivered, dead-lettered or cancelled already
            raise QueueError(
                f"QStash cancel of {message_id} failed: {_reason(exc, self.base_url)}"
            ) from exc

    async def dead_letters(self) -> list[DeadLetter]:
        """QStash's DLQ, every page of it, as dead letters."""
        client = self._require_client()
        found: list[DeadLetter] = []
        cursor: str | None = None
        try:
            while True:
                page = await asyncio.wait_for(client.dlq.list(cursor=cursor), PUBLISH_TIMEOUT)
                found += [_dead_letter(message) for message in page.messages]
                cursor = page.cursor
                if not cursor or not page.messages:
                    return found
        except _FAILURES as exc:
            raise QueueError(f"QStash DLQ not read: {_reason(exc, self.base_url)}") from exc

    async def retry_dead(self, dead_id: str) -> bool:
        """Publish a DLQ entry again (QStash makes a new message of it), then drop the entry."""
        client = self._require_client()
        retry = client.http.request(path=f"/v2/dlq/retry/{dead_id}", method="POST")
        if not await self._dlq_call(retry, f"retry of {dead_id}"):
            return False
        # Servers that keep the entry after a retry would otherwise list it as still dead.
        await self.drop_dead(dead_id)
        return True

    async def drop_dead(self, dead_id: str) -> bool:
        """Delete a DLQ entry."""
        client = self._require_client()
        return await self._dlq_call(client.dlq.delete(dead_id), f"delete of {dead_id}")

    async def _dlq_call(self, call: Awaitable[object], what: str) -> bool:
        """Run one DLQ call: True when done, False when QStash knows no such entry (404)."""
        try:
            await asyncio.wait_for(call, PUBLISH_TIMEOUT)
        except _FAILURES as exc:
            if isinstance(exc, QStashError) and _status(exc) == 404:
                return False
            raise QueueError(f"QStash DLQ {what} failed: {_reason(exc, self.base_url)}") from exc
        return True

    async def ping(self) -> None:
        """Prove the URL and the token with a read-only call (the signing keys)."""
        client = self._require_client()
        try:
            await asyncio.wait_for(client.signing_key.get(), PUBLISH_TIMEOUT)
        except _FAILURES as exc:
            raise QueueError(f"QStash did not answer: {_reason(exc, self.base_url)}") from exc

    async def health(self) -> None:
        """Ping QStash, at most once a minute while it answers."""
        if time.monotonic() < self._healthy_until:
            return
        await self.ping()
        self._healthy_until = time.monotonic() + HEALTH_CACHE

    async def stats(self) -> QueueStats:
        """The publishes that failed (QStash keeps the rest of the story)."""
        return QueueStats(publish_errors=self.publish_errors)

    def _require_client(self) -> AsyncQStash:
        if self._client is None:
            raise QueueError("the QStash queue is not open")
        return self._client


def _flow_control(
    key: str | None, parallelism: int | None, rate: int | None, period: int | None
) -> FlowControl | None:
    # QStash wants at least one limit with a key; a bare key would limit nothing anyway.
    if not key or (parallelism is None and rate is None):
        return None
    control = FlowControl(key=key)
    if parallelism is not None:
        control["parallelism"] = parallelism
    if rate is not None:
        control["rate"] = rate
        if period is not None:
            control["period"] = period
    return control


def _dead_letter(message: DlqMessage) -> DeadLetter:
    body = (message.body or "").encode()
    if message.body is None and message.body_base64:
        body = base64.b64decode(message.body_base64)
    reason = message.response_body
    if reason is None:
        reason = "no answer" if message.response_status == 0 else "no response body"
    return DeadLetter.of(
        message.dlq_id,
        body,
        died_at=None,
        last_status=message.response_status,
        reason=f"HTTP {message.response_status}: {reason}" if message.response_status else reason,
    )


def _status(exc: QStashError) -> int | None:
    # The SDK keeps the status only in its message ("Request failed with status: 404, body: …").
    found = _STATUS.search(str(exc))
    return int(found.group(1)) if found else None


def _reason(exc: BaseException, base_url: str) -> str:
    """A short cause without the SDK's raw response body (or anything secret)."""
    if isinstance(exc, DailyMessageLimitExceededError):
        return "the daily message limit of the QStash plan is used up"
    if isinstance(exc, RateLimitExceededError):
        return "QStash rate limit exceeded (HTTP 429)"
    if isinstance(exc, QStashError):
        status = _status(exc)
        if status == 401:
            return "QStash refused the token (HTTP 401): check QSTASH_TOKEN"
        if status is not None:
            return f"QStash answered HTTP {status}"
        return "QStash refused the request"
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"no answer from {base_url} in time"
    if isinstance(exc, httpx.ConnectError | ConnectionRefusedError):
        return f"could not reach {base_url}"
    if isinstance(exc, httpx.HTTPError | OSError):
        return f"the connection to {base_url} failed ({type(exc).__name__})"
    return f"unexpected {type(exc).__name__} from the QStash client"


CALL_FAILURES = _FAILURES
"""What a call through the SDK client can raise, for the other users of `sdk_client`."""


def sdk_client(token: str, base_url: str) -> AsyncQStash:
    """The SDK's async client as videoq uses it: `base_url`, two quick retries, and the
    connection pool of videoq's other calls out (`core.outbound`)."""
    client = AsyncQStash(token, retry=_SDK_RETRY, base_url=base_url)
    # The SDK takes no httpx client of ours: its own, unused yet, is swapped before any call.
    http = client.http
    http._client = outbound.client(timeout=http._client.timeout)
    return client


async def close_sdk_client(client: AsyncQStash) -> None:
    """Close the client's connection pool."""
    # The SDK has no close(); its httpx client would otherwise leak its sockets.
    await client.http._client.aclose()


def failure_reason(exc: BaseException, base_url: str) -> str:
    """A short cause of a failed SDK call, without the raw response body (or anything secret)."""
    return _reason(exc, base_url)
