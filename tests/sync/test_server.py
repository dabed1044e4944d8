"""Our sync ``Server`` in a plain WSGI app under Werkzeug's threaded server, and the
``sock=`` form for a custom server.

Clients: ``websockets``' sync client, our sync ``Client`` and a raw socket that
writes handcrafted bytes and checks every byte it gets back.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websockets.sync.client
from werkzeug.serving import make_server

from simple_websocket import ConnectionClosed, HandshakeError
from simple_websocket.sansio.handshake import HandshakeRequest, parse_request_head
from simple_websocket.ws import Client, Server
from tests.sync import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    SyncPeer,
    close_payload,
    encode_frame,
    raw_connect,
    read_head,
)

pytestmark = pytest.mark.timeout(20)

TIMEOUT = 5.0


class App:
    """A plain WSGI app: accept, run ``handler(ws)``, close, return an empty body.

    What the handler returned (or raised), and a failed accept, go to ``results``.
    """

    def __init__(
        self,
        handler: Callable[[Server], Any],
        server_class: type[Server] = Server,
        **options: Any,
    ) -> None:
        self.handler = handler
        self.server_class = server_class
        self.options = options
        self.results: queue.Queue[Any] = queue.Queue()
        self.connections: list[Server] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        try:
            ws = self.server_class.accept(environ, **self.options)
        except HandshakeError as exc:
            self.results.put(exc)
            start_response("400 Bad Request", [])
            return []
        self.connections.append(ws)
        try:
            self.results.put(self.handler(ws))
        except BaseException as exc:
            self.results.put(exc)
        finally:
            ws.close()
        start_response("200 OK", [])
        return []

    def result(self) -> Any:
        return self.results.get(timeout=TIMEOUT)


@contextlib.contextmanager
def werkzeug_server(app: Any) -> Iterator[int]:
    """Serve ``app`` with Werkzeug's threaded dev server in a thread; yield the port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def echo(ws: Server) -> dict[str, Any]:
    info = {
        "mode": ws.mode,
        "target": ws.request.target if ws.request else None,
        "subprotocol": ws.subprotocol,
    }
    try:
        for message in ws:
            ws.send(message)
    except ConnectionClosed as exc:
        info["closed"] = exc.reason
    info["close_reason"] = ws.close_reason
    return info


# -- real clients ----------------------------------------------------------------------


def test_echo_with_websockets_client(caplog: pytest.LogCaptureFixture) -> None:
    app = App(echo)
    caplog.set_level(logging.INFO, logger="werkzeug")
    with werkzeug_server(app) as port:
        with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/chat?x=1") as client:
            client.send("hello")
            assert client.recv(TIMEOUT) == "hello"
            client.send(b"\x01\x02")
            assert client.recv(TIMEOUT) == b"\x01\x02"
            big = "é" * 200_000
            client.send(big)
            assert client.recv(TIMEOUT) == big
        info = app.result()
    assert info == {
        "mode": "werkzeug",
        "target": "/chat?x=1",
        "subprotocol": None,
        "close_reason": 1000,
    }
    # Werkzeug's response after the WebSocket failed quietly (a dropped client).
    assert "Error on request" not in caplog.text


def test_echo_with_our_client_and_subprotocols() -> None:
    app = App(echo, subprotocols=["v2", "v1"])
    with werkzeug_server(app) as port:
        with Client.connect(f"ws://127.0.0.1:{port}/", subprotocols=["v1", "v2"]) as ws:
            assert ws.subprotocol == "v1"
            for n in range(50):
                ws.send(f"m{n}")
            assert [ws.receive(TIMEOUT) for _ in range(50)] == [f"m{n}" for n in range(50)]
        info = app.result()
    assert info["subprotocol"] == "v1"
    assert info["close_reason"] == 1000


def test_choose_subprotocol_can_be_overridden() -> None:
    class PreferLast(Server):
        def choose_subprotocol(self, request: HandshakeRequest) -> str | None:
            return request.subprotocols[-1] if request.subprotocols else None

    app = App(echo, server_class=PreferLast)
    with werkzeug_server(app) as port:
        with Client.connect(f"ws://127.0.0.1:{port}/", subprotocols=["a", "b", "c"]) as ws:
            assert ws.subprotocol == "c"
        assert app.result()["subprotocol"] == "c"


def test_server_close_reaches_the_client() -> None:
    def handler(ws: Server) -> int:
        ws.send("bye soon")
        ws.close(4003, "server says bye")
        return ws.close_reason

    app = App(handler)
    with werkzeug_server(app) as port:
        ws = Client.connect(f"ws://127.0.0.1:{port}/")
        assert ws.receive(TIMEOUT) == "bye soon"
        with pytest.raises(ConnectionClosed) as info:
            ws.receive(TIMEOUT)
        assert (info.value.reason, info.value.message) == (4003, "server says bye")
        assert ws.wait_closed(TIMEOUT)
        # The server got the answer to its close frame.
        assert app.result() == 4003


def test_server_keepalive_pings() -> None:
    app = App(echo, ping_interval=0.05)
    with werkzeug_server(app) as port:
        peer, _ = raw_connect(port)
        frame = peer.recv_frame()
        assert frame.opcode == PING
        peer.send(PONG, frame.payload)
        assert peer.recv_frame().opcode == PING
        peer.send_close(1000)
        peer.expect_close()
        assert app.result()["close_reason"] == 1000


# -- byte level --------------------------------------------------------------------------


