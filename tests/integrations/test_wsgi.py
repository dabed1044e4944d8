"""The WSGI integration: finding the socket and the request in an environ.

Werkzeug, gunicorn, eventlet and gevent each keep the connection's socket in their
own place; simple-websocket 1.1 looked for it in this order and reported the
server in ``Server.mode``. The environs here are built by hand around a socket
pair (each server's shape), then the real eventlet and gevent servers run the
flask-sock app in a subprocess (monkey patching must not reach this process).
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from simple_websocket import ConnectionClosed, HandshakeError
from simple_websocket.integrations.wsgi import find_socket, request_from_environ
from simple_websocket.sansio.handshake import accept_key
from simple_websocket.ws import Client, Server
from tests.integrations import wsgi_apps
from tests.sync import SyncPeer, parse_headers, read_head

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 5.0


def upgrade_environ(key: str, **extra: Any) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/ws",
        "QUERY_STRING": "a=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "example.com",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_KEY": key,
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
    }
    environ.update(extra)
    return environ


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server_side, client_side = socket.socketpair()
    yield server_side, client_side
    server_side.close()
    client_side.close()


# -- finding the socket ---------------------------------------------------------------


def test_find_socket_in_each_servers_environ(pair: tuple[socket.socket, socket.socket]) -> None:
    sock, _ = pair
    found = find_socket({"werkzeug.socket": sock, "wsgi.input": None})
    assert (found.sock, found.mode, found.owned) == (sock, "werkzeug", False)
    found = find_socket({"gunicorn.socket": sock})
    assert (found.sock, found.mode, found.owned) == (sock, "gunicorn", False)
    eventlet_input = SimpleNamespace(get_socket=lambda: sock)
    found = find_socket({"eventlet.input": eventlet_input})
    assert (found.sock, found.mode, found.owned) == (sock, "eventlet", True)
    # gevent: wsgi.input.rfile.raw._sock (or wsgi.input.raw._sock), duplicated.
    for wsgi_input in (
        SimpleNamespace(rfile=SimpleNamespace(raw=SimpleNamespace(_sock=sock))),
        SimpleNamespace(raw=SimpleNamespace(_sock=sock)),
    ):
        found = find_socket(
            {"SERVER_SOFTWARE": "gevent/24.0 Python/3.11", "wsgi.input": wsgi_input}
        )
        assert found.mode == "gevent" and found.owned
        assert found.sock is not sock
        assert found.sock.getsockname() == sock.getsockname()
        found.sock.close()
    # Werkzeug first, as in 1.1.
    assert find_socket({"gunicorn.socket": None, "werkzeug.socket": sock}).mode == "werkzeug"
    for environ in ({}, {"SERVER_SOFTWARE": "gevent"}, {"wsgi.input": object()}):
        with pytest.raises(RuntimeError, match="Cannot obtain socket from WSGI environment"):
            find_socket(environ)


def test_request_from_environ() -> None:
    request = request_from_environ(
        upgrade_environ("k", HTTP_SEC_WEBSOCKET_PROTOCOL="a, b", HTTP_X_CUSTOM_THING="v")
    )
    assert request.method == "GET"
    assert request.target == "/ws?a=1"
    assert request.header("sec-websocket-key") == "k"
    assert request.header("X-Custom-Thing") == "v"
    assert request.subprotocols == ["a", "b"]
    assert request.host == "example.com"
    # The raw target is preferred; otherwise PATH_INFO is quoted again.
    assert request_from_environ({"RAW_URI": "/r%20aw?q", "PATH_INFO": "/x"}).target == "/r%20aw?q"
    assert request_from_environ({"REQUEST_URI": "/u"}).target == "/u"
    environ = {"SCRIPT_NAME": "/app", "PATH_INFO": "/caf\xc3\xa9 x", "QUERY_STRING": ""}
    assert request_from_environ(environ).target == "/app/caf%C3%A9%20x"
    assert request_from_environ({}).target == "/"
    assert request_from_environ({"REQUEST_METHOD": "POST"}).method == "POST"


# -- the mode each server reports, over a socket pair -------------------------------------


def environ_for(mode: str, sock: socket.socket, key: str) -> dict[str, Any]:
    if mode == "werkzeug":
        return upgrade_environ(key, **{"werkzeug.socket": sock})
    if mode == "gunicorn":
        return upgrade_environ(key, **{"gunicorn.socket": sock, "RAW_URI": "/raw"})
    if mode == "eventlet":
        return upgrade_environ(key, **{"eventlet.input": SimpleNamespace(get_socket=lambda: sock)})
    assert mode == "gevent"
    wsgi_input = SimpleNamespace(rfile=SimpleNamespace(raw=SimpleNamespace(_sock=sock)))
    return upgrade_environ(key, SERVER_SOFTWARE="gevent/24.0", **{"wsgi.input": wsgi_input})


@pytest.mark.parametrize("mode", ["werkzeug", "gunicorn", "eventlet", "gevent"])
def test_server_over_each_servers_environ(
    mode: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    server_side, client_side = pair
    key = base64.b64encode(os.urandom(16)).decode()
    ws = Server.accept(environ_for(mode, server_side, key), subprotocols=["x"])
    assert ws.mode == mode
    client_side.settimeout(TIMEOUT)
    head, rest = read_head(client_side)
    assert head.startswith("HTTP/1.1 101 ")
    assert parse_headers(head)["sec-websocket-accept"] == accept_key(key)
    assert ws.request is not None
    assert ws.request.target == ("/raw" if mode == "gunicorn" else "/ws?a=1")
    assert ws.headers["Host"] == "example.com"
    peer = SyncPeer(client_side, "client", rest)
    peer.send_text("over " + mode)
    assert ws.receive(TIMEOUT) == "over " + mode
    ws.send("back")
    assert peer.recv_frame().payload == b"back"
    peer.send_close(1000)
    assert peer.expect_close().close_code == 1000
    peer.expect_eof()
    assert ws.wait_closed(TIMEOUT)
    with pytest.raises(ConnectionClosed):
        ws.receive()
    # Werkzeug and gunicorn close their sockets themselves; eventlet's and gevent's
    # are closed by the connection (as in 1.1). Either way the socket is shut down.
    if mode in ("werkzeug", "gunicorn"):
        assert server_side.fileno() != -1
    with pytest.raises(OSError):
        server_side.send(b"x")


def test_bad_request_in_environ_is_answered_with_400(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server_side, client_side = pair
    environ = upgrade_environ("bad", **{"gunicorn.socket": server_side})
    with pytest.raises(HandshakeError) as info:
        Server(environ)
    assert info.value.status_code == 400
    client_side.settimeout(TIMEOUT)
    head, body = read_head(client_side)
    assert head.startswith("HTTP/1.1 400 Bad Request")
    assert b"invalid Sec-WebSocket-Key" in body


# -- real eventlet and gevent servers, in a subprocess -------------------------------------


def run_server(function: str, patch: str) -> Any:
    port = wsgi_apps.free_port()
    code = f"{patch}from tests.integrations import wsgi_apps; wsgi_apps.{function}({port})"
    return port, wsgi_apps.server_process(["-W", "ignore", "-c", code], port)


def test_flask_sock_under_eventlet() -> None:
    pytest.importorskip("eventlet")
    from tests.integrations.test_flask_sock import check_flask_sock

    port, server = run_server("run_eventlet", "import eventlet; eventlet.monkey_patch(); ")
    with server as output:
        check_flask_sock(port, "eventlet")
        log = output()
    assert "Traceback" not in log, log


def test_flask_sock_under_gevent() -> None:
    pytest.importorskip("gevent")
    from tests.integrations.test_flask_sock import check_flask_sock

    port, server = run_server("run_gevent", "from gevent import monkey; monkey.patch_all(); ")
    with server as output:
        check_flask_sock(port, "gevent")
        log = output()
    assert "Traceback" not in log, log


def test_plain_app_under_unpatched_gevent_with_injected_classes() -> None:
    pytest.importorskip("gevent")
    port, server = run_server("run_gevent_unpatched", "")
    with server as output:
        for _ in range(2):
            with Client.connect(f"ws://127.0.0.1:{port}/", ping_interval=0.05) as ws:
                assert ws.receive(TIMEOUT) == "mode=gevent"
                for n in range(10):
                    ws.send(f"g{n}")
                assert [ws.receive(TIMEOUT) for _ in range(10)] == [f"g{n}" for n in range(10)]
                big = "x" * 500_000
                ws.send(big)
                assert ws.receive(TIMEOUT) == big
            assert ws.close_reason == 1000
        log = output()
    assert "Traceback" not in log, log
