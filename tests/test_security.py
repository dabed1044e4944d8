"""Security checks: TLS verification, the Origin allow-list and handshake limits.

* TLS is verified by default: a server certificate from a private CA (trustme) is
  refused by a client without an explicit ``ssl_context``, accepted with one that
  trusts the CA, and refused when it names another host; ``serve(ssl=...)`` speaks
  TLS only, and ``open_timeout`` also bounds the TLS handshake.
* ``serve(origins=[...])`` answers other ``Origin`` headers with 403 before any
  handler runs.
* The request head is limited in size (431, ``max_head_size``) and in time
  (``open_timeout``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme

import simple_websocket
from simple_websocket import AioClient, ConnectionError, HandshakeRejected, HTTPResponse
from simple_websocket.sansio.handshake import MAX_HEAD_SIZE
from tests.conformance.harness import (
    CLIENT_TARGETS,
    ServerTarget,
    T,
    connect_client,
    open_peer,
    send_request,
    upgrade_request,
)

pytestmark = pytest.mark.timeout(20)


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


# -- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def trusting_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


@pytest.fixture
async def tls_server(ca: trustme.CA) -> AsyncIterator[Any]:
    context = server_context(ca, "localhost", "127.0.0.1")
    async with simple_websocket.serve(echo, ssl=context, open_timeout=5) as server:
        yield server


@pytest.mark.parametrize("target", CLIENT_TARGETS)
async def test_tls_self_signed_certificate_is_refused_by_default(
    target: str, tls_server: Any
) -> None:
    assert tls_server.url.startswith("wss://")
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect_client(target, f"wss://localhost:{tls_server.port}/")


@pytest.mark.parametrize("target", CLIENT_TARGETS)
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_tls_works_with_a_context_that_trusts_the_ca(
    target: str, host: str, tls_server: Any, ca: trustme.CA
) -> None:
    side = await connect_client(
        target, f"wss://{host}:{tls_server.port}/", ssl_context=trusting_context(ca)
    )
    try:
        await side.send("over TLS")
        assert await side.receive() == "over TLS"
        await side.close()
    finally:
        side.abort()


@pytest.mark.parametrize("target", CLIENT_TARGETS)
async def test_tls_certificate_for_another_host_is_refused(target: str, ca: trustme.CA) -> None:
    context = server_context(ca, "other.example")
    async with simple_websocket.serve(echo, ssl=context) as server:
        with pytest.raises(ssl.SSLCertVerificationError, match=r"match"):
            await connect_client(
                target, f"wss://127.0.0.1:{server.port}/", ssl_context=trusting_context(ca)
            )


async def test_tls_server_refuses_plain_websocket(tls_server: Any) -> None:
    with pytest.raises((ConnectionError, OSError)):
        await AioClient.connect(f"ws://127.0.0.1:{tls_server.port}/", open_timeout=5)


async def test_tls_handshake_is_bounded_by_open_timeout(ca: trustme.CA) -> None:
    """A client that opens TCP and never starts TLS is dropped after open_timeout."""
    open_timeout = 6 * T
    context = server_context(ca, "127.0.0.1")
    async with simple_websocket.serve(echo, ssl=context, open_timeout=open_timeout) as server:
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        start = loop.time()
        try:
            data = await asyncio.wait_for(reader.read(), open_timeout + 5)
        except ConnectionResetError:
            data = b""
        assert data == b""
        assert loop.time() - start < open_timeout + 2
        writer.close()


# -- Origin allow-list -----------------------------------------------------------------

GOOD = "https://good.example"


@pytest.mark.parametrize(
    ("origins", "origin", "status"),
    [
        ([GOOD], GOOD, 101),
        ([GOOD], "https://evil.example", 403),
        ([GOOD], "https://good.example.evil.example", 403),
        ([GOOD], "http://good.example", 403),
        ([GOOD], None, 403),
        ([GOOD, None], None, 101),
        ([GOOD, None], "null", 403),
        ([], GOOD, 403),
        (None, "https://anything.example", 101),
        (None, None, 101),
    ],
)
async def test_origins_allow_list(
    origins: list[str | None] | None, origin: str | None, status: int
) -> None:
    async with ServerTarget("serve", origins=origins) as server:
        extra = f"Origin: {origin}\r\n" if origin is not None else ""
        request, _ = upgrade_request(server.port, extra=extra)
        response = await send_request(server.port, request)
        assert response.status == status, response.raw_head
        if status == 403:
            assert "sec-websocket-accept" not in response.headers
            assert await response.reader.read() == b""  # closed
            assert server.sides.empty()  # no handler ran
        response.writer.close()


async def test_origins_refusal_seen_by_our_client() -> None:
    async with simple_websocket.serve(echo, origins=[GOOD]) as server:
        with pytest.raises(HandshakeRejected) as info:
            await AioClient.connect(server.url, headers={"Origin": "https://evil.example"})
        assert info.value.status_code == 403
        async with AioClient.connect(server.url, headers={"Origin": GOOD}) as ws:
            await ws.send("allowed")
            assert await ws.receive(timeout=5) == "allowed"


async def test_origins_do_not_stop_process_request_from_serving_pages() -> None:
    def page(request: Any) -> HTTPResponse | None:
        if request.header("Upgrade") is None:
            return HTTPResponse(200, "<p>page</p>", [("Content-Type", "text/html")])
        return None

    async with simple_websocket.serve(echo, origins=[GOOD], process_request=page) as server:
        request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
        response = await send_request(server.port, request)
        assert response.status == 200 and response.body == b"<p>page</p>"
        response.writer.close()


def test_origins_must_be_a_list() -> None:
    with pytest.raises(TypeError):
        simple_websocket.serve(echo, origins=GOOD)


# -- handshake size and time limits --------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("X-Big: " + "a" * (MAX_HEAD_SIZE + 10) + "\r\n", id="one-huge-header"),
        pytest.param("".join(f"X-H{i}: v\r\n" for i in range(200)), id="200-headers"),
    ],
)
async def test_oversized_head_gets_431(extra: str) -> None:
    async with ServerTarget("serve") as server:
        request, _ = upgrade_request(server.port, extra=extra)
        response = await send_request(server.port, request)
        assert response.status == 431, response.raw_head
        response.writer.close()
        # The server keeps serving.
        peer = await open_peer(server.port)
        await peer.roundtrip(await server.side_of(peer), "fine")


async def test_aiohttp_target_refuses_oversized_head_itself() -> None:
    """aiohttp parses the request before AioServer.accept(aiohttp=) sees it."""
    async with ServerTarget("aiohttp") as server:
        extra = "X-Big: " + "a" * (MAX_HEAD_SIZE + 10) + "\r\n"
        request, _ = upgrade_request(server.port, extra=extra)
        response = await send_request(server.port, request)
        assert 400 <= response.status < 500, response.raw_head
        response.writer.close()


@pytest.mark.parametrize(("size", "status"), [(900, 101), (1500, 431)])
async def test_max_head_size_option(size: int, status: int) -> None:
    async with ServerTarget("serve", max_head_size=1024) as server:
        request, _ = upgrade_request(server.port)
        padding = size - len(request) - len("X-Pad: \r\n")
        request, _ = upgrade_request(server.port, extra=f"X-Pad: {'p' * padding}\r\n")
        assert len(request) == size
        response = await send_request(server.port, request)
        assert response.status == status, response.raw_head
        response.writer.close()


async def test_endless_head_is_refused_as_soon_as_it_passes_the_limit() -> None:
    """A head that never ends gets 431 once it passes max_head_size, long before
    open_timeout."""
    async with ServerTarget("serve", max_head_size=2048, open_timeout=60) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nX-Endless: ")
        for _ in range(40):
            writer.write(b"x" * 100)
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 431 ")
        writer.close()


@pytest.mark.parametrize("value", [0, -1, MAX_HEAD_SIZE + 1])
def test_max_head_size_must_be_in_range(value: int) -> None:
    with pytest.raises(ValueError, match="max_head_size"):
        simple_websocket.serve(echo, max_head_size=value)


async def test_open_timeout_also_covers_a_slow_process_request() -> None:
    """A request held up by process_request still ends at open_timeout."""
    open_timeout = 6 * T
    release = asyncio.Event()

    async def slow(request: Any) -> None:
        await release.wait()

    async with simple_websocket.serve(
        echo, process_request=slow, open_timeout=open_timeout
    ) as server:
        loop = asyncio.get_running_loop()
        request, _ = upgrade_request(server.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request)
        start = loop.time()
        try:
            data = await asyncio.wait_for(reader.read(), open_timeout + 5)
        except ConnectionResetError:
            data = b""
        assert data == b""
        assert loop.time() - start < open_timeout + 2
        release.set()
        writer.close()
