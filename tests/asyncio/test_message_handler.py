"""``MessageHandler``: server callbacks run from the read, with no task per connection.

Every test runs a real server on 127.0.0.1 (port 0): ``serve()``, an accept loop
handing its socket to ``AioServer.accept(sock=...)``, aiohttp, or uvicorn. The
clients are ours, the ``websockets`` library's, and the raw peer of
:mod:`tests.asyncio.rawpeer`, which writes exact bytes (many frames in one write,
frames glued to the upgrade request) and can stop reading. Every wait is on a
condition and bounded by a timeout; nothing sleeps to let time pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any

import pytest
import uvicorn
import websockets.asyncio.client
import websockets.exceptions
from aiohttp import web

import simple_websocket
from simple_websocket import AioClient, AioServer, ConnectionClosed, MessageHandler, serve

from . import rawpeer
from .conftest import ReadPath
from .rawpeer import BINARY, CLOSE, TEXT, RawPeer, wait_for_condition

pytestmark = pytest.mark.timeout(20)

#: A close_timeout that no test may wait for: each test's own timeout is shorter.
NEVER = 60.0
#: How long a test waits for a callback before it fails.
WAIT = 10.0

Callback = Callable[..., None]


def echo(ws: Any, message: str | bytes) -> None:
    ws.send_nowait(message)


class Recorder(MessageHandler):
    """Records every callback, per connection; echoes each message by default.

    ``when_open``, ``when_message`` and ``when_close`` replace what a callback does
    after it was recorded (nothing, echo, nothing), so that a test can make one
    raise, close or send. Tests wait for what they expect with :meth:`wait_until`.
    """

    def __init__(
        self,
        *,
        when_open: Callback | None = None,
        when_message: Callback = echo,
        when_close: Callback | None = None,
    ) -> None:
        #: The callbacks each connection got, in order: ``(name, value)``.
        self.events: dict[Any, list[tuple[str, Any]]] = {}
        #: The connections, in the order of their ``on_open``.
        self.opened: list[Any] = []
        self.when_open = when_open
        self.when_message = when_message
        self.when_close = when_close
        self._changed = asyncio.Event()

    def _record(self, ws: Any, name: str, value: Any) -> None:
        self.events.setdefault(ws, []).append((name, value))
        self._changed.set()
        self._changed = asyncio.Event()

    def on_open(self, ws: Any) -> None:
        self.opened.append(ws)
        self._record(ws, "open", None)
        if self.when_open is not None:
            self.when_open(ws)

    def on_message(self, ws: Any, message: str | bytes) -> None:
        self._record(ws, "message", message)
        self.when_message(ws, message)

    def on_close(self, ws: Any) -> None:
        self._record(ws, "close", (ws.close_reason, ws.close_message))
        if self.when_close is not None:
            self.when_close(ws)

    def messages(self, ws: Any) -> list[str | bytes]:
        return [value for name, value in self.events.get(ws, []) if name == "message"]

    def closes(self, ws: Any) -> list[tuple[int, str | None]]:
        return [value for name, value in self.events.get(ws, []) if name == "close"]

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not condition():
                await self._changed.wait()

    async def connection(self, index: int = 0) -> Any:
        """The server side of the ``index``-th connection, once it is open."""
        await self.wait_until(lambda: len(self.opened) > index)
        return self.opened[index]

    async def closed(self, ws: Any) -> tuple[int, str | None]:
        """Wait for ``on_close(ws)``; return the code and reason it saw."""
        await self.wait_until(lambda: bool(self.closes(ws)))
        return self.closes(ws)[0]


async def finished(handler: Recorder, ws: Any) -> None:
    """Wait until ``ws`` is over: on_close ran and TCP is closed (no callback can follow)."""
    await handler.closed(ws)
    async with asyncio.timeout(WAIT):
        await ws.wait_closed()


async def close_as_client(peer: RawPeer, code: int = 1000, reason: str = "") -> None:
    """Run the closing handshake from a raw client: close, the answer, then EOF."""
    await peer.send_close(code, reason)
    frame = await peer.expect_close()
    assert frame.close_code == code
    await peer.expect_eof()


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


class Boom(Exception):
    """The exception the tests' callbacks raise."""


# -- echo and order ------------------------------------------------------------------------


MESSAGES: list[str | bytes] = [
    "hello",
    b"\x00\xff binary",
    "",
    b"",
    "ünïcødé €😀",
    "x" * 70_000,
    os.urandom(512 * 1024),
]


@pytest.mark.parametrize("client", ["ours", "websockets"])
async def test_echo_text_and_binary(client: str) -> None:
    """Text comes back as text and binary as binary, empty or large, through serve()."""
    handler = Recorder()
    async with serve(handler) as server:
        if client == "ours":
            async with AioClient.connect(server.url) as ws:
                for message in MESSAGES:
                    await ws.send(message)
                    got = await ws.receive()
                    assert type(got) is type(message)
                    assert got == message
        else:
            async with websockets.asyncio.client.connect(server.url) as theirs:
                for message in MESSAGES:
                    await theirs.send(message)
                    got = await theirs.recv()
                    assert type(got) is type(message)
                    assert got == message
        conn = await handler.connection()
        await finished(handler, conn)
    assert handler.messages(conn) == MESSAGES
    assert handler.closes(conn) == [(1000, None)]


