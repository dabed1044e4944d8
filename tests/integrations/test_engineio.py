"""python-socketio / python-engineio on our ``simple_websocket.Server``.

``socketio.Server(async_mode="threading")`` wrapped by ``socketio.WSGIApp`` runs
under Werkzeug's threaded dev server; engineio's threading driver accepts its
WebSocket transport with ``simple_websocket.Server(environ)``. A
``socketio.Client`` limited to the websocket transport exchanges events with it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

import simple_websocket
from simple_websocket import ws as ws_module
from tests.integrations import wsgi_apps

socketio = pytest.importorskip("socketio")
engineio = pytest.importorskip("engineio")

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 5.0


def test_engineio_threading_driver_uses_our_package() -> None:
    from engineio.async_drivers import _websocket_wsgi
    from engineio.async_drivers import threading as threading_driver

    assert threading_driver._async["websocket"] is _websocket_wsgi.SimpleWebSocketWSGI
    # The driver calls simple_websocket.Server: this package, not 1.1 from PyPI.
    assert _websocket_wsgi.simple_websocket is simple_websocket
    src = Path(simple_websocket.__file__).resolve().parent
    assert src == Path(ws_module.__file__).resolve().parent
    assert simple_websocket.__version__.startswith("2.")
    assert simple_websocket.Server is ws_module.Server or issubclass(
        simple_websocket.Server, ws_module.Server
    )


@contextlib.contextmanager
def socketio_server(sio: Any) -> Iterator[int]:
    app = socketio.WSGIApp(sio)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def test_socketio_events_both_ways_over_the_websocket_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accepted: list[ws_module.Server] = []

    class Recording(ws_module.Server):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            accepted.append(self)

    # engineio looks simple_websocket.Server up on each connection.
    monkeypatch.setattr(simple_websocket, "Server", Recording, raising=False)

    sio = socketio.Server(async_mode="threading")
    server_events: queue.Queue[Any] = queue.Queue()

    @sio.event
    def connect(sid: str, environ: dict[str, Any]) -> None:
        server_events.put(("connect", sid))

    @sio.on("hello")
    def hello(sid: str, data: Any) -> str:
        server_events.put(("hello", data))
        sio.emit("reply", {"echo": data, "n": 1}, to=sid)
        return "ack:" + str(data["text"])

    @sio.event
    def disconnect(sid: str, *args: Any) -> None:
        server_events.put(("disconnect", sid))

    client_events: queue.Queue[Any] = queue.Queue()
    client = socketio.Client(reconnection=False)

    @client.on("reply")
    def reply(data: Any) -> None:
        client_events.put(("reply", data))

    @client.on("pushed")
    def pushed(data: Any) -> None:
        client_events.put(("pushed", data))

    with socketio_server(sio) as port:
        client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=TIMEOUT)
        try:
            assert client.transport() == "websocket"
            kind, sid = server_events.get(timeout=TIMEOUT)
            assert kind == "connect"
            # Client -> server (with an acknowledgement), server -> client.
            ack = client.call("hello", {"text": "hi"}, timeout=TIMEOUT)
            assert ack == "ack:hi"
            assert server_events.get(timeout=TIMEOUT) == ("hello", {"text": "hi"})
            assert client_events.get(timeout=TIMEOUT) == (
                "reply",
                {"echo": {"text": "hi"}, "n": 1},
            )
            # The server pushes on its own, several times, larger payloads too.
            for n in range(5):
                sio.emit("pushed", {"n": n, "blob": "x" * (n * 10_000)}, to=sid)
            for n in range(5):
                assert client_events.get(timeout=TIMEOUT) == (
                    "pushed",
                    {"n": n, "blob": "x" * (n * 10_000)},
                )
        finally:
            client.disconnect()
        assert server_events.get(timeout=TIMEOUT) == ("disconnect", sid)
        assert accepted, "engineio did not use simple_websocket.Server"
        ws = accepted[0]
        assert ws.mode == "werkzeug"
        assert ws.wait_closed(TIMEOUT)
        assert not ws.connected


def test_wsgi_apps_module_provides_the_1_1_names() -> None:
    # The integration apps rely on simple_websocket.Server / Client (the 1.1 names).
    assert wsgi_apps is not None
    assert issubclass(simple_websocket.Server, ws_module.Server)
    assert issubclass(simple_websocket.Client, ws_module.Client)


def test_socketio_gevent_mode_uses_our_server_with_green_classes() -> None:
    pytest.importorskip("gevent")
    if importlib.util.find_spec("geventwebsocket") is not None:
        pytest.skip("gevent-websocket is installed: engineio would use it instead")
    port = wsgi_apps.free_port()
    code = f"from tests.integrations import wsgi_apps; wsgi_apps.run_socketio_gevent({port})"
    replies: queue.Queue[Any] = queue.Queue()
    client = socketio.Client(reconnection=False)

    @client.on("reply")
    def reply(data: Any) -> None:
        replies.put(data)

    with wsgi_apps.server_process(["-W", "ignore", "-c", code], port) as output:
        client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=TIMEOUT)
        try:
            for n in range(3):
                assert client.call("hello", {"n": n}, timeout=TIMEOUT) == "ack"
                data = replies.get(timeout=TIMEOUT)
                assert data["echo"] == {"n": n}
                assert data["transport"] == "websocket"
                assert "SimpleWebSocketWSGI" in data["driver"]
                assert data["server"] == "simple_websocket.ws"
        finally:
            client.disconnect()
        log = output()
    if "Traceback" in log and "Invalid HTTP method" in log:
        # Known race, seen under load: after the client's disconnect, frames it
        # still sent reach gevent's HTTP parser once the WebSocket is done with the
        # socket, and gevent logs them as an invalid request. The exchange itself
        # passed above.
        pytest.xfail("gevent parsed WebSocket frames sent after the close as HTTP")
    assert "Traceback" not in log, log
