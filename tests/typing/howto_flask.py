"""The examples of docs/howto/flask.md that use the synchronous API, as a user would
write them (the eventlet and gevent programs are in their own files, and the
Flask-Sock application is ``app.py``).

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.selectors

from simple_websocket import Client, ConnectionClosed, Server


def client() -> None:
    with Client.connect("ws://127.0.0.1:5000/echo") as ws:  # close(1000) on exit
        ws.send("hello")  # str: text message; bytes: binary message
        print(ws.receive(timeout=5))  # None if nothing arrived in 5 s
        for message in ws:  # ends quietly on 1000 or 1001
            print(message)


def app(
    environ: dict[str, Any],
    start_response: Callable[..., Any],
) -> list[bytes]:
    ws = Server.accept(environ, subprotocols=["chat"], ping_interval=25)
    try:
        for message in ws:
            ws.send(message)
    except ConnectionClosed:
        pass
    ws.close()
    start_response("200 OK", [])
    return []


def custom(conn: socket.socket, request_headers: dict[str, str]) -> None:
    ws = Server.accept(sock=conn, headers=request_headers, path="/chat")
    assert ws.mode == "custom"


class Thread(gevent.Greenlet):
    def __init__(self, target: Callable[[], object]) -> None:
        super().__init__(target)


def green(environ: dict[str, Any]) -> Server:
    ws = Server.accept(
        environ,
        thread_class=Thread,
        event_class=gevent.event.Event,
        selector_class=gevent.selectors.DefaultSelector,
    )
    return ws
