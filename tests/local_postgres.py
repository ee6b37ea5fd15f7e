"""The suite's PostgreSQL policy: skip the tests that need it on a laptop without it, fail in CI."""

from __future__ import annotations

import os

import pytest

from tests.fakes.supabase import PostgresServer, PostgresUnavailable


def postgres_server() -> PostgresServer:
    """A PostgresServer not yet started; skips the test, or fails it under CI=true, without one."""
    try:
        return PostgresServer()
    except PostgresUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}", pytrace=False)
        pytest.skip(str(exc))
