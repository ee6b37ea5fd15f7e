"""The Queue conformance suite: what every adapter promises, from publish to signed delivery.

An adapter's test module subclasses `QueueContract` and provides a `queue_harness` fixture that
yields an object shaped like `QueueHarness`, not yet started; the suite sets a handler, starts
delivery and judges what arrives. The local adapter's harness wraps `LocalQueue.run`; the QStash
adapter's harness publishes through the real SDK to the QStash fake, which delivers over HTTP to
a loopback receiver that hands each delivery to the handler.

Nothing here times anything: "not before" is shown by ordering (a later, undelayed message
arrives while the delayed one is still pending), "honoured" by arrival before a far longer wait.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import jwt

from core.models import WorkMessage
from core.queue import Delivery, DeliveryHandler, DeliveryResult, Queue, QueueStats
from core.signing import verify
from tests.waiting import TIMEOUT, wait_until


class QueueHarness(Protocol):
    """What an adapter's test module hands the suite."""

    @property
    def queue(self) -> Queue:
        """The adapter under test (read-only here, so a harness may hold a subtype)."""
        ...

    destination: str  # the URL deliveries are signed for (the token's subject)
    signing_key: str  # the key deliveries verify with
    retries: int  # retries a failing message gets before it is dead-lettered
    delay: float  # a publish delay that is clearly observable yet short in real time

    def set_handler(self, handler: DeliveryHandler) -> None:
        """Make `handler` answer every delivery from now on (the default accepts all)."""
        ...

    async def start(self) -> None:
        """Begin delivering."""
        ...

    async def stop(self) -> None:
        """Stop delivering (idempotent); the fixture calls it on teardown."""
        ...

    async def pending(self, message_id: str) -> bool:
        """True while the message waits to be delivered (not delivered, dead or cancelled)."""
        ...

    async def dead_letter_ids(self) -> list[str]:
        """Ids of the messages in the dead-letter list."""
        ...

    async def slow_backoff(self) -> None:
        """From now on the queue's own backoff waits far longer than `TIMEOUT` before a retry."""
        ...


@dataclass(frozen=True)
class Seen:
    """One delivery as the handler got it, header names in lower case."""

    body: bytes
    headers: dict[str, str]

    @property
    def message_id(self) -> str:
        return self.headers["upstash-message-id"]

    @property
    def retried(self) -> int:
        return int(self.headers["upstash-retried"])

    @property
    def claims(self) -> dict[str, object]:
        """The token's claims, read without checking it (`verify` does the checking)."""
        token = self.headers["upstash-signature"]
        return jwt.decode(token, options={"verify_signature": False})


Answer = Callable[[Seen], DeliveryResult]


def accept(seen: Seen) -> DeliveryResult:
    return DeliveryResult(200)


@dataclass
class Recorder:
    """A DeliveryHandler that records each delivery and answers with `answer(seen)`."""

    answer: Answer = accept
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, delivery: Delivery) -> DeliveryResult:
        seen = Seen(delivery.body, {k.lower(): v for k, v in delivery.headers.items()})
        self.seen.append(seen)
        return self.answer(seen)

    def of(self, message_id: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.message_id == message_id]

    def count(self, message_id: str) -> int:
        return len(self.of(message_id))


async def wait_gone(harness: QueueHarness, message_id: str, timeout: float = TIMEOUT) -> None:
    """Wait until the queue no longer holds `message_id` as pending."""

    async def gone() -> bool:
        return not await harness.pending(message_id)

    await wait_until(gone, f"{message_id} to leave the queue", timeout, interval=0.01)


async def wait_dead(harness: QueueHarness, message_id: str, timeout: float = TIMEOUT) -> None:
    """Wait until `message_id` is in the dead-letter list."""

    async def dead() -> bool:
        return message_id in await harness.dead_letter_ids()

    await wait_until(dead, f"{message_id} to be dead-lettered", timeout, interval=0.01)


def step(task_id: str = "task-1", seq: int = 1, attempt: int = 1) -> WorkMessage:
    return WorkMessage(task_id=task_id, attempt=attempt, step="poll", seq=seq)


def answers(*results: DeliveryResult) -> Answer:
    """Answer the n-th delivery of each message with results[n] (the last one repeats)."""

    def answer(seen: Seen) -> DeliveryResult:
        return results[min(seen.retried, len(results) - 1)]

    return answer


async def started(harness: QueueHarness, answer: Answer = accept) -> Recorder:
    recorder = Recorder(answer)
    harness.set_handler(recorder)
    await harness.start()
    return recorder


