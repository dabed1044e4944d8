"""Our sync ``Client`` against real servers: ``websockets``' and our asyncio ``serve()``.

Every server listens on 127.0.0.1 (port 0) in a thread of this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
import websockets
import websockets.sync.server
from websockets.sync.server import ServerConnection as WSServerConnection

import simple_websocket
from simple_websocket import (
    ConnectionClosed,
    HandshakeError,
    HandshakeRejected,
    OpenTimeout,
)
from simple_websocket.ws import Client

pytestmark = pytest.mark.timeout(20)


# -- servers ---------------------------------------------------------------------------


@contextlib.contextmanager
def ws_server(
    handler: Callable[[WSServerConnection], Any], **options: Any
) -> Iterator[websockets.sync.server.Server]:
    """Run a ``websockets`` sync server in a thread."""
    server = websockets.sync.server.serve(handler, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(5)


def port_of(server: websockets.sync.server.Server) -> int:
    return int(server.socket.getsockname()[1])


def echo(ws: WSServerConnection) -> None:
    for message in ws:
        ws.send(message)


@contextlib.contextmanager
def async_server(handler: Any, **options: Any) -> Iterator[Any]:
    """Run ``simple_websocket.serve(handler)`` in an event loop in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> Any:
        return await simple_websocket.serve(handler, "127.0.0.1", 0, **options)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


# -- against websockets --------------------------------------------------------------


def test_echo_text_binary_and_large_messages() -> None:
    with ws_server(echo) as server:
        ws = Client.connect(f"ws://127.0.0.1:{port_of(server)}/")
        ws.send("hello")
        assert ws.receive(timeout=5) == "hello"
        ws.send(b"\x00" * 10)
        assert ws.receive(timeout=5) == b"\x00" * 10
        big = bytes(range(256)) * 4096  # 1 MiB
        ws.send(big)
        assert ws.receive(timeout=5) == big
        ws.close()
        assert ws.close_reason == 1000
        assert not ws.connected


def test_subprotocol_headers_and_path_reach_the_server() -> None:
    seen: dict[str, Any] = {}

    def handler(ws: WSServerConnection) -> None:
        assert ws.request is not None
        seen["token"] = ws.request.headers.get("X-Token")
        seen["path"] = ws.request.path
        ws.send(ws.subprotocol or "")
        ws.recv()

    with ws_server(handler, subprotocols=["chat"]) as server:
        port = port_of(server)
        url = f"ws://127.0.0.1:{port}/room?id=1"
        ws = Client.connect(url, subprotocols=["other", "chat"], headers={"X-Token": "t0k"})
        assert ws.subprotocol == "chat"
        assert ws.receive(timeout=5) == "chat"
        ws.close()
    assert seen == {"token": "t0k", "path": "/room?id=1"}
    assert ws.path == "/room?id=1"
    assert (ws.host, ws.port, ws.is_secure) == ("127.0.0.1", port, False)


def test_headers_as_pairs_and_one_subprotocol_string() -> None:
    seen: dict[str, Any] = {}

    def handler(ws: WSServerConnection) -> None:
        assert ws.request is not None
        seen["a"] = ws.request.headers.get_all("X-A")
        ws.recv()

    with ws_server(handler, subprotocols=["only"]) as server:
        ws = Client.connect(
            f"ws://127.0.0.1:{port_of(server)}/", "only", [("X-A", "1"), ("X-A", "2")]
        )
        assert ws.subprotocol == "only"
        ws.close()
    assert seen["a"] == ["1", "2"]


def test_compression_is_offered_and_can_be_disabled() -> None:
    with ws_server(echo) as server:
        url = f"ws://127.0.0.1:{port_of(server)}/"
        ws = Client.connect(url)
        names = [name.lower() for name, _ in ws.response_headers]
        assert "sec-websocket-extensions" in names
        ws.send("z" * 100_000)
        assert ws.receive(timeout=5) == "z" * 100_000
        ws.close()
        ws = Client.connect(url, compression=False)
        names = [name.lower() for name, _ in ws.response_headers]
        assert "sec-websocket-extensions" not in names
        ws.close()


