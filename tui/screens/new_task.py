"""The new-task form, checked by the same rules as the command line before anything is stored."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static, Switch

from core.messages import every_problem
from core.models import MAX_IMAGES, VideoRequest
from tui.i18n import N_, outside_text, t
from tui.keys import speak
from tui.screens.confirm import ConfirmScreen

FIELDS = ("prompt", "model", "duration", "aspect_ratio", "hd", "images")
LABELS = {
    "prompt": N_("Prompt"),
    "model": N_("Model"),
    "duration": N_("Duration"),
    "aspect_ratio": N_("Aspect ratio"),
    "hd": N_("HD"),
    "images": N_("Image URLs"),
}


def hd_word(on: bool) -> str:
    """The HD switch's state in words, so it reads without colour."""
    return t("on (sora-2-pro only, much slower)") if on else t("off")


class NewTaskScreen(ModalScreen[VideoRequest | None]):
    """Collects a request; dismisses with a validated VideoRequest, or None when abandoned."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Queue it", tooltip="Check the form and queue the task"),
        Binding("escape", "leave", "Cancel", tooltip="Close the form (asks if anything is typed)"),
    ]

    def __init__(self) -> None:
        super().__init__()
        speak(self)
        # Once a submit has failed, every change re-checks the form, so fixed errors go at once.
        self._checking = False

    def compose(self) -> ComposeResult:
        with Vertical(id="new-task"):
            yield Static(t("[b]New video task[/]"), id="new-task-title")
            yield self._row(
                "prompt", Input(placeholder=t("What should the video show?"), compact=True)
            )
            yield self._row("model", _select(("sora-2", "sora-2-pro")))
            yield self._row("duration", _select((10, 15, 25), suffix=t(" s")))
            yield self._row("aspect_ratio", _select(("16:9", "9:16")))
            yield self._row("hd", Switch(value=False), Static(hd_word(False), id="hd-word"))
            placeholder = t(
                "up to {count} http(s) or data URLs, separated by spaces", count=MAX_IMAGES
            )
            yield self._row("images", Input(placeholder=placeholder, compact=True))
            yield Static(id="error-request", classes="field-error")
            with Horizontal(id="new-task-buttons"):
                yield Button(t("Cancel (esc)"), id="cancel", compact=True)
                yield Button(t("Queue it (ctrl+s)"), id="submit", variant="primary", compact=True)

    def _row(self, field: str, widget: Widget, *extra: Widget) -> Vertical:
        widget.id = field
        line = Horizontal(Label(t(LABELS[field]), classes="field-label"), widget, *extra)
        line.add_class("field-line")
        error = Static(id=f"error-{field}", classes="field-error", markup=False)
        return Vertical(line, error, classes="field-row")

    def on_mount(self) -> None:
        self.query_one("#prompt", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.action_leave()

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self.action_submit()

    @on(Switch.Changed, "#hd")
    def _hd_changed(self, event: Switch.Changed) -> None:
        self.query_one("#hd-word", Static).update(hd_word(event.value))

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Switch.Changed)
    def _changed(self) -> None:
        if self._checking:
            self._show_problems(every_problem(VideoRequest, self.form_data()), focus=False)

    def action_leave(self) -> None:
        """Close the form; ask first if the operator typed something that would be lost."""
        if not self.has_typed_text:
            self.dismiss(None)
            return

        def answered(discard: bool | None) -> None:
            if discard:
                self.dismiss(None)

        question = ConfirmScreen(
            t("Discard this new task?"), t("What you typed is not kept."), yes=t("Yes, discard")
        )
        self.app.push_screen(question, answered)

    @property
    def has_typed_text(self) -> bool:
        return any(self.query_one(f"#{f}", Input).value.strip() for f in ("prompt", "images"))

    def action_submit(self) -> None:
        """Validate the form; show every problem beside its field, or hand the request back."""
        data = self.form_data()
        found = every_problem(VideoRequest, data)
        if found:
            self._checking = True
            self._show_problems(found, focus=True)
            return
        self.dismiss(VideoRequest.parse(data))

    def form_data(self) -> dict[str, Any]:
        images = self.query_one("#images", Input).value.split()
        return {
            "prompt": self.query_one("#prompt", Input).value,
            "model": self.query_one("#model", Select).value,
            "duration": self.query_one("#duration", Select).value,
            "aspect_ratio": self.query_one("#aspect_ratio", Select).value,
            "hd": self.query_one("#hd", Switch).value,
            "images": images,
        }

    @property
    def errors(self) -> dict[str, str]:
        """The error shown beside each field, in field order ("" where there is none)."""
        return {f: str(self.query_one(f"#error-{f}", Static).render()) for f in FIELDS}

    def _show_problems(self, found: list[tuple[str, str]], *, focus: bool) -> None:
        reasons = dict(found)
        for field in (*FIELDS, "request"):
            reason = outside_text(reasons.get(field, ""))
            error = self.query_one(f"#error-{field}", Static)
            error.update(reason)
            error.set_class(bool(reason), "-shown")
            if field != "request":
                self.query_one(f"#{field}").set_class(bool(reason), "-invalid")
        first = next((f for f in FIELDS if f in reasons), None)
        if focus and first is not None:
            self.query_one(f"#{first}").focus()


def _select(values: tuple[Any, ...], suffix: str = "") -> Select[Any]:
    return Select(
        [(f"{value}{suffix}", value) for value in values],
        value=values[0],
        allow_blank=False,
        compact=True,
    )