async def test_a_thousand_messages_in_one_write_keep_their_order() -> None:
    """1,000 frames written at once (far more than max_queue per read) echo in order."""
    handler = Recorder()
    total = 1000
    async with serve(handler, max_queue=4) as server:
        peer = await rawpeer.connect(server.port)
        await peer.write(b"".join(peer.frame(TEXT, str(i).encode()) for i in range(total)))
        for i in range(total):
            frame = await peer.recv_frame()
            assert (frame.opcode, frame.text) == (TEXT, str(i))
        conn = await handler.connection()
        assert handler.messages(conn) == [str(i) for i in range(total)]
        await close_as_client(peer)
        await finished(handler, conn)
    assert handler.closes(conn) == [(1000, None)]


async def test_pipelined_messages_of_our_client_keep_their_order() -> None:
    """Our client sends 1,000 messages without waiting; the echoes come back in order."""
    handler = Recorder()
    total = 1000
    async with serve(handler, max_queue=4) as server:
        async with AioClient.connect(server.url) as ws:
            for i in range(total):
                await ws.send(str(i) if i % 2 else i.to_bytes(4, "big"))
            for i in range(total):
                assert await ws.receive() == (str(i) if i % 2 else i.to_bytes(4, "big"))


# -- the callbacks' order and the close codes --------------------------------------------


@pytest.mark.parametrize("client", ["ours", "websockets"])
@pytest.mark.parametrize(("code", "reason"), [(1000, None), (4001, "client leaves")])
async def test_a_client_close_ends_with_on_close_once(
    client: str, code: int, reason: str | None
) -> None:
    """on_open, then each message in order, then on_close once with the client's code."""
    handler = Recorder()
    async with serve(handler) as server:
        if client == "ours":
            ws = await AioClient.connect(server.url)
            for message in ("a", "b"):
                await ws.send(message)
                assert await ws.receive() == message
            await ws.close(code, reason)
        else:
            theirs = await websockets.asyncio.client.connect(server.url)
            for message in ("a", "b"):
                await theirs.send(message)
                assert await theirs.recv() == message
            await theirs.close(code, reason or "")
        conn = await handler.connection()
        await finished(handler, conn)
        assert handler.events[conn] == [
            ("open", None),
            ("message", "a"),
            ("message", "b"),
            ("close", (code, reason)),
        ]
        assert conn not in server.connections


async def test_a_client_that_vanishes_gives_1006() -> None:
    """A client whose TCP connection is reset, with no close frame: on_close sees 1006."""
    handler = Recorder()
    async with serve(handler) as server:
        peer = await rawpeer.connect(server.port)
        await peer.send_text("a")
        assert (await peer.recv_frame()).text == "a"
        peer.abort()
        conn = await handler.connection()
        await finished(handler, conn)
        assert handler.events[conn] == [("open", None), ("message", "a"), ("close", (1006, None))]
        assert conn not in server.connections


@pytest.mark.parametrize("client", ["ours", "websockets"])
async def test_close_nowait_from_on_message(client: str) -> None:
    """close_nowait(4000, "bye") in on_message: the client sees 4000 "bye"."""

    def when_message(ws: Any, message: str | bytes) -> None:
        if message == "bye":
            ws.close_nowait(4000, "bye")
        else:
            ws.send_nowait(message)

    handler = Recorder(when_message=when_message)
    async with serve(handler) as server:
        if client == "ours":
            ws = await AioClient.connect(server.url)
            await ws.send("hello")
            assert await ws.receive() == "hello"
            await ws.send("bye")
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive()
            assert (info.value.reason, info.value.message) == (4000, "bye")
            assert (ws.close_reason, ws.close_message) == (4000, "bye")
        else:
            theirs = await websockets.asyncio.client.connect(server.url)
            await theirs.send("hello")
            assert await theirs.recv() == "hello"
            await theirs.send("bye")
            with pytest.raises(websockets.exceptions.ConnectionClosed) as their_info:
                await theirs.recv()
            assert their_info.value.rcvd is not None
            assert (their_info.value.rcvd.code, their_info.value.rcvd.reason) == (4000, "bye")
        conn = await handler.connection()
        await finished(handler, conn)
        assert handler.messages(conn) == ["hello", "bye"]
        closes = handler.closes(conn)
        assert len(closes) == 1
        assert closes[0][0] == 4000
        assert conn not in server.connections


@pytest.mark.parametrize("client", ["ours", "websockets"])
async def test_server_shutdown_closes_with_1001(client: str) -> None:
    """server.close() closes each connection with 1001 and on_close sees it, once.

    ``close_timeout=NEVER``: a shutdown that waited for a timeout would fail the test.
    """
    handler = Recorder()
    server = await serve(handler, close_timeout=NEVER)
    try:
        if client == "ours":
            ws = await AioClient.connect(server.url)
            await ws.send("a")
            assert await ws.receive() == "a"
        else:
            theirs = await websockets.asyncio.client.connect(server.url)
            await theirs.send("a")
            assert await theirs.recv() == "a"
        conn = await handler.connection()
        assert server.connections == {conn}
    finally:
        await server.close()
    if client == "ours":
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        assert (info.value.reason, info.value.message) == (1001, "Server shutting down")
    else:
        with pytest.raises(websockets.exceptions.ConnectionClosed) as their_info:
            await theirs.recv()
        assert their_info.value.rcvd is not None
        assert their_info.value.rcvd.code == 1001
        assert their_info.value.rcvd.reason == "Server shutting down"
    await finished(handler, conn)
    assert handler.closes(conn) == [(1001, "Server shutting down")]
    assert server.connections == set()


