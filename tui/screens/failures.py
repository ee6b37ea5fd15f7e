"""Failures of the last day grouped by reason, newest group example first; `R` retries a group."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import ClassVar

from rich.cells import cell_len
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from core.insight import FailureGroup, Stats
from tui.i18n import N_, t, tn
from tui.keys import speak
from tui.render import age, ellipsize, short_id

WINDOW = timedelta(hours=24)
TITLE = N_("[b]Failures by reason[/], last 24 hours  [dim](R retries a group's failed tasks)[/]")
# The legend's columns: each as wide as its label, at least as wide as the values below it.
LEGEND = (N_("COUNT"), N_("RETRIED OK"), N_("NEWEST"))
LEAST = (5, 10, 6)


def legend_widths() -> list[int]:
    """The width in cells of each column before the reason, in the interface's language."""
    return [max(least, cell_len(t(label))) for label, least in zip(LEGEND, LEAST, strict=True)]


def right(text: str, width: int) -> str:
    """`text` right-aligned in `width` terminal cells."""
    return " " * max(0, width - cell_len(text)) + text


def legend_line() -> str:
    """The legend over the groups, aligned with group_line."""
    cells = [right(t(label), w) for label, w in zip(LEGEND, legend_widths(), strict=True)]
    return "  ".join([*cells, t("REASON")])


def group_line(group: FailureGroup, now: datetime, width: int) -> str:
    """Count, how many a retry recovered, the newest one's age, and the reason, aligned with
    the legend."""
    values = (str(group.count), str(group.recovered), age(group.newest_at, now))
    head = "".join(right(v, w) + "  " for v, w in zip(values, legend_widths(), strict=True))
    return head + ellipsize(group.reason, max(10, width - cell_len(head)))


class FailuresScreen(ModalScreen[FailureGroup | None]):
    """The failure groups; dismisses with the group to retry (the app confirms first)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Close", id="failures-close", tooltip="Back"),
        Binding(
            "R",
            "retry_group",
            "Retry group",
            id="failures-retry",
            tooltip="Retry every task still failed with the highlighted reason (asks first)",
        ),
    ]

    def __init__(
        self, load: Callable[[datetime], Awaitable[Stats]], clock: Callable[[], datetime]
    ) -> None:
        super().__init__()
        speak(self)
        self._load = load
        self._clock = clock
        self.groups: list[FailureGroup] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="failures"):
            yield Static(t(TITLE), id="failures-title")
            yield Static("", id="failures-legend")
            yield OptionList(id="failures-list")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#failures-legend", Static).update(t("loading…"))
        self._fetch()

    @work(exclusive=True, group="failures")
    async def _fetch(self) -> None:
        stats = await self._load(self._clock() - WINDOW)
        self.show_groups(stats.failures)

    def show_groups(self, groups: list[FailureGroup]) -> None:
        self.groups = groups
        legend = self.query_one("#failures-legend", Static)
        listing = self.query_one("#failures-list", OptionList)
        listing.clear_options()
        if not groups:
            legend.update(t("No task failed in the last 24 hours."))
            return
        legend.update(f"[dim]{legend_line()}[/]")
        width = max(20, self.size.width - 8)
        now = self._clock()
        listing.add_options(Option(group_line(group, now, width)) for group in groups)
        listing.highlighted = 0
        listing.focus()

    def action_retry_group(self) -> None:
        listing = self.query_one("#failures-list", OptionList)
        if not self.groups or listing.highlighted is None:
            self.notify(t("no failure group to retry"), severity="warning")
            return
        group = self.groups[listing.highlighted]
        if not group.failed_now:
            self.notify(
                tn(
                    "the {count} failure with this reason is not failed now (newest: {newest})",
                    "none of the {count} failures with this reason is failed now "
                    "(newest: {newest})",
                    group.count,
                    newest=short_id(group.example_task),
                ),
                severity="warning",
            )
            return
        self.dismiss(group)
