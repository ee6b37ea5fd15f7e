"""What the dashboard says about an action: the question before it and the outcome after it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.models import Task

LISTED_IDS = 12


@dataclass(frozen=True)
class Question:
    """The text of a confirmation."""

    question: str
    details: str
    yes: str


def confirm_text(
    verb: str, tasks: list[Task], *, skipped: int = 0, failed: bool = False
) -> Question:
    """Ask before `verb`-ing `tasks` ("Cancel", "Retry"); `failed` for the retry-all-failed key."""
    if len(tasks) == 1 and not failed:
        question = f"{verb} task {tasks[0].id[:8]}?"
        details = " ".join(tasks[0].prompt.split())[:200]
    else:
        kind = "failed " if failed else ""
        question = f"{verb} {len(tasks)} {kind}tasks?"
        details = ", ".join(t.id[:8] for t in tasks[:LISTED_IDS])
        details += " …" if len(tasks) > LISTED_IDS else ""
    if verb == "Retry":
        details += "\nEach retry starts a new attempt: a new upstream job."
    if skipped:
        details += f"\n{skipped} selected task(s) do not apply and stay as they are."
    return Question(question, details, f"Yes, {verb.lower()}")


def refusal(action: str, targets: list[Task]) -> str:
    """Why a greyed-out key does nothing for the rows it would act on (same words as the core)."""
    task = targets[0] if len(targets) == 1 else None
    if action == "cancel" and task is not None:
        return (
            f"task {task.id[:8]} is already {task.status}; "
            "only queued or running tasks can be cancelled"
        )
    if action == "retry" and task is not None:
        return f"task {task.id[:8]} is {task.status}; only failed or cancelled tasks can be retried"
    if action == "retry_failed":
        return "no failed task in this view"
    verb = "cancelled" if action == "cancel" else "retried"
    return f"none of the {len(targets)} selected tasks can be {verb}"


def outcome(
    done: list[Task], refused: list[str], one: Callable[[Task], str], many: str
) -> list[tuple[str, str]]:
    """(message, severity) notifications for a batch: what was done, and the first refusal."""
    notes = []
    if done:
        notes.append(
            (one(done[0]) if len(done) == 1 else f"{len(done)} tasks {many}", "information")
        )
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        notes.append((refused[0] + more, "warning"))
    return notes


NOTHING_TO = {
    "cancel": "cancel",
    "retry": "retry",
    "retry_failed": "retry",
    "open_detail": "open",
    "toggle_select": "select",
}


def nothing_here(action: str, has_tasks: bool) -> str:
    """Why a row key does nothing on an empty table, and what to do instead."""
    verb = NOTHING_TO.get(action, "act on")
    if has_tasks:
        return f"no task to {verb}: nothing matches this view or filter (1 shows all, esc clears)"
    return f"no task to {verb} yet: press n for a new task, or run `videoq submit`"