async def accept_later(request: simple_websocket.HandshakeRequest) -> None:
    """A process_request that lets the loop run before the upgrade is answered."""
    await asyncio.sleep(0)


@pytest.mark.parametrize("process_request", [None, accept_later])
async def test_frames_glued_to_the_upgrade_request_are_delivered(
    process_request: Callable[..., Any] | None,
) -> None:
    """Frames sent in the same TCP write as the request, before the handler is
    attached (also while an async process_request runs), reach on_message after
    on_open, in order."""
    glued = rawpeer.encode_frame(TEXT, b"early", mask=b"1234") + rawpeer.encode_frame(
        BINARY, b"\x01\x02", mask=b"5678"
    )
    handler = Recorder()
    async with serve(handler, process_request=process_request) as server:
        peer = await rawpeer.connect(server.port, after_request=glued)
        first, second = await peer.recv_frame(), await peer.recv_frame()
        assert (first.opcode, first.payload) == (TEXT, b"early")
        assert (second.opcode, second.payload) == (BINARY, b"\x01\x02")
        conn = await handler.connection()
        await close_as_client(peer)
        await finished(handler, conn)
        assert handler.events[conn] == [
            ("open", None),
            ("message", "early"),
            ("message", b"\x01\x02"),
            ("close", (1000, None)),
        ]


async def test_a_message_and_the_close_frame_in_one_read() -> None:
    """A message read together with the close frame reaches on_message first; then
    on_close sees the code and reason of that close frame."""
    handler = Recorder(when_message=lambda ws, message: None)
    async with serve(handler) as server:
        peer = await rawpeer.connect(server.port)
        await peer.write(
            peer.frame(TEXT, b"last") + peer.frame(CLOSE, rawpeer.close_payload(4001, "done"))
        )
        frame = await peer.expect_close()
        assert (frame.close_code, frame.close_reason) == (4001, "done")
        await peer.expect_eof()
        conn = await handler.connection()
        await finished(handler, conn)
        assert handler.events[conn] == [
            ("open", None),
            ("message", "last"),
            ("close", (4001, "done")),
        ]


