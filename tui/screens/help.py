"""The `?` screen: every key, grouped by where it works, read from the bindings themselves."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.i18n import t
from tui.keys import speak

KEY_WIDTH = 11
# Narrower than this, the two columns stack into one that scrolls.
SIDE_BY_SIDE = 110


@dataclass(frozen=True)
class HelpSection:
    """One context (table, detail, form) and the bindings that work there."""

    title: str
    bindings: Sequence[BindingType]


def binding_help(binding: Binding) -> str:
    """What a binding does, in one line: its tooltip if it has one, else its description."""
    return t(binding.tooltip or binding.description)


def section_markup(section: HelpSection, key_display: Callable[[Binding], str]) -> str:
    """The section's title, then one line per binding: its keys and what they do."""
    lines = [f"[b]{escape(section.title)}[/]"]
    for binding in section.bindings:
        if not isinstance(binding, Binding):
            continue
        keys = binding.key_display or " ".join(
            key_display(Binding(key.strip(), binding.action)) for key in binding.key.split(",")
        )
        lines.append(f"  [b]{escape(keys):<{KEY_WIDTH}}[/] {escape(binding_help(binding))}")
    return "\n".join(lines)


class HelpScreen(ModalScreen[None]):
    """Every key of the dashboard, grouped by context; esc, ? or q closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close help", id="help-close"),
    ]

    def __init__(self, left: Sequence[HelpSection], right: Sequence[HelpSection]) -> None:
        super().__init__()
        speak(self)
        self.left = left
        self.right = right

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(t("[b]videoq keys[/]  [dim](esc, ? or q closes this)[/]"), id="help-title")
            with Horizontal(id="help-columns"):
                yield Static(self._column(self.left), classes="help-column")
                yield Static(self._column(self.right), classes="help-column")

    def on_resize(self) -> None:
        self.query_one("#help-columns").set_class(self.size.width < SIDE_BY_SIDE, "-stacked")

    def _column(self, sections: Sequence[HelpSection]) -> str:
        return "\n\n".join(section_markup(s, self.app.get_key_display) for s in sections)

    @property
    def text(self) -> str:
        """The help as plain text (what the operator reads)."""
        return "\n".join(str(s.render()) for s in self.query(Static))
