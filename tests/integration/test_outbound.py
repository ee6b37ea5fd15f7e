"""The client of every call out (core.outbound): httpx's API and httpx's errors, on aiohttp.

Each failure is made by a raw asyncio server on loopback and must surface as the httpx exception
httpcore raises for it: callers word their errors by class ("did not answer in time" for a
timeout, "could not reach" for a refused connection).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from core import outbound
from tests.http_support import free_port, loopback_socket

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
QUICK = httpx.Timeout(5.0)


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


async def _serve(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, sock=loopback_socket())
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[str]:
    """Answers each request with a JSON description of what it received."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not reader.at_eof():
            try:
                request = await _read_request(reader)
            except asyncio.IncompleteReadError:
                break
            head, _, body = request.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            # Header names are case-insensitive (this transport sends them in lower case).
            headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
            payload = json.dumps(
                {"line": lines[0], "headers": headers, "body": body.decode()}
            ).encode()
            writer.write(
                b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        writer.close()

    async for url in _serve(handle):
        yield url


async def test_requests_and_answers_go_through_as_httpx_builds_them(echo: str) -> None:
    async with outbound.client(
        base_url=echo, timeout=QUICK, headers={"User-Agent": "videoq"}
    ) as client:
        first = await client.post("/v2/things", json={"n": 1}, headers={"Authorization": "B x"})
        second = await client.get("/v2/things/7", params={"q": "a b"})
    assert first.status_code == 201 and first.reason_phrase == "Created"
    sent = first.json()
    assert sent["line"] == "POST /v2/things HTTP/1.1"
    assert sent["headers"]["authorization"] == "B x"
    assert sent["headers"]["user-agent"] == "videoq"
    assert json.loads(sent["body"]) == {"n": 1}
    assert second.json()["line"] == "GET /v2/things/7?q=a+b HTTP/1.1"


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with outbound.client(timeout=QUICK) as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.get(f"http://127.0.0.1:{free_port()}/")
    assert not isinstance(caught.value, httpx.TimeoutException)
    assert caught.value.request.url.path == "/"


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.close()


async def _cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"half":')
    await writer.drain()
    writer.close()


@pytest.mark.parametrize("server", [_hang_up, _cut_short], ids=["hangs up", "cuts the body"])
async def test_a_server_that_hangs_up_is_a_protocol_error_not_a_timeout(server: Handler) -> None:
    async for url in _serve(server):
        async with outbound.client(timeout=QUICK) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(url)


async def test_a_silent_server_is_a_read_timeout() -> None:
    quiet = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await quiet.wait()
        writer.close()

    async for url in _serve(silent):
        async with outbound.client(timeout=httpx.Timeout(0.2, connect=5.0)) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(url)
        quiet.set()


async def test_closing_the_client_closes_its_kept_alive_connections() -> None:
    hung_up = asyncio.Event()

    async def answer_then_wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        await reader.read()  # until the client closes the connection it kept
        hung_up.set()
        writer.close()

    async for url in _serve(answer_then_wait):
        client = outbound.client(timeout=QUICK)
        assert (await client.get(url)).json() == {}
        await asyncio.sleep(0.05)
        assert not hung_up.is_set()  # kept alive for the next request
        await client.aclose()
        await asyncio.wait_for(hung_up.wait(), 5.0)