# -- exceptions ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["on_open", "on_message"])
async def test_an_exception_in_a_callback_fails_only_its_connection(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in on_open or on_message: that client gets 1011 "Internal server
    error", the exception is logged, the messages after it are dropped, on_close is
    called once, and the other connections are served as before."""
    caplog.set_level(logging.DEBUG, logger="simple_websocket")

    def when_open(ws: Any) -> None:
        if where == "on_open" and ws.request.target == "/fail":
            raise Boom(where)

    def when_message(ws: Any, message: str | bytes) -> None:
        if message == "fail":
            raise Boom(where)
        ws.send_nowait(message)

    handler = Recorder(when_open=when_open, when_message=when_message)
    async with serve(handler) as server:
        async with AioClient.connect(server.url) as other:
            await other.send("before")
            assert await other.receive() == "before"

            peer = await rawpeer.connect(server.port, path="/fail")
            if where == "on_message":
                # Both in one write: the second is dropped once the first failed.
                await peer.write(peer.frame(TEXT, b"fail") + peer.frame(TEXT, b"dropped"))
            # (Failing does not wait for the client's close frame: TCP closes at once.)
            frame = await peer.recv_data_frame()
            assert frame.opcode == CLOSE, frame
            assert (frame.close_code, frame.close_reason) == (1011, "Internal server error")
            await peer.expect_eof()
            failed = await handler.connection(1)
            await finished(handler, failed)
            assert handler.closes(failed) == [(1011, "Internal server error")]
            assert handler.messages(failed) == ([] if where == "on_open" else ["fail"])
            assert failed not in server.connections

            await other.send("after")
            assert await other.receive() == "after"
            async with AioClient.connect(server.url) as third:
                await third.send("new")
                assert await third.receive() == "new"
    [record] = errors(caplog)
    assert record.getMessage() == "message handler failed"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], Boom)


async def test_an_exception_in_on_close_is_logged_and_breaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """on_close raising: logged; the close completes normally and the server goes on."""
    caplog.set_level(logging.DEBUG, logger="simple_websocket")

    def when_close(ws: Any) -> None:
        raise Boom("on_close")

    handler = Recorder(when_close=when_close)
    async with serve(handler) as server:
        ws = await AioClient.connect(server.url)
        await ws.send("a")
        assert await ws.receive() == "a"
        await ws.close()
        assert (ws.close_reason, ws.close_message) == (1000, None)
        conn = await handler.connection()
        await finished(handler, conn)
        assert conn not in server.connections
        [record] = errors(caplog)
        assert record.getMessage() == "message handler's on_close failed"
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], Boom)

        async with AioClient.connect(server.url) as again:
            await again.send("b")
            assert await again.receive() == "b"
        second = await handler.connection(1)
        await finished(handler, second)
    assert [r.getMessage() for r in errors(caplog)] == ["message handler's on_close failed"] * 2
    assert handler.closes(conn) == handler.closes(second) == [(1000, None)]


async def test_send_nowait_after_the_end_raises_connection_closed() -> None:
    """send_nowait() in on_close, or once the connection is over, raises ConnectionClosed."""
    raised: list[BaseException] = []

    def when_close(ws: Any) -> None:
        try:
            ws.send_nowait("too late")
        except ConnectionClosed as exc:
            raised.append(exc)

    handler = Recorder(when_close=when_close)
    async with serve(handler) as server:
        peer = await rawpeer.connect(server.port)
        await close_as_client(peer, 4001, "gone")
        conn = await handler.connection()
        await finished(handler, conn)
        [exc] = raised
        assert isinstance(exc, ConnectionClosed)
        assert exc.reason == 4001
        with pytest.raises(ConnectionClosed):
            conn.send_nowait("later")
        with pytest.raises(ConnectionClosed):
            conn.send_nowait(b"later")


async def test_connection_closed_in_on_message_ends_delivery_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A ConnectionClosed out of on_message: no error logged, the connection closes
    with 1000, the messages after it are dropped and on_close is still called."""
    caplog.set_level(logging.DEBUG, logger="simple_websocket")

    def when_message(ws: Any, message: str | bytes) -> None:
        if message == "stop":
            raise ConnectionClosed(1000, "stop")
        ws.send_nowait(message)

    handler = Recorder(when_message=when_message)
    async with serve(handler) as server:
        peer = await rawpeer.connect(server.port)
        await peer.write(b"".join(peer.frame(TEXT, m) for m in (b"a", b"stop", b"dropped")))
        frame = await peer.recv_data_frame()
        assert frame.text == "a"
        frame = await peer.expect_close()
        assert frame.close_code == 1000
        await peer.send_close(1000)
        await peer.expect_eof()
        conn = await handler.connection()
        await finished(handler, conn)
        assert handler.messages(conn) == ["a", "stop"]
        assert handler.closes(conn) == [(1000, None)]
    assert errors(caplog) == []


async def test_sending_on_a_connection_the_peer_closed_ends_delivery_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Echoing a message that arrived with the close frame: send_nowait raises
    ConnectionClosed inside on_message, which ends delivery without an error log."""
    caplog.set_level(logging.DEBUG, logger="simple_websocket")
    raised: list[BaseException] = []

    def when_message(ws: Any, message: str | bytes) -> None:
        try:
            ws.send_nowait(message)
        except ConnectionClosed as exc:
            raised.append(exc)
            raise

    handler = Recorder(when_message=when_message)
    async with serve(handler) as server:
        peer = await rawpeer.connect(server.port)
        await peer.write(peer.frame(TEXT, b"x") + peer.frame(CLOSE, rawpeer.close_payload(1000)))
        frame = await peer.recv_data_frame()
        assert frame.opcode == CLOSE, frame
        await peer.expect_eof()
        conn = await handler.connection()
        await finished(handler, conn)
        assert [type(exc) for exc in raised] == [ConnectionClosed]
        assert len(handler.closes(conn)) == 1
    assert errors(caplog) == []


# -- no task per connection -------------------------------------------------------------------


async def test_serve_starts_no_task_for_callbacks() -> None:
    """20 connections exchanging messages: no task is created, and server.connections
    holds each connection exactly while it is open."""
    handler = Recorder()
    async with serve(handler) as server:
        before = asyncio.all_tasks()
        peers = [await rawpeer.connect(server.port) for _ in range(20)]
        for i, peer in enumerate(peers):
            await peer.send_text(str(i))
        for i, peer in enumerate(peers):
            assert (await peer.recv_frame()).text == str(i)
        conns = [await handler.connection(i) for i in range(20)]
        assert server.connections == set(conns)
        assert server._handlers == {}
        assert asyncio.all_tasks() == before

        for peer in peers[:10]:
            await close_as_client(peer)
        for conn in conns[:10]:
            await finished(handler, conn)
        assert server.connections == set(conns[10:])
        for peer in peers[10:]:
            peer.abort()
        for conn in conns[10:]:
            await finished(handler, conn)
        assert server.connections == set()
        assert server._handlers == {}
        assert asyncio.all_tasks() == before


# -- the servers: serve(), accept(sock=...), accept(aiohttp=...) --------------------------------


async def read_request_head(sock: socket.socket) -> tuple[str, list[tuple[str, str]]]:
    """Read an HTTP request head from ``sock``; return its target and headers."""
    loop = asyncio.get_running_loop()
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await loop.sock_recv(sock, 4096)
        assert chunk, "the client left before its request"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert rest == b"", "a client sends nothing before the 101"
    lines = head.decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1]
    headers = [(n.strip(), v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
    return target, headers


class Served:
    """A running server: its port, and the connections whose ``await handler(ws)``
    returned (with ``accept()`` only: ``serve()`` does not await the handler)."""

    def __init__(self) -> None:
        self.port = 0
        self.returned: asyncio.Queue[Any] = asyncio.Queue()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def handler_returned(self) -> Any:
        async with asyncio.timeout(WAIT):
            return await self.returned.get()


@contextlib.asynccontextmanager
async def running(kind: str, handler: MessageHandler) -> AsyncIterator[Served]:
    """Serve ``handler`` on 127.0.0.1 with ``serve(handler)``, or with ``await
    handler(ws)`` after ``AioServer.accept(sock=...)`` in an accept loop or after
    ``AioServer.accept(aiohttp=request)`` in an aiohttp route."""
    served = Served()
    if kind == "serve":
        async with serve(handler) as server:
            served.port = server.port
            yield served
        return

    async def run(ws: Any) -> None:
        await handler(ws)
        served.returned.put_nowait(ws)

    if kind == "sock":
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()

        async def connection(sock: socket.socket) -> None:
            target, headers = await read_request_head(sock)
            await run(await AioServer.accept(sock=sock, headers=headers, path=target))

        async def accept_loop(listener: socket.socket) -> None:
            while True:
                sock, _ = await loop.sock_accept(listener)
                task = asyncio.create_task(connection(sock))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.setblocking(False)
            served.port = listener.getsockname()[1]
            acceptor = asyncio.create_task(accept_loop(listener))
            try:
                yield served
            finally:
                acceptor.cancel()
                for task in tasks:
                    task.cancel()
                await asyncio.wait([acceptor, *tasks], timeout=WAIT)
        return

    assert kind == "aiohttp"

    async def route(request: web.Request) -> web.StreamResponse:
        await run(await AioServer.accept(aiohttp=request))
        return web.Response()

    app = web.Application()
    app.router.add_get("/{tail:.*}", route)
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        served.port = runner.addresses[0][1]
        yield served
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("kind", ["sock", "aiohttp"])
async def test_await_handler_after_accept(kind: str) -> None:
    """``await handler(ws)`` after ``AioServer.accept(sock=...)`` or ``accept(aiohttp=
    ...)``: echo works, on_close is called once, and the call returns at the end."""
    handler = Recorder()
    async with running(kind, handler) as served:
        async with AioClient.connect(served.url + "path") as ws:
            for message in MESSAGES:
                await ws.send(message)
                assert await ws.receive() == message
            assert served.returned.empty()
        conn = await served.handler_returned()
        await finished(handler, conn)
    assert (conn.mode, conn.request.target) == ("custom" if kind == "sock" else kind, "/path")
    assert handler.messages(conn) == MESSAGES
    assert handler.closes(conn) == [(1000, None)]


# -- backpressure ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["serve", "sock", "aiohttp"])
async def test_a_client_that_does_not_read_stops_the_reading(kind: str) -> None:
    """A raw client writes 16 MiB of messages and reads nothing: the server pauses
    reading, and its write buffer stays bounded; once the client reads, every
    echo arrives, in order."""
    size = 32 * 1024
    total = 512  # 16 MiB
    limit = 1024 * 1024

    def when_open(ws: Any) -> None:
        # Small kernel buffers: what the server writes stays in its transport.
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)

    def message(i: int) -> bytes:
        return i.to_bytes(4, "big") * (size // 4)

    handler = Recorder(when_open=when_open)
    async with running(kind, handler) as served:
        peer = await rawpeer.connect(served.port, rcvbuf=16384, sndbuf=16384)
        conn = await handler.connection()
        transport = conn.transport
        highest = [0]
        stop = asyncio.Event()

        async def watch() -> None:
            # The server's write buffer, on every iteration of the loop.
            while not stop.is_set():
                highest[0] = max(highest[0], transport.get_write_buffer_size())
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        try:
            # Everything in one write: the client's transport holds what TCP refuses.
            peer.writer.write(b"".join(peer.frame(BINARY, message(i)) for i in range(total)))
            async with asyncio.timeout(WAIT):
                # Until the client is blocked by TCP flow control, and the server
                # stopped reading (or its buffer outgrew the limit: a failure).
                await wait_for_condition(lambda: peer.transport.get_write_buffer_size() > 0)
                await wait_for_condition(lambda: not transport.is_reading() or highest[0] > limit)
            for _ in range(20):
                await asyncio.sleep(0)  # let the server run: it must stay paused
            assert not transport.is_reading(), f"still reading, {highest[0]} bytes buffered"
            assert transport.get_write_buffer_size() <= limit
            echoed = len(handler.messages(conn))
            assert echoed < total // 8, echoed
            assert peer.transport.get_write_buffer_size() > total * size // 2

            for i in range(total):
                frame = await peer.recv_frame()
                assert frame.opcode == BINARY
                assert frame.payload == message(i), i
        finally:
            stop.set()
            await watcher
        assert highest[0] <= limit, highest[0]
        assert transport.is_reading()
        await close_as_client(peer)
        await finished(handler, conn)
    assert len(handler.messages(conn)) == total


Scope = MutableMapping[str, Any]


@contextlib.asynccontextmanager
async def run_uvicorn(websocket: Callable[..., Any]) -> AsyncIterator[int]:
    """Run an ASGI app calling ``websocket(scope, receive, send)`` under uvicorn's
    wsproto implementation; yield its port."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await websocket(scope, receive, send)
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", ws="wsproto", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[1]
        assert not task.done(), "uvicorn stopped early"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)
        sock.close()


