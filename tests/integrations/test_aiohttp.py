"""The aiohttp adapter: ``ws = await AioServer.accept(aiohttp=request)`` in a handler.

Every test runs a real aiohttp server on 127.0.0.1 (port 0) and talks to it over
loopback with a real client: ours, the ``websockets`` library's, aiohttp's, or a raw
asyncio stream that writes handcrafted bytes and checks every byte it gets back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import websockets.asyncio.client
from aiohttp import web
from websockets.typing import Subprotocol

import simple_websocket
from simple_websocket import AioClient, AioServer, ConnectionClosed, HandshakeError

pytestmark = pytest.mark.timeout(20)

Handler = Callable[[web.Request], Awaitable[Any]]

# -- servers ---------------------------------------------------------------------


@dataclass
class Probe:
    """What a server handler did, for the test to check once it finished."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None
    info: dict[str, Any] = field(default_factory=dict)
    count: int = 0

    def track(self, handler: Handler) -> Handler:
        async def wrapper(request: web.Request) -> Any:
            self.count += 1
            self.started.set()
            try:
                return await handler(request)
            except BaseException as exc:
                self.error = exc
                raise
            finally:
                self.done.set()

        return wrapper

    async def finished(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.done.wait(), timeout)


@contextlib.asynccontextmanager
async def aiohttp_server(handler: Handler) -> AsyncIterator[int]:
    """Run ``handler`` for every path on an aiohttp server; yield its port."""
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port
    finally:
        await runner.cleanup()


def url(port: int, path: str = "/") -> str:
    return f"ws://127.0.0.1:{port}{path}"


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def echo_returning_response(request: web.Request) -> web.StreamResponse:
    """simple-websocket 1.1's documented handler shape."""
    ws = await AioServer.accept(aiohttp=request)
    await echo(ws)
    return web.Response(text="")


async def echo_returning_none(request: web.Request) -> None:
    ws = await AioServer.accept(aiohttp=request)
    await echo(ws)


async def echo_1_1_example(request: web.Request) -> web.StreamResponse:
    """The aiohttp example of simple-websocket 1.1, verbatim but for the names."""
    ws = await AioServer.accept(request)
    try:
        while True:
            data = await ws.receive()
            await ws.send(data)
    except ConnectionClosed:
        pass
    return web.Response(text="")


HANDLER_SHAPES = {
    "returns-response": echo_returning_response,
    "returns-none": echo_returning_none,
    "1.1-example": echo_1_1_example,
}

# -- clients ---------------------------------------------------------------------


class Peer:
    """A client connection with one interface over the three client libraries."""

    async def send(self, data: str | bytes) -> None:
        raise NotImplementedError

    async def recv(self) -> str | bytes:
        raise NotImplementedError

    async def close(self, code: int = 1000, reason: str = "") -> None:
        raise NotImplementedError

    def close_code(self) -> int | None:
        """The close code the server sent (``None`` if none arrived)."""
        raise NotImplementedError


class OurPeer(Peer):
    def __init__(self, ws: AioClient) -> None:
        self.ws = ws

    async def send(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def recv(self) -> str | bytes:
        message = await self.ws.receive()
        assert message is not None
        return message

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason or None)

    def close_code(self) -> int | None:
        return self.ws.close_reason


class WebsocketsPeer(Peer):
    def __init__(self, ws: websockets.asyncio.client.ClientConnection) -> None:
        self.ws = ws

    async def send(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def recv(self) -> str | bytes:
        return await self.ws.recv()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)

    def close_code(self) -> int | None:
        rcvd = self.ws.protocol.close_rcvd
        return rcvd.code if rcvd is not None else None


class AiohttpPeer(Peer):
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.session = session
        self.ws = ws

    async def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            await self.ws.send_str(data)
        else:
            await self.ws.send_bytes(data)

    async def recv(self) -> str | bytes:
        msg = await self.ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            return str(msg.data)
        if msg.type is aiohttp.WSMsgType.BINARY:
            return bytes(msg.data)
        raise ConnectionClosed(self.ws.close_code or 1006, f"aiohttp: {msg.type!r}")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code=code, message=reason.encode())

    def close_code(self) -> int | None:
        return self.ws.close_code


CLIENTS = ["ours", "websockets", "aiohttp"]


