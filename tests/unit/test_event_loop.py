"""core.event_loop: the commands' loop is uvloop where installed, asyncio's own when chosen;
the collector's young threshold is raised while a command runs."""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest

from core import event_loop
from core.config import Settings
from core.errors import ConfigError

uvloop = pytest.importorskip("uvloop")


async def _loop_type() -> type:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_the_default_is_uvloop_where_it_is_installed() -> None:
    assert Settings(_env_file=None).event_loop is None
    assert event_loop.run(_loop_type(), None) is uvloop.Loop


def test_asyncio_can_be_chosen() -> None:
    chosen = Settings(_env_file=None, event_loop=" AsyncIO ").event_loop
    assert chosen == "asyncio"
    loop_type = event_loop.run(_loop_type(), chosen)
    assert loop_type is not uvloop.Loop
    assert issubclass(loop_type, asyncio.BaseEventLoop)


def _without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError


def test_without_uvloop_the_default_falls_back_to_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_uvloop(monkeypatch)
    assert event_loop.loop_factory(None) is None


def test_uvloop_chosen_but_missing_is_a_clear_error_and_runs_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without_uvloop(monkeypatch)
    ran = []

    async def main() -> None:
        ran.append(True)

    with pytest.raises(ConfigError, match="VIDEOQ_EVENT_LOOP=uvloop, but uvloop is not installed"):
        event_loop.run(main(), "uvloop")
    assert ran == []


def test_a_command_runs_with_rare_young_collections_and_gives_the_default_back() -> None:
    before = gc.get_threshold()

    async def thresholds() -> tuple[int, ...]:
        return gc.get_threshold()

    async def fails() -> None:
        raise RuntimeError("the command failed")

    assert event_loop.run(thresholds(), None) == (event_loop.YOUNG_COLLECTION_EVERY, *before[1:])
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError):
        event_loop.run(fails(), None)
    assert gc.get_threshold() == before