async def test_await_handler_under_asgi_keeps_the_order() -> None:
    """Under uvicorn the callbacks are driven by ``async for`` and send_nowait()
    chains its sends in tasks: 200 pipelined messages are echoed in order."""
    handler = Recorder()
    served: asyncio.Queue[Any] = asyncio.Queue()
    total = 200

    async def websocket(scope: Scope, receive: Any, send: Any) -> None:
        ws = await AioServer.accept(asgi=(scope, receive, send))
        await handler(ws)
        await served.put(ws)

    async with run_uvicorn(websocket) as port:
        async with AioClient.connect(f"ws://127.0.0.1:{port}/") as ws:
            for i in range(total):
                await ws.send(str(i) if i % 2 else i.to_bytes(2, "big"))
            for i in range(total):
                assert await ws.receive() == (str(i) if i % 2 else i.to_bytes(2, "big"))
        async with asyncio.timeout(WAIT):
            conn = await served.get()
    assert isinstance(conn, simple_websocket.ASGIConnection)
    assert len(handler.messages(conn)) == total
    assert len(handler.closes(conn)) == 1
    assert handler.closes(conn)[0][0] == 1000


async def test_an_exception_under_asgi_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    """The ``async for`` path keeps the rules: an exception in on_message is logged,
    the client gets 1011 and on_close is called once."""
    caplog.set_level(logging.DEBUG, logger="simple_websocket")

    def when_message(ws: Any, message: str | bytes) -> None:
        if message == "fail":
            raise Boom("asgi")
        ws.send_nowait(message)

    handler = Recorder(when_message=when_message)
    served: asyncio.Queue[Any] = asyncio.Queue()

    async def websocket(scope: Scope, receive: Any, send: Any) -> None:
        ws = await AioServer.accept(asgi=(scope, receive, send))
        await handler(ws)
        await served.put(ws)

    async with run_uvicorn(websocket) as port:
        ws = await AioClient.connect(f"ws://127.0.0.1:{port}/")
        await ws.send("a")
        assert await ws.receive() == "a"
        await ws.send("fail")
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        assert (info.value.reason, info.value.message) == (1011, "Internal server error")
        async with asyncio.timeout(WAIT):
            conn = await served.get()
    assert handler.messages(conn) == ["a", "fail"]
    assert len(handler.closes(conn)) == 1
    [record] = errors(caplog)
    assert record.getMessage() == "message handler failed"


