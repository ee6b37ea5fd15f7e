"""The Queue conformance suite against LocalQueue, plus what only a shared-file queue does."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from core.errors import QueueError
from core.models import WorkMessage
from core.queue import Delivery, DeliveryHandler, DeliveryResult
from core.queue.local import _PRUNE_EVERY, LocalQueue
from core.queue.local_db import QueueDb
from core.retry import RetryPolicy
from tests.conformance.queue_contract import (
    QueueContract,
    Recorder,
    accept,
    answers,
    step,
    wait_dead,
    wait_gone,
)
from tests.waiting import TIMEOUT, wait_until

KEY = "sig_2bQ7xKp9LmN4vR8tW3yZ6cF1hJ5d"
DESTINATION = "http://127.0.0.1:8000/api/v1/internal/video-worker"
FAST = RetryPolicy.qstash().scaled(0.0001)  # 1.2 ms, 15 ms, 181 ms
ROOT = Path(__file__).resolve().parents[2]


def make_queue(path: Path, **options: object) -> LocalQueue:
    settings: dict[str, object] = {"retry": FAST, "concurrency": 8, "lease": 10.0}
    settings.update(options)
    return LocalQueue(path, signing_key=KEY, destination=DESTINATION, **settings)  # type: ignore[arg-type]


class LocalHarness:
    """Runs LocalQueue's dispatcher in the test's loop, delivering to a swappable handler."""

    def __init__(self, queue: LocalQueue) -> None:
        self.queue = queue
        self.destination = DESTINATION
        self.signing_key = KEY
        self.retries = queue.retry.retries
        self.delay = 0.5
        self.handler: DeliveryHandler = Recorder(accept)
        self._stop = asyncio.Event()
        self._run: asyncio.Task[None] | None = None

    def set_handler(self, handler: DeliveryHandler) -> None:
        self.handler = handler

    async def start(self) -> None:
        self._stop.clear()
        self._run = asyncio.create_task(self.queue.run(self._deliver, self._stop))

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        run, self._run = self._run, None
        if run is not None:
            self._stop.set()
            await asyncio.wait_for(run, TIMEOUT)

    async def pending(self, message_id: str) -> bool:
        message = await self.queue.get(message_id)
        return message is not None and message.state != "dead"

    async def dead_letter_ids(self) -> list[str]:
        return [message.id for message in await self.queue.dead_messages()]

    async def slow_backoff(self) -> None:
        self.queue.retry = RetryPolicy(retries=self.retries, base=3600, factor=1, cap=3600)

    async def _deliver(self, delivery: Delivery) -> DeliveryResult:
        return await self.handler(delivery)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "videoq.db"


OpenHarness = Callable[..., Awaitable[LocalHarness]]


@pytest.fixture
async def open_harness(db_path: Path) -> AsyncIterator[OpenHarness]:
    """A factory of opened LocalQueues on the test's file; all stopped and closed at the end."""
    opened: list[LocalHarness] = []

    async def open_one(**options: object) -> LocalHarness:
        queue = make_queue(db_path, **options)
        await queue.open()
        opened.append(LocalHarness(queue))
        return opened[-1]

    yield open_one
    for harness in opened:
        await harness.stop()
        await harness.queue.close()


@pytest.fixture
async def queue_harness(open_harness: OpenHarness) -> LocalHarness:
    return await open_harness()


class TestLocalQueueContract(QueueContract):
    """Every promise of the Queue port, kept by the embedded SQLite queue."""


# -- local only --------------------------------------------------------------------------------


async def started(harness: LocalHarness, recorder: Recorder) -> Recorder:
    harness.set_handler(recorder)
    await harness.start()
    return recorder


async def test_dead_letters_keep_the_body_the_last_status_and_the_reason(
    queue_harness: LocalHarness,
) -> None:
    failing = DeliveryResult(503, reason="upstream busy")
    await started(queue_harness, Recorder(answers(failing)))
    message_id = await queue_harness.queue.publish(step(), delay=0)
    await wait_dead(queue_harness, message_id)
    [dead] = await queue_harness.queue.dead_messages()
    assert (dead.id, dead.body, dead.state) == (message_id, step().to_bytes(), "dead")
    assert (dead.last_status, dead.reason, dead.retried) == (503, "upstream busy", 3)
    assert dead.dedup_id == step().dedup_id
    stats = queue_harness.queue.counts
    assert (stats.published, stats.retried, stats.dead, stats.delivered) == (1, 3, 1, 0)
    assert await queue_harness.queue.pending_count() == 0


