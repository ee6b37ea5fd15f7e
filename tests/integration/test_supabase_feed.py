"""SupabaseStore.changes() over the fake Realtime: SYNC timing, events, faults, recovery."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from core.models import Task, TaskChange, TaskStatus, VideoRequest
from core.store import Expect, FeedState
from core.store.supabase import SupabaseStore
from tests.fakes.supabase import FakeSupabase
from tests.waiting import TIMEOUT, wait_until

QUEUED, RUNNING = TaskStatus.QUEUED, TaskStatus.RUNNING


def new_task(prompt: str = "a fox in the snow") -> Task:
    return Task.new(VideoRequest(prompt=prompt))


async def next_change(feed: AsyncIterator[TaskChange], op: str | None = None) -> TaskChange:
    """The next change (of kind `op`, skipping others), or fail after TIMEOUT seconds."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            change = await anext(feed)
            if op is None or change.op == op:
                return change


def system_ok_sent(fake: FakeSupabase) -> bool:
    return any(
        frame["event"] == "system" and frame["payload"]["status"] == "ok"
        for frame in fake.sent_frames()
    )


async def test_sync_waits_for_subscribed_to_postgresql(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    fake_supabase.set_subscribe_delay(0.3)
    async with aclosing(supabase_store.changes()) as feed:
        first = await next_change(feed)
        # The join reply came 0.3 s before the system message; SYNC must not have used it.
        assert first.op == "SYNC"
        assert system_ok_sent(fake_supabase)
        assert supabase_store.feed.state is FeedState.LIVE
    assert supabase_store.feed.state is FeedState.OFFLINE


async def test_insert_update_delete_arrive_with_full_rows(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    async with aclosing(supabase_store.changes()) as feed:
        await next_change(feed, "SYNC")
        task = await supabase_store.insert(new_task())
        inserted = await next_change(feed)
        await supabase_store.update(task.id, Expect.of(QUEUED), {"status": RUNNING})
        updated = await next_change(feed)
        fake_supabase.execute_sql(f"delete from public.video_tasks where id = '{task.id}'")
        deleted = await next_change(feed)

    assert (inserted.op, inserted.task) == ("INSERT", task)
    assert updated.op == "UPDATE" and updated.task is not None
    assert (updated.task.status, updated.task.version) == (RUNNING, 2)
    assert deleted.op == "DELETE" and deleted.task is not None and deleted.task.id == task.id
    assert supabase_store.feed.last_event_at is not None


async def test_a_row_too_large_for_realtime_is_read_again(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    fake_supabase.set_max_record_bytes(1000)
    async with aclosing(supabase_store.changes()) as feed:
        await next_change(feed, "SYNC")
        task = await supabase_store.insert(new_task("a very long prompt " * 100))
        change = await next_change(feed, "INSERT")
    assert change.task == task


async def test_feed_comes_back_after_the_socket_drops(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    async with aclosing(supabase_store.changes()) as feed:
        await next_change(feed, "SYNC")
        assert await fake_supabase.drop_sockets() == 1
        await next_change(feed, "SYNC")
        task = await supabase_store.insert(new_task())
        change = await next_change(feed, "INSERT")
    assert change.task == task


async def test_feed_survives_a_stale_close_after_a_system_error(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="core.store.supabase")
    # The realtime client would rejoin and the server's phx_close for the old join would close
    # the new channel for good (reference §1.5); the store must rebuild and re-sync instead.
    async with aclosing(supabase_store.changes()) as feed:
        await next_change(feed, "SYNC")
        assert await fake_supabase.inject_system_error("Too many database timeouts") == 1
        await next_change(feed, "SYNC")
        task = await supabase_store.insert(new_task())
        change = await next_change(feed, "INSERT")
    assert change.task == task
    assert "channel error: Too many database timeouts" in caplog.text


async def test_feed_outlasts_more_failed_reconnects_than_the_client_allows(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="core.store.supabase")
    async with aclosing(supabase_store.changes()) as feed:
        await next_change(feed, "SYNC")
        fake_supabase.refuse_connections(7)  # realtime-py gives up for good after 5
        await fake_supabase.drop_sockets()
        await next_change(feed, "SYNC")
        assert supabase_store.feed.state is FeedState.LIVE
        task = await supabase_store.insert(new_task())
        change = await next_change(feed, "INSERT")
    assert change.task == task
    refusals = [r for r in caplog.records if "handshake refused (HTTP 500)" in r.getMessage()]
    assert len(refusals) == 7
    assert fake_supabase.service_role_key not in caplog.text


async def test_close_ends_a_running_feed(supabase_store: SupabaseStore) -> None:
    feed = supabase_store.changes()
    await next_change(feed, "SYNC")
    pending = asyncio.ensure_future(anext(feed, None))
    await supabase_store.close()
    async with asyncio.timeout(TIMEOUT):
        assert await pending is None
    await feed.aclose()


async def test_no_replay_of_changes_made_before_subscribing(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    fake_supabase.pause_delivery()
    heard = fake_supabase.changes_taken_in()
    early = await supabase_store.insert(new_task("before"))
    # "Before subscribing" means before the subscription as Realtime sees it, so wait for the
    # fake to hear of the insert; a busy machine can delay its notification past the subscribe.
    await wait_until(lambda: fake_supabase.changes_taken_in() > heard, "the insert's notification")
    async with aclosing(supabase_store.changes()) as feed:
        await next_change(feed, "SYNC")
        fake_supabase.resume_delivery()
        late = await supabase_store.insert(new_task("after"))
        change = await next_change(feed, "INSERT")
    assert change.task == late and change.task != early
