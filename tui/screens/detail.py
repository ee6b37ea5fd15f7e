"""Everything about one task: the full request, the result, and its history; it can act too."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import ClassVar

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from core.lateness import lateness
from core.models import Task, TaskEvent
from core.service import TaskDetail
from core.text import one_line, visible_lines
from tui.i18n import t, tc
from tui.keys import speak
from tui.render import (
    describe_event,
    image_summary,
    relative,
    request_text,
    span,
    stamp,
    status_word,
    timing_line,
)
from tui.state.task_cells import status_label
from tui.widgets.status_header import STATUS_CLASSES
from tui.widgets.styled import styled

Styler = Callable[[str, str], str]


def stamp_with_age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    return f"{stamp(moment)} [dim]({relative(moment, now)})[/]"


def timing_markup(task: Task, now: datetime, style: Styler, speedup: float) -> str:
    """The job against the provider's range, its overdue or stalled mark in the warning style."""
    return timing_line(lateness(task, now, speedup), lambda marks: style("detail--late", marks))


def queue_time(task: Task, now: datetime) -> str:
    """How long the attempt waited before the upstream took it (so far, if it still waits)."""
    if task.started_at is None and not task.status.active:
        return "-"
    return span(((task.started_at or now) - task.queued_at).total_seconds())


def field_lines(
    task: Task, now: datetime, style: Styler, speedup: float = 1.0
) -> list[tuple[str, str]]:
    """(label, markup) pairs for every request and bookkeeping field of the row."""
    status = style(f"status--{task.status}", status_label(task.status))
    version = t("version {n}", n=task.version)
    return [
        (t("id"), task.id),
        (t("status"), f"{status} ({task.progress}%)"),
        (t("attempt"), str(task.attempt)),
        (t("request"), request_text(task)),
        (t("images"), image_summary(task)),
        (t("upstream id"), escape(task.upstream_task_id or "-")),
        (t("upstream status"), escape(one_line(task.upstream_status) or "-")),
        (t("polls"), str(task.polls)),
        (t("timing"), timing_markup(task, now, style, speedup)),
        (t("in queue"), queue_time(task, now)),
        (t("created"), stamp_with_age(task.created_at, now)),
        (tc("when", "queued"), stamp_with_age(task.queued_at, now)),
        (t("started"), stamp_with_age(task.started_at, now)),
        (t("completed"), stamp_with_age(task.completed_at, now)),
        (t("last poll"), stamp_with_age(task.last_polled_at, now)),
        (t("next poll"), stamp_with_age(task.next_poll_at if task.status.active else None, now)),
        (tc("when", "updated"), stamp_with_age(task.updated_at, now) + f" [dim]{version}[/]"),
    ]