async def test_counters_and_pending_count_follow_the_messages(queue_harness: LocalHarness) -> None:
    queue = queue_harness.queue
    ids = [await queue.publish(step(seq=seq), delay=3600) for seq in (1, 2, 3)]
    await queue.publish(step(seq=1), delay=3600)
    assert await queue.pending_count() == 3
    await queue.cancel(ids[0])
    assert await queue.pending_count() == 2
    held = await queue.get(ids[1])
    assert held is not None and held.state == "pending" and held.retried == 0
    assert (queue.counts.published, queue.counts.deduplicated) == (3, 1)


async def test_a_delivered_message_leaves_only_its_dedup_entry_until_the_window_ends(
    db_path: Path, open_harness: OpenHarness
) -> None:
    now = [1_000_000.0]
    harness = await open_harness(dedup_window=600.0, clock=lambda: now[0])
    queue = harness.queue
    recorder = await started(harness, Recorder())
    first = await queue.publish(step())
    await wait_until(lambda: recorder.count(first) == 1, "the delivery")
    await wait_gone(harness, first)
    assert _rows(db_path, "queue_messages") == 0 and _rows(db_path, "queue_dedup") == 1
    assert await queue.publish(step()) == first  # still inside the window
    now[0] += 601.0
    await wait_until(lambda: _rows(db_path, "queue_dedup") == 0, "the dedup entry pruned")
    second = await queue.publish(step())
    assert second != first
    await wait_until(lambda: recorder.count(second) == 1, "the republished message")


def _rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_writes_made_together_commit_together_and_fail_alone(db_path: Path) -> None:
    db = QueueDb(db_path, busy_timeout=5.0)
    await db.open()
    rows = [(f"msg_{n}", f"t{n}-1-poll-1", b"{}", 0.0, 0.0) for n in range(50)]
    results = await asyncio.gather(
        *(db.publish(row, dedup_cutoff=-1.0) for row in rows[:25]),
        db.change("UPDATE no_such_table SET x = 1", ()),
        *(db.publish(row, dedup_cutoff=-1.0) for row in rows[25:]),
        return_exceptions=True,
    )
    failed = results.pop(25)
    assert isinstance(failed, QueueError) and "no_such_table" in failed.message
    assert results == [(row[0], True) for row in rows]
    assert await db.count_pending() == 50
    await db.close()
    with pytest.raises(QueueError, match="not open"):
        await db.publish(rows[0], dedup_cutoff=-1.0)


async def test_the_queue_keeps_to_its_own_tables_in_wal_mode(queue_harness: LocalHarness) -> None:
    with sqlite3.connect(queue_harness.queue.path) as db:
        names = [row[0] for row in db.execute("SELECT name FROM sqlite_master")]
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert names and all(name.startswith(("queue_", "sqlite_autoindex_queue_")) for name in names)
    assert mode == "wal"
    assert queue_harness.queue.describe() == f"local: {queue_harness.queue.path}"


async def test_an_idle_dispatcher_wakes_for_a_publish_and_for_a_short_retry(
    open_harness: OpenHarness,
) -> None:
    # With hour-long poll ticks and leases, only the in-process wake-up delivers these in time.
    harness = await open_harness(poll_interval=3600.0, lease=3600.0)
    queue = harness.queue
    busy_once = answers(DeliveryResult(503, retry_after=0.05), DeliveryResult(200))
    recorder = await started(harness, Recorder(busy_once))
    first = await queue.publish(step(seq=1))
    await wait_until(lambda: recorder.count(first) == 2, "the retried message")
    await wait_gone(harness, first)
    later = await queue.publish(step(seq=2))
    delayed = await queue.publish(step(seq=3), delay=0.2)
    await wait_until(lambda: recorder.count(later) == 2, "the message published later")
    await wait_until(lambda: recorder.count(delayed) == 2, "the delayed message")


async def test_a_full_dispatcher_takes_the_next_message_as_soon_as_a_slot_frees(
    open_harness: OpenHarness,
) -> None:
    harness = await open_harness(poll_interval=3600.0, lease=3600.0, concurrency=1)
    ids = [await harness.queue.publish(step(seq=seq)) for seq in (1, 2, 3)]
    recorder = await started(harness, Recorder())
    await wait_until(lambda: [s.message_id for s in recorder.seen] == ids, "all three, in order")


