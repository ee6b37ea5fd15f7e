"""The dashboard's bookkeeping without a terminal: versions, snapshots, views, wording, layout."""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from msgspec.structs import replace
from rich.cells import cell_len

from core.insight import RecentCalls
from core.models import Task, TaskChange, TaskStatus, VideoRequest, cancel_refusal, retry_refusal
from core.store import FeedStatus
from tui.render import LOG_FORMAT, ellipsize
from tui.state.task_book import TaskBook, View, can_cancel, can_retry
from tui.state.task_cells import (
    COLUMNS,
    PADDING,
    column_widths,
    fitting_columns,
    status_label,
)
from tui.state.wording import confirm_text, outcome, refusal
from tui.widgets.log_panel import PanelLogHandler
from tui.widgets.status_header import HeaderInfo, header_markup, health_markup, plain, sparkline

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def make(n: int, **fields: object) -> Task:
    task = Task.new(VideoRequest(prompt=f"prompt {n}"))
    values = {"created_at": T0 + timedelta(seconds=n), "updated_at": T0 + timedelta(seconds=n)}
    return replace(task, **values | fields)


def header_info(**fields: Any) -> HeaderInfo:
    """A header's facts with plain defaults, `fields` overriding them."""
    values: dict[str, Any] = {
        "backend": "sqlite: v.db",
        "upstream": "simulator",
        "worker": "running",
        "feed": FeedStatus(),
        "counts": {},
        "finished_per_minute": 0,
        "view": "all",
        "sort": "newest first",
        "search": "",
        "selected": 0,
        "shown": 0,
        "now": T0,
    }
    return HeaderInfo(**(values | fields))


def bump(task: Task, **fields: object) -> Task:
    return replace(task, **{"version": task.version + 1, **fields})


def test_an_older_version_never_replaces_a_newer_one() -> None:
    book = TaskBook()
    task = make(1)
    newer = bump(task, status=TaskStatus.RUNNING)
    assert book.apply(TaskChange("INSERT", newer)) == task.id
    assert book.apply(TaskChange("UPDATE", task)) is None
    assert book.apply(TaskChange("UPDATE", newer)) is None
    assert book.tasks[task.id].status is TaskStatus.RUNNING
    assert book.counts[TaskStatus.RUNNING] == 1 and book.counts[TaskStatus.QUEUED] == 0


def test_a_delete_wins_over_its_own_version_and_blocks_late_updates() -> None:
    book = TaskBook()
    task = make(1)
    book.apply(TaskChange("INSERT", task))
    assert book.apply(TaskChange("DELETE", task)) == task.id
    assert book.apply(TaskChange("UPDATE", task)) is None
    assert task.id not in book.tasks and sum(book.counts.values()) == 0


def test_a_snapshot_brings_missed_changes_and_drops_rows_deleted_meanwhile() -> None:
    book = TaskBook()
    kept, gone, stale = make(1), make(2), make(3)
    for task in (kept, gone, stale):
        book.apply(TaskChange("INSERT", task))
    fresh = bump(stale, status=TaskStatus.CANCELLED)
    added = make(4)
    changed = book.load_snapshot([kept, fresh, added], complete=True)
    assert changed == {gone.id, stale.id, added.id}
    assert book.tasks[stale.id].status is TaskStatus.CANCELLED
    assert set(book.tasks) == {kept.id, stale.id, added.id}


def test_an_incomplete_snapshot_keeps_rows_older_than_its_window() -> None:
    book = TaskBook()
    old, recent = make(1), make(5)
    book.apply(TaskChange("INSERT", old))
    book.apply(TaskChange("INSERT", recent))
    book.load_snapshot([make(3)], complete=False)
    assert old.id in book.tasks and recent.id not in book.tasks


def test_views_and_search_choose_rows_and_sorts_order_them() -> None:
    book = TaskBook()
    queued = make(1)
    running = make(2, status=TaskStatus.RUNNING, progress=50)
    failed = make(3, status=TaskStatus.FAILED, error_message="content policy")
    done = make(4, status=TaskStatus.SUCCEEDED, progress=100)
    for task in (queued, running, failed, done):
        book.apply(TaskChange("INSERT", task))
    assert [t.id for t in book.rows()] == [done.id, failed.id, running.id, queued.id]
    book.view = View.ACTIVE
    assert {t.id for t in book.rows()} == {queued.id, running.id}
    book.view = View.FINISHED
    assert {t.id for t in book.rows()} == {failed.id, done.id}
    book.view, book.search = View.ALL, "POLICY"
    assert [t.id for t in book.rows()] == [failed.id]
    book.search = running.id[:6]
    assert [t.id for t in book.rows()] == [running.id]
    book.search = ""
    assert book.cycle_sort().name == "last update"
    assert book.cycle_sort().name == "status"
    assert [t.status for t in book.rows()][:2] == [TaskStatus.RUNNING, TaskStatus.QUEUED]


