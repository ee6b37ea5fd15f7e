"""Fixtures shared by the whole suite: the fake Supabase project and the QStash fake's pieces."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from qstash import AsyncQStash

from core.sql import schema_sql
from core.store.supabase import SupabaseStore
from core.store.supabase_feed import FeedOptions
from tests.fakes.qstash import DEV_TOKEN, DeliveryReceiver, FakeQStash
from tests.fakes.supabase import FakeSupabase
from tests.local_postgres import postgres_server
from tui.i18n import EN, using

# Short timings so fault tests recover in well under a second.
FAST_FEED = FeedOptions(
    subscribe_timeout=5.0, health_interval=0.5, backoff_initial=0.05, backoff_max=0.2
)
TABLES = ("video_tasks", "task_events")


@pytest.fixture(scope="session")
def fake_supabase() -> Iterator[FakeSupabase]:
    """A running fake Supabase project with videoq's schema applied (twice), one per process.

    Under pytest-xdist every worker process has its own session, so its own PostgreSQL.
    """
    postgres = postgres_server()
    postgres.start()
    try:
        fake = FakeSupabase(postgres)
        fake.execute_sql(schema_sql())
        fake.execute_sql(schema_sql())  # the migration must be harmless to run again
        fake.start()
        try:
            yield fake
        finally:
            fake.stop()
    finally:
        postgres.stop()


@pytest.fixture
def empty_supabase(fake_supabase: FakeSupabase) -> FakeSupabase:
    """The session's fake Supabase with empty tables and no fault hooks left over."""
    fake_supabase.reset(*TABLES)
    return fake_supabase


@pytest.fixture
async def supabase_store(empty_supabase: FakeSupabase) -> AsyncIterator[SupabaseStore]:
    """An opened SupabaseStore on empty tables, using the service role key."""
    store = SupabaseStore(
        empty_supabase.url, empty_supabase.service_role_key, feed_options=FAST_FEED
    )
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def fake_qstash() -> Iterator[FakeQStash]:
    """A running FakeQStash whose QStash-side waits take a thousandth of their time."""
    with FakeQStash(time_scale=0.001) as qstash:
        yield qstash


@pytest.fixture
async def receiver() -> AsyncIterator[DeliveryReceiver]:
    """A DeliveryReceiver serving on this test's loop, accepting every delivery."""
    async with DeliveryReceiver() as rx:
        yield rx


@pytest.fixture
async def qstash_sdk(fake_qstash: FakeQStash) -> AsyncIterator[AsyncQStash]:
    """The unmodified `qstash` SDK on the fake, without its own retries."""
    client = AsyncQStash(DEV_TOKEN, base_url=fake_qstash.url, retry=False)
    yield client
    await client.http._client.aclose()


@pytest.fixture(autouse=True)
def english() -> Iterator[None]:
    """Every test reads English unless it asks for another language (a zh_CN LANG on the
    machine must not change what the tests see); `using(ZH_CN)` inside a test overrides it."""
    with using(EN):
        yield
