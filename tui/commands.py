"""The dashboard's actions in the command palette (ctrl+p), offered only where they apply."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

from textual.actions import parse
from textual.command import DiscoveryHit, Hit, Hits, Provider


class PaletteCommand(NamedTuple):
    title: str
    action: str
    help: str


COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand(
        "Cancel task", "cancel", "Cancel the task under the cursor, or the selection (c)"
    ),
    PaletteCommand("Retry task", "retry", "Queue a failed or cancelled task again (r)"),
    PaletteCommand("Retry all failed in view", "retry_failed", "Queue every failed task shown (R)"),
    PaletteCommand("Show task details", "open_detail", "Full prompt, result and history (enter)"),
    PaletteCommand("New task", "new_task", "Open the form for a new video task (n)"),
    PaletteCommand(
        "Select / unselect task", "toggle_select", "Add the row to the selection (space)"
    ),
    PaletteCommand("View: all tasks", "view('all')", "Show every task (1)"),
    PaletteCommand("View: active tasks", "view('active')", "Show queued and running tasks (2)"),
    PaletteCommand("View: failed tasks", "view('failed')", "Show failed tasks (3)"),
    PaletteCommand(
        "View: finished tasks", "view('finished')", "Succeeded, failed or cancelled (4)"
    ),
    PaletteCommand("Filter by text", "filter", "Match id, prompt or error (/)"),
    PaletteCommand("Cycle sort order", "cycle_sort", "Newest, last update, status, progress (s)"),
    PaletteCommand("Toggle worker log", "toggle_log", "Show or hide the worker's log lines (l)"),
    PaletteCommand("Quit", "quit", "Stop the worker after its in-flight steps, then exit (q)"),
)


class TaskCommands(Provider):
    """Offers the same actions as the keys, hiding those `check_action` says do not apply."""

    def _available(self) -> list[PaletteCommand]:
        app = self.app
        available = []
        for command in COMMANDS:
            _, name, params = parse(command.action)
            if app.check_action(name, params):
                available.append(command)
        return available

    async def discover(self) -> Hits:
        for command in self._available():
            run = partial(self.app.run_action, command.action)
            yield DiscoveryHit(command.title, run, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._available():
            score = matcher.match(command.title)
            if score > 0:
                run = partial(self.app.run_action, command.action)
                yield Hit(score, matcher.highlight(command.title), run, help=command.help)
