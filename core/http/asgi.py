"""`core.http.asgi:app`: the HTTP service for a serverless ASGI host, with no background work.

`videoq serve` runs the reconciler (and, on the local queue, the dispatcher) beside the app; here
nothing runs between requests. QStash delivers every step to the worker endpoint and calls the
reconcile endpoint on a schedule (`videoq schedule`), so each request does all its work itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from msgspec import ValidationError
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from core.config import Settings, settings_problem
from core.errors import ConfigError, VideoqError
from core.http.app import create_app
from core.http.envelope import error_response, fail
from core.runtime import Runtime

log = logging.getLogger(__name__)

STEP_LIMIT = 8.0
"""Longest step on a serverless host: serverless platforms end a request after about 10 s."""


def serverless_settings(load: Callable[[], Settings] = Settings) -> Settings:
    """The settings from the environment, refused with ConfigError if they cannot run serverless."""
    try:
        settings = load()
    except ValidationError as exc:
        raise ConfigError(settings_problem(exc)) from None
    if not settings.uses_qstash:
        why = "VIDEOQ_QUEUE=local" if settings.queue else "no QSTASH_TOKEN is set"
        raise ConfigError(
            f"the serverless app cannot run on the embedded local queue ({why}): it needs a "
            "dispatcher process (`videoq serve` or `videoq --no-ui`). Set QSTASH_TOKEN and "
            "QSTASH_CURRENT_SIGNING_KEY so that QStash delivers the steps"
        )
    if not settings.uses_supabase:
        log.warning(
            "VIDEOQ_STORE=sqlite on a serverless host: each instance has its own file, so tasks "
            "may vanish between requests; set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY"
        )
    if settings.step_timeout > STEP_LIMIT:
        log.info("VIDEOQ_STEP_TIMEOUT capped at %.0fs to fit a serverless request", STEP_LIMIT)
        settings = settings.replace(step_timeout=STEP_LIMIT)
    return settings


@dataclass
class _Built:
    loop: asyncio.AbstractEventLoop
    runtime: Runtime
    app: Starlette


class ServerlessApp:
    """An ASGI app that builds videoq's app (`create_app`) on its first request, and nothing else.

    A warm instance keeps its runtime for the next request on the same event loop; a host that
    runs each request on a new loop gets a fresh runtime, since clients bound to a closed loop
    cannot be used again.
    """

    def __init__(self, load: Callable[[], Settings] = Settings) -> None:
        self._load = load
        self._built: _Built | None = None
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        try:
            app = await self._app()
        except VideoqError as exc:
            await _refusal(exc)(scope, receive, send)
            return
        await app(scope, receive, send)

    async def aclose(self) -> None:
        """Close the runtime built on this event loop, if any."""
        built, self._built = self._built, None
        if built is not None and built.loop is asyncio.get_running_loop():
            await built.runtime.close()

    async def _app(self) -> Starlette:
        loop = asyncio.get_running_loop()
        if self._built is not None and self._built.loop is loop:
            return self._built.app
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        async with self._lock[1]:
            if self._built is None or self._built.loop is not loop:
                self._built = await self._build(loop)
            return self._built.app

    async def _build(self, loop: asyncio.AbstractEventLoop) -> _Built:
        runtime = Runtime.from_settings(serverless_settings(self._load))
        try:
            await runtime.open()
        except VideoqError:
            await runtime.close()
            raise
        for part, text in runtime.describe().items():
            log.info("serverless %s: %s", part, text)
        return _Built(loop, runtime, create_app(runtime))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # A host that speaks lifespan learns of a bad configuration at start-up; the build itself
        # (network included) still waits for the first request.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    serverless_settings(self._load)
                except ConfigError as exc:
                    log.error("videoq cannot start: %s", exc.message)
                    await send({"type": "lifespan.startup.failed", "message": exc.message})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _refusal(exc: VideoqError) -> JSONResponse:
    """The answer while the app cannot be built: the setting to fix, or "come back later"."""
    if isinstance(exc, ConfigError):
        log.error("videoq cannot serve: %s", exc.message)
        return fail(exc.code, exc.message, 500)
    log.warning("videoq cannot serve yet: %s", exc.message)
    return error_response(exc)


app = ServerlessApp()
"""The module-level app a serverless host imports: `core.http.asgi:app`."""
