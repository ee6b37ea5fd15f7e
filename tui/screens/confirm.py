"""A yes/no question, answered from the keyboard."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from tui.i18n import t
from tui.keys import speak


class ConfirmScreen(ModalScreen[bool]):
    """Asks before an action that changes tasks; dismisses with True to go ahead."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", tooltip="Go ahead"),
        Binding("n,escape", "answer(False)", "No", tooltip="Change nothing"),
    ]

    def __init__(self, question: str, details: str = "", yes: str = "") -> None:
        super().__init__()
        speak(self)
        self.question = question
        self.details = details
        self.yes = yes or t("Yes")

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, id="question", markup=False)
            if self.details:
                yield Static(self.details, id="details", markup=False)
            with Horizontal():
                yield Button(t("No (n)"), id="no")
                yield Button(t("{yes} (y)", yes=self.yes), id="yes", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
