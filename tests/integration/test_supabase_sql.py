"""core/sql on a real PostgreSQL behind the fake PostgREST: idempotence, checks, RLS, realtime."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import psycopg
import pytest
from postgrest import APIError, CountMethod
from postgrest.types import JSON
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from core.errors import StoreError
from core.models import TASK_COLUMNS, Task, TaskEvent, TaskStatus, VideoRequest
from core.sql import schema_sql
from core.store import Expect
from core.store.supabase import SupabaseStore
from tests.fakes.supabase import FakeSupabase

QUEUED = TaskStatus.QUEUED


@asynccontextmanager
async def rest_client(
    fake: FakeSupabase, key: str, access_token: str | None = None
) -> AsyncIterator[AsyncClient]:
    """supabase-py as a browser would use it: an API key, maybe a signed-in user's token."""
    async with httpx.AsyncClient(timeout=10) as http:
        headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
        options = AsyncClientOptions(httpx_client=http, headers=headers)
        yield await acreate_client(fake.url, key, options)


def columns_of(fake: FakeSupabase, table: str) -> set[str]:
    with psycopg.connect(fake.postgres.conninfo()) as conn:
        rows = conn.execute(
            "select column_name from information_schema.columns"
            " where table_schema = 'public' and table_name = %s",
            [table],
        ).fetchall()
    return {name for (name,) in rows}


def scalar(fake: FakeSupabase, query: str) -> object:
    with psycopg.connect(fake.postgres.conninfo()) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None


def records(data: list[JSON]) -> list[dict[str, JSON]]:
    """PostgREST rows as the objects they are; fails the test on anything else."""
    assert all(isinstance(row, dict) for row in data), data
    return [row for row in data if isinstance(row, dict)]


async def owned_tasks(store: SupabaseStore, *owners: str) -> list[Task]:
    return [await store.insert(Task.new(VideoRequest(prompt="p"), user_id=o)) for o in owners]


def test_schema_sql_is_the_shipped_file() -> None:
    text = schema_sql()
    assert "create table if not exists public.video_tasks" in text
    assert "supabase_realtime" in text


def test_columns_match_the_models(fake_supabase: FakeSupabase) -> None:
    assert columns_of(fake_supabase, "video_tasks") == set(TASK_COLUMNS)
    assert columns_of(fake_supabase, "task_events") == {"id", *TaskEvent.__struct_fields__}


async def test_running_the_schema_again_keeps_rows_and_works(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    (task,) = await owned_tasks(supabase_store, "local")
    fake_supabase.execute_sql(schema_sql())
    fake_supabase.execute_sql(schema_sql())
    updated = await supabase_store.update(task.id, Expect.of(QUEUED), {"progress": 3})
    assert updated is not None and updated.progress == 3
    published = scalar(
        fake_supabase,
        "select count(*) from pg_publication_tables"
        " where pubname = 'supabase_realtime' and tablename = 'video_tasks'",
    )
    assert published == 1
    replica = "select relreplident from pg_class where oid = 'public.video_tasks'::regclass"
    assert scalar(fake_supabase, replica) == "f"


async def test_the_trigger_bumps_version_on_any_update(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    (task,) = await owned_tasks(supabase_store, "local")
    fake_supabase.execute_sql(f"update public.video_tasks set progress = 9 where id = '{task.id}'")
    stored = await supabase_store.get(task.id)
    assert stored is not None and stored.version == 2 and stored.updated_at > task.updated_at


async def test_a_check_constraint_refuses_a_bad_status(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    (task,) = await owned_tasks(supabase_store, "local")
    async with rest_client(fake_supabase, fake_supabase.service_role_key) as client:
        bogus = client.table("video_tasks").update({"status": "bogus"}).eq("id", task.id)
        with pytest.raises(APIError) as caught:
            await bogus.execute()
    assert caught.value.code == "23514"
    assert "video_tasks_status_check" in (caught.value.message or "")
    with pytest.raises(StoreError, match="video_tasks_status_check"):
        await supabase_store.update(task.id, Expect.of(QUEUED), {"status": "bogus"})


async def test_a_user_sees_only_their_own_rows(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    mine, _theirs = await owned_tasks(supabase_store, alice, bob)
    await supabase_store.add_event(TaskEvent(task_id=mine.id, kind="action", attempt=1))
    await supabase_store.add_event(TaskEvent(task_id=_theirs.id, kind="action", attempt=1))
    token = fake_supabase.user_token(alice)
    async with rest_client(fake_supabase, fake_supabase.anon_key, token) as client:
        tasks = records((await client.table("video_tasks").select("*").execute()).data)
        events = records((await client.table("task_events").select("*").execute()).data)
    assert [row["id"] for row in tasks] == [mine.id]
    assert [row["task_id"] for row in events] == [mine.id]


async def test_a_user_cannot_write_or_call_the_functions(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    alice = str(uuid.uuid4())
    (mine,) = await owned_tasks(supabase_store, alice)
    token = fake_supabase.user_token(alice)
    async with rest_client(fake_supabase, fake_supabase.anon_key, token) as client:
        with pytest.raises(APIError) as patch:
            await client.table("video_tasks").update({"progress": 5}).eq("id", mine.id).execute()
        with pytest.raises(APIError) as rpc:
            await client.rpc("videoq_count_by_status", {"p_user_id": None}).execute()
        with pytest.raises(APIError) as prune:
            everything = {"p_before": "9999-01-01T00:00:00Z", "p_statuses": ["succeeded"]}
            await client.rpc("videoq_prune_tasks", everything).execute()
    assert patch.value.code == rpc.value.code == prune.value.code == "42501"


async def test_the_service_role_sees_every_row(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    await owned_tasks(supabase_store, str(uuid.uuid4()), str(uuid.uuid4()), "local")
    async with rest_client(fake_supabase, fake_supabase.service_role_key) as client:
        response = await client.table("video_tasks").select("id", count=CountMethod.exact).execute()
    assert response.count == 3 and len(response.data) == 3


async def test_an_anon_key_sees_nothing(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    await owned_tasks(supabase_store, str(uuid.uuid4()), "local")
    async with rest_client(fake_supabase, fake_supabase.anon_key) as client:
        with pytest.raises(APIError) as caught:
            await client.table("video_tasks").select("*").execute()
    # No grant at all for anon: PostgREST answers 401 with permission denied.
    assert caught.value.code == "42501"


async def test_the_schema_adds_own_key_to_tables_of_the_first_release(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    own, server = await owned_tasks(supabase_store, "local", "local")
    note = "with the user's own upstream key"  # what the first release wrote instead
    await supabase_store.add_event(
        TaskEvent(task_id=own.id, kind="transition", attempt=1, to_status=QUEUED, detail=note)
    )
    fake_supabase.execute_sql("alter table public.video_tasks drop column own_key")
    assert "own_key" not in columns_of(fake_supabase, "video_tasks")

    fake_supabase.execute_sql(schema_sql())
    fake_supabase.execute_sql(schema_sql())

    assert columns_of(fake_supabase, "video_tasks") == set(TASK_COLUMNS)
    stored_own = await supabase_store.get(own.id)
    stored_server = await supabase_store.get(server.id)
    assert stored_own is not None and stored_own.own_key is True
    assert stored_server is not None and stored_server.own_key is False
    updated = await supabase_store.update(server.id, Expect.of(QUEUED), {"own_key": True})
    assert updated is not None and updated.own_key is True