def test_close_handshake_byte_level() -> None:
    app = App(echo)
    with werkzeug_server(app) as port:
        peer, head = raw_connect(port)
        assert "Sec-WebSocket-Extensions" not in head
        peer.send_text("ping?")
        frame = peer.recv_frame()
        assert (frame.opcode, frame.payload, frame.masked) == (TEXT, b"ping?", False)
        peer.send_close(1001, "going")
        answer = peer.expect_close()
        assert not answer.masked
        assert (answer.close_code, answer.close_reason) == (1001, "going")
        # The server closes TCP first, and nothing follows the close frame (no
        # HTTP response from Werkzeug).
        peer.expect_eof()
        info = app.result()
    assert info["close_reason"] == 1001


def test_unmasked_client_frame_fails_with_1002() -> None:
    app = App(echo)
    with werkzeug_server(app) as port:
        peer, _ = raw_connect(port)
        peer.write(encode_frame(TEXT, b"not masked"))
        frame = peer.expect_close()
        assert frame.close_code == 1002
        peer.expect_eof()
        info = app.result()
    assert info["closed"] == 1002
    assert info["close_reason"] == 1002


def test_message_too_big_fails_with_1009() -> None:
    app = App(echo, max_message_size=100)
    with werkzeug_server(app) as port:
        peer, _ = raw_connect(port)
        peer.send(TEXT, b"x" * 101)
        assert peer.expect_close().close_code == 1009
        peer.expect_eof()
        assert app.result()["closed"] == 1009


def test_frames_sent_right_behind_the_request_are_not_lost() -> None:
    app = App(echo)
    with werkzeug_server(app) as port:
        glued = SyncPeer(socket.socket(), "client").frame(TEXT, b"early")
        peer, _ = raw_connect(port, after_request=glued)
        frame = peer.recv_frame()
        assert (frame.opcode, frame.payload) == (TEXT, b"early")
        peer.send(CLOSE, close_payload(1000))
        peer.expect_close()
        assert app.result()["close_reason"] == 1000


def test_bad_handshake_is_answered_with_400_and_raises_handshake_error() -> None:
    app = App(echo)
    with werkzeug_server(app) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: not-a-key\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head, body = read_head(sock)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        sock.close()
        error = app.result()
    assert head.startswith("HTTP/1.1 400 ")
    assert b"Sec-WebSocket-Key" in body
    # Nothing after our response: Werkzeug's own response could not be written.
    assert b"HTTP/1.1" not in body
    assert isinstance(error, HandshakeError)
    assert error.status_code == 400
    assert "invalid Sec-WebSocket-Key" in str(error)


# -- the 1.1 constructor, errors, and the sock= form ------------------------------------


def test_constructor_form_and_missing_socket() -> None:
    with pytest.raises(RuntimeError, match="Cannot obtain socket from WSGI environment"):
        Server({"REQUEST_METHOD": "GET"})
    with pytest.raises(ValueError):
        Server()
    with pytest.raises(ValueError):
        Server({"werkzeug.socket": None}, sock=socket.socket())

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        ws = Server(environ, subprotocols="only", max_message_size=1000)
        ws.send(f"{ws.mode} {ws.subprotocol} {ws.headers.get('X-Extra')}")
        ws.close()
        start_response("200 OK", [])
        return []

    with werkzeug_server(app) as port:
        ws = Client.connect(f"ws://127.0.0.1:{port}/", "only", {"X-Extra": "yes"})
        assert ws.receive(TIMEOUT) == "werkzeug only yes"
        assert ws.wait_closed(TIMEOUT)
        assert ws.close_reason == 1000


@contextlib.contextmanager
def custom_server(handler: Callable[[Server], Any], **options: Any) -> Iterator[tuple[int, Any]]:
    """A minimal server of our own: read the request head, then ``Server(sock=...)``."""
    listener = socket.create_server(("127.0.0.1", 0))
    results: queue.Queue[Any] = queue.Queue()

    def serve() -> None:
        conn, _ = listener.accept()
        data = b""
        parsed = None
        while parsed is None:
            data += conn.recv(65536)
            parsed = parse_request_head(data)
        request, _rest = parsed
        try:
            ws = Server.accept(sock=conn, headers=request.headers, path=request.target, **options)
            results.put(handler(ws))
            ws.close()
        except BaseException as exc:
            results.put(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], results
    finally:
        listener.close()
        thread.join(TIMEOUT)


def test_sock_and_headers_form_for_a_custom_server() -> None:
    def handler(ws: Server) -> Any:
        message = ws.receive(TIMEOUT)
        ws.send(f"{ws.mode}:{ws.request.target if ws.request else ''}:{message}")
        return ws.headers

    with custom_server(handler) as (port, results):
        ws = Client.connect(f"ws://127.0.0.1:{port}/custom", headers={"X-Who": "me"})
        ws.send("hi")
        assert ws.receive(TIMEOUT) == "custom:/custom:hi"
        headers = results.get(timeout=TIMEOUT)
        assert ("X-Who", "me") in headers
        assert ws.wait_closed(TIMEOUT)
        assert ws.close_reason == 1000


def test_sock_form_rejects_a_bad_handshake() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            Server.accept(sock=conn, headers={"Host": "x"})
        except HandshakeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        head, _ = read_head(sock)
    thread.join(TIMEOUT)
    listener.close()
    assert head.startswith("HTTP/1.1 426 ")
    assert len(errors) == 1 and errors[0].status_code == 426
