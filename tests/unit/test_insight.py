"""Overdue and stalled tasks, failures grouped by reason, and results per kind of job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from msgspec.structs import replace

from core.insight import collect_stats, reason_group
from core.lateness import STALLED_POLLS, lateness, overdue, stalled
from core.models import Task, TaskEvent, TaskStatus, VideoRequest
from core.store.sqlite import SqliteStore
from core.upstream import expected_timing

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TEN_SECONDS = expected_timing(VideoRequest(prompt="-"))  # sora-2, 10 s: 1-3 minutes


def task(**fields: object) -> Task:
    return replace(Task.new(VideoRequest(prompt="a fox")), **fields)


def running_for(seconds: float, **fields: object) -> Task:
    return task(status=TaskStatus.RUNNING, started_at=NOW - timedelta(seconds=seconds), **fields)


def test_the_same_failure_with_other_ids_and_numbers_is_one_group() -> None:
    first = "task 3f2a9c1e-0000-4000-8000-000000000001 timed out after 300 s (HTTP 504)"
    second = "task 77f5a3bb-1111-4000-8000-00000000000f timed out after 12.5 s (HTTP 502)"
    assert reason_group(first) == reason_group(second) == "task # timed out after # s (HTTP #)"
    assert reason_group("upstream job 0a1b2c3d4e5f6a7b8c9d failed") == "upstream job # failed"


def test_reasons_in_chinese_and_without_numbers_stay_as_they_are() -> None:
    assert reason_group("视频内容审核未通过") == "视频内容审核未通过"
    assert reason_group("Content policy violation") == "Content policy violation"
    # Words that only look like hex (no digit) are words.
    assert reason_group("a deadbeef facade") == "a deadbeef facade"


def test_a_reason_is_one_line_of_inert_text() -> None:
    assert reason_group("bad\x1b]0;PWNED\x07 \n  news") == "bad ]#;PWNED news"
    assert reason_group(None) == reason_group("   ") == "(no reason given)"


def test_a_running_task_is_overdue_only_past_the_end_of_the_published_range() -> None:
    assert TEN_SECONDS.high == 180.0
    assert not overdue(running_for(179), NOW)
    assert overdue(running_for(181), NOW)
    assert not overdue(task(status=TaskStatus.QUEUED), NOW)
    assert not overdue(task(status=TaskStatus.SUCCEEDED, started_at=NOW - timedelta(hours=1)), NOW)


def test_overdue_follows_the_upstream_clock() -> None:
    # With a clock 10 times faster, 19 s of real time is 190 s of the job's.
    assert overdue(running_for(19), NOW, speedup=10)
    assert not overdue(running_for(17), NOW, speedup=10)


def test_hd_and_longer_videos_are_given_their_own_range() -> None:
    hd = running_for(600, model="sora-2-pro", hd=True)
    assert not overdue(hd, NOW)
    assert overdue(running_for(600), NOW)


def test_a_task_stalls_after_enough_polls_without_new_progress() -> None:
    assert stalled(running_for(60, polls_without_progress=STALLED_POLLS))
    assert not stalled(running_for(60, polls_without_progress=STALLED_POLLS - 1))
    assert not stalled(task(status=TaskStatus.SUCCEEDED, polls_without_progress=STALLED_POLLS))


def test_lateness_gives_the_range_and_the_time_upstream() -> None:
    late = lateness(running_for(200), NOW)
    assert (late.overdue, late.stalled) == (True, False)
    assert (late.expected_low, late.expected_high, late.elapsed) == (60.0, 180.0, 200.0)
    assert lateness(task(), NOW).elapsed is None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "videoq.db")
    await store.open()
    yield store
    await store.close()


def ended(status: TaskStatus, minutes_ago: float, took: float = 100.0, **fields: object) -> Task:
    done = NOW - timedelta(minutes=minutes_ago)
    return task(
        status=status,
        queued_at=done - timedelta(seconds=took),
        started_at=done - timedelta(seconds=took - 5),
        completed_at=done,
        updated_at=done,
        **fields,
    )


def failure(of: Task, attempt: int, reason: str, minutes_ago: float) -> TaskEvent:
    return TaskEvent(
        task_id=of.id,
        kind="transition",
        attempt=attempt,
        at=NOW - timedelta(minutes=minutes_ago),
        from_status=TaskStatus.RUNNING,
        to_status=TaskStatus.FAILED,
        detail=reason,
    )


async def test_stats_group_failures_and_count_the_ones_a_retry_recovered(
    store: SqliteStore,
) -> None:
    timed_out = [
        ended(TaskStatus.FAILED, age, error_message=f"timed out after {n} s")
        for n, age in ((300, 30), (301, 25))
    ]
    moderated = ended(TaskStatus.FAILED, 10, error_message="视频内容审核未通过")
    recovered = ended(TaskStatus.SUCCEEDED, 5, attempt=2, polls=4)
    too_old = ended(TaskStatus.FAILED, 60 * 30, error_message="timed out after 9 s")
    for row in [*timed_out, moderated, recovered, too_old]:
        await store.insert(row)
    await store.add_event(failure(recovered, 1, "timed out after 299 s", 40))

    stats = await collect_stats(store, NOW - timedelta(hours=24))

    by_reason = {group.reason: group for group in stats.failures}
    assert list(by_reason) == ["timed out after # s", "视频内容审核未通过"]
    group = by_reason["timed out after # s"]
    assert (group.count, group.recovered) == (3, 1)
    assert sorted(group.failed_now) == sorted(t.id for t in timed_out)
    # The newest report of it is the example.
    assert (group.example_task, group.example) == (timed_out[1].id, "timed out after 301 s")
    assert by_reason["视频内容审核未通过"].failed_now == [moderated.id]


async def test_stats_per_model_count_the_ended_tasks_of_the_window(store: SqliteStore) -> None:
    rows = [
        ended(TaskStatus.SUCCEEDED, 1, took=60, polls=2),
        ended(TaskStatus.SUCCEEDED, 2, took=120, polls=4),
        ended(TaskStatus.FAILED, 3, took=30, polls=0, error_message="no"),
        ended(TaskStatus.CANCELLED, 4, took=10),
        ended(TaskStatus.SUCCEEDED, 5, took=200, model="sora-2-pro", duration=25, polls=9),
    ]
    for row in rows:
        await store.insert(row)

    stats = await collect_stats(store, NOW - timedelta(hours=1))

    sora, pro = stats.models
    assert (sora.model, sora.duration, sora.finished, sora.succeeded) == ("sora-2", 10, 3, 2)
    assert sora.success_rate == pytest.approx(2 / 3)
    assert (sora.p50_seconds, sora.p95_seconds) == (60.0, 120.0)
    assert sora.polls_per_task == pytest.approx(2.0)
    assert sora.messages_per_task == pytest.approx(3.0)
    assert (pro.model, pro.duration, pro.finished, pro.p50_seconds) == ("sora-2-pro", 25, 1, 200.0)
    assert not stats.cut
