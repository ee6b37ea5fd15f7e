"""Plain-text rendering of tasks for the command line (no Textual here)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len, set_cell_size

from core.dead_letters import short_dead_id
from core.errors import RowUnreadable
from core.models import Task, TaskEvent, TaskStatus, utcnow
from core.queue import DeadLetter
from core.text import one_line, visible_lines
from tui.i18n import N_, outside_text, t, tn

if TYPE_CHECKING:
    from core.insight import ModelStats, Stats
    from core.lateness import Lateness

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class VisibleFormatter(logging.Formatter):
    """The log format, control characters of a message (a prompt, a reason) removed."""

    def format(self, record: logging.LogRecord) -> str:
        return visible_lines(super().format(record))


"""How a log line reads, on the console and in the dashboard's worker log alike."""


def short_id(task_id: str) -> str:
    return task_id[:8]


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """A compact age such as `42s`, `7m`, `3h` or `2d`."""
    if moment is None:
        return "-"
    seconds = max(0, int(((now or utcnow()) - moment).total_seconds()))
    for unit, size in UNITS[:3]:
        if seconds >= size:
            return t(unit, n=seconds // size)
    return t(UNITS[3][0], n=seconds)


# Each unit of a time, largest first: `{n}d` reads `3d` in English, `3天` in Chinese.
UNITS = ((N_("{n}d"), 86400), (N_("{n}h"), 3600), (N_("{n}m"), 60), (N_("{n}s"), 1))


def span(seconds: float) -> str:
    """A span in its two largest units, such as `2m 53s`, `1h 4m` or `9s`."""
    left = max(0, int(seconds))
    counts: list[tuple[str, int]] = []
    for unit, size in UNITS:
        count, left = divmod(left, size)
        if count or counts:
            counts.append((unit, count))
    top = counts[:2]
    if len(top) == 2 and top[1][1] == 0:
        top.pop()
    parts = [t(unit, n=count) for unit, count in top] or [t("{n}s", n=0)]
    if len(parts) == 2:
        return t("{first} {second}", first=parts[0], second=parts[1])
    return parts[0]


def relative(moment: datetime, now: datetime) -> str:
    """`3m 12s ago` for the past, `in 2m 53s` for the future."""
    seconds = (moment - now).total_seconds()
    if seconds >= 1:
        return t("in {span}", span=span(seconds))
    return t("{span} ago", span=span(-seconds))


def ellipsize(text: str | None, width: int) -> str:
    """One line of `text` in at most `width` cells, with an ellipsis when cut (wide-char safe)."""
    text = one_line(text)
    if cell_len(text) <= width:
        return text
    return set_cell_size(text, max(0, width - 1)).rstrip() + "…"


def fit(text: str | None, width: int) -> str:
    """`text` cut or padded to exactly `width` cells."""
    return set_cell_size(ellipsize(text, width), width)


def status_word(status: TaskStatus | str) -> str:
    """A status as a person reads it (`--json` and the API keep the English code)."""
    return t(STATUS_WORDS[TaskStatus(status)])


STATUS_WORDS = {
    TaskStatus.QUEUED: N_("queued"),
    TaskStatus.RUNNING: N_("running"),
    TaskStatus.SUCCEEDED: N_("succeeded"),
    TaskStatus.FAILED: N_("failed"),
    TaskStatus.CANCELLED: N_("cancelled"),
}


def prune_counts(
    counts: Mapping[TaskStatus, int],
    statuses: Iterable[TaskStatus],
    before: datetime,
    *,
    done: bool,
) -> str:
    """What `prune` will delete (or deleted): the total, then the count of each status asked."""
    total = sum(counts[status] for status in statuses)
    each = t(", ").join(
        t("{count} {status}", count=counts[status], status=status_word(status))
        for status in statuses
    )
    moment = stamp(before)
    if done:
        return tn(
            "deleted: {count} finished task last changed before {moment} ({each}),"
            " with its history and images",
            "deleted: {count} finished tasks last changed before {moment} ({each}),"
            " with their history and images",
            total,
            moment=moment,
            each=each,
        )
    return tn(
        "to delete: {count} finished task last changed before {moment} ({each}),"
        " with its history and images",
        "to delete: {count} finished tasks last changed before {moment} ({each}),"
        " with their history and images",
        total,
        moment=moment,
        each=each,
    )


# Below this many columns `list` leaves out the model and the attempt.
WIDE_LIST = 110
GAP = "  "


def late_marks(late: Lateness | None) -> str:
    """`overdue`, `stalled` or both, for a task past its expected time or not progressing."""
    if late is None:
        return ""
    marks = ((N_("overdue"), late.overdue), (N_("stalled"), late.stalled))
    return t(",").join(t(word) for word, on in marks if on)


def task_json(task: Task, late: Lateness | None = None) -> dict[str, Any]:
    """The task's public columns, with whether it is overdue and stalled."""
    return {
        **task.public_dict(),
        "overdue": bool(late and late.overdue),
        "stalled": bool(late and late.stalled),
    }


def task_table(
    tasks: list[Task], width: int = 80, late: Mapping[str, Lateness] | None = None
) -> str:
    """Tasks as aligned columns that fit `width`, the prompt beside the error."""
    if not tasks:
        return t("no tasks")
    wide = width >= WIDE_LIST
    header = [t("ID"), t("STATUS"), t("PROG"), *([t("MODEL")] if wide else []), t("DUR")]
    header += [*([t("TRY")] if wide else []), t("AGE")]
    rows = [header] + [_list_cells(task, wide, (late or {}).get(task.id)) for task in tasks]
    widths = cell_widths(rows)
    room = max(20, width - sum(w + len(GAP) for w in widths) - len(GAP) - 1)
    has_error = any(task.error_message for task in tasks)
    prompt_room = room // 2 if has_error else room
    texts = [(t("PROMPT"), t("ERROR") if has_error else "")] + [
        (task.prompt, task.error_message or "") for task in tasks
    ]
    lines = []
    for cells, (prompt, error) in zip(rows, texts, strict=True):
        line = padded(cells, widths)
        line += fit(prompt, prompt_room)
        if has_error:
            line += GAP + ellipsize(error, room - prompt_room)
        lines.append(line.rstrip())
    return "\n".join(lines)


def unreadable_line(row: RowUnreadable, width: int = 80) -> str:
    """A row `list` could not decode: its whole id (no prefix finds it) and what is wrong."""
    start = f"{one_line(row.task_id)}{GAP}{t('unreadable')}{GAP}"
    return start + ellipsize(row.why, max(20, width - cell_len(start) - 1))


def _list_cells(task: Task, wide: bool, late: Lateness | None) -> list[str]:
    marks = late_marks(late)
    status = status_word(task.status) + (f" {marks}" if marks else "")
    cells = [short_id(task.id), status, f"{task.progress}%"]
    cells += [task.model] if wide else []
    cells.append(duration_text(task))
    cells += [str(task.attempt)] if wide else []
    return [*cells, age(task.created_at)]


def dead_cells(letter: DeadLetter, now: datetime | None = None) -> list[str]:
    """A dead letter's columns but the reason: id, task, step, last status, age."""
    status = "-" if letter.last_status is None else str(letter.last_status)
    task = letter.task_id if letter.task_id == "?" else short_id(letter.task_id)
    return [short_dead_id(letter.id), task, letter.step, status, age(letter.died_at, now)]


DEAD_HEADER = [N_("ID"), N_("TASK"), N_("STEP"), N_("HTTP"), N_("AGE")]


def dead_table(letters: list[DeadLetter], width: int = 80) -> str:
    """Dead letters as aligned columns that fit `width`, the reason of the last failure last."""
    if not letters:
        return t("no dead letters")
    rows = [[t(label) for label in DEAD_HEADER]] + [dead_cells(letter) for letter in letters]
    widths = cell_widths(rows)
    room = max(20, width - sum(w + len(GAP) for w in widths) - 1)
    reasons = [t("REASON")] + [letter.reason for letter in letters]
    return "\n".join(
        padded(cells, widths) + ellipsize(reason, room)
        for cells, reason in zip(rows, reasons, strict=True)
    )


def cell_widths(rows: Sequence[Sequence[str]]) -> list[int]:
    """Each column's width in terminal cells (a CJK character takes two), header included."""
    return [max(cell_len(row[i]) for row in rows) for i in range(len(rows[0]))]


def padded(cells: Sequence[str], widths: Sequence[int]) -> str:
    """Cells padded to their column's width in cells, each followed by the gap."""
    return "".join(set_cell_size(cell, w) + GAP for cell, w in zip(cells, widths, strict=True))


def duration_text(task: Task) -> str:
    """`10s`, or `25s hd` for a high-definition video."""
    return t("{seconds}s", seconds=task.duration) + (" hd" if task.hd else "")


def dead_dict(letter: DeadLetter) -> dict[str, object]:
    """A dead letter as `videoq dead --json` prints it."""
    died_at = None if letter.died_at is None else letter.died_at.isoformat()
    return {
        "id": letter.id,
        "task_id": letter.task_id,
        "step": letter.step,
        "died_at": died_at,
        "last_status": letter.last_status,
        "reason": letter.reason,
    }


def idle_summary(counts: Mapping[TaskStatus, int]) -> str:
    """The last line of `--until-idle`: how the tasks it saw ended."""
    ended = t(", ").join(
        t("{count} {status}", count=counts.get(status, 0), status=status_word(status))
        for status in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED)
    )
    return t("idle: {ended}", ended=ended)


