"""`videoq schedule`: create, show or delete the QStash schedule that drives the reconciler."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from core.config import Settings
from core.errors import InvalidRequest
from tui.i18n import N_, t, tn
from tui.render import stamp

if TYPE_CHECKING:
    from core.reconcile_schedule import Every, ReconcileSchedule


# What `ensure` did, in words (the Outcome's code words are the keys).
ACTIONS = {
    "created": N_("created"),
    "updated": N_("updated"),
    "unchanged": N_("unchanged"),
    "deleted": N_("deleted"),
}


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add `schedule` and its options to the command line."""
    from core.reconcile_schedule import DEFAULT_EVERY

    schedule = commands.add_parser(
        "schedule",
        help=t(
            "create or update the QStash schedule that runs the reconciler of a serverless "
            "deployment (VIDEOQ_PUBLIC_URL + /api/v1/internal/reconcile)"
        ),
    )
    schedule.add_argument(
        "--every",
        default=None,
        metavar="AGE",
        help=t(
            "how often QStash calls it: 1m to 30m, 1h to 12h, or 1d (default {every})",
            every=DEFAULT_EVERY,
        ),
    )
    actions = schedule.add_mutually_exclusive_group()
    actions.add_argument(
        "--show", action="store_true", help=t("print the schedule, change nothing")
    )
    actions.add_argument("--delete", action="store_true", help=t("delete the schedule"))


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run `videoq schedule` with its options; returns the exit code."""
    from core.reconcile_schedule import DEFAULT_EVERY, Every, ReconcileSchedule

    if args.every is not None and (args.show or args.delete):
        raise InvalidRequest(t("--every goes with neither --show nor --delete"))
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
    print(t("schedule {id} {action}: every {every} (cron {cron}) calls {destination}",
            id=outcome.schedule_id, action=t(ACTIONS.get(outcome.action, outcome.action)),
            every=every.text,
            cron=every.cron, destination=schedule.destination))  # fmt: skip
    if outcome.removed:
        print(tn("deleted {count} duplicate schedule with the same destination",
                 "deleted {count} duplicate schedules with the same destination",
                 outcome.removed))  # fmt: skip
    print(t("that is about {calls} QStash messages a day", calls=f"{every.calls_per_day:,}"))
    return 0


async def _show(schedule: ReconcileSchedule) -> int:
    async with schedule:
        found = await schedule.find()
    if not found:
        print(t("no QStash schedule calls {destination}; `videoq schedule` creates it",
                destination=schedule.destination))  # fmt: skip
        return 1
    for each in found:
        state = t("paused") if each.paused else t("active")
        print(t("schedule {id} ({state})", id=each.schedule_id, state=state))
        print(t("  calls     {value}", value=each.destination))
        print(t("  cron      {value}", value=each.cron))
        print(t("  last run  {value}", value=_when(each.last_schedule_time)))
        print(t("  next run  {value}", value=_when(each.next_schedule_time)))
    return 0


async def _delete(schedule: ReconcileSchedule) -> int:
    async with schedule:
        deleted = await schedule.delete()
    if not deleted:
        print(t("no QStash schedule calls {destination}: nothing to delete",
                destination=schedule.destination))  # fmt: skip
    for schedule_id in deleted:
        print(t("schedule {id} deleted", id=schedule_id))
    return 0


def _when(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return t("never")
    return stamp(datetime.fromtimestamp(epoch_ms / 1000, UTC))
