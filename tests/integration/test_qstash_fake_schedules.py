"""The QStash fake's schedules API, driven by the unmodified `qstash` SDK, and its firing clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from qstash import AsyncQStash
from qstash.errors import QStashError

from tests.fakes.qstash import FakeQStash, Received
from tests.fakes.qstash.cron import Cron
from tests.fakes.qstash.receiver import DeliveryReceiver


def fired_by(receiver: DeliveryReceiver, schedule_id: str) -> list[Received]:
    return [r for r in receiver.verified if r.delivery.header("upstash-schedule-id") == schedule_id]


async def test_a_schedule_is_created_listed_read_and_deleted(
    fake_qstash: FakeQStash, qstash_sdk: AsyncQStash
) -> None:
    schedule_id = await qstash_sdk.schedule.create(
        destination="https://example.com/reconcile", cron="*/5 * * * *", retries=1
    )
    assert schedule_id.startswith("scd_")
    got = await qstash_sdk.schedule.get(schedule_id)
    assert (got.destination, got.cron, got.retries, got.paused) == (
        "https://example.com/reconcile",
        "*/5 * * * *",
        1,
        False,
    )
    assert got.next_schedule_time is not None
    assert [s.schedule_id for s in await qstash_sdk.schedule.list()] == [schedule_id]
    await qstash_sdk.schedule.delete(schedule_id)
    assert await qstash_sdk.schedule.list() == []
    with pytest.raises(QStashError, match="404"):
        await qstash_sdk.schedule.get(schedule_id)


async def test_create_with_a_known_schedule_id_updates_it_in_place(
    fake_qstash: FakeQStash, qstash_sdk: AsyncQStash
) -> None:
    first = await qstash_sdk.schedule.create(destination="https://example.com/a", cron="* * * * *")
    created = (await qstash_sdk.schedule.get(first)).created_at
    again = await qstash_sdk.schedule.create(
        destination="https://example.com/a", cron="*/2 * * * *", schedule_id=first
    )
    assert again == first
    [only] = await qstash_sdk.schedule.list()
    assert (only.cron, only.created_at) == ("*/2 * * * *", created)


async def test_a_bad_cron_or_token_is_refused(
    fake_qstash: FakeQStash, qstash_sdk: AsyncQStash
) -> None:
    with pytest.raises(QStashError, match="400"):
        await qstash_sdk.schedule.create(destination="https://example.com/a", cron="*/0 * * * *")
    with pytest.raises(QStashError, match="400"):
        await qstash_sdk.schedule.create(destination="https://example.com/a", cron="* * *")
    stranger = AsyncQStash("not-the-token", base_url=fake_qstash.url, retry=False)
    try:
        with pytest.raises(QStashError, match="401"):
            await stranger.schedule.list()
    finally:
        await stranger.http._client.aclose()
    assert await qstash_sdk.schedule.list() == []


async def test_a_schedule_fires_signed_deliveries_each_scaled_minute(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    # time_scale 0.001: a minute of the fake's clock lasts 60 ms.
    schedule_id = await qstash_sdk.schedule.create(
        destination=receiver.url, cron="* * * * *", body="tick"
    )
    await receiver.wait_for(lambda: len(fired_by(receiver, schedule_id)) >= 3, what="3 firings")
    assert {r.delivery.body for r in fired_by(receiver, schedule_id)} == {b"tick"}
    assert receiver.rejected == []
    assert (await qstash_sdk.schedule.get(schedule_id)).last_schedule_time is not None


async def test_a_paused_schedule_does_not_fire_until_resumed(
    fake_qstash: FakeQStash, receiver: DeliveryReceiver, qstash_sdk: AsyncQStash
) -> None:
    paused = await qstash_sdk.schedule.create(destination=receiver.url, cron="* * * * *")
    await qstash_sdk.schedule.pause(paused)
    marker = await qstash_sdk.schedule.create(destination=receiver.url, cron="* * * * *")
    await receiver.wait_for(lambda: len(fired_by(receiver, marker)) >= 1, what="the marker")
    # A scaled minute is short: the schedule may have fired once between its create and its
    # pause. Counted from here, it must not fire while the marker fires three more times.
    before = len(fired_by(receiver, paused))
    seen = len(fired_by(receiver, marker))
    await receiver.wait_for(lambda: len(fired_by(receiver, marker)) >= seen + 3, what="the marker")
    assert len(fired_by(receiver, paused)) == before
    assert (await qstash_sdk.schedule.get(paused)).paused
    await qstash_sdk.schedule.resume(paused)
    await receiver.wait_for(lambda: fired_by(receiver, paused) != [], what="the resumed one")


def test_cron_fields_take_steps_ranges_and_lists() -> None:
    every_ten = Cron.parse("*/10 * * * *")
    assert [m for m in range(60) if every_ten.matches(_at(minute=m))] == [0, 10, 20, 30, 40, 50]
    hourly = Cron.parse("0 */6 * * *")
    assert hourly.matches(_at(hour=12, minute=0)) and not hourly.matches(_at(hour=13, minute=0))
    listed = Cron.parse("5,7-9 * * * *")
    assert [m for m in range(12) if listed.matches(_at(minute=m))] == [5, 7, 8, 9]
    for bad in ("60 * * * *", "* * * *", "*/x * * * *", "5-2 * * * *"):
        with pytest.raises(ValueError, match="cron"):
            Cron.parse(bad)


def test_day_of_month_and_weekday_restricted_together_fire_on_either() -> None:
    # As cron does: "the 1st, and every Monday", not "a Monday that is the 1st".
    either = Cron.parse("0 9 1 * 1")
    days = [d for d in range(1, 32) if either.matches(_at(day=d, hour=9))]
    assert days == [1, 7, 14, 21, 28]  # December 2026: the 1st (a Tuesday) and its Mondays
    mondays = Cron.parse("0 9 * * 1")
    assert [d for d in range(1, 32) if mondays.matches(_at(day=d, hour=9))] == [7, 14, 21, 28]


def _at(*, day: int = 2, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)
