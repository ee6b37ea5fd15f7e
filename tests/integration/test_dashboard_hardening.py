"""The dashboard against hostile or damaged rows (issue #11): inert text, unreadable rows shown."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from textual.widgets import Static

from core.config import Settings
from core.models import VideoRequest
from core.runtime import Runtime
from tests.dashboard_helpers import (
    FAILED,
    RUNNING,
    force,
    make_settings,
    open_app,
    started,
    wait_for,
)
from tui.screens.detail import DetailScreen

HOSTILE = "fox \x1b]0;PWNED\x07\x1b[2J snow \x9b31m"
SIZE = (80, 24)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "dash.db")


def _has_controls(text: str) -> bool:
    return any(ord(char) < 0x20 and char != "\n" or 0x7F <= ord(char) < 0xA0 for char in text)


async def test_a_hostile_prompt_and_reason_are_shown_as_inert_text(settings: Settings) -> None:
    async with Runtime.from_settings(settings) as runtime:
        task = await runtime.service.submit(VideoRequest(prompt=HOSTILE), actor="test")
        hostile_failure = {**FAILED, "error_message": f"refused \x1b[31m{HOSTILE}"}
        await force(runtime, task, RUNNING, hostile_failure)
    app = open_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        row = app.table.row_text(0)
        assert "fox" in row and not _has_controls(row)
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await wait_for(pilot, lambda: screen.history is not None, "the history")
        for part in ("#detail-prompt", "#detail-result", "#detail-history"):
            shown = str(screen.query_one(part, Static).render())
            assert not _has_controls(shown), (part, shown)
        prompt = str(screen.query_one("#detail-prompt", Static).render())
        assert "fox" in prompt and "PWNED" in prompt and "snow" in prompt


async def test_a_row_that_cannot_be_decoded_is_shown_as_unreadable(settings: Settings) -> None:
    async with Runtime.from_settings(settings) as runtime:
        good = await runtime.service.submit(VideoRequest(prompt="a good task"), actor="test")
        bad = await runtime.service.submit(VideoRequest(prompt="a broken task"), actor="test")
    with contextlib.closing(sqlite3.connect(settings.db_path)) as db, db:
        db.execute("UPDATE video_tasks SET status = 'lost' WHERE id = ?", (bad.id,))
    app = open_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        header = app.query_one("#header", Static)
        await wait_for(pilot, lambda: "⚠ 1 unreadable row" in str(header.render()), "the count")
        assert app.table.shown_ids == [good.id]
        assert any(bad.id in note and "cannot be read" in note for note in app.notes)
