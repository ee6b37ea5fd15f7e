"""Keys as an operator meets them: help, palette, movement, and why a key does nothing."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from textual.command import CommandList
from textual.widgets import Static

from tests.dashboard_helpers import (
    RUNNING,
    SIZES,
    SUCCEEDED,
    force,
    make_settings,
    open_app,
    seed,
    started,
    wait_for,
)
from tui.screens.confirm import ConfirmScreen
from tui.screens.detail import DetailScreen
from tui.screens.help import HelpScreen
from tui.widgets.log_panel import PanelLogHandler


@pytest.fixture
def settings(tmp_path: Path):
    return make_settings(tmp_path / "keys.db")


@pytest.mark.parametrize("size", SIZES)
async def test_question_mark_lists_every_key_by_context_and_closes_three_ways(
    settings, size
) -> None:
    app = open_app(settings)
    async with app.run_test(size=size) as pilot:
        await started(pilot, app)
        for close in ("escape", "question_mark", "q"):
            await pilot.press("question_mark")
            screen = app.screen
            assert isinstance(screen, HelpScreen)
            text = screen.text
            for heading in ("Task table", "Task detail", "New-task form", "Confirmations"):
                assert heading in text
            for line in ("Cancel the task under the cursor", "Copy the task id", "Move up a row"):
                assert line in text
            assert "↓ j" in text and "pgdn ^d" in text and "home g" in text
            await pilot.press(close)
            assert not isinstance(app.screen, HelpScreen)
        assert app.is_running  # q closed the help, it did not quit


async def test_the_footer_shows_help_and_quit_at_80_columns(settings) -> None:
    app = open_app(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        # The footer draws its keys after the first snapshot; a busy machine can show it later.
        await wait_for(
            pilot,
            lambda: all(word in app.export_screenshot() for word in ("Help", "Quit", "Select")),
            "the footer's help, quit and select keys",
        )


async def test_the_palette_offers_one_quit_and_the_bindings(settings) -> None:
    await seed(settings, 1)
    app = open_app(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 1, "the row")
        await pilot.press("ctrl+p", *"quit")
        commands = app.screen.query_one(CommandList)
        await wait_for(pilot, lambda: commands.option_count > 0, "palette hits")
        titles = [str(commands.get_option_at_index(i).prompt) for i in range(commands.option_count)]
        assert sum("Quit" in title.split("\n")[0] for title in titles) == 1
        await pilot.press("escape")
        await pilot.press("ctrl+p", *"details")
        await wait_for(pilot, lambda: commands.option_count > 0, "palette hits")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), "the detail")


@pytest.mark.parametrize("size", SIZES)
async def test_vim_and_paging_keys_move_the_cursor(settings, size) -> None:
    await seed(settings, 30)
    app = open_app(settings)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 30, "the rows")
        await pilot.press("j", "j")
        assert app.table.cursor_row == 2
        await pilot.press("k")
        assert app.table.cursor_row == 1
        await pilot.press("G")
        assert app.table.cursor_row == 29
        await pilot.press("g")
        assert app.table.cursor_row == 0
        await pilot.press("ctrl+d")
        page = app.table.cursor_row
        assert page > 1
        await pilot.press("ctrl+u")
        assert app.table.cursor_row == 0
        assert "▶" in app.table.row_text(0)


@pytest.mark.parametrize("key", ["enter", "c", "r", "space"])
async def test_row_keys_on_an_empty_store_say_what_to_do(settings, key) -> None:
    app = open_app(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press(key)
        await pilot.pause()
        assert any("yet: press n for a new task, or run `videoq submit`" in n for n in app.notes)
        assert len(app.screen_stack) == 1


async def test_detail_keys_act_or_say_why(settings) -> None:
    (task,) = await seed(settings, 1)
    opened: list[str] = []
    app = open_app(settings)

    def no_browser(url: str) -> bool:
        opened.append(url)
        return False

    app.open_in_browser = no_browser  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 1, "the row")
        await pilot.press("enter", "r")
        assert f"task {task.id[:8]} is queued; only failed or cancelled tasks can be retried" in (
            app.notes
        )
        await pilot.press("o", "y")
        assert app.notes.count(f"task {task.id[:8]} has no video URL yet (queued)") == 2
        await pilot.press("i")
        assert f"task id {task.id} copied to the clipboard" in app.notes
        await pilot.press("c")
        assert isinstance(app.screen, ConfirmScreen) and app.screen.question.startswith("Cancel")
        await pilot.press("y")
        await wait_for(pilot, lambda: f"task {task.id[:8]} cancelled" in app.notes, "the cancel")
        assert isinstance(app.screen, DetailScreen)
        detail = app.screen
        await wait_for(pilot, lambda: "cancelled" in detail.current.status, "live status")
        await pilot.press("r", "y")
        await wait_for(pilot, lambda: detail.current.attempt == 2, "attempt 2 in the detail")


async def test_o_opens_the_video_or_prints_its_url(settings) -> None:
    (task,) = await seed(settings, 1)
    opened: list[str] = []
    app = open_app(settings)

    def first_time_only(url: str) -> bool:
        opened.append(url)
        return len(opened) == 1

    app.open_in_browser = first_time_only  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await force(app.runtime, task, RUNNING, SUCCEEDED)
        await wait_for(pilot, lambda: "succeeded" in app.table.row_text(0), "the row")
        await pilot.press("enter", "o", "o")
        assert opened == [SUCCEEDED["video_url"]] * 2
        assert "video opened in the browser" in app.notes
        assert f"no browser to open here; the video is at {SUCCEEDED['video_url']}" in app.notes


async def test_the_detail_counts_down_to_the_next_poll_and_ticks(settings) -> None:
    (task,) = await seed(settings, 1)
    now = [task.created_at]
    app = open_app(settings, clock=lambda: now[0])
    async with app.run_test(size=(160, 45)) as pilot:
        await started(pilot, app)
        await force(app.runtime, task, RUNNING | {"next_poll_at": now[0] + timedelta(seconds=173)})
        await wait_for(pilot, lambda: "running" in app.table.row_text(0), "the running row")
        await pilot.press("enter")
        fields = app.screen.query_one("#detail-fields", Static)
        await wait_for(pilot, lambda: "(in 2m 53s)" in str(fields.render()), "the countdown")
        now[0] += timedelta(seconds=10)
        await wait_for(pilot, lambda: "(in 2m 43s)" in str(fields.render()), "the next tick")
        assert "(10s ago)" in str(fields.render())  # created, ticking the other way


async def test_a_resize_keeps_the_cursor_on_its_task_and_in_view(settings) -> None:
    await seed(settings, 40)
    app = open_app(settings)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 40, "the rows")
        await pilot.press("G", "k")
        chosen = app.table.cursor_task_id
        assert "age" in app.table.column_keys
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert app.table.cursor_task_id == chosen
        top = int(app.table.scroll_y)
        assert top <= app.table.cursor_row < top + app.table.scrollable_content_region.height - 1
        assert app.table.column_keys == ("mark", "id", "status", "progress", "prompt", "error")
        await pilot.resize_terminal(220, 60)
        await pilot.pause()
        assert app.table.cursor_task_id == chosen and "▶" in app.table.row_text(38)


async def test_log_lines_in_the_panel_use_short_task_ids(settings) -> None:
    handler = PanelLogHandler()
    record = logging.LogRecord(
        "core.worker",
        logging.INFO,
        __file__,
        1,
        "task %s: queued -> running",
        ("3f2a1b2c-0000-4000-8000-000000000001",),
        None,
    )
    assert handler.format(record).endswith("core.worker: task 3f2a1b2c: queued -> running")