@contextlib.asynccontextmanager
async def connect(kind: str, ws_url: str, **kwargs: Any) -> AsyncIterator[Peer]:
    """Open a client of ``kind``; on exit close it (if still open)."""
    if kind == "ours":
        ws = await AioClient.connect(ws_url, **kwargs)
        try:
            yield OurPeer(ws)
        finally:
            await ws.close()
    elif kind == "websockets":
        async with websockets.asyncio.client.connect(ws_url, max_size=None, **kwargs) as wsc:
            yield WebsocketsPeer(wsc)
    else:
        async with aiohttp.ClientSession() as session:
            wsa = await session.ws_connect(ws_url, max_msg_size=0, **kwargs)
            try:
                yield AiohttpPeer(session, wsa)
            finally:
                await wsa.close()


# -- raw bytes -------------------------------------------------------------------

KEY = base64.b64encode(b"0123456789abcdef").decode()
ACCEPT = base64.b64encode(
    hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
).decode()


def upgrade_request(
    port: int, *, key: str | None = KEY, upgrade: bool = True, path: str = "/"
) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"]
    if upgrade and key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def masked_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A client frame (masked, as RFC 6455 requires)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    keystream = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(n, "big")
    return head + mask + masked


def close_payload(code: int, reason: str = "") -> bytes:
    return code.to_bytes(2, "big") + reason.encode()


def parse_frames(data: bytes) -> list[tuple[bool, int, bytes]]:
    """Split server frames; fail on a masked or truncated frame or trailing bytes."""
    frames = []
    i = 0
    while i < len(data):
        assert len(data) - i >= 2, f"truncated frame header: {data[i:]!r}"
        b0, b1 = data[i], data[i + 1]
        assert b0 & 0x70 == 0, f"RSV bits set: {data[i:]!r}"
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        i += 2
        if n == 126:
            n = int.from_bytes(data[i : i + 2], "big")
            i += 2
        elif n == 127:
            n = int.from_bytes(data[i : i + 8], "big")
            i += 8
        assert len(data) - i >= n, f"truncated frame payload: {data!r}"
        frames.append((bool(b0 & 0x80), b0 & 0x0F, data[i : i + n]))
        i += n
    return frames


