"""Quick start demo: a typed, reconnecting client outlives a server restart.

It starts a WebSocket server on localhost (a free port), connects a reconnecting
client that speaks typed JSON (pydantic models), restarts the server under it,
sends a message while the server is down (kept in the client's outbox and
delivered after the reconnect), prints what happened and exits.

Run it with ``python examples/demo.py [--host HOST] [--port PORT]``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Annotated, Literal

from pydantic import BaseModel, Field

import simple_websocket
from simple_websocket import AioClient, AioServer, Backoff


class Subscribe(BaseModel):
    """Client → server: start a feed."""

    type: Literal["subscribe"] = "subscribe"
    channel: str


class Ack(BaseModel):
    """Server → client: a subscription is active."""

    type: Literal["ack"] = "ack"
    channel: str
    connection: int


class Tick(BaseModel):
    """Server → client: one update of a feed."""

    type: Literal["tick"] = "tick"
    channel: str
    seq: int


ServerEvent = Annotated[Ack | Tick, Field(discriminator="type")]
connections = 0


async def feed(ws: AioServer) -> None:
    """The server: acknowledge each subscription, then send two ticks for it."""
    global connections
    connections += 1
    number = connections
    channel = ws.typed(Subscribe, send=ServerEvent)
    async for request in channel:
        await channel.send(Ack(channel=request.channel, connection=number))
        for seq in range(2):
            await channel.send(Tick(channel=request.channel, seq=seq))


async def main(host: str = "127.0.0.1", port: int = 0) -> None:
    """Run the demo on ``host``:``port`` (0 picks a free port)."""
    server = await simple_websocket.serve(feed, host, port)
    port = server.port
    print(f"server listening on {server.url}")

    async def resubscribe(ws: simple_websocket.AioClient) -> None:
        # Runs after every (re)connect, before messages queued during an outage.
        await ws.send(Subscribe(channel="prices").model_dump_json())

    client = AioClient.connect(
        server.url,
        reconnect=Backoff(initial=0.05, maximum=0.5),
        on_connect=resubscribe,
        on_disconnect=lambda exc: print(
            f"client: connection lost ({exc.reason})"
        ),
    )
    async with client:
        channel = client.typed(ServerEvent, send=Subscribe)
        for _ in range(3):
            print("client received:", await channel.receive(timeout=5))

        # Every connection is closed with 1001 (going away).
        await server.close()
        print("server stopped")
        # The server is down: outbox.
        await channel.send(Subscribe(channel="news"))
        print(f"client: {client.outbox_depth} message waiting in the outbox")

        server = await simple_websocket.serve(feed, host, port)
        print("server restarted on the same port")
        for _ in range(6):
            print("client received:", await channel.receive(timeout=5))
        print(
            f"client: {client.reconnects} reconnect after {client.attempts} "
            "attempts, "
            f"outbox now {client.outbox_depth}"
        )
    await server.close()
    print("demo done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
