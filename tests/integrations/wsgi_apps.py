"""WSGI applications for the integration tests, importable by a server subprocess.

``app`` is a Flask app with flask-sock routes (served by gunicorn's gthread worker
as ``tests.integrations.wsgi_apps:app``); :func:`plain_app` is a WSGI app with no
framework. The ``run_*`` functions serve them with eventlet or gevent, in a
subprocess started by the tests (monkey patching must not reach the test process).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import simple_websocket
from simple_websocket import ConnectionClosed
from simple_websocket import ws as _ws

# flask-sock and python-engineio use ``simple_websocket.Server`` (the 1.1 name).
# Until the package's __init__ exports the sync API, provide it here.
for _name in ("Server", "Client"):
    if _name not in vars(simple_websocket):
        setattr(simple_websocket, _name, getattr(_ws, _name))


def create_flask_app() -> Any:
    """A Flask app with flask-sock routes ``/echo`` and ``/info``, and ``/returning``,
    a plain view that accepts a WebSocket itself."""
    from flask import Flask, request
    from flask_sock import Sock

    flask_app = Flask(__name__)
    flask_app.config["SOCK_SERVER_OPTIONS"] = {"subprotocols": ["chat"]}
    sock = Sock(flask_app)

    @flask_app.route("/")
    def index() -> str:
        return "ok"

    @sock.route("/echo")
    def echo(ws: Any) -> None:
        while True:
            data = ws.receive()
            if data == "close":
                ws.close(1000, "asked to close")
                return
            ws.send(data)

    @flask_app.route("/returning", websocket=True)
    def returning() -> str:
        # As python-engineio does: the view returns once the WebSocket ended,
        # without close(), and the WSGI server then writes this response.
        ws = _ws.Server.accept(request.environ)
        try:
            for message in ws:
                ws.send(message)
        except ConnectionClosed:
            pass
        return "the WSGI server's own response"

    @sock.route("/info/<name>")
    def info(ws: Any, name: str) -> None:
        ws.send(
            json.dumps(
                {
                    "name": name,
                    "mode": ws.mode,
                    "subprotocol": ws.subprotocol,
                    "module": type(ws).__module__,
                }
            )
        )
        ws.receive()

    return flask_app


app = create_flask_app()


def plain_app(environ: dict[str, Any], start_response: Any, **accept_options: Any) -> list[bytes]:
    """Echo over a WebSocket with no framework; reports ``mode`` first."""
    ws = _ws.Server.accept(environ, **accept_options)
    ws.send(f"mode={ws.mode}")
    try:
        for message in ws:
            ws.send(message)
    except ConnectionClosed:
        pass
    ws.close()
    start_response("200 OK", [])
    return []


def run_eventlet(port: int) -> None:  # pragma: no cover - runs in a subprocess
    """Serve the Flask app with eventlet's WSGI server (monkey patched before)."""
    import eventlet
    import eventlet.wsgi

    eventlet.wsgi.server(eventlet.listen(("127.0.0.1", port)), app, log_output=False)


def run_gevent(port: int) -> None:  # pragma: no cover - runs in a subprocess
    """Serve the Flask app with gevent's WSGI server (monkey patched before)."""
    from gevent.pywsgi import WSGIServer

    WSGIServer(("127.0.0.1", port), app, log=None).serve_forever()


def run_gevent_unpatched(port: int) -> None:  # pragma: no cover - runs in a subprocess
    """Serve :func:`plain_app` with gevent, no monkey patching: the green thread,
    event and selector classes are passed to ``Server.accept``, as
    python-engineio's gevent driver does."""
    import gevent
    import gevent.event
    import gevent.selectors
    from gevent.pywsgi import WSGIServer

    class Thread(gevent.Greenlet):  # type: ignore[misc]
        def __init__(self, target: Any) -> None:
            super().__init__(target)

    def application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return plain_app(
            environ,
            start_response,
            thread_class=Thread,
            event_class=gevent.event.Event,
            selector_class=gevent.selectors.DefaultSelector,
        )

    WSGIServer(("127.0.0.1", port), application, log=None).serve_forever()


# -- running a server in a subprocess, for the tests ---------------------------------

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server_process(args: list[str], port: int, deadline: float = 30.0) -> Iterator[Any]:
    """Start ``args`` (run from the repository root) and wait until ``port`` accepts.

    The port is polled with a bounded deadline; the process is killed at the end.
    Yields a callable returning what the process printed so far.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]))
    env["PYTHONUNBUFFERED"] = "1"
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )

        def output() -> str:
            out.seek(0)
            return out.read().decode("utf-8", "replace")

        try:
            limit = time.monotonic() + deadline
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}:\n{output()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > limit:
                        raise RuntimeError(
                            f"server not listening after {deadline} s:\n{output()}"
                        ) from None
                    time.sleep(0.05)  # polling interval, not a timing assumption
            yield output
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def run_socketio_gevent(port: int) -> None:  # pragma: no cover - runs in a subprocess
    """Serve python-socketio with ``async_mode="gevent"`` and no monkey patching.

    Without gevent-websocket installed, engineio's gevent driver accepts the
    WebSocket transport with ``simple_websocket.Server(environ, thread_class=...,
    event_class=..., selector_class=...)`` (gevent's classes).
    """
    import socketio
    from engineio.async_drivers import gevent as gevent_driver
    from gevent.pywsgi import WSGIServer

    sio = socketio.Server(async_mode="gevent")

    @sio.on("hello")
    def hello(sid: str, data: Any) -> str:
        driver = gevent_driver._async["websocket"]
        sio.emit(
            "reply",
            {
                "echo": data,
                "transport": sio.transport(sid),
                "driver": [cls.__name__ for cls in driver.__mro__],
                "server": simple_websocket.Server.__module__,
            },
            to=sid,
        )
        return "ack"

    WSGIServer(("127.0.0.1", port), socketio.WSGIApp(sio), log=None).serve_forever()