def test_server_close_code_and_reason_reach_the_client() -> None:
    def handler(ws: WSServerConnection) -> None:
        ws.send("before")
        ws.close(4001, "bye now")

    with ws_server(handler) as server:
        ws = Client.connect(f"ws://127.0.0.1:{port_of(server)}/")
        assert ws.receive(timeout=5) == "before"
        with pytest.raises(ConnectionClosed) as info:
            ws.receive(timeout=5)
        assert (info.value.reason, info.value.message) == (4001, "bye now")
        assert (ws.close_reason, ws.close_message) == (4001, "bye now")
        ws.close()  # a no-op now


def test_iteration_and_with_block() -> None:
    closes: list[Any] = []

    def handler(ws: WSServerConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            for message in ws:
                ws.send(message)
        closes.append(ws.close_code)

    with ws_server(handler) as server:
        url = f"ws://127.0.0.1:{port_of(server)}/"
        with Client.connect(url) as ws:
            ws.send("one")
            assert ws.receive(timeout=5) == "one"
        with pytest.raises(RuntimeError), Client.connect(url) as ws2:
            raise RuntimeError("boom")
        assert ws2.close_reason == 1011
    assert closes == [1000, 1011]


# -- errors --------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "ws://", "ws://h:99999/", "ws://h/#frag"])
def test_bad_urls_raise_value_error(url: str) -> None:
    with pytest.raises(ValueError):
        Client.connect(url)


def test_refused_connection_raises_os_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        Client.connect(f"ws://127.0.0.1:{port}/")


def test_rejected_handshake_raises_handshake_rejected() -> None:
    def reject(conn: Any, request: Any) -> Any:
        return conn.respond(403, "go away\n")

    with ws_server(echo, process_request=reject) as server:
        with pytest.raises(HandshakeRejected) as info:
            Client.connect(f"ws://127.0.0.1:{port_of(server)}/")
    assert info.value.status_code == 403
    assert isinstance(info.value, simple_websocket.ConnectionError)


def test_open_timeout() -> None:
    # A server that accepts TCP (through the backlog) and never answers.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with pytest.raises(OpenTimeout) as info:
            Client.connect(f"ws://127.0.0.1:{port}/", open_timeout=0.2)
    assert isinstance(info.value, TimeoutError)


def test_invalid_101_raises_handshake_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n"
                )
                conn.recv(1)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        with pytest.raises(HandshakeError, match="Sec-WebSocket-Accept"):
            Client.connect(f"ws://127.0.0.1:{port}/")
        thread.join(5)


# -- TLS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_wss_verifies_certificates_by_default(ca: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    with ws_server(echo, ssl=server_context) as server:
        url = f"wss://127.0.0.1:{port_of(server)}/"
        with pytest.raises(ssl.SSLCertVerificationError):
            Client.connect(url)
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        ws = Client.connect(url, ssl_context=client_context, ping_interval=0.05)
        assert ws.is_secure
        for n in range(20):
            ws.send(f"tls {n}")
            assert ws.receive(timeout=5) == f"tls {n}"
        ws.close()
        assert ws.close_reason == 1000


def test_wss_to_a_plain_server_says_tls_failed_and_suggests_ws() -> None:
    async def handler(ws: Any) -> None:
        await ws.close()

    with async_server(handler) as ours:
        with pytest.raises(ssl.SSLError) as info:
            Client.connect(f"wss://127.0.0.1:{ours.port}/")
        assert "plain text, not TLS" in str(info.value)
        assert "use ws:// instead of wss://" in str(info.value)
    with ws_server(echo) as theirs:
        with pytest.raises(OSError) as error:
            Client.connect(f"wss://127.0.0.1:{port_of(theirs)}/")
        assert "use ws:// instead of wss://" in str(error.value), repr(error.value)


