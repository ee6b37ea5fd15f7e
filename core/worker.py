"""The step engine: one signed delivery in, one short step, one answer out (DESIGN §3)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from msgspec import DecodeError
from prometheus_client import Histogram

from core import history, signing
from core.config import step_lease
from core.crypto import KeyBox, KeyUnreadable
from core.errors import SignatureError, UpstreamError, VideoqError
from core.insight import RecentCalls
from core.lateness import estimate_of
from core.metrics import latency_histogram
from core.models import Task, TaskEvent, TaskStatus, WorkMessage, end_changes, utcnow
from core.notify_hooks import NotifyHooks
from core.queue import Delivery, DeliveryResult, Queue
from core.schedule import PollSchedule
from core.signing_keys import SigningKeys
from core.steps import NextStep, SeparateWrites, StepWrites
from core.store import Expect, StepClaim, TaskStore
from core.text import one_line
from core.upstream import Upstream, UpstreamState, UpstreamStatus, provider_for
from core.watchdog import Watchdog

log = logging.getLogger(__name__)

ACK = DeliveryResult(200)
NOT_FOUND_POLLS_TOLERATED = 3
RECORD_WAITS = (0.25, 0.5, 1.0, 2.0)
"""Seconds between the tries to record a submit the upstream accepted (each within the claim)."""
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class WorkerTiming:
    """Deadlines and intervals in seconds of the upstream's clock."""

    schedule: PollSchedule = field(default_factory=PollSchedule)
    deadline: float = 2700.0
    # Real seconds one step may take; a step claim outlives it so that no second delivery
    # submits (or polls) while the first may still be talking to the upstream.
    step_timeout: float = 30.0
    # Extra factor on the upstream's own speedup, for tests that run real HTTP fakes fast.
    speedup: float = 1.0

    @property
    def step_lease(self) -> float:
        return step_lease(self.step_timeout)


@dataclass
class WorkerStats:
    """Counters for /metrics and the benchmarks."""

    deliveries: dict[str, int] = field(default_factory=dict)
    upstream_calls: int = 0
    upstream_errors: int = 0
    upstream_latency: Histogram = field(
        default_factory=lambda: latency_histogram(
            "upstream_call_seconds", "Latency of upstream calls."
        )
    )
    poll_lateness: Histogram = field(
        default_factory=lambda: latency_histogram(
            "poll_lateness_seconds",
            "How long after its scheduled time each poll was delivered: the queue's lag (QStash"
            " rounds delays up to whole seconds; a lost poll the reconciler re-published counts"
            " from its re-publishing).",
        )
    )

    # The last minutes of upstream calls, for the dashboard's upstream health.
    recent_calls: RecentCalls = field(default_factory=RecentCalls)

    def count(self, outcome: str) -> None:
        self.deliveries[outcome] = self.deliveries.get(outcome, 0) + 1


