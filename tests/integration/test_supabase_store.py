"""What only the Supabase adapter does: paging, extra-column CAS, and errors a person can act on.

The shared TaskStore promises are in tests/conformance (TestSupabaseStore).
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path

import pytest
from msgspec.structs import replace

from core.config import Settings
from core.errors import StoreError
from core.models import Task, TaskStatus, VideoRequest
from core.store import Expect
from core.store.supabase import SupabaseStore
from core.wiring import build_store
from tests.fakes.supabase import FakeSupabase
from tests.waiting import TIMEOUT

QUEUED = TaskStatus.QUEUED


def new_task(prompt: str = "a cat on a skateboard", **fields: object) -> Task:
    return replace(Task.new(VideoRequest(prompt=prompt)), **fields)


async def test_cas_checks_attempt_polls_and_extra(supabase_store: SupabaseStore) -> None:
    task = await supabase_store.insert(new_task())
    wrong_attempt = Expect.of(QUEUED, attempt=2)
    wrong_polls = Expect.of(QUEUED, polls=3)
    wrong_extra = Expect(frozenset({QUEUED}), extra={"upstream_task_id": "other"})
    wrong_version = Expect(frozenset({QUEUED}), extra={"version": 7})
    for expect in (wrong_attempt, wrong_polls, wrong_extra, wrong_version):
        assert await supabase_store.update(task.id, expect, {"progress": 1}) is None
    matching = Expect(frozenset({QUEUED}), attempt=1, polls=0, extra={"upstream_task_id": None})
    updated = await supabase_store.update(task.id, matching, {"progress": 5})
    assert updated is not None and updated.progress == 5


async def test_list_pages_past_the_row_cap(
    fake_supabase: FakeSupabase, supabase_store: SupabaseStore
) -> None:
    # Supabase returns at most 1000 rows per request by default; the fake does the same.
    fake_supabase.execute_sql(
        "insert into public.video_tasks (id, model, prompt, aspect_ratio, duration)"
        " select 'bulk-' || g, 'sora-2', 'a prompt', '16:9', 10 from generate_series(1, 1001) g"
    )
    assert len(await supabase_store.list(limit=1000)) == 1000
    assert len(await supabase_store.list(limit=5000)) == 1001


async def test_check_constraint_refusal_is_a_clear_store_error(
    supabase_store: SupabaseStore,
) -> None:
    task = await supabase_store.insert(new_task())
    with pytest.raises(StoreError, match="video_tasks_progress_check") as caught:
        await supabase_store.update(task.id, Expect.of(QUEUED), {"progress": 101})
    assert "Failing row" not in str(caught.value)


async def test_duplicate_insert_is_a_store_error(supabase_store: SupabaseStore) -> None:
    task = await supabase_store.insert(new_task())
    with pytest.raises(StoreError, match="already exists"):
        await supabase_store.insert(task)


async def test_wrong_key_says_which_setting_to_fix(fake_supabase: FakeSupabase) -> None:
    store = SupabaseStore(fake_supabase.url, fake_supabase.anon_key)
    with pytest.raises(StoreError, match="SUPABASE_SERVICE_ROLE_KEY"):
        await store.open()
    await store.close()
    forged = SupabaseStore(fake_supabase.url, "not-a-jwt")
    with pytest.raises(StoreError, match="SUPABASE_SERVICE_ROLE_KEY"):
        await forged.open()
    await forged.close()


async def test_unreachable_project_is_a_store_error() -> None:
    store = SupabaseStore("http://127.0.0.1:9", "key.key.key", timeout=2)
    with pytest.raises(StoreError, match="cannot reach Supabase at 127.0.0.1:9"):
        await store.open()
    await store.close()


def test_describe_names_the_project_host() -> None:
    store = SupabaseStore("https://abcd.supabase.co/", "key")
    assert store.describe() == "supabase: abcd.supabase.co"


async def test_a_secret_key_as_the_service_role_key_reads_writes_and_follows_changes(
    empty_supabase: FakeSupabase, tmp_path: Path
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        db_path=tmp_path / "videoq.db",
        supabase_url=empty_supabase.url,
        supabase_service_role_key=empty_supabase.secret_key,
    )
    store = build_store(settings)
    assert isinstance(store, SupabaseStore)
    await store.open()
    try:
        async with aclosing(store.changes()) as feed:
            assert (await asyncio.wait_for(anext(feed), TIMEOUT)).op == "SYNC"
            task = await store.insert(new_task())
            change = await asyncio.wait_for(anext(feed), TIMEOUT)
        assert change.op == "INSERT" and change.task == task
        updated = await store.update(task.id, Expect.of(QUEUED), {"progress": 3})
        assert updated is not None and await store.get(task.id) == updated
    finally:
        await store.close()
