"""The live task table: a virtual list that renders only the rows on screen.

Textual's DataTable re-renders every visible cell after any single cell update (its caches are keyed
on a table-wide update counter) and measures every new row, which at 10,000 rows and hundreds of
events a second costs 65-120 ms a frame and seconds per view switch. Here each row is one cached
Strip keyed by the task's version: an event re-renders only its own row, and a view switch is a
sort of ids.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from core.lateness import stalled
from core.models import Task, TaskStatus
from tui.i18n import N_, t
from tui.keys import speak
from tui.render import age, ellipsize
from tui.state.task_book import TaskBook
from tui.state.task_cells import (
    PADDING,
    SORT_MARK,
    Fragments,
    cell_fragments,
    column_widths,
    fitting_columns,
    mark_fragments,
)
from tui.state.wording import empty_table_text


class TaskTable(ScrollView, can_focus=True):
    """The tasks a TaskBook shows, in its order, one line each under a fixed header line."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "choose", "Details", tooltip="Open the task under the cursor", id="open"),
        Binding("up,k", "cursor_up", "Up", show=False, tooltip="Move up a row"),
        Binding("down,j", "cursor_down", "Down", show=False, tooltip="Move down a row"),
        Binding("pageup,ctrl+u", "page_up", "Page up", show=False, tooltip="Move up a page"),
        Binding("pagedown,ctrl+d", "page_down", "Page down", show=False, tooltip="Down a page"),
        Binding("home,g", "first", "First", show=False, tooltip="Go to the first row"),
        Binding("end,G", "last", "Last", show=False, tooltip="Go to the last row"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        *(f"task-table--{status}" for status in TaskStatus),
        "task-table--header",
        "task-table--cursor",
        "task-table--cursor-mark",
        "task-table--zebra",
        "task-table--selected",
        "task-table--bar-empty",
        "task-table--error",
        "task-table--dim",
        "task-table--late",
    }

    class CursorMoved(Message):
        """The cursor is on another task (or none)."""

        def __init__(self, task_id: str | None) -> None:
            super().__init__()
            self.task_id = task_id

    class Chosen(Message):
        """The operator pressed enter (or double-clicked) on a task."""

        def __init__(self, task_id: str) -> None:
            super().__init__()
            self.task_id = task_id

    def __init__(self, book: TaskBook, clock: Callable[[], datetime], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        speak(self)
        self.book = book
        self._clock = clock
        self._ids: list[str] = []
        self._keys: list[Any] = []
        self._key_of: dict[str, Any] = {}
        self._status_of: dict[str, TaskStatus] = {}
        self.shown_statuses: Counter[TaskStatus] = Counter()
        self.cursor_row = 0
        # Until the operator moves the cursor it stays on the top row, where new tasks arrive.
        self.cursor_touched = False
        self._columns = fitting_columns(0)
        self._widths = column_widths(0, self._columns)
        # A few screens of rows: enough for scrolling back and forth, small for the collector.
        self._strips: LRUCache[tuple[Any, ...], Strip] = LRUCache(256)
        self._styles: dict[str, Style] = {}

    # --- what the table shows ------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._ids)

    @property
    def shown_ids(self) -> list[str]:
        """Task ids in table order (top to bottom)."""
        return list(self._ids)

    @property
    def cursor_task_id(self) -> str | None:
        return self._ids[self.cursor_row] if self._ids else None

    def index_of(self, task_id: str) -> int | None:
        """The row a task is on, or None if the view does not show it."""
        key = self._key_of.get(task_id)
        return None if key is None else bisect_left(self._keys, key)

    def row_text(self, index: int) -> str:
        """The plain text of one row, as the operator reads it ("" past the last row)."""
        return self._row_strip(index).text.rstrip() if 0 <= index < len(self._ids) else ""

    def rebuild(self) -> None:
        """Show exactly the book's rows in its order (after a view, search or snapshot change)."""
        keep = self.cursor_task_id
        rows = self.book.keyed_rows()
        self._ids = [task.id for _, task in rows]
        self._keys = [key for key, _ in rows]
        self._key_of = dict(zip(self._ids, self._keys, strict=True))
        self._status_of = {task.id: task.status for _, task in rows}
        self.shown_statuses = Counter(self._status_of.values())
        self._settle(keep)

    def resort(self) -> None:
        """Order the shown rows by the book's current sort."""
        keep = self.cursor_task_id
        sort_key, tasks = self.book.sort_key, self.book.tasks
        pairs = sorted((sort_key(tasks[task_id]), task_id) for task_id in self._ids)
        self._keys = [key for key, _ in pairs]
        self._ids = [task_id for _, task_id in pairs]
        self._key_of = dict(zip(self._ids, self._keys, strict=True))
        self._settle(keep)

    def apply(self, changed: Iterable[str]) -> None:
        """Move, add or drop the rows of `changed` tasks in place, keeping the cursor's task."""
        keep = self.cursor_task_id
        keep_line = self.cursor_row - int(self.scroll_y)
        for task_id in changed:
            task = self.book.tasks.get(task_id)
            key = self.book.sort_key(task) if task and self.book.visible(task) else None
            old = self._key_of.get(task_id)
            if old != key:
                if old is not None:
                    self._drop(task_id, old)
                if key is not None and task is not None:
                    self._insert(task, key)
            elif task is not None and key is not None:
                self._count(task_id, task.status)
        self._settle(keep, keep_line)

    def _insert(self, task: Task, key: Any) -> None:
        index = bisect_left(self._keys, key)
        self._keys.insert(index, key)
        self._ids.insert(index, task.id)
        self._key_of[task.id] = key
        self._count(task.id, task.status)

    def _drop(self, task_id: str, key: Any) -> None:
        index = bisect_left(self._keys, key)
        del self._keys[index], self._ids[index], self._key_of[task_id]
        self.shown_statuses[self._status_of.pop(task_id)] -= 1

    def _count(self, task_id: str, status: TaskStatus) -> None:
        old = self._status_of.get(task_id)
        if old is not status:
            if old is not None:
                self.shown_statuses[old] -= 1
            self.shown_statuses[status] += 1
            self._status_of[task_id] = status

    def _settle(self, keep: str | None, keep_line: int | None = None) -> None:
        """Put the cursor back on `keep` and, away from the top, keep it on the same screen line."""
        width = sum(self._widths) + 2 * PADDING * len(self._columns)
        self.virtual_size = Size(width, len(self._ids) + 1)
        if not self.cursor_touched:
            self.cursor_row = 0
        elif keep is not None and keep in self._key_of:
            self.cursor_row = bisect_left(self._keys, self._key_of[keep])
            if keep_line is not None and self.scroll_y > 0 and 0 <= keep_line < self._page():
                self.scroll_to(y=max(0, self.cursor_row - keep_line), animate=False, immediate=True)
        self.cursor_row = max(0, min(self.cursor_row, len(self._ids) - 1))
        self._scroll_to_cursor()
        if self.cursor_task_id != keep:
            self.post_message(self.CursorMoved(self.cursor_task_id))
        self.refresh()

    # --- cursor --------------------------------------------------------------------------

    def move_cursor(self, row: int) -> None:
        """Put the cursor on `row` (clamped) and scroll it into view; it then stays on its task."""
        self.cursor_touched = True
        before = self.cursor_task_id
        self.cursor_row = max(0, min(row, len(self._ids) - 1))
        self._scroll_to_cursor()
        self.refresh()
        if self.cursor_task_id != before:
            self.post_message(self.CursorMoved(self.cursor_task_id))

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_to_cursor(self) -> None:
        top, page = int(self.scroll_y), self._page()
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + page:
            self.scroll_to(y=self.cursor_row - page + 1, animate=False, immediate=True)

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor_row + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self.cursor_row - self._page())

    def action_page_down(self) -> None:
        self.move_cursor(self.cursor_row + self._page())

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self._ids) - 1)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # With no row, enter goes on to the app, which says why nothing opens.
        return None if action == "choose" and not self._ids else True

    def action_choose(self) -> None:
        if self.cursor_task_id is not None:
            self.post_message(self.Chosen(self.cursor_task_id))

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return
        self.move_cursor(int(self.scroll_y) + event.y - 1)
        if event.chain == 2:
            self.action_choose()

    # --- rendering -----------------------------------------------------------------------

    @property
    def column_keys(self) -> tuple[str, ...]:
        """The columns shown at the current width, left to right."""
        return tuple(c.key for c in self._columns)

    def on_resize(self) -> None:
        width = self.scrollable_content_region.width
        self._columns = fitting_columns(width)
        self._widths = column_widths(width, self._columns)
        self._strips.clear()
        self._settle(self.cursor_task_id)

    def on_focus(self) -> None:
        self._styles.clear()
        self.refresh()

    def on_blur(self) -> None:
        self._styles.clear()
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._strips.clear()

    def _style(self, name: str) -> Style:
        if name not in self._styles:
            self._styles[name] = self.get_component_rich_style(f"task-table--{name}", partial=True)
        return self._styles[name]

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        index = scroll_y + y - 1
        if y == 0:
            strip = self._header_strip()
        elif index < len(self._ids):
            strip = self._row_strip(index)
        elif not self._ids and 2 <= y < 2 + len(lines := self.empty_text):
            strip = self._line([[(lines[y - 2], "dim")]], Style(), widths=(width - 2 * PADDING,))
        else:
            return Strip.blank(width, self.rich_style)
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _header_strip(self) -> Strip:
        key = ("header", self.book.sort.column, self._widths)
        if key not in self._strips:
            labels: list[Fragments] = [
                [(t(c.label) + (SORT_MARK if c.key == self.book.sort.column else ""), "")]
                for c in self._columns
            ]
            self._strips[key] = self._line(labels, self._style("header"))
        return self._strips[key]

    def _row_strip(self, index: int) -> Strip:
        task = self.book.tasks[self._ids[index]]
        now = self._clock()
        ages = (age(task.created_at, now), age(task.updated_at, now))
        late = self._late_word(task)
        selected = task.id in self.book.selected
        cursor = index == self.cursor_row
        key = (
            task.id,
            task.version,
            ages,
            late,
            selected,
            cursor,
            index % 2,
            self.has_focus,
            self._widths,
        )
        strip = self._strips.get(key)
        if strip is None:
            cells = [
                mark_fragments(cursor, selected)
                if c.key == "mark"
                else cell_fragments(c.key, task, ages, late)
                for c in self._columns
            ]
            base = self._style("zebra") if index % 2 else Style()
            strip = self._line(cells, base, self._style("cursor") if cursor else None)
            self._strips[key] = strip
        return strip

    def _late_word(self, task: Task) -> str:
        if task.status is not TaskStatus.RUNNING:
            return ""
        if self.book.is_overdue(task):
            return N_("overdue")
        return N_("stalled") if stalled(task) else ""

    @property
    def empty_text(self) -> list[str]:
        """What the table says while it shows no row."""
        return empty_table_text(bool(self.book.tasks), self.book.view.value, self.book.search)

    def _line(
        self,
        cells: list[Fragments],
        base: Style,
        over: Style | None = None,
        widths: tuple[int, ...] | None = None,
    ) -> Strip:
        """One line of padded cells; `over` (the cursor) wins over every cell's own colours."""
        root = self.rich_style + base
        segments: list[Segment] = []
        for fragments, width in zip(cells, widths or self._widths, strict=True):
            pad = Segment(" " * PADDING, root + over if over else root)
            segments.append(pad)
            segments.extend(self._fit(fragments, width, root, over))
            segments.append(pad)
        return Strip(segments)

    def _fit(
        self, fragments: Fragments, width: int, root: Style, over: Style | None
    ) -> list[Segment]:
        out: list[Segment] = []
        used = 0
        for text, name in fragments:
            room = width - used
            if room <= 0:
                break
            if len(fragments) == 1:
                text = ellipsize(text, room)
            elif cell_len(text) > room:
                text = set_cell_size(text, room)
            style = root + self._style(name) if name else root
            out.append(Segment(text, style + over if over else style))
            used += cell_len(text)
        if used < width:
            out.append(Segment(" " * (width - used), root + over if over else root))
        return out