class StepWorker:
    """Runs one step of one task per delivery; every write is a compare-and-set."""

    def __init__(
        self,
        store: TaskStore,
        queue: Queue,
        upstreams: Mapping[str, Upstream],
        keys: SigningKeys,
        timing: WorkerTiming | None = None,
        key_box: KeyBox | None = None,
        steps: StepWrites | None = None,
        hooks: NotifyHooks | None = None,
        after_failure: Callable[[Task], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        # Told of every task this worker failed, once the failure is stored (automatic retries).
        self.after_failure = after_failure
        self.queue = queue
        # A step's row and its next message: one transaction where store and queue allow it.
        self.steps = steps or SeparateWrites(store, queue)
        # The adapter of each provider; a task's `provider` picks the one that runs its steps.
        self.upstreams = dict(upstreams)
        self.keys = keys
        self.timing = timing or WorkerTiming()
        self.key_box = key_box
        # Set when submits ask the upstream to call back (the schedule is then a safety net).
        self.hooks = hooks
        self.stats = WorkerStats()
        # Bounds each step by `timing.step_timeout` (one timer for all the steps in flight).
        self._step_limits = Watchdog()
        # What a poll's delay becomes before it is published (the QStash budget stretches it).
        self.pace: Callable[[float], float] = _unpaced

    async def handle(self, delivery: Delivery) -> DeliveryResult:
        """Verify a delivery, run its step, and say what the queue should do next."""
        try:
            signing.verify(
                delivery.header("upstash-signature"),
                delivery.body,
                current_key=self.keys.current,
                next_key=self.keys.next,
                subject=self.keys.subject,
                leeway=self.keys.leeway,
            )
        except SignatureError as exc:
            log.warning("refused a delivery: %s", exc.message)
            self.stats.count("unauthorized")
            return DeliveryResult(401, reason=exc.message)
        return await self._run_delivery(delivery, sole=False)

    async def handle_local(self, delivery: Delivery) -> DeliveryResult:
        """Run the step of a delivery that never left this process (the local queue's).

        Nothing to verify: the body comes from our own file, not from a network peer; every
        delivery that arrives over HTTP goes through `handle`, which checks its signature.
        The queue's lease makes it the only delivery of its message: a poll takes no claim
        where the store has the row as it last wrote it (`TaskStore.claim_step`, `sole`).
        """
        return await self._run_delivery(delivery, sole=True)

    async def _run_delivery(self, delivery: Delivery, *, sole: bool) -> DeliveryResult:
        try:
            message = WorkMessage.from_bytes(delivery.body)
        except DecodeError:
            log.warning("refused a malformed message (%d bytes)", len(delivery.body))
            self.stats.count("malformed")
            return DeliveryResult(489, non_retryable=True, reason="malformed message")
        result = await self.run_step(message, sole=sole)
        self.stats.count("ok" if result.ok else "retry")
        return result

    async def run_step(self, message: WorkMessage, *, sole: bool = False) -> DeliveryResult:
        """Run the step `message` names, if the task still wants it.

        `sole`: no other delivery of this message runs meanwhile (see `handle_local`).
        """
        return await self._bounded(
            message.task_id, message.step, lambda held: self._step(message, held, sole)
        )

    async def poll_now(self, task: Task) -> DeliveryResult:
        """Poll a running task at once, off its schedule (an upstream hook called)."""
        return await self._bounded(
            task.id, "hook poll", lambda held: self._poll(task, task.polls + 1, held, by_hook=True)
        )

    async def _bounded(
        self, task_id: str, step: str, work: Callable[[list[Task]], Awaitable[DeliveryResult]]
    ) -> DeliveryResult:
        """Run one step within the step timeout; a failed one gives back the poll claim it took."""
        held: list[Task] = []  # the poll claim this step took, released if the step fails
        try:
            with self._step_limits.limit(self.timing.step_timeout):
                return await work(held)
        except VideoqError as exc:
            # Store trouble too: the delivery is not lost, the queue brings it again later.
            log.warning("task %s: step failed, will be redelivered: %s", task_id, exc.message)
            result = DeliveryResult(503, reason=exc.message)
        except TimeoutError:
            log.warning(
                "task %s: %s step took over %.0fs, will be redelivered",
                task_id,
                step,
                self.timing.step_timeout,
            )
            result = DeliveryResult(503, reason="step timed out")
        for claimed in held:
            await self._release_poll(claimed)
        return result

    async def _step(self, message: WorkMessage, held: list[Task], sole: bool) -> DeliveryResult:
        # The common case first: the step is due and free, and its claim is the one write
        # before the upstream call (none for a sole poll). A miss brings the row as it is, to
        # say why (stale, in flight, early) and act on it as below.
        claim = await self._claim_due(message, sole)
        task = claim.task
        if claim.claimed:
            assert task is not None
            if message.step == "submit":
                return await self._submit_claimed(task)
            held.append(task)
            return await self._poll_claimed(task)
        if task is None or task.attempt != message.attempt or task.status.terminal:
            log.debug(
                "task %s: %s step %d is stale, acknowledged",
                message.task_id,
                message.step,
                message.seq,
            )
            return ACK
        if message.step == "submit":
            return await self._submit(task)
        return await self._poll(task, message.seq, held)

    # -- claims -------------------------------------------------------------------------------

    def _submit_in_flight(self, task: Task) -> DeliveryResult | None:
        """Ask for redelivery while another delivery holds the task's submit lease."""
        now = utcnow()
        if not task.step_claimed(now):
            return None
        assert task.step_lease_until is not None
        wait = (task.step_lease_until - now).total_seconds()
        return DeliveryResult(503, retry_after=max(1.0, wait), reason="submit in flight")

    async def _claim_due(self, message: WorkMessage, sole: bool) -> StepClaim:
        """Claim the step `message` names, if the task waits for exactly that step.

        A submit always writes its claim: two submits make two upstream jobs.
        """
        if message.step == "submit":
            expect = Expect.of(TaskStatus.QUEUED, attempt=message.attempt)
            sole = False
        else:
            expect = Expect.of(TaskStatus.RUNNING, attempt=message.attempt, polls=message.seq - 1)
        now = utcnow()
        lease = now + timedelta(seconds=self.timing.step_lease)
        return await self.store.claim_step(message.task_id, expect, lease, now, sole=sole)

    async def _claim(self, task: Task, polls: int | None = None) -> Task | None:
        """Take the step lease by compare-and-set, so copies of one step call upstream once."""
        lease = utcnow() + timedelta(seconds=self.timing.step_lease)
        return await self.store.update(
            task.id,
            _expect(task, polls=polls, step_lease_until=task.step_lease_until),
            {"step_lease_until": lease},
        )

    async def _claim_poll(self, task: Task) -> Task | None:
        """The task with this delivery's poll claim, or None when another copy holds the poll.

        A copy that loses is acknowledged, not asked again: the holder publishes the next poll,
        and a holder that dies leaves a lease that expires and the reconciler takes over. A 503
        here would spend the queue's retries on a live chain and dead-letter it under load.
        """
        if task.step_claimed(utcnow()):
            claimed = None
        else:
            claimed = await self._claim(task, polls=task.polls)
        if claimed is None:
            log.debug("task %s: poll %d in flight elsewhere, acknowledged", task.id, task.polls + 1)
        return claimed

    async def _release_poll(self, claimed: Task) -> None:
        """Let the redelivery of a failed poll take the poll at once instead of at lease expiry."""
        if not claimed.step_claimed(utcnow()):
            return  # no live lease to give back (a sole poll takes none: `_claim_due`)
        try:
            await self.store.update(
                claimed.id,
                _expect(claimed, polls=claimed.polls, step_lease_until=claimed.step_lease_until),
                {"step_lease_until": None},
            )
        except VideoqError as exc:
            log.warning("task %s: poll claim left to expire: %s", claimed.id, exc.message)

    # -- submit -------------------------------------------------------------------------------

    async def _submit(self, task: Task) -> DeliveryResult:
        if task.status is not TaskStatus.QUEUED:
            return ACK
        busy = self._submit_in_flight(task)
        if busy is not None:
            return busy
        claimed = await self._claim(task)
        if claimed is None:
            return DeliveryResult(503, retry_after=1.0, reason="lost the submit claim")
        return await self._submit_claimed(claimed)

    async def _submit_claimed(self, task: Task) -> DeliveryResult:
        """Submit `task` upstream (its claim taken) and record what came of it."""
        try:
            upstream = self._upstream(task)
            # Most tasks carry no image: no read for them (a round trip on Supabase).
            images = await self.store.images(task.id) if task.image_count else ()
            request = task.request(images)
            hook = self.hooks.url(task.id, task.attempt) if self.hooks else None
            upstream_id = await self._call(
                upstream.submit(request, self._api_key(task), notify_hook=hook)
            )
        except UpstreamError as exc:
            return await self._submit_failed(task, exc)
        return await _uncut(self._submitted(task, upstream_id))

    async def _submitted(self, task: Task, upstream_id: str) -> DeliveryResult:
        now = utcnow()
        first = self.timing.schedule.first_delay(estimate_of(task))
        delay = first / self._speedup(task)
        poll = WorkMessage(task_id=task.id, attempt=task.attempt, step="poll", seq=1)
        running = await self._record_submit(
            NextStep(
                task.id,
                _expect(task, step_lease_until=task.step_lease_until),
                {
                    "status": TaskStatus.RUNNING,
                    "upstream_task_id": upstream_id,
                    "upstream_status": provider_for(task.provider).submitted_status,
                    "started_at": now,
                    "step_lease_until": None,
                    "next_poll_at": now + timedelta(seconds=delay),
                },
                history.transition(task, TaskStatus.RUNNING, detail=f"upstream task {upstream_id}"),
                poll,
                delay,
            ),
            upstream_id,
            task.step_lease_until,
        )
        if running is None:
            log.info(
                "task %s: changed while submitting; upstream task %s left alone",
                task.id,
                upstream_id,
            )
            return ACK
        log.info("task %s: queued -> running (upstream task %s)", task.id, upstream_id)
        return ACK

    async def _record_submit(
        self, step: NextStep, upstream_id: str, lease_until: datetime | None
    ) -> Task | None:
        """Record a submit the upstream accepted; a store failure is tried again while the
        claim holds, since a submit left unrecorded is made again once the claim expires."""
        tried_before = False
        waits = iter(RECORD_WAITS)
        while True:
            try:
                recorded = await self.steps.started(step)
            except VideoqError as exc:
                wait = next(waits, None)
                if (
                    wait is None
                    or lease_until is None
                    or utcnow() + timedelta(seconds=wait) >= lease_until
                ):
                    raise
                log.warning(
                    "task %s: upstream task %s accepted, not recorded; again in %.1fs: %s",
                    step.task_id,
                    upstream_id,
                    wait,
                    exc.message,
                )
                tried_before = True
                await asyncio.sleep(wait)
                continue
            if recorded is None and tried_before:
                return await self._recorded_before(step, upstream_id)
            return recorded

    async def _recorded_before(self, step: NextStep, upstream_id: str) -> Task | None:
        """The task, if a try that failed had written its row after all (its answer was lost).

        Where the row and the message are two writes, that try's message did not go out: it is
        published here (a copy of it, had it gone out, is deduplicated by the queue).
        """
        task = await self.store.get(step.task_id)
        if task is None or task.status is not TaskStatus.RUNNING:
            return None
        if (task.attempt, task.upstream_task_id) != (step.message.attempt, upstream_id):
            return None
        await self.queue.publish(step.message, step.delay)
        return task

    async def _submit_failed(self, task: Task, exc: UpstreamError) -> DeliveryResult:
        if not exc.transient:
            await self._finish(
                task, TaskStatus.FAILED, error=exc.message, http_status=exc.http_status
            )
            return ACK
        if self._past_deadline(task, task.queued_at):
            await self._finish(
                task, TaskStatus.FAILED, error=f"timed out (last error: {exc.message})"
            )
            return ACK
        await self.store.update(
            task.id,
            _expect(task, step_lease_until=task.step_lease_until),
            {"step_lease_until": None},
        )
        log.warning("task %s: submit will be retried: %s", task.id, exc.message)
        return DeliveryResult(503, retry_after=exc.retry_after, reason=exc.message)

    # -- poll ---------------------------------------------------------------------------------

    async def _poll(
        self, task: Task, seq: int, held: list[Task], by_hook: bool = False
    ) -> DeliveryResult:
        if task.status is TaskStatus.RUNNING and seq == task.polls + 2:
            # The previous poll publishes this message before it writes its row; a short delay
            # can deliver it first. Ask again shortly rather than drop it as stale.
            return DeliveryResult(503, retry_after=1.0, reason="previous poll not recorded yet")
        if task.status is not TaskStatus.RUNNING or seq != task.polls + 1:
            return ACK
        if not by_hook:
            # A hook poll takes no claim: it publishes no next poll, so a scheduled copy that
            # found its claim would be acknowledged with no one left to carry the chain on. The
            # compare-and-set on `polls` still keeps one state change when both run.
            claimed = await self._claim_poll(task)
            if claimed is None:
                return ACK
            held.append(claimed)
            task = claimed
        return await self._poll_claimed(task, by_hook)

    async def _poll_claimed(self, task: Task, by_hook: bool = False) -> DeliveryResult:
        """Poll the upstream once for `task` (its claim taken, unless a hook asked)."""
        if task.next_poll_at is not None and not by_hook:
            late = (utcnow() - task.next_poll_at).total_seconds()
            self.stats.poll_lateness.observe(max(0.0, late))
        if self._past_deadline(task, task.started_at or task.queued_at):
            await self._finish(task, TaskStatus.FAILED, error="timed out")
            return ACK
        assert task.upstream_task_id is not None
        started = time.perf_counter()
        try:
            upstream = self._upstream(task)
            answer = await self._call(upstream.status(task.upstream_task_id, self._api_key(task)))
        except UpstreamError as exc:
            return await self._poll_failed(task, exc, _ms_since(started), by_hook)
        latency_ms = _ms_since(started)
        if answer.state is UpstreamState.SUCCEEDED:
            await self._finish(task, TaskStatus.SUCCEEDED, answer=answer, latency_ms=latency_ms)
        elif answer.state is UpstreamState.FAILED:
            reason = answer.fail_reason or "upstream reported failure without a reason"
            await self._finish(
                task, TaskStatus.FAILED, error=reason, answer=answer, latency_ms=latency_ms
            )
        else:
            await self._keep_polling(task, answer, latency_ms, by_hook)
        return ACK

    async def _poll_failed(
        self, task: Task, exc: UpstreamError, latency_ms: float, by_hook: bool
    ) -> DeliveryResult:
        gone = exc.http_status == 404 and task.polls + 1 >= NOT_FOUND_POLLS_TOLERATED
        if not exc.transient or gone:
            error = "upstream no longer knows this task" if gone else exc.message
            await self._finish(
                task,
                TaskStatus.FAILED,
                error=error,
                http_status=exc.http_status,
                latency_ms=latency_ms,
            )
            return ACK
        if by_hook:
            # The scheduled poll is still due and will ask again; a hook adds no message.
            log.warning("task %s: hook poll failed: %s", task.id, exc.message)
            return DeliveryResult(503, retry_after=exc.retry_after, reason=exc.message)
        delay = max(exc.retry_after or 0.0, self.timing.schedule.min_interval / self._speedup(task))
        log.warning("task %s: poll failed, next in %.1fs: %s", task.id, delay, exc.message)
        event = history.poll(
            task, None, latency_ms, http_status=exc.http_status, detail=exc.message
        )
        await self._schedule_poll(task, delay, {"polls": task.polls + 1}, event)
        return ACK

    async def _keep_polling(
        self, task: Task, answer: UpstreamStatus, latency_ms: float, by_hook: bool
    ) -> None:
        now = utcnow()
        speedup = self._speedup(task)
        started_at = task.started_at or now
        last = task.last_polled_at or started_at
        delay = (
            self.timing.schedule.next_delay(
                estimate=estimate_of(task),
                elapsed=(now - started_at).total_seconds() * speedup,
                since_last_poll=(now - last).total_seconds() * speedup,
                progress=answer.progress,
                previous_progress=task.progress if task.polls else None,
            )
            / speedup
        )
        changes: dict[str, Any] = {"upstream_status": answer.raw_status, "last_polled_at": now}
        if answer.progress is not None:
            progress = max(task.progress, min(answer.progress, 99))
            moved = progress > task.progress
            changes["progress"] = progress
            changes["polls_without_progress"] = 0 if moved else task.polls_without_progress + 1
        event = history.poll(task, answer, latency_ms)
        if by_hook:
            # `polls` stays, so the scheduled poll's message stays current: no message is spent.
            await self.store.update(task.id, _expect(task, polls=task.polls), changes, event)
            return
        changes["polls"] = task.polls + 1
        await self._schedule_poll(task, delay, changes, event)

    async def _schedule_poll(
        self, task: Task, delay: float, changes: dict[str, Any], event: TaskEvent
    ) -> None:
        message = WorkMessage(
            task_id=task.id, attempt=task.attempt, step="poll", seq=task.polls + 2
        )
        delay = self.pace(delay)
        changes["next_poll_at"] = utcnow() + timedelta(seconds=delay)
        changes["step_lease_until"] = None
        step = NextStep(task.id, _expect(task, polls=task.polls), changes, event, message, delay)
        if await self.steps.poll_next(step) is None:
            log.debug("task %s: changed while polling", task.id)

    # -- shared -------------------------------------------------------------------------------

    async def _finish(
        self,
        task: Task,
        status: TaskStatus,
        *,
        error: str | None = None,
        answer: UpstreamStatus | None = None,
        http_status: int | None = None,
        latency_ms: float | None = None,
    ) -> None:
        now = utcnow()
        changes = end_changes(status, now)
        if error is not None:
            changes["error_message"] = one_line(error, MAX_ERROR_CHARS)
        if answer is not None:
            changes.update(
                polls=task.polls + 1,
                upstream_status=answer.raw_status,
                last_polled_at=now,
                video_url=answer.video_url,
            )
            if status is TaskStatus.SUCCEEDED:
                changes["progress"] = 100
            http_status = answer.http_status
        event = history.transition(task, status, detail=changes.get("error_message"))
        event.http_status, event.latency_ms = http_status, latency_ms
        if answer is not None:
            event.upstream_status, event.progress = answer.raw_status, answer.progress
        ended = await self.steps.finished(task.id, _expect(task, polls=task.polls), changes, event)
        if ended is not None:
            # A failure is something an operator should see even with only warnings shown.
            log.log(
                logging.WARNING if status is TaskStatus.FAILED else logging.INFO,
                "task %s: %s -> %s%s",
                task.id,
                task.status,
                status,
                f" ({changes['error_message']})" if error else "",
            )
            if ended.status is TaskStatus.FAILED and self.after_failure is not None:
                await self.after_failure(ended)

    async def _call(self, awaitable: Any) -> Any:
        started = time.perf_counter()
        healthy = True
        try:
            return await awaitable
        except UpstreamError as exc:
            self.stats.upstream_errors += 1
            healthy = not exc.transient  # 429, 5xx, timeouts: the upstream's trouble
            raise
        finally:
            seconds = time.perf_counter() - started
            self.stats.upstream_calls += 1
            self.stats.upstream_latency.observe(seconds)
            self.stats.recent_calls.record(healthy, seconds)

    def _upstream(self, task: Task) -> Upstream:
        upstream = self.upstreams.get(task.provider)
        if upstream is None:
            raise UpstreamError(
                f"no upstream here speaks provider {task.provider}", transient=False
            )
        return upstream

    def _speedup(self, task: Task) -> float:
        upstream = self.upstreams.get(task.provider)
        return (upstream.speedup if upstream else 1.0) * self.timing.speedup

    def _api_key(self, task: Task) -> str | None:
        if task.upstream_key_ciphertext is None or self.key_box is None:
            return None
        try:
            return self.key_box.open(task.upstream_key_ciphertext)
        except KeyUnreadable as exc:
            # No redelivery will open it: fail the task now, as a final upstream refusal does.
            raise UpstreamError(exc.message, transient=False) from exc

    def _past_deadline(self, task: Task, since: datetime) -> bool:
        elapsed = (utcnow() - since).total_seconds() * self._speedup(task)
        return elapsed > self.timing.deadline


def _expect(task: Task, **extra: Any) -> Expect:
    polls = extra.pop("polls", None)
    return Expect(frozenset({task.status}), task.attempt, polls, extra)


async def _uncut(step: Coroutine[Any, Any, DeliveryResult]) -> DeliveryResult:
    """Run `step` to its end even when the step timeout (or a stop) cancels the caller.

    An accepted submit must be recorded: cut, it leaves a claimed queued row whose redelivery
    submits the same prompt upstream again once the claim expires.
    """
    running = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        await asyncio.shield(running)
        raise


def _unpaced(delay: float) -> float:
    return delay


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
