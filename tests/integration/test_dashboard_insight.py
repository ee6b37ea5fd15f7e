"""Overdue and stalled tasks on the dashboard: marked in the table, counted, viewed, explained."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from textual.widgets import Static

from core.config import Settings
from core.models import TaskStatus
from tests.dashboard_helpers import (
    FAILED,
    RUNNING,
    force,
    make_settings,
    open_app,
    seed,
    started,
    wait_for,
)
from tui.screens.confirm import ConfirmScreen
from tui.screens.failures import FailuresScreen
from tui.widgets.status_header import StatusHeader


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "insight.db")  # the simulator's clock runs 2000x


async def test_overdue_and_stalled_tasks_are_marked_counted_and_have_their_view(
    settings: Settings,
) -> None:
    waiting, late, stuck = await seed(settings, 3)  # sora-2 10 s and 15 s videos: minutes
    now = [late.created_at]
    app = open_app(settings, clock=lambda: now[0], start_worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        # One second of real time upstream is 2000 s of the job's: far past its range.
        await force(app.runtime, late, RUNNING | {"started_at": now[0] - timedelta(seconds=1)})
        await force(
            app.runtime, stuck, RUNNING | {"started_at": now[0], "polls_without_progress": 4}
        )
        rows = lambda: [app.table.row_text(i) for i in range(app.table.row_count)]  # noqa: E731
        await wait_for(pilot, lambda: sum("◔" in row for row in rows()) == 2, "two running rows")
        row_of = lambda task: next(row for row in rows() if task.id[:8] in row)  # noqa: E731
        assert "◔ overdue" in row_of(late) and "◔ stalled" in row_of(stuck)
        assert "○ queued" in row_of(waiting)
        header = app.query_one(StatusHeader)
        await wait_for(pilot, lambda: "1 overdue 1 stalled" in str(header.render()), "counts")

        await pilot.press("5")
        await wait_for(pilot, lambda: app.table.row_count == 2, "the late view")
        assert waiting.id[:8] not in " ".join(rows())
        app.table.move_cursor(next(i for i, r in enumerate(rows()) if late.id[:8] in r))
        await pilot.press("enter")
        fields = app.screen.query_one("#detail-fields", Static)
        await wait_for(pilot, lambda: "overdue" in str(fields.render()), "the detail's mark")
        text = str(fields.render())
        assert f"request  sora-2, {late.duration}s" in text
        expected = {10: "1m–3m", 15: "3m–5m"}[late.duration]
        assert f"expected {expected}; upstream for 33m 20s, overdue" in text
        assert "in queue" in text


async def test_failures_by_reason_view_retries_a_group_after_saying_how_many(
    settings: Settings,
) -> None:
    tasks = await seed(settings, 4)
    reasons = ["upstream overloaded (code 503)", "upstream overloaded (code 502)", "审核未通过"]
    app = open_app(settings, start_worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        for task, reason in zip(tasks, reasons, strict=False):
            await force(app.runtime, task, RUNNING, FAILED | {"error_message": reason})
        await wait_for(pilot, lambda: app.book.counts[TaskStatus.FAILED] == 3, "three failed")
        await pilot.press("6")
        screen = app.screen
        assert isinstance(screen, FailuresScreen)
        await wait_for(pilot, lambda: screen.groups is not None, "the groups")
        assert [(g.reason, g.count) for g in screen.groups or []] == [
            ("upstream overloaded (code #)", 2),
            ("审核未通过", 1),
        ]
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question == "Retry 2 failed tasks?"
        await pilot.press("y")
        retried = {task.id for task in tasks[:2]}
        await wait_for(
            pilot,
            lambda: all(app.book.tasks[i].attempt == 2 for i in retried),
            "the group queued again",
        )
        assert app.book.tasks[tasks[2].id].status is TaskStatus.FAILED
        assert app.book.tasks[tasks[3].id].status is TaskStatus.QUEUED
