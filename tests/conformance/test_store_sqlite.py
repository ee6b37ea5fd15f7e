"""The TaskStore conformance suite against SqliteStore, plus what only a file-backed store does."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from core.errors import StoreError
from core.models import TaskStatus
from core.store import Expect, FeedState, sqlite_db
from core.store import sqlite as sqlite_store
from core.store.sqlite import SqliteStore
from tests.conformance.store_contract import StoreContract, new_task
from tests.waiting import TIMEOUT


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An opened SqliteStore on a fresh file."""
    store = SqliteStore(tmp_path / "videoq.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


class TestSqliteStore(StoreContract):
    """Every promise of the TaskStore port, kept by the SQLite adapter."""


async def test_rows_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "videoq.db"
    first = SqliteStore(path)
    await first.open()
    task = await first.insert(new_task())
    await first.close()

    again = SqliteStore(path)
    await again.open()  # the schema is created idempotently
    try:
        assert await again.get(task.id) == task
    finally:
        await again.close()


async def test_the_file_is_in_wal_mode_with_its_three_tables(store: SqliteStore) -> None:
    with sqlite3.connect(store.path) as db:
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()

    assert mode == "wal"
    assert {"video_tasks", "task_events", "change_log"} <= names
    assert store.describe() == f"sqlite: {store.path}"


async def test_stored_values_are_plain_text_and_numbers(store: SqliteStore) -> None:
    task = await store.insert(new_task(image_count=1, hd=False), images=["https://x.test/a.png"])

    with sqlite3.connect(store.path) as db:
        row = db.execute(
            "SELECT created_at, image_count, hd, status FROM video_tasks WHERE id = ?", (task.id,)
        ).fetchone()
        stored = db.execute("SELECT position, data FROM task_images").fetchall()
    db.close()

    created_at, image_count, hd, status = row
    assert created_at == task.created_at.isoformat(timespec="microseconds")
    assert created_at.endswith("+00:00")
    assert (image_count, hd, status) == (1, 0, "queued")
    assert stored == [(0, "https://x.test/a.png")]


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 3, 9, 5, 1, 250, tzinfo=UTC),
        datetime(2026, 12, 3, 9, 5, 1, 0, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2026, 12, 3, 9, 5, 1, 0),  # naive means UTC
        datetime(2026, 12, 3, 10, 5, 1, 0, tzinfo=timezone(timedelta(hours=1))),
        "2026-12-03T09:05:01+00:00",
    ],
)
def test_times_are_stored_as_fixed_width_utc_text(moment: datetime | str) -> None:
    text = sqlite_db.encode_time(moment)

    assert len(text) == len("2026-12-03T09:05:01.000000+00:00")
    assert text.startswith("2026-12-03T09:05:01.000") and text.endswith("+00:00")


def test_a_utc_time_is_stored_as_its_isoformat_to_the_microsecond() -> None:
    start = datetime(2026, 12, 3, 23, 59, 59, 999_999, tzinfo=UTC)
    steps = (1, 7, 999, 86_400_000_001, 31_622_400_000_000)  # up to a leap year on
    moments = [start + timedelta(microseconds=n * k) for n in steps for k in range(1, 40)]
    moments += [datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC), datetime.max.replace(tzinfo=UTC)]

    expected = [m.isoformat(timespec="microseconds") for m in moments]
    assert [sqlite_db.encode_time(m) for m in moments] == expected


def test_stored_time_text_sorts_in_time_order() -> None:
    start = datetime(2026, 12, 3, 9, 5, 1, tzinfo=UTC)
    moments = [start + timedelta(microseconds=n) for n in (999_999, 0, 1, 10, 1_000_000)]

    texts = [sqlite_db.encode_time(moment) for moment in moments]

    assert sorted(texts) == [sqlite_db.encode_time(moment) for moment in sorted(moments)]