# -- mistakes --------------------------------------------------------------------------------


def test_an_async_on_message_is_refused_at_class_creation() -> None:
    """``async def on_message`` could never be awaited: the class statement fails."""
    with pytest.raises(TypeError, match=r"^Slow\.on_message must be a plain function"):

        class Slow(MessageHandler):
            async def on_message(self, ws: Any, message: str | bytes) -> None:
                ws.send_nowait(message)


@pytest.mark.parametrize("name", ["on_open", "on_message", "on_close"])
def test_every_async_callback_is_refused_also_in_a_subclass_of_a_subclass(name: str) -> None:
    """The check runs for each class, so a callback added lower in the tree is caught."""

    class Base(MessageHandler):
        def on_message(self, ws: Any, message: str | bytes) -> None:
            ws.send_nowait(message)

    async def callback(self: Any, *args: Any) -> None:
        return None

    with pytest.raises(TypeError, match=rf"^Sub\.{name} must be a plain function"):
        type("Sub", (Base,), {name: callback})


def test_the_package_exports_one_message_handler() -> None:
    """``simple_websocket.MessageHandler`` and ``simple_websocket.aiows.MessageHandler``."""
    assert simple_websocket.MessageHandler is simple_websocket.aiows.MessageHandler
    assert "MessageHandler" in simple_websocket.__all__


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2999, 5000])
async def test_close_nowait_with_an_invalid_code_raises_and_sends_nothing(code: int) -> None:
    """close_nowait() with a code that may not be sent raises ValueError before
    anything is sent: the connection stays open and keeps working."""
    raised: list[BaseException] = []

    def when_message(ws: Any, message: str | bytes) -> None:
        try:
            ws.close_nowait(code, "nope")
        except ValueError as exc:
            raised.append(exc)
        ws.send_nowait(message)

    handler = Recorder(when_message=when_message)
    async with serve(handler) as server:
        peer = await rawpeer.connect(server.port)
        await peer.send_text("x")
        frame = await peer.recv_data_frame()
        assert (frame.opcode, frame.text) == (TEXT, "x")
        await peer.send_text("y")
        assert (await peer.recv_data_frame()).text == "y"
        conn = await handler.connection()
        assert conn.connected
        assert [str(code) in str(exc) for exc in raised] == [True, True]
        await close_as_client(peer)
        await finished(handler, conn)
    assert handler.closes(conn) == [(1000, None)]


# -- the read lane -----------------------------------------------------------------------------
#
# With the C extension, a read of whole small messages for a MessageHandler in its
# plain state is delivered in C (the reader's read lane) instead of through the
# connection's read, the session's step, the protocol and the delivery in Python,
# and the text echoed with send_nowait() is written in C (the send lane).
# Each test below runs twice (the read_path fixture, in conftest.py): with the lane,
# and with it turned off for every connection (the Python path, the reference); both
# must give the same results. The raw peer writes one frame per write, so that each
# message is a read of its own.