def test_ws_to_a_tls_server_suggests_wss(ca: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    with ws_server(echo, ssl=server_context) as server:
        with pytest.raises(OSError) as info:
            Client.connect(f"ws://127.0.0.1:{port_of(server)}/")
        assert "use wss://" in str(info.value), repr(info.value)


def test_plain_http_answer_is_not_a_websocket_endpoint() -> None:
    async def handler(ws: Any) -> None:
        await ws.close()

    def page(request: Any) -> simple_websocket.HTTPResponse:
        return simple_websocket.HTTPResponse(200, "<p>hi</p>", [("Content-Type", "text/html")])

    with async_server(handler, process_request=page) as server:
        url = f"ws://127.0.0.1:{server.port}/page"
        with pytest.raises(HandshakeRejected) as info:
            Client.connect(url)
    assert f"{url} is not a WebSocket endpoint" in str(info.value)


def test_user_agent_origin_and_logger() -> None:
    seen: list[tuple[list[str], str | None]] = []

    def record(ws: WSServerConnection) -> None:
        assert ws.request is not None
        seen.append((ws.request.headers.get_all("User-Agent"), ws.request.headers.get("Origin")))
        ws.close()

    with ws_server(record) as server:
        url = f"ws://127.0.0.1:{port_of(server)}/"
        Client.connect(url, logger="app.sync").close()
        Client.connect(url, user_agent="sync-bot/2", origin="https://app.example").close()
        Client.connect(url, user_agent=None).close()
    default = f"simple-websocket/{simple_websocket.__version__} Python/{sys.version_info[0]}."
    assert seen[0][0][0].startswith(default) and seen[0][1] is None
    assert seen[1:] == [(["sync-bot/2"], "https://app.example"), ([], None)]
    with pytest.raises(ValueError, match="Origin is given twice"):
        Client.connect(url, origin="https://a", headers={"Origin": "https://b"})


def test_unix_socket() -> None:
    directory = tempfile.mkdtemp(prefix="sw-", dir="/tmp")
    path = os.path.join(directory, "ws.sock")

    async def handler(ws: Any) -> None:
        async for message in ws:
            await ws.send(f"{ws.request.target} {message}")

    try:
        with async_server(handler, unix_socket=path):
            with Client.connect("ws://localhost/sync", unix_socket=path) as ws:
                ws.send("hello")
                assert ws.receive(timeout=5) == "/sync hello"
        with pytest.raises(ValueError, match="a proxy cannot be used with unix_socket"):
            Client.connect("ws://localhost/", unix_socket=path, proxy="http://p:1")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- against our asyncio server --------------------------------------------------------


def test_against_our_async_server() -> None:
    async def handler(ws: Any) -> None:
        async for message in ws:
            if message == "close":
                await ws.close(4002, "asked")
                return
            await ws.send(message)

    with async_server(handler, subprotocols=["v1"]) as server:
        ws = Client.connect(f"ws://127.0.0.1:{server.port}/", subprotocols=["v1"])
        assert ws.subprotocol == "v1"
        ws.send("x" * 70_000)
        assert ws.receive(timeout=5) == "x" * 70_000
        ws.send(b"bin")
        assert ws.receive(timeout=5) == b"bin"
        ws.send("close")
        with pytest.raises(ConnectionClosed) as info:
            ws.receive(timeout=5)
        assert (info.value.reason, info.value.message) == (4002, "asked")
        assert ws.wait_closed(5)


def test_iteration_ends_quietly_when_our_async_server_handler_returns() -> None:
    async def handler(ws: Any) -> None:
        for n in range(3):
            await ws.send(str(n))

    with async_server(handler) as server:
        ws = Client.connect(f"ws://127.0.0.1:{server.port}/")
        assert list(ws) == ["0", "1", "2"]
        assert ws.close_reason == 1000


def test_tiny_receive_bytes_reassembles_frames() -> None:
    with ws_server(echo) as server:
        with Client.connect(f"ws://127.0.0.1:{port_of(server)}/", receive_bytes=7) as ws:
            assert ws.receive_bytes == 7
            for size in (0, 1, 125, 126, 65535, 65536, 200_000):
                ws.send("a" * size)
                assert ws.receive(timeout=5) == "a" * size


def test_is_server_says_which_side_as_in_1_1() -> None:
    sides: list[bool] = []

    async def handler(ws: Any) -> None:
        await ws.close()

    with async_server(handler) as server:
        ws = Client.connect(f"ws://127.0.0.1:{server.port}/")
        sides.append(ws.is_server)
        ws.close()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[Any] = []

    def accept() -> None:
        sock, _ = listener.accept()
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        lines = head.decode().split("\r\n")[1:]
        headers = [tuple(line.split(": ", 1)) for line in lines if line]
        accepted.append(simple_websocket.Server.accept(sock=sock, headers=headers))

    thread = threading.Thread(target=accept)
    thread.start()
    client = Client.connect(f"ws://127.0.0.1:{port}/")
    thread.join(5)
    sides.append(accepted[0].is_server)
    client.close()
    accepted[0].close()
    listener.close()
    assert sides == [False, True]
