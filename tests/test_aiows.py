"""The 1.1 async API (AioClient, AioServer) and serve(), against real peers."""

import asyncio
import contextlib
import gc
import logging
import pathlib
import select
import shutil
import socket
import ssl
import sys
import tempfile
import time
from http import HTTPStatus

import aiohttp
import pytest
import trustme
import websockets
from websockets.asyncio.client import unix_connect
from websockets.asyncio.server import serve as ws_serve
from websockets.asyncio.server import unix_serve
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

import simple_websocket
from simple_websocket import (
    AioClient,
    AioServer,
    Backoff,
    ConnectionClosed,
    HandshakeError,
    HandshakeRejected,
    OpenTimeout,
)

from .asyncio.rawpeer import wait_for_condition


async def ws_echo(conn):
    try:
        async for message in conn:
            await conn.send(message)
    except websockets.ConnectionClosed:
        pass


async def echo(ws):
    async for message in ws:
        await ws.send(message)


def ws_port(server) -> int:
    return server.sockets[0].getsockname()[1]


# -- client against the websockets server -----------------------------------------


async def test_client_echo_against_websockets():
    async with ws_serve(ws_echo, "127.0.0.1", 0, max_size=None) as server:
        url = f"ws://127.0.0.1:{ws_port(server)}/path?q=1"
        ws = await AioClient.connect(url)
        assert ws.connected
        for message in ["text", "ünïcode ✓", b"\x00\xff" * 10, "", b""]:
            await ws.send(message)
            assert await ws.receive(timeout=5) == message
        big = bytes(range(256)) * 8192  # 2 MiB
        await ws.send(big)
        assert await ws.receive(timeout=10) == big
        await ws.send(bytearray(b"ba"))
        assert await ws.receive(timeout=5) == b"ba"
        await ws.send(memoryview(b"mv"))
        assert await ws.receive(timeout=5) == b"mv"
        await ws.send(42)  # 1.1 sends anything that is not bytes as text
        assert await ws.receive(timeout=5) == "42"
        await ws.close()
        assert not ws.connected
        assert ws.close_reason == 1000
        await ws.close()  # idempotent
        with pytest.raises(ConnectionClosed):
            await ws.send("after close")
        with pytest.raises(ConnectionClosed):
            await ws.receive()


async def test_client_sends_headers_subprotocols_and_negotiates_deflate():
    seen = {}

    async def handler(conn):
        seen["path"] = conn.request.path
        seen["token"] = conn.request.headers.get("X-Token")
        seen["extensions"] = conn.request.headers.get("Sec-WebSocket-Extensions")
        await conn.send("x" * 10000)
        await conn.wait_closed()

    async with ws_serve(handler, "127.0.0.1", 0, subprotocols=["chat", "superchat"]) as server:
        url = f"ws://127.0.0.1:{ws_port(server)}/p?x=1"
        async with AioClient.connect(
            url, subprotocols=["superchat"], headers={"X-Token": "abc"}
        ) as ws:
            assert ws.subprotocol == "superchat"
            assert await ws.receive(timeout=5) == "x" * 10000
        async with AioClient.connect(
            url, subprotocols="chat", headers=[("X-Token", "def")], compression=False
        ) as ws:
            assert ws.subprotocol == "chat"
            assert await ws.receive(timeout=5) == "x" * 10000
    assert seen["path"] == "/p?x=1"
    assert seen["token"] == "def"
    assert seen["extensions"] is None


async def test_client_deflate_is_negotiated_by_default():
    async with ws_serve(ws_echo, "127.0.0.1", 0) as server:
        async with AioClient.connect(f"ws://127.0.0.1:{ws_port(server)}/") as ws:
            extensions = dict(ws.response_headers).get("Sec-WebSocket-Extensions", "")
            assert "permessage-deflate" in extensions
            payload = "compressible " * 5000
            await ws.send(payload)
            assert await ws.receive(timeout=5) == payload