async def raw_handshake(
    port: int, glued: bytes = b"", path: str = "/"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Open a raw connection, upgrade it (with ``glued`` in the same write)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(upgrade_request(port, path=path) + glued)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert f"Sec-WebSocket-Accept: {ACCEPT}\r\n".encode() in head, head
    return reader, writer, head


async def read_frame(reader: asyncio.StreamReader) -> tuple[bool, int, bytes]:
    b0, b1 = await reader.readexactly(2)
    assert not b1 & 0x80
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return bool(b0 & 0x80), b0 & 0x0F, await reader.readexactly(n)


# -- payloads --------------------------------------------------------------------

SIZES = {"64KiB": 64 * 1024, "1MiB": 1 << 20, "5MiB": 5 << 20}


def text_of(size: int) -> str:
    """Text of ``size`` characters, with multi-byte ones, that compresses poorly."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 éß€😀"
    raw = os.urandom(size)
    return "".join(alphabet[b % len(alphabet)] for b in raw)


# -- echo ------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("shape", list(HANDLER_SHAPES))
async def test_echo_text_and_binary(client: str, shape: str) -> None:
    probe = Probe()
    async with aiohttp_server(probe.track(HANDLER_SHAPES[shape])) as port:
        async with connect(client, url(port)) as ws:
            messages: list[str | bytes] = ["hello", b"\x00\x01\xff", "", b"", "ünïcødé €"]
            for message in messages:
                await ws.send(message)
                assert await ws.recv() == message
            await ws.close()
            assert ws.close_code() == 1000
        await probe.finished()
    assert probe.error is None


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("kind", ["text", "binary"])
async def test_echo_large_messages(client: str, size: str, kind: str) -> None:
    n = SIZES[size]
    message: str | bytes = text_of(n) if kind == "text" else os.urandom(n)
    probe = Probe()
    async with aiohttp_server(probe.track(echo_returning_response)) as port:
        async with connect(client, url(port)) as ws:
            await ws.send(message)
            # One more after it: a lost tail would shift it or never complete.
            await ws.send("after")
            received = await ws.recv()
            assert type(received) is type(message)
            assert len(received) == len(message)
            assert received == message
            assert await ws.recv() == "after"
            await ws.close()
            assert ws.close_code() == 1000
        await probe.finished()
    assert probe.error is None


async def _slow_echo_then(gate: asyncio.Event, request: web.Request) -> web.Response:
    # A tiny queue makes the adapter pause and resume aiohttp's transport many times.
    ws = await AioServer.accept(aiohttp=request, max_queue=2)
    first = await ws.receive()
    await gate.wait()
    await ws.send(first)
    await echo(ws)
    return web.Response(text="")


@pytest.mark.parametrize("client", CLIENTS)
async def test_burst_of_messages_with_read_backpressure(client: str) -> None:
    gate = asyncio.Event()
    probe = Probe()

    async def handler(request: web.Request) -> web.Response:
        return await _slow_echo_then(gate, request)

    count = 400
    messages: list[str | bytes] = [
        f"message {i} " * (i % 50) if i % 2 else os.urandom(i * 37 % 5000) for i in range(count)
    ]
    async with aiohttp_server(probe.track(handler)) as port:
        async with connect(client, url(port)) as ws:
            hundred_sent = asyncio.Event()

            async def send_all() -> None:
                for i, m in enumerate(messages):
                    await ws.send(m)
                    if i == 100:
                        hundred_sent.set()

            sender = asyncio.create_task(send_all())
            # The handler holds its first message until 100 more were sent (about
            # 140 kB, which TCP buffers hold even while the server reads nothing):
            # they wait in the adapter's queue or in paused TCP.
            await hundred_sent.wait()
            gate.set()
            received = [await ws.recv() for _ in range(count)]
            await sender
            assert received == messages
            await ws.close()
            assert ws.close_code() == 1000
        await probe.finished()
    assert probe.error is None


@pytest.mark.parametrize("glued", [0, 40], ids=["after-handshake", "glued-to-request"])
async def test_slow_handler_stops_reading_from_the_client(glued: int) -> None:
    """Read backpressure: with the queue full the server stops reading TCP.

    ``glued`` messages of 8 KiB arrive with the upgrade request, so aiohttp has
    buffered (and paused for) them before the handler accepts.
    """
    probe = Probe()
    client_blocked = asyncio.Event()
    chunk = os.urandom(8 * 1024)

    async def handler(request: web.Request) -> web.Response:
        ws = await AioServer.accept(aiohttp=request, max_queue=4, compression=False)
        await client_blocked.wait()
        transport = request.transport
        assert transport is not None
        probe.info["reading_while_full"] = transport.is_reading()
        count = 0
        async for message in ws:
            assert message == chunk
            count += 1
        probe.info["count"] = count
        return web.Response(text="")

    async with aiohttp_server(probe.track(handler)) as port:
        frame = masked_frame(0x2, chunk)
        reader, writer, _ = await raw_handshake(port, frame * glued)
        sent = glued
        # Write until the kernel buffers are full: then the server stopped reading.
        while writer.transport.get_write_buffer_size() == 0:
            assert sent < 8192, "64 MiB went through: the server never stopped reading"
            writer.write(frame)
            sent += 1
            await asyncio.sleep(0)  # let the server's side of the loop read
        client_blocked.set()
        await writer.drain()
        writer.write(masked_frame(0x8, close_payload(1000)))
        rest = await reader.read()
        writer.close()
        await probe.finished()
        assert parse_frames(rest) == [(True, 0x8, close_payload(1000))]
    assert probe.error is None
    assert probe.info["reading_while_full"] is False
    assert probe.info["count"] == sent


async def test_read_backpressure_holds_for_data_aiohttp_buffered_before_accept() -> None:
    """aiohttp buffers (and pauses for) bytes sent after an upgrade request until the
    handler takes them over; the adapter's own pause must survive that hand-over."""
    probe = Probe()
    tail_buffered = asyncio.Event()
    chunk = os.urandom(8 * 1024)

    async def handler(request: web.Request) -> web.Response:
        await tail_buffered.wait()
        transport = request.transport
        assert transport is not None
        probe.info["reading_before_accept"] = transport.is_reading()
        ws = await AioServer.accept(aiohttp=request, max_queue=4, compression=False)
        # The hand-over queued more than max_queue messages: reading stays paused.
        probe.info["reading_after_accept"] = transport.is_reading()
        count = 0
        async for message in ws:
            assert message == chunk
            count += 1
        probe.info["count"] = count
        return web.Response(text="")

    async with aiohttp_server(probe.track(handler)) as port:
        frame = masked_frame(0x2, chunk)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(upgrade_request(port) + frame)
        sent = 1
        while writer.transport.get_write_buffer_size() == 0:
            assert sent < 8192, "64 MiB went through: aiohttp never stopped reading"
            writer.write(frame)
            sent += 1
            await asyncio.sleep(0)  # let the server's side of the loop read
        tail_buffered.set()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        await writer.drain()
        writer.write(masked_frame(0x8, close_payload(1000)))
        rest = await reader.read()
        writer.close()
        await probe.finished()
        assert parse_frames(rest) == [(True, 0x8, close_payload(1000))]
    assert probe.error is None
    assert probe.info["reading_before_accept"] is False
    assert probe.info["reading_after_accept"] is False
    assert probe.info["count"] == sent


# -- closing ---------------------------------------------------------------------


@pytest.mark.timeout(5)
@pytest.mark.parametrize("shape", list(HANDLER_SHAPES))
async def test_client_close_gets_exactly_one_close_frame_then_eof(shape: str) -> None:
    """Byte level: after the 101, the server writes one close frame and closes TCP.

    Whatever the handler returns, aiohttp must not write an HTTP response (or
    anything else) after the WebSocket.
    """
    probe = Probe()
    async with aiohttp_server(probe.track(HANDLER_SHAPES[shape])) as port:
        reader, writer, _ = await raw_handshake(port)
        writer.write(masked_frame(0x1, b"ping me"))
        assert await read_frame(reader) == (True, 0x1, b"ping me")
        writer.write(masked_frame(0x8, close_payload(1000)))
        rest = await reader.read()  # until the server closes TCP
        # The handler has returned by now (its response would have been written).
        await probe.finished()
        rest += await reader.read()
        writer.close()
        assert parse_frames(rest) == [(True, 0x8, close_payload(1000))], rest
    assert probe.error is None


@pytest.mark.timeout(5)
@pytest.mark.parametrize("shape", list(HANDLER_SHAPES))
async def test_client_close_with_reason_byte_level(shape: str) -> None:
    probe = Probe()
    async with aiohttp_server(probe.track(HANDLER_SHAPES[shape])) as port:
        reader, writer, _ = await raw_handshake(port)
        writer.write(masked_frame(0x8, close_payload(4321, "done")))
        rest = await reader.read()
        await probe.finished()
        writer.close()
        # The server echoes the code (RFC 6455 5.5.1) and nothing follows.
        frames = parse_frames(rest)
        assert len(frames) == 1 and frames[0][1] == 0x8, rest
        assert frames[0][2][:2] == (4321).to_bytes(2, "big")


@pytest.mark.parametrize("client", CLIENTS)
async def test_handler_iteration_ends_when_client_closes_1000(client: str) -> None:
    probe = Probe()

    async def handler(request: web.Request) -> web.Response:
        ws = await AioServer.accept(aiohttp=request)
        received = [m async for m in ws]
        probe.info.update(received=received, code=ws.close_reason, connected=ws.connected)
        return web.Response(text="")

    async with aiohttp_server(probe.track(handler)) as port:
        async with connect(client, url(port)) as ws:
            await ws.send("one")
            await ws.send(b"two")
            await ws.close(1000)
            assert ws.close_code() == 1000
        await probe.finished()
    assert probe.error is None
    assert probe.info == {"received": ["one", b"two"], "code": 1000, "connected": False}


@pytest.mark.parametrize("client", CLIENTS)
async def test_handler_sees_client_close_code(client: str) -> None:
    probe = Probe()

    async def handler(request: web.Request) -> web.Response:
        ws = await AioServer.accept(aiohttp=request)
        try:
            async for _ in ws:
                pass
        except ConnectionClosed as exc:
            probe.info["closed"] = (exc.reason, exc.message)
        return web.Response(text="")

    async with aiohttp_server(probe.track(handler)) as port:
        async with connect(client, url(port)) as ws:
            await ws.close(4002, "see you")
            assert ws.close_code() == 4002
        await probe.finished()
    assert probe.error is None
    assert probe.info["closed"] == (4002, "see you")


@pytest.mark.parametrize("client", CLIENTS)
async def test_server_close_with_code_and_reason(client: str) -> None:
    probe = Probe()

    async def handler(request: web.Request) -> web.Response:
        ws = await AioServer.accept(aiohttp=request, close_timeout=10)
        await ws.send("bye soon")
        loop = asyncio.get_running_loop()
        start = loop.time()
        await ws.close(4001, "bye")
        await ws.close(4001, "bye")  # idempotent
        probe.info["close_took"] = loop.time() - start
        with pytest.raises(ConnectionClosed):
            await ws.send("too late")
        return web.Response(text="")

    async with aiohttp_server(probe.track(handler)) as port:
        async with connect(client, url(port)) as ws:
            assert await ws.recv() == "bye soon"
            with pytest.raises(Exception) as info:
                await ws.recv()
            if client == "ours":
                assert isinstance(info.value, ConnectionClosed)
                assert (info.value.reason, info.value.message) == (4001, "bye")
            elif client == "websockets":
                assert isinstance(info.value, websockets.exceptions.ConnectionClosed)
                assert info.value.rcvd is not None
                assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye")
            assert ws.close_code() == 4001
        await probe.finished()
    assert probe.error is None
    # The client answered at once: the server did not wait for close_timeout.
    assert probe.info["close_took"] < 5


@pytest.mark.timeout(5)
async def test_server_close_byte_level() -> None:
    probe = Probe()

    async def handler(request: web.Request) -> web.Response:
        ws = await AioServer.accept(aiohttp=request)
        await ws.close(4001, "bye")
        probe.info["code"] = ws.close_reason
        return web.Response(text="")

    async with aiohttp_server(probe.track(handler)) as port:
        reader, writer, _ = await raw_handshake(port)
        assert await read_frame(reader) == (True, 0x8, close_payload(4001, "bye"))
        writer.write(masked_frame(0x8, close_payload(4001)))
        rest = await reader.read()
        await probe.finished()
        rest += await reader.read()
        writer.close()
        assert rest == b""
    assert probe.error is None
    assert probe.info["code"] == 4001


# -- subprotocols ----------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
async def test_subprotocol_negotiation(client: str) -> None:
    probe = Probe()

    async def handler(request: web.Request) -> web.Response:
        ws = await AioServer.accept(aiohttp=request, subprotocols=["a", "b"])
        probe.info["subprotocol"] = ws.subprotocol
        await ws.send(str(ws.subprotocol))
        await echo(ws)
        return web.Response(text="")

    kwargs: dict[str, Any] = {
        "ours": {"subprotocols": ["b"]},
        "websockets": {"subprotocols": ["b"]},
        "aiohttp": {"protocols": ["b"]},
    }[client]
    async with aiohttp_server(probe.track(handler)) as port:
        async with connect(client, url(port), **kwargs) as ws:
            assert await ws.recv() == "b"
            if isinstance(ws, (OurPeer, WebsocketsPeer)):
                assert ws.ws.subprotocol == "b"
            else:
                assert isinstance(ws, AiohttpPeer)
                assert ws.ws.protocol == "b"
        await probe.finished()
    assert probe.info["subprotocol"] == "b"


async def test_no_common_subprotocol() -> None:
    probe = Probe()

    async def handler(request: web.Request) -> web.Response:
        ws = await AioServer.accept(aiohttp=request, subprotocols=["a", "b"])
        probe.info["subprotocol"] = ws.subprotocol
        await ws.close()
        return web.Response(text="")

    async with aiohttp_server(probe.track(handler)) as port:
        async with websockets.asyncio.client.connect(
            url(port), subprotocols=[Subprotocol("c")]
        ) as ws:
            assert ws.subprotocol is None
            await ws.wait_closed()
        await probe.finished()
    assert probe.info["subprotocol"] is None


class LastOffered(AioServer):
    """Picks the client's least preferred subprotocol."""

    def choose_subprotocol(self, request: Any) -> str | None:
        offered = list(request.subprotocols)
        return offered[-1] if offered else None


async def test_subclass_choose_subprotocol() -> None:
    probe = Probe()

    async def handler(request: web.Request) -> web.Response:
        ws = await LastOffered.accept(aiohttp=request)
        assert isinstance(ws, LastOffered)
        probe.info["subprotocol"] = ws.subprotocol
        await echo(ws)
        return web.Response(text="")

    async with aiohttp_server(probe.track(handler)) as port:
        async with AioClient.connect(url(port), subprotocols=["x", "y", "z"]) as ws:
            assert ws.subprotocol == "z"
            await ws.send("hi")
            assert await ws.receive() == "hi"
        await probe.finished()
    assert probe.error is None
    assert probe.info["subprotocol"] == "z"


# -- invalid upgrades ------------------------------------------------------------


async def _rejecting_handler_probe() -> tuple[Probe, Handler]:
    probe = Probe()

    async def handler(request: web.Request) -> web.Response | None:
        try:
            await AioServer.accept(aiohttp=request)
        except simple_websocket.ConnectionError as exc:
            probe.info["exc"] = exc
            return None
        return web.Response(text="accepted?!")

    return probe, probe.track(handler)


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    ("request_kind", "status"), [("plain-get", 426), ("no-key", 400), ("bad-key", 400)]
)
async def test_invalid_upgrade_gets_4xx_and_raises(request_kind: str, status: int) -> None:
    probe, handler = await _rejecting_handler_probe()
    async with aiohttp_server(handler) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if request_kind == "plain-get":
            writer.write(upgrade_request(port, upgrade=False))
        elif request_kind == "no-key":
            writer.write(upgrade_request(port, key=None))
        else:
            writer.write(upgrade_request(port, key="c2hvcnQ="))
        response = await reader.read()  # the server closes the connection
        await probe.finished()
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), response
    lines = head.decode().split("\r\n")[1:]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    # Exactly one response: its body, then nothing (no second, 500, response).
    assert len(body) == int(headers["content-length"]), response
    exc = probe.info["exc"]
    assert isinstance(exc, HandshakeError)
    assert isinstance(exc, simple_websocket.ConnectionError)
    assert exc.status_code == status


