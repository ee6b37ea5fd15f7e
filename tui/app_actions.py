"""The App's actions (half of VideoqApp, kept in a mixin of its own): those that change tasks
ask first where they should, call `core.service` in a Textual worker and report the outcome with
a notification; the others choose what the table shows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from textual import on
from textual.app import App
from textual.timer import Timer
from textual.widgets import Input

from core.errors import VideoqError
from core.insight import FailureGroup, Stats, collect_stats
from core.models import Task, VideoRequest
from core.runtime import Runtime
from tui.i18n import N_, t
from tui.screens.confirm import ConfirmScreen
from tui.screens.detail import DetailScreen
from tui.screens.failures import FailuresScreen
from tui.screens.new_task import NewTaskScreen
from tui.state.task_book import TaskBook, View, can_cancel, can_retry
from tui.state.wording import confirm_text, nothing_here, outcome, refusal
from tui.widgets.log_panel import LogPanel
from tui.widgets.task_table import TaskTable

ACTOR = "dashboard"
SEARCH_DELAY = 0.15

TaskCall = Callable[[str], Awaitable[Task]]


class DashboardActions(App[None]):
    """What the keys and the command palette do; VideoqApp provides the state and the feed."""

    runtime: Runtime
    book: TaskBook
    clock: Callable[[], datetime]
    _jump_to: str | None
    _search_timer: Timer | None

    @property
    def table(self) -> TaskTable:
        raise NotImplementedError

    def _targets(self) -> list[Task]:
        return self.book.targets(self.table.cursor_task_id)

    @property
    def search(self) -> Input:
        return self.query_one("#search", Input)

    def show_header(self) -> None:
        raise NotImplementedError

    def _refresh_keys(self) -> None:
        raise NotImplementedError

    # A greyed-out binding runs no action; the key then reaches these, which say why.
    def key_c(self) -> None:
        self._explain("cancel")

    def key_r(self) -> None:
        self._explain("retry")

    def key_upper_r(self) -> None:
        self._explain("retry_failed")

    def key_enter(self) -> None:
        self._explain("open_detail")

    def key_space(self) -> None:
        self._explain("toggle_select")

    def _explain(self, action: str) -> None:
        if len(self.screen_stack) != 1:
            return
        if self.table.row_count:
            self.notify(refusal(action, self._targets()), severity="warning")
        else:
            self.notify(nothing_here(action, bool(self.book.tasks)), severity="warning")

    def action_cancel(self) -> None:
        self.ask("cancel", self._targets())

    def action_retry(self) -> None:
        self.ask("retry", self._targets())

    def ask(self, action: str, targets: list[Task]) -> None:
        """Confirm, then cancel or retry those of `targets` it applies to (or say why not)."""
        check, verb, run = (
            (can_cancel, "Cancel", self._cancel_tasks)
            if action == "cancel"
            else (can_retry, "Retry", self._retry_tasks)
        )
        tasks = [t for t in targets if check(t)]
        if not tasks:
            self.notify(refusal(action, targets), severity="warning")
            return
        self._confirm(verb, tasks, run, skipped=len(targets) - len(tasks))

    @on(DetailScreen.Act)
    def _act_from_detail(self, message: DetailScreen.Act) -> None:
        self.ask(message.action, [message.task])

    def action_retry_failed(self) -> None:
        self._confirm("Retry", self.book.failed_in_view(), self._retry_tasks, failed=True)

    def action_failures(self) -> None:
        def chosen(group: FailureGroup | None) -> None:
            if group is not None:
                tasks = [self.book.tasks[i] for i in group.failed_now if i in self.book.tasks]
                self._confirm("Retry", tasks, self._retry_tasks, failed=True)

        async def load(since: datetime) -> Stats:
            return await collect_stats(self.runtime.store, since)

        self.push_screen(FailuresScreen(load, self.clock), chosen)

    def _confirm(
        self,
        verb: str,
        tasks: list[Task],
        run: Callable[[list[str]], Awaitable[None]],
        *,
        skipped: int = 0,
        failed: bool = False,
    ) -> None:
        if not tasks:
            return
        text = confirm_text(verb, tasks, skipped=skipped, failed=failed)
        ids = [t.id for t in tasks]

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(run(ids), group="actions", exit_on_error=False)

        self.push_screen(ConfirmScreen(text.question, text.details, yes=text.yes), answered)

    async def _cancel_tasks(self, ids: list[str]) -> None:
        async def cancel(task_id: str) -> Task:
            return await self.runtime.service.cancel(task_id, actor=ACTOR)

        def one(task: Task) -> str:
            return t("task {id} cancelled", id=task.id[:8])

        await self._each(ids, cancel, one, N_("{count} tasks cancelled"))

    async def _retry_tasks(self, ids: list[str]) -> None:
        async def retry(task_id: str) -> Task:
            return await self.runtime.service.retry(task_id, actor=ACTOR)

        def one(task: Task) -> str:
            return t(
                "task {id} queued again (attempt {attempt})", id=task.id[:8], attempt=task.attempt
            )

        await self._each(ids, retry, one, N_("{count} tasks queued again"))

    async def _each(
        self, ids: list[str], call: TaskCall, one: Callable[[Task], str], many: str
    ) -> None:
        """Run a service call per task and report the batch in one or two notifications."""
        done: list[Task] = []
        refused: list[str] = []
        for task_id in ids:
            try:
                done.append(await call(task_id))
            except VideoqError as exc:
                refused.append(exc.message)
        self.book.selected.difference_update(ids)
        self.table.refresh()
        for message, severity in outcome(done, refused, one, many):
            self.notify(message, severity=severity)  # type: ignore[arg-type]
        self.show_header()

    def action_open_detail(self) -> None:
        task = self.book.tasks.get(self.table.cursor_task_id or "")
        if task is not None:
            screen = DetailScreen(task, self.clock, self.book.speedup)
            self.push_screen(screen)
            self._load_detail(screen)

    def _load_detail(self, screen: DetailScreen) -> None:
        async def load() -> None:
            detail = await self.runtime.service.detail(screen.task_id)
            screen.post_message(DetailScreen.Loaded(detail))

        self.run_worker(load(), group="detail", exclusive=True, exit_on_error=False)

    def action_new_task(self) -> None:
        def submitted(request: VideoRequest | None) -> None:
            if request is not None:
                self.run_worker(self._submit(request), group="actions", exit_on_error=False)

        self.push_screen(NewTaskScreen(), submitted)

    async def _submit(self, request: VideoRequest) -> None:
        task = await self.runtime.service.submit(request, actor=ACTOR)
        self._jump_to = task.id
        self.notify(t("task {id} queued", id=task.id[:8]))

    # --- what the table shows ------------------------------------------------------------

    def action_view(self, name: str) -> None:
        self.book.view = View(name)
        self._reshow()

    def action_cycle_sort(self) -> None:
        self.book.cycle_sort()
        self.table.resort()
        self.show_header()

    def action_toggle_select(self) -> None:
        task_id = self.table.cursor_task_id
        if task_id is not None:
            self.book.selected ^= {task_id}
            self.table.action_cursor_down()
            self.table.refresh()
            self.show_header()
            self._refresh_keys()

    def action_filter(self) -> None:
        self.search.add_class("-visible")
        self.search.focus()

    @on(Input.Changed, "#search")
    def _search_typed(self) -> None:
        if self._search_timer is not None:
            self._search_timer.stop()
        # Debounced, so a 10,000-row table is filtered once per pause in typing, not per key.
        self._search_timer = self.set_timer(SEARCH_DELAY, self._apply_search)

    @on(Input.Submitted, "#search")
    def _search_done(self) -> None:
        self._apply_search()
        if not self.book.search:
            self.search.remove_class("-visible")
        self.table.focus()

    def _apply_search(self) -> None:
        if self._search_timer is not None:
            self._search_timer.stop()
            self._search_timer = None
        # A debounce timer may still fire while the app is closing and its widgets are gone.
        found = self.query("#search")
        if not found:
            return
        text = found.first(Input).value.strip()
        if text != self.book.search:
            self.book.search = text
            self._reshow()

    def action_clear(self) -> None:
        if self.book.search or self.focused is self.search:
            self.search.value = ""
            self._apply_search()
            self.search.remove_class("-visible")
            self.table.focus()
        elif self.book.selected:
            self.book.selected.clear()
            self._reshow()

    def _reshow(self) -> None:
        self.book.prune_selection()
        self.table.rebuild()
        self.show_header()
        self._refresh_keys()

    def action_toggle_log(self) -> None:
        panel = self.query_one(LogPanel)
        panel.collapsed = not panel.collapsed
