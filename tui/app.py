"""The dashboard: a live task table fed by the store's change feed, with the worker in-process.

The table changes only when `store.changes()` delivers an event (a 1 s timer redraws ages, never
data). Events are buffered and applied in one batch per turn of the app's message queue, in
place. Every store or queue call runs in a Textual worker; failures of all of them land in one
`on_worker_state_changed`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import webbrowser
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import CommandPalette
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input
from textual.worker import Worker, WorkerCancelled, WorkerFailed, WorkerState

from core.config import Settings
from core.dead_letters import DeadLetters
from core.demo import seed_demo
from core.errors import RowUnreadable, VideoqError
from core.insight import UpstreamHealth
from core.models import Task, TaskChange, TaskStatus, utcnow
from core.queue import DispatchingQueue, dispatches_in_process
from core.runtime import Runtime
from core.store import FeedStatus
from core.supervisor import supervise
from core.text import one_line
from tui.app_actions import DashboardActions
from tui.commands import TaskCommands
from tui.i18n import N_, outside_text, t
from tui.keys import APP_BINDINGS, speak
from tui.screens.confirm import ConfirmScreen
from tui.screens.dead import DeadLettersScreen
from tui.screens.detail import DetailScreen
from tui.screens.failures import FailuresScreen
from tui.screens.help import HelpScreen, HelpSection
from tui.screens.new_task import NewTaskScreen
from tui.screens.quit import QuitScreen
from tui.state.task_book import TaskBook, View, can_cancel, can_retry
from tui.state.wording import quit_text
from tui.widgets.log_panel import LogPanel, PanelLogHandler
from tui.widgets.status_header import HeaderInfo, StatusHeader
from tui.widgets.task_table import TaskTable

log = logging.getLogger(__name__)

SNAPSHOT_LIMIT = 10_000
DEAD_COUNT_EVERY = 10.0
"""Seconds between reads of the dead-letter count (on QStash each read is an API call)."""
TARGETED_ACTIONS = ("cancel", "retry", "retry_failed", "open_detail", "toggle_select", "clear")
WORKER_NAMES = {"feed": N_("live feed"), "engine": N_("worker"), "boot": N_("start-up")}


@dataclass(frozen=True)
class Snapshot:
    """The rows loaded right after the feed (re)subscribed."""

    rows: list[Task]
    complete: bool
    # Rows the snapshot set apart because they do not decode: shown, never silently dropped.
    unreadable: list[RowUnreadable] = field(default_factory=list)


@dataclass
class FlushStats:
    """How the coalesced updates went (read by bench/dashboard.py)."""

    flushes: int = 0
    events: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    syncs: int = 0


class VideoqApp(DashboardActions):
    """The videoq dashboard over one Runtime, which it opens on start and closes on exit."""

    # Absolute, so subclasses (tests, bench) defined elsewhere find it too.
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "videoq"
    COMMANDS = App.COMMANDS | {TaskCommands}
    BINDINGS: ClassVar[list[BindingType]] = APP_BINDINGS

    def open_in_browser(self, url: str) -> bool:
        """Open `url` in the system browser; False when there is none (tests replace this)."""
        return webbrowser.open(url)

    def __init__(
        self,
        runtime: Runtime,
        *,
        demo: int = 0,
        start_worker: bool = True,
        clock: Callable[[], datetime] = utcnow,
        log_handler: PanelLogHandler | None = None,
        freeze_gc: bool = False,
    ) -> None:
        super().__init__()
        speak(self)
        self.runtime = runtime
        self.demo = demo
        self.start_worker = start_worker
        self.clock = clock
        self.log_handler = log_handler
        self.freeze_gc = freeze_gc
        self.book = TaskBook(clock, runtime.speedup)
        self.stats = FlushStats()
        self._inbox: list[Snapshot | TaskChange] = []
        self._flush_scheduled = False
        self._stop = asyncio.Event()
        self._opened = False
        self._quitting = False
        self._feed: Worker[None] | None = None
        self._engine: Worker[None] | None = None
        self._search_timer: Timer | None = None
        self._jump_to: str | None = None
        self._key_state: tuple[bool | None, ...] = ()
        self._finished_per_minute = 0
        self._table: TaskTable | None = None
        self._other_workers = 0
        self._unreadable: dict[str, RowUnreadable] = {}
        self._dead_letters: int | None = None
        self._dead_counted_at = float("-inf")

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        yield Input(
            placeholder=t("filter by id, prompt or error  (enter: keep, esc: clear)"), id="search"
        )
        self._table = TaskTable(self.book, self.clock, id="tasks")
        yield self._table
        yield LogPanel(id="log-panel")
        yield Footer(compact=True)

    @property
    def table(self) -> TaskTable:
        assert self._table is not None, "the table exists once the app is composed"
        return self._table

    def on_mount(self) -> None:
        if self.log_handler is not None:
            self.log_handler.attach(self.query_one(LogPanel))
        self.table.focus()
        self.show_header()
        self.set_interval(1.0, self._tick)
        self.run_worker(self._boot(), group="boot", exit_on_error=False)

    async def on_unmount(self) -> None:
        # Workers were cancelled on exit; let them unwind before their store is closed under them.
        self._stop.set()
        for worker in (self._engine, self._feed):
            if worker is not None:
                with suppress(WorkerCancelled, WorkerFailed):
                    await worker.wait()
        if self._opened:
            try:
                await self.runtime.close()
            except VideoqError as exc:
                log.warning("closing the store and queue failed: %s", exc.message)
        if self.log_handler is not None:
            self.log_handler.detach()

    # --- the live feed -------------------------------------------------------------------

    async def _boot(self) -> None:
        self._opened = True  # so that closing undoes whatever part of opening succeeded
        await self.runtime.open()
        self._feed = self.run_worker(self._follow_feed(), group="feed", exit_on_error=False)
        if self.start_worker:
            engine = supervise(self.runtime, self._stop)
            self._engine = self.run_worker(engine, group="engine", exit_on_error=False)
        self.show_header()
        if self.demo:
            await seed_demo(self.runtime.service, self.demo)
            self.notify(t("{count} demo tasks queued", count=self.demo))

    async def _follow_feed(self) -> None:
        store = self.runtime.store
        async for change in store.changes():
            if change.op == "SYNC":
                # Subscribed first, so nothing that happens after this snapshot can be missed.
                rows = await store.list(limit=SNAPSHOT_LIMIT)
                complete = len(rows) < SNAPSHOT_LIMIT
                self._receive(Snapshot(rows, complete, rows.unreadable))
            else:
                self._receive(change)

    def _receive(self, item: Snapshot | TaskChange) -> None:
        self._inbox.append(item)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # The app's own queue, not call_after_refresh: Textual hands that callback to the
            # screen on top, and a screen closing at that moment (the help screen, at a resize)
            # sometimes never ran it, leaving the flag set and the table frozen for good.
            self.call_later(self._apply_inbox)

    def _apply_inbox(self) -> None:
        """Apply everything that arrived since the last frame, in one pass over the table."""
        self._flush_scheduled = False
        items, self._inbox = self._inbox, []
        started = time.perf_counter()
        changed: set[str] = set()
        synced = False
        for item in items:
            if isinstance(item, Snapshot):
                changed |= self.book.load_snapshot(item.rows, complete=item.complete)
                self._note_unreadable(item.unreadable)
                synced = True
            elif (task_id := self.book.apply(item)) is not None:
                changed.add(task_id)
        if synced:
            self.book.prune_selection()
            self.table.rebuild()
            self.stats.syncs += 1
            if self.freeze_gc:
                # Thousands of long-lived rows make every full GC pass take 100-200 ms, which a
                # key press would wait out; freezing moves them out of the collector's way.
                gc.freeze()
        elif changed:
            self.table.apply(changed)
        self._after_change(changed)
        elapsed = time.perf_counter() - started
        self.stats.flushes += 1
        self.stats.events += len(items)
        self.stats.seconds += elapsed
        self.stats.slowest = max(self.stats.slowest, elapsed)

    def _note_unreadable(self, rows: list[RowUnreadable]) -> None:
        """Keep the snapshot's unreadable rows for the header; tell the operator of new ones."""
        before, self._unreadable = self._unreadable, {row.task_id: row for row in rows}
        for row in rows:
            if row.task_id not in before:
                self.notify(one_line(outside_text(row.message)), severity="warning", markup=False)

    def _after_change(self, changed: set[str]) -> None:
        if self._jump_to in changed and (row := self.table.index_of(self._jump_to)) is not None:
            self.table.move_cursor(row)
            self._jump_to = None
        screen = self.screen
        if isinstance(screen, DetailScreen) and screen.task_id in changed:
            if (task := self.book.tasks.get(screen.task_id)) is not None:
                screen.show_task(task)
                self._load_detail(screen)
        self.show_header()
        self._refresh_keys()

    def _refresh_keys(self) -> None:
        """Redraw the footer only when a key's enabled state changed (a redraw is costly)."""
        if not self.screen_stack:  # a message handled while the app closes: no footer left
            return
        state = tuple(self.check_action(action, ()) for action in TARGETED_ACTIONS)
        if state != self._key_state:
            self._key_state = state
            self.refresh_bindings()

    # --- header and clock ----------------------------------------------------------------

    def show_header(self) -> None:
        # The clock's timer and the feed may still call this while the app closes.
        found = self.query(StatusHeader)
        if not found:
            return
        store, usage, guard = self.runtime.store, self.runtime.usage, self.runtime.guard
        overdue, stalled = self.book.late_counts()
        found.first().show(
            HeaderInfo(
                backend=store.describe(),
                upstream=self.runtime.upstream.describe(),
                worker=self._worker_state(),
                feed=getattr(store, "feed", None) or FeedStatus(),
                counts=self.book.counts,
                finished_per_minute=self._finished_per_minute,
                view=self.book.view.value,
                sort=self.book.sort.name,
                search=self.book.search,
                selected=len(self.book.selected),
                shown=self.table.row_count,
                now=self.clock(),
                other_workers=self._other_workers,
                unreadable=len(self._unreadable),
                overdue=overdue,
                stalled=stalled,
                finished_series=self.book.finished_series(self.clock()),
                upstream_health=self._upstream_health(),
                dead_letters=self._dead_letters,
                qstash_usage=usage.today() if usage is not None else None,
                qstash_budget=usage.budget if usage is not None else None,
                degraded=guard.degraded_text() if guard is not None else None,
            )
        )

    def _upstream_health(self) -> UpstreamHealth | None:
        """What this process's worker saw of the upstream lately (none without a worker)."""
        if self._engine is None:  # no worker in this process (QStash, or not started yet)
            return None
        return self.runtime.worker.stats.recent_calls.health()

    def _worker_state(self) -> str:
        """running, paused, draining, or none (and why), as the header says it."""
        if not self.start_worker:
            return t("none (QStash: videoq serve takes deliveries)")
        if self._engine is None:
            return t("starting")
        if self._engine.is_finished:
            return t("none (stopped)")
        if self._stop.is_set():
            return t("draining")
        queue = self._local_queue()
        return t("paused (p resumes)") if queue is not None and queue.paused else t("running")

    def _tick(self) -> None:
        if not self.is_running or not self.screen_stack:
            return  # a last tick can fire while the app is closing its screens
        # Ages move with the clock; rows on screen redraw, unchanged ones from their cache.
        if self.book.view is View.LATE:
            self.table.rebuild()  # tasks become overdue as time passes, with no new row
        self.table.refresh()
        self._finished_per_minute = self.book.finished_within(self.clock())
        self.show_header()
        if self._engine is not None and self._opened:
            self.run_worker(self._count_other_workers(), group="peers", exclusive=True)
        if self._opened and time.monotonic() - self._dead_counted_at >= DEAD_COUNT_EVERY:
            self._dead_counted_at = time.monotonic()
            self.run_worker(self._count_dead_letters(), group="dead-count", exclusive=True)

    # --- which keys apply ----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self._table is None or not self._table.is_mounted:
            return True
        if action == "cancel":
            return True if any(can_cancel(t) for t in self._targets()) else None
        if action == "retry":
            return True if any(can_retry(t) for t in self._targets()) else None
        if action == "retry_failed":
            return True if self.table.shown_statuses[TaskStatus.FAILED] > 0 else None
        if action in ("open_detail", "toggle_select"):
            return True if self.table.cursor_task_id else None
        if action == "clear":
            return bool(self.book.search or self.book.selected or self.focused is self.search)
        return True

    # --- help and the palette ------------------------------------------------------------

    def action_help(self) -> None:
        palette = Binding(self.COMMAND_PALETTE_BINDING, "command_palette", "Command palette")
        left = [HelpSection(t("Task table"), [*TaskTable.BINDINGS, *self.BINDINGS])]
        right = [
            HelpSection(t("Task detail (enter)"), DetailScreen.BINDINGS),
            HelpSection(t("Failures by reason (6)"), FailuresScreen.BINDINGS),
            HelpSection(t("Dead letters (d)"), DeadLettersScreen.BINDINGS),
            HelpSection(t("New-task form (n; tab moves)"), NewTaskScreen.BINDINGS),
            HelpSection(t("Confirmations"), ConfirmScreen.BINDINGS),
            HelpSection(t("Everywhere"), [palette]),
        ]
        self.push_screen(HelpScreen(left, right))

    def action_command_palette(self) -> None:
        """Textual's palette (ctrl+p), its prompt in the interface's language."""
        open_already = any(isinstance(screen, CommandPalette) for screen in self.screen_stack)
        if self.use_command_palette and not open_already:
            placeholder = t("Search for commands…")
            self.push_screen(CommandPalette(id="--command-palette", placeholder=placeholder))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        # One "Quit" (ours, which asks while tasks run) and our help instead of Textual's keys.
        for command in super().get_system_commands(screen):
            if command.title not in ("Quit", "Keys"):
                yield command

    @on(TaskTable.CursorMoved)
    def _cursor_moved(self) -> None:
        self._refresh_keys()

    @on(TaskTable.Chosen)
    def _row_chosen(self) -> None:
        self.action_open_detail()

    # --- quitting and failures -----------------------------------------------------------

    async def action_quit(self) -> None:
        """Quit; while tasks are active, first say who carries them on and offer to drain."""
        engine = self._engine
        worker_here = engine is not None and not engine.is_finished
        if self._quitting:
            self.exit()  # q while draining: quit at once
            return
        running, queued = self.book.counts[TaskStatus.RUNNING], self.book.counts[TaskStatus.QUEUED]
        if not running and not queued:
            self._drain_then_exit() if worker_here else self.exit()
            return

        def answered(answer: str | None) -> None:
            if answer == "drain":
                self._drain_then_exit()
            elif answer == "now":
                self.exit()

        text = quit_text(running, queued, worker_here=worker_here)
        self.push_screen(QuitScreen(text, can_drain=worker_here), answered)

    def _drain_then_exit(self) -> None:
        """Stop taking deliveries, let in-flight steps finish, then exit (q again: exit now)."""
        engine = self._engine
        if engine is None or engine.is_finished:
            self.exit()
            return
        self._quitting = True
        self._stop.set()
        self.notify(t("finishing in-flight steps… (q again quits at once)"))
        self.show_header()

        async def drain() -> None:
            with suppress(WorkerCancelled, WorkerFailed):
                await engine.wait()
            self.exit()

        self.run_worker(drain(), group="quit", exit_on_error=False)

    def action_toggle_pause(self) -> None:
        """Pause or resume taking new deliveries; steps in flight finish either way."""
        queue = self._local_queue()
        if queue is None or self._engine is None or self._engine.is_finished:
            self.notify(
                t("no worker runs in this dashboard ({state})", state=self._worker_state()),
                severity="warning",
            )
            return
        queue.set_paused(not queue.paused)
        if queue.paused:
            self.notify(
                t("paused: no new deliveries are taken (steps in flight finish); p resumes")
            )
        else:
            self.notify(t("resumed taking deliveries"))
        self.show_header()

    def _local_queue(self) -> DispatchingQueue | None:
        queue = self.runtime.queue
        return queue if self.start_worker and dispatches_in_process(queue) else None

    async def _count_other_workers(self) -> None:
        queue = self._local_queue()
        if queue is None:
            return
        try:
            self._other_workers = await queue.other_workers()
        except VideoqError:
            return  # the header keeps its last count; the queue logs its own trouble
        self.show_header()

    async def _count_dead_letters(self) -> None:
        """Read the dead-letter count and, with QStash, today's usage and its reachability."""
        with suppress(VideoqError):  # the header keeps what it had; the log tells the trouble
            self._dead_letters = len(await self.runtime.queue.dead_letters())
        if self.runtime.usage is not None:
            with suppress(VideoqError):
                await self.runtime.usage.refresh()
        if self.runtime.guard is not None:
            with suppress(VideoqError):
                await self.runtime.guard.health()  # a failed ping counts toward an outage
        self.show_header()

    def action_dead_letters(self) -> None:
        """Open the list of dead letters, with why each one's last delivery failed."""
        self.push_screen(DeadLettersScreen(DeadLetters(self.runtime.queue)))

    @on(DeadLettersScreen.Counted)
    def _dead_letters_counted(self, message: DeadLettersScreen.Counted) -> None:
        self._dead_letters = message.count
        self.show_header()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker failures become notifications (and log lines)."""
        worker = event.worker
        if worker.group in WORKER_NAMES:
            self.show_header()
        if event.state is WorkerState.SUCCESS and worker.group == "engine" and not self._quitting:
            self.notify(t("the worker stopped"), severity="warning")
        if event.state is not WorkerState.ERROR:
            return
        error = worker.error
        what = WORKER_NAMES.get(worker.group, N_("action"))
        if isinstance(error, VideoqError):
            log.warning("%s failed: %s", what, error.message)
            message = outside_text(error.message)
        else:
            log.error("%s failed unexpectedly", what, exc_info=error)
            message = f"{type(error).__name__}: {error}"
        self.notify(
            t("{what} failed: {message}", what=t(what), message=message),
            severity="error",
            timeout=10,
        )


@contextmanager
def logs_into(handler: logging.Handler) -> Iterator[None]:
    """Send every log line to `handler` (not the terminal under the app) while the app runs."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = saved


def run_dashboard(settings: Settings, demo: int = 0) -> int:
    """Open the dashboard with the worker in this process; return the exit code."""
    runtime = Runtime.from_settings(settings)
    handler = PanelLogHandler(level=logging.getLevelName(settings.log_level))
    # With QStash, deliveries arrive over HTTP at `videoq serve`; there is no worker to run here.
    start_worker = not settings.uses_qstash
    app = VideoqApp(
        runtime, demo=demo, start_worker=start_worker, log_handler=handler, freeze_gc=True
    )
    with logs_into(handler):
        app.run()
    return app.return_code or 0
