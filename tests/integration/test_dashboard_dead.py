"""The dashboard's dead letters: a count in the header, and a list (d) that requeues and drops."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from core.queue.local import LocalQueue
from tests.dashboard_helpers import (
    SIZES,
    RecordingApp,
    make_settings,
    open_app,
    started,
    wait_for,
)
from tests.dead_letters import REASON, dead_lettered
from tui.screens.confirm import ConfirmScreen
from tui.screens.dead import DeadLettersScreen


async def open_dead_list(pilot: Pilot[None], app: RecordingApp, rows: int) -> DataTable[str]:
    """Press d and wait until the dead-letter list shows `rows` rows; its table."""
    await started(pilot, app)
    await pilot.press("d")
    await wait_for(pilot, lambda: isinstance(app.screen, DeadLettersScreen), "the list")
    table: DataTable[str] = app.screen.query_one(DataTable)
    await wait_for(pilot, lambda: table.row_count == rows, f"{rows} dead letters")
    return table


def header_text(app: object) -> str:
    return str(app.query_one("#header", Static).render())  # type: ignore[attr-defined]


async def test_the_header_counts_dead_letters_and_d_lists_them_with_the_reason(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path / "dash.db")
    await dead_lettered(settings.db_path, "task-a", "task-b")
    app = open_app(settings)
    width, height = SIZES[0]
    async with app.run_test(size=(width, height)) as pilot:
        await started(pilot, app)
        await wait_for(pilot, lambda: "2 dead (d)" in header_text(app), "the dead count")
        table = await open_dead_list(pilot, app, 2)
        assert REASON in str(app.screen.query_one("#dead-reason", Static).render())
        assert [table.get_row_at(i)[1] for i in range(2)] == ["task-a", "task-b"]


async def test_r_requeues_and_x_drops_the_dead_letter_under_the_cursor(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "dash.db")
    await dead_lettered(settings.db_path, "task-a", "task-b")
    app = open_app(settings)
    async with app.run_test(size=SIZES[0]) as pilot:
        table = await open_dead_list(pilot, app, 2)
        await pilot.press("r")
        await wait_for(pilot, lambda: table.row_count == 1, "one requeued")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: table.row_count == 0, "one dropped")
        queue = app.runtime.queue
        assert isinstance(queue, LocalQueue)
        assert await queue.pending_count() == 1  # the requeued one waits for a worker
        await pilot.press("escape")
        await wait_for(pilot, lambda: " dead" not in header_text(app), "the count gone at 0")
    assert any("requeued" in note for note in app.notes)
    assert any("dropped" in note for note in app.notes)
