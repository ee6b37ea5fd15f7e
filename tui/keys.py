"""The dashboard's keys, declared once: the footer, the `?` screen and the palette read them."""

from __future__ import annotations

from textual.binding import Binding, BindingType

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
