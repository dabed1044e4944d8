"""Targets and raw wire tools for the RFC 6455 / RFC 7692 conformance suite.

A *target* is one of our WebSocket implementations put on one side of a loopback
connection whose other side is a raw peer that builds and parses every byte by hand
(:class:`Peer`, built on :mod:`tests.asyncio.rawpeer`, which does not use wsproto).

Server targets (the raw peer is the client):

* ``serve``: ``simple_websocket.serve()``, which parses the HTTP request itself.
* ``sock``: ``AioServer.accept(sock=...)`` on a socket whose request head the
  harness read (as a custom server would).
* ``aiohttp``: ``AioServer.accept(aiohttp=request)`` inside an aiohttp handler.
* ``sync-server``: ``simple_websocket.ws.Server.accept(sock=...)`` (threads).

Client targets (the raw peer is the server):

* ``client``: ``AioClient.connect()``.
* ``sync-client``: ``simple_websocket.ws.Client.connect()`` (threads).

Each test talks to its target through a :class:`Side`, an async facade that hides
whether the engine underneath is asyncio or threaded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

import simple_websocket
from simple_websocket import AioClient, AioServer, ConnectionClosed, HandshakeError
from simple_websocket.sansio.handshake import parse_request_head
from simple_websocket.ws import Client as SyncClient
from simple_websocket.ws import Server as SyncServer
from tests.asyncio.rawpeer import (
    CLOSE,
    PING,
    PONG,
    Frame,
    RawPeer,
    RawServer,
    accept_key,
    apply_mask,
    close_payload,
    encode_frame,
)

__all__ = [
    "ALL_TARGETS",
    "CLIENT_TARGETS",
    "FACTOR",
    "SERVER_TARGETS",
    "Peer",
    "Side",
    "T",
    "accept_key",
    "apply_mask",
    "close_payload",
    "encode_frame",
]

#: Multiply every real-time duration of these tests (for slow machines).
FACTOR = float(os.environ.get("SIMPLE_WEBSOCKET_TEST_TIME_FACTOR", "1"))
#: The unit of real time, used only where the behaviour under test is about time.
T = 0.05 * FACTOR

SERVER_TARGETS = ["serve", "sock", "aiohttp", "sync-server"]
CLIENT_TARGETS = ["client", "sync-client"]
ALL_TARGETS = SERVER_TARGETS + CLIENT_TARGETS

#: How long a threaded receive() may block, so that no thread outlives a test long.
SYNC_WAIT = 10.0


def is_server(target: str) -> bool:
    return target in SERVER_TARGETS or target in ("serve", "sock", "aiohttp", "sync-server")


def peer_role(target: str) -> str:
    """The role of the raw peer facing ``target``."""
    return "client" if is_server(target) else "server"


# -- our side, whatever the engine -------------------------------------------------


class Side:
    """Our end of a connection, with the same async interface for every engine."""

    def __init__(self, ws: Any, threaded: bool) -> None:
        self.ws = ws
        self.threaded = threaded

    async def receive(self, timeout: float | None = 5.0) -> Any:
        if self.threaded:
            wait = SYNC_WAIT if timeout is None else timeout
            return await asyncio.to_thread(self.ws.receive, wait)
        return await self.ws.receive(timeout)

    async def send(self, data: Any) -> None:
        if self.threaded:
            await asyncio.to_thread(self.ws.send, data)
        else:
            await self.ws.send(data)

    async def ping(self, payload: bytes | None = None) -> float:
        if self.threaded:
            return float(await asyncio.to_thread(self.ws.ping, payload))
        return float(await self.ws.ping(payload))

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self.threaded:
            await asyncio.to_thread(self.ws.close, code, reason)
        else:
            await self.ws.close(code, reason)

    async def wait_closed(self) -> None:
        if self.threaded:
            await asyncio.to_thread(self.ws.wait_closed, SYNC_WAIT)
        else:
            await self.ws.wait_closed()

    @property
    def close_reason(self) -> int:
        return int(self.ws.close_reason)

    @property
    def close_message(self) -> str | None:
        return self.ws.close_message  # type: ignore[no-any-return]

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol  # type: ignore[no-any-return]

    @property
    def remote_address(self) -> Any:
        return self.ws.remote_address

    def abort(self) -> None:
        """Drop the TCP connection at once (test teardown)."""
        if self.threaded:
            with contextlib.suppress(Exception):
                self.ws._abort()
        else:
            transport = self.ws.transport
            if transport is not None and not transport.is_closing():
                transport.abort()

    async def expect_closed(self, code: int | tuple[int, ...]) -> None:
        """Drain the delivered messages; the end must be ``ConnectionClosed(code)``."""
        codes = code if isinstance(code, tuple) else (code,)
        for _ in range(100_000):
            try:
                await self.receive(timeout=5.0)
            except ConnectionClosed as exc:
                assert exc.reason in codes, f"closed with {exc.reason}, expected {code}"
                assert self.close_reason == exc.reason
                return
        raise AssertionError("no end of messages")


# -- the raw peer --------------------------------------------------------------------


@dataclass
class WireFrame(Frame):
    """A frame as read off the wire, compressed payloads left as they are."""

    #: The size of the length field used: 7 (in the first bytes), 16 or 64 bits.
    length_bits: int = 7
    mask_key: bytes = b""


class Peer(RawPeer):
    """The raw peer of :mod:`tests.asyncio.rawpeer`, plus a lower-level reader and
    a deflate codec whose parameters a test chooses."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        role: str,
        deflate: bool = False,
        *,
        response_headers: dict[str, str] | None = None,
        request_head: str = "",
    ) -> None:
        super().__init__(reader, writer, role, deflate)
        self.response_headers = response_headers or {}
        self.request_head = request_head

    def use_deflate(self, *, compress_bits: int = 15, no_context_takeover: bool = False) -> None:
        """Compress what this peer sends with a ``compress_bits`` window, a fresh
        compressor per message when ``no_context_takeover``."""
        self.deflate = True
        self._compress_bits = compress_bits
        self._no_takeover = no_context_takeover
        self._compressor = zlib.compressobj(wbits=-compress_bits)

    def compress(self, payload: bytes) -> bytes:
        """The permessage-deflate payload of one message (RFC 7692 7.2.1)."""
        if getattr(self, "_no_takeover", False):
            self._compressor = zlib.compressobj(wbits=-self._compress_bits)
        data = self._compressor.compress(payload) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        return data[:-4]

    async def recv_wire(self) -> WireFrame:
        """Read one frame without decompressing it; records the length encoding."""
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        bits = 7
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            bits = 16
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            bits = 64
        masked = bool(b1 & 0x80)
        key = await self.reader.readexactly(4) if masked else b""
        payload = await self.reader.readexactly(n)
        if masked:
            payload = apply_mask(key, payload)
        return WireFrame(
            opcode=b0 & 0x0F,
            payload=payload,
            fin=bool(b0 & 0x80),
            rsv1=bool(b0 & 0x40),
            rsv2=bool(b0 & 0x20),
            rsv3=bool(b0 & 0x10),
            masked=masked,
            length_bits=bits,
            mask_key=key,
        )

    async def recv_wire_data(self) -> WireFrame:
        """The next frame that is not a ping or a pong."""
        while True:
            frame = await self.recv_wire()
            if frame.opcode not in (PING, PONG):
                return frame

    async def expect_failure(self, code: int | tuple[int, ...]) -> WireFrame:
        """Our side failed the connection: a close frame with ``code`` (or one of
        several codes), then EOF.

        Data frames that were in flight before the close frame are skipped.
        """
        codes = code if isinstance(code, tuple) else (code,)
        while True:
            frame = await self.recv_wire()
            if frame.opcode == CLOSE:
                break
        got = struct.unpack("!H", frame.payload[:2])[0] if len(frame.payload) >= 2 else None
        assert got in codes, f"close code {got}, expected {code} ({frame.payload!r})"
        if len(frame.payload) > 2:
            frame.payload[2:].decode("utf-8")  # the reason must be valid UTF-8
        await self.expect_eof()
        return frame

    async def roundtrip(self, side: Side, message: str | bytes) -> None:
        """Check the connection still works: the peer sends, our side receives it."""
        if isinstance(message, str):
            await self.send_text(message)
        else:
            await self.send_binary(message)
        assert await side.receive() == message


