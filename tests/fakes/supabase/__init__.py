"""A Supabase double for tests: a private PostgreSQL, a PostgREST subset and the Realtime socket.

The real supabase-py, postgrest and realtime clients talk to it unmodified over loopback.
"""

from tests.fakes.supabase.postgres import INSTALL_HINT, PostgresServer, PostgresUnavailable
from tests.fakes.supabase.server import FakeSupabase, shim_sql
from tests.fakes.supabase.tokens import JWT_SECRET, make_token

__all__ = [
    "FakeSupabase",
    "INSTALL_HINT",
    "JWT_SECRET",
    "PostgresServer",
    "PostgresUnavailable",
    "make_token",
    "shim_sql",
]