def timing_line(late: Lateness, mark: Callable[[str], str] = str) -> str:
    """`expected 1m–3m; upstream for 4m 10s, overdue`: the job against the provider's range;
    `mark` styles the overdue/stalled words (the dashboard's warning style)."""
    line = t("expected {low}–{high}", low=span(late.expected_low), high=span(late.expected_high))
    if late.elapsed is not None:
        line += t("; upstream for {span}", span=span(late.elapsed))
    marks = late_marks(late).replace(t(","), t(", "))
    return t("{line}, {marks}", line=line, marks=mark(marks)) if marks else line


def task_detail(task: Task, history: list[TaskEvent], late: Lateness | None = None) -> str:
    fields = [
        (t("id"), task.id),
        (t("status"), f"{status_word(task.status)} ({task.progress}%)"),
        (t("attempt"), str(task.attempt)),
        (t("request"), request_text(task)),
        (t("prompt"), visible_lines(task.prompt)),
        (t("images"), image_summary(task)),
        (t("upstream id"), task.upstream_task_id or "-"),
        (t("upstream status"), one_line(task.upstream_status) or "-"),
        (t("polls"), str(task.polls)),
        *([(t("timing"), timing_line(late))] if late is not None else []),
        (t("video"), task.video_url or "-"),
        (t("error"), visible_lines(task.error_message) or "-"),
        (t("created"), stamp(task.created_at)),
        (t("started"), stamp(task.started_at)),
        (t("completed"), stamp(task.completed_at)),
    ]
    # Labels right-aligned by cells; continuation lines of a value line up under its first line.
    lines = [
        f"{' ' * (16 - cell_len(name))}{name}: {value}".replace("\n", "\n" + " " * 18)
        for name, value in fields
    ]
    lines += ["", t("history:")] + [f"  {describe_event(event)}" for event in history]
    return "\n".join(lines)