async def test_a_stop_asked_for_in_the_middle_of_a_round_is_not_slept_through(
    open_harness: OpenHarness,
) -> None:
    # The stop arrives while the dispatcher awaits the store, before it goes to sleep for
    # the (hour-long) poll interval; the wake-up it sends must survive until that sleep.
    harness = await open_harness(poll_interval=3600.0)
    db = harness.queue._db
    next_due = db.next_due

    looked = asyncio.Event()

    async def stop_while_looking() -> float:
        harness.request_stop()
        looked.set()
        return await next_due()

    db.next_due = stop_while_looking  # type: ignore[method-assign]
    await harness.start()
    async with asyncio.timeout(5):
        await looked.wait()
        await harness.stop()


async def test_a_publish_heard_of_while_a_look_is_answered_is_not_hidden_by_its_answer(
    open_harness: OpenHarness,
) -> None:
    # The look at the file ran before the publish, whose notice arrives before the look's
    # answer: an answer taken alone would hide the message for the (hour-long) poll interval.
    harness = await open_harness(poll_interval=3600.0, lease=3600.0)
    db = harness.queue._db
    next_due = db.next_due
    published: list[str] = []

    async def publish_while_answering() -> float:
        answer = await next_due()
        if not published:
            published.append(await harness.queue.publish(step(seq=1)))
        return answer

    db.next_due = publish_while_answering  # type: ignore[method-assign]
    recorder = await started(harness, Recorder())
    await wait_until(lambda: bool(published) and recorder.count(published[0]) == 1,
                     "the message published during the look")  # fmt: skip


async def test_a_handler_that_outlives_the_lease_is_abandoned_and_retried(
    open_harness: OpenHarness,
) -> None:
    harness = await open_harness(lease=0.3)
    queue = harness.queue
    hang = asyncio.Event()

    async def hang_once(delivery: Delivery) -> DeliveryResult:
        if delivery.headers["Upstash-Retried"] == "0":
            await hang.wait()
        return DeliveryResult(200)

    harness.set_handler(hang_once)
    await harness.start()
    message_id = await queue.publish(step())
    await wait_gone(harness, message_id)
    assert (queue.counts.retried, queue.counts.delivered) == (1, 1)


async def test_only_the_handler_past_its_answer_by_time_is_cut_and_it_answers_504(
    open_harness: OpenHarness,
) -> None:
    # Answers are due 0.9 s after the claim; the retry waits an hour, so the cut message stays
    # in the file with what its cut answered.
    harness = await open_harness(lease=1.0)
    await harness.slow_backoff()
    queue = harness.queue
    cut: list[str] = []
    delivered: list[str] = []

    async def handle(delivery: Delivery) -> DeliveryResult:
        task_id = msgspec.json.decode(delivery.body)["task_id"]
        if task_id == "hangs":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cut.append(task_id)
                raise
        await asyncio.sleep(0.05)  # still in flight when the hanging one is published
        delivered.append(task_id)
        return DeliveryResult(200)

    harness.set_handler(handle)
    await harness.start()
    hangs = await queue.publish(step(task_id="hangs"))
    quick = [await queue.publish(step(task_id=f"quick-{n}")) for n in range(5)]
    for message_id in quick:
        await wait_gone(harness, message_id)
    await wait_until(lambda: queue.counts.retried == 1, "the cut delivery settled")
    held = await queue.get(hangs)
    assert cut == ["hangs"]
    assert held is not None and held.state == "pending" and held.retried == 1
    assert (held.last_status, held.reason) == (504, "no answer within 0.9s")
    assert sorted(delivered) == [f"quick-{n}" for n in range(5)]
    assert (queue.counts.delivered, queue.counts.retried, queue.in_flight) == (5, 1, 0)