async def test_invalid_upgrade_seen_by_http_client() -> None:
    probe, handler = await _rejecting_handler_probe()
    async with aiohttp_server(handler) as port, aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/") as resp:
            assert resp.status == 426
            await resp.read()
        await probe.finished()
    assert isinstance(probe.info["exc"], HandshakeError)


async def test_other_requests_still_served_after_invalid_upgrade() -> None:
    _, handler = await _rejecting_handler_probe()

    async def dispatch(request: web.Request) -> Any:
        if request.path == "/ws":
            ws = await AioServer.accept(aiohttp=request)
            await echo(ws)
            return web.Response(text="")
        return await handler(request)

    async with aiohttp_server(dispatch) as port, aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/") as resp:
            assert resp.status == 426
        async with AioClient.connect(url(port, "/ws")) as ws:
            await ws.send("still here")
            assert await ws.receive() == "still here"


@pytest.mark.timeout(5)
async def test_upgrade_header_aiohttp_would_not_hand_over_is_refused() -> None:
    """aiohttp parses bytes behind ``Upgrade: websocket, foo`` as HTTP: refuse it
    rather than lose the client's first frames."""
    probe, handler = await _rejecting_handler_probe()
    async with aiohttp_server(handler) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = upgrade_request(port).replace(b"websocket", b"websocket, foo")
        writer.write(request + masked_frame(0x1, b"glued"))
        response = await reader.read()
        await probe.finished()
        writer.close()
    assert response.startswith(b"HTTP/1.1 400 "), response
    assert isinstance(probe.info["exc"], HandshakeError)
    assert probe.info["exc"].status_code == 400