def request_text(task: Task) -> str:
    """`sora-2, 10s, 16:9` and `, hd` for a high-definition video."""
    seconds = t("{seconds}s", seconds=task.duration)
    return f"{task.model}, {seconds}, {task.aspect_ratio}" + (", hd" if task.hd else "")


def image_summary(task: Task) -> str:
    """How many images the task has and how large they are (the images stay in the store)."""
    if not task.image_count:
        return "-"
    return t("{count} ({size} bytes)", count=task.image_count, size=f"{task.image_bytes:,}")


def describe_event(event: TaskEvent) -> str:
    """One line of history, e.g. `12:00:03 attempt 1 poll IN_PROGRESS 37% (HTTP 200, 84 ms)`."""
    parts = [event.at.strftime("%H:%M:%S"), t("attempt {n}", n=event.attempt)]
    if event.kind == "poll":
        parts += [t("poll"), event.upstream_status or t("error")]
        if event.progress is not None:
            parts.append(f"{event.progress}%")
        http = f"HTTP {event.http_status}" if event.http_status else t("no answer")
        parts.append(t("({http}, {ms} ms)", http=http, ms=f"{event.latency_ms or 0:.0f}"))
    else:
        source = status_word(event.from_status) if event.from_status else t("new")
        parts.append(f"{source} -> {status_word(event.to_status) if event.to_status else '?'}")
        if event.actor:
            parts.append(t("by {actor}", actor=event.actor))
    if event.detail:
        parts.append(f"- {outside_text(event.detail)}")
    return one_line(" ".join(parts))


