"""The ASGI adapter: ``ws = await AioServer.accept(asgi=(scope, receive, send))``.

Every test runs a plain ASGI app under a real server on 127.0.0.1 (port 0): uvicorn
with each of its WebSocket implementations, and hypercorn. Clients are ours and the
``websockets`` library's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import hypercorn.asyncio
import hypercorn.config
import pytest
import uvicorn
import websockets.asyncio.client
import websockets.exceptions
from websockets.typing import Subprotocol

import simple_websocket
from simple_websocket import AioClient, AioServer, ASGIConnection, ConnectionClosed

pytestmark = [
    pytest.mark.timeout(20),
    # uvicorn's legacy "websockets" implementation announces its own deprecation.
    pytest.mark.filterwarnings("ignore:The `websockets` implementation is deprecated"),
    pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated"),
    pytest.mark.filterwarnings("ignore:remove second argument of ws_handler"),
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
WSHandler = Callable[[Scope, Receive, Send], Awaitable[None]]

SERVERS = ["uvicorn-websockets", "uvicorn-websockets-sansio", "uvicorn-wsproto", "hypercorn"]


@dataclass
class Probe:
    """What the app's WebSocket handler did, for the test to check afterwards."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def track(self, handler: WSHandler) -> WSHandler:
        async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await handler(scope, receive, send)
            except BaseException as exc:
                self.error = exc
                raise
            finally:
                self.done.set()

        return wrapper

    async def finished(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.done.wait(), timeout)


def asgi_app(handler: WSHandler) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A plain ASGI app: ``handler`` for WebSocket scopes, 404 for HTTP."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "websocket":
            await handler(scope, receive, send)
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    return app


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # Listening before the server starts: clients may connect at once, the kernel
    # queues them until the server accepts.
    sock.listen(128)
    return sock


@contextlib.asynccontextmanager
async def run_uvicorn(app: Any, ws: str) -> AsyncIterator[int]:
    sock = listening_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", ws=ws, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield port
        assert not task.done(), "uvicorn stopped early"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@contextlib.asynccontextmanager
async def run_hypercorn(app: Any) -> AsyncIterator[int]:
    sock = listening_socket()
    port = sock.getsockname()[1]
    config = hypercorn.config.Config()
    # hypercorn takes the socket over (and closes it) through its file descriptor.
    config.bind = [f"fd://{sock.detach()}"]
    config.graceful_timeout = 2
    config.accesslog = None
    config.errorlog = None
    stop = asyncio.Event()
    task = asyncio.create_task(hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait))
    try:
        yield port
        assert not task.done(), "hypercorn stopped early"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


ServeFactory = Callable[[WSHandler], contextlib.AbstractAsyncContextManager[str]]


@pytest.fixture(params=SERVERS)
def server_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def serve(server_kind: str) -> ServeFactory:
    """``async with serve(handler) as url``: run ``handler`` under the server."""

    @contextlib.asynccontextmanager
    async def factory(handler: WSHandler) -> AsyncIterator[str]:
        app = asgi_app(handler)
        if server_kind == "hypercorn":
            runner = run_hypercorn(app)
        else:
            runner = run_uvicorn(app, server_kind.removeprefix("uvicorn-"))
        async with runner as port:
            yield f"ws://127.0.0.1:{port}/"

    return factory


async def echo_handler(scope: Scope, receive: Receive, send: Send) -> None:
    ws = await AioServer.accept(asgi=(scope, receive, send))
    # hypercorn reports a client's normal close as 1006, which ends the iteration
    # with ConnectionClosed; the tests of closing check the codes.
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            await ws.send(message)


# -- the connection's interface ----------------------------------------------------


async def test_accept_returns_an_asgi_connection(serve: ServeFactory) -> None:
    probe = Probe()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await AioServer.accept(asgi=(scope, receive, send))
        probe.info.update(
            type=type(ws),
            connected=ws.connected,
            path=ws.request.target,
            header=ws.request.header("X-Custom"),
        )
        await ws.close()

    async with serve(probe.track(handler)) as url:
        async with AioClient.connect(url + "path?x=1", headers={"X-Custom": "v"}) as ws:
            with pytest.raises(ConnectionClosed):
                await ws.receive()
        await probe.finished()
    assert probe.error is None
    assert probe.info == {
        "type": ASGIConnection,
        "connected": True,
        "path": "/path?x=1",
        "header": "v",
    }