async def test_server_close_code_and_reason_reach_client():
    async def closer(conn):
        await conn.close(4000, "custom reason")

    async with ws_serve(closer, "127.0.0.1", 0) as server:
        ws = await AioClient.connect(f"ws://127.0.0.1:{ws_port(server)}/")
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive(timeout=5)
        assert info.value.reason == 4000
        assert info.value.message == "custom reason"
        assert (ws.close_reason, ws.close_message) == (4000, "custom reason")
        # Iteration raises on an abnormal code.
        with pytest.raises(ConnectionClosed):
            async for _ in ws:
                pass


async def test_buffered_messages_are_delivered_before_connection_closed():
    async def burst_then_close(conn):
        for i in range(10):
            await conn.send(str(i))
        await conn.close(1000, "done")

    async with ws_serve(burst_then_close, "127.0.0.1", 0) as server:
        ws = await AioClient.connect(f"ws://127.0.0.1:{ws_port(server)}/")
        await ws.wait_closed()
        assert [await ws.receive() for _ in range(10)] == [str(i) for i in range(10)]
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        assert (info.value.reason, info.value.message) == (1000, "done")


async def test_async_with_closes_with_1011_when_block_raises():
    codes = asyncio.Queue()

    async def handler(conn):
        try:
            await conn.recv()
        except websockets.ConnectionClosed as exc:
            await codes.put(exc.rcvd.code if exc.rcvd else None)

    async with ws_serve(handler, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{ws_port(server)}/"
        with pytest.raises(KeyError):
            async with AioClient.connect(url):
                raise KeyError("boom")
        assert await asyncio.wait_for(codes.get(), 5) == 1011
        async with AioClient.connect(url):
            pass
        assert await asyncio.wait_for(codes.get(), 5) == 1000


# -- client errors ------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://h/", "localhost:8000", "ws://", "ws://h:x/"])
def test_invalid_url_is_value_error_at_once(url):
    with pytest.raises(ValueError, match="Invalid WebSocket URL"):
        AioClient.connect(url)


async def test_connection_refused_is_oserror():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        await AioClient.connect(f"ws://127.0.0.1:{port}/")


@pytest.mark.parametrize("status", [HTTPStatus.FORBIDDEN, HTTPStatus.SERVICE_UNAVAILABLE])
async def test_rejected_handshake_is_connection_error_with_status(status):
    def process_request(connection, request):
        response = connection.respond(status, "go away\n")
        response.headers["Retry-After"] = "3"
        return response

    async with ws_serve(ws_echo, "127.0.0.1", 0, process_request=process_request) as server:
        with pytest.raises(simple_websocket.ConnectionError) as info:
            await AioClient.connect(f"ws://127.0.0.1:{ws_port(server)}/")
    assert isinstance(info.value, HandshakeRejected)
    assert info.value.status_code == status
    assert info.value.header("Retry-After") == "3"


async def test_open_timeout_against_a_silent_server():
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        with pytest.raises(OpenTimeout) as info:
            await AioClient.connect(f"ws://127.0.0.1:{port}/", open_timeout=0.1)
        assert isinstance(info.value, simple_websocket.ConnectionError)
    finally:
        silent.close()


async def test_http_server_that_is_not_websocket():
    async def plain_http(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain_http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(HandshakeRejected) as info:
            await AioClient.connect(f"ws://127.0.0.1:{port}/")
        assert info.value.status_code == 200
    finally:
        server.close()


async def test_server_closing_during_handshake():
    async def slam(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(OSError):
            await AioClient.connect(f"ws://127.0.0.1:{port}/")
    finally:
        server.close()


# -- TLS ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls():
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


async def test_wss_verifies_certificates_by_default(tls):
    server_ctx, client_ctx = tls
    async with ws_serve(ws_echo, "127.0.0.1", 0, ssl=server_ctx) as server:
        url = f"wss://localhost:{ws_port(server)}/"
        with pytest.raises(ssl.SSLCertVerificationError):
            await AioClient.connect(url)
        async with AioClient.connect(url, ssl_context=client_ctx) as ws:
            await ws.send("secure")
            assert await ws.receive(timeout=5) == "secure"


async def test_serve_over_tls(tls):
    server_ctx, client_ctx = tls
    async with simple_websocket.serve(echo, "127.0.0.1", 0, ssl=server_ctx) as server:
        assert server.url.startswith("wss://")
        url = f"wss://localhost:{server.port}/"
        async with AioClient.connect(url, ssl_context=client_ctx) as ws:
            await ws.send(b"x" * 300000)
            assert await ws.receive(timeout=5) == b"x" * 300000


async def test_wss_to_a_plain_server_says_tls_failed_and_suggests_ws(tls):
    _, client_ctx = tls
    # Our server answers a ClientHello with a plain 400; websockets' closes.
    async with simple_websocket.serve(echo) as ours:
        with pytest.raises(ssl.SSLError) as info:
            await AioClient.connect(f"wss://127.0.0.1:{ours.port}/", ssl_context=client_ctx)
        assert "TLS handshake with 127.0.0.1:" in str(info.value)
        assert "plain text, not TLS" in str(info.value)
        assert "use ws:// instead of wss://" in str(info.value)
    async with ws_serve(ws_echo, "127.0.0.1", 0) as theirs:
        with pytest.raises(OSError) as info:
            await AioClient.connect(f"wss://127.0.0.1:{ws_port(theirs)}/", ssl_context=client_ctx)
        assert "TLS handshake" in str(info.value), repr(info.value)
        assert "use ws:// instead of wss://" in str(info.value)
    # A real TLS failure keeps its own error: no hint about ws://.
    async with simple_websocket.serve(echo, ssl=tls[0]) as server:
        with pytest.raises(ssl.SSLCertVerificationError) as cert_error:
            await AioClient.connect(f"wss://localhost:{server.port}/")
        assert "ws://" not in str(cert_error.value)


async def test_ws_to_a_tls_server_suggests_wss(tls):
    server_ctx, _ = tls
    async with simple_websocket.serve(echo, ssl=server_ctx) as server:
        with pytest.raises(ConnectionResetError) as info:
            await AioClient.connect(f"ws://127.0.0.1:{server.port}/")
        assert "closed the connection during the opening handshake" in str(info.value)
        assert "if it expects TLS, use wss://" in str(info.value)


async def test_plain_http_server_is_not_a_websocket_endpoint():
    async def page(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(page, "127.0.0.1", 0)
    async with server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/feed"
        with pytest.raises(HandshakeRejected) as info:
            await AioClient.connect(url)
    assert info.value.status_code == 200
    assert str(info.value) == (
        f"Connection error: 200: {url} is not a WebSocket endpoint: the server answered "
        "HTTP 200 OK instead of 101 Switching Protocols"
    )


async def test_refusal_names_the_url_and_the_reason():
    async with simple_websocket.serve(
        echo, process_request=lambda request: simple_websocket.HTTPResponse(401, "token expired\n")
    ) as server:
        url = server.url
        with pytest.raises(HandshakeRejected) as info:
            await AioClient.connect(url)
    assert str(info.value) == (
        f"Connection error: 401: the server refused the WebSocket handshake to {url} "
        "with HTTP 401 Unauthorized: token expired"
    )


# -- serve() --------------------------------------------------------------------------


async def test_serve_with_websockets_and_aiohttp_clients():
    async with simple_websocket.serve(echo) as server:
        async with websockets.connect(server.url) as conn:
            await conn.send("from websockets")
            assert await conn.recv() == "from websockets"
            await conn.send(b"\x00" * 200000)
            assert await conn.recv() == b"\x00" * 200000
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(server.url) as conn:
                await conn.send_str("from aiohttp")
                assert (await conn.receive()).data == "from aiohttp"
                await conn.send_bytes(b"b" * 70000)
                assert (await conn.receive()).data == b"b" * 70000


async def test_serve_handles_many_connections_at_once():
    async with simple_websocket.serve(echo) as server:

        async def one(i):
            async with AioClient.connect(server.url) as ws:
                for j in range(5):
                    await ws.send(f"{i}-{j}")
                    assert await ws.receive(timeout=10) == f"{i}-{j}"

        await asyncio.gather(*(one(i) for i in range(100)))


async def test_serve_answers_non_websocket_requests_with_http_errors():
    async with simple_websocket.serve(echo) as server:
        for request, status in [
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"426"),
            (b"NONSENSE\r\n\r\n", b"400"),
            (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 5000 + b"\r\n", b"431"),
        ]:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request)
            response = await asyncio.wait_for(reader.read(), 5)  # until EOF
            assert response.split(b" ")[1] == status, response
            writer.close()
        # The server still serves WebSocket clients.
        async with AioClient.connect(server.url) as ws:
            await ws.send("still alive")
            assert await ws.receive(timeout=5) == "still alive"


async def test_serve_drops_clients_that_never_finish_the_handshake():
    async with simple_websocket.serve(echo, open_timeout=0.05) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_serve_open_timeout_drops_only_unfinished_handshakes():
    """One deadline queue serves every handshake: a finished one ahead of a
    stalled one is skipped, not dropped, and the stalled one is still dropped."""
    async with simple_websocket.serve(echo, open_timeout=0.2) as server:
        async with AioClient.connect(server.url) as ws:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\n")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            # Both deadlines have passed: the open connection is still served.
            await ws.send("still open")
            assert await ws.receive(timeout=5) == "still open"


async def test_serve_does_not_keep_finished_connections_for_open_timeout():
    """The handshake deadlines hold weak references: a connection that ended is
    not kept in memory until its deadline; and once no handshake is under way,
    no timer is left armed (it would cost every turn of the event loop)."""
    async with simple_websocket.serve(echo, open_timeout=60) as server:
        stalled = []
        for _ in range(3):
            _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            stalled.append(writer)
            async with AioClient.connect(server.url) as ws:
                await ws.send("x")
                assert await ws.receive(timeout=5) == "x"
        await asyncio.wait_for(wait_for_condition(lambda: len(server.connections) == 0), 5)
        gc.collect()
        # The stalled handshakes are still watched; the finished ones only
        # through dead weak references.
        assert len(server._handshakes) == 6
        assert sum(ref() is not None for _, ref in server._handshakes) == 3
        assert server._handshake_timer is not None
        for writer in stalled:
            writer.close()
        await asyncio.wait_for(wait_for_condition(lambda: not server._handshakes), 5)
        assert server._handshake_timer is None


async def test_serve_shutdown_closes_connections_with_1001():
    started = asyncio.Event()

    async def wait_forever(ws):
        started.set()
        await ws.receive()

    server = await simple_websocket.serve(wait_forever)
    ws = await AioClient.connect(server.url)
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(server.close(), 5)
    with pytest.raises(ConnectionClosed):
        await ws.receive(timeout=5)
    assert ws.close_reason == 1001
    # Iteration ends quietly on 1001.
    assert [m async for m in ws] == []


async def test_serve_handler_exception_closes_with_1011(caplog):
    async def broken(ws):
        raise RuntimeError("bug in handler")

    async with simple_websocket.serve(broken) as server:
        ws = await AioClient.connect(server.url)
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive(timeout=5)
        assert info.value.reason == 1011
    assert "bug in handler" in caplog.text


async def test_serve_subprotocols_and_choose_subprotocol_override():
    class LastChoice(AioServer):
        def choose_subprotocol(self, request):
            assert request.subprotocols == ["a", "b"]
            return request.subprotocols[-1]

    async def report(ws):
        await ws.send(ws.subprotocol or "none")

    async with simple_websocket.serve(report, subprotocols=["a", "b"]) as server:
        async with AioClient.connect(server.url, subprotocols=["b", "a"]) as ws:
            assert ws.subprotocol == "b"
            assert await ws.receive(timeout=5) == "b"
        async with AioClient.connect(server.url, subprotocols=["c"]) as ws:
            assert ws.subprotocol is None
    async with simple_websocket.serve(report, server_class=LastChoice) as server:
        async with AioClient.connect(server.url, subprotocols=["a", "b"]) as ws:
            assert ws.subprotocol == "b"


async def test_serve_max_message_size_and_other_connections_keep_working():
    async with simple_websocket.serve(echo, max_message_size=1000) as server:
        async with AioClient.connect(server.url) as healthy:
            ws = await AioClient.connect(server.url)
            await ws.send("x" * 1001)
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive(timeout=5)
            assert info.value.reason == 1009
            await healthy.send("y" * 1000)
            assert await healthy.receive(timeout=5) == "y" * 1000


def test_serve_rejects_unknown_options():
    with pytest.raises(TypeError):
        simple_websocket.serve(echo, no_such_option=1)
    with pytest.raises(ValueError, match="backlog"):
        simple_websocket.serve(echo, backlog=0)


def _handshakes_completed(port: int, count: int, wait: float) -> int:
    """Start ``count`` TCP connections; return how many the kernel completed in ``wait`` s.

    Called while the event loop is blocked, so the server accepts none of them: only
    as many complete as its listen queue holds, the SYNs of the others are dropped.
    """
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
        waiting = set(socks)
        completed = 0
        deadline = time.monotonic() + wait
        while waiting and (left := deadline - time.monotonic()) > 0:
            _, writable, _ = select.select([], list(waiting), [], left)
            for sock in writable:
                waiting.discard(sock)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    completed += 1
        return completed
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("sock", [False, True], ids=["host-port", "sock"])
async def test_serve_backlog_sets_the_listen_queue(sock):
    """The kernel completes at most backlog + 1 handshakes the server has not accepted."""
    for backlog, expected in ((2, range(1, 4)), (100, range(12, 13))):
        options = {}
        if sock:
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            options["sock"] = listener
        async with simple_websocket.serve(echo, backlog=backlog, **options) as server:
            assert server.backlog == backlog
            # Blocks the loop on purpose: the server must not accept meanwhile.
            completed = _handshakes_completed(server.port, 12, wait=0.3 if backlog == 2 else 5)
            assert completed in expected, (backlog, completed)


# -- AioServer.accept(sock=...) -------------------------------------------------------


def read_request_head(sock: socket.socket) -> dict:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)  # byte by byte: nothing after the head is consumed
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    lines = data.decode().split("\r\n")[1:-2]
    return dict(line.split(": ", 1) for line in lines)


@pytest.mark.parametrize("blocking", [True, False])
async def test_accept_sock_with_headers(blocking):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    loop = asyncio.get_running_loop()

    async def server_side():
        client_sock, _ = await loop.run_in_executor(None, listener.accept)
        headers = await loop.run_in_executor(None, read_request_head, client_sock)
        client_sock.setblocking(blocking)
        ws = await AioServer.accept(sock=client_sock, headers=headers, subprotocols=["p"])
        assert ws.mode == "custom"
        async for message in ws:
            await ws.send(f"Received: {message}")

    task = asyncio.create_task(server_side())
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/", subprotocols=["p"]) as conn:
            assert conn.subprotocol == "p"
            await conn.send("hi")
            assert await conn.recv() == "Received: hi"
        await asyncio.wait_for(task, 5)
    finally:
        listener.close()


async def test_accept_sock_bad_handshake_gets_400_and_clear_error():
    a, b = socket.socketpair()
    try:
        with pytest.raises(HandshakeError, match="Sec-WebSocket-Key") as info:
            await AioServer.accept(
                sock=a,
                headers={
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Sec-WebSocket-Version": "13",
                },
            )
        assert info.value.status_code == 400
        b.settimeout(5)

        def read_all() -> bytes:
            response = b""
            while chunk := b.recv(4096):
                response += chunk
            return response

        response = await asyncio.get_running_loop().run_in_executor(None, read_all)
        assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"Sec-WebSocket-Key" in response
    finally:
        b.close()


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"aiohttp": object(), "sock": object()}, {"asgi": (1, 2, 3), "sock": object()}],
)
async def test_accept_needs_exactly_one_source(kwargs):
    with pytest.raises(ValueError, match="exactly one"):
        await AioServer.accept(**kwargs)