@pytest.mark.timeout(5)
@pytest.mark.parametrize("upgrade", ["WebSocket", "websocket"])
async def test_upgrade_header_is_case_insensitive(upgrade: str) -> None:
    async with aiohttp_server(echo_returning_response) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = upgrade_request(port).replace(b"websocket", upgrade.encode())
        writer.write(request + masked_frame(0x1, b"glued"))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert await read_frame(reader) == (True, 0x1, b"glued")
        writer.write(masked_frame(0x8, close_payload(1000)))
        assert parse_frames(await reader.read()) == [(True, 0x8, close_payload(1000))]
        writer.close()


# -- handlers that leave the WebSocket open ----------------------------------------


@pytest.mark.timeout(5)
@pytest.mark.parametrize(("ending", "code"), [("response", 1000), ("none", 1000), ("raise", 1011)])
async def test_handler_leaving_websocket_open_gets_it_closed(ending: str, code: int) -> None:
    """No HTTP response is written into an open WebSocket: it is closed instead."""

    async def handler(request: web.Request) -> web.Response | None:
        ws = await AioServer.accept(aiohttp=request)
        await ws.send("hello")
        if ending == "raise":
            raise RuntimeError("handler bug")
        if ending == "response":
            return web.Response(text="this must not reach the client")
        return None

    async with aiohttp_server(handler) as port:
        reader, writer, _ = await raw_handshake(port)
        assert await read_frame(reader) == (True, 0x1, b"hello")
        fin, opcode, payload = await read_frame(reader)
        assert (fin, opcode) == (True, 0x8)
        assert int.from_bytes(payload[:2], "big") == code
        writer.write(masked_frame(0x8, payload[:2]))
        assert await reader.read() == b""  # then EOF, and nothing else
        writer.close()


