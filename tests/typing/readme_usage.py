"""The examples of the README's Usage section, as a user would write them.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

import simple_websocket
from simple_websocket import AioClient, AioServer, Backoff, Disconnected

# -- a client ---------------------------------------------------------------------------------


async def main() -> None:
    async with simple_websocket.AioClient.connect("ws://localhost:8000/ws") as ws:
        await ws.send("hello")
        print(await ws.receive(timeout=10))  # None if nothing came within 10 s
        async for message in ws:  # ends quietly on a normal close
            print(message)


def run() -> None:
    asyncio.run(main())


# -- typed messages and a bot that reconnects -------------------------------------------------


class Subscribe(BaseModel):
    type: Literal["subscribe"] = "subscribe"
    channel: str


class Tick(BaseModel):
    type: Literal["tick"] = "tick"
    price: float


async def resubscribe(ws: AioClient) -> None:
    await ws.send(Subscribe(channel="prices").model_dump_json())


def report(exc: Disconnected) -> None:
    print(f"connection lost ({exc.cause}, code {exc.reason}); reconnecting")


async def bot() -> None:
    # Keepalive is on by default here (a ping every 20 s, 20 s for its pong): a
    # server that vanished without closing TCP is noticed and replaced.
    async with AioClient.connect(
        "wss://example.com/feed",
        reconnect=Backoff(initial=0.5, maximum=30),
        on_connect=resubscribe,
        on_disconnect=report,
    ) as client:
        async for tick in client.typed(Tick):  # a Tick, to your type checker too
            print(tick.price)


# -- servers ----------------------------------------------------------------------------------


async def echo(ws: simple_websocket.BaseConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def standalone() -> None:
    async with simple_websocket.serve(echo, "127.0.0.1", 8000):
        await asyncio.Future()  # serve until cancelled


async def aiohttp_handler(request: web.Request) -> web.Response:
    ws = await AioServer.accept(aiohttp=request)
    await echo(ws)
    return web.Response(text="")  # nothing is written after the WebSocket


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await echo(await AioServer.accept(asgi=(scope, receive, send)))
