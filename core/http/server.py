"""`videoq serve`: uvicorn for the app, plus the reconciler (and the local queue's dispatcher, or
with QStash the in-process fallback runner) in the same process, with a graceful stop on
SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import uvicorn

from core import event_loop
from core.config import HOOK_PATH, Settings
from core.errors import VideoqError
from core.http.app import create_app
from core.http.auth import UserAuth
from core.http.envelope import BodyLimits
from core.runtime import Runtime
from core.supervisor import supervise
from core.urls import is_local_qstash, is_private_url

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def close_lingering_connections(server: uvicorn.Server) -> None:
    """Close the connections `server` still holds after its shutdown.

    uvicorn asks each connection it knows about to close once, when its shutdown begins, and then
    stops waiting after the graceful timeout or at `force_exit`. A connection accepted in that
    moment, or a request still running after a forced stop, would outlive the server, and its
    socket would leak into whatever program embeds it (a test's event loop, for one).
    """
    lingering = list(server.server_state.connections)
    for connection in lingering:
        connection.transport.abort()  # closes the socket on the loop's next turn
    if lingering:
        await asyncio.sleep(0)


class _Server(uvicorn.Server):
    """uvicorn that stops gracefully on a signal and then returns, instead of re-raising it."""

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool) -> None:
        super().__init__(config)
        self.handle_signals = handle_signals
        self.signal_name: str | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self.handle_signals:
            yield
            return
        loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in _SIGNALS:
                loop.remove_signal_handler(sig)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        await close_lingering_connections(self)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.should_exit:
            self.force_exit = True  # a second signal: stop waiting for requests in flight
            return
        self.signal_name = sig.name
        log.info("%s received: finishing requests in flight, then stopping", sig.name)
        self.should_exit = True


class Service:
    """The HTTP service and its background work on one open runtime."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        sock: socket.socket | None = None,
        background: bool = True,
        handle_signals: bool = True,
        limits: BodyLimits | None = None,
        auth: UserAuth | None = None,
    ) -> None:
        self.runtime = runtime
        self.background = background
        self.background_failed = False
        self._stopping = False
        self.sock = sock
        self.app = create_app(runtime, limits=limits, auth=auth)
        config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            log_config=None,
            lifespan="off",
            access_log=False,
            server_header=False,
            # In-flight worker steps may take up to the step timeout; let them answer.
            timeout_graceful_shutdown=math.ceil(runtime.settings.step_lease),
        )
        self.server = _Server(config, handle_signals=handle_signals)

    @property
    def started(self) -> bool:
        return self.server.started

    def request_exit(self) -> None:
        """Ask for a graceful stop (from the service's own event loop)."""
        self.server.should_exit = True

    async def run(self) -> int:
        """Serve until stopped; 0 after a clean stop, 1 if the server could not start."""
        stop = asyncio.Event()
        worker = (
            asyncio.create_task(run_background(self.runtime, stop), name="background")
            if self.background
            else None
        )
        if worker is not None:
            worker.add_done_callback(self._background_ended)
        code = 0
        try:
            await self.server.serve(sockets=[self.sock] if self.sock else None)
        except SystemExit:  # uvicorn's way of saying it could not bind; it logged why
            code = 1
        finally:
            self._stopping = True
            stop.set()
            if worker is not None:
                with contextlib.suppress(Exception):  # run_background logged it
                    await worker
        if self.background_failed or not self.server.started:
            return 1
        return code

    def _background_ended(self, done: asyncio.Task[None]) -> None:
        if self._stopping or done.cancelled():
            return
        # Without its reconciler (or dispatcher) the service would quietly stop finishing tasks:
        # better to exit and let the supervisor start it again.
        log.error("background work ended while serving: stopping the service")
        self.background_failed = True
        self.request_exit()


async def run_background(runtime: Runtime, stop: asyncio.Event) -> None:
    """The reconciler and, on the local queue, its dispatcher, or with QStash the in-process
    runner for when QStash cannot take steps, until `stop` is set."""
    try:
        await supervise(runtime, stop)
    except VideoqError as exc:
        log.error("background work stopped: %s", exc.message)
    except Exception:
        log.exception("background work crashed")
        raise


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000) -> int:
    """Run `videoq serve` until SIGTERM/SIGINT; returns the process exit code."""
    runtime = Runtime.from_settings(settings)
    return event_loop.run(_serve(runtime, host, port), settings.event_loop)


async def _serve(runtime: Runtime, host: str, port: int) -> int:
    try:
        await runtime.open()
    except VideoqError as exc:
        log.error("videoq serve cannot start: %s", exc.message)
        with contextlib.suppress(VideoqError):
            await runtime.close()
        return 1
    try:
        service = Service(runtime, host=host, port=port)
        _log_start(runtime, service, host, port)
        code = await service.run()
    finally:
        await runtime.close()
    log.info("videoq serve stopped")
    return code


def _log_start(runtime: Runtime, service: Service, host: str, port: int) -> None:
    settings = runtime.settings
    for part, text in runtime.describe().items():
        log.info("%s: %s", part, text)
    if settings.uses_simulator:
        why = "VIDEOQ_UPSTREAM=simulator" if settings.upstream else "no T8STAR_API_KEY set"
        log.info("%s: the simulator stands in for the upstream", why)
    log.info("task API sign-in: %s", service.app.state.auth.describe())
    listen = f"http://{host}:{port}"
    log.info("listening on %s", listen)
    public = urlsplit(settings.public_url)
    if (public.hostname, public.port or _default_port(public.scheme)) == (host, port):
        log.info("worker endpoint %s", settings.worker_url)
    else:
        log.info(
            "worker endpoint %s, as VIDEOQ_PUBLIC_URL %s says: the address QStash and clients "
            "reach this service at (a proxy or tunnel in front of %s); set it if that is wrong",
            settings.worker_url,
            settings.public_url,
            listen,
        )
    log.info("notify hooks: %s", _hooks_state(runtime))
    if (
        settings.uses_qstash
        and not is_local_qstash(settings.qstash_url)
        and is_private_url(settings.public_url)
    ):
        log.warning(
            "VIDEOQ_PUBLIC_URL %s is not reachable from QStash: set it to this service's "
            "public https URL",
            settings.public_url,
        )


def _hooks_state(runtime: Runtime) -> str:
    """Whether submits ask the upstream to call back, and if not, what would turn it on."""
    settings = runtime.settings
    if runtime.hooks is not None:
        return f"on: the upstream calls {settings.public_url}{HOOK_PATH}/<task id>"
    if not settings.upstream_hooks:
        return "off (VIDEOQ_UPSTREAM_HOOKS=false)"
    if not runtime.upstream.accepts_notify_hook:
        return f"off ({runtime.upstream.name} calls no one back)"
    if not settings.upstream_reaches_public_url:
        return f"off (T8Star cannot reach the private VIDEOQ_PUBLIC_URL {settings.public_url})"
    return "off (they need VIDEOQ_PUBLIC_URL and VIDEOQ_SECRET_KEY set)"


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80
