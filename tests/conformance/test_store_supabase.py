"""The TaskStore conformance suite, unchanged, against SupabaseStore over the fake Supabase."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.store.supabase import SupabaseStore
from tests.conformance.store_contract import StoreContract


@pytest.fixture
async def store(supabase_store: SupabaseStore) -> AsyncIterator[SupabaseStore]:
    """An opened SupabaseStore on empty tables (PostgREST and Realtime over the fake)."""
    yield supabase_store


class TestSupabaseStore(StoreContract):
    """Every promise of the TaskStore port, kept by the Supabase adapter."""
