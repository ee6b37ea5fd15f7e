"""Shell completion scripts, generated from the argparse parser by shtab, and the task ids they
offer (the hidden `videoq _ids` command, which reads the store and nothing else)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable, Iterator
from typing import Any

from core.config import Settings
from core.models import TERMINAL, Task, TaskStatus
from tui.render import short_id

SHELLS = ("bash", "zsh", "fish")
IDS_COMMAND = "_ids"
ID_LIMIT = 50


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell`: commands, flags, statuses, models and task ids."""
    import shtab

    from core.reconcile_schedule import SUGGESTED_EVERY
    from core.upstream import DEFAULT_PROVIDER, provider_for

    for prog, action in _actions(parser):
        if "--status" in action.option_strings and prog.endswith(" prune"):
            action.complete = _words("finished", sorted(TERMINAL))  # type: ignore[attr-defined]
        elif "--status" in action.option_strings:
            action.complete = _words("status", TaskStatus)  # type: ignore[attr-defined]
        elif "--model" in action.option_strings:
            action.complete = _words("model", provider_for(DEFAULT_PROVIDER).choices["model"])  # type: ignore[attr-defined]
        elif "--every" in action.option_strings:
            action.complete = _words("every", SUGGESTED_EVERY)  # type: ignore[attr-defined]
        elif action.dest in ("task_id", "task_ids"):
            ids = f"{parser.prog} {IDS_COMMAND} 2>/dev/null"
            action.complete = shtab.cmd(ids)  # type: ignore[attr-defined]
    return shtab.complete(parser, shell=shell)


def print_recent_ids(settings: Settings, limit: int = ID_LIMIT) -> int:
    """Print the short ids of the newest tasks, newest first (what completion offers)."""
    if not settings.uses_supabase and not settings.db_path.exists():
        return 0  # completing must never create the database
    tasks = asyncio.run(_recent(settings, limit))
    if tasks:
        print("\n".join(short_id(task.id) for task in tasks))
    return 0


async def _recent(settings: Settings, limit: int) -> list[Task]:
    from core.runtime import build_store

    store = build_store(settings)
    await store.open()
    try:
        return await store.list(limit=limit)
    finally:
        await store.close()


def _words(label: str, values: Iterable[str]) -> dict[str, Any]:
    """A shtab completion of a fixed list of words, for every shell."""
    joined = " ".join(values)
    function = f"_videoq_{label}_words"
    return {
        "bash": function,
        "zsh": f"({joined})",
        "fish": joined,
        "tcsh": f"({joined})",
        "preamble": {"bash": f'{function}() {{\n  compgen -W "{joined}" -- "$1"\n}}'},
    }


def _actions(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    """Every option of the parser and its commands, with the prog (`videoq list`) it is in."""
    for action in parser._actions:
        yield parser.prog, action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