class QueueContract:
    """Every promise of the Queue port; subclass it and provide a `queue_harness` fixture."""

    async def test_a_publish_is_delivered_once_byte_exact_and_signed(
        self, queue_harness: QueueHarness
    ) -> None:
        recorder = await started(queue_harness)
        message = step()
        message_id = await queue_harness.queue.publish(message)
        await wait_until(lambda: recorder.count(message_id) == 1, "the delivery")
        await wait_gone(queue_harness, message_id)
        [seen] = recorder.seen
        assert seen.body == message.to_bytes()
        claims = verify(
            seen.headers.get("upstash-signature"),
            seen.body,
            current_key=queue_harness.signing_key,
            next_key=None,
            subject=queue_harness.destination,
        )
        assert claims["sub"] == queue_harness.destination
        assert message_id.startswith("msg_")
        assert seen.message_id == message_id and seen.retried == 0
        assert seen.headers["content-type"] == "application/json"
        assert seen.headers["user-agent"] == "Upstash-QStash"

    async def test_a_delayed_message_waits_for_its_delay(self, queue_harness: QueueHarness) -> None:
        recorder = await started(queue_harness)
        delayed = await queue_harness.queue.publish(step(seq=1), delay=queue_harness.delay)
        assert await queue_harness.pending(delayed)
        at_once = await queue_harness.queue.publish(step(seq=2))
        await wait_until(lambda: recorder.count(at_once) == 1, "the undelayed message")
        assert recorder.count(delayed) == 0
        assert await queue_harness.pending(delayed)
        await wait_until(lambda: recorder.count(delayed) == 1, "the delayed message")
        assert [seen.message_id for seen in recorder.seen] == [at_once, delayed]

    async def test_a_duplicate_publish_gets_the_first_id_and_one_delivery(
        self, queue_harness: QueueHarness
    ) -> None:
        recorder = await started(queue_harness)
        first = await queue_harness.queue.publish(step(), delay=queue_harness.delay)
        again = await queue_harness.queue.publish(step(), delay=queue_harness.delay)
        other = await queue_harness.queue.publish(step(seq=2), delay=queue_harness.delay)
        next_attempt = await queue_harness.queue.publish(step(attempt=2))
        assert again == first
        assert len({first, other, next_attempt}) == 3
        for message_id in (first, other, next_attempt):
            await wait_gone(queue_harness, message_id)
        await wait_until(lambda: len(recorder.seen) == 3, "three deliveries")
        assert {m: recorder.count(m) for m in (first, other, next_attempt)} == {
            first: 1,
            other: 1,
            next_attempt: 1,
        }

    async def test_a_failed_delivery_is_retried_with_a_fresh_signature(
        self, queue_harness: QueueHarness
    ) -> None:
        recorder = await started(queue_harness, answers(DeliveryResult(500), DeliveryResult(200)))
        message_id = await queue_harness.queue.publish(step())
        await wait_until(lambda: recorder.count(message_id) == 2, "the redelivery")
        await wait_gone(queue_harness, message_id)
        first, second = recorder.of(message_id)
        assert (first.retried, second.retried) == (0, 1)
        assert first.body == second.body == step().to_bytes()
        assert first.claims["jti"] != second.claims["jti"]
        for seen in (first, second):
            verify(
                seen.headers.get("upstash-signature"),
                seen.body,
                current_key=queue_harness.signing_key,
                next_key=None,
                subject=queue_harness.destination,
            )

    async def test_a_crashing_handler_counts_as_a_failed_attempt(
        self, queue_harness: QueueHarness
    ) -> None:
        def crash_once(seen: Seen) -> DeliveryResult:
            if seen.retried == 0:
                raise RuntimeError("the worker fell over")
            return DeliveryResult(200)

        recorder = await started(queue_harness, crash_once)
        message_id = await queue_harness.queue.publish(step())
        await wait_until(lambda: recorder.count(message_id) == 2, "the redelivery")
        assert [seen.retried for seen in recorder.of(message_id)] == [0, 1]

    async def test_retry_after_replaces_the_backoff(self, queue_harness: QueueHarness) -> None:
        await queue_harness.slow_backoff()
        recorder = await started(
            queue_harness, answers(DeliveryResult(503, retry_after=0.05), DeliveryResult(200))
        )
        message_id = await queue_harness.queue.publish(step())
        # The backoff alone would wait longer than TIMEOUT: arriving at all means Retry-After won.
        await wait_until(lambda: recorder.count(message_id) == 2, "the Retry-After redelivery")
        assert [seen.retried for seen in recorder.of(message_id)] == [0, 1]

    async def test_a_non_retryable_answer_dead_letters_at_once(
        self, queue_harness: QueueHarness
    ) -> None:
        never = DeliveryResult(489, non_retryable=True, reason="malformed message")
        recorder = await started(queue_harness, answers(never))
        message_id = await queue_harness.queue.publish(step())
        await wait_dead(queue_harness, message_id)
        assert not await queue_harness.pending(message_id)
        assert recorder.count(message_id) == 1

    async def test_a_dead_letter_is_listed_with_its_task_step_and_last_reason(
        self, queue_harness: QueueHarness
    ) -> None:
        never = DeliveryResult(489, non_retryable=True, reason="upstream refused the key")
        await started(queue_harness, answers(never))
        message_id = await queue_harness.queue.publish(step(task_id="task-9", seq=3))
        await wait_dead(queue_harness, message_id)
        [dead] = await queue_harness.queue.dead_letters()
        assert (dead.task_id, dead.step, dead.last_status) == ("task-9", "poll 3", 489)
        assert "upstream refused the key" in dead.reason

    async def test_a_requeued_dead_letter_is_delivered_again_and_leaves_the_list(
        self, queue_harness: QueueHarness
    ) -> None:
        healed: list[bool] = []

        def answer(seen: Seen) -> DeliveryResult:
            return DeliveryResult(200) if healed else DeliveryResult(489, non_retryable=True)

        recorder = await started(queue_harness, answer)
        message = step(task_id="task-7")
        message_id = await queue_harness.queue.publish(message)
        await wait_dead(queue_harness, message_id)
        [dead] = await queue_harness.queue.dead_letters()
        healed.append(True)
        assert await queue_harness.queue.retry_dead(dead.id)
        # QStash makes a new message of it, the local queue keeps its id: count by body.
        body = message.to_bytes()
        await wait_until(
            lambda: sum(seen.body == body for seen in recorder.seen) == 2,
            "the requeued dead letter to be delivered",
        )
        assert await queue_harness.queue.dead_letters() == []
        assert not await queue_harness.queue.retry_dead(dead.id)

    async def test_a_dropped_dead_letter_is_gone_and_never_delivered(
        self, queue_harness: QueueHarness
    ) -> None:
        recorder = await started(queue_harness, answers(DeliveryResult(489, non_retryable=True)))
        message_id = await queue_harness.queue.publish(step(task_id="task-8"))
        await wait_dead(queue_harness, message_id)
        [dead] = await queue_harness.queue.dead_letters()
        assert await queue_harness.queue.drop_dead(dead.id)
        assert await queue_harness.queue.dead_letters() == []
        assert not await queue_harness.queue.drop_dead(dead.id)
        assert not await queue_harness.queue.retry_dead(dead.id)
        assert recorder.count(message_id) == 1

    async def test_a_489_without_the_non_retryable_flag_is_retried(
        self, queue_harness: QueueHarness
    ) -> None:
        recorder = await started(queue_harness, answers(DeliveryResult(489), DeliveryResult(200)))
        message_id = await queue_harness.queue.publish(step())
        await wait_until(lambda: recorder.count(message_id) == 2, "the redelivery")
        await wait_gone(queue_harness, message_id)
        assert message_id not in await queue_harness.dead_letter_ids()

    async def test_exhausted_retries_dead_letter_the_message(
        self, queue_harness: QueueHarness
    ) -> None:
        recorder = await started(queue_harness, answers(DeliveryResult(503)))
        message_id = await queue_harness.queue.publish(step())
        await wait_dead(queue_harness, message_id)
        seen = recorder.of(message_id)
        assert [s.retried for s in seen] == list(range(queue_harness.retries + 1))
        assert {s.message_id for s in seen} == {message_id}
        assert len({s.claims["jti"] for s in seen}) == len(seen)
        assert not await queue_harness.pending(message_id)

    async def test_a_message_cancelled_before_it_is_due_is_never_delivered(
        self, queue_harness: QueueHarness
    ) -> None:
        recorder = await started(queue_harness)
        cancelled = await queue_harness.queue.publish(step(seq=1), delay=queue_harness.delay)
        await queue_harness.queue.cancel(cancelled)
        assert not await queue_harness.pending(cancelled)
        later = await queue_harness.queue.publish(step(seq=2), delay=queue_harness.delay)
        # `later` is due after `cancelled` would have been: once it arrived, that one never will.
        await wait_until(lambda: recorder.count(later) == 1, "the message published after")
        assert recorder.count(cancelled) == 0

    async def test_cancelling_unknown_or_delivered_ids_is_harmless(
        self, queue_harness: QueueHarness
    ) -> None:
        recorder = await started(queue_harness)
        message_id = await queue_harness.queue.publish(step())
        await wait_until(lambda: recorder.count(message_id) == 1, "the delivery")
        await wait_gone(queue_harness, message_id)
        await queue_harness.queue.cancel(message_id)
        await queue_harness.queue.cancel("msg_unknown")
        await queue_harness.queue.cancel("")
        assert recorder.count(message_id) == 1

    async def test_an_open_queue_is_healthy(self, queue_harness: QueueHarness) -> None:
        await queue_harness.queue.health()
        await queue_harness.queue.health()

    async def test_stats_count_a_waiting_message_where_the_queue_can_tell(
        self, queue_harness: QueueHarness
    ) -> None:
        before = await queue_harness.queue.stats()
        await queue_harness.queue.publish(step(), delay=queue_harness.delay * 1000)
        after = await queue_harness.queue.stats()
        assert isinstance(after, QueueStats) and after.publish_errors == before.publish_errors == 0
        assert after.pending in (None, 1)
        assert (before.pending is None) == (after.pending is None)
        if after.messages:
            assert after.messages["published"] == before.messages["published"] + 1

    def test_a_queue_that_dispatches_in_process_can_run(self, queue_harness: QueueHarness) -> None:
        queue = queue_harness.queue
        assert isinstance(queue.dispatches_in_process, bool)
        assert callable(getattr(queue, "run", None)) == queue.dispatches_in_process
