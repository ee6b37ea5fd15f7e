"""The HTTP client of videoq's calls out: T8Star, the QStash API, Supabase's PostgREST.

httpx's API over aiohttp's connection pool (the `httpx-aiohttp` transport). httpcore's own pool
walks every connection on each request and on each response it closes, checking idle ones with
a syscall or two, then walks them again for each waiting request. At 32 calls in flight that
walking was most of the CPU of a signed delivery into `videoq serve` (docs/benchmarks.md, "The
HTTP service"). aiohttp hands out a pooled connection without it.

The transport raises httpx's exceptions, as callers expect. httpx-aiohttp's own table would call
a refused connection or a server that hung up a *timeout*, so errors are sorted again here, from
the aiohttp error underneath, into what httpcore raises for the same failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def client(
    *,
    timeout: httpx.Timeout,
    limits: httpx.Limits | None = None,
    **options: Any,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` on aiohttp's pool; `options` go to the client as they are."""
    transport = _Transport(limits=limits or httpx.Limits())
    return httpx.AsyncClient(timeout=timeout, transport=transport, **options)


class _Transport(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _sorted(request):
            response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream, request)
        return response


class _Body(httpx.AsyncByteStream):
    """A response body whose read errors are sorted like the request's."""

    def __init__(self, stream: httpx.AsyncByteStream, request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _sorted(self._request):
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        with _sorted(self._request):
            await self._stream.aclose()


@contextmanager
def _sorted(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except (httpx.TransportError, aiohttp.ClientError, TimeoutError) as exc:
        cause = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
        error = _httpx_error(cause) if cause is not None else None
        if error is None:
            raise
        raise error(str(exc) or type(cause).__name__, request=request) from cause


def _httpx_error(cause: BaseException) -> type[httpx.TransportError] | None:
    """The httpx exception httpcore raises for the failure `cause` names (None: keep it)."""
    # Most specific first: aiohttp's timeouts are connection errors too.
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout
    if isinstance(cause, aiohttp.SocketTimeoutError):
        return httpx.ReadTimeout
    if isinstance(cause, TimeoutError):
        return httpx.TimeoutException
    if isinstance(cause, aiohttp.ClientProxyConnectionError):
        return httpx.ProxyError
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError
    if isinstance(cause, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError
    if isinstance(cause, aiohttp.ClientConnectionError):
        return httpx.ReadError
    return None