@pytest.mark.parametrize(("ending", "code"), [("response", 1000), ("raise", 1011)])
async def test_handler_leaving_websocket_open_seen_by_clients(ending: str, code: int) -> None:
    async def handler(request: web.Request) -> web.Response:
        ws = await AioServer.accept(aiohttp=request)
        await ws.send("hello")
        if ending == "raise":
            raise RuntimeError("handler bug")
        return web.Response(text="")

    async with aiohttp_server(handler) as port:
        async with AioClient.connect(url(port)) as ws:
            assert await ws.receive() == "hello"
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive()
            assert info.value.reason == code
        async with websockets.asyncio.client.connect(url(port)) as wsc:
            assert await wsc.recv() == "hello"
            await wsc.wait_closed()
            assert wsc.protocol.close_rcvd is not None
            assert wsc.protocol.close_rcvd.code == code


# -- bytes glued to the request --------------------------------------------------


@pytest.mark.timeout(5)
@pytest.mark.parametrize("size", [5, 70_000, 1 << 20])
async def test_frames_glued_to_upgrade_request_are_not_lost(size: int) -> None:
    probe = Probe()
    async with aiohttp_server(probe.track(echo_returning_response)) as port:
        first = os.urandom(size)
        glued = masked_frame(0x2, first) + masked_frame(0x1, b"second")
        reader, writer, _ = await raw_handshake(port, glued)
        assert await read_frame(reader) == (True, 0x2, first)
        assert await read_frame(reader) == (True, 0x1, b"second")
        writer.write(masked_frame(0x8, close_payload(1000)))
        rest = await reader.read()
        await probe.finished()
        writer.close()
        assert parse_frames(rest) == [(True, 0x8, close_payload(1000))]
    assert probe.error is None


