"""The Realtime websocket (Phoenix vsn 1.0.0 and 2.0.0) serving postgres_changes from PostgreSQL.

Changes come from the outbox the capture trigger fills (see shim.sql): NOTIFY hands the outbox id
over at commit, the dispatcher reads the row images and sends one frame per (channel, change) to
the channels subscribed at that moment. Nothing is replayed to a channel that was not subscribed.
Each client socket (client_socket.py) speaks the serializer its `vsn` asks for (wire.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from tests.fakes.supabase.bindings import (
    Binding,
    Change,
    FilterSyntaxError,
    change_frame,
    parse_binding_filter,
)
from tests.fakes.supabase.catalog import Catalog
from tests.fakes.supabase.client_socket import Channel, ClientSocket
from tests.fakes.supabase.pool import Pool
from tests.fakes.supabase.tokens import ProjectKeys, TokenError
from tests.fakes.supabase.wire import serializer_for

logger = logging.getLogger(__name__)

CHANNEL = "realtime_fake"
MAX_RECORDED_FRAMES = 200_000
IDLE_TIMEOUT = 60.0
"""Seconds Phoenix keeps a websocket open after it last received a frame (`:timeout`)."""


class RealtimeHub:
    """Every connected socket, the change listener, and the fault hooks."""

    def __init__(
        self, pool: Pool, admin: Pool, keys: ProjectKeys, idle_timeout: float = IDLE_TIMEOUT
    ) -> None:
        self.pool = pool
        self.admin = admin
        self.keys = keys
        self.idle_timeout = idle_timeout
        self.sockets: set[ClientSocket] = set()
        self.frames: list[dict[str, Any]] = []
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.subscribe_delay = 0.0
        self.refuse_connections = 0
        self.max_record_bytes = 1_048_576
        self.seq = 0
        self.catalog = Catalog(pool, admin)
        self._pending: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        self._listener: psycopg.AsyncConnection | None = None

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def record(self, frame: dict[str, Any]) -> None:
        if len(self.frames) < MAX_RECORDED_FRAMES:
            self.frames.append(frame)

    async def start(self, conninfo: str) -> None:
        """Start listening for committed changes."""
        self._listener = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        await self._listener.execute(f"listen {CHANNEL}")
        self.spawn(self._listen(self._listener))
        self.spawn(self._dispatch_forever())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()

    async def _listen(self, conn: psycopg.AsyncConnection) -> None:
        async for notify in conn.notifies():
            self.seq += 1
            self._pending.put_nowait((self.seq, int(notify.payload)))

    async def _dispatch_forever(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while not self._pending.empty():
                batch.append(self._pending.get_nowait())
            await self.flowing.wait()
            try:
                for change in await self._load(batch):
                    await self.dispatch(change)
            except Exception:  # keep serving; a test will notice the missing frames
                logger.exception("fake realtime: dispatch failed")

    async def _load(self, batch: list[tuple[int, int]]) -> list[Change]:
        async with self.admin.connection() as conn:
            cur = await conn.execute(
                "select id, schema_name, table_name, op, record, old_record, commit_timestamp"
                " from realtime_fake.changes where id = any(%s)",
                [[outbox_id for _, outbox_id in batch]],
            )
            rows = {row[0]: row[1:] for row in await cur.fetchall()}
        return [Change(seq, *rows[outbox_id]) for seq, outbox_id in batch if outbox_id in rows]

    async def dispatch(self, change: Change) -> None:
        """Send `change` to every subscribed channel whose bindings want it."""
        meta = await self.catalog.table_meta(change.schema, change.table)
        types = meta.types
        for sock in list(self.sockets):
            for channel in list(sock.channels.values()):
                if not channel.active or change.seq <= channel.since_seq:
                    continue
                ids = [b.id for b in channel.bindings if b.matches(change, types)]
                if not ids or not await self.catalog.visible(
                    channel.role, channel.claims, change, meta
                ):
                    continue
                columns = await self.catalog.selectable(channel.role, change.schema, change.table)
                frame = change_frame(
                    channel.topic, change, meta, columns, ids, self.max_record_bytes
                )
                await sock.send({**frame, "join_ref": channel.join_ref})

    async def subscribe(self, sock: ClientSocket, channel: Channel, echoed: list[dict]) -> None:
        """Check the bindings against the publication and columns, then go live."""
        if self.subscribe_delay:
            await asyncio.sleep(self.subscribe_delay)
        try:
            channel.bindings = [await self._binding(raw) for raw in echoed]
        except _SubscribeError as exc:
            await sock.system(channel, "error", str(exc), "postgres_changes")
            return
        channel.since_seq = self.seq
        channel.active = True
        await sock.system(channel, "ok", "Subscribed to PostgreSQL", "postgres_changes")

    async def _binding(self, raw: dict[str, Any]) -> Binding:
        schema, table = raw.get("schema") or "public", raw.get("table")
        params = (f"[event: {raw.get('event')}, schema: {schema}, table: {table or '*'}, "
                  f"filters: [], select: nil]")  # fmt: skip
        if not table or table == "*":
            meta_types: dict[str, str] = {}
        else:
            meta = await self.catalog.table_meta(schema, table)
            if not meta.published:
                raise _SubscribeError(
                    "Unable to subscribe to changes with given parameters. Please check Realtime"
                    f" is enabled for the given connect parameters: {params}"
                )
            meta_types = meta.types
        try:
            conditions = parse_binding_filter(raw.get("filter"))
        except FilterSyntaxError as exc:
            raise _SubscribeError(f"Error parsing `filter` params: {exc}") from None
        for condition in conditions:
            if meta_types and condition.column not in meta_types:
                raise _SubscribeError(
                    "Unable to subscribe to changes with given parameters. An exception happened"
                    f" so please check your connect parameters: {params}. Exception: ERROR P0001"
                    f" (raise_exception) invalid column for filter {condition.column}"
                )
        return Binding(raw["id"], str(raw.get("event", "*")), schema, table, conditions)

    async def endpoint(self, websocket: WebSocket) -> None:
        """The websocket route: pick the serializer, check the apikey, then serve the socket."""
        if self.refuse_connections > 0:
            self.refuse_connections -= 1
            error = JSONResponse({"error": "Error connecting to Realtime"}, 500)
            await websocket.send_denial_response(error)
            return
        serializer = serializer_for(websocket.query_params.get("vsn"))
        if serializer is None:
            # Phoenix answers a vsn that matches no serializer with a bare 403.
            await websocket.send_denial_response(JSONResponse({}, 403))
            return
        apikey = websocket.headers.get("x-api-key") or websocket.query_params.get("apikey", "")
        try:
            claims = self.keys.claims(apikey)
        except TokenError as exc:
            await websocket.send_denial_response(JSONResponse({"error": exc.message}, 401))
            return
        await websocket.accept()
        sock = ClientSocket(self, websocket, serializer, apikey, claims)
        self.sockets.add(sock)
        try:
            await sock.run()
        finally:
            self.sockets.discard(sock)

    async def drop_sockets(self, code: int = 1011) -> int:
        """Close every client socket abnormally, as a network drop would; returns how many."""
        dropped = [sock for sock in self.sockets if not sock.closed]
        for sock in dropped:
            sock.closed = True
            self.sockets.discard(sock)
            try:
                await sock.ws.close(code=code)
            except RuntimeError:
                pass
        return len(dropped)

    async def inject_system_error(self, message: str = "Too many database timeouts") -> int:
        """Push a postgres_changes `system` error to every live channel; returns how many."""
        channels = [(s, c) for s in list(self.sockets) for c in s.channels.values() if c.active]
        for sock, channel in channels:
            channel.active = False
            await sock.system(channel, "error", message, "postgres_changes")
        return len(channels)


class _SubscribeError(Exception):
    """A binding the real server refuses after the join with a `system` error."""