SINGLE_MESSAGES: list[str | bytes] = ["a", b"\x00\xff", "", b"", "ünïcødé €😀", "x" * 125]


async def test_messages_read_one_at_a_time_are_echoed(read_path: ReadPath) -> None:
    """Small messages, each in its own read: echoed in order, on_close once; with
    the lane, not one of them went through the Python read."""
    handler = Recorder()
    async with serve(handler) as server:
        peer = await rawpeer.connect(server.port)
        for message in SINGLE_MESSAGES * 3:
            if isinstance(message, str):
                await peer.send_text(message)
            else:
                await peer.send_binary(message)
            frame = await peer.recv_data_frame()
            assert frame.opcode == (TEXT if isinstance(message, str) else BINARY)
            assert frame.payload == (message.encode() if isinstance(message, str) else message)
        binary = sum(isinstance(m, bytes) for m in SINGLE_MESSAGES) * 3
        if read_path.lane:
            assert read_path.python_reads == 0
            assert read_path.python_sends == binary  # text is the send lane's
        else:
            assert read_path.python_reads == len(SINGLE_MESSAGES) * 3
            assert read_path.python_sends == len(SINGLE_MESSAGES) * 3
        conn = await handler.connection()
        await close_as_client(peer)
        await finished(handler, conn)
    assert handler.messages(conn) == SINGLE_MESSAGES * 3
    assert handler.closes(conn) == [(1000, None)]


async def test_an_exception_from_on_message_in_its_own_read(
    read_path: ReadPath, caplog: pytest.LogCaptureFixture
) -> None:
    """on_message raising for a message read alone: 1011, the exception logged with
    its traceback, on_close once, and the server goes on."""
    caplog.set_level(logging.DEBUG, logger="simple_websocket")

    def when_message(ws: Any, message: str | bytes) -> None:
        if message == "fail":
            raise Boom("on_message")
        ws.send_nowait(message)

    handler = Recorder(when_message=when_message)
    async with serve(handler) as server:
        peer = await rawpeer.connect(server.port)
        await peer.send_text("ok")
        assert (await peer.recv_data_frame()).text == "ok"
        await peer.send_text("fail")
        frame = await peer.recv_data_frame()
        assert (frame.close_code, frame.close_reason) == (1011, "Internal server error")
        await peer.expect_eof()
        conn = await handler.connection()
        await finished(handler, conn)
        assert read_path.python_reads == (0 if read_path.lane else 2)
        assert handler.messages(conn) == ["ok", "fail"]
        assert handler.closes(conn) == [(1011, "Internal server error")]
        assert conn not in server.connections
        other = await rawpeer.connect(server.port)
        await other.send_text("next")
        assert (await other.recv_data_frame()).text == "next"
        await close_as_client(other)
    [record] = errors(caplog)
    assert record.getMessage() == "message handler failed"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], Boom)
    assert record.exc_info[2] is not None  # the traceback, down to the callback


async def test_connection_closed_from_on_message_in_its_own_read(
    read_path: ReadPath, caplog: pytest.LogCaptureFixture
) -> None:
    """A ConnectionClosed out of on_message for a message read alone ends delivery
    quietly: the server closes with 1000, nothing is logged as an error."""
    caplog.set_level(logging.DEBUG, logger="simple_websocket")

    def when_message(ws: Any, message: str | bytes) -> None:
        raise ConnectionClosed(1000, "stop")

    handler = Recorder(when_message=when_message)
    async with serve(handler) as server:
        peer = await rawpeer.connect(server.port)
        await peer.send_text("stop")
        assert (await peer.expect_close()).close_code == 1000
        await peer.send_text("after the close")  # dropped: delivery ended
        await peer.send_close(1000)
        await peer.expect_eof()
        conn = await handler.connection()
        await finished(handler, conn)
        assert handler.messages(conn) == ["stop"]
        assert handler.closes(conn) == [(1000, None)]
    assert errors(caplog) == []
    assert "message handler ended" in caplog.text


async def test_close_nowait_in_on_message_in_its_own_read(read_path: ReadPath) -> None:
    """close_nowait() from on_message for a message read alone: the closing
    handshake runs with that code and reason; messages read before the peer's
    close frame are still delivered."""

    def when_message(ws: Any, message: str | bytes) -> None:
        if message == "bye":
            ws.close_nowait(4000, "bye")

    handler = Recorder(when_message=when_message)
    async with serve(handler) as server:
        peer = await rawpeer.connect(server.port)
        await peer.send_text("bye")
        frame = await peer.expect_close()
        assert (frame.close_code, frame.close_reason) == (4000, "bye")
        await peer.send_text("late")
        await peer.send_close(4000, "bye")
        await peer.expect_eof()
        conn = await handler.connection()
        await finished(handler, conn)
        assert handler.messages(conn) == ["bye", "late"]
        assert handler.closes(conn) == [(4000, "bye")]


