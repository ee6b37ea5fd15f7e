"""The TaskStore port on Supabase: rows through PostgREST (supabase-py), changes through Realtime.

Writes that must be atomic (insert + first event, compare-and-set + event) are one call each to
the SQL functions of `core/sql/schema.sql`; PostgREST runs a function call in one transaction.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from contextlib import aclosing
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlparse

import httpx
import msgspec
from postgrest import APIError
from postgrest.types import ReturnMethod
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from core import outbound
from core.errors import ConfigError, StoreError
from core.models import TASK_COLUMNS, Task, TaskChange, TaskEvent, TaskStatus, json_dict
from core.store import (
    STORE_SET_COLUMNS,
    Expect,
    FeedState,
    FeedStatus,
    StepClaim,
    TaskPage,
    Usage,
    claim_by_reading,
    prune_in_batches,
    readable_tasks,
    status_counts,
    unreadable_row,
)
from core.store.supabase_feed import FeedOptions, FeedSession, RawChange, session_failure

logger = logging.getLogger(__name__)

TASKS = "video_tasks"
_PROBE_ID = "00000000-0000-0000-0000-000000000000"
IMAGES = "task_images"
EVENTS = "task_events"
PAGE_SIZE = 1000  # Supabase's default cap on rows per request ("max rows")

_AUTH_CODES = {"42501", "PGRST301", "PGRST302", "PGRST303", "401", "403"}
_MISSING_CODES = {"42P01", "42883", "PGRST202", "PGRST205", "404"}


def _quoted(pattern: str, message: str | None) -> str | None:
    match = re.search(pattern, message or "")
    return match.group(1) if match else None


def api_error(exc: APIError, action: str) -> StoreError:
    """A PostgREST error as a StoreError that says what went wrong, without the raw body."""
    code, message = exc.code or "", exc.message or ""
    if code == "23514":
        rule = _quoted(r'constraint "([^"]+)"', message) or "a check"
        return StoreError(f"Supabase refused {action}: the row breaks the rule {rule}")
    if code == "23505":
        return StoreError(f"Supabase refused {action}: a task with this id already exists")
    if code == "23502":
        column = _quoted(r'column "([^"]+)"', message) or "a column"
        return StoreError(f"Supabase refused {action}: {column} must not be empty")
    if code == "23503":
        return StoreError(f"Supabase refused {action}: the task does not exist")
    if code.startswith("22"):
        return StoreError(f"Supabase refused {action}: a value has the wrong type or format")
    if code in _AUTH_CODES or (not code and "API key" in message):
        return StoreError(
            f"Supabase refused access while {action}: SUPABASE_SERVICE_ROLE_KEY must be the "
            "project's service_role or secret (sb_secret_…) key (and the SQL from "
            "`videoq schema` must have been run)"
        )
    if code in ("42703", "PGRST204"):
        return StoreError(
            "the videoq tables in Supabase are older than this videoq: "
            "run the SQL printed by `videoq schema` again"
        )
    if code in _MISSING_CODES:
        return StoreError(
            "the videoq tables or functions are missing in Supabase: "
            "run the SQL printed by `videoq schema` once in the SQL editor"
        )
    if code.startswith("08") or code in ("503", "520"):
        return StoreError(f"Supabase is unavailable while {action}; try again later")
    return StoreError(f"Supabase could not complete {action} (error {code or 'unknown'})")


def encode_columns(values: Mapping[str, Any]) -> dict[str, Any]:
    """Column values as JSON; a name that is not a task column is a bug (ValueError)."""
    unknown = sorted(set(values) - set(TASK_COLUMNS))
    if unknown:
        raise ValueError(f"unknown task column(s): {', '.join(unknown)}")
    return {name: msgspec.to_builtins(value) for name, value in values.items()}


def encode_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The SET part of a compare-and-set, without the STORE_SET_COLUMNS."""
    encoded = encode_columns(changes)
    return {name: value for name, value in encoded.items() if name not in STORE_SET_COLUMNS}


