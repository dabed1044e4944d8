"""flask-sock routes on our ``simple_websocket.Server``: Werkzeug's threaded dev server
(in a thread) and gunicorn's gthread worker (a subprocess started by the test).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest
import websockets.sync.client
from werkzeug.serving import make_server

from simple_websocket import ConnectionClosed
from simple_websocket.ws import Client
from tests.integrations import wsgi_apps

pytest.importorskip("flask_sock")

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 5.0


@contextlib.contextmanager
def werkzeug_flask() -> Iterator[int]:
    server = make_server("127.0.0.1", 0, wsgi_apps.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def check_flask_sock(port: int, mode: str) -> None:
    """What every server must do with the flask-sock app."""
    base = f"ws://127.0.0.1:{port}"
    # Plain HTTP routes still work.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=TIMEOUT) as response:
        assert response.read() == b"ok"
    # The route gets our Server, found the way this server exposes its socket.
    with Client.connect(f"{base}/info/abc", subprotocols=["chat"]) as ws:
        info = json.loads(str(ws.receive(TIMEOUT)))
        assert ws.subprotocol == "chat"
    assert info == {
        "name": "abc",
        "mode": mode,
        "subprotocol": "chat",
        "module": "simple_websocket.ws",
    }
    # Echo; the client closes.
    with Client.connect(f"{base}/echo") as ws:
        for n in range(20):
            ws.send(f"message {n}")
        assert [ws.receive(TIMEOUT) for _ in range(20)] == [f"message {n}" for n in range(20)]
        ws.send(b"\x00" * 300_000)
        assert ws.receive(TIMEOUT) == b"\x00" * 300_000
    assert ws.close_reason == 1000
    # The server closes.
    ws = Client.connect(f"{base}/echo")
    ws.send("close")
    with pytest.raises(ConnectionClosed) as info_exc:
        ws.receive(TIMEOUT)
    assert (info_exc.value.reason, info_exc.value.message) == (1000, "asked to close")
    assert ws.wait_closed(TIMEOUT)
    # Another client library, and several connections at once.
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(websockets.sync.client.connect(f"{base}/echo")) for _ in range(3)
        ]
        for n, client in enumerate(clients):
            client.send(f"c{n}")
        assert [client.recv(TIMEOUT) for client in clients] == ["c0", "c1", "c2"]


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split what a server sent into ``(opcode, payload)``; fail on anything else."""
    frames = []
    while data:
        assert len(data) >= 2, f"not a frame: {data!r}"
        first, length = data[0], data[1]
        assert first & 0x80 and not first & 0x70 and not length & 0x80, f"not a frame: {data!r}"
        head = 2
        if length == 126:
            length, head = int.from_bytes(data[2:4], "big"), 4
        assert len(data) >= head + length, f"not a frame: {data!r}"
        frames.append((first & 0x0F, data[head : head + length]))
        data = data[head + length :]
    return frames


def _raw_session(port: int, server_closes: bool, path: str = "/echo") -> list[tuple[int, bytes]]:
    """A client written byte by byte: one message, a closing handshake, then read
    until the server closes TCP. Returns every frame the server sent after its 101.
    """
    mask = b"\x01\x02\x03\x04"

    def frame(opcode: int, payload: bytes) -> bytes:
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked

    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 "), head
        sock.sendall(frame(1, b"hi"))
        sock.sendall(frame(1, b"close") if server_closes else frame(8, b"\x03\xe8"))
        answered = not server_closes
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if not answered and any(op == 8 for op, _ in _frames_so_far(data)):
                answered = True
                sock.sendall(frame(8, b"\x03\xe8"))
    return _frames(data)


def _frames_so_far(data: bytes) -> list[tuple[int, bytes]]:
    with contextlib.suppress(AssertionError):
        return _frames(data)
    return []


def check_nothing_follows_the_close(port: int) -> None:
    """Byte for byte: the WSGI server's own HTTP response never reaches the wire."""
    for server_closes in (False, True):
        for _ in range(5):
            frames = _raw_session(port, server_closes)
            reason = b"\x03\xe8asked to close" if server_closes else b"\x03\xe8"
            assert frames == [(1, b"hi"), (8, reason)]
    # A view that returns as soon as the client closed, without close().
    for _ in range(10):
        assert _raw_session(port, False, "/returning") == [(1, b"hi"), (8, b"\x03\xe8")]


def test_flask_sock_under_werkzeug(caplog: pytest.LogCaptureFixture) -> None:
    with werkzeug_flask() as port:
        check_flask_sock(port, "werkzeug")
        check_nothing_follows_the_close(port)
    assert "Error on request" not in caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.skipif(shutil.which("true") is None, reason="needs a POSIX system")
def test_flask_sock_under_gunicorn_gthread() -> None:
    pytest.importorskip("gunicorn")
    port = wsgi_apps.free_port()
    args = [
        "-m",
        "gunicorn",
        "--worker-class",
        "gthread",
        "--threads",
        "8",
        "--workers",
        "1",
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "info",
        "tests.integrations.wsgi_apps:app",
    ]
    with wsgi_apps.server_process(args, port) as output:
        check_flask_sock(port, "gunicorn")
        check_nothing_follows_the_close(port)
        log = output()
    assert "Traceback" not in log, log
    assert "Error handling request" not in log, log