async def test_a_base_exception_from_on_message_in_its_own_read(read_path: ReadPath) -> None:
    """An exception that is not an Exception (here CancelledError) is not caught by
    the delivery: it reaches asyncio's transport, which aborts the connection, and
    on_close still runs, once, with 1006."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: reported.append(context))

    def when_message(ws: Any, message: str | bytes) -> None:
        raise asyncio.CancelledError

    handler = Recorder(when_message=when_message)
    async with serve(handler) as server:
        peer = await rawpeer.connect(server.port)
        await peer.send_text("x")
        await peer.expect_eof()
        conn = await handler.connection()
        await finished(handler, conn)
        assert handler.messages(conn) == ["x"]
        assert handler.closes(conn) == [(1006, None)]
        assert read_path.python_reads == (0 if read_path.lane else 1)
    assert [type(context.get("exception")) for context in reported] == [asyncio.CancelledError]


async def test_the_lane_is_bound_only_to_classes_with_its_slots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bind_lane() refuses classes whose attributes are not slots (the lane reads
    slots directly) and then keeps its binding: reads still take the lane."""
    from collections import deque

    from simple_websocket.asyncio import connection as connection_module
    from simple_websocket.sansio import framing
    from simple_websocket.sansio.protocol import Protocol, State
    from simple_websocket.sansio.session import Inbox, Session

    bind = framing.C_BIND_LANE
    if bind is None:
        pytest.skip("the C extension is turned off (SIMPLE_WEBSOCKET_NO_EXTENSIONS)")

    class NoSlots:
        pass

    class NotASlot(connection_module.Connection):
        __slots__ = ()
        _session = None  # type: ignore[assignment]

    with pytest.raises(AttributeError):
        bind(NoSlots, Session, Protocol, Inbox, deque, State.OPEN, 1)
    with pytest.raises(TypeError, match="_session is not an object slot"):
        bind(NotASlot, Session, Protocol, Inbox, deque, State.OPEN, 1)
    with pytest.raises(TypeError):
        bind(connection_module.Connection, Session, Protocol, Inbox, deque, State.OPEN)

    python_reads: list[bytes] = []
    data_received = connection_module.Connection._data_received

    def counting(self: Any, data: bytes) -> None:
        python_reads.append(data)
        data_received(self, data)

    monkeypatch.setattr(connection_module.Connection, "_data_received", counting)
    handler = Recorder()
    async with serve(handler) as server:
        peer = await rawpeer.connect(server.port)
        await peer.send_text("still the lane")
        assert (await peer.recv_data_frame()).text == "still the lane"
        assert python_reads == []
        await close_as_client(peer)


@pytest.mark.parametrize(
    "case", ["too big", "invalid UTF-8", "unmasked", "ping", "fragmented", "max_queue=1"]
)
async def test_reads_that_are_not_plain_small_messages(read_path: ReadPath, case: str) -> None:
    """Reads the lane leaves to the Python path give what the protocol requires:
    limits, UTF-8, masking, control frames, fragments, an inbox of one."""
    handler = Recorder()
    options: dict[str, Any] = {"max_message_size": 10} if case == "too big" else {}
    if case == "max_queue=1":
        options["max_queue"] = 1
    async with serve(handler, **options) as server:
        peer = await rawpeer.connect(server.port)
        conn = await handler.connection()
        if case == "too big":
            await peer.send_text("0123456789")
            assert (await peer.recv_data_frame()).text == "0123456789"
            await peer.send_text("0123456789+")
            assert (await peer.expect_close()).close_code == 1009
        elif case == "invalid UTF-8":
            await peer.send(TEXT, b"ok \xff")
            assert (await peer.expect_close()).close_code == 1007
        elif case == "unmasked":
            await peer.send(TEXT, b"plain", mask=None)
            assert (await peer.expect_close()).close_code == 1002
        elif case == "ping":
            await peer.send(rawpeer.PING, b"are you there")
            frame = await peer.recv_frame()
            assert (frame.opcode, frame.payload) == (rawpeer.PONG, b"are you there")
            await peer.write(peer.frame(rawpeer.PING, b"p") + peer.frame(TEXT, b"after"))
            # (The echo is written from on_message, the pong after the read: in
            # either order.)
            frames = [await peer.recv_frame(), await peer.recv_frame()]
            assert sorted((f.opcode, f.payload) for f in frames) == [
                (TEXT, b"after"),
                (rawpeer.PONG, b"p"),
            ]
            await close_as_client(peer)
        elif case == "fragmented":
            await peer.send(TEXT, b"ab", fin=False)
            await peer.send(rawpeer.CONT, b"cd")
            assert (await peer.recv_data_frame()).text == "abcd"
            await peer.send_text("whole")
            assert (await peer.recv_data_frame()).text == "whole"
            await close_as_client(peer)
        else:
            for message in ("one", "two", "three"):
                await peer.send_text(message)
                assert (await peer.recv_data_frame()).text == message
            await close_as_client(peer)
        await finished(handler, conn)
    expected = {
        "too big": ["0123456789"],
        "invalid UTF-8": [],
        "unmasked": [],
        "ping": ["after"],
        "fragmented": ["abcd", "whole"],
        "max_queue=1": ["one", "two", "three"],
    }[case]
    assert handler.messages(conn) == expected
    assert len(handler.closes(conn)) == 1
