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
from tui.i18n import outside_text, t
from tui.keys import speak
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
        speak(self)
        self.dead = dead
        self.letters: list[DeadLetter] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="dead"):
            yield Static(t("[b]Dead letters[/]  [dim]loading…[/]"), id="dead-title")
            table: DataTable[str] = DataTable(id="dead-table", cursor_type="row")
            table.add_columns(*(t(label) for label in DEAD_HEADER), t("REASON"))
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
        count = f"{len(letters)}" if letters else t("none")
        self.query_one("#dead-title", Static).update(
            t(
                "[b]Dead letters[/]  {count}  [dim]steps the queue gave up on, and why[/]",
                count=count,
            )
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
        question = t(
            "Drop dead letter {id} (task {task}, {step})?",
            id=short_dead_id(letter.id),
            task=task,
            step=letter.step,
        )
        details = t("It is deleted for good; the task's step is not delivered again.")
        self.app.push_screen(ConfirmScreen(question, details, yes=t("Drop")), answered)

    @work(exclusive=True, group="dead-letters")
    async def _act(self, letter: DeadLetter, *, requeue: bool) -> None:
        if requeue:
            done = await self.dead.retry([letter.id])
            said = t("dead letter {id} requeued", id=letter.id)
        else:
            done = await self.dead.drop([letter.id])
            said = t("dead letter {id} dropped", id=letter.id)
        self.notify(said + ("" if done else t(" (it was gone already)")))
        self.show(await self.dead.list_all())

    def _under_cursor(self) -> DeadLetter | None:
        table = self.query_one(DataTable)
        if not self.letters or table.cursor_row >= len(self.letters):
            self.notify(t("no dead letter here"), severity="warning")
            return None
        return self.letters[table.cursor_row]

    def _show_reason(self) -> None:
        table = self.query_one(DataTable)
        reason = ""
        if self.letters and table.cursor_row < len(self.letters):
            letter = self.letters[table.cursor_row]
            reason = t(
                "task {task}, {step}: {reason}",
                task=letter.task_id,
                step=letter.step,
                reason=outside_text(letter.reason),
            )
        self.query_one("#dead-reason", Static).update(reason)