def test_actions_target_the_selection_before_the_cursor() -> None:
    book = TaskBook()
    first, second = make(1), make(2)
    for task in (first, second):
        book.apply(TaskChange("INSERT", task))
    assert book.targets(first.id) == [first]
    book.selected = {second.id}
    assert book.targets(first.id) == [second]
    book.view = View.FAILED
    book.prune_selection()
    assert book.selected == set()


def test_finished_per_minute_counts_recent_terminal_rows() -> None:
    book = TaskBook()
    now = T0 + timedelta(minutes=10)
    recent = make(1, status=TaskStatus.SUCCEEDED, completed_at=now - timedelta(seconds=20))
    old = make(2, status=TaskStatus.FAILED, completed_at=now - timedelta(minutes=5))
    for task in (recent, old, make(3)):
        book.apply(TaskChange("INSERT", task))
    assert book.finished_within(now) == 1


def test_the_dashboard_refuses_exactly_as_the_state_machine_does() -> None:
    for status in TaskStatus:
        task = make(1, status=status)
        assert can_cancel(task) is (cancel_refusal(task) is None)
        assert can_retry(task) is (retry_refusal(task) is None)
        if not can_cancel(task):
            assert refusal("cancel", [task]) == cancel_refusal(task)
        if not can_retry(task):
            assert refusal("retry", [task]) == retry_refusal(task)


def test_wording_matches_what_the_operator_needs_to_know() -> None:
    task = make(1, status=TaskStatus.SUCCEEDED)
    assert refusal("retry", [task]) == (
        f"task {task.id[:8]} is succeeded; only failed or cancelled tasks can be retried"
    )
    assert "already succeeded" in refusal("cancel", [task])
    many = [make(n, status=TaskStatus.FAILED) for n in range(3)]
    question = confirm_text("Retry", many, failed=True)
    assert question.question == "Retry 3 failed tasks?"
    assert "new attempt" in question.details
    notes = outcome(many[:2], ["no", "nope"], lambda t: "one", "{count} tasks queued again")
    assert notes == [("2 tasks queued again", "information"), ("no (and 1 more)", "warning")]


def test_columns_fill_the_width_and_text_is_cut_by_cells() -> None:
    widths = column_widths(158)
    assert sum(widths) + 2 * PADDING * len(COLUMNS) == 158
    narrow = column_widths(40)
    assert all(w >= c.width for w, c in zip(narrow, COLUMNS, strict=True))
    wide = dict(zip((c.key for c in COLUMNS), column_widths(218), strict=True))
    assert wide["error"] > 40 and wide["prompt"] > 60  # a wide terminal gives text the room
    assert ellipsize("一个在雨中漂流的纸船", 7) == "一个在…"
    assert cell_len(ellipsize("一个在雨中漂流的纸船", 7)) <= 7
    assert ellipsize("  two\nlines  ", 20) == "two lines"


def test_header_shows_backend_feed_counts_and_escapes_text() -> None:
    from core.store import FeedState, FeedStatus

    feed = FeedStatus(FeedState.RECONNECTING, T0, "socket closed [1006]")
    info = HeaderInfo(
        backend="sqlite: /tmp/[x].db",
        upstream="simulator",
        worker="running",
        feed=feed,
        counts={TaskStatus.FAILED: 2},
        finished_per_minute=3,
        view="all",
        sort="newest first",
        search="cat",
        selected=1,
        shown=10,
        now=T0 + timedelta(seconds=5),
    )
    markup = header_markup(info)
    assert r"sqlite: /tmp/\[x].db" in markup
    assert "reconnecting" in markup and "last event 5s ago" in markup
    assert "[b]2[/]" in markup and '"cat"' in markup and "1[/] selected" in markup


def test_header_shows_qstash_usage_the_dead_count_and_an_outage_only_when_known() -> None:
    from dataclasses import replace

    from core.store import Usage

    info = header_info(backend="supabase: x", upstream="t8star", worker="none")
    assert "QStash" not in header_markup(info) and "dead" not in header_markup(info)
    usage = Usage(T0.date(), published=200, delivered=112)
    with_usage = replace(info, qstash_usage=usage, qstash_budget=1000, dead_letters=2)
    assert "QStash 312 / 1,000 today" in header_markup(with_usage)
    assert "2 dead (d)" in header_markup(with_usage)
    assert "QStash 312 today" in header_markup(replace(with_usage, qstash_budget=None))
    down = replace(with_usage, degraded="degraded: QStash unreachable since 2026-12-02 00:40 UTC")
    assert "degraded: QStash unreachable since 2026-12-02 00:40 UTC" in header_markup(down)