async def test_serve_exposes_request_mode_and_headers():
    seen = {}

    async def report(ws):
        seen.update(mode=ws.mode, token=ws.headers.get("X-Token"), target=ws.request.target)

    async with simple_websocket.serve(report) as server:
        async with AioClient.connect(server.url + "room?x=1", headers={"X-Token": "t"}) as ws:
            await ws.wait_closed()
    assert seen == {"mode": "serve", "token": "t", "target": "/room?x=1"}


async def test_handler_that_loses_its_client_is_not_an_error(caplog):
    gone = asyncio.Event()

    async def talker(ws):
        await ws.receive()  # raises ConnectionClosed when the client vanishes
        gone.set()

    async with simple_websocket.serve(talker) as server:
        ws = await AioClient.connect(server.url)
        ws.transport.abort()
        await ws.wait_closed()
        # Wait for the handler to finish by closing the server (it waits for handlers).
    assert "connection handler failed" not in caplog.text
    assert not gone.is_set()


async def test_serve_process_request_can_refuse_or_accept():
    seen = []

    async def check(request):
        seen.append(request.target)
        if request.header("Authorization") != "Bearer ok":
            return simple_websocket.HTTPResponse(401, "bad token\n", [("Retry-After", "3")])
        return None

    async with simple_websocket.serve(echo, process_request=check) as server:
        with pytest.raises(HandshakeRejected) as info:
            await AioClient.connect(server.url + "a")
        assert info.value.status_code == 401
        assert info.value.header("Retry-After") == "3"
        assert info.value.body == b"bad token\n"
        async with AioClient.connect(
            server.url + "b", headers={"Authorization": "Bearer ok"}
        ) as ws:
            await ws.send("in")
            assert await ws.receive(timeout=5) == "in"
    assert seen == ["/a", "/b"]


