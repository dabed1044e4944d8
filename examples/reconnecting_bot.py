"""Reconnecting bot: a client that survives a server restart.

The bot subscribes to topics on a small publish/subscribe server and prints the
ticks it publishes. It connects with ``AioClient.connect(url,
reconnect=Backoff(...), on_connect=resubscribe)``: when the connection drops it
reconnects with exponential backoff, ``resubscribe`` runs on every new
connection (a restarted server has forgotten the subscriptions), and what the
bot sends while the server is down waits in the client's outbox and is sent
once, in order, right after ``resubscribe``. Keepalive is on by default for a
reconnecting client (a ping every 20 s, 20 s for its pong), so a server that
vanishes without closing TCP (a dead network, a suspended laptop) is noticed and
replaced too; ``lost`` prints why each connection ended.

Three modes:

    python examples/reconnecting_bot.py --demo
        An embedded server on a free port; the bot connects, the server is
        stopped after a few ticks and started again on the same port, the bot
        carries on and exits by itself. The first line of output is the server's
        URL.

    python examples/reconnecting_bot.py --serve --port 8000
        Only the server (first line: its URL). Stop it with Ctrl+C and start it
        again to see the bot reconnect; ``--once`` exits after the first
        connection.

    python examples/reconnecting_bot.py --url ws://127.0.0.1:8000/ --ticks 20
        Only the bot: exits after ``--ticks`` ticks (status 0), or when it gives
        up reconnecting (status 1).

The protocol is JSON: the bot sends ``{"op": "subscribe", "topics": [...]}`` and
``{"op": "say", "text": ...}``; the server answers ``{"event": "subscribed",
...}`` and ``{"event": "heard", ...}`` and publishes ``{"event": "tick",
"topic": ..., "n": ...}`` every ``--interval`` seconds for each subscribed
topic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import simple_websocket
from simple_websocket import AioClient, Backoff, ConnectionClosed, Disconnected

TOPICS = ["prices", "news"]


# -- the server ----------------------------------------------------------------


class PubSubServer:
    """A publish/subscribe server that can stop and start again on its port."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, interval: float = 0.2
    ) -> None:
        self.host = host
        self.port = port
        self.interval = interval
        self.server: simple_websocket.WebSocketServer[Any] | None = None
        self.finished = asyncio.Event()  # set when a connection ended

    @property
    def url(self) -> str:
        """The server's URL (the same after a restart)."""
        return f"ws://{self.host}:{self.port}/"

    async def handler(self, ws: simple_websocket.AioServer) -> None:
        """Serve one subscriber: nothing is published before it subscribes."""
        topics: list[str] = []

        async def publish() -> None:
            n = 0
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await asyncio.sleep(self.interval)
                    for topic in list(topics):
                        n += 1
                        await ws.send(
                            json.dumps(
                                {"event": "tick", "topic": topic, "n": n}
                            )
                        )

        publisher = asyncio.create_task(publish())
        try:
            # Ends quietly on 1000, and on 1001 at shutdown.
            async for raw in ws:
                message = json.loads(raw)
                if message["op"] == "subscribe":
                    topics.extend(
                        t for t in message["topics"] if t not in topics
                    )
                    await ws.send(
                        json.dumps({"event": "subscribed", "topics": topics})
                    )
                elif message["op"] == "say":
                    await ws.send(
                        json.dumps({"event": "heard", "text": message["text"]})
                    )
        finally:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
            self.finished.set()

    async def start(self) -> None:
        """Listen (again) on the port; 0 picks a free one the first time."""
        self.server = await simple_websocket.serve(
            self.handler, self.host, self.port
        )
        self.port = self.server.port

    async def stop(self) -> None:
        """Stop listening and close every connection with 1001 (going away)."""
        if self.server is not None:
            await self.server.close()
            self.server = None


# -- the bot -------------------------------------------------------------------