@pytest.mark.parametrize("client", ["ours", "websockets"])
async def test_echo_text_and_binary(serve: ServeFactory, client: str) -> None:
    probe = Probe()
    messages: list[str | bytes] = [
        "hello",
        b"\x00\xff binary",
        "",
        b"",
        "ünïcødé €😀",
        "x" * 70_000,
        os.urandom(1 << 20),
        "é" * (1 << 20),
    ]
    async with serve(probe.track(echo_handler)) as url:
        if client == "ours":
            async with AioClient.connect(url) as ws:
                for message in messages:
                    await ws.send(message)
                    assert await ws.receive() == message
        else:
            async with websockets.asyncio.client.connect(url, max_size=None) as wsc:
                for message in messages:
                    await wsc.send(message)
                    assert await wsc.recv() == message
        await probe.finished()
    assert probe.error is None


async def test_burst_with_small_queue(serve: ServeFactory) -> None:
    """A handler slower than its client: the queue fills, reading pauses and
    resumes, and every message still arrives once, in order."""
    probe = Probe()
    gate = asyncio.Event()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await AioServer.accept(asgi=(scope, receive, send), max_queue=2)
        received = [await ws.receive()]
        await gate.wait()
        with contextlib.suppress(ConnectionClosed):  # hypercorn: 1006
            async for message in ws:
                received.append(message)
        probe.info["received"] = received

    messages = [f"m{i}" if i % 3 else f"{i}".encode() * 100 for i in range(300)]
    async with serve(probe.track(handler)) as url:
        async with AioClient.connect(url) as ws:
            for message in messages:
                await ws.send(message)
            gate.set()
        await probe.finished()
    assert probe.error is None
    assert probe.info["received"] == messages


async def test_receive_timeout_returns_none(serve: ServeFactory) -> None:
    probe = Probe()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await AioServer.accept(asgi=(scope, receive, send))
        loop = asyncio.get_running_loop()
        start = loop.time()
        probe.info["first"] = await ws.receive(timeout=0.05)
        probe.info["waited"] = loop.time() - start
        probe.info["zero"] = await ws.receive(timeout=0)
        await ws.send("nothing came")
        probe.info["second"] = await ws.receive(timeout=5)
        await ws.close()

    async with serve(probe.track(handler)) as url:
        async with AioClient.connect(url) as ws:
            assert await ws.receive() == "nothing came"
            await ws.send("now")
            with pytest.raises(ConnectionClosed):
                await ws.receive()
        await probe.finished()
    assert probe.error is None
    assert probe.info["first"] is None
    assert probe.info["zero"] is None
    assert 0.04 <= probe.info["waited"] < 2
    assert probe.info["second"] == "now"


async def test_async_iteration_ends_when_client_closes_1000(
    serve: ServeFactory, server_kind: str, request: pytest.FixtureRequest
) -> None:
    if server_kind == "hypercorn":
        request.applymarker(
            pytest.mark.xfail(
                strict=True, reason="hypercorn reports every client-initiated close as 1006"
            )
        )
    probe = Probe()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await AioServer.accept(asgi=(scope, receive, send))
        probe.info["received"] = [m async for m in ws]
        probe.info["code"] = ws.close_reason
        probe.info["connected"] = ws.connected

    async with serve(probe.track(handler)) as url:
        async with AioClient.connect(url) as ws:
            await ws.send("a")
            await ws.send(b"b")
        assert ws.close_reason == 1000
        await probe.finished()
    assert probe.error is None
    assert probe.info == {"received": ["a", b"b"], "code": 1000, "connected": False}


