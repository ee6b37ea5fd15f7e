"""Empty states, quitting with tasks in flight, pausing, and a second worker on the same store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import Static

from core.models import TaskStatus
from core.runtime import Runtime
from core.supervisor import supervise
from tests.dashboard_helpers import (
    FAILED,
    RUNNING,
    SIZES,
    RecordingApp,
    force,
    make_settings,
    open_app,
    seed,
    started,
    wait_for,
)
from tui.screens.quit import QuitScreen


@pytest.fixture
def settings(tmp_path: Path):
    return make_settings(tmp_path / "workers.db")


def header(app: RecordingApp) -> str:
    return str(app.query_one("#header", Static).render())


def table_text(app: RecordingApp) -> str:
    return "\n".join(app.table.render_line(y).text for y in range(6))


@pytest.mark.parametrize("size", SIZES)
async def test_an_empty_store_and_an_empty_view_say_what_to_do(settings, size) -> None:
    app = open_app(settings)
    async with app.run_test(size=size) as pilot:
        await started(pilot, app)
        assert "No tasks yet." in table_text(app)
        assert "Press n for a new task, or run `videoq submit" in table_text(app)
        (task,) = await seed(settings, 1)
        await wait_for(pilot, lambda: app.table.row_count == 1, "the row")
        await pilot.press("3")
        assert 'No task matches the view "failed".' in table_text(app)
        await pilot.press("1", "slash", *"zebra", "enter")
        await wait_for(pilot, lambda: app.book.search == "zebra", "the filter")
        text = table_text(app)
        assert 'No task matches the filter "zebra".' in text and "Esc clears the filter" in text
        await pilot.press("escape")
        assert app.table.row_count == 1 and task.id[:8] in app.table.row_text(0)


async def test_q_with_running_tasks_says_who_carries_them_on(settings) -> None:
    tasks = await seed(settings, 2)
    app = open_app(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await force(app.runtime, tasks[0], RUNNING)
        await wait_for(pilot, lambda: app.book.counts[TaskStatus.RUNNING] == 1, "running")
        await pilot.press("q")
        screen = app.screen
        assert isinstance(screen, QuitScreen)
        assert screen.text.question == "Quit with 1 task still running upstream and 1 queued?"
        assert "videoq serve (QStash mode) carries on" in screen.text.details
        assert not screen.query("#drain")  # no worker here to drain
        await pilot.press("escape")
        assert app.is_running and not isinstance(app.screen, QuitScreen)
        await pilot.press("q", "q")
    assert app.return_code == 0


async def test_q_offers_drain_then_quit_when_the_worker_runs_here(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "drain.db", sim_speedup=1.0)
    await seed(settings, 1)
    app = open_app(settings, start_worker=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.book.counts[TaskStatus.RUNNING] == 1, "running")
        await pilot.press("q")
        screen = app.screen
        assert isinstance(screen, QuitScreen) and screen.can_drain
        assert "resume when a worker next runs on this store" in screen.text.details
        await pilot.press("d")
        engine = app._engine
        assert engine is not None
        await wait_for(pilot, lambda: engine.is_finished, "the drain")
    stored = await _stored_status(settings)
    assert stored == {TaskStatus.RUNNING}  # left running upstream, for the next worker


async def _stored_status(settings) -> set[TaskStatus]:
    async with Runtime.from_settings(settings) as runtime:
        return {task.status for task in await runtime.store.list()}


async def test_p_pauses_and_resumes_taking_deliveries(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "pause.db")
    app = open_app(settings, start_worker=True)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: "worker running" in header(app), "the worker")
        await pilot.press("p")
        assert "worker paused (p resumes)" in header(app)
        assert app.runtime.queue.paused  # type: ignore[attr-defined]
        assert any(note.startswith("paused: no new deliveries") for note in app.notes)
        await seed(settings, 1)
        await wait_for(pilot, lambda: app.table.row_count == 1, "the new row")
        await pilot.press("p")
        assert "worker running" in header(app) and "resumed taking deliveries" in app.notes
        await wait_for(
            pilot, lambda: app.book.counts[TaskStatus.SUCCEEDED] == 1, "the task to run", 30
        )


async def test_p_without_a_worker_says_so(settings) -> None:
    app = open_app(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        assert "worker none (QStash" in header(app)
        await pilot.press("p")
        assert any(note.startswith("no worker runs in this dashboard") for note in app.notes)


async def test_the_header_says_when_a_second_worker_shares_the_store(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "two.db")
    app = open_app(settings, start_worker=True)
    stop = asyncio.Event()
    async with app.run_test(size=(160, 45)) as pilot, Runtime.from_settings(settings) as other:
        await wait_for(pilot, lambda: "worker running" in header(app), "the worker")
        assert "on this store" not in header(app)
        second = asyncio.create_task(supervise(other, stop))
        try:
            await wait_for(pilot, lambda: "(+another worker on this store)" in header(app), "it")
        finally:
            stop.set()
            await second
        await wait_for(pilot, lambda: "on this store" not in header(app), "it to go")


async def test_r_on_failed_from_an_empty_selection_view_is_explained(settings) -> None:
    (task,) = await seed(settings, 1)
    app = open_app(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await force(app.runtime, task, FAILED)
        await pilot.press("2")  # active only: the failed task is hidden
        await pilot.press("r")
        assert any("nothing matches this view or filter" in note for note in app.notes)