async def test_a_stop_cancels_a_delivery_the_watchdog_cut_as_well(
    open_harness: OpenHarness,
) -> None:
    # A handler that ignores its cut (at 0.9 s) is still running at the stop it asks for then:
    # the stop's cancel is not taken for the watchdog's, so the delivery ends and its lease
    # (1 s, not expired yet) is handed back.
    harness = await open_harness(lease=1.0, drain_timeout=0.01)
    queue = harness.queue
    cuts = 0

    async def stubborn(delivery: Delivery) -> DeliveryResult:
        nonlocal cuts
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cuts += 1
                if cuts > 1:
                    raise
                harness.request_stop()

    harness.set_handler(stubborn)
    await harness.start()
    message_id = await queue.publish(step(task_id="stubborn"))
    await wait_until(lambda: cuts == 1, "the watchdog's cut")
    await harness.stop()  # times out if the stop's cancel is swallowed
    assert cuts == 2 and queue.in_flight == 0
    assert (queue.counts.handed_back, queue.counts.retried) == (1, 0)
    held = await queue.get(message_id)
    assert held is not None and held.state == "pending" and held.retried == 0


async def test_two_dispatchers_on_one_file_never_deliver_a_message_twice(
    open_harness: OpenHarness,
) -> None:
    harnesses = [await open_harness(concurrency=4) for _ in range(2)]
    queues = [harness.queue for harness in harnesses]
    active: set[str] = set()
    overlaps: list[str] = []
    counts: Counter[str] = Counter()

    async def handle(delivery: Delivery) -> DeliveryResult:
        message_id = delivery.headers["Upstash-Message-Id"]
        if message_id in active:
            overlaps.append(message_id)
        active.add(message_id)
        counts[message_id] += 1
        await asyncio.sleep(0.002)  # the work itself, so that deliveries overlap in time
        active.discard(message_id)
        return DeliveryResult(200)

    ids = [await queues[0].publish(step(task_id=f"t{n}")) for n in range(80)]
    for harness in harnesses:
        harness.set_handler(handle)
        await harness.start()
    await wait_until(lambda: set(counts) == set(ids), "every message delivered")
    for harness in harnesses:
        await harness.stop()
    assert overlaps == []
    assert set(counts.values()) == {1}
    assert sum(queue.counts.delivered for queue in queues) == len(ids)


async def test_stop_drains_in_flight_work_then_hands_back_the_rest(
    open_harness: OpenHarness,
) -> None:
    harness = await open_harness(lease=60.0, drain_timeout=2.0)
    queue = harness.queue
    release_quick = asyncio.Event()
    started_ids: list[str] = []

    async def handle(delivery: Delivery) -> DeliveryResult:
        started_ids.append(delivery.headers["Upstash-Message-Id"])
        if b'"quick"' in delivery.body:
            await release_quick.wait()
            return DeliveryResult(200)
        await asyncio.Event().wait()  # stuck for good
        raise AssertionError("unreachable")

    harness.set_handler(handle)
    await harness.start()
    quick = await queue.publish(step(task_id="quick"))
    stuck = await queue.publish(step(task_id="stuck"))
    await wait_until(lambda: len(started_ids) == 2, "both deliveries in flight")
    harness.request_stop()
    release_quick.set()
    late = await queue.publish(step(task_id="late"))
    await harness.stop()

    assert await queue.get(quick) is None  # finished while draining
    handed_back = await queue.get(stuck)
    assert handed_back is not None and handed_back.state == "pending"
    assert handed_back.retried == 0
    assert (queue.counts.delivered, queue.counts.handed_back) == (1, 1)
    assert late not in started_ids

    # The 60 s lease was released: another dispatcher delivers both at once.
    recorder = await started(await open_harness(lease=60.0), Recorder())
    await wait_until(lambda: {s.message_id for s in recorder.seen} == {stuck, late}, "hand-over")
    assert [s.retried for s in recorder.of(stuck)] == [0]


PUBLISH_SCRIPT = """
import asyncio, sys
from core.models import WorkMessage
from core.queue.local import _PRUNE_EVERY, LocalQueue
from core.retry import RetryPolicy

async def main():
    queue = LocalQueue(sys.argv[1], signing_key=sys.argv[2], destination=sys.argv[3],
                       retry=RetryPolicy.qstash(), concurrency=1)
    await queue.open()
    print(await queue.publish(WorkMessage(task_id="afar", attempt=1, step="submit", seq=1)))
    await queue.close()

asyncio.run(main())
"""

