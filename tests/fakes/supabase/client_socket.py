"""One client websocket of the fake Realtime: its serializer, its channels and their tokens.

Like the real server, a channel is closed when its token expires (re-checked at `exp`, at least
hourly), and a socket that sends no frame for the hub's `idle_timeout` is closed (Phoenix: 60 s).
WebSocket pings are answered by uvicorn and never reach the fake, so only frames count here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.fakes.supabase.bindings import Binding, binding_id
from tests.fakes.supabase.tokens import OPAQUE_PREFIX, TokenError, expired_message, verify_token
from tests.fakes.supabase.wire import Frame, MalformedFrame, Serializer

if TYPE_CHECKING:
    from tests.fakes.supabase.realtime import RealtimeHub

logger = logging.getLogger(__name__)

CONFIRM_TOKEN_MAX_INTERVAL = 3600.0
"""The longest wait between two checks of a channel's token (`@confirm_token_ms_max_interval`)."""


class Channel:
    """One joined topic on one socket."""

    def __init__(self, topic: str, join_ref: str | None, claims: dict[str, Any]) -> None:
        self.topic = topic
        self.join_ref = join_ref
        self.claims = claims
        self.bindings: list[Binding] = []
        self.active = False
        self.since_seq = 0
        self.token_watch: asyncio.Task | None = None

    @property
    def role(self) -> str:
        return str(self.claims.get("role"))


