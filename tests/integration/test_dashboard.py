"""The dashboard driven from the keyboard, over a real SQLite store in a temporary file."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from textual.command import CommandList
from textual.widgets import Input, Log, Static
from textual.worker import WorkerState

from core.models import TaskStatus
from core.runtime import Runtime
from tests.dashboard_helpers import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    RecordingApp,
    force,
    make_settings,
    seed,
    started,
    wait_for,
)
from tui.screens.confirm import ConfirmScreen
from tui.screens.detail import DetailScreen
from tui.screens.new_task import NewTaskScreen
from tui.widgets.log_panel import LogPanel, PanelLogHandler

SIZE = (160, 45)


@pytest.fixture
def settings(tmp_path: Path):
    return make_settings(tmp_path / "dash.db")


def open_app(settings, **kwargs) -> RecordingApp:
    return RecordingApp(Runtime.from_settings(settings), **kwargs)


async def test_the_table_shows_the_tasks_that_exist(settings) -> None:
    tasks = await seed(settings, 3)
    app = open_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 3, "three rows")
        newest_first = [t.id for t in reversed(tasks)]
        assert app.table.shown_ids == newest_first
        row = app.table.row_text(0)
        assert tasks[-1].id[:8] in row and "queued" in row and tasks[-1].prompt[:20] in row
        assert "sqlite: " in str(app.query_one("#header", Static).render())


async def test_a_change_made_elsewhere_appears_without_a_key_press(settings) -> None:
    first, second = await seed(settings, 2)
    app = open_app(settings)
    async with app.run_test(size=SIZE) as pilot, Runtime.from_settings(settings) as other:
        await wait_for(pilot, lambda: app.table.row_count == 2, "the seeded rows")
        await other.service.cancel(first.id, actor="cli")
        new = await other.service.submit(second.request(), actor="cli")
        await wait_for(
            pilot,
            lambda: (
                app.book.tasks.get(first.id) is not None
                and app.book.tasks[first.id].status is TaskStatus.CANCELLED
                and new.id in app.table.shown_ids
            ),
            "the cancel and the new task from the other process",
        )
        assert "cancelled" in app.table.row_text(app.table.index_of(first.id) or 0)
        assert app.table.shown_ids[0] == new.id


async def test_c_and_a_confirmation_cancel_the_task(settings) -> None:
    (task,) = await seed(settings, 1)
    app = open_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 1, "the row")
        await pilot.press("c")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")

        async def cancelled() -> bool:
            stored = await app.runtime.store.get(task.id)
            return stored is not None and stored.status is TaskStatus.CANCELLED

        await wait_for(pilot, cancelled, "the store to say cancelled")
        await wait_for(pilot, lambda: "cancelled" in app.table.row_text(0), "the row to follow")
        assert f"task {task.id[:8]} cancelled" in app.notes


async def test_r_on_a_failed_task_queues_attempt_two(settings) -> None:
    (task,) = await seed(settings, 1)
    app = open_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await force(app.runtime, task, FAILED)
        await wait_for(pilot, lambda: "failed" in app.table.row_text(0), "the failed row")
        await pilot.press("r", "y")

        async def second_attempt() -> bool:
            stored = await app.runtime.store.get(task.id)
            return stored is not None and stored.attempt == 2

        await wait_for(pilot, second_attempt, "attempt 2 in the store")
        stored = await app.runtime.store.get(task.id)
        assert stored is not None and stored.status is TaskStatus.QUEUED
        assert stored.error_message is None


async def test_r_on_a_task_that_used_its_submitters_own_key_asks_for_the_key(settings) -> None:
    (task,) = await seed(settings, 1)
    app = open_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        failed = await force(app.runtime, task, {**FAILED, "own_key": True})
        await wait_for(pilot, lambda: "failed" in app.table.row_text(0), "the failed row")
        await pilot.press("r", "y")
        await wait_for(
            pilot,
            lambda: any("own upstream key" in note for note in app.notes),
            "the refusal",
        )
        note = next(note for note in app.notes if "own upstream key" in note)
        assert note.startswith(f"task {task.id[:8]} ran with its submitter's own upstream key")
        assert "X-Upstream-Api-Key" in note
        stored = await app.runtime.store.get(task.id)
        assert stored is not None and stored.version == failed.version


async def test_r_on_a_succeeded_task_changes_nothing_and_says_why(settings) -> None:
    (task,) = await seed(settings, 1)
    app = open_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        done = await force(app.runtime, task, RUNNING, SUCCEEDED)
        await wait_for(pilot, lambda: "succeeded" in app.table.row_text(0), "the succeeded row")
        assert app.check_action("retry", ()) is None  # greyed out in the footer
        await pilot.press("r")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        expected = f"task {task.id[:8]} is succeeded; only failed or cancelled tasks can be retried"
        assert expected in app.notes
        stored = await app.runtime.store.get(task.id)
        assert stored is not None and stored.version == done.version


async def test_views_and_search_show_the_right_rows(settings) -> None:
    queued, running, failed, done = await seed(settings, 4)
    app = open_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await force(app.runtime, running, RUNNING)
        await force(app.runtime, failed, FAILED)
        await force(app.runtime, done, RUNNING, SUCCEEDED)
        await wait_for(pilot, lambda: app.book.counts[TaskStatus.SUCCEEDED] == 1, "the updates")
        shown = lambda: set(app.table.shown_ids)  # noqa: E731
        await pilot.press("3")
        assert shown() == {failed.id}
        await pilot.press("2")
        assert shown() == {queued.id, running.id}
        await pilot.press("4")
        assert shown() == {failed.id, done.id}
        await pilot.press("1")
        assert len(shown()) == 4
        await pilot.press("slash", *"POLICY", "enter")  # matches the error, in any case
        assert shown() == {failed.id}
        await pilot.press("slash", "ctrl+u", *running.id[:6], "enter")  # an id prefix
        assert shown() == {running.id}
        await pilot.press("escape")
        assert len(shown()) == 4 and not app.query_one("#search", Input).has_class("-visible")


async def test_enter_shows_the_detail_and_escape_closes_it(settings) -> None:
    (task,) = await seed(settings, 1)
    app = open_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await force(app.runtime, task, RUNNING, SUCCEEDED)
        await wait_for(pilot, lambda: "succeeded" in app.table.row_text(0), "the row")
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await wait_for(pilot, lambda: screen.history is not None, "the history")
        fields = str(screen.query_one("#detail-fields", Static).render())
        assert task.id in fields and "up-1" in fields and "sora-2" in fields
        assert str(screen.query_one("#detail-prompt", Static).render()) == task.prompt
        assert "https://v.example/1.mp4" in str(screen.query_one("#detail-result").render())
        assert "queued by test" in str(screen.query_one("#detail-history", Static).render())
        await pilot.press("y")
        assert "video URL copied to the clipboard" in app.notes
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


async def test_n_with_an_invalid_combination_shows_the_error_and_stores_nothing(settings) -> None:
    app = open_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("n", *"a cat surfing a wave")
        # Tab to the duration, open it and pick 25 s, which sora-2 (the default model) refuses.
        await pilot.press("tab", "tab", "enter", "down", "down", "enter", "ctrl+s")
        form = app.screen
        assert isinstance(form, NewTaskScreen)
        error = str(form.query_one("#error-duration", Static).render())
        assert error == "25 s videos need model sora-2-pro"
        assert form.query_one("#duration").has_class("-invalid")
        assert await app.runtime.store.list() == []
        # Fix it by choosing sora-2-pro; the form closes and the task is stored.
        await pilot.press("shift+tab", "enter", "down", "enter", "ctrl+s")
        await wait_for(pilot, lambda: app.table.row_count == 1, "the new task's row")
        (stored,) = await app.runtime.store.list()
        assert (stored.model, stored.duration) == ("sora-2-pro", 25)
        assert stored.prompt == "a cat surfing a wave"
        assert app.table.cursor_task_id == stored.id


async def test_space_selects_several_and_c_cancels_them_all(settings) -> None:
    tasks = await seed(settings, 3)
    app = open_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 3, "the rows")
        await pilot.press("space", "space", "c")
        assert isinstance(app.screen, ConfirmScreen) and app.screen.question == "Cancel 2 tasks?"
        await pilot.press("y")
        picked = {tasks[2].id, tasks[1].id}

        async def both_cancelled() -> bool:
            rows = {t.id: t.status for t in await app.runtime.store.list()}
            return all(rows[i] is TaskStatus.CANCELLED for i in picked)

        await wait_for(pilot, both_cancelled, "both selected tasks cancelled")
        untouched = await app.runtime.store.get(tasks[0].id)
        assert untouched is not None and untouched.status is TaskStatus.QUEUED
        assert "2 tasks cancelled" in app.notes and not app.book.selected


async def test_shift_r_retries_every_failed_task_in_view_after_saying_how_many(settings) -> None:
    tasks = await seed(settings, 3)
    app = open_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        for task in tasks[:2]:
            await force(app.runtime, task, FAILED)
        await wait_for(pilot, lambda: app.table.shown_statuses[TaskStatus.FAILED] == 2, "failures")
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question == "Retry 2 failed tasks?"
        await pilot.press("y")
        await wait_for(pilot, lambda: app.book.counts[TaskStatus.QUEUED] == 3, "all queued again")
        assert {t.attempt for t in app.book.tasks.values()} == {1, 2}


async def test_the_command_palette_offers_the_same_actions(settings) -> None:
    await seed(settings, 1)
    app = open_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.table.row_count == 1, "the row")
        await pilot.press("ctrl+p", *"cancel task")
        await wait_for(
            pilot, lambda: app.screen.query_one(CommandList).option_count > 0, "palette hits"
        )
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")


async def test_the_in_process_worker_runs_tasks_logs_to_the_panel_and_q_drains(
    settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    handler = PanelLogHandler()
    # A submit whose queue write is slow on a busy machine is left to the reconciler: let it
    # come round within seconds, not the minute the other tests use.
    settings = settings.replace(reconcile_interval=1.0)
    app = open_app(settings, start_worker=True, demo=2, log_handler=handler)
    logging.getLogger().addHandler(handler)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(
                pilot,
                lambda: app.book.counts[TaskStatus.SUCCEEDED] == 2,
                "both demo tasks to succeed",
            )
            panel = app.query_one(LogPanel)
            await wait_for(pilot, lambda: panel.lines > 0, "worker lines in the log panel")
            assert "2 demo tasks queued" in app.notes
            await pilot.press("l")
            assert not panel.collapsed
            await pilot.press("q")
            engine = app._engine
            assert engine is not None
            await wait_for(pilot, lambda: engine.is_finished, "the worker to drain")
    finally:
        logging.getLogger().removeHandler(handler)
    assert engine.state is WorkerState.SUCCESS
    assert app.return_code == 0


async def test_log_lines_from_other_threads_reach_the_panel_not_the_terminal(settings) -> None:
    handler = PanelLogHandler()
    app = open_app(settings, log_handler=handler)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        record = logging.LogRecord(
            "core.worker", logging.WARNING, __file__, 1, "task %s: late", ("3f2a",), None
        )
        thread = threading.Thread(target=handler.emit, args=(record,))
        thread.start()
        thread.join()
        panel = app.query_one(LogPanel)
        await wait_for(pilot, lambda: panel.warnings == 1, "the line from the other thread")
        assert panel.title == "Worker log (1 line, 1 warning)"
        log = app.query_one("#log", Log)
        assert "WARNING core.worker: task 3f2a: late" in log.lines[-1]