CRASH_SCRIPT = """
import asyncio, os, sys
from core.queue.local import _PRUNE_EVERY, LocalQueue
from core.retry import RetryPolicy

async def die(delivery):
    print(delivery.headers["Upstash-Message-Id"], flush=True)
    os._exit(3)  # killed mid-delivery: no answer, no cleanup

async def main():
    queue = LocalQueue(sys.argv[1], signing_key=sys.argv[2], destination=sys.argv[3],
                       retry=RetryPolicy.qstash(), concurrency=1, lease=float(sys.argv[4]))
    await queue.open()
    await queue.run(die, asyncio.Event())

asyncio.run(main())
"""


async def run_script(script: str, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    if process.returncode not in (0, 3):
        pytest.fail(f"the helper process failed: {stderr.decode()[-2000:]}")
    return process.returncode, stdout.decode().strip()


async def test_a_publish_from_another_process_is_delivered_here(
    queue_harness: LocalHarness,
) -> None:
    recorder = await started(queue_harness, Recorder())
    code, message_id = await run_script(
        PUBLISH_SCRIPT, str(queue_harness.queue.path), KEY, DESTINATION
    )
    assert code == 0 and message_id.startswith("msg_")
    await wait_until(lambda: recorder.count(message_id) == 1, "the other process's message")
    assert b'"afar"' in recorder.of(message_id)[0].body


@pytest.mark.parametrize(("retries", "outcome"), [(3, "redelivered"), (0, "dead")])
async def test_a_process_killed_mid_delivery_loses_its_lease(
    db_path: Path, open_harness: OpenHarness, retries: int, outcome: str
) -> None:
    harness = await open_harness(retry=msgspec.structs.replace(FAST, retries=retries))
    queue = harness.queue
    message_id = await queue.publish(step())
    code, claimed = await run_script(CRASH_SCRIPT, str(db_path), KEY, DESTINATION, "0.5")
    assert (code, claimed) == (3, message_id)
    held = await queue.get(message_id)
    assert held is not None and held.retried == 0

    recorder = await started(harness, Recorder())
    if outcome == "redelivered":
        await wait_until(lambda: recorder.count(message_id) == 1, "the redelivery")
        assert recorder.of(message_id)[0].retried == 1  # the crashed attempt counts
    else:
        await wait_dead(harness, message_id)
        [dead] = await queue.dead_messages()
        assert dead.reason == "no answer before the lease expired" and recorder.seen == []


async def test_a_closed_queue_refuses_work(db_path: Path) -> None:
    queue = make_queue(db_path)
    with pytest.raises(QueueError, match="not open"):
        await queue.publish(step())
    with pytest.raises(QueueError, match="not open"):
        await queue.run(accept_all, asyncio.Event())
    await queue.open()
    await queue.close()
    with pytest.raises(QueueError, match="not open"):
        await queue.get("msg_x")


async def accept_all(delivery: Delivery) -> DeliveryResult:
    return DeliveryResult(200)


async def test_a_message_is_cancelled_by_its_dedup_id_too(queue_harness: LocalHarness) -> None:
    queue = queue_harness.queue
    first = WorkMessage(task_id="t-1", attempt=1, step="submit", seq=1)
    other = WorkMessage(task_id="t-2", attempt=1, step="submit", seq=1)
    first_id = await queue.publish(first, delay=3600)
    other_id = await queue.publish(other, delay=3600)

    await queue.cancel(first.dedup_id)  # what a task row holds for its first step
    await queue.cancel("t-3-1-submit-1")  # unknown: ignored

    assert not await queue_harness.pending(first_id)
    assert await queue_harness.pending(other_id)


async def test_the_dedup_table_stays_bounded_under_sustained_publishing(
    db_path: Path, open_harness: OpenHarness
) -> None:
    now = [1_000_000.0]
    window, per_second = 600.0, 2
    harness = await open_harness(dedup_window=window, poll_interval=0.0, clock=lambda: now[0])
    await started(harness, Recorder())
    bound = per_second * (window + _PRUNE_EVERY) + per_second
    for second in range(3 * int(window)):
        for n in range(per_second):
            await harness.queue.publish(step(task_id=f"task-{second}", seq=n + 1), delay=0)
        now[0] += 1.0
        if second % int(_PRUNE_EVERY) == 0:
            # Three windows' worth of dedup ids, yet the table never holds much more than one.
            await wait_until(lambda: _rows(db_path, "queue_dedup") <= bound, "the dedup pruned")
    assert _rows(db_path, "queue_dedup") >= per_second * window  # the window itself is kept