def _utc_iso(moment: datetime) -> str:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def parse_task(row: Mapping[str, Any]) -> Task:
    """A row from PostgREST as a Task, every time in UTC whatever the database's time zone."""
    try:
        task = Task.from_row(row)
    except msgspec.ValidationError as exc:
        raise unreadable_row(row.get("id"), exc) from exc
    for name in TASK_COLUMNS:
        value = getattr(task, name)
        if isinstance(value, datetime) and value.utcoffset():
            setattr(task, name, value.astimezone(UTC))
    return task


class SupabaseStore:
    """Tasks in a Supabase project, read and written with the service role key."""

    def __init__(
        self,
        url: str,
        service_role_key: str,
        *,
        timeout: float = 10.0,
        feed_options: FeedOptions | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._key = service_role_key
        self._timeout = timeout
        self._feed_options = feed_options or FeedOptions()
        self.feed = FeedStatus()
        self._http: httpx.AsyncClient | None = None
        self._client: AsyncClient | None = None
        self._sessions: set[FeedSession] = set()
        self._feeds = 0
        self._closing = asyncio.Event()

    def describe(self) -> str:
        """`supabase: <project host>` for logs and the dashboard header."""
        return f"supabase: {urlparse(self.url).netloc.rpartition('@')[2] or self.url}"

    async def open(self) -> None:
        """Create the client and check that the key works and the tables exist."""
        if not self._key:
            raise ConfigError("SUPABASE_SERVICE_ROLE_KEY is empty")
        self._closing.clear()
        self._http = outbound.client(timeout=httpx.Timeout(self._timeout))
        try:
            options = AsyncClientOptions(httpx_client=self._http)
            self._client = await acreate_client(self.url, self._key, options)
        except Exception as exc:  # supabase-py raises its own exception types for bad input
            await self._http.aclose()
            raise ConfigError(f"SUPABASE_URL is not a usable URL: {type(exc).__name__}") from exc
        probe = self._db.table(TASKS).select("id").limit(1).retry(False)
        try:
            await self._execute(probe, "checking the tasks table")
        except StoreError:
            await self.close()
            raise
        logger.info("task store open: %s", self.describe())

    async def close(self) -> None:
        """Stop every live feed and close the HTTP connections."""
        self._closing.set()
        for session in list(self._sessions):
            session.stop()
        if self._http is not None:
            await self._http.aclose()
        self._http = self._client = None

    @property
    def _db(self) -> AsyncClient:
        if self._client is None:
            raise StoreError("the Supabase store is not open")
        return self._client

    async def _execute(self, request: Any, action: str, task_id: str | None = None) -> Any:
        try:
            return await request.execute()
        except APIError as exc:
            logger.warning("task %s: Supabase error %s while %s", task_id or "-", exc.code, action)
            raise api_error(exc, action) from exc
        except httpx.TimeoutException as exc:
            raise StoreError(f"Supabase did not answer in time while {action}") from exc
        except httpx.HTTPError as exc:
            host = self.describe().removeprefix("supabase: ")
            raise StoreError(f"cannot reach Supabase at {host} while {action}") from exc

    async def insert(
        self, task: Task, event: TaskEvent | None = None, images: Sequence[str] = ()
    ) -> Task:
        """Store a new task (its first history event and its images) in one transaction."""
        params = {
            "p_task": json_dict(task),
            "p_event": _event_json(event),
            "p_images": list(images) or None,
        }
        response = await self._execute(
            self._db.rpc("videoq_insert_task", params), "storing the task", task.id
        )
        return parse_task(response.data[0])

    async def images(self, task_id: str) -> tuple[str, ...]:
        query = self._db.table(IMAGES).select("data").eq("task_id", task_id).order("position")
        response = await self._execute(query, "reading the task's images", task_id)
        return tuple(row["data"] for row in response.data)

    async def get(self, task_id: str) -> Task | None:
        query = self._db.table(TASKS).select("*").eq("id", task_id).limit(1)
        response = await self._execute(query, "reading the task", task_id)
        return parse_task(response.data[0]) if response.data else None

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
        """Tasks newest first (by created_at), filtered; pages past Supabase's row cap."""
        tasks = TaskPage()
        if (statuses is not None and not statuses) or limit <= 0:
            return tasks
        read = 0  # rows, readable or not: the next page's offset
        while len(tasks) < limit:
            size = min(PAGE_SIZE, limit - len(tasks))
            query = self._db.table(TASKS).select("*")
            if statuses is not None:
                query = query.in_("status", sorted(TaskStatus(s).value for s in statuses))
            if user_id is not None:
                query = query.eq("user_id", user_id)
            if updated_before is not None:
                query = query.lt("updated_at", _utc_iso(updated_before))
            if updated_since is not None:
                query = query.gte("updated_at", _utc_iso(updated_since))
            if id_prefix is not None:
                query = query.like("id", f"{id_prefix}*")  # no wildcard can hide in a prefix
            query = query.order("created_at", desc=True).order("id", desc=True)
            query = query.range(read, read + size - 1)
            rows = (await self._execute(query, "listing tasks")).data
            read += len(rows)
            readable_tasks(rows, parse_task, self.feed, into=tasks)
            if len(rows) < size:
                break
        return tasks

    async def created_at_of_newest(self, user_id: str, n: int) -> datetime | None:
        if n < 1:
            raise ValueError(f"n must be 1 or more, not {n}")
        query = self._db.table(TASKS).select("created_at").eq("user_id", user_id)
        query = query.order("created_at", desc=True).order("id", desc=True).range(n - 1, n - 1)
        rows = (await self._execute(query, "reading the newest tasks")).data
        return msgspec.convert(rows[0]["created_at"], datetime) if rows else None

    async def update(
        self,
        task_id: str,
        expect: Expect,
        changes: Mapping[str, Any],
        event: TaskEvent | None = None,
    ) -> Task | None:
        """Compare-and-set through `videoq_update_task`; None when the row had moved on."""
        params = {
            "p_id": task_id,
            "p_statuses": sorted(TaskStatus(s).value for s in expect.statuses),
            "p_changes": encode_changes(changes),
            "p_attempt": expect.attempt,
            "p_polls": expect.polls,
            "p_extra": encode_columns(expect.extra) if expect.extra else None,
            "p_event": _event_json(event),
        }
        response = await self._execute(
            self._db.rpc("videoq_update_task", params), "updating the task", task_id
        )
        if not response.data:
            logger.debug("task %s: compare-and-set did not apply", task_id)
            return None
        return parse_task(response.data[0])

    async def claim_step(
        self,
        task_id: str,
        expect: Expect,
        lease_until: datetime,
        now: datetime,
        *,
        sole: bool = False,
    ) -> StepClaim:
        """A read, then the compare-and-set (the RPC compares values, not "no live lease");
        `sole` changes nothing: this store keeps no rows of its own."""
        return await claim_by_reading(self, task_id, expect, lease_until, now)

    async def add_event(self, event: TaskEvent) -> None:
        query = self._db.table(EVENTS).insert(_event_json(event), returning=ReturnMethod.minimal)
        await self._execute(query, "adding a history event", event.task_id)

    async def events(self, task_id: str) -> builtins.list[TaskEvent]:
        """The task's history, oldest first."""
        events: builtins.list[TaskEvent] = []
        while True:
            query = self._db.table(EVENTS).select("*").eq("task_id", task_id).order("id")
            query = query.range(len(events), len(events) + PAGE_SIZE - 1)
            rows = (await self._execute(query, "reading the task history", task_id)).data
            events.extend(TaskEvent.from_row(row) for row in rows)
            if len(rows) < PAGE_SIZE:
                return events

    async def probe_write(self) -> None:
        """A compare-and-set on an id no task has: PostgREST runs it as a write."""
        await self.update(_PROBE_ID, Expect.of(TaskStatus.QUEUED), {"progress": 0})

    async def add_usage(self, day: date, published: int = 0, delivered: int = 0) -> Usage:
        """Add to the day's QStash message counts in one SQL call; returns the day's totals."""
        params = {"p_day": day.isoformat(), "p_published": published, "p_delivered": delivered}
        response = await self._execute(
            self._db.rpc("videoq_add_usage", params), "counting QStash messages"
        )
        rows = response.data if isinstance(response.data, list) else [response.data]
        row = rows[0] if rows and rows[0] else {}
        return Usage(day, int(row.get("published", 0)), int(row.get("delivered", 0)))

    async def count_by_status(self, user_id: str | None = None) -> dict[TaskStatus, int]:
        params = {"p_user_id": user_id}
        response = await self._execute(
            self._db.rpc("videoq_count_by_status", params), "counting tasks"
        )
        return status_counts((row["status"], row["tasks"]) for row in response.data)

    async def prune(
        self, before: datetime, statuses: Collection[TaskStatus], *, dry_run: bool = False
    ) -> dict[TaskStatus, int]:
        """Delete finished tasks last written before `before`, one batch per function call."""

        async def call(wanted: list[str], limit: int | None = None) -> list[tuple[str, int]]:
            params = {"p_before": _utc_iso(before), "p_statuses": wanted, "p_limit": limit}
            request = self._db.rpc("videoq_prune_tasks", params | {"p_dry_run": limit is None})
            rows = (await self._execute(request, "pruning tasks")).data
            return [(row["status"], int(row["tasks"])) for row in rows]

        return await prune_in_batches(statuses, call, call, dry_run)

    async def changes(self) -> AsyncGenerator[TaskChange, None]:
        """Live changes from Realtime; SYNC first and again after every re-subscription.

        Close it with `contextlib.aclosing` (or `aclose()`) when done.
        """
        realtime_url = str(self._db.realtime_url)
        failures = 0
        self._feeds += 1
        try:
            while not self._closing.is_set():
                session = FeedSession(realtime_url, self._key, self._feed_options)
                async with aclosing(self._session_changes(session)) as session_changes:
                    async for change in session_changes:
                        failures = 0
                        yield change
                if self._closing.is_set():
                    break
                failures += 1
                reason = session.failure or "channel closed"
                self._set_feed(FeedState.RECONNECTING, f"realtime: {reason}")
                logger.warning("live feed lost (%s); re-subscribing, try %s", reason, failures)
                await self._backoff(failures)
        finally:
            self._feeds -= 1
            if self._feeds == 0:
                self._set_feed(FeedState.OFFLINE, "realtime: stopped")

    async def _session_changes(self, session: FeedSession) -> AsyncGenerator[TaskChange, None]:
        """SYNC once `session` is live, then its changes, until it breaks (see session.failure)."""
        self._sessions.add(session)
        try:
            await session.start()
            self._set_feed(FeedState.LIVE, "realtime: subscribed")
            logger.info("live feed subscribed on %s", self.describe())
            yield TaskChange("SYNC")
            async for raw in session.changes():
                change = await self._materialize(raw)
                if change is not None:
                    self.feed.last_event_at = datetime.now(UTC)
                    yield change
        except Exception as exc:  # the realtime client raises bare Exception on connect
            session.failure = session_failure(exc)
        finally:
            self._sessions.discard(session)
            await session.close()

    async def _materialize(self, raw: RawChange) -> TaskChange | None:
        if raw.op == "SYNC" or raw.task is not None:
            return TaskChange(raw.op, raw.task)
        # Realtime could not send the row whole (too large or unreadable): read it again.
        try:
            task = await self.get(raw.task_id)
        except StoreError as exc:
            logger.warning("task %s: change dropped, re-read failed: %s", raw.task_id, exc)
            return None
        return TaskChange(raw.op, task) if task is not None else None

    async def _backoff(self, attempt: int) -> None:
        options = self._feed_options
        delay = min(options.backoff_initial * 2 ** (attempt - 1), options.backoff_max)
        try:
            await asyncio.wait_for(self._closing.wait(), delay)
        except TimeoutError:
            pass

    def _set_feed(self, state: FeedState, detail: str) -> None:
        self.feed.state = state
        self.feed.detail = detail


def _event_json(event: TaskEvent | None) -> dict[str, Any] | None:
    return json_dict(event) if event is not None else None
