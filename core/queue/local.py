"""LocalQueue: the embedded stand-in for QStash, durable in SQLite, delivering in-process.

Messages live in the `queue_*` tables of the task database (see `local_db`). A dispatcher
claims due messages with a lease in one atomic UPDATE, so several processes can share one file:
a message is never delivered by two of them at once, and the lease of a process killed
mid-delivery expires and the message is delivered again. Each delivery carries the headers
QStash sends (with a fresh signature when the queue has a signing key; the embedded default has
none, its deliveries never leave the process), and its answer is acted on the way QStash acts on
an HTTP status.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import msgspec.json
import msgspec.structs
from msgspec import Struct

from core.errors import QueueError
from core.models import WorkMessage
from core.queue import DeadLetter, Delivery, DeliveryHandler, DeliveryResult, QueueStats
from core.queue.local_db import (
    BEAT,
    CANCEL,
    DEAD,
    DONE,
    DROP_DEAD,
    GONE,
    NEVER,
    REQUEUE_DEAD,
    RETRY,
    Claim,
    QueueDb,
    QueuedMessage,
)
from core.retry import DAY, RetryPolicy
from core.sqlite_file import SqliteWriter
from core.watchdog import Watchdog

__all__ = ["LocalQueue", "QueueStats", "QueuedMessage"]

log = logging.getLogger(__name__)

_PRUNE_EVERY = 60.0
# A dispatcher writes its heartbeat this often; three missed beats and it counts as gone.
BEAT_EVERY = 2.0


class MessageCounts(Struct):
    """What happened to this process's messages, for /metrics and the benchmarks."""

    published: int = 0
    deduplicated: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    handed_back: int = 0


@dataclass(slots=True)
class InHand:
    """The delivery running in this context, which its step may acknowledge as it commits.

    A step on the same file (`core.sqlite_steps`) deletes the message in the transaction that
    stores the step's outcome and its next message (`local_db.ack_row`), and sets `acked` once
    that has committed: one write fewer per step, and the outcome and the ack commit together.
    Only the delivery's own task may.
    """

    claim: Claim
    task_id: str | None = None
    acked: bool = False


# Set by each delivery in its own task, so it reaches the handler and nothing else.
_IN_HAND: contextvars.ContextVar[InHand | None] = contextvars.ContextVar(
    "videoq_local_delivery", default=None
)


class _Addressed(Struct):
    task_id: str = "?"


# Reads the task id alone, whatever else the body holds (unknown fields are skipped).
_ADDRESSED = msgspec.json.Decoder(_Addressed)


def _task_of(body: bytes) -> str:
    """The task a message body names, or "?" for a body that names none."""
    try:
        return _ADDRESSED.decode(body).task_id
    except msgspec.DecodeError:
        return "?"


