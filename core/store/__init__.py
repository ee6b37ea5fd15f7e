"""The TaskStore port: where every task and its history live."""

from __future__ import annotations

import builtins
import logging
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Protocol

from msgspec import Struct, ValidationError, field

from core.errors import RowUnreadable
from core.models import TERMINAL, Task, TaskChange, TaskEvent, TaskStatus

logger = logging.getLogger(__name__)

STORE_SET_COLUMNS = frozenset({"id", "created_at", "updated_at", "version"})
"""Columns an update cannot change: the id and creation time are fixed at insert, and the store
itself bumps `version` and `updated_at` on every write (a trigger on Supabase)."""


PRUNE_BATCH = 500
"""Tasks deleted per transaction by `prune`, so a large prune never holds the store for long."""


class FeedState(StrEnum):
    LIVE = "live"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"


class FeedStatus(Struct):
    """What a dashboard shows about the live feed."""

    state: FeedState = FeedState.OFFLINE
    last_event_at: datetime | None = None
    detail: str = ""
    # Rows a list skipped because they could not be decoded (exposed in /metrics).
    unreadable_rows: int = 0


class Expect(Struct, frozen=True):
    """The compare part of a compare-and-set: the row must still look like this."""

    statuses: frozenset[TaskStatus]
    attempt: int | None = None
    polls: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, *statuses: TaskStatus, attempt: int | None = None, polls: int | None = None
    ) -> Expect:
        return cls(frozenset(statuses), attempt, polls)

    def matches(self, task: Task) -> bool:
        """Whether `task` is a row this compare would accept."""
        return (
            task.status in self.statuses
            and self.attempt in (None, task.attempt)
            and self.polls in (None, task.polls)
            and all(getattr(task, name) == value for name, value in self.extra.items())
        )

    def claimable(self, task: Task, now: datetime) -> bool:
        """Whether a step claim at `now` may take `task`: it matches and holds no live lease
        (`update_sql(..., lease_free=True)` says the same in SQL)."""
        return self.matches(task) and not task.step_claimed(now)


class StepClaim(Struct, frozen=True):
    """What `TaskStore.claim_step` found: the row it claimed, or the row as it stands."""

    task: Task | None  # None: no such task
    claimed: bool


class Usage(Struct, frozen=True):
    """QStash messages counted on one UTC day (QStash bills both kinds, retries included)."""

    day: date
    published: int = 0
    delivered: int = 0

    @property
    def total(self) -> int:
        return self.published + self.delivered


class TaskStore(Protocol):
    """Rows of `video_tasks` and `task_events`, with compare-and-set writes and a change feed."""

    feed: FeedStatus

    def describe(self) -> str:
        """A one-line name for logs and the dashboard header, e.g. `sqlite: /path/videoq.db`."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def insert(
        self, task: Task, event: TaskEvent | None = None, images: Sequence[str] = ()
    ) -> Task:
        """Store a new task, its first history event and its images; return the stored row."""
        ...

    async def images(self, task_id: str) -> tuple[str, ...]:
        """The task's images in order (kept apart from the row, so feeds and lists stay small)."""
        ...

    async def get(self, task_id: str) -> Task | None: ...

    async def list(
        self,
        *,
        statuses: Collection[TaskStatus] | None = None,
        user_id: str | None = None,
        updated_before: datetime | None = None,
        updated_since: datetime | None = None,
        id_prefix: str | None = None,
        limit: int = 100,
    ) -> TaskPage:
        """Tasks newest first (by created_at), filtered; rows that do not decode are set apart.

        `updated_before` keeps rows last written before that time, `updated_since` those
        written at it or later.

        `id_prefix` keeps the tasks whose id starts with it; it may hold only lowercase hex
        digits and dashes (the characters of a task id).
        """
        ...

    async def created_at_of_newest(self, user_id: str, n: int) -> datetime | None:
        """When `user_id`'s n-th newest task (1: the newest; ordered as `list`) was created;
        None when the user has fewer than n. Reads no whole row: a quota asks it per submit."""
        ...

    async def update(
        self,
        task_id: str,
        expect: Expect,
        changes: Mapping[str, Any],
        event: TaskEvent | None = None,
    ) -> Task | None:
        """Apply `changes` if the row matches `expect`; return the new row, or None if it did not.

        STORE_SET_COLUMNS named in `changes` are left as they are. `event` is appended to the
        history in the same transaction, only when the update applied.
        """
        ...

    async def claim_step(
        self,
        task_id: str,
        expect: Expect,
        lease_until: datetime,
        now: datetime,
        *,
        sole: bool = False,
    ) -> StepClaim:
        """Take the task's step lease until `lease_until` if the row matches `expect` and no
        live lease is held at `now`. The claimed row; on a miss, the row as it is (or None).

        A worker's first write on a delivery: it needs no read before it, nor after a hit.

        `sole`: no other delivery of this step can run meanwhile (a local queue's lease on its
        message) and the step may run on a row that is out of date (a poll: its outcome is a
        compare-and-set). A store that keeps the row as it last wrote it may then answer with
        that row, claimed, when the file still holds it, it matches and holds no live lease,
        and write nothing.
        """
        ...

    async def add_event(self, event: TaskEvent) -> None: ...

    async def events(self, task_id: str) -> builtins.list[TaskEvent]:
        """The task's history, oldest first."""
        ...

    async def count_by_status(self, user_id: str | None = None) -> dict[TaskStatus, int]: ...

    async def prune(
        self, before: datetime, statuses: Collection[TaskStatus], *, dry_run: bool = False
    ) -> dict[TaskStatus, int]:
        """Delete the finished tasks in `statuses` last written before `before`, with their
        history and images; return how many went per status (with `dry_run`, would go).

        `statuses` must all be terminal (ValueError otherwise): queued and running tasks are
        never pruned. Every status is a key of the result, 0 when none went.
        """
        ...

    async def probe_write(self) -> None:
        """Commit a write that changes no task; raises StoreError when the store takes none."""
        ...

    async def add_usage(self, day: date, published: int = 0, delivered: int = 0) -> Usage:
        """Add to the QStash messages counted on UTC `day`; returns the day's totals."""
        ...

    def changes(self) -> AsyncGenerator[TaskChange, None]:
        """Live change events; the first one is SYNC, and another SYNC follows every reconnect.

        A generator, so a caller that stops early closes it (`contextlib.aclosing`) to unsubscribe.
        """
        ...


