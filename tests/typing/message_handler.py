"""Callback handlers as users write them, and what type checkers see of them.

The type parameter of ``MessageHandler`` is the connection class its callbacks
get: ``ServerConnection`` when it is left out, ``AioServer`` for ``serve()`` and
``accept()``, ``ASGIConnection`` under ASGI, ``BaseConnection`` for both.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from __future__ import annotations

import asyncio
from typing import Any, assert_type

from aiohttp import web

import simple_websocket
from simple_websocket import (
    AioServer,
    ASGIConnection,
    BaseConnection,
    MessageHandler,
    WebSocketServer,
    serve,
)
from simple_websocket.asyncio.server import ServerConnection


class Echo(MessageHandler):
    def on_message(self, ws: ServerConnection, message: str | bytes) -> None:
        ws.send_nowait(message)


class Counter(MessageHandler[AioServer]):
    """Counts each connection's messages; closes it after ten."""

    def __init__(self) -> None:
        self.counts: dict[AioServer, int] = {}

    def on_open(self, ws: AioServer) -> None:
        self.counts[ws] = 0

    def on_message(self, ws: AioServer, message: str | bytes) -> None:
        self.counts[ws] += 1
        ws.send_nowait(str(self.counts[ws]))
        if self.counts[ws] == 10:
            ws.close_nowait(4000, "enough")

    def on_close(self, ws: AioServer) -> None:
        count = self.counts.pop(ws)
        code: int = ws.close_reason
        reason: str | None = ws.close_message
        print(count, code, reason)


class Lookup(MessageHandler[AioServer]):
    """Starts a task for what has to wait, and answers from it."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def on_message(self, ws: AioServer, message: str | bytes) -> None:
        task = asyncio.create_task(self.answer(ws, message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def answer(self, ws: AioServer, message: str | bytes) -> None:
        await asyncio.sleep(0.1)
        await ws.send(message)


class Everywhere(MessageHandler[BaseConnection]):
    def on_message(self, ws: BaseConnection, message: str | bytes) -> None:
        ws.send_nowait(message)


class AsgiEcho(MessageHandler[ASGIConnection]):
    def on_message(self, ws: ASGIConnection, message: str | bytes) -> None:
        ws.send_nowait(message)


class PreferV2(AioServer):
    pass


async def with_serve() -> None:
    async with serve(Echo()) as server:
        assert_type(server, WebSocketServer[AioServer])
        assert_type(server.connections, set[AioServer])
    assert_type(serve(Echo()), WebSocketServer[AioServer])
    assert_type(serve(Counter()), WebSocketServer[AioServer])
    assert_type(serve(Lookup()), WebSocketServer[AioServer])
    assert_type(serve(Everywhere()), WebSocketServer[AioServer])
    assert_type(await simple_websocket.serve(Echo()), WebSocketServer[AioServer])
    # With server_class=, the connections are of that class, whatever the handler.
    assert_type(serve(Echo(), server_class=PreferV2), WebSocketServer[PreferV2])
    assert_type(serve(Counter(), server_class=PreferV2), WebSocketServer[PreferV2])


async def with_accept(request: web.Request, scope: Any, receive: Any, send: Any) -> None:
    ws = await AioServer.accept(aiohttp=request)
    assert_type(await Echo()(ws), None)
    await Counter()(ws)
    await Everywhere()(ws)
    asgi = await AioServer.accept(asgi=(scope, receive, send))
    assert_type(asgi, ASGIConnection)
    await AsgiEcho()(asgi)
    await Everywhere()(asgi)


def the_type_parameter() -> None:
    assert_type(Echo(), Echo)
    plain: MessageHandler = Echo()
    assert_type(plain, MessageHandler[ServerConnection])
    counter: MessageHandler[AioServer] = Counter()
    assert_type(counter, MessageHandler[AioServer])
    assert simple_websocket.aiows.MessageHandler is MessageHandler


def callbacks(ws: AioServer, asgi: ASGIConnection) -> None:
    assert_type(ws.send_nowait("text"), None)
    assert_type(ws.send_nowait(b"binary"), None)
    assert_type(ws.close_nowait(), None)
    assert_type(ws.close_nowait(4000, "bye"), None)
    assert_type(asgi.send_nowait("text"), None)
    assert_type(asgi.close_nowait(1001), None)
