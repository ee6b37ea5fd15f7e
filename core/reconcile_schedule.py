"""`videoq schedule`: the QStash schedule that calls the reconcile endpoint of a serverless host.

On a serverless host no process runs the reconciler between requests, so QStash calls
`{VIDEOQ_PUBLIC_URL}/api/v1/internal/reconcile` on a cron schedule instead. There is one such
schedule per deployment, found by its destination: creating it again updates it in place.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from msgspec import Struct

from core.config import Settings
from core.errors import ConfigError, InvalidRequest, QueueError
from core.urls import is_local_qstash, is_private_url

if TYPE_CHECKING:
    from qstash import AsyncQStash
    from qstash.schedule import Schedule

T = TypeVar("T")
DEFAULT_EVERY = "1m"
SUGGESTED_EVERY = ("1m", "2m", "5m", "10m", "15m", "30m", "1h")
"""What completion offers for `--every`."""
CALL_TIMEOUT = 15.0
"""Seconds one schedules API call may take."""
MINUTES_PER_DAY = 24 * 60
_EVERY = re.compile(r"(\d+)([mhd])")
# Steps that divide their unit evenly: `*/7` would fire at :56 and again at :00.
_EVEN = {"m": (60, "*/{n} * * * *"), "h": (24, "0 */{n} * * *"), "d": (1, "0 0 * * *")}
_UNIT_MINUTES = {"m": 1, "h": 60, "d": MINUTES_PER_DAY}


class Every(Struct, frozen=True):
    """How often the schedule calls: the `--every` text, its cron, and the calls per day."""

    text: str
    cron: str
    calls_per_day: int

    @classmethod
    def parse(cls, text: str) -> Every:
        """`1m`…`30m`, `1h`…`12h` or `1d`, in steps that divide the hour (or day) evenly."""
        found = _EVERY.fullmatch(text.strip().lower())
        number, unit = (int(found.group(1)), found.group(2)) if found else (0, "")
        limit = _EVEN[unit][0] if unit in _EVEN else 0
        if number < 1 or limit % number or (number == limit and unit != "d"):
            raise InvalidRequest(
                f"--every must be minutes that divide an hour (1m, 2m, 5m, 10m, 15m, 30m), hours "
                f"that divide a day (1h, 2h, 3h, 6h, 12h) or 1d, not {text!r}"
            )
        cron = _EVEN[unit][1].format(n=number)
        if cron.startswith("*/1 "):
            cron = "* * * * *"
        return cls(f"{number}{unit}", cron, MINUTES_PER_DAY // (number * _UNIT_MINUTES[unit]))


class Outcome(Struct, frozen=True):
    """What `videoq schedule` did: `created`, `updated`, `unchanged` or `deleted`."""

    action: str
    schedule_id: str
    removed: int = 0


class ReconcileSchedule:
    """The deployment's reconcile schedule in QStash, through the `qstash` SDK."""

    def __init__(self, settings: Settings) -> None:
        if settings.qstash_token is None or not settings.qstash_token.get_secret_value():
            raise ConfigError(
                "videoq schedule needs QSTASH_TOKEN: the schedule lives in QStash, which calls "
                "the reconcile endpoint of the serverless deployment"
            )
        if is_private_url(settings.public_url) and not is_local_qstash(settings.qstash_url):
            raise ConfigError(
                f"VIDEOQ_PUBLIC_URL {settings.public_url} is not reachable from QStash: set it "
                "to the deployment's public https URL"
            )
        from core.queue.qstash import api_base_url

        self.destination = settings.reconcile_url
        self.base_url = api_base_url(settings.qstash_url)
        self._token = settings.qstash_token.get_secret_value()
        self._client: AsyncQStash | None = None

    async def __aenter__(self) -> ReconcileSchedule:
        from core.queue.qstash import sdk_client

        self._client = sdk_client(self._token, self.base_url)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        from core.queue.qstash import close_sdk_client

        client, self._client = self._client, None
        if client is not None:
            await close_sdk_client(client)

    async def find(self) -> list[Schedule]:
        """The schedules that call this deployment's reconcile endpoint (normally one)."""
        schedules = await self._call(self._sdk.schedule.list(), "listing the schedules")
        return [s for s in schedules if s.destination.rstrip("/") == self.destination]

    async def ensure(self, every: Every) -> Outcome:
        """Create the schedule, or update the existing one in place; drop any duplicates."""
        found = await self.find()
        existing, extra = (found[0], found[1:]) if found else (None, [])
        for duplicate in extra:
            await self._delete(duplicate.schedule_id)
        if existing is not None and existing.cron == every.cron and not existing.paused:
            return Outcome("unchanged", existing.schedule_id, len(extra))
        if existing is not None and existing.paused:
            await self._call(self._sdk.schedule.resume(existing.schedule_id), "resuming it")
        schedule_id = await self._call(
            self._sdk.schedule.create(
                destination=self.destination,
                cron=every.cron,
                # A failed call needs no retry: the next one comes at the next tick anyway, and
                # every retry is a billed message.
                retries=0,
                schedule_id=existing.schedule_id if existing else None,
            ),
            "creating the schedule",
        )
        return Outcome("updated" if existing else "created", schedule_id, len(extra))

    async def delete(self) -> list[str]:
        """Delete every schedule that calls the reconcile endpoint; their ids."""
        found = await self.find()
        for schedule in found:
            await self._delete(schedule.schedule_id)
        return [schedule.schedule_id for schedule in found]

    async def _delete(self, schedule_id: str) -> None:
        await self._call(self._sdk.schedule.delete(schedule_id), f"deleting {schedule_id}")

    @property
    def _sdk(self) -> AsyncQStash:
        if self._client is None:
            raise QueueError("the schedule client is not open")
        return self._client

    async def _call(self, call: Awaitable[T], what: str) -> T:
        from core.queue.qstash import CALL_FAILURES, failure_reason

        try:
            return await asyncio.wait_for(call, CALL_TIMEOUT)
        except CALL_FAILURES as exc:
            reason = failure_reason(exc, self.base_url)
            raise QueueError(f"QStash schedules: {what} failed: {reason}") from exc