async def claim_by_reading(
    store: TaskStore, task_id: str, expect: Expect, lease_until: datetime, now: datetime
) -> StepClaim:
    """`claim_step` for a store whose compare-and-set cannot say "no live lease": read the
    row, check it, then compare-and-set on the lease value read."""
    task = await store.get(task_id)
    if task is None or not expect.claimable(task, now):
        return StepClaim(task, claimed=False)
    extra = {**expect.extra, "step_lease_until": task.step_lease_until}
    held = Expect(expect.statuses, expect.attempt, expect.polls, extra)
    claimed = await store.update(task_id, held, {"step_lease_until": lease_until})
    return StepClaim(task, claimed=False) if claimed is None else StepClaim(claimed, claimed=True)


class TaskPage(builtins.list[Task]):
    """The tasks a list read, and beside them the rows it set apart because they do not decode."""

    def __init__(self, tasks: Iterable[Task] = ()) -> None:
        super().__init__(tasks)
        self.unreadable: builtins.list[RowUnreadable] = []


def unreadable_row(task_id: object, exc: Exception) -> RowUnreadable:
    """The error for a stored row that does not decode, naming its first bad field."""
    if isinstance(exc, ValidationError):
        from core.messages import problem

        field, reason = problem(exc)
        return RowUnreadable(str(task_id), f"{field}: {reason}")
    return RowUnreadable(str(task_id), "its columns are not those of a task")


def status_counts(rows: Iterable[tuple[str, int]]) -> dict[TaskStatus, int]:
    """Tasks per status, every status present (0 when none).

    A status no task can have belongs to a row that does not decode; lists show it as
    unreadable, and here it must not break every count (the header, /metrics, --until-idle).
    """
    counts = dict.fromkeys(TaskStatus, 0)
    known = {status.value: status for status in TaskStatus}
    for status, count in rows:
        if status in known:
            counts[known[status]] += int(count)
    return counts


def prunable(statuses: Collection[TaskStatus]) -> builtins.list[TaskStatus]:
    """The statuses a prune may delete, sorted; ValueError names any that is not finished."""
    unfinished = sorted(set(statuses) - TERMINAL)
    if unfinished:
        raise ValueError(f"only finished tasks are pruned, not {', '.join(unfinished)} ones")
    return sorted(statuses)


StatusCounts = Callable[..., Awaitable[Iterable[tuple[str, int]]]]


async def prune_in_batches(
    statuses: Collection[TaskStatus], count: StatusCounts, delete: StatusCounts, dry_run: bool
) -> dict[TaskStatus, int]:
    """A store's `prune`: `count(statuses)` for a dry run, else `delete(statuses, PRUNE_BATCH)`
    until a batch comes back short; both give (status, tasks) pairs, statuses as text."""
    wanted = [status.value for status in prunable(statuses)]
    counts = dict.fromkeys(TaskStatus, 0)
    if not wanted:
        return counts
    while True:
        batch = list(await (count(wanted) if dry_run else delete(wanted, PRUNE_BATCH)))
        for status, tasks in batch:
            counts[TaskStatus(status)] += tasks
        if dry_run or sum(tasks for _, tasks in batch) < PRUNE_BATCH:
            return counts


def readable_tasks(
    rows: Iterable[Any],
    decode: Callable[[Any], Task],
    feed: FeedStatus,
    into: TaskPage | None = None,
) -> TaskPage:
    """The rows that decode as tasks; each that does not is logged, counted and set apart."""
    page = TaskPage() if into is None else into
    for row in rows:
        try:
            page.append(decode(row))
        except RowUnreadable as exc:
            # One bad row must not stop the reconciler or a list for every other task.
            feed.unreadable_rows += 1
            page.unreadable.append(exc)
            logger.warning("%s; skipped", exc.message)
    return page
