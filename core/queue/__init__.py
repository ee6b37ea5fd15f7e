"""The Queue port: durable, delayed, deduplicated delivery of worker steps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import ClassVar, Protocol, TypeGuard

from msgspec import Struct, field

from core.models import WorkMessage
from core.text import one_line

DEAD_REASON_CHARS = 200


class Delivery(Struct, frozen=True):
    """One delivery attempt of a message, as the worker endpoint receives it."""

    body: bytes
    headers: Mapping[str, str]

    def header(self, name: str) -> str | None:
        """The value of header `name`, whatever the case of its name in `headers` (an HTTP
        server hands them over lower-cased, the local queue as QStash spells them)."""
        value = self.headers.get(name)
        if value is None:
            wanted = name.lower()
            value = next((v for k, v in self.headers.items() if k.lower() == wanted), None)
        return value


class DeliveryResult(Struct, frozen=True):
    """What the worker answers; the queue acts on it the way QStash acts on an HTTP status.

    2xx: done. 489 with `non_retryable`: dead-letter now. Anything else: redeliver later,
    after `retry_after` seconds if given, else after the queue's backoff.
    """

    status: int
    retry_after: float | None = None
    non_retryable: bool = False
    reason: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


DeliveryHandler = Callable[[Delivery], Awaitable[DeliveryResult]]


class QueueStats(Struct, frozen=True):
    """What a queue can tell about itself, for /metrics."""

    publish_errors: int = 0
    """Publishes it refused or that failed (the reconciler publishes them again)."""
    messages: Mapping[str, int] = field(default_factory=dict)
    """Messages by what happened to them, where the queue delivers them itself."""
    pending: int | None = None
    """Messages not delivered yet, in flight included; None where the queue cannot tell."""


class DeadLetter(Struct, frozen=True):
    """A message the queue gave up on (out of retries, or refused for good), kept to inspect."""

    id: str
    """The queue's id of the dead letter (what `retry_dead` and `drop_dead` take)."""
    task_id: str
    """The task its body names, or "?" when the body is not a step message."""
    step: str
    """`submit` or `poll` with its sequence number, or "?"."""
    died_at: datetime | None
    last_status: int | None
    """The HTTP status of the last failed delivery (0 when it got no answer)."""
    reason: str
    """Why the last delivery failed, on one line."""

    @classmethod
    def of(
        cls,
        dead_id: str,
        body: bytes,
        *,
        died_at: datetime | None,
        last_status: int | None,
        reason: str | None,
    ) -> DeadLetter:
        """A dead letter from the raw message body and what the queue knows of its end."""
        try:
            message = WorkMessage.from_bytes(body)
            task_id, step = message.task_id, f"{message.step} {message.seq}"
        except ValueError:  # msgspec's DecodeError among them
            task_id, step = "?", "?"
        text = one_line(reason or "", DEAD_REASON_CHARS) or "no reason recorded"
        return cls(dead_id, task_id, step, died_at, last_status, text)


class Queue(Protocol):
    """Publishes worker steps; a queue that dispatches in-process also delivers them."""

    dispatches_in_process: ClassVar[bool]
    """True when deliveries come from `run()` in this process, not over HTTP."""

    def describe(self) -> str: ...

    async def health(self) -> None:
        """Return when the queue can be reached; raise QueueError saying why not."""
        ...

    async def stats(self) -> QueueStats:
        """Counters and, where known, how many messages wait; raise QueueError if unknown."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, message: WorkMessage, delay: float = 0.0) -> str:
        """Publish `message` after `delay` seconds, deduplicated on `message.dedup_id`.

        Returns the queue's message id (the existing one when the publish was a duplicate).
        Raises QueueError when the message could not be accepted.
        """
        ...

    async def cancel(self, message_id: str) -> None:
        """Best effort: drop a message not yet delivered, named by its id or its dedup id.

        A dedup id is what a task row holds for its first step; a queue that cannot look one up
        (QStash) leaves that message to arrive, and the worker acknowledges it as stale.
        """
        ...

    async def dead_letters(self) -> list[DeadLetter]:
        """The messages the queue gave up on, oldest first; raise QueueError if unreachable."""
        ...

    async def retry_dead(self, dead_id: str) -> bool:
        """Deliver a dead letter again (its retries start afresh); False when no such one."""
        ...

    async def drop_dead(self, dead_id: str) -> bool:
        """Delete a dead letter for good; False when no such one."""
        ...


class DispatchingQueue(Queue, Protocol):
    """A queue that delivers its messages to a handler in this process."""

    paused: bool
    """True while no new delivery is taken (steps in flight still finish)."""

    async def run(self, handler: DeliveryHandler, stop: asyncio.Event) -> None:
        """Deliver due messages to `handler` until `stop` is set."""
        ...

    def set_paused(self, paused: bool) -> None:
        """Stop (or go back to) taking new deliveries, without stopping `run`."""
        ...

    async def other_workers(self) -> int:
        """How many other processes deliver from the same queue right now."""
        ...


def dispatches_in_process(queue: Queue) -> TypeGuard[DispatchingQueue]:
    """Whether `queue` delivers its messages itself (and so has a `run`)."""
    return queue.dispatches_in_process