@pytest.mark.timeout(5)
async def test_close_glued_to_upgrade_request() -> None:
    probe = Probe()

    async def handler(request: web.Request) -> web.Response:
        ws = await AioServer.accept(aiohttp=request)
        probe.info["received"] = [m async for m in ws]
        return web.Response(text="")

    async with aiohttp_server(probe.track(handler)) as port:
        glued = masked_frame(0x1, b"only") + masked_frame(0x8, close_payload(1000))
        reader, writer, _ = await raw_handshake(port, glued)
        rest = await reader.read()
        await probe.finished()
        writer.close()
        assert parse_frames(rest) == [(True, 0x8, close_payload(1000))]
    assert probe.info["received"] == ["only"]


# -- compression -----------------------------------------------------------------


async def test_permessage_deflate_with_websockets_client() -> None:
    probe = Probe()
    async with aiohttp_server(probe.track(echo_returning_response)) as port:
        async with websockets.asyncio.client.connect(url(port), max_size=None) as ws:
            assert ws.response is not None
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert "permessage-deflate" in extensions
            compressible = "simple websocket " * 100_000
            messages: list[str | bytes] = [
                compressible,
                compressible.encode(),
                os.urandom(300_000),
                "x",
            ]
            for message in messages:
                await ws.send(message)
                assert await ws.recv() == message
        await probe.finished()
    assert probe.error is None


async def test_permessage_deflate_with_aiohttp_client() -> None:
    probe = Probe()
    async with aiohttp_server(probe.track(echo_returning_response)) as port:
        async with connect("aiohttp", url(port), compress=15) as ws:
            assert isinstance(ws, AiohttpPeer)
            assert ws.ws.compress == 15
            message = "deflate me " * 50_000
            await ws.send(message)
            assert await ws.recv() == message
        await probe.finished()
    assert probe.error is None


async def test_compression_off_on_server() -> None:
    async def handler(request: web.Request) -> web.Response:
        ws = await AioServer.accept(aiohttp=request, compression=False)
        await echo(ws)
        return web.Response(text="")

    async with aiohttp_server(handler) as port:
        async with websockets.asyncio.client.connect(url(port)) as ws:
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            await ws.send("plain")
            assert await ws.recv() == "plain"


# -- clients that vanish ---------------------------------------------------------


async def test_other_connections_served_while_one_client_vanishes() -> None:
    outcomes: dict[str, Any] = {}
    vanished = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        name = request.path.strip("/")
        ws = await AioServer.accept(aiohttp=request)
        try:
            await echo(ws)
            outcomes[name] = ("ended", ws.close_reason)
        except ConnectionClosed as exc:
            outcomes[name] = ("closed", exc.reason)
        finally:
            if name == "vanishing":
                vanished.set()
        return web.Response(text="")

    async with aiohttp_server(handler) as port:
        async with AioClient.connect(url(port, "/steady")) as steady:
            await steady.send("before")
            assert await steady.receive() == "before"
            _, writer, _ = await raw_handshake(port, path="/vanishing")
            # Cut the TCP connection: no close frame, an RST.
            writer.write(masked_frame(0x1, b"partial message" * 100, fin=False))
            writer.transport.abort()
            await asyncio.wait_for(vanished.wait(), 5)
            await steady.send("after")
            assert await steady.receive() == "after"
            async with AioClient.connect(url(port, "/newcomer")) as newcomer:
                await newcomer.send(b"new")
                assert await newcomer.receive() == b"new"
    assert outcomes["vanishing"] == ("closed", 1006)
    assert outcomes["steady"] == ("ended", 1000)
    assert outcomes["newcomer"] == ("ended", 1000)