def test_the_worker_log_panel_writes_lines_as_the_console_does() -> None:
    record = logging.LogRecord(
        "core.worker", logging.WARNING, __file__, 1, "task %s: late", ("a",), None
    )
    console = logging.Formatter(LOG_FORMAT, "%H:%M:%S").format(record)
    clock = time.strftime("%H:%M:%S", time.localtime(record.created))
    assert (
        PanelLogHandler().format(record) == console == f"{clock} WARNING core.worker: task a: late"
    )


def test_narrow_terminals_keep_id_status_progress_prompt_and_error() -> None:
    keys = [c.key for c in fitting_columns(78)]  # 80 columns less the scrollbar gutter
    assert keys == ["mark", "id", "status", "progress", "prompt", "error"]
    assert [c.key for c in fitting_columns(158)] == [c.key for c in COLUMNS]
    assert "age" in [c.key for c in fitting_columns(100)]  # the least needed go first


def test_every_status_has_its_own_glyph() -> None:
    labels = {status_label(status) for status in TaskStatus}
    glyphs = {label.split()[0] for label in labels}
    assert len(glyphs) == len(TaskStatus) and "✓ succeeded" in labels


def test_the_late_view_shows_overdue_and_stalled_running_tasks_as_time_passes() -> None:
    now = [T0]
    book = TaskBook(clock=lambda: now[0])
    started = {"status": TaskStatus.RUNNING, "started_at": T0 - timedelta(seconds=170)}
    soon_late = make(1, **started)  # a 10 s video: overdue after 3 minutes upstream
    stuck = make(2, status=TaskStatus.RUNNING, started_at=T0, polls_without_progress=4)
    fine = make(3, status=TaskStatus.RUNNING, started_at=T0)
    queued = make(4)
    for task in (soon_late, stuck, fine, queued):
        book.apply(TaskChange("INSERT", task))
    book.view = View.LATE
    assert [t.id for t in book.rows()] == [stuck.id]
    assert book.late_counts() == (0, 1)
    now[0] = T0 + timedelta(seconds=20)
    assert {t.id for t in book.rows()} == {soon_late.id, stuck.id}
    assert book.late_counts() == (1, 1)


def test_overdue_follows_the_upstream_clock_in_the_book() -> None:
    book = TaskBook(clock=lambda: T0, speedup=10)
    task = make(1, status=TaskStatus.RUNNING, started_at=T0 - timedelta(seconds=19))
    book.apply(TaskChange("INSERT", task))
    assert book.late_counts() == (1, 0)


def test_header_counts_overdue_and_stalled_only_when_there_are_some() -> None:
    info = header_info(counts={TaskStatus.RUNNING: 3}, shown=3)
    assert "overdue" not in header_markup(info) and "stalled" not in header_markup(info)
    late = dataclasses.replace(info, overdue=2, stalled=1)
    assert "[b]2[/] overdue [b]1[/] stalled" in header_markup(late)


def test_finished_per_minute_series_counts_succeeded_and_failed_apart() -> None:
    book = TaskBook()
    now = T0 + timedelta(hours=1)
    ended = [
        (TaskStatus.SUCCEEDED, 0.5),
        (TaskStatus.SUCCEEDED, 0.7),
        (TaskStatus.FAILED, 2.5),
        (TaskStatus.CANCELLED, 1.0),  # not finished work
        (TaskStatus.SUCCEEDED, 31.0),  # outside the window
    ]
    for n, (status, minutes_ago) in enumerate(ended):
        done = now - timedelta(minutes=minutes_ago)
        book.apply(TaskChange("INSERT", make(n, status=status, completed_at=done)))
    succeeded, failed = book.finished_series(now)
    assert len(succeeded) == len(failed) == 30
    assert succeeded[-1] == 2 and sum(succeeded) == 2
    assert failed[-3] == 1 and sum(failed) == 1


def test_sparklines_scale_to_the_busiest_minute() -> None:
    assert sparkline([0, 1, 2, 4, 7], cells=5) == "▁▂▃▅█"
    assert sparkline([0] * 30) == "▁" * 10
    assert sparkline([1, 0, 0] * 9 + [0, 0, 3]) == "▄" * 9 + "█"  # three minutes a cell


def test_upstream_health_covers_the_last_minutes_and_warns_only_when_calls_fail() -> None:
    clock = [0.0]
    calls = RecentCalls(window=300, clock=lambda: clock[0])
    for n in range(19):
        calls.record(True, 0.1 + n / 100)
    calls.record(False, 2.0)
    health = calls.health()
    assert (health.calls, health.failed, health.failed_share) == (20, 1, 0.05)
    assert health.p95_seconds == pytest.approx(0.28)
    assert health_markup(health, plain, narrow=False) == "upstream 5% failed, p95 280 ms"
    assert health_markup(health, plain, narrow=True) == "upstream 5% failed"
    clock[0] = 301.0
    assert calls.health().calls == 0
    calls.record(True, 0.2)
    assert health_markup(calls.health(), plain, narrow=True) == ""
