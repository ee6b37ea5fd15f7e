"""DeliveryReceiver: a loopback worker endpoint turning QStash deliveries into Delivery objects."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.errors import SignatureError
from core.queue import Delivery, DeliveryHandler, DeliveryResult
from core.signing import verify
from tests.fakes.loopback import UvicornServer, bind_loopback, serve_started, uvicorn_config
from tests.fakes.qstash.server import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY
from tests.waiting import TIMEOUT, wait_until


@dataclass(frozen=True, slots=True)
class Received:
    """One HTTP delivery as the receiver saw it, and what it answered."""

    delivery: Delivery
    verified: bool
    reason: str
    result: DeliveryResult | None

    @property
    def message_id(self) -> str:
        return self.delivery.headers.get("upstash-message-id", "")

    @property
    def retried(self) -> int:
        return int(self.delivery.headers.get("upstash-retried", "-1"))


async def _accept_all(delivery: Delivery) -> DeliveryResult:
    return DeliveryResult(200)


class DeliveryReceiver:
    """Serves `url` on the caller's event loop; verifies each delivery, then calls the handler.

    A delivery that does not verify is answered 401 and never reaches the handler. The handler's
    DeliveryResult becomes the HTTP answer the way the worker endpoint answers QStash: its status,
    `Retry-After` when `retry_after` is set, and `Upstash-NonRetryable-Error: true` when
    `non_retryable` is.
    """

    def __init__(
        self,
        handler: DeliveryHandler | None = None,
        *,
        current_key: str = DEV_CURRENT_SIGNING_KEY,
        next_key: str | None = DEV_NEXT_SIGNING_KEY,
        path: str = "/api/v1/internal/video-worker",
    ) -> None:
        self.handler: DeliveryHandler = handler or _accept_all
        self.current_key = current_key
        self.next_key = next_key
        self.path = path
        self.url = ""
        self.received: list[Received] = []
        self._server: UvicornServer | None = None
        self._serving: asyncio.Task[None] | None = None

    def set_handler(self, handler: DeliveryHandler) -> None:
        self.handler = handler

    async def start(self) -> DeliveryReceiver:
        """Bind 127.0.0.1 on a free port and serve until stop()."""
        sock = bind_loopback()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}{self.path}"
        app = Starlette(routes=[Route(self.path, self._deliver, methods=["POST"])])
        self._server = UvicornServer(uvicorn_config(app))
        self._serving = await serve_started(self._server, sock, "the delivery receiver")
        return self

    async def stop(self) -> None:
        if self._server is None or self._serving is None:
            return
        self._server.request_exit()
        await asyncio.wait_for(self._serving, 10)
        self._server = None

    async def __aenter__(self) -> DeliveryReceiver:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def verified(self) -> list[Received]:
        return [r for r in self.received if r.verified]

    @property
    def rejected(self) -> list[Received]:
        return [r for r in self.received if not r.verified]

    def for_message(self, message_id: str) -> list[Received]:
        return [r for r in self.received if r.message_id == message_id]

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float = TIMEOUT, what: str = "deliveries"
    ) -> None:
        """Wait until `predicate()` holds; TimeoutError after `timeout` seconds."""
        await wait_until(predicate, what, timeout)

    async def _deliver(self, request: Request) -> Response:
        body = await request.body()  # the raw bytes, before any parsing
        delivery = Delivery(body, dict(request.headers))
        try:
            verify(
                request.headers.get("upstash-signature"),
                body,
                current_key=self.current_key,
                next_key=self.next_key,
                subject=self.url,
            )
        except SignatureError as exc:
            self.received.append(Received(delivery, False, exc.message, None))
            return Response(status_code=401)
        try:
            result = await self.handler(delivery)
        except Exception as exc:  # noqa: BLE001 - a crashing handler is a 500, like a real worker
            self.received.append(Received(delivery, True, f"handler raised {exc!r}", None))
            return Response(status_code=500)
        self.received.append(Received(delivery, True, "", result))
        # The reason as the body, as the worker endpoint answers: QStash keeps it in the DLQ.
        return Response(result.reason, status_code=result.status, headers=answer_headers(result))


def answer_headers(result: DeliveryResult) -> dict[str, str]:
    """The HTTP headers that tell QStash what to do after `result`."""
    headers: dict[str, str] = {}
    if result.retry_after is not None:
        headers["Retry-After"] = format_retry_after(result.retry_after)
    if result.non_retryable:
        headers["Upstash-NonRetryable-Error"] = "true"
    return headers


def format_retry_after(seconds: float) -> str:
    """Whole seconds as a number; fractions as a Go duration in ms, which QStash also accepts."""
    seconds = max(0.0, seconds)
    if seconds == int(seconds):
        return str(int(seconds))
    return f"{math.ceil(seconds * 1000)}ms"