class DetailScreen(ModalScreen[None]):
    """A full view of one task; follows the task live and ticks its times while it is open."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close", id="detail-close", tooltip="Back to the table"),
        Binding("c", "act('cancel')", "Cancel", id="detail-cancel", tooltip="Cancel this task"),
        Binding("r", "act('retry')", "Retry", id="detail-retry", tooltip="Retry this task"),
        Binding("y", "copy_url", "Copy URL", id="detail-copy-url", tooltip="Copy the video URL"),
        Binding("i", "copy_id", "Copy id", id="detail-copy-id", tooltip="Copy the task id"),
        Binding(
            "o", "open_url", "Open video", id="detail-open", tooltip="Open the video in a browser"
        ),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        *STATUS_CLASSES,
        "detail--video",
        "detail--error",
        "detail--late",
    }

    class Loaded(Message):
        """The task's row and history arrived from the store."""

        def __init__(self, detail: TaskDetail) -> None:
            super().__init__()
            self.detail = detail

    class Act(Message):
        """The operator asked to cancel or retry the task shown (the app asks and does it)."""

        def __init__(self, action: str, task: Task) -> None:
            super().__init__()
            self.action = action
            self.task = task

    def __init__(self, task: Task, clock: Callable[[], datetime], speedup: float = 1.0) -> None:
        super().__init__()
        speak(self)
        self.current = task
        self.history: list[TaskEvent] | None = None
        self._clock = clock
        self._speedup = speedup

    @property
    def task_id(self) -> str:
        return self.current.id

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail"):
            yield Static(id="detail-title")
            yield Static(id="detail-fields")
            yield Static(t("Prompt"), classes="detail-heading")
            yield Static(id="detail-prompt", markup=False)
            yield Static(t("Result"), classes="detail-heading")
            yield Static(id="detail-result")
            yield Static(t("History"), classes="detail-heading")
            yield Static(id="detail-history", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._render_task()
        # Relative times and the next-poll countdown move with the clock.
        self.set_interval(1.0, self._render_task)

    def on_detail_screen_loaded(self, message: Loaded) -> None:
        if message.detail.task.version >= self.current.version:
            self.current = message.detail.task
        self.history = message.detail.history
        self._render_task()

    def show_task(self, task: Task) -> None:
        """Show a newer row the live feed delivered."""
        if task.version > self.current.version:
            self.current = task
            self._render_task()

    def action_act(self, action: str) -> None:
        self.post_message(self.Act(action, self.current))

    def action_copy_url(self) -> None:
        if url := self._video_url():
            self.app.copy_to_clipboard(url)
            self.notify(t("video URL copied to the clipboard"))

    def action_copy_id(self) -> None:
        self.app.copy_to_clipboard(self.current.id)
        self.notify(t("task id {id} copied to the clipboard", id=self.current.id))

    def action_open_url(self) -> None:
        url = self._video_url()
        opener = getattr(self.app, "open_in_browser", None)
        if url and opener is not None:
            if opener(url):
                self.notify(t("video opened in the browser"))
            else:
                self.notify(
                    t("no browser to open here; the video is at {url}", url=url), timeout=20
                )

    def _video_url(self) -> str | None:
        if not self.current.video_url:
            self.notify(
                t(
                    "task {id} has no video URL yet ({status})",
                    id=self.current.id[:8],
                    status=status_word(self.current.status),
                ),
                severity="warning",
            )
        return self.current.video_url

    def _styled(self, name: str, text: str) -> str:
        return styled(self, name, text)

    def _render_task(self) -> None:
        task, now = self.current, self._clock()
        status = self._styled(f"status--{task.status}", status_label(task.status))
        self.query_one("#detail-title", Static).update(
            t(
                "[b]Task {id}[/]  {status}  attempt {attempt}",
                id=task.id[:8],
                status=status,
                attempt=task.attempt,
            )  # fmt: skip
        )
        fields = field_lines(task, now, self._styled, self._speedup)
        # Labels right-aligned by terminal cells: a Chinese label's characters take two each.
        width = max(cell_len(label) for label, _ in fields)
        lines = [
            f"[dim]{' ' * (width - cell_len(label))}{label}[/]  {value}" for label, value in fields
        ]
        self.query_one("#detail-fields", Static).update("\n".join(lines))
        self.query_one("#detail-prompt", Static).update(visible_lines(task.prompt))
        self.query_one("#detail-result", Static).update(result_markup(task, self._styled))
        self.query_one("#detail-history", Static).update(self._history_text())

    def _history_text(self) -> str:
        if self.history is None:
            return t("loading…")
        return "\n".join(describe_event(event) for event in self.history) or t("no events recorded")


def result_markup(task: Task, style: Styler) -> str:
    lines = []
    if task.video_url:
        video = style("detail--video", t("video"))
        hint = t("(y copies it, o opens it)")
        lines.append(f"{video}  {escape(task.video_url)}  [dim]{hint}[/]")
    if task.error_message:
        error = style("detail--error", t("error"))
        lines.append(f"{error}  {escape(visible_lines(task.error_message))}")
    return "\n".join(lines) or f"[dim]{t('no result yet')}[/]"
