"""Asked on `q` while tasks are still active: drain then quit, quit now, or stay."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from tui.i18n import t
from tui.keys import speak
from tui.state.wording import Question


class QuitScreen(ModalScreen[str | None]):
    """Dismisses with "drain", "now", or None to stay."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "answer('drain')", "Drain, then quit", tooltip="Finish in-flight steps"),
        Binding("q", "answer('now')", "Quit now", tooltip="Quit at once; the tasks stay queued"),
        Binding("escape", "answer(None)", "Stay", tooltip="Keep the dashboard open"),
    ]

    def __init__(self, text: Question, *, can_drain: bool) -> None:
        super().__init__()
        speak(self)
        self.text = text
        self.can_drain = can_drain

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.text.question, id="question", markup=False)
            yield Static(self.text.details, id="details", markup=False)
            with Horizontal():
                yield Button(t("Stay (esc)"), id="stay")
                if self.can_drain:
                    yield Button(t("Drain, then quit (d)"), id="drain", variant="primary")
                yield Button(t("Quit now (q)"), id="now", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#drain" if self.can_drain else "#now", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)

    def action_answer(self, answer: str | None) -> None:
        if answer == "drain" and not self.can_drain:
            return
        self.dismiss(answer)
