"""The event loop a command runs on: uvloop where it is installed, the standard one otherwise.

uvloop (libuv under asyncio's API) takes about a tenth less CPU per worker step than the
standard loop on this project's workload (bench/peers.py), most of it in scheduling callbacks
and in waking the loop from the store's writer thread. videoq uses asyncio's public API only,
so either loop runs it; `VIDEOQ_EVENT_LOOP=asyncio` chooses the standard one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from core.errors import ConfigError

T = TypeVar("T")

CHOICES = ("uvloop", "asyncio")
"""What `VIDEOQ_EVENT_LOOP` may name (unset: uvloop where it is installed)."""


def loop_factory(choice: str | None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop to build for `choice` (Settings.event_loop); None means asyncio's own."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "VIDEOQ_EVENT_LOOP=uvloop, but uvloop is not installed"
                " (it is not built for Windows): install it or set VIDEOQ_EVENT_LOOP=asyncio"
            ) from None
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str | None) -> T:
    """`asyncio.run(main)` on the loop `choice` names (see `loop_factory`)."""
    try:
        factory = loop_factory(choice)
    except BaseException:
        main.close()  # never awaited: say so quietly rather than warn at exit
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