@pytest.mark.parametrize("client", ["ours", "websockets"])
async def test_client_close_code_reaches_the_server(
    serve: ServeFactory, server_kind: str, client: str
) -> None:
    probe = Probe()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await AioServer.accept(asgi=(scope, receive, send))
        probe.info["first"] = await ws.receive()
        try:
            async for _ in ws:
                pass
        except ConnectionClosed as exc:
            probe.info["iteration"] = exc.reason
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        probe.info["receive"] = info.value.reason
        with pytest.raises(ConnectionClosed):
            await ws.send("gone")
        await ws.close()  # a no-op now

    async with serve(probe.track(handler)) as url:
        if client == "ours":
            ws = await AioClient.connect(url)
            await ws.send("hi")
            await ws.close(4002, "see you")
        else:
            wsc = await websockets.asyncio.client.connect(url)
            await wsc.send("hi")
            await wsc.close(4002, "see you")
        await probe.finished()
    assert probe.error is None
    assert probe.info["first"] == "hi"
    # hypercorn does not pass the client's close code on: it reports 1006.
    expected = 1006 if server_kind == "hypercorn" else 4002
    assert probe.info["iteration"] == expected
    assert probe.info["receive"] == expected


async def test_async_with_closes_1000(serve: ServeFactory) -> None:
    probe = Probe()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        async with await AioServer.accept(asgi=(scope, receive, send)) as ws:
            await ws.send("inside")
        probe.info["connected"] = ws.connected

    async with serve(probe.track(handler)) as url:
        async with websockets.asyncio.client.connect(url) as wsc:
            assert await wsc.recv() == "inside"
            with pytest.raises(websockets.exceptions.ConnectionClosedOK):
                await wsc.recv()
            assert wsc.protocol.close_rcvd is not None
            assert wsc.protocol.close_rcvd.code == 1000
        await probe.finished()
    assert probe.error is None
    assert probe.info["connected"] is False


async def test_async_with_closes_1011_on_error(serve: ServeFactory) -> None:
    probe = Probe()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(LookupError):
            async with await AioServer.accept(asgi=(scope, receive, send)) as ws:
                await ws.send("inside")
                raise LookupError("boom")
        probe.info["code"] = ws.close_reason

    async with serve(probe.track(handler)) as url:
        async with AioClient.connect(url) as ws:
            assert await ws.receive() == "inside"
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive()
            assert info.value.reason == 1011
        await probe.finished()
    assert probe.error is None
    assert probe.info["code"] == 1011


# -- closing from the server ---------------------------------------------------------


@pytest.mark.parametrize("client", ["ours", "websockets"])
async def test_server_close_with_code_and_reason(serve: ServeFactory, client: str) -> None:
    probe = Probe()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await AioServer.accept(asgi=(scope, receive, send), close_timeout=10)
        await ws.send("closing")
        loop = asyncio.get_running_loop()
        start = loop.time()
        await ws.close(4001, "bye")
        probe.info["took"] = loop.time() - start
        start = loop.time()
        await ws.close(4001, "bye")  # idempotent
        await ws.close()
        probe.info["again"] = loop.time() - start
        probe.info["connected"] = ws.connected
        probe.info["closed"] = (ws.close_reason, ws.close_message)
        with pytest.raises(ConnectionClosed) as info:
            await ws.send("too late")
        probe.info["send"] = info.value.reason
        with pytest.raises(ConnectionClosed):
            await ws.receive()

    async with serve(probe.track(handler)) as url:
        if client == "ours":
            async with AioClient.connect(url) as ws:
                assert await ws.receive() == "closing"
                with pytest.raises(ConnectionClosed) as info:
                    await ws.receive()
                assert (info.value.reason, info.value.message) == (4001, "bye")
        else:
            async with websockets.asyncio.client.connect(url) as wsc:
                assert await wsc.recv() == "closing"
                with pytest.raises(websockets.exceptions.ConnectionClosed) as wsinfo:
                    await wsc.recv()
                assert wsinfo.value.rcvd is not None
                assert (wsinfo.value.rcvd.code, wsinfo.value.rcvd.reason) == (4001, "bye")
        await probe.finished()
    assert probe.error is None
    # The client answered at once: close() did not sit out its close_timeout.
    assert probe.info["took"] < 2
    assert probe.info["again"] < 0.5
    assert probe.info["connected"] is False
    assert probe.info["closed"] == (4001, "bye")
    assert probe.info["send"] == 4001


