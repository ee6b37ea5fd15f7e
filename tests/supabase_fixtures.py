"""Fixtures for the Supabase tests: one fake Supabase per test session, stores opened on it.

Import them explicitly in a test module:
`from tests.supabase_fixtures import fake_supabase_fixture, supabase_store_fixture  # noqa: F401`
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from core.sql import schema_sql
from core.store.supabase import SupabaseStore
from core.store.supabase_feed import FeedOptions
from tests.fakes.supabase import FakeSupabase, PostgresServer, PostgresUnavailable

# Short timings so fault tests recover in well under a second.
FAST_FEED = FeedOptions(
    subscribe_timeout=5.0, health_interval=0.5, backoff_initial=0.05, backoff_max=0.2
)
TABLES = ("video_tasks", "task_events")

# Each test module that imports the session fixture gets its own copy of it, so the fake is
# shared by reference count: started by the first user, stopped after the last.
_shared: dict[str, object] = {}
_users = [0]


def _start() -> FakeSupabase:
    try:
        postgres = PostgresServer()
    except PostgresUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}", pytrace=False)
        pytest.skip(str(exc))
    postgres.start()
    try:
        fake = FakeSupabase(postgres)
        fake.execute_sql(schema_sql())
        fake.execute_sql(schema_sql())  # the migration must be harmless to run again
        fake.start()
    except BaseException:
        postgres.stop()
        raise
    return fake


@pytest.fixture(scope="session", name="fake_supabase")
def fake_supabase_fixture() -> Iterator[FakeSupabase]:
    """A running fake Supabase project with videoq's schema applied (twice)."""
    if "fake" not in _shared:
        _shared["fake"] = _start()
    fake = _shared["fake"]
    assert isinstance(fake, FakeSupabase)
    _users[0] += 1
    try:
        yield fake
    finally:
        _users[0] -= 1
        if _users[0] == 0:
            _shared.pop("fake", None)
            fake.stop()
            fake.postgres.stop()


@pytest.fixture(name="supabase_store")
async def supabase_store_fixture(fake_supabase: FakeSupabase) -> AsyncIterator[SupabaseStore]:
    """An opened SupabaseStore on empty tables, using the service role key."""
    fake_supabase.reset(*TABLES)
    store = SupabaseStore(fake_supabase.url, fake_supabase.service_role_key, feed_options=FAST_FEED)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
