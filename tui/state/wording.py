"""What the dashboard says about an action: the question before it and the outcome after it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.models import Task, cancel_refusal, retry_refusal
from core.text import one_line
from tui.i18n import N_, outside_text, t, tn

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
    retry = verb == "Retry"
    if len(tasks) == 1 and not failed:
        ask = N_("Retry task {id}?") if retry else N_("Cancel task {id}?")
        question = t(ask, id=tasks[0].id[:8])
        details = one_line(tasks[0].prompt, PROMPT_CHARS)
    else:
        count = len(tasks)
        if failed:
            question = tn("Retry {count} failed task?", "Retry {count} failed tasks?", count)
        elif retry:
            question = tn("Retry {count} task?", "Retry {count} tasks?", count)
        else:
            question = tn("Cancel {count} task?", "Cancel {count} tasks?", count)
        details = t(", ").join(task.id[:8] for task in tasks[:LISTED_IDS])
        details += " …" if len(tasks) > LISTED_IDS else ""
    if retry:
        details += "\n" + t("Each retry starts a new attempt: a new upstream job.")
    if skipped:
        details += "\n" + t(
            "{count} selected task(s) do not apply and stay as they are.", count=skipped
        )
    return Question(question, details, t("Yes, retry") if retry else t("Yes, cancel"))


def refusal(action: str, targets: list[Task]) -> str:
    """Why a greyed-out key does nothing for the rows it would act on (same words as the core)."""
    task = targets[0] if len(targets) == 1 else None
    if action == "cancel" and task is not None and (why := cancel_refusal(task)):
        return outside_text(why)
    if action == "retry" and task is not None and (why := retry_refusal(task)):
        return outside_text(why)
    if action == "retry_failed":
        return t("no failed task in this view")
    if action == "cancel":
        return t("none of the {count} selected tasks can be cancelled", count=len(targets))
    return t("none of the {count} selected tasks can be retried", count=len(targets))


def outcome(
    done: list[Task], refused: list[str], one: Callable[[Task], str], many: str
) -> list[tuple[str, str]]:
    """(message, severity) notifications for a batch: what was done, and the first refusal."""
    """`many` is a message with `{count}`, such as "{count} tasks cancelled"."""
    notes = []
    if done:
        notes.append((one(done[0]) if len(done) == 1 else t(many, count=len(done)), "information"))
    if refused:
        more = t(" (and {count} more)", count=len(refused) - 1) if len(refused) > 1 else ""
        notes.append((outside_text(refused[0]) + more, "warning"))
    return notes


NOTHING_TO = {
    "cancel": N_("cancel"),
    "retry": N_("retry"),
    "retry_failed": N_("retry"),
    "open_detail": N_("open"),
    "toggle_select": N_("select"),
}


def nothing_here(action: str, has_tasks: bool) -> str:
    """Why a row key does nothing on an empty table, and what to do instead."""
    verb = t(NOTHING_TO.get(action, N_("act on")))
    if has_tasks:
        return t(
            "no task to {verb}: nothing matches this view or filter (1 shows all, esc clears)",
            verb=verb,
        )
    return t("no task to {verb} yet: press n for a new task, or run `videoq submit`", verb=verb)


def quit_text(running: int, queued: int, *, worker_here: bool) -> Question:
    """What quitting leaves behind: how many tasks are active, and who carries them on."""
    counts = [
        tn("{count} task still running upstream", "{count} tasks still running upstream", running)
    ]
    if queued:
        counts.append(t("{count} queued", count=queued))
    question = t("Quit with {counts}?", counts=t(" and ").join(counts))
    if worker_here:
        details = t(
            "They are not lost: they resume when a worker next runs on this store "
            "(videoq, or videoq --no-ui)."
        )
        details += "\n" + t("Drain: take no new deliveries, finish the steps in flight, then quit.")
    else:
        details = t("videoq serve (QStash mode) carries on with them; this dashboard only watches.")
    return Question(question, details, t("Quit now"))


def empty_table_text(has_tasks: bool, view: str, search: str) -> list[str]:
    """What an empty table says: that the store is empty and what to do, or what hides rows."""
    if not has_tasks:
        return [
            t("No tasks yet."),
            t("Press n for a new task, or run `videoq submit --prompt …` in another terminal."),
        ]
    what = [t('the filter "{search}"', search=search)] if search else []
    if view != "all":
        what.append(t('the view "{view}"', view=t(view)))
    clear = [t("esc clears the filter")] if search else []
    if view != "all":
        clear.append(t("1 shows every task"))
    first = t("No task matches {what}.", what=t(" and ").join(what))
    return [first, t("{clear}.", clear=t(", ").join(clear).capitalize())]
