"""FakeSupabase: PostgREST + Realtime on one loopback port, in a thread, over a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib.resources import files
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from tests.fakes.loopback import LoopbackServer
from tests.fakes.supabase.pool import Pool
from tests.fakes.supabase.postgres import PostgresServer
from tests.fakes.supabase.realtime import IDLE_TIMEOUT, RealtimeHub
from tests.fakes.supabase.rest import RestApi
from tests.fakes.supabase.tokens import JWT_SECRET, ProjectKeys, make_token

_CAPTURE_SQL = """
do $$
declare
    r record;
begin
    for r in select schemaname, tablename from pg_publication_tables
              where pubname = 'supabase_realtime' loop
        execute format('drop trigger if exists realtime_fake_capture on %I.%I',
                       r.schemaname, r.tablename);
        execute format('create trigger realtime_fake_capture after insert or update or delete'
                       ' on %I.%I for each row execute function realtime_fake.capture()',
                       r.schemaname, r.tablename);
    end loop;
end;
$$;
"""


def shim_sql() -> str:
    """What Supabase provides before user SQL: roles, auth.uid()/jwt(), the publication."""
    return files("tests.fakes.supabase").joinpath("shim.sql").read_text(encoding="utf-8")


class FakeSupabase:
    """A Supabase project double: `url`, API keys, the database, and fault hooks."""

    def __init__(self, postgres: PostgresServer, *, jwt_secret: str = JWT_SECRET,
                 max_rows: int = 1000, idle_timeout: float = IDLE_TIMEOUT) -> None:  # fmt: skip
        """`idle_timeout`: seconds a Realtime socket may stay silent before it is closed."""
        self.postgres = postgres
        self.jwt_secret = jwt_secret
        self.max_rows = max_rows
        self.idle_timeout = idle_timeout
        self.keys = ProjectKeys(jwt_secret)
        self.anon_key = make_token("anon", secret=jwt_secret, expires_in=10 * 365 * 86400)
        self.service_role_key = make_token(
            "service_role", secret=jwt_secret, expires_in=10 * 365 * 86400
        )
        self.publishable_key = self.keys.publishable
        """The new-style public key (`sb_publishable_…`): role anon, like `anon_key`."""
        self.secret_key = self.keys.secret
        """The new-style secret key (`sb_secret_…`): role service_role, like `service_role_key`."""
        self.hub: RealtimeHub | None = None
        self._server = LoopbackServer(
            "fake-supabase", self._running, start_timeout=30, ws="websockets-sansio"
        )
        self.execute_sql(shim_sql())

    def user_token(self, sub: str, expires_in: float = 3600.0) -> str:
        """An access token of a signed-in user (role authenticated) with subject `sub`."""
        return make_token("authenticated", sub=sub, secret=self.jwt_secret, expires_in=expires_in)

    def execute_sql(self, text: str) -> None:
        """Run SQL as the database owner (like the Supabase SQL editor), then re-hook capture."""
        with psycopg.connect(self.postgres.conninfo(), autocommit=True) as conn:
            conn.execute(text)  # type: ignore[arg-type]
            conn.execute(_CAPTURE_SQL)  # type: ignore[arg-type]
        if self.hub is not None:
            self._server.call(self._forget_meta())

    def reset(self, *tables: str) -> None:
        """Empty `tables` (no row triggers fire, so no Realtime events); undo every fault hook."""
        names = ", ".join(f"public.{table}" for table in tables)
        with psycopg.connect(self.postgres.conninfo(), autocommit=True) as conn:
            conn.execute(f"truncate {names} restart identity cascade")  # type: ignore[arg-type]
        if self.hub is not None:
            self._server.call(self._restore_defaults())

    async def _restore_defaults(self) -> None:
        assert self.hub is not None
        self.hub.frames.clear()
        self.hub.subscribe_delay = 0.0
        self.hub.refuse_connections = 0
        self.hub.max_record_bytes = 1_048_576
        self.hub.flowing.set()

    async def _forget_meta(self) -> None:
        assert self.hub is not None
        self.hub.catalog.forget()

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>, or "" before start()."""
        return self._server.url

    def start(self) -> None:
        """Serve on 127.0.0.1 (port chosen by the OS) from a background thread."""
        self._server.start()

    def stop(self) -> None:
        """Stop serving and wait for the thread (the database is stopped by its owner)."""
        self._server.stop()

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[Starlette]:
        pool = Pool(self.postgres.conninfo(user="authenticator"), size=24)
        admin = Pool(self.postgres.conninfo(), size=4, autocommit=True)
        hub = RealtimeHub(pool, admin, self.keys, self.idle_timeout)
        await hub.start(self.postgres.conninfo())
        self.hub = hub
        rest = RestApi(pool, self.keys, self.max_rows)
        methods = ["GET", "HEAD", "POST", "PATCH", "DELETE"]
        try:
            yield Starlette(
                routes=[
                    Route("/rest/v1/rpc/{function}", rest.rpc, methods=["POST"]),
                    Route("/rest/v1/{table}", rest.table, methods=methods),
                    WebSocketRoute("/realtime/v1/websocket", hub.endpoint),
                    WebSocketRoute("/socket/websocket", hub.endpoint),
                ]
            )
        finally:
            await hub.stop()
            await pool.close()
            await admin.close()

    # Fault hooks. The coroutine versions run on the fake's loop and never block the caller's.

    async def drop_sockets(self, code: int = 1011) -> int:
        """Close every Realtime client socket abnormally; returns how many were open."""
        assert self.hub is not None
        return await asyncio.wrap_future(self._server.submit(self.hub.drop_sockets(code)))

    async def inject_system_error(self, message: str = "Too many database timeouts") -> int:
        """Send a postgres_changes `system` error to every live channel (the server keeps it)."""
        assert self.hub is not None
        return await asyncio.wrap_future(self._server.submit(self.hub.inject_system_error(message)))

    def pause_delivery(self) -> None:
        """Hold changes back (they queue up) until resume_delivery()."""
        assert self.hub is not None
        self._server.call_soon(self.hub.flowing.clear)

    def resume_delivery(self) -> None:
        assert self.hub is not None
        self._server.call_soon(self.hub.flowing.set)

    def changes_taken_in(self) -> int:
        """How many committed changes the Realtime side has heard of so far (delivered or not)."""
        assert self.hub is not None
        return self.hub.seq

    def refuse_connections(self, count: int) -> None:
        """Deny the next `count` websocket handshakes with HTTP 500."""
        assert self.hub is not None
        self._server.call_soon(setattr, self.hub, "refuse_connections", count)

    def set_subscribe_delay(self, seconds: float) -> None:
        """Wait this long between the join reply and "Subscribed to PostgreSQL"."""
        assert self.hub is not None
        self._server.call_soon(setattr, self.hub, "subscribe_delay", seconds)

    def set_max_record_bytes(self, limit: int) -> None:
        """Rows larger than this come truncated with `errors: ["Error 413: ..."]`."""
        assert self.hub is not None
        self._server.call_soon(setattr, self.hub, "max_record_bytes", limit)

    def sent_frames(self) -> list[dict[str, Any]]:
        """A copy of every frame the Realtime side has sent so far."""
        assert self.hub is not None
        return self._server.call(_copy(self.hub.frames))

    def clear_frames(self) -> None:
        assert self.hub is not None
        self._server.call(_clear(self.hub.frames))

    def connected_sockets(self) -> int:
        assert self.hub is not None
        return self._server.call(_count(self.hub.sockets))


async def _copy(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(frames)


async def _clear(frames: list[dict[str, Any]]) -> None:
    frames.clear()


async def _count(sockets: set[Any]) -> int:
    return sum(1 for sock in sockets if not sock.closed)
