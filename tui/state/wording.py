"""What the dashboard says about an action: the question before it and the outcome after it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.models import Task, cancel_refusal, retry_refusal
from core.text import one_line
from tui.render import plural

LISTED_IDS = 12
PROMPT_CHARS = 200


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
        details = one_line(tasks[0].prompt, PROMPT_CHARS)
    else:
        kind = "failed " if failed else ""
        question = f"{verb} {plural(len(tasks), kind + 'task')}?"
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
    if action == "cancel" and task is not None and (why := cancel_refusal(task)):
        return why
    if action == "retry" and task is not None and (why := retry_refusal(task)):
        return why
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


def quit_text(running: int, queued: int, *, worker_here: bool) -> Question:
    """What quitting leaves behind: how many tasks are active, and who carries them on."""
    counts = [f"{running} task{'s' if running != 1 else ''} still running upstream"]
    if queued:
        counts.append(f"{queued} queued")
    question = "Quit with " + " and ".join(counts) + "?"
    if worker_here:
        details = (
            "They are not lost: they resume when a worker next runs on this store "
            "(videoq, or videoq --no-ui).\n"
            "Drain: take no new deliveries, finish the steps in flight, then quit."
        )
    else:
        details = "videoq serve (QStash mode) carries on with them; this dashboard only watches."
    return Question(question, details, "Quit now")


def empty_table_text(has_tasks: bool, view: str, search: str) -> list[str]:
    """What an empty table says: that the store is empty and what to do, or what hides rows."""
    if not has_tasks:
        return [
            "No tasks yet.",
            "Press n for a new task, or run `videoq submit --prompt …` in another terminal.",
        ]
    what = [f'the filter "{search}"'] if search else []
    if view != "all":
        what.append(f'the view "{view}"')
    clear = ["esc clears the filter"] if search else []
    if view != "all":
        clear.append("1 shows every task")
    return [f"No task matches {' and '.join(what)}.", ", ".join(clear).capitalize() + "."]