class LocalQueue:
    """Queue port on SQLite with an in-process dispatcher, QStash's retries and dead letters.

    `concurrency` bounds the deliveries in flight (only that many are ever claimed). A delivery
    unanswered after 0.9 x `lease` seconds counts as failed, like a QStash response timeout; the
    lease of a process that died expires and the message is claimed again, that attempt counted.
    On stop, deliveries in flight get `drain_timeout` seconds; the rest are handed back. Other
    processes' publishes are noticed within `poll_interval`; this process's wake it at once.
    `clock` (wall-clock seconds, shared by every process on the file) is for tests.
    """

    dispatches_in_process: ClassVar[bool] = True

    def __init__(
        self,
        path: Path | str,
        *,
        signing_key: str | None,
        destination: str,
        retry: RetryPolicy,
        concurrency: int,
        dedup_window: float = 600.0,
        lease: float = 60.0,
        drain_timeout: float = 10.0,
        poll_interval: float = 0.25,
        busy_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        writer: SqliteWriter | None = None,
    ) -> None:
        if concurrency < 1 or lease <= 0:
            raise QueueError("the local queue needs a concurrency of 1 or more and a lease > 0")
        self.path = Path(path)
        self.signing_key = signing_key
        self.destination = destination
        self.retry = retry
        self.concurrency = concurrency
        self.dedup_window = dedup_window
        self.lease = lease
        self.drain_timeout = drain_timeout
        self.poll_interval = poll_interval
        self.busy_timeout = busy_timeout
        self.counts = MessageCounts()
        self._clock = clock
        self._owner = secrets.token_hex(6)
        self._claims = 0
        self._db = QueueDb(self.path, busy_timeout, writer)
        # Message ids need to be unique, not secret: a seeded PRNG spares a syscall per publish.
        self._ids = random.Random(secrets.randbits(128))
        self._inflight: dict[asyncio.Task[None], Claim] = {}
        # Cuts a handler still unanswered after 0.9 x the lease (one timer for all of them).
        self._watchdog = Watchdog()
        self._wake = asyncio.Event()
        self._wake_at = NEVER
        self._next_due = 0.0
        # The earliest due time noted since the dispatcher last asked the file (`_due`).
        self._noted_due = NEVER
        self._saturated = False
        self._running = False
        self._pruned_at = 0.0
        self._refresh_at = 0.0
        self._beat_at = 0.0
        # While paused, nothing new is claimed; deliveries in flight finish as usual.
        self.paused = False

    @property
    def writer(self) -> SqliteWriter:
        """The connection's writer, which the task store shares when it uses the same file."""
        return self._db.writer

    @property
    def is_open(self) -> bool:
        return self._db.is_open

    def share_writer(self, writer: SqliteWriter) -> None:
        """Write through `writer` (the task store's, on this file) instead of a writer of its own.

        Only before `open`: then a step's row and its next message can commit together.
        """
        if self._db.is_open:
            raise QueueError("the local queue is open already: share its writer before opening")
        self._db = QueueDb(self.path, self.busy_timeout, writer)

    def describe(self) -> str:
        """Where messages are kept, for logs and the dashboard header."""
        return f"local: {self.path}"

    async def open(self) -> None:
        """Start the database thread and create the queue tables (idempotent)."""
        if not self._db.is_open:
            try:
                await self._db.open()
            except QueueError:
                await self._db.close()
                raise

    async def close(self) -> None:
        """Close the connection and stop the database thread."""
        await self._db.close()

    async def publish(self, message: WorkMessage, delay: float = 0.0) -> str:
        """Store `message` to be delivered after `delay` seconds; a duplicate gets the first id."""
        row, cutoff = self.prepare_publish(message, delay)
        return self.published(message, row, *await self._db.publish(row, cutoff))

    def prepare_publish(
        self, message: WorkMessage, delay: float = 0.0
    ) -> tuple[tuple[Any, ...], float]:
        """The queue_messages row of a publish, and the dedup cutoff (`local_db.publish_row`)."""
        if not math.isfinite(delay):
            raise QueueError(f"task {message.task_id}: delay must be a finite number of seconds")
        now = self._clock()
        deliver_at = now + max(0.0, delay)
        # Time first, so new ids land at the right edge of the primary key's B-tree.
        message_id = f"msg_{int(now * 1e6):014x}{self._ids.getrandbits(64):016x}"
        row = (message_id, message.dedup_id, message.to_bytes(), deliver_at, now)
        return row, now - self.dedup_window

    def published(
        self, message: WorkMessage, row: tuple[Any, ...], message_id: str, stored: bool
    ) -> str:
        """Count a committed publish and wake the dispatcher for it; the message's id."""
        deliver_at = row[3]
        if not stored:
            self.counts.deduplicated += 1
            log.debug("task %s: %s was already published as %s", message.task_id,
                      message.dedup_id, message_id)  # fmt: skip
            return message_id
        self.counts.published += 1
        self._note_due(deliver_at)
        return message_id

    async def cancel(self, message_id: str) -> None:
        """Drop a message not delivered yet, by id or dedup id; unknown or done ones are ignored."""
        if message_id:
            await self._db.change(CANCEL, (message_id,))

    async def get(self, message_id: str) -> QueuedMessage | None:
        """The message if the queue still holds it (None once delivered or cancelled)."""
        found = await self._db.select("id = ?", (message_id,), self._clock())
        return found[0] if found else None

    async def dead_messages(self) -> list[QueuedMessage]:
        """Messages that will never be delivered again, oldest death first, as stored."""
        return await self._db.select("state = 'dead'", (), self._clock())

    async def dead_letters(self) -> list[DeadLetter]:
        """The dead messages, with the status and reason of their last failed delivery."""
        return [
            DeadLetter.of(
                message.id,
                message.body,
                died_at=datetime.fromtimestamp(message.deliver_at, UTC),
                last_status=message.last_status,
                reason=message.reason,
            )
            for message in await self.dead_messages()
        ]

    async def retry_dead(self, dead_id: str) -> bool:
        """Make a dead message pending again, due now, with its retries counted from zero."""
        now = self._clock()
        requeued = await self._db.change(REQUEUE_DEAD, (now, dead_id))
        if requeued:
            self._note_due(now)
        return requeued

    async def drop_dead(self, dead_id: str) -> bool:
        """Delete a dead message."""
        return await self._db.change(DROP_DEAD, (dead_id,))

    async def pending_count(self) -> int:
        """Messages still to be delivered, those in flight included."""
        return await self._db.count_pending()

    async def health(self) -> None:
        """One cheap query of the queue's table."""
        await self.pending_count()

    async def stats(self) -> QueueStats:
        """The message counters and how many messages wait."""
        pending = await self.pending_count()
        return QueueStats(messages=msgspec.structs.asdict(self.counts), pending=pending)

    @property
    def answer_within(self) -> float:
        """Seconds a handler has to answer a delivery: 0.9 x the lease, as QStash's response
        timeout leaves room before a redelivery."""
        return self.lease * 0.9

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def set_paused(self, paused: bool) -> None:
        """Stop (or go back to) claiming new deliveries, without stopping the dispatcher."""
        self.paused = paused
        self._wake.set()

    async def other_workers(self) -> int:
        """How many other processes are dispatching from this file right now."""
        return await self._db.count_workers(self._owner, self._clock() - 3 * BEAT_EVERY)

    async def run(self, handler: DeliveryHandler, stop: asyncio.Event) -> None:
        """Deliver due messages to `handler` until `stop` is set, then drain and hand back."""
        if not self._db.is_open:
            raise QueueError("the local queue is not open")
        if self._running:
            raise QueueError("this local queue is already dispatching")
        self._running, self._next_due, self._refresh_at = True, 0.0, 0.0
        watcher = asyncio.create_task(self._wake_when(stop))
        try:
            await self._dispatch(handler, stop)
            await self._drain()
        finally:
            watcher.cancel()
            await self._hand_back()
            await self._beat(gone=True)
            self._running = False

    # -- the dispatcher ---------------------------------------------------------------------

    async def _dispatch(self, handler: DeliveryHandler, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Cleared before this round's awaits, so a wake-up (a stop, a publish, a freed
            # slot) that arrives during them is still there when the round goes to sleep.
            self._wake.clear()
            if time.monotonic() >= self._refresh_at:
                # Notice what other processes published, however busy this one keeps us.
                await self._refresh()
            now = self._clock()
            free = 0 if self.paused else self.concurrency - len(self._inflight)
            if free > 0 and self._next_due <= now:
                if await self._claim_and_start(handler, now, free):
                    continue
            self._saturated = len(self._inflight) >= self.concurrency
            wait = max(0.0, self._refresh_at - time.monotonic())
            if not self._saturated and not self.paused:
                wait = min(wait, max(0.0, self._next_due - now))
            await self._sleep(wait)

    async def _claim_and_start(self, handler: DeliveryHandler, now: float, free: int) -> bool:
        self._claims += 1
        token = f"{self._owner}.{self._claims}"
        try:
            self._noted_due = NEVER
            claims, due = await self._db.claim(token, now, now + self.lease, free)
            self._next_due = self._due(due)
        except QueueError as exc:
            log.warning("local queue: could not claim messages, trying again: %s", exc.message)
            self._next_due = now + self.poll_interval
            return False
        for claim in claims:
            task = asyncio.create_task(self._deliver(handler, claim))
            self._inflight[task] = claim
            task.add_done_callback(self._finished)
        return bool(claims)

    async def _sleep(self, seconds: float) -> None:
        """Wait for a wake-up, at most `seconds`."""
        self._wake_at = -NEVER if self._saturated else self._clock() + seconds
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        finally:
            self._wake_at = NEVER

    async def _refresh(self) -> None:
        self._refresh_at = time.monotonic() + self.poll_interval
        try:
            self._noted_due = NEVER
            self._next_due = self._due(await self._db.next_due())
            now = self._clock()
            if now - self._beat_at >= BEAT_EVERY:
                await self._beat()
            if now - self._pruned_at >= min(_PRUNE_EVERY, self.dedup_window):
                self._pruned_at = now
                await self._db.prune(now - self.dedup_window)
        except QueueError as exc:
            log.warning("local queue: could not look for due messages: %s", exc.message)

    async def _beat(self, *, gone: bool = False) -> None:
        """Say this dispatcher is alive (or, `gone`, that it stopped); drop long-dead ones."""
        now = self._clock()
        self._beat_at = now
        try:
            if not gone:
                await self._db.change(BEAT, (self._owner, now, now))
            # Rows of processes killed without a goodbye go after a minute.
            await self._db.change(GONE, (self._owner if gone else "", now - 60.0))
        except QueueError as exc:
            log.warning("local queue: heartbeat not written: %s", exc.message)

    def _due(self, read: float) -> float:
        """When the next message is due: what the file said, or an earlier one noted meanwhile.

        A read may have run before a publish that this process heard of before the read's
        answer came back (reads run on the writer's thread, writes mostly on the loop's): taken
        alone, the read would hide that message until the next refresh.
        """
        return min(read, self._noted_due)

    def _note_due(self, deliver_at: float) -> None:
        self._next_due = min(self._next_due, deliver_at)
        self._noted_due = min(self._noted_due, deliver_at)
        if deliver_at < self._wake_at:
            self._wake.set()

    def _finished(self, task: asyncio.Task[None]) -> None:
        claim = self._inflight.pop(task, None)
        if self._saturated:
            self._wake.set()
        if not task.cancelled() and task.exception() is not None and claim is not None:
            # A bug in this module: say so; the lease expires and the message comes back.
            log.error("task %s: delivery %s failed inside the queue", _task_of(claim.body),
                      claim.id, exc_info=task.exception())  # fmt: skip

    async def _wake_when(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    # -- one delivery -----------------------------------------------------------------------

    async def _deliver(self, handler: DeliveryHandler, claim: Claim) -> None:
        if claim.retried > self.retry.retries:
            # Its earlier leases expired unanswered (a crashed process) more often than allowed.
            await self._settle(
                claim, DeliveryResult(0, reason="no answer before the lease expired")
            )
            return
        headers = {
            "Upstash-Message-Id": claim.id,
            "Upstash-Retried": str(claim.retried),
            "Content-Type": "application/json",
            "User-Agent": "Upstash-QStash",
        }
        if self.signing_key is not None:
            # Only a dispatching process signs: one-shot commands that publish skip PyJWT.
            from core import signing

            headers["Upstash-Signature"] = signing.sign(
                claim.body, self.signing_key, self.destination
            )
        in_hand = InHand(claim)
        _IN_HAND.set(in_hand)
        try:
            # Like QStash's response timeout: a later answer would race a redelivery.
            with self._watchdog.limit(self.answer_within):
                result = await handler(Delivery(claim.body, headers))
            if not isinstance(result, DeliveryResult):
                raise TypeError(f"the handler answered {type(result).__name__}")
        except TimeoutError:
            result = DeliveryResult(504, reason=f"no answer within {self.answer_within:.1f}s")
        except Exception as exc:
            log.exception(
                "task %s: delivery %s crashed the handler", _task_of(claim.body), claim.id
            )
            result = DeliveryResult(500, reason=f"handler raised {type(exc).__name__}")
        if in_hand.acked:
            # The step's own transaction deleted the message: what it answered after that
            # changes nothing (a redelivery would find its step done).
            self._count(claim, DONE, (), "")
            return
        await self._settle(claim, result)

    def in_hand(self, task_id: str) -> InHand | None:
        """The delivery this context runs, if it is a message of `task_id` not acked yet."""
        in_hand = _IN_HAND.get()
        if in_hand is None or in_hand.acked:
            return None
        if in_hand.task_id is None:
            in_hand.task_id = _task_of(in_hand.claim.body)
        return in_hand if in_hand.task_id == task_id else None

    async def _settle(self, claim: Claim, result: DeliveryResult) -> None:
        now = self._clock()
        reason = result.reason or f"HTTP {result.status}"
        params: tuple[Any, ...]
        if result.ok:
            sql, params = DONE, (claim.id, claim.token)
        elif (result.status == 489 and result.non_retryable) or self.retry.exhausted(claim.retried):
            sql, params = DEAD, (now, result.status, reason, claim.id, claim.token)
        else:
            delay = self.retry.delay(claim.retried)
            if result.retry_after is not None:
                delay = min(max(0.0, result.retry_after), DAY)
            sql, params = RETRY, (now + delay, result.status, reason, claim.id, claim.token)
        try:
            written = await self._db.change(sql, params)
        except QueueError as exc:
            log.warning("task %s: outcome of %s not saved, its lease will expire: %s",
                        _task_of(claim.body), claim.id, exc.message)  # fmt: skip
            return
        if written:
            self._count(claim, sql, params, reason)
        else:
            log.info("task %s: %s was settled elsewhere (lease expired or cancelled)",
                     _task_of(claim.body), claim.id)  # fmt: skip

    def _count(self, claim: Claim, sql: str, params: tuple[Any, ...], reason: str) -> None:
        if sql is DONE:
            self.counts.delivered += 1
        elif sql is DEAD:
            self.counts.dead += 1
            log.warning("task %s: %s dead-lettered after %d retries: %s",
                        _task_of(claim.body), claim.id, claim.retried, reason)  # fmt: skip
        else:
            self.counts.retried += 1
            self._note_due(params[0])
            log.info("task %s: %s will be retried in %.1fs: %s", _task_of(claim.body),
                     claim.id, params[0] - self._clock(), reason)  # fmt: skip

    # -- stopping ---------------------------------------------------------------------------

    async def _drain(self) -> None:
        if self._inflight:
            log.info("local queue: waiting up to %.0fs for %d deliveries in flight",
                     self.drain_timeout, len(self._inflight))  # fmt: skip
            await asyncio.wait(list(self._inflight), timeout=self.drain_timeout)

    async def _hand_back(self) -> None:
        """Cancel what is still in flight and release its leases so another run takes it now."""
        if not self._inflight:
            return
        tasks, claims = list(self._inflight), list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            released = await self._db.release(claims, self._clock())
        except QueueError as exc:
            log.warning("local queue: leases not released, they will expire: %s", exc.message)
            return
        self.counts.handed_back += released
        log.info("local queue: handed back %d unfinished deliveries", released)
