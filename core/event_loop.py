"""The event loop a command runs on: uvloop where it is installed, the standard one otherwise.

uvloop (libuv under asyncio's API) takes about a tenth less CPU per worker step than the
standard loop on this project's workload (bench/peers.py), most of it in scheduling callbacks
and in waking the loop from the store's writer thread. videoq uses asyncio's public API only,
so either loop runs it; `VIDEOQ_EVENT_LOOP=asyncio` chooses the standard one.

While a command runs, the cycle collector's youngest generation is collected every
YOUNG_COLLECTION_EVERY allocations rather than CPython's 700 (see there).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from core.errors import ConfigError

T = TypeVar("T")

CHOICES = ("uvloop", "asyncio")
"""What `VIDEOQ_EVENT_LOOP` may name (unset: uvloop where it is installed)."""

YOUNG_COLLECTION_EVERY = 50_000
"""Allocations (less deallocations) of tracked objects between two passes of the collector
over its youngest generation, while a command runs; CPython's default is 700.

A worker step allocates a few hundred objects that reference counting frees at once, so the
default threshold ran a young pass every two or three steps, and what those passes promoted
brought a full pass (15–30 ms) every 0.7 s: 6 % of the worker's CPU in all, mostly cache
misses. At 50,000 the passes are rare and each costs about what one did before (what is alive
and young at any moment is the same); a worker step takes about 7 % less CPU (bench/peers.py,
docs/benchmarks.md "Engine speed, sixth pass") and peak memory does not move. Only cyclic
garbage waits longer to be freed, a few megabytes at most."""


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
    """`asyncio.run(main)` on the loop `choice` names (see `loop_factory`), with the
    collector's young threshold at YOUNG_COLLECTION_EVERY until it returns."""
    try:
        factory = loop_factory(choice)
    except BaseException:
        main.close()  # never awaited: say so quietly rather than warn at exit
        raise
    thresholds = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *thresholds[1:])
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    finally:
        gc.set_threshold(*thresholds)
