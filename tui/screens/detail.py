"""Everything about one task: the full request, the result, and its history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from core.models import Task, TaskEvent
from core.service import TaskDetail
from tui.render import age, describe_event
from tui.widgets.status_header import STATUS_COLOURS


def stamp(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC [dim]({age(moment, now)} ago)[/]"


def field_lines(task: Task, now: datetime) -> list[tuple[str, str]]:
    """(label, markup) pairs for every request and bookkeeping field of the row."""
    request = f"{task.model}, {task.duration}s, {task.aspect_ratio}" + (", hd" if task.hd else "")
    images = "\n".join(escape(image[:120]) for image in task.images) or "-"
    return [
        ("id", task.id),
        ("status", f"[{STATUS_COLOURS[task.status]}]{task.status.value}[/] ({task.progress}%)"),
        ("attempt", str(task.attempt)),
        ("request", request),
        ("images", images),
        ("upstream id", escape(task.upstream_task_id or "-")),
        ("upstream status", escape(task.upstream_status or "-")),
        ("polls", str(task.polls)),
        ("created", stamp(task.created_at, now)),
        ("queued", stamp(task.queued_at, now)),
        ("started", stamp(task.started_at, now)),
        ("completed", stamp(task.completed_at, now)),
        ("last poll", stamp(task.last_polled_at, now)),
        ("next poll", stamp(task.next_poll_at, now)),
        ("updated", stamp(task.updated_at, now) + f" [dim]version {task.version}[/]"),
    ]


class DetailScreen(ModalScreen[None]):
    """A full view of one task; follows the task live while it is open."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("y", "copy_url", "Copy video URL"),
    ]

    class Loaded(Message):
        """The task's row and history arrived from the store."""

        def __init__(self, detail: TaskDetail) -> None:
            super().__init__()
            self.detail = detail

    def __init__(self, task: Task, clock: Callable[[], datetime]) -> None:
        super().__init__()
        self.current = task
        self.history: list[TaskEvent] | None = None
        self._clock = clock

    @property
    def task_id(self) -> str:
        return self.current.id

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail"):
            yield Static(id="detail-title")
            yield Static(id="detail-fields")
            yield Static("Prompt", classes="detail-heading")
            yield Static(id="detail-prompt", markup=False)
            yield Static("Result", classes="detail-heading")
            yield Static(id="detail-result")
            yield Static("History", classes="detail-heading")
            yield Static(id="detail-history", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._render_task()

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

    def action_copy_url(self) -> None:
        if not self.current.video_url:
            self.notify("this task has no video URL yet", severity="warning")
            return
        self.app.copy_to_clipboard(self.current.video_url)
        self.notify("video URL copied to the clipboard")

    def _render_task(self) -> None:
        task, now = self.current, self._clock()
        colour = STATUS_COLOURS[task.status]
        self.query_one("#detail-title", Static).update(
            f"[b]Task {task.id[:8]}[/]  [{colour}]● {task.status.value}[/]  attempt {task.attempt}"
        )
        width = max(len(label) for label, _ in field_lines(task, now))
        lines = [f"[dim]{label:>{width}}[/]  {value}" for label, value in field_lines(task, now)]
        self.query_one("#detail-fields", Static).update("\n".join(lines))
        self.query_one("#detail-prompt", Static).update(task.prompt)
        self.query_one("#detail-result", Static).update(result_markup(task))
        self.query_one("#detail-history", Static).update(self._history_text())

    def _history_text(self) -> str:
        if self.history is None:
            return "loading…"
        return "\n".join(describe_event(event) for event in self.history) or "no events recorded"


def result_markup(task: Task) -> str:
    lines = []
    if task.video_url:
        lines.append(f"[$success]video[/]  {escape(task.video_url)}  [dim](y copies it)[/]")
    if task.error_message:
        lines.append(f"[$error]error[/]  {escape(task.error_message)}")
    return "\n".join(lines) or "[dim]no result yet[/]"
