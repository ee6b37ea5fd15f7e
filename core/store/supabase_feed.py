"""One Realtime subscription to `public.video_tasks`, as SupabaseStore.changes() runs it.

Each session owns its own realtime client with the client's auto-reconnect turned off: the store
tears a broken session down and builds a fresh one, so neither the client giving up after its
retries nor a stale `phx_close` on a re-joined channel can leave the feed silently dead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from msgspec import ValidationError
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from realtime.types import RealtimePostgresChangesListenEvent
from websockets.exceptions import InvalidStatus

from core.models import ChangeOp, Task
from core.text import one_line

logger = logging.getLogger(__name__)

SCHEMA = "public"
TABLE = "video_tasks"
_BROKEN_STATES = {
    RealtimeSubscribeStates.CHANNEL_ERROR: "channel error",
    RealtimeSubscribeStates.CLOSED: "channel closed",
    RealtimeSubscribeStates.TIMED_OUT: "join timed out",
}
_OPS: dict[str, ChangeOp] = {"INSERT": "INSERT", "UPDATE": "UPDATE", "DELETE": "DELETE"}
# DELETE events on a table with RLS carry only the primary key (reference §3.3).
_DELETED_PLACEHOLDER = {"provider": "-", "model": "-", "prompt": "(deleted)", "aspect_ratio": "-",
                        "duration": 0}  # fmt: skip


@dataclass(frozen=True)
class FeedOptions:
    """Timings of the live feed; tests shorten them."""

    subscribe_timeout: float = 15.0
    """Seconds allowed from connecting to "Subscribed to PostgreSQL"."""
    health_interval: float = 5.0
    """Seconds between two checks that the socket and channel are still alive."""
    backoff_initial: float = 0.5
    """First wait before re-subscribing; doubles per failed try."""
    backoff_max: float = 15.0
    """Longest wait between two re-subscribe tries (they go on for ever)."""
    heartbeat_interval: int = 25
    """Realtime heartbeat period in seconds (the client sends at most one per 15 s)."""


@dataclass(frozen=True)
class RawChange:
    """A feed event; `task` is None when the row must be read again (413 or unreadable)."""

    op: ChangeOp
    task_id: str = ""
    task: Task | None = None


class FeedBroken(Exception):
    """The channel reported an error, a close or a timeout before it went live."""


def session_failure(exc: BaseException) -> str:
    """A short reason for the feed status and logs (never the URL: it carries the key)."""
    if isinstance(exc, InvalidStatus):
        return f"handshake refused (HTTP {exc.response.status_code})"
    if isinstance(exc, TimeoutError):
        return "not subscribed in time"
    if isinstance(exc, FeedBroken):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot connect ({type(exc).__name__})"
    return type(exc).__name__


def server_message(error: Exception | None) -> str | None:
    """What the server said in a channel error (e.g. "Please check Realtime is enabled...")."""
    # realtime-py wraps system errors and error replies as Exception(json.dumps(payload)).
    try:
        payload = json.loads(str(error)) if error is not None else None
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    said = payload.get("message") or payload.get("reason")
    return one_line(str(said), 200) if said else None


def parse_change(payload: dict[str, Any]) -> RawChange | None:
    """A postgres_changes payload as a RawChange (None if it names no task)."""
    data = payload.get("data") or {}
    kind = data.get("type")
    op = _OPS.get(str(getattr(kind, "value", kind)))
    if op is None:
        return None
    row = (data.get("old_record") if op == "DELETE" else data.get("record")) or {}
    task_id = str(row.get("id") or "")
    if not task_id:
        return None
    if data.get("errors") and op != "DELETE":
        return RawChange(op, task_id)
    try:
        return RawChange(op, task_id, Task.from_row(row))
    except ValidationError:
        if op == "DELETE":
            return RawChange(op, task_id, Task.from_row({**_DELETED_PLACEHOLDER, **row}))
        return RawChange(op, task_id)


class FeedSession:
    """A realtime client, one channel on `public.video_tasks`, and the queue its callbacks fill."""

    def __init__(self, realtime_url: str, key: str, options: FeedOptions) -> None:
        self.options = options
        self.failure: str | None = None
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.client = AsyncRealtimeClient(
            realtime_url,
            token=key,
            auto_reconnect=False,
            max_retries=1,
            hb_interval=options.heartbeat_interval,
            timeout=max(1, math.ceil(options.subscribe_timeout)),
        )
        self.channel = self.client.channel(f"videoq-tasks-{uuid.uuid4().hex[:12]}")
        self.channel.on_postgres_changes(
            RealtimePostgresChangesListenEvent.All, self._on_change, table=TABLE, schema=SCHEMA
        )
        self.channel.on_system(self._on_system)

    def _on_change(self, payload: Any) -> None:
        self._queue.put_nowait(("change", payload))

    def _on_system(self, payload: Any) -> None:
        if payload.extension == "postgres_changes" and payload.status == "ok":
            self._queue.put_nowait(("ready", None))

    def _on_state(self, state: RealtimeSubscribeStates, error: Exception | None) -> None:
        if state in _BROKEN_STATES:
            reason = _BROKEN_STATES[state]
            if (said := server_message(error)) is not None:
                reason = f"{reason}: {said}"
            self._queue.put_nowait(("broken", reason))

    async def start(self) -> None:
        """Connect, join, and return once the server says "Subscribed to PostgreSQL"."""
        async with asyncio.timeout(self.options.subscribe_timeout):
            await self.channel.subscribe(self._on_state)
            while True:
                kind, value = await self._queue.get()
                if kind == "ready":
                    return
                if kind in ("broken", "stop"):
                    raise FeedBroken(value)
                # Changes before the subscription is live are covered by the snapshot after SYNC.

    async def changes(self) -> AsyncIterator[RawChange]:
        """Changes until the channel breaks, the socket dies or stop() is called."""
        while True:
            try:
                async with asyncio.timeout(self.options.health_interval):
                    kind, value = await self._queue.get()
            except TimeoutError:
                if not self.healthy():
                    self.failure = "connection lost"
                    return
                continue
            if kind == "change":
                if (raw := parse_change(value)) is not None:
                    yield raw
            elif kind == "ready":
                yield RawChange("SYNC")
            elif kind == "broken":
                self.failure = value
                return
            else:
                return

    def healthy(self) -> bool:
        """Is the socket open, the channel joined and the client's reader still running?"""
        listen = self.client._listen_task  # no public way to see that the reader died
        return (
            self.client.is_connected
            and self.channel.is_joined
            and listen is not None
            and not listen.done()
        )

    def stop(self) -> None:
        """Make changes() end (the store is closing)."""
        self._queue.put_nowait(("stop", "store closed"))

    async def close(self) -> None:
        """Close the socket and every timer and task the client left behind."""
        client = self.client
        tasks = [task for task in (client._listen_task, client._heartbeat_task) if task]
        for channel in list(client.channels.values()):
            channel.rejoin_timer.reset()
            channel.join_push.destroy()
            for push in list(channel.messages_waiting_for_ack.values()):
                push.destroy()
            tasks.extend(channel._background_tasks)
        try:
            async with asyncio.timeout(2):
                await client.close()
        except (TimeoutError, OSError):
            logger.debug("realtime socket did not close cleanly")
        current = asyncio.current_task()
        tasks = [task for task in tasks if task is not current and not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
