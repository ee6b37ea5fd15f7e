"""What one table row shows: the columns, their widths, and the styled text of each cell."""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size

from core.models import Task, TaskStatus
from core.text import one_line
from tui.render import short_id


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int  # for flexible columns: the least width
    flex: float = 0.0  # share of the width left over by the fixed columns


COLUMNS: tuple[Column, ...] = (
    Column("sel", "", 1),
    Column("id", "ID", 8),
    Column("status", "STATUS", 9),
    Column("progress", "PROGRESS", 15),
    Column("model", "MODEL", 10),
    Column("duration", "DUR", 6),
    Column("aspect", "RATIO", 5),
    Column("prompt", "PROMPT", 16, flex=0.6),
    Column("attempt", "TRY", 3),
    Column("age", "AGE", 5),
    Column("updated", "UPDATED", 9),
    Column("error", "ERROR", 12, flex=0.4),
)
PADDING = 1
BAR_WIDTH = 10
SORT_MARK = " ▼"

Fragments = list[tuple[str, str]]  # (text, style name)


def column_widths(total: int) -> tuple[int, ...]:
    """Widths that fill `total` cells: fixed columns as declared, the rest shared by flex."""
    spare = max(0, total - sum(c.width for c in COLUMNS) - 2 * PADDING * len(COLUMNS))
    widths = [c.width + int(spare * c.flex) for c in COLUMNS]
    last_flex = max(i for i, c in enumerate(COLUMNS) if c.flex)
    widths[last_flex] += spare - sum(int(spare * c.flex) for c in COLUMNS)
    return tuple(widths)


def ellipsize(text: str | None, width: int) -> str:
    """One line of `text` in at most `width` cells, with an ellipsis when cut (wide-char safe)."""
    text = one_line(text)
    if cell_len(text) <= width:
        return text
    return set_cell_size(text, max(0, width - 1)).rstrip() + "…"


def cell_fragments(key: str, task: Task, ages: tuple[str, str], selected: bool) -> Fragments:
    """The styled pieces of one cell; style names are the table's component classes."""
    status = task.status.value
    if key == "sel":
        return [("●", "selected")] if selected else []
    if key == "id":
        return [(short_id(task.id), "")]
    if key == "status":
        return [(status, status)]
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
        return [(f"{task.duration}s" + (" hd" if task.hd else ""), "")]
    if key == "aspect":
        return [(task.aspect_ratio, "")]
    if key == "prompt":
        return [(task.prompt, "")]
    if key == "attempt":
        return [(str(task.attempt), "")]
    if key == "age":
        return [(ages[0], "dim")]
    if key == "updated":
        return [(ages[1] + " ago", "dim")]
    return [(task.error_message or "", "error")]
