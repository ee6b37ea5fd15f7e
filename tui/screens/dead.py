"""The dead letters: every step message the queue gave up on, with why its last delivery failed."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from core.dead_letters import DeadLetters, short_dead_id
from core.queue import DeadLetter
from tui.render import DEAD_HEADER, dead_cells, short_id
from tui.screens.confirm import ConfirmScreen

RELOAD_EVERY = 10.0
"""Seconds between reads while the list is open (on QStash each read is an API call)."""


class DeadLettersScreen(ModalScreen[None]):
    """Lists the dead letters, read again every few seconds; r requeues the one under the
    cursor, x drops it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close", id="dead-close", tooltip="Back to the table"),
        Binding(
            "r",
            "requeue",
            "Requeue",
            id="dead-requeue",
            tooltip="Deliver the dead letter under the cursor again (its retries start afresh)",
        ),
        Binding(
            "x", "drop", "Drop", id="dead-drop", tooltip="Delete the dead letter under the cursor"
        ),
    ]

    class Counted(Message):
        """The dead letters were read: the app's header shows how many."""

        def __init__(self, count: int) -> None:
            super().__init__()
            self.count = count

    def __init__(self, dead: DeadLetters) -> None:
        super().__init__()
        self.dead = dead
        self.letters: list[DeadLetter] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="dead"):
            yield Static("[b]Dead letters[/]  [dim]loading…[/]", id="dead-title")
            table: DataTable[str] = DataTable(id="dead-table", cursor_type="row")
            table.add_columns(*DEAD_HEADER, "REASON")
            yield table
            yield Static("", id="dead-reason", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.reload()
        self.set_interval(RELOAD_EVERY, self.reload)

    @work(exclusive=True, group="dead-letters")
    async def reload(self) -> None:
        """Read the dead letters from the queue (the app's worker handler reports a failure)."""
        self.show(await self.dead.list_all())

    def show(self, letters: list[DeadLetter]) -> None:
        """Fill the table with `letters`, keeping the cursor's row where it can."""
        self.letters = letters
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for letter in letters:
            table.add_row(*dead_cells(letter), letter.reason, key=letter.id)
        if letters:
            table.move_cursor(row=min(row, len(letters) - 1))
        count = f"{len(letters)}" if letters else "none"
        self.query_one("#dead-title", Static).update(
            f"[b]Dead letters[/]  {count}  [dim]steps the queue gave up on, and why[/]"
        )
        self._show_reason()
        self.post_message(self.Counted(len(letters)))

    def on_data_table_row_highlighted(self) -> None:
        self._show_reason()

    def action_requeue(self) -> None:
        if (letter := self._under_cursor()) is not None:
            self._act(letter, requeue=True)

    def action_drop(self) -> None:
        letter = self._under_cursor()
        if letter is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._act(letter, requeue=False)

        task = short_id(letter.task_id)
        question = f"Drop dead letter {short_dead_id(letter.id)} (task {task}, {letter.step})?"
        details = "It is deleted for good; the task's step is not delivered again."
        self.app.push_screen(ConfirmScreen(question, details, yes="Drop"), answered)

    @work(exclusive=True, group="dead-letters")
    async def _act(self, letter: DeadLetter, *, requeue: bool) -> None:
        if requeue:
            done, word = await self.dead.retry([letter.id]), "requeued"
        else:
            done, word = await self.dead.drop([letter.id]), "dropped"
        gone = "" if done else " (it was gone already)"
        self.notify(f"dead letter {letter.id} {word}{gone}")
        self.show(await self.dead.list_all())

    def _under_cursor(self) -> DeadLetter | None:
        table = self.query_one(DataTable)
        if not self.letters or table.cursor_row >= len(self.letters):
            self.notify("no dead letter here", severity="warning")
            return None
        return self.letters[table.cursor_row]

    def _show_reason(self) -> None:
        table = self.query_one(DataTable)
        reason = ""
        if self.letters and table.cursor_row < len(self.letters):
            letter = self.letters[table.cursor_row]
            reason = f"task {letter.task_id}, {letter.step}: {letter.reason}"
        self.query_one("#dead-reason", Static).update(reason)
