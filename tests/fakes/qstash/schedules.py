"""The fake's schedules API (`/v2/schedules`) and the ticker that fires them on a scaled clock.

A schedule fires at each minute of the fake's clock its cron matches: one published message to its
destination, delivered like any other (signed, retried, dead-lettered), with
`Upstash-Schedule-Id`. The clock runs `1 / time_scale` times faster, so a minute of a test with
`time_scale=0.001` lasts 60 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.qstash.cron import Cron, ScaledClock
from tests.fakes.qstash.engine import Message, _body_fields
from tests.fakes.qstash.publish import BadPublish, destination_of, upstash_settings
from tests.fakes.qstash.wire import parse_delay

PREFIX = "/v2/schedules"


@dataclass
class Schedule:
    """One schedule as QStash keeps it."""

    schedule_id: str
    destination: str
    cron: Cron
    created_ms: int
    body: bytes
    content_type: str | None
    method: str
    forward: dict[str, str]
    retries: int
    delay: int
    caller_ip: str
    paused: bool = False
    last_ms: int | None = None
    next_ms: int | None = None
    fired: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """The `GET /v2/schedules/{id}` shape the SDK parses."""
        header = {name: [value] for name, value in self.forward.items()}
        if self.content_type is not None:
            header["Content-Type"] = [self.content_type]
        shape: dict[str, Any] = {
            "scheduleId": self.schedule_id,
            "cron": self.cron.expression,
            "createdAt": self.created_ms,
            "destination": self.destination,
            "method": self.method,
            "header": header,
            "retries": self.retries,
            "delay": self.delay,
            "callerIP": self.caller_ip,
            "isPaused": self.paused,
            **_body_fields(self.body, "body", "bodyBase64"),
        }
        if self.last_ms is not None:
            shape["lastScheduleTime"] = self.last_ms
        if self.next_ms is not None:
            shape["nextScheduleTime"] = self.next_ms
        return shape

    def message(self, now_ms: int) -> Message:
        """The message one firing publishes."""
        return Message(
            message_id="msg_" + secrets.token_hex(20),
            url=self.destination,
            method=self.method,
            body=self.body,
            content_type=self.content_type,
            forward=dict(self.forward),
            max_retries=self.retries,
            not_before_ms=int(time.time() * 1000) + self.delay * 1000,
            created_ms=now_ms,
            caller_ip=self.caller_ip,
            schedule_id=self.schedule_id,
        )


class Schedules:
    """The schedules of one fake, its routes, and the ticker that fires them."""

    def __init__(self, publish: Callable[[Message], None], time_scale: float) -> None:
        self._publish = publish
        self.clock = ScaledClock(time_scale)
        self.by_id: dict[str, Schedule] = {}
        self._ticker: asyncio.Task[None] | None = None

    def routes(self, authorized: Callable[[Request], bool]) -> list[Route]:
        """The REST routes, each refusing a call without the token."""

        def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
            async def endpoint(request: Request) -> Response:
                if not authorized(request):
                    return _error(401, "Unauthorized")
                result: Response = await handler(request)
                return result

            return endpoint

        return [
            Route(PREFIX, guarded(self._list), methods=["GET"]),
            Route(PREFIX + "/{schedule_id}", guarded(self._get), methods=["GET"]),
            Route(PREFIX + "/{schedule_id}", guarded(self._delete), methods=["DELETE"]),
            Route(PREFIX + "/{schedule_id}/pause", guarded(self._pause), methods=["PATCH"]),
            Route(PREFIX + "/{schedule_id}/resume", guarded(self._resume), methods=["PATCH"]),
            Route(PREFIX + "/{destination:path}", guarded(self._create), methods=["POST"]),
        ]

    async def stop(self) -> None:
        """Stop firing (the fake is shutting down)."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    def set_time_scale(self, time_scale: float) -> None:
        self.clock.now()  # time so far counts at the old scale
        self.clock.time_scale = time_scale

    # The REST API.

    async def _create(self, request: Request) -> Response:
        try:
            schedule = self._parse(request, await request.body())
        except (BadPublish, ValueError) as exc:
            return _error(400, str(exc))
        existing = self.by_id.get(schedule.schedule_id)
        if existing is not None:  # QStash updates a schedule created with a known id in place
            schedule.created_ms = existing.created_ms
            schedule.fired = existing.fired
        schedule.next_ms = self._next_ms(schedule.cron)
        self.by_id[schedule.schedule_id] = schedule
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(), name="qstash-schedules")
        return JSONResponse({"scheduleId": schedule.schedule_id})

    async def _list(self, request: Request) -> Response:
        return JSONResponse([s.describe() for s in self.by_id.values()])

    async def _get(self, request: Request) -> Response:
        schedule = self.by_id.get(request.path_params["schedule_id"])
        return (
            _error(404, "schedule not found")
            if schedule is None
            else (JSONResponse(schedule.describe()))
        )

    async def _delete(self, request: Request) -> Response:
        if self.by_id.pop(request.path_params["schedule_id"], None) is None:
            return _error(404, "schedule not found")
        return Response(status_code=200)

    async def _pause(self, request: Request) -> Response:
        return self._set_paused(request, paused=True)

    async def _resume(self, request: Request) -> Response:
        return self._set_paused(request, paused=False)

    def _set_paused(self, request: Request, *, paused: bool) -> Response:
        schedule = self.by_id.get(request.path_params["schedule_id"])
        if schedule is None:
            return _error(404, "schedule not found")
        schedule.paused = paused
        return Response(status_code=200)

    def _parse(self, request: Request, body: bytes) -> Schedule:
        cfg = upstash_settings(request)
        if "upstash-cron" not in cfg:
            raise BadPublish("Upstash-Cron header is required")
        forward = {
            name[len("upstash-forward-") :].title(): value
            for name, value in cfg.items()
            if name.startswith("upstash-forward-")
        }
        return Schedule(
            schedule_id=cfg.get("upstash-schedule-id") or "scd_" + secrets.token_hex(12),
            destination=destination_of(request, PREFIX + "/"),
            cron=Cron.parse(cfg["upstash-cron"]),
            created_ms=int(time.time() * 1000),
            body=body,
            content_type=request.headers.get("content-type"),
            method=cfg.get("upstash-method", "POST").upper(),
            forward=forward,
            retries=int(cfg.get("upstash-retries", "3")),
            delay=parse_delay(cfg["upstash-delay"]) if "upstash-delay" in cfg else 0,
            caller_ip=request.client.host if request.client else "127.0.0.1",
        )

    # Firing.

    async def _tick(self) -> None:
        while True:
            now = self.clock.now()
            minute = math.floor(now / 60) * 60 + 60
            await asyncio.sleep(self.clock.real_seconds(minute - self.clock.now()))
            self._fire(minute)

    def _fire(self, minute: float) -> None:
        moment = ScaledClock.at(minute)
        for schedule in list(self.by_id.values()):
            if schedule.paused or not schedule.cron.matches(moment):
                continue
            message = schedule.message(int(minute * 1000))
            schedule.last_ms = int(minute * 1000)
            schedule.next_ms = self._next_ms(schedule.cron)
            schedule.fired.append(message.message_id)
            self._publish(message)

    def _next_ms(self, cron: Cron) -> int | None:
        minute = math.floor(self.clock.now() / 60) * 60
        for _ in range(366 * 24 * 60):  # a cron that matches no minute in a year never fires
            minute += 60
            if cron.matches(ScaledClock.at(minute)):
                return int(minute * 1000)
        return None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