async def test_the_feed_is_live_while_open(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "videoq.db")
    assert store.feed.state is FeedState.OFFLINE
    await store.open()
    assert store.feed.state is FeedState.LIVE
    await store.close()
    assert store.feed.state is FeedState.OFFLINE


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "videoq.db")

    with pytest.raises(StoreError, match="not open"):
        await store.update("x", Expect.of(TaskStatus.QUEUED), {"progress": 1})


async def test_an_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "missing-dir" / "videoq.db")

    with pytest.raises(StoreError, match="missing-dir"):
        await store.open()


FIRST_RELEASE = Path(__file__).parent.parent / "data" / "sqlite_first_release.sql"


async def test_a_file_with_images_in_the_rows_moves_them_out_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    images = ["https://x.test/a.png", "data:image/png;base64,QUJD"]
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE.read_text())
        db.execute("UPDATE video_tasks SET images = ? WHERE id LIKE '1b7a%'", (json.dumps(images),))
    db.close()
    own = "1b7a2c1e-0000-4000-8000-000000000001"

    store = SqliteStore(path)
    await store.open()
    try:
        task, stored = await store.get(own), await store.images(own)
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(video_tasks)")}
    db.close()

    assert stored == tuple(images) and "images" not in columns
    assert task is not None and (task.image_count, task.image_bytes) == (2, 46)


async def test_a_file_of_the_first_release_gains_own_key_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE.read_text())
    db.close()
    own, server = "1b7a2c1e-0000-4000-8000-000000000001", "2c8b3d2f-0000-4000-8000-000000000002"

    store = SqliteStore(path)
    await store.open()
    try:
        own_task, server_task = await store.get(own), await store.get(server)
        retried = await store.update(
            server, Expect.of(TaskStatus.FAILED), {"status": TaskStatus.QUEUED}
        )
    finally:
        await store.close()

    # The note on an old own-key task's first event says it used the user's key.
    assert own_task is not None and own_task.own_key is True
    assert server_task is not None and server_task.own_key is False
    assert retried is not None and retried.version == 3
    again = SqliteStore(path)
    await again.open()  # the column is there now: nothing to add, nothing refused
    try:
        assert (await again.get(own)) == own_task
    finally:
        await again.close()


async def test_a_file_missing_a_column_that_cannot_be_added_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.db"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE.read_text())
        db.execute("ALTER TABLE video_tasks DROP COLUMN video_url")
    db.close()

    with pytest.raises(StoreError, match="no column video_url"):
        await SqliteStore(path).open()


async def test_processes_opening_an_old_file_at_once_all_get_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE.read_text())
    db.close()
    stores = [SqliteStore(path) for _ in range(4)]

    await asyncio.gather(*(store.open() for store in stores))
    try:
        rows = await asyncio.gather(*(store.list() for store in stores))
    finally:
        await asyncio.gather(*(store.close() for store in stores))

    assert all([task.own_key for task in found] == [False, True] for found in rows)


async def test_a_file_of_the_first_release_counts_its_tasks_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE.read_text())
        stored = dict(db.execute("SELECT status, count(*) FROM video_tasks GROUP BY status"))
    db.close()

    store = SqliteStore(path)
    await store.open()
    try:
        counts = await store.count_by_status()
    finally:
        await store.close()

    assert stored and counts == dict.fromkeys(TaskStatus, 0) | {
        TaskStatus(status): count for status, count in stored.items()
    }


