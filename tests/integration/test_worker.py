"""The step engine against the T8Star fake over real HTTP (DESIGN §3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import signing
from core.errors import InvalidState, StoreError, TaskNotFound
from core.models import Task, TaskEvent, TaskStatus, WorkMessage, end_changes, utcnow
from core.queue import Delivery
from core.steps import NextStep, StepWrites
from core.store import Expect
from core.store.sqlite import SqliteStore
from core.upstream.t8star import T8StarUpstream
from core.worker import WorkerTiming
from tests.engine import FAST, KEY, NEXT_KEY, WORKER_URL, Engine, delivery, open_engine
from tests.fakes.t8star import DEFAULT_KEY, FakeT8Star, Fault, JobScript


@pytest.fixture
def fake() -> Iterator[FakeT8Star]:
    with FakeT8Star() as server:
        yield server


def t8star(fake: FakeT8Star) -> T8StarUpstream:
    timeout = httpx.Timeout(1.0, connect=1.0)
    return T8StarUpstream(fake.base_url, DEFAULT_KEY, timeout=timeout)


@pytest.fixture
async def engine(tmp_path: Path, fake: FakeT8Star) -> AsyncIterator[Engine]:
    engine = await open_engine(tmp_path / "videoq.db", t8star(fake))
    yield engine
    await engine.worker.upstreams["t8star"].close()
    await engine.store.close()


async def test_success_path_reports_progress_and_the_video_url(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_default(JobScript(polls=4, progress=(20, 55, 80)))
    task = await engine.submit()
    await engine.drain()
    done = await engine.task(task.id)
    assert done.status is TaskStatus.SUCCEEDED and done.progress == 100
    assert done.video_url and done.video_url.startswith("https://filesystem.site/")
    assert done.polls == 4 and done.upstream_task_id == fake.task_ids()[0]
    polls = [e for e in await engine.store.events(task.id) if e.kind == "poll"]
    assert [e.progress for e in polls] == [20, 55, 80]
    assert all(e.http_status == 200 and e.latency_ms is not None for e in polls)


async def test_polls_that_report_no_new_progress_are_counted_until_it_moves(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_default(JobScript(polls=8, progress=(20, 40, 40, 40, 40, 40, 60)))
    task = await engine.submit()
    counted = []
    while engine.queue.published:
        await engine.worker.handle(delivery(engine.queue.take().message))
        current = await engine.task(task.id)
        if current.status is TaskStatus.RUNNING and current.polls:
            counted.append(current.polls_without_progress)
    assert counted == [0, 0, 1, 2, 3, 4, 0]
    assert (await engine.task(task.id)).status is TaskStatus.SUCCEEDED


async def test_failure_path_keeps_the_upstream_reason(engine: Engine, fake: FakeT8Star) -> None:
    fake.script_default(JobScript(polls=2, outcome="failure", reason="内容违规 content flagged"))
    task = await engine.submit()
    await engine.drain()
    done = await engine.task(task.id)
    assert done.status is TaskStatus.FAILED
    assert done.error_message == "内容违规 content flagged"


async def test_an_upstream_reason_is_stored_without_control_characters(
    engine: Engine, fake: FakeT8Star
) -> None:
    reason = "blocked\x1b[2J\x07 by\n\n the   filter " + "x" * 400
    fake.script_default(JobScript(polls=1, outcome="failure", reason=reason))
    task = await engine.submit()
    await engine.drain()
    done = await engine.task(task.id)
    assert done.error_message is not None
    assert done.error_message.startswith("blocked [2J by the filter xxx")
    assert done.error_message.endswith("…") and len(done.error_message) == 300
    assert all(ch.isprintable() for ch in done.error_message)


async def test_late_failure_after_ninety_percent_fails_the_task(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_default(JobScript.late_failure("Content policy violation"))
    task = await engine.submit()
    await engine.drain()
    done = await engine.task(task.id)
    assert (done.status, done.error_message) == (TaskStatus.FAILED, "Content policy violation")
    assert done.progress >= 90


@pytest.mark.parametrize(
    ("endpoint", "fault"),
    [
        ("submit", Fault.rate_limited("1")),
        ("submit", Fault.http(500)),
        ("submit", Fault.http(503)),
        ("submit", Fault.slow(2.0)),
        ("submit", Fault.malformed()),
        ("status", Fault.rate_limited("1")),
        ("status", Fault.http(500)),
        ("status", Fault.slow(2.0)),
        ("status", Fault.malformed()),
        ("status", Fault.status_value("WEIRD")),
        ("status", Fault.status_value("QUEUED")),
    ],
    ids=lambda value: (
        value if isinstance(value, str) else f"{value.kind}-{value.http_status}-{value.value}"
    ),
)
async def test_transient_faults_end_in_success(
    engine: Engine, fake: FakeT8Star, endpoint: str, fault: Fault
) -> None:
    fake.fault(endpoint, fault, times=2)  # type: ignore[arg-type]
    task = await engine.submit()
    await engine.drain()
    done = await engine.task(task.id)
    assert done.status is TaskStatus.SUCCEEDED
    if fault.kind != "slow" or endpoint != "submit":
        # A submit that timed out on our side may still have started a job upstream: that is
        # the documented duplicate window, so only the other faults promise a single job.
        assert fake.task_ids() == [done.upstream_task_id]


async def test_rate_limit_retry_after_reaches_the_queue(engine: Engine, fake: FakeT8Star) -> None:
    fake.fault("submit", Fault.rate_limited("7"))
    task = await engine.submit()
    first = engine.queue.take()
    [result] = await engine.deliver(first.message)
    assert (result.status, result.retry_after) == (503, 7.0)
    assert (await engine.task(task.id)).status is TaskStatus.QUEUED


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_permanent_submit_refusals_fail_with_a_clear_reason(
    engine: Engine, fake: FakeT8Star, status: int
) -> None:
    fake.fault("submit", Fault.http(status))
    task = await engine.submit()
    await engine.drain()
    done = await engine.task(task.id)
    assert done.status is TaskStatus.FAILED
    assert done.error_message and str(status) in done.error_message
    assert DEFAULT_KEY not in done.error_message and "FAKE-T8STAR" not in done.error_message
    assert len(fake.submits()) == 1


async def test_a_task_the_upstream_forgets_fails_after_a_few_polls(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_default(JobScript(polls=50))
    task = await engine.submit()
    await engine.deliver(engine.queue.take().message)
    fake.forget((await engine.task(task.id)).upstream_task_id or "")
    await engine.drain()
    done = await engine.task(task.id)
    assert (done.status, done.error_message) == (
        TaskStatus.FAILED,
        "upstream no longer knows this task",
    )


async def test_a_just_created_id_unknown_for_a_moment_is_tolerated(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_default(JobScript(polls=2, not_found_polls=1))
    task = await engine.submit()
    await engine.drain()
    assert (await engine.task(task.id)).status is TaskStatus.SUCCEEDED


async def test_deadline_fails_a_task_as_timed_out(tmp_path: Path, fake: FakeT8Star) -> None:
    fake.script_default(JobScript(polls=10_000))
    timing = WorkerTiming(schedule=FAST.schedule, speedup=FAST.speedup, deadline=0.0)
    engine = await open_engine(tmp_path / "d.db", t8star(fake), timing)
    try:
        task = await engine.submit()
        await engine.drain()
        done = await engine.task(task.id)
        assert (done.status, done.error_message) == (TaskStatus.FAILED, "timed out")
    finally:
        await engine.store.close()
        await engine.worker.upstreams["t8star"].close()


async def test_the_same_delivery_five_times_submits_once(engine: Engine, fake: FakeT8Star) -> None:
    task = await engine.submit()
    message = engine.queue.take().message
    results = await engine.deliver(message, times=5)
    assert all(r.ok for r in results)
    assert len(fake.submits()) == 1
    assert (await engine.task(task.id)).status is TaskStatus.RUNNING


async def test_five_concurrent_deliveries_submit_once(engine: Engine, fake: FakeT8Star) -> None:
    await engine.submit()
    message = engine.queue.take().message
    await asyncio.gather(*(engine.worker.handle(delivery(message)) for _ in range(5)))
    assert len(fake.submits()) == 1


async def test_cancel_while_running_stays_cancelled_and_stops_upstream_calls(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_default(JobScript(polls=5))
    task = await engine.submit()
    await engine.deliver(engine.queue.take().message)  # submit
    await engine.deliver(engine.queue.take().message)  # poll 1
    upstream_id = (await engine.task(task.id)).upstream_task_id
    calls_before = len(fake.status_calls(upstream_id))
    await engine.service.cancel(task.id, actor="alice@cli")
    await engine.drain()
    done = await engine.task(task.id)
    assert done.status is TaskStatus.CANCELLED
    assert len(fake.status_calls(upstream_id)) == calls_before


@pytest.mark.parametrize("end", ["success", "failure", "cancel"])
async def test_every_end_of_a_task_clears_the_same_columns(
    engine: Engine, fake: FakeT8Star, end: str
) -> None:
    fake.script_default(JobScript(polls=2, outcome="failure" if end == "failure" else "success"))
    task = await engine.submit()
    # A sealed own key the worker never opens (no key box): only its erasure is under test.
    await engine.store.update(
        task.id, Expect.of(TaskStatus.QUEUED), {"upstream_key_ciphertext": "sealed"}
    )
    await engine.deliver(engine.queue.take().message)  # submit: running, next poll planned
    if end == "cancel":
        await engine.service.cancel(task.id)
    await engine.drain()
    done = await engine.task(task.id)
    status = {"success": "succeeded", "failure": "failed", "cancel": "cancelled"}[end]
    cleared = end_changes(TaskStatus(status), utcnow())
    assert {name: getattr(done, name) for name in cleared} == cleared | {
        "completed_at": done.completed_at
    }
    assert done.completed_at is not None and done.upstream_key_ciphertext is None


async def test_a_short_id_finds_its_task_among_more_than_a_page_of_newer_ones(
    engine: Engine,
) -> None:
    oldest = await engine.submit("the oldest")
    newer = [(await engine.submit(f"newer {n}")).id for n in range(1_050)]
    short = oldest.id[:8]
    while any(task_id.startswith(short) for task_id in newer):
        short = oldest.id[: len(short) + 1]
    assert await engine.service.resolve_id(short) == oldest.id
    assert await engine.service.resolve_id(short.upper()) == oldest.id
    assert await engine.service.resolve_id(oldest.id) == oldest.id
    with pytest.raises(InvalidState, match="several tasks"):
        await engine.service.resolve_id(newer[0][0])  # one hex digit: ~65 of 1,051 tasks
    for unknown in ["", "zz", "3f%", "3f*", "_"]:
        with pytest.raises(TaskNotFound):
            await engine.service.resolve_id(unknown)


async def test_a_failed_poll_moves_the_next_poll_time_to_its_retry(
    engine: Engine, fake: FakeT8Star
) -> None:
    # The reconciler calls a poll lost once next_poll_at is far behind: it must follow the retry.
    fake.script_default(JobScript(polls=5))
    task = await engine.submit()
    await engine.deliver(engine.queue.take().message)  # submit
    fake.fault("status", Fault.rate_limited("120"))
    before = utcnow()
    await engine.deliver(engine.queue.take().message)  # poll 1: 429, retry in two minutes
    retry = engine.queue.take()
    polled = await engine.task(task.id)
    assert retry.delay == 120.0 and polled.polls == 1
    assert polled.next_poll_at is not None
    assert polled.next_poll_at >= before + timedelta(seconds=120)


async def test_a_poll_delivered_after_its_time_is_measured_as_late(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_default(JobScript(polls=5))
    task = await engine.submit()
    await engine.deliver(engine.queue.take().message)  # submit; poll 1 is due in a minute
    await engine.deliver(engine.queue.take().message)  # delivered early: not late at all
    running = await engine.task(task.id)
    overdue = {"next_poll_at": utcnow() - timedelta(seconds=7)}
    expect = Expect.of(TaskStatus.RUNNING, attempt=1, polls=running.polls)
    assert await engine.store.update(task.id, expect, overdue)
    await engine.deliver(engine.queue.take().message)  # poll 2, seven seconds after its time
    family = next(iter(engine.worker.stats.poll_lateness.collect()))
    samples = {sample.name: sample.value for sample in family.samples}
    assert samples["videoq_poll_lateness_seconds_count"] == 2
    assert 7.0 <= samples["videoq_poll_lateness_seconds_sum"] < 60.0


async def test_a_poll_in_flight_during_cancel_does_not_overwrite_it(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_default(JobScript(polls=1))
    task, poll = await engine.submitted_with_first_poll()
    fake.fault("status", Fault.slow(0.5))
    in_flight = asyncio.create_task(engine.worker.handle(delivery(poll)))
    await fake.wait_for(lambda: len(fake.status_calls()) == 1, what="the poll to reach upstream")
    await engine.service.cancel(task.id)
    await in_flight
    assert (await engine.task(task.id)).status is TaskStatus.CANCELLED


async def test_retry_of_a_failed_task_is_a_new_attempt_and_old_messages_are_ignored(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_next(JobScript(polls=1, outcome="failure", reason="overloaded"), JobScript(polls=2))
    task = await engine.submit()
    old_submit = engine.queue.pending()[0].message
    await engine.drain()
    assert (await engine.task(task.id)).status is TaskStatus.FAILED
    old_poll = WorkMessage(task_id=task.id, attempt=1, step="poll", seq=2)
    retried = await engine.service.retry(task.id, actor="bob@dashboard")
    assert (retried.attempt, retried.status, retried.upstream_task_id) == (
        2,
        TaskStatus.QUEUED,
        None,
    )
    await engine.deliver(old_submit)
    await engine.deliver(old_poll)
    assert len(fake.submits()) == 1
    await engine.drain()
    done = await engine.task(task.id)
    assert (done.status, done.attempt) == (TaskStatus.SUCCEEDED, 2)
    assert len(fake.submits()) == 2 and done.upstream_task_id == fake.task_ids()[1]


async def test_history_lists_transitions_and_polls_in_order_and_who_acted(
    engine: Engine, fake: FakeT8Star
) -> None:
    fake.script_next(JobScript(polls=3), JobScript(polls=1))
    task = await engine.submit()
    await engine.deliver(engine.queue.take().message)
    await engine.deliver(engine.queue.take().message)
    await engine.service.cancel(task.id, actor="alice@cli")
    await engine.service.retry(task.id, actor="bob@dashboard")
    await engine.drain()
    history = [
        (e.kind, e.from_status, e.to_status, e.actor, e.attempt)
        for e in await engine.store.events(task.id)
    ]
    Q, R, S, C = TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.SUCCEEDED, TaskStatus.CANCELLED
    assert history == [
        ("transition", None, Q, "cli", 1),
        ("transition", Q, R, "worker", 1),
        ("poll", None, None, "worker", 1),
        ("action", R, C, "alice@cli", 1),
        ("action", C, Q, "bob@dashboard", 2),
        ("transition", Q, R, "worker", 2),
        ("transition", R, S, "worker", 2),
    ]


async def test_a_delivery_signed_with_the_next_key_is_accepted(engine: Engine) -> None:
    await engine.submit()
    result = await engine.worker.handle(delivery(engine.queue.take().message, key=NEXT_KEY))
    assert result.ok


@pytest.mark.parametrize(
    ("body", "signature", "status"),
    [
        (b'{"task_id":"x","attempt":1,"step":"submit","seq":1}', None, 401),
        (b"{not json", "valid", 489),
        (b'{"task_id":"x","attempt":1,"step":"submit","seq":1,"prompt":"p"}', "valid", 489),
    ],
    ids=["unsigned", "malformed", "unknown-field"],
)
async def test_bad_deliveries_change_nothing(
    engine: Engine, fake: FakeT8Star, body: bytes, signature: str | None, status: int
) -> None:
    headers = {"Upstash-Signature": signing.sign(body, KEY, WORKER_URL)} if signature else {}
    result = await engine.worker.handle(Delivery(body, headers))
    assert result.status == status
    assert result.non_retryable == (status == 489)
    assert fake.requests == []


async def test_the_submit_and_a_retry_send_the_stored_images(
    engine: Engine, fake: FakeT8Star
) -> None:
    images = ["https://x.test/a.png", "data:image/png;base64," + "A" * 4096]
    fake.fault("submit", Fault.http(400))
    task = await engine.submit(images=images)
    await engine.drain()
    assert (await engine.task(task.id)).status is TaskStatus.FAILED
    await engine.service.retry(task.id)
    await engine.drain()
    assert (await engine.task(task.id)).status is TaskStatus.SUCCEEDED
    sent = [call.body["images"] for call in fake.submits()]
    assert sent == [images, images]


async def test_a_submit_without_images_reads_none(
    engine: Engine, fake: FakeT8Star, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    read = engine.store.images

    async def images(task_id: str) -> tuple[str, ...]:
        reads.append(task_id)
        return await read(task_id)

    monkeypatch.setattr(engine.store, "images", images)
    plain, pictured = await engine.submit(), await engine.submit(images=["https://x.test/a.png"])
    await engine.drain()
    assert reads == [pictured.id]
    assert [call.body.get("images") for call in fake.submits()] in (
        [None, ["https://x.test/a.png"]],
        [["https://x.test/a.png"], None],
    )
    assert (await engine.task(plain.id)).status is TaskStatus.SUCCEEDED


class StoreFailsOnce:
    """StepWrites whose first `started` fails at the store: before it writes, or after it
    wrote the row (the answer lost, as a request that times out on its way back)."""

    def __init__(self, inner: StepWrites, store: SqliteStore, *, after_writing: bool) -> None:
        self.inner, self.store, self.after_writing = inner, store, after_writing
        self.failures = 0

    async def submitted(
        self, task: Task, event: TaskEvent, images: Sequence[str], message: WorkMessage
    ) -> tuple[Task, bool]:
        return await self.inner.submitted(task, event, images, message)

    async def poll_next(self, step: NextStep) -> Task | None:
        return await self.inner.poll_next(step)

    async def finished(
        self, task_id: str, expect: Expect, changes: Mapping[str, Any], event: TaskEvent
    ) -> Task | None:
        return await self.inner.finished(task_id, expect, changes, event)

    async def started(self, step: NextStep) -> Task | None:
        if self.failures == 0:
            self.failures += 1
            if self.after_writing:
                await self.store.update(step.task_id, step.expect, step.changes, step.event)
            raise StoreError("cannot reach Supabase at 127.0.0.1:9 while updating the task")
        return await self.inner.started(step)


@pytest.mark.parametrize("after_writing", [False, True], ids=["lost write", "lost answer"])
async def test_an_accepted_submit_the_store_fails_to_record_is_recorded_not_made_again(
    engine: Engine, fake: FakeT8Star, after_writing: bool
) -> None:
    steps = StoreFailsOnce(engine.worker.steps, engine.store, after_writing=after_writing)
    engine.worker.steps = steps
    task = await engine.submit()

    (result,) = await engine.deliver(engine.queue.take().message)

    assert steps.failures == 1 and result.ok
    assert len(fake.submits()) == 1
    running = await engine.task(task.id)
    assert running.status is TaskStatus.RUNNING and running.upstream_task_id is not None
    (poll,) = engine.queue.published  # the first poll, published once either way
    assert (poll.message.step, poll.message.seq) == ("poll", 1)
    await engine.drain()
    assert (await engine.task(task.id)).status is TaskStatus.SUCCEEDED
    assert len(fake.submits()) == 1
