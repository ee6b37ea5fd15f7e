"""The fake Supabase speaks the real protocols: checked with the unmodified realtime client."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from realtime.message import (
    PostgresChangesMessage,
    ReplyMessage,
    ServerMessageAdapter,
    SystemMessage,
)
from realtime.types import RealtimePostgresChangesListenEvent as Listen
from websockets.exceptions import InvalidStatus

from core.models import Task, TaskStatus, VideoRequest
from core.store import Expect
from core.store.supabase import SupabaseStore
from tests import local_postgres
from tests.fakes.supabase import INSTALL_HINT, FakeSupabase, PostgresUnavailable
from tests.waiting import TIMEOUT


@asynccontextmanager
async def realtime(fake: FakeSupabase, token: str) -> AsyncIterator[AsyncRealtimeClient]:
    """The realtime client as supabase-py builds it (ws URL from the project URL)."""
    url = fake.url.replace("http://", "ws://") + "/realtime/v1"
    client = AsyncRealtimeClient(url, token=token, auto_reconnect=False)
    try:
        yield client
    finally:
        await client.remove_all_channels()


class Collector:
    """Callbacks that record what arrives and let a test wait for it."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._arrived = asyncio.Event()

    def __call__(self, item: Any, *_: Any) -> None:
        self.items.append(item)
        self._arrived.set()

    async def wait(self, count: int) -> list[Any]:
        async with asyncio.timeout(TIMEOUT):
            while len(self.items) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.items


async def subscribe(client: AsyncRealtimeClient, name: str, bindings: dict[str, Collector]) -> Any:
    """Join `name` with one postgres_changes binding per filter and wait until it is live."""
    channel = client.channel(name)
    for filter_, collector in bindings.items():
        channel.on_postgres_changes(
            Listen.All, collector, table="video_tasks", schema="public", filter=filter_ or None
        )
    system = Collector()
    states = Collector()
    channel.on_system(system)
    await channel.subscribe(states)
    assert states.items == [RealtimeSubscribeStates.SUBSCRIBED]
    await system.wait(1)
    return channel


def validated(frame: dict[str, Any]) -> Any:
    """The frame as the realtime client parses it; it drops whatever fails this."""
    return ServerMessageAdapter.validate_json(json.dumps(frame))


async def test_every_frame_the_fake_sends_passes_the_client_model(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    events, running = Collector(), Collector()
    async with realtime(fake_supabase, fake_supabase.service_role_key) as client:
        await subscribe(client, "fidelity", {"": events, "status=eq.running": running})
        task = await supabase_store.insert(Task.new(VideoRequest(prompt="p")))
        await supabase_store.update(task.id, Expect.of(TaskStatus.QUEUED), {"progress": 5})
        await supabase_store.update(
            task.id, Expect.of(TaskStatus.QUEUED), {"status": TaskStatus.RUNNING}
        )
        fake_supabase.execute_sql(f"delete from public.video_tasks where id = '{task.id}'")
        await events.wait(4)
        await running.wait(1)

    frames = fake_supabase.sent_frames()
    parsed = [validated(frame) for frame in frames]
    changes = [m for m in parsed if isinstance(m, PostgresChangesMessage)]
    assert [m.payload["data"]["type"] for m in changes] == ["INSERT", "UPDATE", "UPDATE", "DELETE"]
    assert any(isinstance(m, SystemMessage) for m in parsed)
    assert any(isinstance(m, ReplyMessage) for m in parsed)
    for message in changes:
        data = message.payload["data"]
        assert data["commit_timestamp"].endswith("Z") and data["errors"] is None
        assert ("record" in data) == (data["type"] != "DELETE")
        assert ("old_record" in data) == (data["type"] != "INSERT")
    # The filtered binding saw the row move into `running` (with the full old row) and its
    # DELETE (matched on the old row), but not the updates while it was queued.
    into, deleted = running.items
    assert into["data"]["record"]["status"] == "running"
    assert into["data"]["old_record"]["status"] == "queued"
    assert deleted["data"]["type"] == "DELETE"


async def test_join_reply_echoes_bindings_with_nonzero_int_ids(
    fake_supabase: FakeSupabase,
) -> None:
    async with realtime(fake_supabase, fake_supabase.service_role_key) as client:
        channel = await subscribe(client, "ids", {"": Collector(), "attempt=gt.1": Collector()})
        ids = [callback.id for callback in channel.postgres_changes_callbacks]
    assert all(isinstance(i, int) and 0 < i < 2**27 for i in ids) and len(set(ids)) == 2


async def test_a_user_channel_gets_only_rows_the_user_may_read(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    alice = str(uuid.uuid4())
    seen = Collector()
    async with realtime(fake_supabase, fake_supabase.anon_key) as client:
        await client.set_auth(fake_supabase.user_token(alice))
        await subscribe(client, "alice", {"": seen})
        await supabase_store.insert(Task.new(VideoRequest(prompt="not hers"), user_id="bob"))
        mine = await supabase_store.insert(Task.new(VideoRequest(prompt="hers"), user_id=alice))
        (first,) = await seen.wait(1)
    assert first["data"]["record"]["id"] == mine.id


async def test_a_bad_filter_is_a_system_error(fake_supabase: FakeSupabase) -> None:
    errors = Collector()
    async with realtime(fake_supabase, fake_supabase.service_role_key) as client:
        channel = client.channel("bad-filter")
        channel.on_postgres_changes(
            Listen.All, Collector(), table="video_tasks", schema="public", filter="nope=eq.1"
        )
        await channel.subscribe(errors)
        states = await errors.wait(2)
    assert states[0] == RealtimeSubscribeStates.SUBSCRIBED
    assert states[1] == RealtimeSubscribeStates.CHANNEL_ERROR


async def test_a_forged_key_is_refused_at_the_handshake(fake_supabase: FakeSupabase) -> None:
    async with realtime(fake_supabase, "not.a.jwt") as client:
        with pytest.raises(InvalidStatus) as caught:
            await client.connect()
    assert caught.value.response.status_code == 401


def test_without_postgresql_the_tests_skip_locally_and_fail_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unavailable() -> None:
        raise PostgresUnavailable(INSTALL_HINT)

    monkeypatch.setattr(local_postgres, "PostgresServer", unavailable)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install the postgresql package"):
        local_postgres.postgres_server()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="install the postgresql package"):
        local_postgres.postgres_server()
