"""Loopback HTTP servers for the fakes: a bound socket and uvicorn without its test-hostile bits."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn


def bind_loopback() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a port the OS picks."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class LoopbackServer(uvicorn.Server):
    """uvicorn for test servers: no signal capture, and an exit without waiting for a tick."""

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

    def request_exit(self) -> None:
        """Stop serving; call it on the server's own loop."""
        self.should_exit = True
        self._exit.set()