async def test_serve_process_request_keeps_early_frames_and_survives_errors(caplog):
    import base64
    import os
    import struct

    release = asyncio.Event()

    async def slow_check(request):
        if request.target == "/boom":
            raise RuntimeError("hook bug")
        await release.wait()

    async with simple_websocket.serve(echo, process_request=slow_check) as server:
        with pytest.raises(HandshakeRejected) as info:
            await AioClient.connect(server.url + "boom")
        assert info.value.status_code == 500
        assert "hook bug" in caplog.text
        # A client that sends its first frame right behind the request, while the
        # hook is still running: the frame must not be lost.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        mask = os.urandom(4)
        payload = b"early"
        frame = struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask
        frame += bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        writer.write(
            (
                "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            + frame
        )
        await writer.drain()
        release.set()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        echoed = await asyncio.wait_for(reader.readexactly(2 + len(payload)), 5)
        assert echoed == bytes([0x81, len(payload)]) + payload
        writer.close()


async def test_is_server_says_which_side_as_in_1_1():
    sides = {}

    async def handler(ws):
        sides["server"] = (type(ws), ws.is_server)
        await ws.close()

    async with simple_websocket.serve(handler, "127.0.0.1", 0) as server:
        client = await AioClient.connect(f"ws://127.0.0.1:{server.port}/")
        assert client.is_server is False
        with contextlib.suppress(ConnectionClosed):
            await client.receive(5)
        await client.close()
    assert sides["server"] == (AioServer, True)


async def test_two_keys_get_400_not_101():
    async with simple_websocket.serve(lambda ws: ws.close(), "127.0.0.1", 0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Key: {key}\r\n".encode()
            + b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        status = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
    assert status.startswith(b"HTTP/1.1 400 "), status


# -- options users of other libraries expect -------------------------------------------


async def test_user_agent_is_sent_by_default_and_can_be_changed_or_dropped():
    seen = []

    async def record(conn):
        seen.append(conn.request.headers.get_all("User-Agent"))
        await conn.close()

    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    async with ws_serve(record, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{ws_port(server)}/"
        for options in (
            {},
            {"user_agent": "market-bot/1.2"},
            {"user_agent": None},
            {"headers": {"user-agent": "from-headers/1"}},
            {"reconnect": True},
        ):
            ws = await AioClient.connect(url, **options)
            await ws.close()
    assert seen == [
        [f"simple-websocket/{simple_websocket.__version__} Python/{python}"],
        ["market-bot/1.2"],
        [],
        ["from-headers/1"],
        [f"simple-websocket/{simple_websocket.__version__} Python/{python}"],
    ]
    with pytest.raises(ValueError, match="User-Agent is given twice"):
        AioClient.connect(url, user_agent="a", headers={"User-Agent": "b"})
    with pytest.raises(ValueError, match="user_agent must not contain control characters"):
        AioClient.connect(url, user_agent="a\r\nX: y")


async def test_origin_is_sent_and_checked_by_our_server():
    async with simple_websocket.serve(echo, origins=["https://app.example"]) as server:
        async with AioClient.connect(server.url, origin="https://app.example") as ws:
            assert ws.extra_headers == []
            await ws.send("allowed")
            assert await ws.receive(timeout=5) == "allowed"
        with pytest.raises(HandshakeRejected) as info:
            await AioClient.connect(server.url, origin="https://evil.example")
        assert info.value.status_code == 403
    with pytest.raises(ValueError, match="Origin is given twice"):
        AioClient.connect(server.url, origin="https://a", headers=[("Origin", "https://b")])
    with pytest.raises(TypeError, match="origin must be a str or None"):
        AioClient.connect(server.url, origin=b"https://a")


@pytest.fixture
def socket_path():
    # A short directory: a Unix socket path may not exceed about 100 bytes.
    directory = tempfile.mkdtemp(prefix="sw-", dir="/tmp")
    try:
        yield pathlib.Path(directory) / "ws.sock"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_unix_socket_client_and_server(socket_path):
    seen = []

    async def handler(ws):
        seen.append((ws.request.target, ws.request.host))
        await echo(ws)

    async with simple_websocket.serve(handler, unix_socket=socket_path) as server:
        assert server.unix_socket == str(socket_path)
        assert server.url == "ws://localhost/"
        assert server.port == 0
        async with AioClient.connect("ws://localhost/feed", unix_socket=socket_path) as ws:
            await ws.send("over a unix socket")
            assert await ws.receive(timeout=5) == "over a unix socket"
        client = await AioClient.connect(
            server.url, unix_socket=str(socket_path), reconnect=Backoff(initial=0.01)
        )
        await client.send("reconnecting too")
        assert await client.receive(timeout=5) == "reconnecting too"
        await client.close()
    assert seen == [("/feed", "localhost"), ("/", "localhost")]
    # The server removed its socket file when it closed.
    assert not socket_path.exists()
    with pytest.raises(ValueError, match="a proxy cannot be used with unix_socket"):
        AioClient.connect("ws://localhost/", unix_socket=socket_path, proxy="http://p:3128")
    with pytest.raises(ValueError, match="unix_socket= replaces host, port and sock="):
        simple_websocket.serve(echo, port=8000, unix_socket=socket_path)


async def test_unix_socket_against_websockets_both_ways(socket_path):
    async with unix_serve(ws_echo, str(socket_path)):
        async with AioClient.connect("ws://localhost/", unix_socket=socket_path) as ws:
            await ws.send("to websockets")
            assert await ws.receive(timeout=5) == "to websockets"
    async with simple_websocket.serve(echo, unix_socket=socket_path):
        async with unix_connect(str(socket_path), "ws://localhost/") as conn:
            await conn.send("from websockets")
            assert await conn.recv() == "from websockets"


async def test_logger_option_logs_where_the_application_says(caplog):
    app = logging.getLogger("app.ws")

    async def broken(ws):
        raise RuntimeError("bug in handler")

    with caplog.at_level(logging.INFO):
        async with simple_websocket.serve(broken, logger=app) as server:
            ws = await AioClient.connect(server.url)
            with pytest.raises(ConnectionClosed):
                await ws.receive(timeout=5)
        # A keepalive timeout is logged by the connection that noticed it.
        async with simple_websocket.serve(echo) as plain:
            ws = await AioClient.connect(
                plain.url, ping_interval=0.05, ping_timeout=0.05, logger="app.ws.client"
            )
            plain_transport = next(iter(plain.connections)).transport
            plain_transport.pause_reading()  # the server stops answering pings
            with pytest.raises(ConnectionClosed):
                await ws.receive(timeout=5)
            plain_transport.resume_reading()  # so that it sees the client leave
        # The reconnecting client says why it gives up on the application's logger.
        refused = await asyncio.start_server(_refuse_403, "127.0.0.1", 0)
        async with refused:
            url = f"ws://127.0.0.1:{refused.sockets[0].getsockname()[1]}/"
            client = AioClient.connect(url, reconnect=True, logger=app)
            with pytest.raises(HandshakeRejected):
                await client
    by_logger = {}
    for record in caplog.records:
        by_logger.setdefault(record.name, []).append(record.getMessage())
    assert "connection handler failed" in by_logger["app.ws"]
    assert any(m.startswith("giving up reconnecting: not retryable") for m in by_logger["app.ws"])
    assert any("keepalive ping timeout" in m for m in by_logger["app.ws.client"])
    assert "simple_websocket" not in by_logger, by_logger.get("simple_websocket")


async def _refuse_403(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


# -- permessage-deflate settings, against websockets both ways ---------------------------


async def test_deflate_settings_offered_to_websockets():
    async with ws_serve(ws_echo, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{ws_port(server)}/"
        settings = simple_websocket.DeflateOptions(
            server_max_window_bits=10,
            client_max_window_bits=11,
            server_no_context_takeover=True,
            client_no_context_takeover=True,
        )
        async with AioClient.connect(url, compression=settings) as ws:
            agreed = dict(ws.response_headers)["Sec-WebSocket-Extensions"]
            assert "server_no_context_takeover" in agreed
            assert "server_max_window_bits=10" in agreed
            for i in range(5):
                message = f"tick {i} " * 500
                await ws.send(message)
                assert await ws.receive(timeout=5) == message
        async with AioClient.connect(url, compression={"client_max_window_bits": 9}) as ws:
            await ws.send(b"\x00" * 100_000)
            assert await ws.receive(timeout=5) == b"\x00" * 100_000


async def test_deflate_settings_applied_by_our_server_to_websockets_clients():
    settings = {"server_max_window_bits": 11, "client_no_context_takeover": True}
    async with simple_websocket.serve(echo, compression=settings) as server:
        async with websockets.connect(server.url) as conn:
            agreed = conn.response.headers["Sec-WebSocket-Extensions"]
            assert "server_max_window_bits=11" in agreed
            assert "client_no_context_takeover" in agreed
            for i in range(5):
                message = f"quote {i} " * 500
                await conn.send(message)
                assert await conn.recv() == message
        # A client that cannot limit its window is still accepted, with compression.
        async with websockets.connect(
            server.url,
            compression=None,
            extensions=[ClientPerMessageDeflateFactory(client_max_window_bits=None)],
        ) as conn:
            assert "permessage-deflate" in conn.response.headers["Sec-WebSocket-Extensions"]
            await conn.send("x" * 10_000)
            assert await conn.recv() == "x" * 10_000
    async with simple_websocket.serve(echo, compression=False) as server:
        async with websockets.connect(server.url) as conn:
            assert "Sec-WebSocket-Extensions" not in conn.response.headers
