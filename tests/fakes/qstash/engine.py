"""The fake's state and its delivery engine: signed attempts, retries, DLQ, flow control."""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from core.signing import sign
from tests.fakes.qstash.wire import FlowLimits, RetryDelay, default_backoff, retry_after_from

log = logging.getLogger(__name__)


@dataclass
class Message:
    """One accepted publish, alive until delivered, dead-lettered or cancelled."""

    message_id: str
    url: str
    method: str
    body: bytes
    content_type: str | None
    forward: dict[str, str]
    max_retries: int
    not_before_ms: int
    created_ms: int
    caller_ip: str
    retry_delay: RetryDelay | None = None
    timeout: float | None = None
    flow_key: str | None = None
    flow: FlowLimits | None = None
    schedule_id: str | None = None
    retried: int = 0
    in_flight: bool = False
    cancel_requested: bool = False
    task: asyncio.Task[None] | None = None

    def describe(self) -> dict[str, Any]:
        """The `GET /v2/messages/{id}` shape (reference §5.3)."""
        shape: dict[str, Any] = {
            "messageId": self.message_id,
            "url": self.url,
            "method": self.method,
            "header": {name: [value] for name, value in self.forward.items()},
            "maxRetries": self.max_retries,
            "notBefore": self.not_before_ms,
            "createdAt": self.created_ms,
            "callerIP": self.caller_ip,
        }
        if self.content_type is not None:
            shape["header"]["Content-Type"] = [self.content_type]
        shape.update(_body_fields(self.body, "body", "bodyBase64"))
        if self.retry_delay is not None:
            shape["retryDelayExpression"] = self.retry_delay.expression
        if self.flow_key is not None and self.flow is not None:
            shape["flowControlKey"] = self.flow_key
            shape["parallelism"] = self.flow.parallelism or 0
            shape["rate"] = self.flow.rate or 0
            shape["period"] = int(self.flow.period)
        return shape


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP call to a destination; `status` is None when no answer came back."""

    message_id: str
    retried: int
    status: int | None
    error: str = ""
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class _Answer:
    attempt: Attempt
    headers: httpx.Headers
    body: bytes


@dataclass
class Hooks:
    """Fault switches set from the test thread (under the state lock)."""

    duplicate_all: bool = False
    duplicate_next: int = 0
    duplicate_concurrent: bool = True
    extra_delay: float = 0.0
    refusing: bool = False
    refuse_left: int | None = None
    refuse_until: float | None = None
    refuse_how: str = "error"
    lose_left: int = 0
    lose_match: bytes = b""


@dataclass
class State:
    """Everything the fake remembers; counters and hooks are guarded by `lock`."""

    token: str
    current_key: str
    next_key: str
    dedup_window: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    hooks: Hooks = field(default_factory=Hooks)
    messages: dict[str, Message] = field(default_factory=dict)
    dedup: dict[str, tuple[str, float]] = field(default_factory=dict)
    dlq: list[dict[str, Any]] = field(default_factory=list)
    dead_messages: dict[str, Message] = field(default_factory=dict)
    """The message behind each DLQ entry, by dlqId, so `POST /v2/dlq/retry/{id}` can resend it."""
    attempts: list[Attempt] = field(default_factory=list)
    deliveries: Counter[str] = field(default_factory=Counter)
    delivered: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    publish_requests: int = 0
    publishes: int = 0
    deduplicated: int = 0
    refused: int = 0
    lost: list[str] = field(default_factory=list)

    def take_duplicate(self) -> bool:
        """Whether the next delivery should go out twice (consumes one `duplicate_next`)."""
        with self.lock:
            if self.hooks.duplicate_all:
                return True
            if self.hooks.duplicate_next > 0:
                self.hooks.duplicate_next -= 1
                return True
            return False

    def take_refusal(self) -> str | None:
        """How to refuse this publish, or None to accept it."""
        with self.lock:
            hooks = self.hooks
            if not hooks.refusing:
                return None
            if hooks.refuse_until is not None and time.monotonic() >= hooks.refuse_until:
                hooks.refusing = False
                return None
            if hooks.refuse_left is not None:
                hooks.refuse_left -= 1
                hooks.refusing = hooks.refuse_left > 0
            self.refused += 1
            return hooks.refuse_how

    def take_loss(self, message: Message) -> bool:
        """Whether to accept `message` and then lose it (consumes one `lose_left`)."""
        with self.lock:
            hooks = self.hooks
            if hooks.lose_left <= 0 or hooks.lose_match not in message.body:
                return False
            hooks.lose_left -= 1
            self.lost.append(message.message_id)
            return True

    def record(self, attempt: Attempt) -> None:
        with self.lock:
            self.attempts.append(attempt)
            self.deliveries[attempt.message_id] += 1


class FlowGate:
    """The waitlist of one flow-control key: at most `parallelism` in flight, `rate` per period."""

    def __init__(self) -> None:
        self.limits = FlowLimits()
        self.active = 0
        self.waiting = 0
        self._window_start = -math.inf
        self._window_count = 0
        self._changed = asyncio.Event()

    async def acquire(self, time_scale: float) -> None:
        """Wait until both limits admit one more call, then count it."""
        self.waiting += 1
        try:
            while not self._admit(time_scale):
                changed = self._changed
                try:
                    await asyncio.wait_for(changed.wait(), self._rate_wait(time_scale))
                except TimeoutError:
                    pass
        finally:
            self.waiting -= 1

    @property
    def rate_count(self) -> int:
        """Calls let through in the current rate period."""
        return self._window_count

    def release(self) -> None:
        self.active -= 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _admit(self, time_scale: float) -> bool:
        limits, now = self.limits, time.monotonic()
        if limits.rate and now - self._window_start >= limits.period * time_scale:
            self._window_start, self._window_count = now, 0
        if limits.parallelism and self.active >= limits.parallelism:
            return False
        if limits.rate and self._window_count >= limits.rate:
            return False
        self.active += 1
        self._window_count += 1
        return True

    def _rate_wait(self, time_scale: float) -> float | None:
        if not self.limits.rate or self._window_count < self.limits.rate:
            return None
        elapsed = time.monotonic() - self._window_start
        return max(0.001, self.limits.period * time_scale - elapsed)


class Engine:
    """Runs one task per message: wait, deliver (signed), retry with backoff, dead-letter."""

    def __init__(
        self, state: State, client: httpx.AsyncClient, time_scale: float, timeout: float
    ) -> None:
        self.state = state
        self.client = client
        self.time_scale = time_scale
        self.timeout = timeout
        self.flows: dict[str, FlowGate] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._dlq_seq = 0

    def schedule(self, message: Message) -> None:
        """Start delivering `message` at its not-before time."""
        if message.flow_key is not None:
            gate = self.flows.setdefault(message.flow_key, FlowGate())
            gate.limits = message.flow or FlowLimits()
        task = asyncio.create_task(self._run(message), name=f"qstash-{message.message_id}")
        message.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self, message: Message) -> None:
        """Drop `message`; an attempt already in flight finishes, then nothing follows."""
        self.state.messages.pop(message.message_id, None)
        with self.state.lock:
            self.state.cancelled.append(message.message_id)
        message.cancel_requested = True
        if not message.in_flight and message.task is not None:
            message.task.cancel()

    async def shutdown(self) -> None:
        """Cancel every pending delivery and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, message: Message) -> None:
        wait = message.not_before_ms / 1000.0 - time.time()
        await asyncio.sleep(max(0.0, wait) * self.time_scale)
        for _ in range(message.max_retries + 1):
            answer = await self._round(message)
            if message.cancel_requested or self._finished(message, answer):
                return
            delay = self._retry_delay(message, answer.headers)
            message.retried += 1
            await asyncio.sleep(delay * self.time_scale)

    def _finished(self, message: Message, answer: _Answer) -> bool:
        status = answer.attempt.status
        if status is not None and 200 <= status < 300:
            self._end(message, delivered=True)
            return True
        non_retryable = answer.headers.get("Upstash-NonRetryable-Error", "").lower() == "true"
        if (status == 489 and non_retryable) or message.retried >= message.max_retries:
            self._dead_letter(message, answer)
            return True
        return False

    def _retry_delay(self, message: Message, headers: httpx.Headers) -> float:
        asked = retry_after_from(headers)
        if asked is not None:
            return asked
        if message.retry_delay is not None:
            try:
                return message.retry_delay.seconds(message.retried)
            except ValueError:
                log.warning("message %s: retry delay expression failed", message.message_id)
        return default_backoff(message.retried + 1)

    async def _round(self, message: Message) -> _Answer:
        with self.state.lock:
            extra = self.state.hooks.extra_delay
        if extra > 0:
            await asyncio.sleep(extra)
        gate = self.flows.get(message.flow_key) if message.flow_key else None
        if gate is not None:
            await gate.acquire(self.time_scale)
        message.in_flight = True
        try:
            return await self._deliver(message)
        finally:
            message.in_flight = False
            if gate is not None:
                gate.release()

    async def _deliver(self, message: Message) -> _Answer:
        if not self.state.take_duplicate():
            return await self._attempt(message, duplicate=False)
        with self.state.lock:
            concurrent = self.state.hooks.duplicate_concurrent
        if concurrent:
            first, _ = await asyncio.gather(
                self._attempt(message, duplicate=False), self._attempt(message, duplicate=True)
            )
            return first
        first = await self._attempt(message, duplicate=False)
        await self._attempt(message, duplicate=True)
        return first

    async def _attempt(self, message: Message, *, duplicate: bool) -> _Answer:
        timeout = min(self.timeout, message.timeout or self.timeout)
        try:
            response = await self.client.request(
                message.method,
                message.url,
                content=message.body,
                headers=self._headers(message),
                timeout=httpx.Timeout(timeout, pool=None),
            )
        except httpx.TimeoutException:
            answer = _no_answer(message, "timeout", duplicate)
        except httpx.HTTPError as exc:
            answer = _no_answer(message, type(exc).__name__, duplicate)
        else:
            attempt = Attempt(
                message.message_id, message.retried, response.status_code, "", duplicate
            )
            answer = _Answer(attempt, response.headers, response.content)
        self.state.record(answer.attempt)
        return answer

    def _headers(self, message: Message) -> dict[str, str]:
        # A fresh token per attempt: a reused one would have expired by the later retries.
        headers = dict(message.forward)
        if message.content_type is not None:
            headers["Content-Type"] = message.content_type
        if message.schedule_id is not None:
            headers["Upstash-Schedule-Id"] = message.schedule_id
        headers.update(
            {
                "Upstash-Signature": sign(message.body, self.state.current_key, message.url),
                "Upstash-Message-Id": message.message_id,
                "Upstash-Retried": str(message.retried),
                "Upstash-Caller-Ip": message.caller_ip,
                "User-Agent": "Upstash-QStash",
            }
        )
        return headers

    def _end(self, message: Message, *, delivered: bool) -> None:
        self.state.messages.pop(message.message_id, None)
        if delivered:
            with self.state.lock:
                self.state.delivered.append(message.message_id)

    def _dead_letter(self, message: Message, answer: _Answer) -> None:
        self._dlq_seq += 1
        entry = message.describe()
        entry.update(
            {
                "dlqId": f"{int(time.time() * 1000)}-{self._dlq_seq}",
                "responseStatus": answer.attempt.status or 0,
                "responseHeader": {k: answer.headers.get_list(k) for k in answer.headers},
                **_body_fields(answer.body, "responseBody", "responseBodyBase64"),
            }
        )
        self._end(message, delivered=False)
        with self.state.lock:
            self.state.dlq.append(entry)
            self.state.dead_messages[entry["dlqId"]] = message
        log.info("message %s: dead-lettered after %s retries", message.message_id, message.retried)


def _no_answer(message: Message, error: str, duplicate: bool) -> _Answer:
    attempt = Attempt(message.message_id, message.retried, None, error, duplicate)
    return _Answer(attempt, httpx.Headers(), b"")


def _body_fields(body: bytes, text_name: str, base64_name: str) -> dict[str, str]:
    try:
        return {text_name: body.decode("utf-8")}
    except UnicodeDecodeError:
        return {base64_name: base64.b64encode(body).decode()}
