"""The dashboard's keys, declared once: the footer, the `?` screen and the palette read them."""

from __future__ import annotations

from dataclasses import replace

from textual.binding import Binding, BindingType
from textual.dom import DOMNode

from tui.i18n import EN, N_, language, t

# The task table's own keys (enter, movement) are on TaskTable; the detail and form screens
# declare theirs. These are the App's, in footer order: help and quit first, so that they fit.
APP_BINDINGS: list[BindingType] = [
    Binding(
        "question_mark",
        "help",
        "Help",
        key_display="?",
        id="help",
        tooltip="Show every key, grouped by where it works",
    ),
    Binding(
        "q",
        "quit",
        "Quit",
        id="quit",
        tooltip="Quit (asks first while tasks are still running)",
    ),
    Binding(
        "space",
        "toggle_select",
        "Select",
        id="select",
        tooltip="Mark/unmark the row ● and move down; c and r act on all marked",
    ),
    Binding(
        "c",
        "cancel",
        "Cancel",
        id="cancel",
        tooltip="Cancel the task under the cursor, or every selected one",
    ),
    Binding(
        "r",
        "retry",
        "Retry",
        id="retry",
        tooltip="Retry the task under the cursor, or every selected one",
    ),
    Binding(
        "R",
        "retry_failed",
        "Retry failed",
        show=False,
        id="retry-failed",
        tooltip="Retry every failed task in this view",
    ),
    Binding("n", "new_task", "New", id="new-task", tooltip="Open the form for a new task"),
    Binding(
        "slash",
        "filter",
        "Filter",
        key_display="/",
        id="filter",
        tooltip="Filter by id, prompt or error text",
    ),
    Binding(
        "1",
        "view('all')",
        "View all",
        show=False,
        id="view-all",
        tooltip="View all tasks",
    ),
    Binding(
        "2",
        "view('active')",
        "View active",
        show=False,
        id="view-active",
        tooltip="View active tasks (queued, running)",
    ),
    Binding(
        "3",
        "view('failed')",
        "View failed",
        show=False,
        id="view-failed",
        tooltip="View failed tasks",
    ),
    Binding(
        "4",
        "view('finished')",
        "View finished",
        show=False,
        id="view-finished",
        tooltip="View finished tasks (succeeded, failed, cancelled)",
    ),
    Binding(
        "5",
        "view('late')",
        "View late",
        show=False,
        id="view-late",
        tooltip="View running tasks that are overdue or stalled",
    ),
    Binding(
        "6",
        "failures",
        "Failures",
        show=False,
        id="failures",
        tooltip="Failures of the last day by reason (R there retries a group)",
    ),
    Binding(
        "d",
        "dead_letters",
        "Dead letters",
        show=False,
        id="dead-letters",
        tooltip="Dead letters: steps the queue gave up on, and why",
    ),
    Binding(
        "s",
        "cycle_sort",
        "Sort",
        show=False,
        id="sort",
        tooltip="Sort by: newest, last update, status, progress",
    ),
    Binding(
        "p",
        "toggle_pause",
        "Pause",
        show=False,
        id="pause",
        tooltip="Pause or resume taking new deliveries (in-flight steps finish)",
    ),
    Binding(
        "l",
        "toggle_log",
        "Worker log",
        show=False,
        id="toggle-log",
        tooltip="Show or hide the worker log",
    ),
    Binding(
        "escape",
        "clear",
        "Clear",
        show=False,
        id="clear",
        tooltip="Clear the filter or the selection",
    ),
]

# Textual's own keys that our screens show (the command palette's entry in the footer).
TEXTUAL_WORDS = (N_("palette"), N_("Quit"))


def speaking(binding: Binding) -> Binding:
    """`binding` with its description and tooltip in the interface's language."""
    return replace(binding, description=t(binding.description), tooltip=t(binding.tooltip))


def speak(node: DOMNode) -> None:
    """Put the keys of `node` (declared in English, the catalog's keys) in the interface's
    language; the footer reads them from the node's own copy of its bindings."""
    if language() == EN:
        return
    bindings = node._bindings  # each node's own copy (DOMNode.__init__), so the class keeps English
    bindings.key_to_bindings = {
        key: [speaking(binding) for binding in found]
        for key, found in bindings.key_to_bindings.items()
    }
