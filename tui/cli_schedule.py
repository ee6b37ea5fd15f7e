"""`videoq schedule`: create, show or delete the QStash schedule that drives the reconciler."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from core.config import Settings
from core.errors import InvalidRequest
from tui.render import plural

if TYPE_CHECKING:
    from core.reconcile_schedule import Every, ReconcileSchedule


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add `schedule` and its options to the command line."""
    from core.reconcile_schedule import DEFAULT_EVERY

    schedule = commands.add_parser(
        "schedule",
        help="create or update the QStash schedule that runs the reconciler of a serverless "
        "deployment (VIDEOQ_PUBLIC_URL + /api/v1/internal/reconcile)",
    )
    schedule.add_argument(
        "--every",
        default=None,
        metavar="AGE",
        help=f"how often QStash calls it: 1m to 30m, 1h to 12h, or 1d (default {DEFAULT_EVERY})",
    )
    actions = schedule.add_mutually_exclusive_group()
    actions.add_argument("--show", action="store_true", help="print the schedule, change nothing")
    actions.add_argument("--delete", action="store_true", help="delete the schedule")


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run `videoq schedule` with its options; returns the exit code."""
    from core.reconcile_schedule import DEFAULT_EVERY, Every, ReconcileSchedule

    if args.every is not None and (args.show or args.delete):
        raise InvalidRequest("--every goes with neither --show nor --delete")
    every = Every.parse(args.every or DEFAULT_EVERY)
    schedule = ReconcileSchedule(settings)
    if args.show:
        return asyncio.run(_show(schedule))
    if args.delete:
        return asyncio.run(_delete(schedule))
    return asyncio.run(_ensure(schedule, every))


async def _ensure(schedule: ReconcileSchedule, every: Every) -> int:
    async with schedule:
        outcome = await schedule.ensure(every)
    print(f"schedule {outcome.schedule_id} {outcome.action}: every {every.text} "
          f"(cron {every.cron}) calls {schedule.destination}")  # fmt: skip
    if outcome.removed:
        print(f"deleted {plural(outcome.removed, 'duplicate schedule')} with the same destination")
    print(f"that is about {every.calls_per_day:,} QStash messages a day")
    return 0


async def _show(schedule: ReconcileSchedule) -> int:
    async with schedule:
        found = await schedule.find()
    if not found:
        print(f"no QStash schedule calls {schedule.destination}; `videoq schedule` creates it")
        return 1
    for each in found:
        state = "paused" if each.paused else "active"
        print(f"schedule {each.schedule_id} ({state})")
        print(f"  calls     {each.destination}")
        print(f"  cron      {each.cron}")
        print(f"  last run  {_when(each.last_schedule_time)}")
        print(f"  next run  {_when(each.next_schedule_time)}")
    return 0


async def _delete(schedule: ReconcileSchedule) -> int:
    async with schedule:
        deleted = await schedule.delete()
    if not deleted:
        print(f"no QStash schedule calls {schedule.destination}: nothing to delete")
    for schedule_id in deleted:
        print(f"schedule {schedule_id} deleted")
    return 0


def _when(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return "never"
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