@pytest.mark.parametrize("client", ["ours", "raw"])
async def test_client_vanishes_while_server_sends_with_backpressure(client: str) -> None:
    """A client that stops reading blocks the sender; when it goes, send raises."""
    probe = Probe()
    blocked = asyncio.Event()
    chunk = os.urandom(64 * 1024)

    async def handler(request: web.Request) -> web.Response:
        ws = await AioServer.accept(aiohttp=request, compression=False)
        transport = ws.transport
        assert transport is not None
        high = transport.get_write_buffer_limits()[1]
        largest = 0
        sent = 0
        try:
            while sent < 4096:  # 256 MiB: far more than socket buffers hold
                await ws.send(chunk)
                sent += 1
                largest = max(largest, transport.get_write_buffer_size())
                if transport.get_write_buffer_size() > 0:
                    blocked.set()  # the kernel buffers are full
        except ConnectionClosed as exc:
            probe.info["closed"] = exc.reason
        probe.info.update(largest=largest, high=high, sent=sent)
        return web.Response(text="")

    async with aiohttp_server(probe.track(handler)) as port:
        if client == "ours":
            ws = await AioClient.connect(url(port), compression=False, max_queue=1)
            await asyncio.wait_for(blocked.wait(), 10)
            assert ws.transport is not None
            ws.transport.abort()
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.receive()
        else:
            _, writer, _ = await raw_handshake(port)
            await asyncio.wait_for(blocked.wait(), 10)
            writer.transport.abort()
        await probe.finished(10)
    assert probe.error is None
    assert probe.info["closed"] == 1006
    assert probe.info["sent"] < 4096
    # Backpressure: the transport's buffer never held much more than one message
    # above its high-water mark.
    assert probe.info["largest"] <= probe.info["high"] + len(chunk) + 16


# -- misc ------------------------------------------------------------------------


async def test_request_details_are_available() -> None:
    probe = Probe()

    async def handler(request: web.Request) -> web.Response:
        ws = await AioServer.accept(aiohttp=request)
        probe.info.update(
            mode=ws.mode,
            header=ws.headers.get("X-Custom"),
            target=ws.request.target if ws.request else None,
            remote=ws.remote_address,
        )
        await echo(ws)
        return web.Response(text="")

    async with aiohttp_server(probe.track(handler)) as port:
        async with AioClient.connect(url(port, "/path?q=1"), headers={"X-Custom": "value"}) as ws:
            await ws.send("x")
            assert await ws.receive() == "x"
            local = ws.local_address
        await probe.finished()
    assert probe.error is None
    assert probe.info["mode"] == "aiohttp"
    assert probe.info["header"] == "value"
    assert probe.info["target"] == "/path?q=1"
    assert tuple(probe.info["remote"][:2]) == tuple(local[:2])


async def test_async_with_closes_1011_on_error() -> None:
    probe = Probe()

    async def handler(request: web.Request) -> web.Response:
        with contextlib.suppress(RuntimeError):
            async with await AioServer.accept(aiohttp=request) as ws:
                await ws.send("hello")
                raise RuntimeError("boom")
        return web.Response(text="")

    async with aiohttp_server(probe.track(handler)) as port:
        ws = await AioClient.connect(url(port))
        assert await ws.receive() == "hello"
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        assert info.value.reason == 1011
        await ws.close()
        await probe.finished()
    assert probe.error is None


async def test_ping_from_client_is_answered() -> None:
    async with aiohttp_server(echo_returning_response) as port:
        async with websockets.asyncio.client.connect(url(port)) as ws:
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 5)
            await ws.send("x")
            assert await ws.recv() == "x"


@pytest.mark.timeout(5)
async def test_ping_answered_byte_level() -> None:
    async with aiohttp_server(echo_returning_response) as port:
        reader, writer, _ = await raw_handshake(port)
        writer.write(masked_frame(0x9, b"payload"))
        assert await read_frame(reader) == (True, 0xA, b"payload")
        writer.write(masked_frame(0x8, close_payload(1000)))
        assert parse_frames(await reader.read()) == [(True, 0x8, close_payload(1000))]
        writer.close()


@pytest.mark.timeout(5)
async def test_server_ping_returns_latency() -> None:
    probe = Probe()

    async def handler(request: web.Request) -> web.Response:
        ws = await AioServer.accept(aiohttp=request)
        probe.info["latency"] = await asyncio.wait_for(ws.ping(), 1)
        await ws.close()
        return web.Response(text="")

    async with aiohttp_server(probe.track(handler)) as port:
        async with websockets.asyncio.client.connect(url(port)) as ws:
            await ws.wait_closed()
        await probe.finished()
    assert probe.error is None
    assert probe.info["latency"] >= 0