def random_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_request(
    port: int,
    *,
    path: str = "/",
    key: str | None = "random",
    version: str | None = "13",
    upgrade: str | None = "websocket",
    connection: str | None = "Upgrade",
    host: bool = True,
    method: str = "GET",
    http: str = "HTTP/1.1",
    extensions: str | None = None,
    extra: str = "",
) -> tuple[bytes, str | None]:
    """An upgrade request built by hand; ``None`` leaves a header out.

    Returns the request and the key it carries.
    """
    if key == "random":
        key = random_key()
    lines = [f"{method} {path} {http}"]
    if host:
        lines.append(f"Host: 127.0.0.1:{port}")
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    head = "\r\n".join(lines) + "\r\n" + extra + "\r\n"
    return head.encode("latin-1"), key


@dataclass
class Response:
    """An HTTP response read by the raw client."""

    status: int
    headers: dict[str, str]
    body: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    raw_head: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


async def send_request(port: int, request: bytes, chunks: list[int] | None = None) -> Response:
    """Send ``request`` and read the response head (and a Content-Length body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if chunks is None:
        writer.write(request)
    else:
        pos = 0
        for size in chunks:
            writer.write(request[pos : pos + size])
            await writer.drain()
            pos += size
        writer.write(request[pos:])
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    body = b""
    if status != 101 and "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    return Response(status, headers, body, reader, writer, head)


async def open_peer(
    port: int,
    *,
    extensions: str | None = None,
    extra: str = "",
    path: str = "/",
) -> Peer:
    """A raw client that completed the handshake (101 required) with ``port``."""
    request, key = upgrade_request(port, extensions=extensions, extra=extra, path=path)
    response = await send_request(port, request)
    assert response.status == 101, (response.status, response.body)
    assert key is not None and response.header("sec-websocket-accept") == accept_key(key)
    accepted = response.header("sec-websocket-extensions")
    peer = Peer(response.reader, response.writer, "client", response_headers=response.headers)
    if accepted is not None:
        assert accepted.startswith("permessage-deflate"), accepted
        peer.deflate = True
    return peer


# -- server targets --------------------------------------------------------------------


#: Options every target takes; anything else is target specific.
COMMON_OPTIONS = {
    "max_message_size",
    "compression",
    "subprotocols",
    "ping_interval",
    "ping_timeout",
    "close_timeout",
    "max_queue",
}


class ServerTarget:
    """One of our server entry points, listening on loopback for the test."""

    def __init__(self, kind: str, **options: Any) -> None:
        assert kind in ("serve", "sock", "aiohttp", "sync-server"), kind
        if kind != "serve":
            extra = set(options) - COMMON_OPTIONS
            assert not extra, f"{kind} does not take {extra}"
        self.kind = kind
        self.options = options
        self.sides: asyncio.Queue[Side] = asyncio.Queue()
        #: Handshake errors raised by the accept() entry points.
        self.rejections: list[BaseException] = []
        self.release = asyncio.Event()
        self._all: list[Side] = []
        self._unclaimed: list[Side] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._port = 0
        self._server: Any = None
        self._runner: web.AppRunner | None = None
        self._listener: socket.socket | None = None

    @property
    def port(self) -> int:
        return self._port

    async def accepted(self) -> Side:
        """The next connection our server accepted (in no guaranteed order)."""
        if self._unclaimed:
            return self._unclaimed.pop(0)
        return await self.sides.get()

    async def side_of(self, peer: Peer) -> Side:
        """Our server's end of the connection of the raw client ``peer``."""
        address = peer.writer.get_extra_info("sockname")
        while True:
            for side in self._unclaimed:
                if tuple(side.remote_address) == tuple(address):
                    self._unclaimed.remove(side)
                    return side
            self._unclaimed.append(await self.sides.get())

    def _add(self, side: Side) -> None:
        self._all.append(side)
        self.sides.put_nowait(side)

    async def _hold(self, ws: Any, threaded: bool = False) -> None:
        self._add(Side(ws, threaded))
        await self.release.wait()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> ServerTarget:
        if self.kind == "serve":
            self._server = simple_websocket.serve(self._hold, **self.options)
            await self._server.start()
            self._port = self._server.port
        elif self.kind == "aiohttp":
            app = web.Application()
            app.router.add_route("GET", "/{tail:.*}", self._aiohttp_handler)
            self._runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self._port = self._runner.addresses[0][1]
        else:
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(512)
            listener.setblocking(False)
            self._listener = listener
            self._port = listener.getsockname()[1]
            self._spawn(self._accept_loop())
        return self

    async def _aiohttp_handler(self, request: web.Request) -> Any:
        try:
            ws = await AioServer.accept(aiohttp=request, **self.options)
        except HandshakeError as exc:
            self.rejections.append(exc)
            return None
        await self._hold(ws)
        return web.Response(text="")

    async def _accept_loop(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(self._listener)
            self._spawn(self._serve_socket(sock))

    async def _serve_socket(self, sock: socket.socket) -> None:
        """Read the request head byte by byte (nothing after it), then accept."""
        loop = asyncio.get_running_loop()
        buffer = bytearray()
        try:
            while True:
                chunk = await loop.sock_recv(sock, 1)
                if not chunk:
                    sock.close()
                    return
                buffer += chunk
                if buffer.endswith(b"\r\n\r\n"):
                    break
            parsed = parse_request_head(buffer)
        except (HandshakeError, OSError):
            # Not our engine's job: a custom server parses its own requests.
            with contextlib.suppress(OSError):
                await loop.sock_sendall(sock, b"HTTP/1.1 400 Bad Request\r\n\r\n")
            sock.close()
            return
        assert parsed is not None
        request, _ = parsed
        try:
            if self.kind == "sock":
                ws = await AioServer.accept(
                    sock=sock, headers=request.headers, path=request.target, **self.options
                )
                threaded = False
            else:
                ws = await asyncio.to_thread(
                    SyncServer.accept,
                    sock=sock,
                    headers=request.headers,
                    path=request.target,
                    **self.options,
                )
                threaded = True
        except HandshakeError as exc:
            self.rejections.append(exc)
            return
        await self._hold(ws, threaded)

    async def close(self) -> None:
        for side in self._all:
            side.abort()
        self.release.set()
        if self._server is not None:
            await self._server.close(close_timeout=1.0)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._listener is not None:
            self._listener.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)
        for side in self._all:
            if side.threaded:
                await side.wait_closed()

    async def __aenter__(self) -> ServerTarget:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# -- a raw server for the client targets -----------------------------------------------