# --8<-- [start:bot]
class Bot:
    """Subscribes to ``TOPICS``, prints what is published, across reconnects."""

    def __init__(self, url: str) -> None:
        self.connections = 0
        # Set while the bot knows the connection is down.
        self.down = asyncio.Event()
        # Keepalive pings are on by default (every 20 s, 20 s for the pong): a
        # server that vanished without closing TCP is noticed and replaced.
        self.client = AioClient.connect(
            url,
            # Waits of about 0.1, 0.2, 0.4, ... up to 2 s; gives up after 30 s
            # of failures.
            reconnect=Backoff(initial=0.1, maximum=2.0, max_elapsed=30.0),
            on_connect=self.resubscribe,
            on_disconnect=self.lost,
        )

    async def resubscribe(self, ws: AioClient) -> None:
        """``on_connect``: runs on each new connection, before the outbox.

        It gets the new connection itself: what it sends goes out first.
        (Sending through ``self.client`` here would queue behind the outbox.)
        """
        self.connections += 1
        self.down.clear()
        print(
            f"connected (connection {self.connections}); subscribing to "
            f"{TOPICS}"
        )
        await ws.send(json.dumps({"op": "subscribe", "topics": TOPICS}))

    def lost(self, exc: Disconnected) -> None:
        """``on_disconnect``: the connection dropped; the client reconnects.

        ``exc.cause`` says why: ``"closed"`` (the server closed it),
        ``"network_error"`` (TCP ended without a close frame),
        ``"ping_timeout"`` or ``"idle_timeout"``.
        """
        print(f"connection lost (code {exc.reason}, {exc.cause}); reconnecting")
        self.down.set()

    async def say(self, text: str) -> None:
        """Send a message now, or after the reconnect if the link is down."""
        await self.client.send(json.dumps({"op": "say", "text": text}))

    async def run(
        self,
        ticks: int,
        on_tick: Callable[[int], Awaitable[None]] | None = None,
    ) -> int:
        """Print events until ``ticks`` ticks arrived; return an exit status."""
        received = 0
        try:
            # Waits for the first connection and its on_connect.
            async with self.client:
                async for raw in self.client:  # continues across reconnects
                    event = json.loads(raw)
                    if event["event"] == "tick":
                        received += 1
                        print(
                            f"tick {event['topic']} #{event['n']} "
                            f"({received}/{ticks})"
                        )
                        if on_tick is not None:
                            await on_tick(received)
                        if received >= ticks:
                            break
                    elif event["event"] == "subscribed":
                        print(f"subscribed to {event['topics']}")
                    else:
                        print(f"server heard: {event['text']}")
        except (OSError, simple_websocket.SimpleWebsocketError) as exc:
            # The policy gave up (max_elapsed passed) or the error is not
            # retryable.
            print(f"giving up: {exc!r}", file=sys.stderr)
            return 1
        print(
            f"done: {received} ticks over {self.connections} connections "
            f"({self.client.reconnects} reconnects, {self.client.attempts} "
            "attempts)"
        )
        return 0 if received >= ticks else 1


# --8<-- [end:bot]


# --8<-- [start:demo]
async def demo(host: str = "127.0.0.1", port: int = 0, ticks: int = 6) -> int:
    """Run the bot against an embedded server that is restarted once."""
    server = PubSubServer(host, port, interval=0.05)
    await server.start()
    print(f"server listening on {server.url}", flush=True)
    bot = Bot(server.url)

    async def restart_server(received: int) -> None:
        if received != ticks // 2:
            return
        print("stopping the server")
        await server.stop()  # closes the bot's connection with 1001
        await bot.down.wait()  # the bot noticed: what it sends now is queued
        for i in (1, 2, 3):
            await bot.say(f"note {i}")
        print(
            "sent 3 notes while the server is down; outbox: "
            f"{bot.client.outbox_depth}"
        )
        # Stay down a while: the bot's attempts are refused.
        await asyncio.sleep(0.5)
        await server.start()  # the same port
        print("server started again")

    try:
        return await bot.run(ticks, on_tick=restart_server)
    finally:
        await server.stop()


# --8<-- [end:demo]


async def serve_only(host: str, port: int, once: bool, interval: float) -> None:
    """Run the server alone until Ctrl+C, or one connection ended (``once``)."""
    server = PubSubServer(host, port, interval)
    await server.start()
    print(f"listening on {server.url}", flush=True)
    try:
        if once:
            await server.finished.wait()
        else:
            await asyncio.Future()  # serve until Ctrl+C
    finally:
        await server.stop()
    print("server stopped")


async def main(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    mode: str = "demo",
    url: str | None = None,
    ticks: int = 6,
    once: bool = False,
    interval: float = 0.2,
) -> int:
    """Run the demo, or the server or the bot alone (``mode``)."""
    if mode == "serve":
        await serve_only(host, port, once, interval)
        return 0
    if mode == "bot":
        assert url is not None
        return await Bot(url).run(ticks)
    return await demo(host, port, ticks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_mutually_exclusive_group(required=True)
    modes.add_argument(
        "--demo", action="store_true", help="embedded server, restarted once"
    )
    modes.add_argument(
        "--serve", action="store_true", help="run only the server"
    )
    modes.add_argument("--url", help="run only the bot, against this server")
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="0 picks a free port"
    )
    parser.add_argument(
        "--once", action="store_true", help="--serve: exit after one connection"
    )
    parser.add_argument(
        "--ticks", type=int, default=6, help="ticks the bot waits for"
    )
    parser.add_argument(
        "--interval", type=float, default=0.2, help="--serve: seconds per tick"
    )
    args = parser.parse_args()
    if isinstance(sys.stdout, io.TextIOWrapper):
        # One line at a time, even in a pipe.
        sys.stdout.reconfigure(line_buffering=True)
    # Show the backoff at work: the reconnecting client logs each failed
    # attempt.
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    mode = "serve" if args.serve else "bot" if args.url else "demo"
    port = args.port if args.port is not None else (8000 if args.serve else 0)
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(
            asyncio.run(
                main(
                    args.host,
                    port,
                    mode=mode,
                    url=args.url,
                    ticks=args.ticks,
                    once=args.once,
                    interval=args.interval,
                )
            )
        )
