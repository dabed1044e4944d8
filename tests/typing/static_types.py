"""What type checkers see of the public entry points: each ``assert_type`` fails if a
type regresses (to ``Any``, for instance).

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Annotated, Any, Literal, TypedDict, assert_type

from aiohttp import web
from aiostream import Stream
from pydantic import BaseModel, Field

import simple_websocket
from simple_websocket import (
    AioClient,
    AioServer,
    ASGIConnection,
    Backoff,
    Connect,
    Disconnected,
    JsonCodec,
    PydanticCodec,
    ReconnectingClient,
    Subscription,
    TypedChannel,
    WebSocketServer,
)
from simple_websocket.errors import DisconnectCause


class Tick(BaseModel):
    type: Literal["tick"] = "tick"
    price: float


class Quote(BaseModel):
    type: Literal["quote"] = "quote"
    bid: float


Event = Annotated[Tick | Quote, Field(discriminator="type")]


@dataclasses.dataclass
class Point:
    x: int


class Movie(TypedDict):
    title: str


class MyClient(AioClient):
    pass


class MyServer(AioServer):
    pass


async def client_entry_points(url: str) -> None:
    assert_type(AioClient.connect(url), Connect[AioClient])
    assert_type(await AioClient.connect(url), AioClient)
    assert_type(await MyClient.connect(url), MyClient)
    async with AioClient.connect(url) as ws:
        assert_type(ws, AioClient)
    async for ws in AioClient.connect(url):
        assert_type(ws, AioClient)
    assert_type(AioClient.connect(url, reconnect=True), ReconnectingClient)
    assert_type(AioClient.connect(url, reconnect=Backoff()), ReconnectingClient)
    flag = bool(url)
    assert_type(AioClient.connect(url, reconnect=flag), Connect[AioClient] | ReconnectingClient)


async def reconnecting_client(url: str) -> None:
    client = AioClient.connect(url, reconnect=True, idle_timeout=30)
    assert_type(await client, ReconnectingClient)
    async with client as entered:
        assert_type(entered, ReconnectingClient)
    assert_type(client.connection, AioClient | None)
    assert_type(await client.receive(), str | bytes | None)
    async for message in client:
        assert_type(message, str | bytes)
    assert_type(client.typed(Tick), TypedChannel[Tick])
    assert_type(client.stream(), Stream[str | bytes])
    assert_type(client.latency, float | None)
    assert_type(client.idle_timeout, float | None)


def hooks(url: str) -> None:
    async def on_connect(ws: MyClient) -> None:
        await ws.send("hello")

    def on_disconnect(exc: Disconnected) -> None:
        assert_type(exc.cause, DisconnectCause)

    MyClient.connect(url, reconnect=True, on_connect=on_connect, on_disconnect=on_disconnect)
    AioClient.connect(url, reconnect=True, on_disconnect=lambda exc: print(exc.cause))


async def typed_channels(ws: AioClient) -> None:
    ticks = ws.typed(Tick)
    assert_type(ticks, TypedChannel[Tick])
    assert_type(await ticks.receive(), Tick | None)
    assert_type(await ticks.request(Tick(price=1.0), timeout=1), Tick)
    async for tick in ticks:
        assert_type(tick, Tick)
    assert_type(ticks.stream(), Stream[Tick])
    assert_type(ws.typed(Point), TypedChannel[Point])
    assert_type(ws.typed(Movie), TypedChannel[Movie])
    assert_type(ws.typed(int), TypedChannel[int])
    assert_type(ws.typed(list[Tick]), TypedChannel[list[Tick]])
    assert_type(ws.typed(Event), TypedChannel[Any])
    assert_type(ws.typed(None, codec=JsonCodec()), TypedChannel[Any])
    # Forms a type checker cannot read are annotated with what they hold, and
    # channels are covariant.
    events: TypedChannel[Tick | Quote] = ws.typed(Event)
    more: TypedChannel[Tick | Quote] = ws.typed(Tick)
    bare: TypedChannel = ws.typed(Tick)
    print(events, more, bare)
    assert_type(simple_websocket.channels.typed(ws, Tick), TypedChannel[Tick])
    assert_type(TypedChannel(ws, PydanticCodec(Tick), JsonCodec()), TypedChannel[Tick])
    assert_type(PydanticCodec(Tick), PydanticCodec[Tick])
    assert_type(PydanticCodec(Event), PydanticCodec[Any])
    assert_type(PydanticCodec(Tick).decode("{}"), Tick)


async def server_entry_points(
    request: web.Request, scope: dict[str, Any], receive: Any, send: Any, sock: socket.socket
) -> None:
    assert_type(await AioServer.accept(aiohttp=request), AioServer)
    assert_type(await MyServer.accept(aiohttp=request), MyServer)
    assert_type(await AioServer.accept(sock=sock, headers={}), AioServer)
    assert_type(await AioServer.accept(asgi=(scope, receive, send)), ASGIConnection)
    assert_type(await AioServer.accept(None, (scope, receive, send)), ASGIConnection)
    assert_type(await ASGIConnection.accept(scope, receive, send), ASGIConnection)

    async def handler(ws: AioServer) -> None:
        assert_type(ws.typed(Tick), TypedChannel[Tick])
        assert_type(ws.stream(), Stream[str | bytes])

    async def my_handler(ws: MyServer) -> None:
        pass

    async with simple_websocket.serve(handler) as server:
        assert_type(server, WebSocketServer[AioServer])
        assert_type(server.connections, set[AioServer])
    assert_type(await simple_websocket.serve(handler), WebSocketServer[AioServer])
    assert_type(
        simple_websocket.serve(my_handler, server_class=MyServer), WebSocketServer[MyServer]
    )


async def subscriptions(url: str, ws: AioClient) -> None:
    client = await AioClient.connect(url, reconnect=True)
    ticks = client.subscribe(
        Tick,
        subscribe=lambda last: {"op": "subscribe", "since": last},
        match={"type": "tick"},
        sequence=lambda tick: int(tick.price),
    )
    assert_type(ticks, Subscription[Tick])
    assert_type(await ticks.start(), Subscription[Tick])
    assert_type(await ticks.receive(timeout=1), Tick | None)
    async with ticks as entered:
        assert_type(entered, Subscription[Tick])
        async for tick in entered:
            assert_type(tick, Tick)
    assert_type(ticks.stream(), Stream[Tick])
    assert_type(ticks.last, int | None)
    events = client.subscribe(Event, subscribe=None, match={"type": "tick"})
    assert_type(events, Subscription[Any])
    on_connection = ws.subscribe(Movie, subscribe="s", match=lambda data: True)
    assert_type(on_connection, Subscription[Movie])
    assert_type(await on_connection.receive(), Movie | None)
