"""Loopback HTTP servers for the fakes: uvicorn on 127.0.0.1, in its own thread or on this loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import uvicorn
from starlette.types import ASGIApp

from core.http.server import close_lingering_connections
from tests.waiting import wait_until

T = TypeVar("T")


def bind_loopback(*, nodelay: bool = True) -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a port the OS picks."""
    # proto=IPPROTO_TCP makes asyncio set TCP_NODELAY on accepted sockets (else +40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP if nodelay else 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def uvicorn_config(app: ASGIApp, **options: Any) -> uvicorn.Config:
    """uvicorn settings for a test server (quiet, no lifespan, 1 s graceful exit); `options` win."""
    defaults: dict[str, Any] = {
        "log_config": None,
        "log_level": "warning",
        "lifespan": "off",
        "access_log": False,
        "timeout_graceful_shutdown": 1,
    }
    return uvicorn.Config(app, **(defaults | options))


class UvicornServer(uvicorn.Server):
    """uvicorn for test servers: no signal capture, an exit without waiting for a tick, and no
    connection left open after it stops."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Ctrl-C belongs to pytest, not to a server inside the tests.
        yield

    async def main_loop(self) -> None:
        await self.on_tick(0)
        await self._exit.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        await close_lingering_connections(self)

    def request_exit(self) -> None:
        """Stop serving; call it on the server's own loop."""
        self.should_exit = True
        self._exit.set()


async def serve_started(
    server: UvicornServer, sock: socket.socket, what: str, timeout: float = 10.0
) -> asyncio.Task[None]:
    """Serve `sock` from a task on this loop; the task, once connections are accepted."""
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    with contextlib.suppress(TimeoutError):
        await wait_until(lambda: server.started or serving.done(), f"{what} to start", timeout)
    if not server.started:
        sock.close()
        raise RuntimeError(f"{what} did not start") from _give_up(serving)
    return serving


def _give_up(serving: asyncio.Task[None]) -> BaseException | None:
    if not serving.done():
        serving.cancel()
        return None
    return None if serving.cancelled() else serving.exception()


class LoopbackServer:
    """Serves an ASGI app on 127.0.0.1 (a port the OS picks) from its own thread and event loop.

    `running()` is entered on that loop before serving and left after it: it yields the app and
    owns what the app needs (clients, pools). `on_stop()` runs on the loop before serving ends.
    `options` go to `uvicorn.Config`.
    """

    def __init__(
        self,
        name: str,
        running: Callable[[], AbstractAsyncContextManager[ASGIApp]],
        *,
        on_stop: Callable[[], Awaitable[None]] | None = None,
        nodelay: bool = True,
        start_timeout: float = 15.0,
        **options: Any,
    ) -> None:
        self.name = name
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._running = running
        self._on_stop = on_stop
        self._nodelay = nodelay
        self._start_timeout = start_timeout
        self._options = options
        self._thread: threading.Thread | None = None
        self._server: UvicornServer | None = None

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>, or "" before the first start()."""
        return f"http://127.0.0.1:{self.port}" if self.port else ""

    def start(self) -> None:
        """Serve from a new thread; return once it accepts connections."""
        sock = bind_loopback(nodelay=self._nodelay)
        self.port = sock.getsockname()[1]
        started: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._thread_main, args=(sock, started), name=self.name, daemon=True
        )
        self._thread.start()
        try:
            started.result(self._start_timeout + 1)
        except TimeoutError as exc:
            raise RuntimeError(f"{self.name} did not start") from exc

    def stop(self) -> None:
        """Run `on_stop()`, stop serving, leave `running()` and wait for the thread."""
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(self._exit(), loop).result(10)
        thread.join(15)
        self.loop = self._thread = None

    def __enter__(self) -> LoopbackServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run `coro` on the server's loop; its result as a concurrent Future."""
        assert self.loop is not None, f"start() {self.name} first"
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run `coro` on the server's loop and wait for its result."""
        return self.submit(coro).result(timeout)

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        """Call `callback(*args)` on the server's loop, without waiting for it."""
        assert self.loop is not None, f"start() {self.name} first"
        self.loop.call_soon_threadsafe(callback, *args)

    def _thread_main(self, sock: socket.socket, started: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._serve(sock, started))
        except BaseException as exc:
            if started.done():
                raise
            started.set_exception(exc)  # start() raises it; the thread ends quietly
        finally:
            sock.close()  # uvicorn closes it after serving; this is for a failed start
            loop.close()

    async def _serve(self, sock: socket.socket, started: Future[None]) -> None:
        async with self._running() as app:
            self._server = UvicornServer(uvicorn_config(app, **self._options))
            serving = await serve_started(self._server, sock, self.name, self._start_timeout)
            started.set_result(None)
            await serving

    async def _exit(self) -> None:
        if self._on_stop is not None:
            await self._on_stop()
        if self._server is not None:
            self._server.request_exit()
