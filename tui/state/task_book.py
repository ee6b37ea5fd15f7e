"""What the dashboard knows: the newest row of each task, the view, the sort and the selection.

Pure bookkeeping with no Textual in it, so the rules (highest version wins, a snapshot after every
(re)subscribe, which rows a view shows) are tested without a terminal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from operator import itemgetter
from typing import Any

from core.lateness import overdue, stalled
from core.models import (
    ACTIVE,
    CANCELLABLE,
    RETRYABLE,
    TERMINAL,
    Task,
    TaskChange,
    TaskStatus,
    utcnow,
)
from tui.i18n import N_

RATE_WINDOW = timedelta(minutes=1)
SERIES_MINUTES = 30


class View(StrEnum):
    # The values are the catalog's keys too: the header shows them translated.
    ALL = N_("all")
    ACTIVE = N_("active")
    FAILED = N_("failed")
    FINISHED = N_("finished")
    LATE = N_("late")  # running tasks that are overdue or stalled


VIEW_STATUSES: dict[View, frozenset[TaskStatus] | None] = {
    View.ALL: None,
    View.ACTIVE: ACTIVE,
    View.FAILED: frozenset({TaskStatus.FAILED}),
    View.FINISHED: TERMINAL,
    View.LATE: frozenset({TaskStatus.RUNNING}),
}

# Where each status sorts in the "status" order: what needs an eye first.
STATUS_RANK = {
    TaskStatus.RUNNING: 0,
    TaskStatus.QUEUED: 1,
    TaskStatus.FAILED: 2,
    TaskStatus.CANCELLED: 3,
    TaskStatus.SUCCEEDED: 4,
}


def _ts(moment: datetime) -> float:
    return moment.timestamp()


@dataclass(frozen=True)
class SortOrder:
    """One entry of the `s` cycle: a column to mark and an ascending key."""

    name: str
    column: str
    key: Callable[[Task], Any]


SORT_ORDERS: tuple[SortOrder, ...] = (
    SortOrder(N_("newest first"), "age", lambda t: (-_ts(t.created_at), t.id)),
    SortOrder(N_("last update"), "updated", lambda t: (-_ts(t.updated_at), t.id)),
    SortOrder(N_("status"), "status", lambda t: (STATUS_RANK[t.status], -_ts(t.created_at), t.id)),
    SortOrder(N_("progress"), "progress", lambda t: (-t.progress, -_ts(t.created_at), t.id)),
)


class TaskBook:
    """The newest known row of every task, plus what the operator chose to look at."""

    def __init__(self, clock: Callable[[], datetime] = utcnow, speedup: float = 1.0) -> None:
        # Overdue is a matter of time: the clock and how fast the upstream's runs decide it.
        self.clock = clock
        self.speedup = speedup
        self.tasks: dict[str, Task] = {}
        self.counts: Counter[TaskStatus] = Counter()
        self.selected: set[str] = set()
        self.view = View.ALL
        self.search = ""
        self.sort_index = 0
        # Deleted ids and the version of their delete, so a late older event cannot revive them.
        self._gone: dict[str, int] = {}
        self._sort_keys: list[dict[str, tuple[int, Any]]] = [{} for _ in SORT_ORDERS]

    @property
    def sort(self) -> SortOrder:
        return SORT_ORDERS[self.sort_index]

    def sort_key(self, task: Task) -> Any:
        """The task's key in the current sort, cached per version: views and sorts re-key often."""
        cache = self._sort_keys[self.sort_index]
        cached = cache.get(task.id)
        if cached is not None and cached[0] == task.version:
            return cached[1]
        key = self.sort.key(task)
        cache[task.id] = (task.version, key)
        return key

    def cycle_sort(self) -> SortOrder:
        self.sort_index = (self.sort_index + 1) % len(SORT_ORDERS)
        return self.sort

    def apply(self, change: TaskChange) -> str | None:
        """Apply one INSERT/UPDATE/DELETE; return the task id if anything changed."""
        task = change.task
        if task is None:
            return None
        known = self.tasks.get(task.id)
        if change.op == "DELETE":
            # A delete carries the row as it last was, so its version may equal the known one.
            if known is not None and known.version > task.version:
                return None
            self._gone[task.id] = task.version
            return task.id if self._forget(task.id) else None
        if known is not None and known.version >= task.version:
            return None
        if self._gone.get(task.id, 0) >= task.version:
            return None
        self._put(task)
        return task.id

    def load_snapshot(self, rows: Iterable[Task], *, complete: bool) -> set[str]:
        """Merge a snapshot taken after a (re)subscribe; return the ids whose row changed.

        Rows missing from the snapshot were deleted while the feed was away, if the snapshot was
        `complete` or the row is recent enough that the snapshot window would have held it.
        """
        fresh = {task.id: task for task in rows}
        changed = {i for i, t in fresh.items() if self._newer(t) and self._put(t)}
        oldest = min((t.created_at for t in fresh.values()), default=None)
        for task_id, task in list(self.tasks.items()):
            if task_id in fresh:
                continue
            if complete or (oldest is not None and task.created_at >= oldest):
                self._forget(task_id)
                changed.add(task_id)
        for task_id in fresh:
            self._gone.pop(task_id, None)
        return changed

    def visible(self, task: Task) -> bool:
        """Whether `task` belongs in the current view and matches the search text."""
        statuses = VIEW_STATUSES[self.view]
        if statuses is not None and task.status not in statuses:
            return False
        if self.view is View.LATE and not self.late(task):
            return False
        if not self.search:
            return True
        needle = self.search.casefold()
        return any(
            needle in (text or "").casefold() for text in (task.id, task.prompt, task.error_message)
        )

    def keyed_rows(self) -> list[tuple[Any, Task]]:
        """(sort key, task) for every task the table shows, in table order."""
        key = self.sort_key
        shown = [(key(t), t) for t in self.tasks.values() if self.visible(t)]
        shown.sort(key=itemgetter(0))
        return shown

    def rows(self) -> list[Task]:
        """The tasks the table shows, in table order."""
        return [task for _, task in self.keyed_rows()]

    def prune_selection(self) -> None:
        self.selected = {
            i for i in self.selected if i in self.tasks and self.visible(self.tasks[i])
        }

    def targets(self, cursor_id: str | None) -> list[Task]:
        """The tasks an action applies to: the selection if there is one, else the cursor row."""
        ids = sorted(self.selected) if self.selected else [cursor_id] if cursor_id else []
        return [self.tasks[i] for i in ids if i in self.tasks]

    def is_overdue(self, task: Task) -> bool:
        return overdue(task, self.clock(), self.speedup)

    def late(self, task: Task) -> bool:
        """Overdue or stalled: a running task an operator should look at."""
        return stalled(task) or self.is_overdue(task)

    def late_counts(self) -> tuple[int, int]:
        """How many running tasks are overdue, and how many stalled."""
        running = [t for t in self.tasks.values() if t.status is TaskStatus.RUNNING]
        return sum(map(self.is_overdue, running)), sum(map(stalled, running))

    def failed_in_view(self) -> list[Task]:
        return [t for t in self.rows() if t.status is TaskStatus.FAILED]

    def finished_within(self, now: datetime, window: timedelta = RATE_WINDOW) -> int:
        """How many tasks reached a terminal status in the last `window`."""
        since = now - window
        return sum(
            1
            for t in self.tasks.values()
            if t.status in TERMINAL and t.completed_at is not None and t.completed_at >= since
        )

    def finished_series(
        self, now: datetime, minutes: int = SERIES_MINUTES
    ) -> tuple[list[int], list[int]]:
        """Succeeded and failed per minute over the last `minutes`, oldest minute first."""
        succeeded, failed = [0] * minutes, [0] * minutes
        for task in self.tasks.values():
            ended = task.completed_at
            if ended is None or task.status not in (TaskStatus.SUCCEEDED, TaskStatus.FAILED):
                continue
            back = int((now - ended).total_seconds() // 60)
            if 0 <= back < minutes:
                series = succeeded if task.status is TaskStatus.SUCCEEDED else failed
                series[minutes - 1 - back] += 1
        return succeeded, failed

    def _newer(self, task: Task) -> bool:
        known = self.tasks.get(task.id)
        return known is None or task.version > known.version

    def _put(self, task: Task) -> bool:
        known = self.tasks.get(task.id)
        if known is not None:
            self.counts[known.status] -= 1
        self.tasks[task.id] = task
        self.counts[task.status] += 1
        return True

    def _forget(self, task_id: str) -> bool:
        known = self.tasks.pop(task_id, None)
        for cache in self._sort_keys:
            cache.pop(task_id, None)
        if known is None:
            return False
        self.counts[known.status] -= 1
        self.selected.discard(task_id)
        return True


def can_cancel(task: Task) -> bool:
    return task.status in CANCELLABLE


def can_retry(task: Task) -> bool:
    return task.status in RETRYABLE