def stamp(moment: datetime | None) -> str:
    """A moment as every screen and command prints it (UTC, to the second), or "-"."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def stats_json(stats: Stats) -> dict[str, Any]:
    """`videoq stats --json`: the same figures as the report, machine-readable."""
    import dataclasses

    failures = [dataclasses.asdict(group) for group in stats.failures]
    models = [
        {**dataclasses.asdict(kind), "success_rate": kind.success_rate} for kind in stats.models
    ]
    return {
        "since": stats.since.isoformat(),
        "cut": stats.cut,
        "failures": [{**group, "newest_at": _iso(group["newest_at"])} for group in failures],
        "models": models,
    }


def stats_report(stats: Stats, width: int = 80) -> str:
    """`videoq stats`: failures by reason, then results per model and duration."""
    lines = [t("since {moment}", moment=stamp(stats.since))]
    if stats.cut:
        lines.append(t("(more tasks than one read takes: the figures cover the newest ones)"))
    lines += ["", t("failures by reason (RETRIED OK: failed so, then succeeded on a retry):")]
    rows: list[tuple[str, ...]] = [(t("COUNT"), t("RETRIED OK"), t("NEWEST"), t("REASON"))]
    rows += [
        (
            str(group.count),
            str(group.recovered),
            f"{short_id(group.example_task)} {age(group.newest_at)}",
            group.reason,
        )
        for group in stats.failures
    ]
    lines += columns(rows, width) if stats.failures else ["  " + t("none")]
    lines += ["", t("per model and duration (finished in the window; times from queued to done):")]
    rows = [(t("MODEL"), t("DUR"), t("DONE"), t("OK"), "P50", "P95", t("POLLS"), t("MSGS"))]
    rows += [_model_cells(kind) for kind in stats.models]
    lines += columns(rows, width) if stats.models else ["  " + t("none")]
    return "\n".join(line.rstrip() for line in lines)


def columns(rows: Sequence[tuple[str, ...]], width: int) -> list[str]:
    """Rows as indented aligned columns; the last one gets what is left of `width`, cut."""
    widths = cell_widths([row[:-1] for row in rows])
    fixed = 2 + sum(w + len(GAP) for w in widths)
    return ["  " + padded(row[:-1], widths) + ellipsize(row[-1], width - fixed - 1) for row in rows]


def _model_cells(kind: ModelStats) -> tuple[str, ...]:
    rate = kind.success_rate
    return (
        kind.model,
        t("{seconds}s", seconds=kind.duration),
        str(kind.finished),
        "-" if rate is None else f"{rate:.0%}",
        "-" if kind.p50_seconds is None else span(kind.p50_seconds),
        "-" if kind.p95_seconds is None else span(kind.p95_seconds),
        f"{kind.polls_per_task:.1f}",
        f"{kind.messages_per_task:.1f}",
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