Responder = Callable[[str, str], bytes]


def response_101(
    key: str,
    *,
    extensions: str | None = None,
    subprotocol: str | None = None,
    accept: str | None = "right",
    upgrade: str | None = "websocket",
    connection: str | None = "Upgrade",
    status_line: str = "HTTP/1.1 101 Switching Protocols",
    extra: str = "",
) -> bytes:
    """A handcrafted 101 response; ``None`` leaves a header out."""
    lines = [status_line]
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    if accept == "right":
        lines.append(f"Sec-WebSocket-Accept: {accept_key(key)}")
    elif accept is not None:
        lines.append(f"Sec-WebSocket-Accept: {accept}")
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


def request_headers(head: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in head.split("\r\n")[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return headers


class ScriptedServer(RawServer):
    """A raw server that answers each upgrade request with ``respond(key, head)``.

    ``respond`` returns the bytes to write (by default a plain valid 101, with
    permessage-deflate accepted when ``deflate``); ``None`` writes nothing.
    """

    def __init__(
        self, respond: Callable[[str, str], bytes | None] | None = None, deflate: bool = False
    ) -> None:
        super().__init__(deflate=deflate)
        self.respond = respond

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        self.requests.append(head)
        key = request_headers(head).get("sec-websocket-key", "")
        if self.respond is not None:
            answer = self.respond(key, head)
        else:
            answer = response_101(key, extensions="permessage-deflate" if self.deflate else None)
        peer = Peer(reader, writer, "server", self.deflate, request_head=head)
        self._peers.append(peer)
        if answer:
            writer.write(answer)
        await self.peers.put(peer)

    async def accept(self) -> Peer:  # type: ignore[override]
        peer = await super().accept()
        assert isinstance(peer, Peer)
        return peer


async def connect_client(target: str, url: str, **options: Any) -> Side:
    """Open a connection with our client ``target`` (``client`` or ``sync-client``)."""
    if target == "client":
        return Side(await AioClient.connect(url, **options), threaded=False)
    assert target == "sync-client", target
    ws = await asyncio.to_thread(SyncClient.connect, url, **options)
    return Side(ws, threaded=True)


# -- one connection, for every target -----------------------------------------------------


@contextlib.asynccontextmanager
async def pair(
    target: str,
    *,
    deflate: bool = False,
    offer: str | None = None,
    respond: Callable[[str, str], bytes | None] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Side, Peer]]:
    """Yield ``(side, peer)``: ``target`` connected to a raw peer.

    ``deflate`` negotiates plain permessage-deflate; ``offer`` (server targets) is
    the raw client's ``Sec-WebSocket-Extensions`` and ``respond`` (client targets)
    the raw server's answer, for other negotiations.
    """
    if is_server(target):
        async with ServerTarget(target, **options) as server:
            if offer is None and deflate:
                offer = "permessage-deflate"
            peer = await open_peer(server.port, extensions=offer)
            if deflate:
                assert peer.deflate, peer.response_headers
            side = await server.side_of(peer)
            try:
                yield side, peer
            finally:
                peer.abort()
    else:
        async with ScriptedServer(respond=respond, deflate=deflate) as raw:
            side = await connect_client(target, raw.url, **options)
            peer = await raw.accept()
            try:
                yield side, peer
            finally:
                side.abort()
                await side.wait_closed()


def code_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def close_code_of(frame: Frame) -> int | None:
    return struct.unpack("!H", frame.payload[:2])[0] if len(frame.payload) >= 2 else None


__all__ += [
    "Response",
    "ScriptedServer",
    "ServerTarget",
    "WireFrame",
    "close_code_of",
    "code_payload",
    "connect_client",
    "is_server",
    "open_peer",
    "pair",
    "peer_role",
    "request_headers",
    "response_101",
    "send_request",
    "upgrade_request",
]
