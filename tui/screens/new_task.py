"""The new-task form, checked by the command line's rules before anything is stored."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static, Switch

from core.errors import InvalidRequest
from core.models import MAX_IMAGES, VideoRequest

FIELDS = ("prompt", "model", "duration", "aspect_ratio", "hd", "images")
LABELS = {
    "prompt": "Prompt",
    "model": "Model",
    "duration": "Duration",
    "aspect_ratio": "Aspect ratio",
    "hd": "HD",
    "images": "Image URLs",
}


class NewTaskScreen(ModalScreen[VideoRequest | None]):
    """Collects a request; dismisses with a validated VideoRequest, or None when abandoned."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Queue it", tooltip="Check the form and queue the task"),
        Binding("escape", "leave", "Cancel", tooltip="Close the form (asks if anything is typed)"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="new-task"):
            yield Static("[b]New video task[/]", id="new-task-title")
            yield self._row("prompt", Input(placeholder="What should the video show?"))
            yield self._row("model", _select(("sora-2", "sora-2-pro")))
            yield self._row("duration", _select((10, 15, 25), suffix=" s"))
            yield self._row("aspect_ratio", _select(("16:9", "9:16")))
            yield self._row("hd", Switch(value=False))
            placeholder = f"up to {MAX_IMAGES} http(s) or data URLs, separated by spaces"
            yield self._row("images", Input(placeholder=placeholder))
            yield Static(id="error-request", classes="field-error")
            with Horizontal(id="new-task-buttons"):
                yield Button("Cancel (esc)", id="cancel")
                yield Button("Queue it (ctrl+s)", id="submit", variant="primary")

    def _row(self, field: str, widget: Widget) -> Horizontal:
        widget.id = field
        return Horizontal(
            Label(LABELS[field], classes="field-label"),
            widget,
            Static(id=f"error-{field}", classes="field-error", markup=False),
            classes="field-row",
        )

    def on_mount(self) -> None:
        self.query_one("#prompt", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.dismiss(None)

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self.action_submit()

    def action_leave(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        """Validate the form; show the first problem beside its field, or hand the request back."""
        self._clear_errors()
        try:
            request = VideoRequest.parse(self.form_data())
        except InvalidRequest as exc:
            self._show_error(exc)
            return
        self.dismiss(request)

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

    def _clear_errors(self) -> None:
        for error in self.query(".field-error").results(Static):
            error.update("")
        for field in FIELDS:
            self.query_one(f"#{field}").remove_class("-invalid")

    def _show_error(self, exc: InvalidRequest) -> None:
        field = exc.field if exc.field in FIELDS else "request"
        reason = exc.message.split(": ", 1)[-1] if field != "request" else exc.message
        self.query_one(f"#error-{field}", Static).update(reason)
        if field != "request":
            widget = self.query_one(f"#{field}")
            widget.add_class("-invalid")
            widget.focus()


def _select(values: tuple[Any, ...], suffix: str = "") -> Select[Any]:
    return Select(
        [(f"{value}{suffix}", value) for value in values], value=values[0], allow_blank=False
    )