class _Clock:
    """Stands in for the `time` module of the store's two sides: time passes when told."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


async def test_the_change_log_stays_bounded_under_sustained_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    monkeypatch.setattr(sqlite_db, "time", clock)
    monkeypatch.setattr(sqlite_store, "time", clock)  # which decides when to prune
    store = SqliteStore(tmp_path / "videoq.db")
    await store.open()
    task = await store.insert(new_task())
    per_second, seconds = 2, 3 * int(sqlite_db.CHANGE_LOG_RETENTION)
    bound = per_second * (sqlite_db.CHANGE_LOG_RETENTION + sqlite_db.PRUNE_EVERY) + per_second
    largest = 0
    try:
        for second in range(seconds):
            for n in range(per_second):
                progress = (second * per_second + n) % 100
                assert await store.update(
                    task.id, Expect.of(TaskStatus.QUEUED), {"progress": progress}
                )
            clock.now += 1.0
            largest = max(largest, _rows(tmp_path / "videoq.db", "change_log"))
    finally:
        await store.close()
    # Three retentions' worth of writes, yet the log never held much more than one.
    assert per_second * sqlite_db.CHANGE_LOG_RETENTION <= largest <= bound


def _rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_a_prune_tells_this_stores_subscribers_to_load_a_fresh_snapshot(
    store: SqliteStore,
) -> None:
    await store.insert(new_task(status=TaskStatus.FAILED))
    async with aclosing(store.changes()) as feed:
        assert (await asyncio.wait_for(anext(feed), TIMEOUT)).op == "SYNC"
        deleted = await store.prune(datetime.now(UTC), [TaskStatus.FAILED])
        change = await asyncio.wait_for(anext(feed), TIMEOUT)
    assert deleted[TaskStatus.FAILED] == 1 and change.op == "SYNC"


async def test_a_steps_claim_is_not_told_to_the_feed_and_its_outcome_is(
    store: SqliteStore,
) -> None:
    """The claim moves only the step's lease: the change log and the feed hear of the step's
    outcome, which carries the claim's version on."""
    task = await store.insert(new_task())
    now = datetime.now(UTC)
    logged = _rows(store.path, "change_log")
    async with aclosing(store.changes()) as feed:
        assert (await asyncio.wait_for(anext(feed), TIMEOUT)).op == "SYNC"
        claim = await store.claim_step(
            task.id, Expect.of(TaskStatus.QUEUED), now + timedelta(seconds=60), now
        )
        assert claim.claimed and claim.task is not None and claim.task.version == 2
        assert _rows(store.path, "change_log") == logged
        ran = await store.update(task.id, Expect.of(TaskStatus.QUEUED), {"polls": 1})
        change = await asyncio.wait_for(anext(feed), TIMEOUT)
    assert ran is not None and change.task == ran and ran.version == 3
    assert ran.step_lease_until == claim.task.step_lease_until
    assert _rows(store.path, "change_log") == logged + 1


async def test_a_sole_claim_of_a_row_this_store_wrote_writes_nothing(
    store: SqliteStore,
) -> None:
    """A sole step (a local poll) runs on the row as written last; others write their lease."""
    task = await store.insert(new_task(status=TaskStatus.RUNNING))
    now = datetime.now(UTC)
    lease, due = now + timedelta(seconds=60), Expect.of(TaskStatus.RUNNING, polls=0)

    sole = await store.claim_step(task.id, due, lease, now, sole=True)
    assert sole == type(sole)(task, claimed=True)
    assert await store.get(task.id) == task  # no lease, no new version in the file

    written = await store.claim_step(task.id, due, lease, now)
    assert written.claimed and written.task is not None
    assert (written.task.version, written.task.step_lease_until) == (task.version + 1, lease)
    # A live lease is the file's to judge: the sole claim misses as a written one would.
    missed = await store.claim_step(task.id, due, lease, now, sole=True)
    assert not missed.claimed and missed.task == written.task
    assert not (await store.claim_step(task.id, Expect.of(TaskStatus.QUEUED), lease, now)).claimed


async def test_a_sole_step_on_a_row_another_process_changed_claims_it_from_the_file(
    store: SqliteStore,
) -> None:
    """A row changed since this store wrote it, even in a column the compare does not look
    at, is claimed as any other: the step runs on the row as it is now."""
    task = await store.insert(new_task(status=TaskStatus.RUNNING))
    other = SqliteStore(store.path)
    await other.open()
    try:
        moved = await other.update(task.id, Expect.of(TaskStatus.RUNNING), {"progress": 40})
        assert moved is not None
        now = datetime.now(UTC)
        lease, due = now + timedelta(seconds=60), Expect.of(TaskStatus.RUNNING, polls=0)

        claim = await store.claim_step(task.id, due, lease, now, sole=True)
        assert claim.claimed and claim.task is not None
        assert (claim.task.progress, claim.task.version) == (40, moved.version + 1)
        assert claim.task.step_lease_until == lease

        cancelled = await other.update(
            task.id, Expect.of(TaskStatus.RUNNING), {"status": TaskStatus.CANCELLED}
        )
    finally:
        await other.close()
    later = now + timedelta(seconds=120)  # past the lease just taken
    missed = await store.claim_step(task.id, due, later, later, sole=True)
    assert not missed.claimed and missed.task == cancelled


