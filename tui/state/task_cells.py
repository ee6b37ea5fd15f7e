"""What one table row shows: the columns, their widths, and the styled text of each cell."""

from __future__ import annotations

from dataclasses import dataclass

from core.models import Task, TaskStatus
from tui.i18n import EN, N_, language, t
from tui.render import duration_text, short_id, status_word


@dataclass(frozen=True)
class Column:
    key: str
    label: str  # English, the catalog's key (N_), translated when the header is drawn
    width: int  # for flexible columns: the least width
    flex: float = 0.0  # share of the width left over by the fixed columns
    drop: int = 0  # narrow terminals drop the highest numbers first; 0 never goes
    cjk_width: int = 0  # the width when the interface's words take two cells a character

    @property
    def cells(self) -> int:
        """The width in the interface's language (Chinese units such as 小时 are wider)."""
        return self.cjk_width if self.cjk_width and language() != EN else self.width


COLUMNS: tuple[Column, ...] = (
    Column("mark", "", 2),
    Column("id", N_("ID"), 8),
    Column("status", N_("STATUS"), 11),
    Column("progress", N_("PROGRESS"), 15),
    Column("model", N_("MODEL"), 10, drop=5),
    Column("duration", N_("DUR"), 6, drop=4, cjk_width=7),
    Column("aspect", N_("RATIO"), 5, drop=7),
    Column("prompt", N_("PROMPT"), 16, flex=0.6),
    Column("attempt", N_("TRY"), 3, drop=3, cjk_width=4),
    Column("age", N_("AGE"), 5, drop=2, cjk_width=6),
    Column("updated", N_("UPDATED"), 9, drop=6),
    Column("error", N_("ERROR"), 12, flex=0.4),
)
PADDING = 1
BAR_WIDTH = 10
SORT_MARK = " ▼"
CURSOR_MARK = "▶"
SELECTED_MARK = "●"
# One glyph per status, so statuses read apart where colours do not (NO_COLOR, 16 colours).
STATUS_GLYPHS = {
    TaskStatus.QUEUED: "○",
    TaskStatus.RUNNING: "◔",
    TaskStatus.SUCCEEDED: "✓",
    TaskStatus.FAILED: "✗",
    TaskStatus.CANCELLED: "⊘",
}

Fragments = list[tuple[str, str]]  # (text, style name)


def status_label(status: TaskStatus) -> str:
    """The status as the table, header and detail show it: glyph and word."""
    return f"{STATUS_GLYPHS[status]} {status_word(status)}"


def _room(columns: tuple[Column, ...]) -> int:
    return sum(c.cells + 2 * PADDING for c in columns)


def fitting_columns(total: int) -> tuple[Column, ...]:
    """The columns that fit in `total` cells, dropping the least needed first."""
    shown = COLUMNS
    for rank in sorted({c.drop for c in COLUMNS if c.drop}, reverse=True):
        if _room(shown) <= total:
            break
        shown = tuple(c for c in shown if c.drop != rank)
    return shown


def column_widths(total: int, columns: tuple[Column, ...] = COLUMNS) -> tuple[int, ...]:
    """Widths that fill `total` cells: fixed columns as declared, the rest shared by flex."""
    spare = max(0, total - _room(columns))
    widths = [c.cells + int(spare * c.flex) for c in columns]
    last_flex = max(i for i, c in enumerate(columns) if c.flex)
    widths[last_flex] += spare - sum(int(spare * c.flex) for c in columns)
    return tuple(widths)


def mark_fragments(cursor: bool, selected: bool) -> Fragments:
    """The marker column: where the cursor is and what is selected, without relying on colour."""
    return [
        (CURSOR_MARK if cursor else " ", "cursor-mark"),
        (SELECTED_MARK if selected else " ", "selected"),
    ]


def cell_fragments(key: str, task: Task, ages: tuple[str, str], late: str = "") -> Fragments:
    """The styled pieces of one cell; style names are the table's component classes.

    `late` is `overdue` or `stalled` (English, the catalog's key) for a running task an operator
    should look at: the status cell says so in place of `running` (the glyph still says running).
    """
    status = task.status.value
    if key == "id":
        return [(short_id(task.id), "")]
    if key == "status":
        if late:
            return [(f"{STATUS_GLYPHS[task.status]} {t(late)}", "late")]
        return [(status_label(task.status), status)]
    if key == "progress":
        percent = 100 if task.status is TaskStatus.SUCCEEDED else max(0, min(task.progress, 100))
        filled = round(percent * BAR_WIDTH / 100)
        tail = "dim" if task.status.terminal else ""
        return [
            ("█" * filled, status),
            ("░" * (BAR_WIDTH - filled), "bar-empty"),
            (f" {percent:>3}%", tail),
        ]
    if key == "model":
        return [(task.model, "")]
    if key == "duration":
        return [(duration_text(task), "")]
    if key == "aspect":
        return [(task.aspect_ratio, "")]
    if key == "prompt":
        return [(task.prompt, "")]
    if key == "attempt":
        return [(str(task.attempt), "")]
    if key == "age":
        return [(ages[0], "dim")]
    if key == "updated":
        return [(t("{age} ago", age=ages[1]), "dim")]
    return [(task.error_message or "", "error")]
