"""flask-sock routes on our ``simple_websocket.Server``: Werkzeug's threaded dev server
(in a thread) and gunicorn's gthread worker (a subprocess started by the test).
"""

from __future__ import annotations

import contextlib
import json
import shutil
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


def test_flask_sock_under_werkzeug(caplog: pytest.LogCaptureFixture) -> None:
    with werkzeug_flask() as port:
        check_flask_sock(port, "werkzeug")
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
        log = output()
    assert "Traceback" not in log, log
    assert "Error handling request" not in log, log