# -- rows the store knows: an update reads nothing back when it can tell the row from its own ---


async def test_what_an_update_answers_without_reading_back_is_the_row_as_stored(
    store: SqliteStore,
) -> None:
    task = await store.insert(new_task(image_count=1), images=["https://x.test/a.png"])
    later = datetime(2026, 12, 2, 10, 30, 0, 123456, tzinfo=UTC)
    steps: list[tuple[Expect, dict[str, Any]]] = [
        (Expect.of(TaskStatus.QUEUED), {"step_lease_until": later}),
        (
            Expect.of(TaskStatus.QUEUED),
            {"status": TaskStatus.RUNNING, "upstream_task_id": "up-1", "step_lease_until": None},
        ),
        (Expect.of(TaskStatus.RUNNING), {"polls": 1, "progress": 33, "last_polled_at": later}),
        (Expect.of(TaskStatus.RUNNING), {"status": TaskStatus.SUCCEEDED, "video_url": "v.mp4"}),
    ]
    answers = [task]
    for expect, changes in steps:
        updated = await store.update(task.id, expect, changes)
        assert updated is not None
        answers.append(updated)
        assert updated == await store.get(task.id)
    assert [answer.version for answer in answers] == [1, 2, 3, 4, 5]


async def test_a_row_another_writer_changed_is_read_back_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "videoq.db"
    mine, other = SqliteStore(path), SqliteStore(path)
    await mine.open()
    await other.open()
    try:
        task = await mine.insert(new_task())
        # Another process sets a column this store's copy of the row does not have.
        assert await other.update(task.id, Expect.of(TaskStatus.QUEUED), {"progress": 40})
        updated = await mine.update(task.id, Expect.of(TaskStatus.QUEUED), {"polls": 2})
        assert updated is not None
        assert (updated.progress, updated.polls, updated.version) == (40, 2, 3)
        assert updated == await mine.get(task.id)
    finally:
        await other.close()
        await mine.close()


@pytest.mark.parametrize(
    "changes",
    [
        {"next_poll_at": "2026-12-02T10:30:00+00:00"},  # a string the store parses
        {"next_poll_at": datetime(2026, 12, 2, 10, 30)},  # naive: taken as UTC
        {"hd": 1},  # stored as 0/1, read back as a bool
    ],
    ids=["iso-text", "naive-time", "int-for-bool"],
)
async def test_values_the_encoding_normalises_are_read_back(
    store: SqliteStore, changes: dict[str, object]
) -> None:
    task = await store.insert(new_task())
    updated = await store.update(task.id, Expect.of(TaskStatus.QUEUED), changes)
    assert updated is not None
    assert updated == await store.get(task.id)
    name = next(iter(changes))
    assert type(getattr(updated, name)) is type(getattr(await store.get(task.id), name))


async def test_a_task_inserted_with_values_to_normalise_answers_them_normalised(
    store: SqliteStore,
) -> None:
    naive = datetime(2026, 12, 2, 9, 0)
    inserted = await store.insert(new_task(created_at=naive, queued_at=naive))
    assert inserted == await store.get(inserted.id)
    assert inserted.created_at.tzinfo is UTC


async def test_the_known_rows_keep_only_unfinished_tasks_and_a_bounded_number() -> None:
    known = sqlite_store.KnownRows(limit=2)
    first, second, third = new_task(), new_task(), new_task()
    for task in (first, second, third):
        known.put(task)
    assert known.get(first.id) is None  # the oldest went past the limit
    assert known.get(third.id) is third
    known.put(replace(second, status=TaskStatus.CANCELLED))
    assert known.get(second.id) is None
