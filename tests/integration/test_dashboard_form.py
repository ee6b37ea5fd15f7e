"""The new-task form: every problem at once beside its field, gone once fixed, asked before lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Static

from tests.dashboard_helpers import SIZES, make_settings, open_app, started
from tui.screens.confirm import ConfirmScreen
from tui.screens.new_task import NewTaskScreen


@pytest.fixture
def settings(tmp_path: Path):
    return make_settings(tmp_path / "form.db")


def shown(form: NewTaskScreen) -> dict[str, str]:
    return {field: text for field, text in form.errors.items() if text}


@pytest.mark.parametrize("size", SIZES)
async def test_every_invalid_field_shows_at_once_and_clears_when_fixed(settings, size) -> None:
    app = open_app(settings)
    async with app.run_test(size=size) as pilot:
        await started(pilot, app)
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, NewTaskScreen)
        # Blank prompt, 25 s on sora-2, and a bad image URL: three problems.
        form.query_one("#duration").value = 25  # type: ignore[attr-defined]
        form.query_one("#images").value = "ftp://x/y.png"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        assert list(shown(form)) == ["prompt", "duration", "images"]  # field order
        assert shown(form)["prompt"] == "must not be blank"
        assert shown(form)["duration"] == "25 s videos need model sora-2-pro"
        assert "not an http(s) URL" in shown(form)["images"]
        assert form.query_one("#duration").has_class("-invalid")
        for field in ("prompt", "duration", "images"):
            error = form.query_one(f"#error-{field}", Static)
            assert error.region.height == 1 and error.region.y < app.size.height  # visible
        buttons = form.query_one("#new-task-buttons")
        assert buttons.region.bottom <= app.size.height
        assert app.focused is form.query_one("#prompt")
        await pilot.press(*"a fox")
        assert list(shown(form)) == ["duration", "images"]  # fixed as soon as typed
        form.query_one("#images").value = ""  # type: ignore[attr-defined]
        await pilot.pause()
        assert list(shown(form)) == ["duration"]
        assert await app.runtime.store.list() == []


async def test_the_hd_switch_says_on_or_off_in_words(settings) -> None:
    app = open_app(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("n")
        word = app.screen.query_one("#hd-word", Static)
        assert str(word.render()) == "off"
        app.screen.query_one("#hd").focus()
        await pilot.press("enter")
        assert str(word.render()).startswith("on")


async def test_escape_asks_before_throwing_typed_text_away(settings) -> None:
    app = open_app(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("n", "escape")
        assert not isinstance(app.screen, NewTaskScreen)  # nothing typed: closes at once
        await pilot.press("n", *"a fox", "escape")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question == "Discard this new task?"
        await pilot.press("n")
        assert isinstance(app.screen, NewTaskScreen)
        assert app.screen.form_data()["prompt"] == "a fox"
        await pilot.press("escape", "y")
        assert len(app.screen_stack) == 1
