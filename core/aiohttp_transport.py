"""httpx-aiohttp's transport, raising the httpx exception httpcore raises for each failure.

httpx-aiohttp's own table would call a refused connection or a server that hung up a *timeout*;
callers word their errors by class ("did not answer in time", "could not reach"), so the errors
are sorted again here from the aiohttp error underneath. Used through `core.outbound.client`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


class SortedTransport(AiohttpTransport):
    """AiohttpTransport whose request and response body raise httpcore's exceptions."""

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
