"""RFC 6455 section 4: the opening handshake, validated on both sides.

Server targets get handcrafted requests from a raw client and must answer a valid
one with a correct 101 and refuse an invalid one with a 4xx (426 with
``Sec-WebSocket-Version: 13`` for an unsupported version) and no upgrade. Client
targets get handcrafted responses from a raw server and must refuse every invalid
one with ``HandshakeError`` (``HandshakeRejected`` for a status other than 101) and
close TCP.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from typing import Any

import pytest

from simple_websocket import HandshakeError, HandshakeRejected

from .harness import (
    CLIENT_TARGETS,
    SERVER_TARGETS,
    ScriptedServer,
    ServerTarget,
    accept_key,
    connect_client,
    open_peer,
    request_headers,
    response_101,
    send_request,
    upgrade_request,
)

pytestmark = pytest.mark.timeout(10)

servers = pytest.mark.parametrize("target", SERVER_TARGETS)
clients = pytest.mark.parametrize("target", CLIENT_TARGETS)

# -- server side ---------------------------------------------------------------------


INVALID_REQUESTS: list[Any] = [
    pytest.param({"key": None}, (400,), id="missing-key"),
    pytest.param({"key": "not base64!"}, (400,), id="key-not-base64"),
    pytest.param({"key": base64.b64encode(os.urandom(15)).decode()}, (400,), id="key-15-bytes"),
    pytest.param({"key": base64.b64encode(os.urandom(17)).decode()}, (400,), id="key-17-bytes"),
    pytest.param({"key": ""}, (400,), id="key-empty"),
    pytest.param({"version": "8"}, (426,), id="version-8"),
    pytest.param({"version": "12"}, (426,), id="version-12"),
    pytest.param({"version": "14"}, (426,), id="version-14"),
    pytest.param({"version": None}, (400, 426), id="missing-version"),
    pytest.param({"upgrade": None}, (400, 426), id="missing-upgrade"),
    pytest.param({"upgrade": "h2c"}, (400, 426), id="upgrade-h2c"),
    pytest.param({"connection": None}, (400,), id="missing-connection"),
    pytest.param({"connection": "keep-alive"}, (400,), id="connection-without-upgrade"),
]


async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


@servers
@pytest.mark.parametrize(("request_kw", "statuses"), INVALID_REQUESTS)
async def test_server_refuses_invalid_request(
    target: str, request_kw: dict[str, Any], statuses: tuple[int, ...]
) -> None:
    async with ServerTarget(target) as server:
        request, _ = upgrade_request(server.port, **request_kw)
        response = await send_request(server.port, request)
        assert response.status in statuses, response.raw_head
        assert "sec-websocket-accept" not in response.headers
        if response.status == 426:
            # 4.2.2 / 4.4: the versions the server supports.
            assert "13" in (response.header("sec-websocket-version") or ""), response.raw_head
        # The connection is closed after the error response: no WebSocket follows.
        assert await _read_to_eof(response.reader) == b""
        response.writer.close()
        assert server.sides.empty()
        # The server keeps serving.
        peer = await open_peer(server.port)
        side = await server.side_of(peer)
        await peer.roundtrip(side, "after a refused handshake")


@pytest.mark.parametrize(
    "target",
    # aiohttp answers a request without Host with 400 itself.
    SERVER_TARGETS,
)
async def test_server_refuses_request_without_host(target: str) -> None:
    async with ServerTarget(target) as server:
        request, _ = upgrade_request(server.port, host=False)
        response = await send_request(server.port, request)
        assert response.status == 400, response.raw_head
        response.writer.close()


@pytest.mark.parametrize(
    ("target", "request_kw"),
    [
        pytest.param(t, kw, id=f"{name}-{t}")
        for t in ("serve", "aiohttp")
        for name, kw in (
            ("post", {"method": "POST"}),
            ("put", {"method": "PUT"}),
            ("http-1.0", {"http": "HTTP/1.0"}),
        )
    ],
)
async def test_server_refuses_invalid_request_line(target: str, request_kw: dict[str, Any]) -> None:
    """4.1: "an HTTP/1.1 or higher GET request" (the other targets get the request
    line parsed by the application, not by us)."""
    async with ServerTarget(target) as server:
        request, _ = upgrade_request(server.port, **request_kw)
        response = await send_request(server.port, request)
        assert 400 <= response.status < 500, response.raw_head
        assert server.sides.empty()
        response.writer.close()


@servers
@pytest.mark.parametrize(
    "request_kw",
    [
        pytest.param({}, id="plain"),
        pytest.param({"upgrade": "WebSocket"}, id="upgrade-case-insensitive"),
        pytest.param({"connection": "keep-alive, Upgrade"}, id="connection-token-list"),
        pytest.param({"connection": "upgrade"}, id="connection-case-insensitive"),
        pytest.param({"path": "/chat?room=1"}, id="path-and-query"),
    ],
)
async def test_server_accepts_valid_request(target: str, request_kw: dict[str, Any]) -> None:
    async with ServerTarget(target) as server:
        request, key = upgrade_request(server.port, **request_kw)
        response = await send_request(server.port, request)
        assert response.status == 101, response.raw_head
        assert response.raw_head.startswith("HTTP/1.1 101 ")
        assert key is not None
        assert response.header("sec-websocket-accept") == accept_key(key)
        assert (response.header("upgrade") or "").lower() == "websocket"
        assert "upgrade" in (response.header("connection") or "").lower()
        # Nothing that was not asked for.
        assert "sec-websocket-extensions" not in response.headers
        assert "sec-websocket-protocol" not in response.headers
        side = await server.accepted()
        assert side is not None
        response.writer.close()


@servers
@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["a", "b"], "b"),
        (["c", "b"], "c"),
        (["x"], None),
        ([], None),
    ],
)
async def test_server_subprotocol_negotiation(
    target: str, offered: list[str], chosen: str | None
) -> None:
    async with ServerTarget(target, subprotocols=["b", "c"]) as server:
        extra = f"Sec-WebSocket-Protocol: {', '.join(offered)}\r\n" if offered else ""
        request, _ = upgrade_request(server.port, extra=extra)
        response = await send_request(server.port, request)
        assert response.status == 101
        # 4.2.2: one of the client's values, or no header at all.
        assert response.header("sec-websocket-protocol") == chosen
        side = await server.accepted()
        assert side.subprotocol == chosen
        response.writer.close()


# -- client side ----------------------------------------------------------------------


@clients
async def test_client_request_is_a_valid_upgrade(target: str) -> None:
    async with ScriptedServer() as raw:
        side1 = await connect_client(target, raw.url + "chat?x=1", subprotocols=["a", "b"])
        side2 = await connect_client(target, raw.url)
        try:
            heads = raw.requests
            lines = heads[0].split("\r\n")
            assert lines[0] == "GET /chat?x=1 HTTP/1.1"
            headers = request_headers(heads[0])
            assert headers["host"] == f"127.0.0.1:{raw.port}"
            assert headers["upgrade"].lower() == "websocket"
            assert "upgrade" in headers["connection"].lower()
            assert headers["sec-websocket-version"] == "13"
            assert headers["sec-websocket-protocol"].replace(" ", "") == "a,b"
            keys = [request_headers(h)["sec-websocket-key"] for h in heads]
            # 4.1: a randomly selected 16-byte value, base64-encoded, new each time.
            assert all(len(base64.b64decode(k, validate=True)) == 16 for k in keys)
            assert keys[0] != keys[1]
        finally:
            side1.abort()
            side2.abort()


def _respond(**kw: Any) -> Callable[[str, str], bytes]:
    return lambda key, head: response_101(key, **kw)


def _status(code: int) -> Callable[[str, str], bytes]:
    return lambda key, head: (
        f"HTTP/1.1 {code} Whatever\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"
    ).encode()


INVALID_RESPONSES: list[Any] = [
    pytest.param(_respond(accept="dGhlIHNhbXBsZSBub25jZQ=="), HandshakeError, id="wrong-accept"),
    pytest.param(_respond(accept=None), HandshakeError, id="missing-accept"),
    pytest.param(_respond(upgrade=None), HandshakeError, id="missing-upgrade"),
    pytest.param(_respond(upgrade="h2c"), HandshakeError, id="upgrade-h2c"),
    pytest.param(_respond(connection=None), HandshakeError, id="missing-connection"),
    pytest.param(_respond(extensions="x-unknown"), HandshakeError, id="unknown-extension"),
    pytest.param(
        _respond(extensions="x-webkit-deflate-frame"), HandshakeError, id="unoffered-extension"
    ),
    pytest.param(_respond(subprotocol="z"), HandshakeError, id="unoffered-subprotocol"),
    pytest.param(_respond(subprotocol="a, b"), HandshakeError, id="two-subprotocols"),
    pytest.param(lambda key, head: b"garbage\r\n\r\n", HandshakeError, id="malformed-status-line"),
    *(
        pytest.param(_status(code), HandshakeRejected, id=f"status-{code}")
        for code in (200, 302, 400, 403, 426, 500, 503)
    ),
]


@clients
@pytest.mark.parametrize(("respond", "error"), INVALID_RESPONSES)
async def test_client_refuses_invalid_response(
    target: str, respond: Callable[[str, str], bytes], error: type[Exception]
) -> None:
    async with ScriptedServer(respond=respond) as raw:
        with pytest.raises(error) as info:
            await connect_client(target, raw.url, subprotocols=["a", "b"])
        if error is HandshakeRejected:
            assert info.value.status_code == int(respond("", "")[9:12])
        # The client closed TCP (4.1: "_Fail the WebSocket Connection_").
        peer = await raw.accept()
        await peer.expect_eof()


@clients
async def test_client_subprotocol_without_offer_is_refused(target: str) -> None:
    async with ScriptedServer(respond=_respond(subprotocol="a")) as raw:
        with pytest.raises(HandshakeError):
            await connect_client(target, raw.url)
        await (await raw.accept()).expect_eof()


@clients
async def test_client_accepts_offered_subprotocol(target: str) -> None:
    async with ScriptedServer(respond=_respond(subprotocol="b")) as raw:
        side = await connect_client(target, raw.url, subprotocols=["a", "b"])
        try:
            assert side.subprotocol == "b"
            peer = await raw.accept()
            await peer.send_text("hi")
            assert await side.receive() == "hi"
        finally:
            side.abort()


@clients
async def test_client_handshake_error_when_server_closes_early(target: str) -> None:
    async with ScriptedServer(respond=lambda key, head: b"HTTP/1.1 101 Swi") as raw:

        async def close_soon() -> None:
            peer = await raw.accept()
            peer.close_tcp()

        closer = asyncio.create_task(close_soon())
        with pytest.raises((HandshakeError, OSError)):
            await connect_client(target, raw.url)
        await closer