async def test_server_close_while_queue_is_full(serve: ServeFactory) -> None:
    """close() still completes when unread messages fill the queue."""
    probe = Probe()
    sent = asyncio.Event()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await AioServer.accept(asgi=(scope, receive, send), max_queue=1, close_timeout=10)
        await sent.wait()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await ws.close(1001, "going away")
        probe.info["took"] = loop.time() - start
        probe.info["code"] = ws.close_reason

    async with serve(probe.track(handler)) as url:
        async with AioClient.connect(url) as ws:
            for i in range(20):
                await ws.send(f"unread {i}")
            sent.set()
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive()
            assert info.value.reason == 1001
        await probe.finished()
    assert probe.error is None
    assert probe.info["took"] < 2
    assert probe.info["code"] == 1001


async def test_close_times_out_when_the_client_never_answers(serve: ServeFactory) -> None:
    """close_timeout bounds close() even when the client ignores the close frame."""
    probe = Probe()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await AioServer.accept(asgi=(scope, receive, send), close_timeout=0.2)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await ws.close(4003)
        probe.info["took"] = loop.time() - start
        probe.info["connected"] = ws.connected

    async with serve(probe.track(handler)) as url:
        reader, writer = await asyncio.open_connection(*url[5:-1].split(":"))
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        # Never answer the close frame; just wait for the handler.
        await probe.finished()
        writer.close()
    assert probe.error is None
    assert probe.info["took"] < 5
    assert probe.info["connected"] is False


# -- negotiation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "expected"), [(["b"], "b"), (["c", "b", "a"], "b"), (["c"], None)]
)
async def test_subprotocol_negotiation(
    serve: ServeFactory, offered: list[str], expected: str | None
) -> None:
    probe = Probe()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await AioServer.accept(asgi=(scope, receive, send), subprotocols=["a", "b"])
        probe.info["subprotocol"] = ws.subprotocol
        await ws.close()

    async with serve(probe.track(handler)) as url:
        async with websockets.asyncio.client.connect(
            url, subprotocols=[Subprotocol(p) for p in offered]
        ) as wsc:
            assert wsc.subprotocol == expected
            await wsc.wait_closed()
        await probe.finished()
    assert probe.error is None
    assert probe.info["subprotocol"] == expected


class LastOffered(AioServer):
    """Picks the client's least preferred subprotocol."""

    def choose_subprotocol(self, request: Any) -> str | None:
        offered = list(request.subprotocols)
        return offered[-1] if offered else None


async def test_subclass_choose_subprotocol(serve: ServeFactory) -> None:
    probe = Probe()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await LastOffered.accept(asgi=(scope, receive, send))
        probe.info["subprotocol"] = ws.subprotocol
        await ws.close()

    async with serve(probe.track(handler)) as url:
        async with AioClient.connect(url, subprotocols=["x", "y", "z"]) as ws:
            assert ws.subprotocol == "z"
        await probe.finished()
    assert probe.error is None
    assert probe.info["subprotocol"] == "z"


async def test_accept_headers(serve: ServeFactory) -> None:
    probe = Probe()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await AioServer.accept(
            asgi=(scope, receive, send), headers={"X-Server": "simple", "X-Other": "2"}
        )
        await ws.close()

    async with serve(probe.track(handler)) as url:
        async with websockets.asyncio.client.connect(url) as wsc:
            assert wsc.response is not None
            assert wsc.response.headers["X-Server"] == "simple"
            assert wsc.response.headers["X-Other"] == "2"
            await wsc.wait_closed()
        async with AioClient.connect(url) as ws:
            assert ("x-server", "simple") in [(k.lower(), v) for k, v in ws.response_headers]
        await probe.finished()
    assert probe.error is None


# -- clients that vanish -------------------------------------------------------------


@pytest.mark.parametrize("client", ["ours", "websockets"])
async def test_client_vanishing_while_server_sends(serve: ServeFactory, client: str) -> None:
    """The server's own exception types never leak out of send()."""
    probe = Probe()
    chunk = os.urandom(64 * 1024)

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await AioServer.accept(asgi=(scope, receive, send))
        sent = 0
        try:
            while sent < 100_000:
                await ws.send(chunk)
                sent += 1
        except ConnectionClosed as exc:
            probe.info["closed"] = exc.reason
        probe.info["sent"] = sent
        probe.info["connected"] = ws.connected
        await ws.close()  # a no-op that returns at once

    async with serve(probe.track(handler)) as url:
        if client == "ours":
            ws = await AioClient.connect(url, compression=False)
            assert await ws.receive() == chunk
            assert ws.transport is not None
            ws.transport.abort()
        else:
            wsc = await websockets.asyncio.client.connect(url, compression=None)
            assert await wsc.recv() == chunk
            wsc.transport.abort()
        await probe.finished(10)
    assert probe.error is None
    assert "closed" in probe.info
    assert probe.info["sent"] < 100_000
    assert probe.info["connected"] is False


