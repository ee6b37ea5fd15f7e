"""The fake Realtime as web clients see it: vsn 2.0.0, token expiry, idle sockets, sb_ keys.

realtime-js speaks vsn 2.0.0 (array frames); these tests speak it with a raw websockets client,
frame by frame, the way realtime-js does. The python `realtime` client (1.0.0) is covered by
test_supabase_fake.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core.models import Task, VideoRequest
from core.store.supabase import SupabaseStore
from tests.fakes.supabase import FakeSupabase
from tests.waiting import TIMEOUT

BINDING = {"event": "*", "schema": "public", "table": "video_tasks"}


def socket_url(fake: FakeSupabase, apikey: str, vsn: str) -> str:
    base = fake.url.replace("http://", "ws://")
    return f"{base}/realtime/v1/websocket?apikey={apikey}&vsn={vsn}"


@asynccontextmanager
async def web_socket(
    fake: FakeSupabase, apikey: str, vsn: str = "2.0.0"
) -> AsyncIterator[ClientConnection]:
    async with connect(socket_url(fake, apikey, vsn), open_timeout=TIMEOUT) as ws:
        yield ws


async def receive(ws: ClientConnection) -> Any:
    """The next frame, decoded."""
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def receive_event(ws: ClientConnection, event: str) -> list[Any]:
    """The next V2 frame whose event is `event` (earlier frames are skipped)."""
    while True:
        frame = await receive(ws)
        if frame[3] == event:
            return frame


def join(topic: str, ref: str, token: str, bindings: list[dict[str, Any]]) -> str:
    """A realtime-js phx_join in vsn 2.0.0 (join_ref = ref)."""
    config = {
        "broadcast": {"ack": False, "self": False},
        "presence": {"key": "", "enabled": False},
        "private": False,
        "postgres_changes": bindings,
    }
    payload = {"config": config, "access_token": token}
    return json.dumps([ref, ref, topic, "phx_join", payload])


async def test_a_v2_client_joins_gets_changes_and_heartbeat_replies(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    topic = "realtime:web-v2"
    async with web_socket(fake_supabase, fake_supabase.anon_key) as ws:
        await ws.send(join(topic, "1", fake_supabase.service_role_key, [BINDING]))
        join_ref, ref, got_topic, event, payload = await receive(ws)
        assert (join_ref, ref, got_topic, event) == ("1", "1", topic, "phx_reply")
        assert payload["status"] == "ok"
        (echoed,) = payload["response"]["postgres_changes"]
        assert {k: v for k, v in echoed.items() if k != "id"} == BINDING
        system = await receive_event(ws, "system")
        assert system[:3] == ["1", None, topic]
        assert system[4]["message"] == "Subscribed to PostgreSQL"

        task = await supabase_store.insert(Task.new(VideoRequest(prompt="over the wire")))
        change = await receive_event(ws, "postgres_changes")
        assert change[:3] == ["1", None, topic]
        assert change[4]["ids"] == [echoed["id"]]
        assert change[4]["data"]["type"] == "INSERT"
        assert change[4]["data"]["record"]["id"] == task.id

        await ws.send(json.dumps([None, "2", "phoenix", "heartbeat", {}]))
        reply = await receive_event(ws, "phx_reply")
        assert reply == [None, "2", "phoenix", "phx_reply", {"status": "ok", "response": {}}]


async def test_a_v1_socket_still_gets_objects_without_join_ref(fake_supabase: FakeSupabase) -> None:
    async with web_socket(fake_supabase, fake_supabase.anon_key, vsn="1.0.0") as ws:
        heartbeat = {"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "7"}
        await ws.send(json.dumps(heartbeat))
        reply = await receive(ws)
    assert reply == {
        "topic": "phoenix",
        "event": "phx_reply",
        "payload": {"status": "ok", "response": {}},
        "ref": "7",
    }


async def test_a_version_no_serializer_matches_is_refused(fake_supabase: FakeSupabase) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with web_socket(fake_supabase, fake_supabase.anon_key, vsn="9.0.0"):
            pass
    assert caught.value.response.status_code == 403


async def test_a_channel_whose_token_expires_gets_a_system_error_then_closes(
    fake_supabase: FakeSupabase,
) -> None:
    topic = "realtime:expiring"
    token = fake_supabase.user_token(str(uuid.uuid4()), expires_in=1)
    async with web_socket(fake_supabase, fake_supabase.anon_key) as ws:
        await ws.send(join(topic, "1", token, []))
        assert (await receive(ws))[4]["status"] == "ok"
        system = await receive_event(ws, "system")
        close = await receive_event(ws, "phx_close")
    assert system[:3] == ["1", None, topic]
    assert system[4]["extension"] == "system" and system[4]["status"] == "error"
    assert system[4]["channel"] == "expiring"
    assert system[4]["message"].startswith("Token has expired ")
    assert system[4]["message"].endswith(" seconds ago")
    assert close == ["1", "1", topic, "phx_close", {}]


@pytest.fixture
def impatient_supabase(fake_supabase: FakeSupabase) -> Iterator[FakeSupabase]:
    """A second fake on the same database whose sockets may stay silent for half a second."""
    fake = FakeSupabase(fake_supabase.postgres, idle_timeout=0.5)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


async def test_a_socket_that_sends_nothing_is_closed(impatient_supabase: FakeSupabase) -> None:
    async with web_socket(impatient_supabase, impatient_supabase.anon_key) as ws:
        await ws.send(json.dumps([None, "1", "phoenix", "heartbeat", {}]))
        assert (await receive(ws))[3] == "phx_reply"
        with pytest.raises(ConnectionClosed):
            await receive(ws)  # nothing more is sent, so the server's idle timer runs out
    assert ws.close_code == 1000


# The new API keys ----------------------------------------------------------------------------


async def test_a_publishable_key_reads_as_anon_and_a_made_up_one_is_refused(
    empty_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    await supabase_store.insert(Task.new(VideoRequest(prompt="not for anon")))
    async with httpx.AsyncClient(base_url=f"{empty_supabase.url}/rest/v1") as http:
        rows = await http.get("/video_tasks?select=id", headers=as_supabase_py(
            empty_supabase.publishable_key))  # fmt: skip
        forged = await http.get("/video_tasks?select=id", headers=as_supabase_py(
            "sb_publishable_made_up"))  # fmt: skip
    # Role anon: the schema grants it nothing on the table (PostgREST answers 42501 as 401).
    assert rows.status_code == 401 and rows.json()["code"] == "42501", rows.text
    assert forged.status_code == 401 and forged.json()["message"] == "Invalid API key"


def as_supabase_py(key: str) -> dict[str, str]:
    """The auth headers supabase-py sends with every request (reference §0)."""
    return {"apiKey": key, "Authorization": f"Bearer {key}"}


async def test_a_user_session_over_a_publishable_key_sees_the_users_changes(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    alice = str(uuid.uuid4())
    topic = "realtime:alice-web"
    async with web_socket(fake_supabase, fake_supabase.publishable_key) as ws:
        await ws.send(join(topic, "1", fake_supabase.user_token(alice), [BINDING]))
        assert (await receive(ws))[4]["status"] == "ok"
        assert (await receive_event(ws, "system"))[4]["status"] == "ok"
        await supabase_store.insert(Task.new(VideoRequest(prompt="bob's"), user_id="bob"))
        mine = await supabase_store.insert(Task.new(VideoRequest(prompt="hers"), user_id=alice))
        change = await receive_event(ws, "postgres_changes")
    assert change[4]["data"]["record"]["id"] == mine.id


async def test_a_made_up_sb_key_is_refused_at_the_handshake(fake_supabase: FakeSupabase) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with web_socket(fake_supabase, "sb_secret_made_up"):
            pass
    assert caught.value.response.status_code == 401
