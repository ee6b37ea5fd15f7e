"""The TaskStore conformance suite: what every adapter promises, from a row's columns to its feed.

An adapter's test module subclasses `StoreContract` and provides a `store` fixture that yields
an opened store on empty tables. Nothing here times anything: every expected feed event is
awaited with a timeout, and the tests judge what arrives, not how fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from datetime import UTC, date, datetime, timedelta, timezone

import msgspec.json
import pytest
from msgspec.structs import replace

from core import store as store_port
from core.errors import StoreError
from core.models import (
    TASK_COLUMNS,
    Task,
    TaskChange,
    TaskEvent,
    TaskStatus,
    VideoRequest,
    end_changes,
)
from core.service import TaskService
from core.store import STORE_SET_COLUMNS, Expect, StepClaim, TaskStore, Usage
from tests.engine import HandQueue
from tests.waiting import TIMEOUT

QUEUED, RUNNING, FAILED = TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.FAILED
T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYAAAAAMAAWgmWQ0AAAAASUVORK5CYII="  # noqa: E501


def new_task(prompt: str = "a fox in the snow", **fields: object) -> Task:
    """A fresh queued task, with `fields` overriding its columns."""
    return replace(Task.new(VideoRequest(prompt=prompt)), **fields)


def every_column_set() -> Task:
    """A task in which no column holds its default value."""
    later = T0 + timedelta(minutes=3, microseconds=7)
    values: dict[str, object] = {
        "id": "5f0c2f4e-9a43-4c1e-8d2b-7e3f1a6b9c01",
        "user_id": "0b6c1d52-user",
        "provider": "t8star-eu",
        "model": "sora-2-pro",
        "prompt": "a lighthouse in a storm, 35mm film",
        "aspect_ratio": "9:16",
        "duration": 25,
        "hd": True,
        "image_count": 2,
        "image_bytes": 4321,
        "status": RUNNING,
        "progress": 37,
        "attempt": 2,
        "upstream_task_id": "task_01J8XYZ",
        "video_url": "https://cdn.example.com/v.mp4",
        "error_message": "previous attempt: timed out",
        "message_id": "msg_26hZCxZCuWyyTWPmSVBrNC",
        # An aware time in another zone must come back as the same instant, in UTC.
        "last_polled_at": later.astimezone(timezone(timedelta(hours=8))),
        "next_poll_at": later + timedelta(seconds=5),
        "step_lease_until": later + timedelta(seconds=30),
        "upstream_key_ciphertext": "gAAAAABn-sealed",
        "own_key": True,
        "polls": 3,
        "polls_without_progress": 2,
        "upstream_status": "IN_PROGRESS",
        "created_at": T0,
        "updated_at": T0 + timedelta(seconds=1),
        "queued_at": T0 + timedelta(seconds=2),
        "started_at": T0 + timedelta(seconds=3),
        "completed_at": T0 + timedelta(seconds=4),
        "version": 7,
    }
    assert set(values) == set(TASK_COLUMNS), "cover every column of the task"
    return Task.from_row(values)


def assert_utc(task: Task) -> None:
    for name in TASK_COLUMNS:
        value = getattr(task, name)
        if isinstance(value, datetime):
            assert value.utcoffset() == timedelta(0), f"{name} is not UTC: {value!r}"


async def next_change(
    feed: AsyncIterator[TaskChange], wanted: Callable[[TaskChange], bool]
) -> TaskChange:
    """The first change that `wanted` accepts (repeats and other tasks are skipped)."""

    async def scan() -> TaskChange:
        async for change in feed:
            if wanted(change):
                return change
        raise AssertionError("the change feed ended")

    return await asyncio.wait_for(scan(), TIMEOUT)


def of_task(task_id: str, version: int) -> Callable[[TaskChange], bool]:
    def wanted(change: TaskChange) -> bool:
        task = change.task
        return task is not None and task.id == task_id and task.version >= version

    return wanted


class StoreContract:
    """Every promise of the TaskStore port; subclass it and provide a `store` fixture."""

    # -- rows -------------------------------------------------------------------------------

    async def test_insert_then_get_round_trips_every_column(self, store: TaskStore) -> None:
        task = every_column_set()

        stored = await store.insert(task)
        loaded = await store.get(task.id)

        assert stored == task
        assert loaded == task
        assert loaded is not None
        assert_utc(loaded)
        assert loaded.image_count == 2 and loaded.hd is True
        assert loaded.status is RUNNING

    async def test_empty_optional_columns_round_trip(self, store: TaskStore) -> None:
        task = new_task()

        await store.insert(task)
        loaded = await store.get(task.id)

        assert loaded == task
        assert loaded is not None
        assert loaded.image_count == 0 and loaded.hd is False and loaded.started_at is None
        assert loaded.own_key is False
        assert_utc(loaded)

    async def test_own_key_outlives_the_erased_key(self, store: TaskStore) -> None:
        task = await store.insert(new_task(own_key=True, upstream_key_ciphertext="sealed"))

        ended = await store.update(task.id, Expect.of(QUEUED), end_changes(FAILED, T0))

        assert ended is not None and ended.upstream_key_ciphertext is None
        assert ended.own_key is True
        assert await store.get(task.id) == ended

    async def test_get_of_an_unknown_id_is_none(self, store: TaskStore) -> None:
        assert await store.get("00000000-0000-4000-8000-000000000000") is None

    async def test_a_duplicate_id_is_refused(self, store: TaskStore) -> None:
        task = await store.insert(new_task("the first"))

        with pytest.raises(StoreError):
            await store.insert(replace(task, prompt="the second"))

        assert await store.get(task.id) == task

    # -- list and count ---------------------------------------------------------------------

    async def test_list_is_newest_first(self, store: TaskStore) -> None:
        tasks = [new_task(f"task {n}", created_at=T0 + timedelta(seconds=n)) for n in range(4)]
        for task in (tasks[2], tasks[0], tasks[3], tasks[1]):
            await store.insert(task)

        listed = await store.list()

        assert [t.id for t in listed] == [t.id for t in reversed(tasks)]

    async def test_list_breaks_created_at_ties_by_id(self, store: TaskStore) -> None:
        ids = ["a0000000-0000-4000-8000-000000000000", "b0000000-0000-4000-8000-000000000000"]
        for task_id in ids:
            await store.insert(new_task(id=task_id, created_at=T0))

        assert [t.id for t in await store.list()] == list(reversed(ids))

    async def test_list_filters_and_limits(self, store: TaskStore) -> None:
        def made(n: int, status: TaskStatus, user: str) -> Task:
            moment = T0 + timedelta(seconds=n)
            return new_task(
                f"task {n}", status=status, user_id=user, created_at=moment, updated_at=moment
            )

        rows = [
            made(0, QUEUED, "ann"),
            made(1, RUNNING, "ann"),
            made(2, FAILED, "bob"),
            made(3, QUEUED, "bob"),
            made(4, RUNNING, "bob"),
        ]
        for task in rows:
            await store.insert(task)

        def ids(tasks: list[Task]) -> list[str]:
            return [t.id for t in tasks]

        assert ids(await store.list(statuses=[QUEUED])) == ids([rows[3], rows[0]])
        assert ids(await store.list(statuses={QUEUED, RUNNING}, user_id="bob")) == ids(
            [rows[4], rows[3]]
        )
        assert ids(await store.list(user_id="ann")) == ids([rows[1], rows[0]])
        before = T0 + timedelta(seconds=2)
        assert ids(await store.list(updated_before=before)) == ids([rows[1], rows[0]])
        assert ids(await store.list(updated_since=before)) == ids(rows[:1:-1])
        assert ids(await store.list(limit=2)) == ids([rows[4], rows[3]])
        assert await store.list(statuses=[]) == []
        assert await store.list(user_id="nobody") == []

    async def test_list_finds_tasks_by_id_prefix(self, store: TaskStore) -> None:
        ids = [
            "3f2a0000-0000-4000-8000-000000000001",
            "3f2a0000-0000-4000-8000-000000000002",
            "3f2b0000-0000-4000-8000-000000000003",
            "a0000000-0000-4000-8000-000000000004",
        ]
        for n, task_id in enumerate(ids):
            moment = T0 + timedelta(seconds=n)
            await store.insert(new_task(id=task_id, created_at=moment, updated_at=moment))

        async def found(prefix: str) -> list[str]:
            return [t.id for t in await store.list(id_prefix=prefix)]

        assert await found("3f2a") == [ids[1], ids[0]]
        assert await found("3f2") == [ids[2], ids[1], ids[0]]
        assert await found("3f2a0000-0000-4000-8000-000000000002") == [ids[1]]
        assert await found("3f2a0000-") == [ids[1], ids[0]]  # a dash is matched literally
        assert await found("a") == [ids[3]]
        assert await found("b") == []
        assert [t.id for t in await store.list(id_prefix="3f2", limit=2)] == [ids[2], ids[1]]

    async def test_created_at_of_newest_counts_back_from_a_users_newest_task(
        self, store: TaskStore
    ) -> None:
        mine = [
            await store.insert(new_task(user_id="alice", created_at=T0 + timedelta(seconds=n)))
            for n in range(3)
        ]
        await store.insert(new_task(user_id="bob", created_at=T0 + timedelta(minutes=5)))

        found = [await store.created_at_of_newest("alice", n) for n in (1, 2, 3, 4)]

        assert found == [mine[2].created_at, mine[1].created_at, mine[0].created_at, None]
        assert await store.created_at_of_newest("carol", 1) is None
        with pytest.raises(ValueError, match="n must be 1 or more"):
            await store.created_at_of_newest("alice", 0)

    async def test_count_by_status_names_every_status(self, store: TaskStore) -> None:
        for status, user in [(QUEUED, "ann"), (QUEUED, "bob"), (RUNNING, "ann"), (FAILED, "ann")]:
            await store.insert(new_task(status=status, user_id=user))

        counts = await store.count_by_status()
        mine = await store.count_by_status(user_id="bob")

        assert counts == {
            QUEUED: 2,
            RUNNING: 1,
            TaskStatus.SUCCEEDED: 0,
            FAILED: 1,
            TaskStatus.CANCELLED: 0,
        }
        assert mine == dict.fromkeys(TaskStatus, 0) | {QUEUED: 1}

    async def test_counts_follow_every_transition_and_ignore_writes_that_miss(
        self, store: TaskStore
    ) -> None:
        # The counts are kept as the rows change, not counted from them: every kind of write.
        first = await store.insert(new_task(user_id="ann"))
        second = await store.insert(new_task(user_id="ann"))
        await store.update(first.id, Expect(frozenset({QUEUED})), {"status": RUNNING})
        await store.update(first.id, Expect(frozenset({RUNNING})), {"status": FAILED})
        await store.update(first.id, Expect(frozenset({QUEUED})), {"status": RUNNING})  # misses
        await store.update(second.id, Expect(frozenset({QUEUED})), {"progress": 5})  # no move

        expected = dict.fromkeys(TaskStatus, 0) | {QUEUED: 1, FAILED: 1}
        assert await store.count_by_status() == expected
        assert await store.count_by_status(user_id="ann") == expected
        assert await store.count_by_status(user_id="bob") == dict.fromkeys(TaskStatus, 0)

    # -- compare-and-set --------------------------------------------------------------------

    async def test_cas_applies_when_the_row_matches(self, store: TaskStore) -> None:
        task = await store.insert(new_task())
        started = datetime.now(UTC)

        updated = await store.update(
            task.id,
            Expect.of(QUEUED, attempt=1, polls=0),
            {"status": RUNNING, "upstream_task_id": "up-1", "started_at": started},
        )

        assert updated is not None
        assert (updated.status, updated.upstream_task_id) == (RUNNING, "up-1")
        assert updated.started_at == started
        assert updated.version == task.version + 1
        assert updated.updated_at > task.updated_at
        assert_utc(updated)
        assert await store.get(task.id) == updated

    async def test_cas_names_the_store_owned_columns_in_vain(self, store: TaskStore) -> None:
        task = await store.insert(new_task())

        owned = {"id": "x", "version": 99, "created_at": T0, "updated_at": T0}
        updated = await store.update(task.id, Expect.of(QUEUED), owned | {"progress": 3})

        assert updated is not None and (updated.version, updated.progress) == (2, 3)
        assert (updated.id, updated.created_at) == (task.id, task.created_at)
        assert updated.updated_at > task.updated_at
        assert set(owned) == STORE_SET_COLUMNS

    @pytest.mark.parametrize(
        "expect",
        [
            Expect.of(RUNNING, attempt=1, polls=0),
            Expect.of(QUEUED, attempt=2, polls=0),
            Expect.of(QUEUED, attempt=1, polls=1),
            Expect.of(FAILED, TaskStatus.CANCELLED),
        ],
        ids=["status", "attempt", "polls", "statuses"],
    )
    async def test_cas_changes_nothing_when_the_row_moved_on(
        self, store: TaskStore, expect: Expect
    ) -> None:
        task = await store.insert(new_task())
        event = TaskEvent(task_id=task.id, kind="transition", attempt=1, to_status=RUNNING)

        result = await store.update(task.id, expect, {"status": RUNNING}, event)

        assert result is None
        assert await store.get(task.id) == task
        assert await store.events(task.id) == []

    async def test_cas_of_an_unknown_task_is_none(self, store: TaskStore) -> None:
        missing = "00000000-0000-4000-8000-000000000000"
        assert await store.update(missing, Expect.of(QUEUED), {"progress": 1}) is None

    async def test_cas_compares_extra_columns_including_null(self, store: TaskStore) -> None:
        task = await store.insert(new_task())
        lease = datetime.now(UTC) + timedelta(seconds=30)
        claim = Expect(frozenset({QUEUED}), 1, None, {"step_lease_until": None})

        first = await store.update(task.id, claim, {"step_lease_until": lease})
        second = await store.update(task.id, claim, {"step_lease_until": lease})
        held = Expect(frozenset({QUEUED}), 1, None, {"step_lease_until": lease})
        third = await store.update(task.id, held, {"step_lease_until": None})

        assert first is not None and first.step_lease_until == lease
        assert second is None
        assert third is not None and third.step_lease_until is None and third.version == 3

    async def test_concurrent_cas_with_one_expectation_has_one_winner(
        self, store: TaskStore
    ) -> None:
        task = await store.insert(new_task())

        async def claim(n: int) -> Task | None:
            event = TaskEvent(
                task_id=task.id,
                kind="transition",
                attempt=1,
                from_status=QUEUED,
                to_status=RUNNING,
                actor=f"worker-{n}",
            )
            changes = {"status": RUNNING, "upstream_task_id": f"up-{n}"}
            return await store.update(task.id, Expect.of(QUEUED, attempt=1), changes, event)

        results = await asyncio.gather(*(claim(n) for n in range(20)))

        winners = [result for result in results if result is not None]
        assert len(winners) == 1
        (winner,) = winners
        assert winner.version == 2 and winner.upstream_task_id is not None
        assert await store.get(task.id) == winner
        events = await store.events(task.id)
        assert [e.actor for e in events] == [f"worker-{winner.upstream_task_id.split('-')[1]}"]

    async def test_a_step_claim_takes_a_free_or_expired_lease_only(self, store: TaskStore) -> None:
        now = datetime.now(UTC)
        free = await store.insert(new_task(status=RUNNING, polls=2))
        expired = await store.insert(
            new_task(status=RUNNING, polls=2, step_lease_until=now - timedelta(seconds=1))
        )
        live = await store.insert(
            new_task(status=RUNNING, polls=2, step_lease_until=now + timedelta(seconds=30))
        )
        due = Expect.of(RUNNING, attempt=1, polls=2)
        lease = now + timedelta(seconds=35)

        claimed = {t.id: await store.claim_step(t.id, due, lease, now) for t in (free, expired)}
        refused = await store.claim_step(live.id, due, lease, now)
        again = await store.claim_step(free.id, due, lease, now)  # its lease is live now

        for before in (free, expired):
            after = claimed[before.id]
            assert after.claimed and after.task is not None
            assert after.task.step_lease_until == lease
            assert after.task.version == before.version + 1
            assert await store.get(before.id) == after.task
        # A miss brings the row as it stands, so the worker can say why without reading it.
        assert refused == StepClaim(live, claimed=False)
        assert again == StepClaim(claimed[free.id].task, claimed=False)
        assert await store.get(live.id) == live

    async def test_a_step_claim_misses_a_row_that_moved_on(self, store: TaskStore) -> None:
        now = datetime.now(UTC)
        task = await store.insert(new_task(status=RUNNING, polls=2))
        lease = now + timedelta(seconds=35)

        misses = [
            await store.claim_step(task.id, expect, lease, now)
            for expect in (
                Expect.of(RUNNING, attempt=1, polls=1),  # a poll already made
                Expect.of(RUNNING, attempt=2, polls=2),  # another attempt's
                Expect.of(QUEUED, attempt=1),  # a submit of a task that runs
            )
        ]
        unknown = await store.claim_step(
            "00000000-0000-4000-8000-000000000000", Expect.of(QUEUED), lease, now
        )

        assert misses == [StepClaim(task, claimed=False)] * 3
        assert unknown == StepClaim(None, claimed=False)
        assert await store.get(task.id) == task

    async def test_an_unknown_column_is_refused(self, store: TaskStore) -> None:
        task = await store.insert(new_task())

        with pytest.raises(ValueError, match="no_such_column"):
            await store.update(task.id, Expect.of(QUEUED), {"no_such_column": 1})

        assert await store.get(task.id) == task

    # -- history ----------------------------------------------------------------------------

    async def test_events_are_kept_oldest_first(self, store: TaskStore) -> None:
        task = new_task()
        queued = TaskEvent(task_id=task.id, kind="transition", attempt=1, to_status=QUEUED)
        await store.insert(task, replace(queued, actor="cli"))
        poll = TaskEvent(
            task_id=task.id,
            kind="poll",
            attempt=1,
            at=T0,
            upstream_status="IN_PROGRESS",
            progress=40,
            http_status=200,
            latency_ms=182.5,
            detail="40%",
        )
        await store.add_event(poll)
        cancel = TaskEvent(
            task_id=task.id,
            kind="action",
            attempt=1,
            from_status=QUEUED,
            to_status=TaskStatus.CANCELLED,
            actor="tui",
        )
        assert await store.update(task.id, Expect.of(QUEUED), {"status": "cancelled"}, cancel)

        events = await store.events(task.id)

        assert [(e.kind, e.actor) for e in events] == [
            ("transition", "cli"),
            ("poll", None),
            ("action", "tui"),
        ]
        assert events[1] == poll
        assert events[2].to_status is TaskStatus.CANCELLED
        assert all(e.at.utcoffset() == timedelta(0) for e in events)
        assert await store.events("00000000-0000-4000-8000-000000000000") == []

    # -- images -----------------------------------------------------------------------------

    async def test_qstash_usage_adds_up_per_utc_day(self, store: TaskStore) -> None:
        today, tomorrow = date(2026, 12, 2), date(2026, 12, 3)
        assert await store.add_usage(today) == Usage(today, 0, 0)
        assert await store.add_usage(today, published=3) == Usage(today, 3, 0)
        # Hosts counting at once: every increment lands.
        await asyncio.gather(*(store.add_usage(today, 1, 2) for _ in range(5)))
        assert await store.add_usage(today) == Usage(today, 8, 10)
        assert await store.add_usage(tomorrow, delivered=1) == Usage(tomorrow, 0, 1)
        assert (await store.add_usage(today)).total == 18

    async def test_images_are_kept_apart_from_the_row_in_order(self, store: TaskStore) -> None:
        images = ("https://example.com/a.png", PNG)
        task = await store.insert(new_task(image_count=2, image_bytes=99), images=images)

        assert await store.images(task.id) == images
        listed = await store.list()
        assert [t.id for t in listed] == [task.id]
        assert PNG not in msgspec.json.encode(listed[0]).decode()
        assert await store.images(new_task().id) == ()

    async def test_a_change_for_a_task_with_large_images_is_small(self, store: TaskStore) -> None:
        big = "data:image/png;base64," + "A" * (1024 * 1024)
        service = TaskService(store, HandQueue())
        async with aclosing(store.changes()) as feed:
            assert (await asyncio.wait_for(anext(feed), TIMEOUT)).op == "SYNC"
            task = await service.submit(VideoRequest(prompt="a fox", images=(big,) * 4))
            change = await next_change(feed, of_task(task.id, 1))

        assert change.task is not None
        assert change.task.image_count == 4 and change.task.image_bytes == 4 * len(big)
        assert len(msgspec.json.encode(change.task)) < 4096
        assert await store.images(task.id) == (big,) * 4

    # -- pruning ----------------------------------------------------------------------------

    async def _aged(self, store: TaskStore, status: TaskStatus, *, when: datetime = T0) -> Task:
        """A task in `status` last changed at `when`, with one history event and one image."""
        task = new_task(status=status, updated_at=when, completed_at=when, image_count=1)
        event = TaskEvent(task_id=task.id, kind="transition", attempt=1, to_status=status)
        return await store.insert(task, event, images=(PNG,))

    async def test_prune_deletes_old_finished_tasks_with_history_and_images(
        self, store: TaskStore
    ) -> None:
        old = {status: await self._aged(store, status) for status in TaskStatus}
        recent = await self._aged(store, TaskStatus.SUCCEEDED, when=datetime.now(UTC))
        cutoff = datetime.now(UTC) - timedelta(days=30)
        picked = [TaskStatus.SUCCEEDED, FAILED]

        planned = await store.prune(cutoff, picked, dry_run=True)
        assert all([await store.get(task.id) for task in old.values()])
        deleted = await store.prune(cutoff, picked)

        expected = dict.fromkeys(TaskStatus, 0) | {TaskStatus.SUCCEEDED: 1, FAILED: 1}
        assert planned == deleted == expected
        for status in picked:
            assert await store.get(old[status].id) is None
            assert await store.events(old[status].id) == []
            assert await store.images(old[status].id) == ()
        kept = [old[QUEUED], old[RUNNING], old[TaskStatus.CANCELLED], recent]
        for task in kept:
            assert await store.get(task.id) == task
            assert len(await store.events(task.id)) == 1
            assert await store.images(task.id) == (PNG,)
        assert await store.prune(cutoff, picked) == dict.fromkeys(TaskStatus, 0)

    async def test_prune_goes_on_past_one_batch(
        self, store: TaskStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(store_port, "PRUNE_BATCH", 2)
        for status in [FAILED] * 3 + [TaskStatus.CANCELLED] * 2:
            await self._aged(store, status)
        finished = [TaskStatus.SUCCEEDED, FAILED, TaskStatus.CANCELLED]

        deleted = await store.prune(datetime.now(UTC), finished)

        assert deleted == dict.fromkeys(TaskStatus, 0) | {FAILED: 3, TaskStatus.CANCELLED: 2}
        assert await store.list() == []

    @pytest.mark.parametrize("unfinished", [QUEUED, RUNNING])
    async def test_prune_refuses_unfinished_statuses_and_changes_nothing(
        self, store: TaskStore, unfinished: TaskStatus
    ) -> None:
        task = await self._aged(store, unfinished)
        done = await self._aged(store, FAILED)

        with pytest.raises(ValueError, match=f"not {unfinished}"):
            await store.prune(datetime.now(UTC), [FAILED, unfinished])

        assert [t.id for t in await store.list()] == [done.id, task.id]

    # -- the change feed --------------------------------------------------------------------

    async def test_changes_start_with_sync_then_carry_each_write(self, store: TaskStore) -> None:
        async with aclosing(store.changes()) as feed:
            first = await asyncio.wait_for(anext(feed), TIMEOUT)
            assert first.op == "SYNC" and first.task is None

            task = await store.insert(new_task())
            inserted = await next_change(feed, of_task(task.id, 1))
            assert inserted.op == "INSERT" and inserted.task == task

            versions = []
            for progress in (10, 20):
                updated = await store.update(task.id, Expect.of(QUEUED), {"progress": progress})
                assert updated is not None
                change = await next_change(feed, of_task(task.id, updated.version))
                assert change.op == "UPDATE" and change.task == updated
                versions.append(change.task.version)

        assert versions == [2, 3]

    @pytest.mark.parametrize("use_case", ["submit", "retry"])
    async def test_a_submit_or_a_retry_is_one_change_on_the_feed(
        self, store: TaskStore, use_case: str
    ) -> None:
        queue = HandQueue()
        service = TaskService(store, queue)
        request = VideoRequest(prompt="a fox in the snow")
        before = 0  # the version a change must exceed to be the submit's or the retry's own
        if use_case == "retry":
            failed = await store.insert(new_task(status=FAILED, error_message="refused"))
            before = failed.version
        async with aclosing(store.changes()) as feed:
            assert (await asyncio.wait_for(anext(feed), TIMEOUT)).op == "SYNC"

            if use_case == "submit":
                task = await service.submit(request)
            else:
                task = await service.retry(failed.id)
            # A later write's change comes after any second change of the task's write.
            marker = await store.insert(new_task("marker"))
            seen: list[TaskChange] = []
            marker_seen = of_task(marker.id, 1)

            def record(change: TaskChange) -> bool:
                seen.append(change)
                return marker_seen(change)

            await next_change(feed, record)

        # The feed may still bring the failed row's own insert, made before subscribing.
        mine = [
            change.task
            for change in seen
            if change.task and change.task.id == task.id and change.task.version > before
        ]
        assert mine == [task] and await store.get(task.id) == task
        assert [p.message.dedup_id for p in queue.published] == [task.message_id]
