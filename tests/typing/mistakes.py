"""Mistakes a type checker must catch: every line whose comment starts with "E:" must
get a mypy error containing the rest of the comment, and no other line may get one.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from __future__ import annotations

from typing import Literal, assert_type

from pydantic import BaseModel

import simple_websocket
from simple_websocket import AioClient, AioServer, ASGIConnection, MessageHandler, TypedChannel


class Tick(BaseModel):
    type: Literal["tick"] = "tick"
    price: float


class Quote(BaseModel):
    type: Literal["quote"] = "quote"
    bid: float


async def typos(ws: AioClient) -> None:
    channel = ws.typed(Tick)
    tick = await channel.receive()
    assert tick is not None
    print(tick.prise)  # E: "Tick" has no attribute "prise"
    async for each in channel:
        print(each.prise)  # E: "Tick" has no attribute "prise"
    reply = await channel.request(Tick(price=1.0), timeout=5)
    print(reply.bid)  # E: "Tick" has no attribute "bid"
    client = AioClient.connect("ws://127.0.0.1:8000/", reconnect=True)
    async for tick in client.typed(Tick):
        print(tick.prise)  # E: "Tick" has no attribute "prise"
    feed = client.subscribe(Tick, subscribe="s", match={"type": "tick"})
    async for tick in feed:
        print(tick.prise)  # E: "Tick" has no attribute "prise"
    client.subscribe(Tick, subscribe="s")  # E: No overload variant of "subscribe"


async def wrong_types(ws: AioClient) -> None:
    received = await ws.typed(Tick).receive()
    assert_type(received, Tick)  # E: Expression is of type "Tick | None", not "Tick"
    ticks: TypedChannel[Tick] = ws.typed(Tick)
    quote: Quote | None = await ticks.receive()  # E: Incompatible types in assignment
    print(quote)
    message: str = await ws.receive()  # E: Incompatible types in assignment
    print(message)


async def wrong_calls(url: str) -> None:
    # idle_timeout only exists for reconnecting clients.
    await AioClient.connect(url, idle_timeout=5)  # E: No overload variant of "connect"

    def bad(code: int) -> None:
        print(code)

    AioClient.connect(url, reconnect=True, on_disconnect=bad)  # E: Argument "on_disconnect"

    async def handler(ws: int) -> None:
        print(ws)

    simple_websocket.serve(handler)  # E: Argument 1 to "serve" has incompatible type


async def asgi(scope: dict[str, object], receive: object, send: object) -> None:
    ws = await AioServer.accept(asgi=(scope, receive, send))
    print(ws.mode)  # E: "ASGIConnection" has no attribute "mode"


class SlowEcho(MessageHandler[AioServer]):
    # Callbacks cannot wait: an async one is refused (a TypeError at run time too).
    async def on_message(  # E: of "on_message" incompatible with return type "None"
        self, ws: AioServer, data: str | bytes
    ) -> None:
        await ws.send(data)


class Echo(MessageHandler[AioServer]):
    def on_message(self, ws: AioServer, message: str | bytes) -> None:
        ws.send_nowait(message)


async def callback_mistakes(ws: AioServer, asgi: ASGIConnection) -> None:
    await ws.send_nowait("x")  # E: "send_nowait" of "Connection" does not return a value
    # A handler for AioServer connections does not take an ASGI connection.
    await Echo()(asgi)  # E: Argument 1 to "__call__" of "MessageHandler" has incompatible type
