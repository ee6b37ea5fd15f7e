"""A tiny asyncio connection pool (psycopg_pool is not installed, and the fake needs little)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg


class Pool:
    """Up to `size` connections for one role, handed out one request at a time."""

    def __init__(self, conninfo: str, size: int = 16, *, autocommit: bool = False) -> None:
        self._conninfo = conninfo
        self._autocommit = autocommit
        self._idle: asyncio.LifoQueue[psycopg.AsyncConnection] = asyncio.LifoQueue()
        self._slots = asyncio.Semaphore(size)
        self._all: set[psycopg.AsyncConnection] = set()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection for the duration of the block; broken ones are thrown away."""
        async with self._slots:
            conn = await self._take()
            try:
                yield conn
            finally:
                if conn.closed or conn.broken:
                    self._all.discard(conn)
                else:
                    self._idle.put_nowait(conn)

    async def _take(self) -> psycopg.AsyncConnection:
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            if not conn.closed:
                return conn
            self._all.discard(conn)
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=self._autocommit)
        self._all.add(conn)
        return conn

    async def close(self) -> None:
        """Close every connection, idle or not."""
        for conn in list(self._all):
            await conn.close()
        self._all.clear()
