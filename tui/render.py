"""Plain-text rendering of tasks for the command line (no Textual here)."""

from __future__ import annotations

from datetime import datetime

from core.models import Task, TaskEvent, utcnow

PROMPT_WIDTH = 40


def short_id(task_id: str) -> str:
    return task_id[:8]


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """A compact age such as `42s`, `7m`, `3h` or `2d`."""
    if moment is None:
        return "-"
    seconds = max(0, int(((now or utcnow()) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def span(seconds: float) -> str:
    """A span in its two largest units, such as `2m 53s`, `1h 4m` or `9s`."""
    left = max(0, int(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count or parts:
            parts.append(f"{count}{unit}")
    top = parts[:2]
    if len(top) == 2 and top[1].startswith("0"):
        top.pop()
    return " ".join(top) or "0s"


def relative(moment: datetime, now: datetime) -> str:
    """`3m 12s ago` for the past, `in 2m 53s` for the future."""
    seconds = (moment - now).total_seconds()
    return f"in {span(seconds)}" if seconds >= 1 else f"{span(-seconds)} ago"


def truncate(text: str | None, width: int) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def task_table(tasks: list[Task]) -> str:
    if not tasks:
        return "no tasks"
    header = ("ID", "STATUS", "PROG", "MODEL", "DUR", "ASPECT", "TRY", "AGE", "PROMPT / ERROR")
    rows = [header] + [
        (
            short_id(task.id),
            task.status.value,
            f"{task.progress}%",
            task.model,
            f"{task.duration}s" + (" hd" if task.hd else ""),
            task.aspect_ratio,
            str(task.attempt),
            age(task.created_at),
            truncate(task.error_message or task.prompt, PROMPT_WIDTH),
        )
        for task in tasks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def task_detail(task: Task, history: list[TaskEvent]) -> str:
    fields = [
        ("id", task.id),
        ("status", f"{task.status} ({task.progress}%)"),
        ("attempt", str(task.attempt)),
        (
            "request",
            f"{task.model}, {task.duration}s, {task.aspect_ratio}" + (", hd" if task.hd else ""),
        ),
        ("prompt", task.prompt),
        ("images", ", ".join(task.images) or "-"),
        ("upstream id", task.upstream_task_id or "-"),
        ("upstream status", task.upstream_status or "-"),
        ("polls", str(task.polls)),
        ("video", task.video_url or "-"),
        ("error", task.error_message or "-"),
        ("created", _stamp(task.created_at)),
        ("started", _stamp(task.started_at)),
        ("completed", _stamp(task.completed_at)),
    ]
    lines = [f"{name:>16}: {value}" for name, value in fields]
    lines += ["", "history:"] + [f"  {describe_event(event)}" for event in history]
    return "\n".join(lines)


def describe_event(event: TaskEvent) -> str:
    """One line of history, e.g. `12:00:03 attempt 1 poll IN_PROGRESS 37% (HTTP 200, 84 ms)`."""
    parts = [event.at.strftime("%H:%M:%S"), f"attempt {event.attempt}"]
    if event.kind == "poll":
        parts += ["poll", event.upstream_status or "error"]
        if event.progress is not None:
            parts.append(f"{event.progress}%")
        http = f"HTTP {event.http_status}" if event.http_status else "no answer"
        parts.append(f"({http}, {event.latency_ms or 0:.0f} ms)")
    else:
        source = event.from_status.value if event.from_status else "new"
        parts.append(f"{source} -> {event.to_status.value if event.to_status else '?'}")
        if event.actor:
            parts.append(f"by {event.actor}")
    if event.detail:
        parts.append(f"- {event.detail}")
    return " ".join(parts)


def _stamp(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"