async def test_client_vanishing_while_server_waits(serve: ServeFactory) -> None:
    probe = Probe()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await AioServer.accept(asgi=(scope, receive, send))
        try:
            async for _ in ws:
                pass
        except ConnectionClosed as exc:
            probe.info["closed"] = exc.reason

    async with serve(probe.track(handler)) as url:
        async with AioClient.connect(url) as steady:
            ws = await AioClient.connect(url)
            await ws.send("hi")
            assert ws.transport is not None
            ws.transport.abort()
            await probe.finished()
            # The server keeps serving the other connection.
            await steady.send("still here")
    assert probe.error is None
    # No close frame: uvicorn's sans-I/O implementations report 1005, the others 1006.
    assert probe.info["closed"] in (1005, 1006)


# -- errors and compatibility ----------------------------------------------------------


async def test_client_gone_before_accept(serve: ServeFactory) -> None:
    """A client that leaves before the app accepts: either accept() raises
    HandshakeError, or the connection it returns is closed; never a server error."""
    probe = Probe()
    started = asyncio.Event()
    dropped = asyncio.Event()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await dropped.wait()
        try:
            ws = await AioServer.accept(asgi=(scope, receive, send))
        except simple_websocket.HandshakeError as exc:
            probe.info["outcome"] = exc
            return
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        probe.info["outcome"] = info.value
        await ws.close()

    async with serve(probe.track(handler)) as url:
        host, port = url[5:-1].split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await started.wait()
        writer.transport.abort()
        dropped.set()
        await probe.finished()
    assert probe.error is None
    assert isinstance(probe.info["outcome"], (simple_websocket.HandshakeError, ConnectionClosed))


async def test_non_websocket_scope_is_refused() -> None:
    async def receive() -> MutableMapping[str, Any]:
        raise AssertionError("not called")

    async def send(event: MutableMapping[str, Any]) -> None:
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="websocket"):
        await AioServer.accept(asgi=({"type": "http"}, receive, send))


def test_websocket_asgi_import_path() -> None:
    from simple_websocket.asgi import WebSocketASGI

    assert WebSocketASGI is ASGIConnection
    assert issubclass(WebSocketASGI, simple_websocket.BaseConnection)


async def test_websocket_asgi_1_1_api(serve: ServeFactory) -> None:
    """simple-websocket 1.1's ``WebSocketASGI.accept(scope, receive, send, subprotocols)``."""
    from simple_websocket.asgi import WebSocketASGI

    probe = Probe()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await WebSocketASGI.accept(scope, receive, send, subprotocols=["chat"])
        probe.info["subprotocol"] = ws.subprotocol
        try:
            while True:
                data = await ws.receive()
                await ws.send(data)
        except ConnectionClosed:
            pass
        await ws.close()

    async with serve(probe.track(handler)) as url:
        async with AioClient.connect(url, subprotocols="chat") as ws:
            await ws.send("1.1")
            assert await ws.receive() == "1.1"
        await probe.finished()
    assert probe.error is None
    assert probe.info["subprotocol"] == "chat"


async def test_max_message_size_closes_with_1009(serve: ServeFactory) -> None:
    probe = Probe()

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        ws = await AioServer.accept(asgi=(scope, receive, send), max_message_size=1000)
        got = []
        try:
            async for message in ws:
                got.append(message)
        except ConnectionClosed as exc:
            probe.info["code"] = exc.reason
        probe.info["got"] = got

    async with serve(probe.track(handler)) as url:
        ws = await AioClient.connect(url)
        await ws.send("é" * 500)  # 1000 bytes: accepted
        await ws.send("é" * 501)  # 1002 bytes: too big
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive(timeout=5)
        await probe.finished()
    assert probe.error is None
    assert info.value.reason == 1009
    assert probe.info == {"code": 1009, "got": ["é" * 500]}