class ClientSocket:
    """One client websocket and the channels it joined."""

    def __init__(
        self,
        hub: RealtimeHub,
        ws: WebSocket,
        serializer: Serializer,
        apikey: str,
        claims: dict[str, Any],
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.serializer = serializer
        self.apikey = apikey
        self.apikey_claims = claims
        self.channels: dict[str, Channel] = {}
        self._lock = asyncio.Lock()
        self.closed = False

    async def send(self, frame: Frame) -> None:
        if self.closed:
            return
        self.hub.record(frame)
        try:
            async with self._lock:
                await self.ws.send_text(self.serializer.encode(frame))
        except (RuntimeError, WebSocketDisconnect, OSError):
            self.closed = True

    async def reply(self, message: Frame, status: str, response: dict) -> None:
        """Answer `message` (a reply carries its ref and join_ref)."""
        await self.send({"topic": message["topic"], "event": "phx_reply", "ref": message["ref"],
                         "join_ref": message["join_ref"],
                         "payload": {"status": status, "response": response}})  # fmt: skip

    async def push(self, channel: Channel, event: str, payload: dict[str, Any]) -> None:
        """A server push on `channel`: no ref, the channel's join_ref."""
        await self.send({"topic": channel.topic, "event": event, "ref": None,
                         "join_ref": channel.join_ref, "payload": payload})  # fmt: skip

    async def system(self, channel: Channel, status: str, message: str, extension: str) -> None:
        payload = {
            "channel": channel.topic.removeprefix("realtime:"),
            "extension": extension,
            "message": message,
            "status": status,
        }
        await self.push(channel, "system", payload)

    async def close_channel(self, channel: Channel) -> None:
        """The channel process stops: Phoenix sends `phx_close` with ref = join_ref."""
        if self.channels.get(channel.topic) is channel:
            del self.channels[channel.topic]
        if channel.token_watch is not None and channel.token_watch is not asyncio.current_task():
            channel.token_watch.cancel()
        await self.send({"topic": channel.topic, "event": "phx_close", "ref": channel.join_ref,
                         "join_ref": channel.join_ref, "payload": {}})  # fmt: skip

    async def shutdown_channel(self, channel: Channel, message: str) -> None:
        """Realtime's `shutdown_response`: a `system` error, then the channel stops."""
        await self.system(channel, "error", message, "system")
        await self.close_channel(channel)

    async def run(self) -> None:
        try:
            while (text := await self._next_text()) is not None:
                await self.handle(self.serializer.decode(text))
        except (WebSocketDisconnect, RuntimeError):
            pass  # RuntimeError: Starlette's WebSocketDisconnected once a send failed
        except MalformedFrame as exc:
            logger.info("fake realtime: closing a socket that sent a bad frame: %s", exc)
            await self._close(1011)  # Phoenix's socket process crashes on a bad frame
        finally:
            self.closed = True
            for channel in self.channels.values():
                if channel.token_watch is not None:
                    channel.token_watch.cancel()

    async def _next_text(self) -> str | None:
        """The next text frame; None once the client left or stayed silent too long."""
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), self.hub.idle_timeout)
            except TimeoutError:
                await self._close(1000)  # cowboy's idle timeout closes normally
                return None
            if message["type"] == "websocket.disconnect":
                return None
            if message.get("text") is not None:
                return str(message["text"])
            # A binary frame (V2 broadcast push) resets the idle timer; the fake has no broadcast.

    async def _close(self, code: int) -> None:
        self.closed = True
        try:
            await self.ws.close(code=code)
        except RuntimeError:
            pass  # already closed

    async def handle(self, message: Frame) -> None:
        topic, event, payload = message["topic"], message["event"], message["payload"]
        if topic == "phoenix" and event == "heartbeat":
            await self.reply(message, "ok", {})
        elif event == "phx_join":
            await self.join({**message, "join_ref": message["join_ref"] or message["ref"]})
        elif topic not in self.channels:
            await self.reply(message, "error", {"reason": "unmatched topic"})
        elif event == "phx_leave":
            await self.reply(message, "ok", {})
            await self.close_channel(self.channels[topic])
        elif event == "access_token":
            await self.refresh_token(self.channels[topic], payload.get("access_token"))

    def claims_of(self, token: str | None) -> dict[str, Any]:
        """The claims of a channel token; an `sb_` key stands for the socket's own key."""
        if not token or token.startswith(OPAQUE_PREFIX):
            if self.apikey.startswith(OPAQUE_PREFIX):
                return self.apikey_claims  # minted once per connection by the gateway
            token = self.apikey
        return verify_token(token, self.hub.keys.jwt_secret)

    async def join(self, message: Frame) -> None:
        topic, payload = message["topic"], message["payload"]
        if topic == "realtime:":
            reason = "TopicNameRequired: You must provide a topic name"
            await self.reply(message, "error", {"reason": reason})
            return
        try:
            claims = self.claims_of(payload.get("access_token"))
        except TokenError as exc:
            code = "MalformedJWT" if "valid JWT" in exc.message else "InvalidJWTToken"
            await self.reply(message, "error", {"reason": f"{code}: {exc.message}"})
            return
        if (old := self.channels.get(topic)) is not None:
            # Phoenix closes the old channel of a duplicate join (reference §1.5, step 3).
            await self.close_channel(old)
        channel = Channel(topic, message["join_ref"], claims)
        requested = (payload.get("config") or {}).get("postgres_changes") or []
        echoed = [{**binding, "id": binding_id(binding)} for binding in requested]
        self.channels[topic] = channel
        await self.reply(message, "ok", {"postgres_changes": echoed})
        channel.token_watch = asyncio.create_task(self.confirm_token(channel))
        if requested:
            self.hub.spawn(self.hub.subscribe(self, channel, echoed))

    async def refresh_token(self, channel: Channel, token: str | None) -> None:
        if not token or token.startswith(OPAQUE_PREFIX):
            return
        try:
            channel.claims = verify_token(token, self.hub.keys.jwt_secret)
        except TokenError as exc:
            await self.shutdown_channel(channel, exc.message)

    async def confirm_token(self, channel: Channel) -> None:
        """Close `channel` once its token's `exp` passes without a refresh (`:confirm_token`)."""
        while self.channels.get(channel.topic) is channel and not self.closed:
            exp = channel.claims.get("exp")
            if not isinstance(exp, int):
                return
            left = exp - time.time()
            if left <= 0:
                await self.shutdown_channel(channel, expired_message(exp))
                return
            # Sleep to `exp`, then look again: a refresh may have moved it meanwhile.
            await asyncio.sleep(min(left, CONFIRM_TOKEN_MAX_INTERVAL))
