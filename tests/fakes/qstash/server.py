"""FakeQStash: the QStash v2 REST API on a loopback port, in a thread, with fault hooks."""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import logging
import secrets
import string
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, Self

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.fakes.loopback import LoopbackServer
from tests.fakes.qstash.engine import Attempt, Engine, FlowGate, Message, State
from tests.fakes.qstash.publish import BadPublish, parse_publish
from tests.fakes.qstash.schedules import Schedules
from tests.waiting import TIMEOUT, wait_until

DEV_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="
DEV_CURRENT_SIGNING_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
DEV_NEXT_SIGNING_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
_REFUSALS = {"error", "rate_limit", "close"}


class _PublishRefused(Exception):
    """Raised after a started response to make uvicorn drop the connection (the 'close' hook)."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _PublishRefused))


_quiet_drops = _QuietDrops()


async def _drop_connection(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    raise _PublishRefused("connection dropped on purpose")


class FakeQStash:
    """A QStash double the unmodified `qstash` SDK publishes to; it delivers with real HTTP.

    Every QStash-side wait (delays, retry backoff, Retry-After, rate periods) is multiplied by
    `time_scale`; `dedup_window`, `delivery_timeout` and the hook delays are real seconds.
    """

    def __init__(
        self,
        *,
        token: str = DEV_TOKEN,
        current_signing_key: str = DEV_CURRENT_SIGNING_KEY,
        next_signing_key: str = DEV_NEXT_SIGNING_KEY,
        time_scale: float = 1.0,
        dedup_window: float = 600.0,
        delivery_timeout: float = 30.0,
    ) -> None:
        self.state = State(token, current_signing_key, next_signing_key, dedup_window)
        self.time_scale = time_scale
        self.delivery_timeout = delivery_timeout
        self._engine: Engine | None = None
        self.schedules = Schedules(self._enqueue, time_scale)
        self._server = LoopbackServer("fake-qstash", self._running, on_stop=self._cancel_deliveries)

    # Life cycle.

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>, or "" before start()."""
        return self._server.url

    def start(self) -> Self:
        """Serve on 127.0.0.1 (port chosen by the OS) from a background thread."""
        logging.getLogger("uvicorn.error").addFilter(_quiet_drops)
        self._server.start()
        return self

    def stop(self) -> None:
        """Cancel pending deliveries, stop serving and wait for the thread."""
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[Starlette]:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
            self._engine = Engine(self.state, client, self.time_scale, self.delivery_timeout)
            try:
                yield self._app()
            finally:
                await self.schedules.stop()
                await self._engine.shutdown()

    async def _cancel_deliveries(self) -> None:
        await self.schedules.stop()
        if self._engine is not None:
            await self._engine.shutdown()

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v2/publish/{destination:path}", self._publish, methods=["POST"]),
                Route("/v2/messages/{message_id}", self._get_message, methods=["GET"]),
                Route("/v2/messages/{message_id}", self._cancel_message, methods=["DELETE"]),
                Route("/v2/messages", self._cancel_messages, methods=["DELETE"]),
                Route("/v2/dlq", self._list_dlq, methods=["GET"]),
                Route("/v2/dlq", self._delete_dlq, methods=["DELETE"]),
                Route("/v2/dlq/retry/{dlq_id}", self._retry_dlq, methods=["POST"]),
                Route("/v2/dlq/{dlq_id}", self._dlq_entry, methods=["GET", "DELETE"]),
                Route("/v2/keys", self._keys, methods=["GET"]),
                Route("/v2/keys/rotate", self._rotate_keys, methods=["POST"]),
                Route("/v2/flowControl/{key}", self._flow_control, methods=["GET"]),
                *self.schedules.routes(self._authorized),
            ]
        )

    # Hooks and counters for tests (callable from any thread).

    def duplicate_deliveries(self, count: int | None = None, *, concurrent: bool = True) -> None:
        """Send every delivery attempt twice (`count` None), or only the next `count` ones."""
        with self.state.lock:
            self.state.hooks.duplicate_all = count is None
            self.state.hooks.duplicate_next = count or 0
            self.state.hooks.duplicate_concurrent = concurrent

    def set_time_scale(self, time_scale: float) -> None:
        """Scale every QStash-side wait that starts from now on (e.g. to slow the backoff down)."""
        self.time_scale = time_scale
        self.schedules.set_time_scale(time_scale)
        if self._engine is not None:
            self._engine.time_scale = time_scale

    def stop_duplicating(self) -> None:
        self.duplicate_deliveries(0)

    def delay_deliveries(self, seconds: float) -> None:
        """Hold every delivery attempt back by `seconds` of real time (0 turns it off)."""
        with self.state.lock:
            self.state.hooks.extra_delay = seconds

    def refuse_publishes(
        self, count: int | None = None, *, seconds: float | None = None, how: str = "error"
    ) -> None:
        """Refuse the next `count` publishes, or all for `seconds`, or all until accepted again.

        `how`: "error" answers 500, "rate_limit" answers 429 with Burst-RateLimit headers,
        "close" drops the connection in the middle of the answer.
        """
        if how not in _REFUSALS:
            raise ValueError(f"how must be one of {sorted(_REFUSALS)}")
        with self.state.lock:
            hooks = self.state.hooks
            hooks.refusing = count is None or count > 0
            hooks.refuse_left = count
            hooks.refuse_until = None if seconds is None else time.monotonic() + seconds
            hooks.refuse_how = how

    def lose_publishes(self, count: int = 1, *, body_contains: bytes = b"") -> None:
        """Accept the next `count` publishes whose body contains `body_contains`, then lose
        them: QStash answers as usual, and nothing is ever delivered."""
        with self.state.lock:
            self.state.hooks.lose_left = count
            self.state.hooks.lose_match = body_contains

    @property
    def lost(self) -> list[str]:
        """Ids of the messages `lose_publishes` made disappear."""
        with self.state.lock:
            return list(self.state.lost)

    def accept_publishes(self) -> None:
        self.refuse_publishes(0)

    @property
    def publishes(self) -> int:
        """Publishes accepted as new messages."""
        return self.state.publishes

    @property
    def publish_requests(self) -> int:
        return self.state.publish_requests

    @property
    def deduplicated(self) -> int:
        return self.state.deduplicated

    @property
    def refused(self) -> int:
        return self.state.refused

    @property
    def keys(self) -> tuple[str, str]:
        """(current, next) signing keys."""
        return self.state.current_key, self.state.next_key

    def deliveries(self) -> Counter[str]:
        """HTTP calls made so far per message id (duplicates included)."""
        with self.state.lock:
            return Counter(self.state.deliveries)

    def attempts(self) -> list[Attempt]:
        with self.state.lock:
            return list(self.state.attempts)

    def delivered(self) -> list[str]:
        """Ids of messages that got a 2xx, in order."""
        with self.state.lock:
            return list(self.state.delivered)

    def dead_letters(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(entry) for entry in self.state.dlq]

    def pending(self) -> int:
        """Messages not yet delivered, dead-lettered or cancelled."""
        return len(self.state.messages)

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float = TIMEOUT, what: str = "the fake"
    ) -> None:
        """Wait until `predicate()` holds; TimeoutError after `timeout` seconds."""
        await wait_until(predicate, what, timeout)

    # The REST API.

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else None
        token = token or request.query_params.get("qstash_token")
        return token is not None and hmac.compare_digest(token.encode(), self.state.token.encode())

    async def _publish(self, request: Request) -> Response:
        with self.state.lock:
            self.state.publish_requests += 1
        refusal = self.state.take_refusal()
        if refusal is not None:
            return _refusal(refusal)
        if not self._authorized(request):
            return _error(401, "Unauthorized")
        try:
            message, dedup_key = parse_publish(request, await request.body())
        except BadPublish as exc:
            return _error(400, str(exc))
        return self._accept(message, dedup_key)

    def _accept(self, message: Message, dedup_key: str | None) -> Response:
        now = time.monotonic()
        self.state.dedup = {k: v for k, v in self.state.dedup.items() if v[1] > now}
        if dedup_key is not None and dedup_key in self.state.dedup:
            with self.state.lock:
                self.state.deduplicated += 1
            existing = self.state.dedup[dedup_key][0]
            return JSONResponse({"messageId": existing, "deduplicated": True}, status_code=202)
        if dedup_key is not None:
            self.state.dedup[dedup_key] = (message.message_id, now + self.state.dedup_window)
        with self.state.lock:
            self.state.publishes += 1
        if not self.state.take_loss(message):
            self._enqueue(message)
        return JSONResponse({"messageId": message.message_id, "url": message.url}, 201)

    def _enqueue(self, message: Message) -> None:
        self.state.messages[message.message_id] = message
        assert self._engine is not None
        self._engine.schedule(message)

    async def _get_message(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Unauthorized")
        message = self.state.messages.get(request.path_params["message_id"])
        if message is None:
            return _error(404, "message not found")
        return JSONResponse(message.describe())

    async def _cancel_message(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Unauthorized")
        message = self.state.messages.get(request.path_params["message_id"])
        if message is None:
            return _error(404, "message not found")
        assert self._engine is not None
        self._engine.cancel(message)
        return Response(status_code=200)

    async def _cancel_messages(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Unauthorized")
        ids = await _requested_ids(request, "messageIds")
        messages = list(self.state.messages.values())
        chosen = [m for m in messages if ids is None or m.message_id in ids]
        assert self._engine is not None
        for message in chosen:
            self._engine.cancel(message)
        return JSONResponse({"cancelled": len(chosen)})

    async def _list_dlq(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Unauthorized")
        return JSONResponse({"messages": self.dead_letters()})

    async def _dlq_entry(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Unauthorized")
        dlq_id = request.path_params["dlq_id"]
        with self.state.lock:
            entry = next((e for e in self.state.dlq if e["dlqId"] == dlq_id), None)
            if entry is not None and request.method == "DELETE":
                self.state.dlq.remove(entry)
                self.state.dead_messages.pop(dlq_id, None)
        if entry is None:
            return _error(404, "dlq message not found")
        return Response(status_code=200) if request.method == "DELETE" else JSONResponse(entry)

    async def _delete_dlq(self, request: Request) -> Response:
        """`DELETE /v2/dlq`: the JSON `{"dlqIds": [...]}` form or `?dlqIds=a,b`; none named: all."""
        if not self._authorized(request):
            return _error(401, "Unauthorized")
        ids = await _requested_ids(request, "dlqIds")
        with self.state.lock:
            chosen = [e for e in self.state.dlq if ids is None or e["dlqId"] in ids]
            for entry in chosen:
                self.state.dlq.remove(entry)
                self.state.dead_messages.pop(entry["dlqId"], None)
        return JSONResponse({"deleted": len(chosen)})

    async def _retry_dlq(self, request: Request) -> Response:
        """`POST /v2/dlq/retry/{dlqId}`: a new message with the dead one's body and headers."""
        if not self._authorized(request):
            return _error(401, "Unauthorized")
        dlq_id = request.path_params["dlq_id"]
        with self.state.lock:
            dead = self.state.dead_messages.pop(dlq_id, None)
            self.state.dlq = [e for e in self.state.dlq if e["dlqId"] != dlq_id]
        if dead is None:
            return _error(404, "dlq message not found")
        now_ms = int(time.time() * 1000)
        fresh = dataclasses.replace(
            dead,
            message_id="msg_" + secrets.token_hex(20),
            not_before_ms=now_ms,
            created_ms=now_ms,
            retried=0,
            in_flight=False,
            cancel_requested=False,
            task=None,
        )
        return self._accept(fresh, None)

    async def _keys(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Unauthorized")
        return JSONResponse({"current": self.state.current_key, "next": self.state.next_key})

    async def _rotate_keys(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Unauthorized")
        alphabet = string.ascii_letters + string.digits
        fresh = "sig_" + "".join(secrets.choice(alphabet) for _ in range(28))
        with self.state.lock:
            self.state.current_key, self.state.next_key = self.state.next_key, fresh
        return await self._keys(request)

    async def _flow_control(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Unauthorized")
        key = request.path_params["key"]
        assert self._engine is not None
        gate: FlowGate | None = self._engine.flows.get(key)
        if gate is None:
            return _error(404, "flow control key not found")
        limits = gate.limits
        return JSONResponse(
            {
                "flowControlKey": key,
                "waitListSize": gate.waiting,
                "parallelismMax": limits.parallelism or 0,
                "parallelismCount": gate.active,
                "rateMax": limits.rate or 0,
                "rateCount": gate.rate_count,
                "ratePeriod": int(limits.period),
                "isPaused": False,
            }
        )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _refusal(how: str) -> Any:
    if how == "close":
        return _drop_connection
    if how == "rate_limit":
        headers = {"Burst-RateLimit-Limit": "100", "Burst-RateLimit-Remaining": "0",
                   "Burst-RateLimit-Reset": str(int(time.time()) + 1)}  # fmt: skip
        return JSONResponse({"error": "rate limit exceeded"}, status_code=429, headers=headers)
    return _error(500, "internal server error")


async def _requested_ids(request: Request, name: str) -> set[str] | None:
    raw = await request.body()
    if raw.strip():
        try:
            return set(json.loads(raw).get(name) or [])
        except (ValueError, AttributeError):
            return set()
    values = request.query_params.getlist(name)
    ids = {part for value in values for part in value.split(",") if part}
    return ids or None
