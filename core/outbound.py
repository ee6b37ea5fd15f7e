"""The HTTP client of videoq's calls out: T8Star, the QStash API, Supabase's PostgREST.

httpx's API over aiohttp's connection pool (the `httpx-aiohttp` transport). httpcore's own pool
walks every connection on each request and on each response it closes, checking idle ones with
a syscall or two, then walks them again for each waiting request. At 32 calls in flight that
walking was most of the CPU of a signed delivery into `videoq serve` (docs/benchmarks.md, "The
HTTP service"). aiohttp hands out a pooled connection without it.
"""

from __future__ import annotations

from typing import Any

import httpx


def client(
    *,
    timeout: httpx.Timeout,
    limits: httpx.Limits | None = None,
    **options: Any,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` on aiohttp's pool; `options` go to the client as they are."""
    # aiohttp costs ~120 ms of imports: only processes that call out pay them, when they do.
    from core.aiohttp_transport import SortedTransport

    transport = SortedTransport(limits=limits or httpx.Limits())
    return httpx.AsyncClient(timeout=timeout, transport=transport, **options)
