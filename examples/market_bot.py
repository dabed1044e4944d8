"""Market bot: subscriptions resume after reconnects, nothing lost or repeated.

The bot follows two channels of a market feed and places orders. It uses
``client.subscribe()``: each subscription sends ``subscribe(last)`` again on
every new connection, so the feed replays what was published while the bot was
away; duplicates are dropped and gaps asked for again by sequence number. Orders
go out with ``channel.request()``: an order whose answer was lost with its
connection is sent again, with the same id, and the feed runs each order id
once.

Two modes:

    python examples/market_bot.py --demo
        The reference feed of ``simple_websocket.testing`` on a free port,
        behind a ``FaultProxy`` that cuts the network and then blackholes it (no
        FIN: found by keepalive pings) while ticks are published and orders
        placed. The bot prints what it got and exits 0 when every tick arrived
        once and in order and every order was answered once.

    python examples/market_bot.py --url ws://127.0.0.1:8000/ --ticks 100
        Only the bot, against a feed speaking the same protocol.

The protocol (the reference feed's): ``{"op": "subscribe", "channel": C,
"since": N}``, ticks ``{"type": "event", "channel": C, "seq": N, "data":
{...}}``, requests ``{"op": "request", "id": I, "params": ...}`` answered by
``{"type": "response", "id": I, "result": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
from typing import Any, Literal

from pydantic import BaseModel

from simple_websocket import AioClient, Backoff, Disconnected
from simple_websocket.reconnect import ReconnectingClient
from simple_websocket.subscriptions import Subscription
from simple_websocket.testing import FaultProxy, PubSubServer

CHANNELS = ["BTC-USD", "ETH-USD"]


class Quote(BaseModel):
    """A tick's price and size."""

    price: float
    size: float


class Tick(BaseModel):
    """A message of a channel, with its sequence number."""

    type: Literal["event"]
    channel: str
    seq: int
    data: Quote


class Order(BaseModel):
    """An order: a request, correlated with its answer by ``id``."""

    op: Literal["request"] = "request"
    id: int | None = None
    params: dict[str, Any]


class Filled(BaseModel):
    """The answer to an order."""

    type: Literal["response"]
    id: int
    result: dict[str, Any]


# --8<-- [start:ticks]
def ticks(client: ReconnectingClient, channel: str) -> Subscription[Tick]:
    """The ticks of ``channel``, resumed from the last one after a reconnect."""
    return client.subscribe(
        Tick,
        subscribe=lambda last: {
            "op": "subscribe",
            "channel": channel,
            "since": last,
        },
        unsubscribe={"op": "unsubscribe", "channel": channel},
        match={"type": "event", "channel": channel},
        sequence=lambda tick: tick.seq,
    )


# --8<-- [end:ticks]


async def follow(sub: Subscription[Tick], count: int) -> list[int]:
    """Read ``count`` ticks; return their sequence numbers."""
    seqs: list[int] = []
    async for tick in sub:
        seqs.append(tick.seq)
        if len(seqs) % 50 == 0:
            print(
                f"{tick.channel}: tick {tick.seq} at {tick.data.price:.2f}",
                flush=True,
            )
        if len(seqs) == count:
            break
    return seqs


async def bot(url: str, count: int, orders: int) -> bool:
    """Follow the channels for ``count`` ticks each; place ``orders`` orders."""

    def lost(exc: Disconnected) -> None:
        print(
            f"connection lost ({exc.cause}, code {exc.reason}); reconnecting",
            flush=True,
        )

    retry = Backoff(initial=0.05, maximum=1.0)
    # Fast keepalive so that the demo's blackhole is found within half a second.
    async with AioClient.connect(
        url,
        reconnect=retry,
        on_disconnect=lost,
        ping_interval=0.2,
        ping_timeout=0.3,
    ) as client:
        subs = [ticks(client, channel) for channel in CHANNELS]
        # The feed acknowledges each subscribe. A subscription that sends
        # nothing keeps those away from the orders' channel, which reads what no
        # subscription matched (it would refuse them as invalid answers).
        acks = client.subscribe(
            dict, subscribe=None, match={"type": "subscribed"}
        )
        async with subs[0], subs[1], acks:
            readers = [
                asyncio.ensure_future(follow(sub, count)) for sub in subs
            ]
            trading = client.typed(Filled, send=Order)
            fills = []
            for n in range(orders):
                order = Order(params={"side": "buy", "size": n + 1})
                fills.append(await trading.request(order, timeout=30))
            results = [await reader for reader in readers]
            print(f"reconnects: {client.reconnects}", flush=True)
        ok = True
        for channel, seqs, sub in zip(CHANNELS, results, subs, strict=True):
            in_order = seqs == list(range(seqs[0], seqs[0] + count))
            ok = ok and in_order
            print(
                f"{channel}: {len(seqs)} ticks, in order and once each: "
                f"{in_order} "
                f"(duplicates dropped: {sub.duplicates}, gaps: {sub.gaps})",
                flush=True,
            )
        answered = sorted(fill.result["size"] for fill in fills)
        ok = ok and answered == list(range(1, orders + 1))
        print(
            "orders answered once each: "
            f"{answered == list(range(1, orders + 1))}"
        )
        return ok


async def demo(count: int, orders: int) -> bool:
    """Run the feed behind a proxy that breaks the network, and the bot."""
    rng = random.Random(1)

    async def fill(request: dict[str, Any]) -> Any:
        # The exchange takes a while.
        await asyncio.sleep(rng.uniform(0.01, 0.1))
        return request["params"]

    async def publish(feed: PubSubServer) -> None:
        price = 100.0
        while True:
            for channel in CHANNELS:
                price += rng.uniform(-1, 1)
                feed.publish(
                    channel, {"price": price, "size": rng.uniform(0.1, 2)}
                )
            await asyncio.sleep(0.01)

    async def break_network(proxy: FaultProxy) -> None:
        await asyncio.sleep(0.5)
        print("network: cut", flush=True)
        proxy.cut()
        await proxy.wait_for_connections(2)
        await asyncio.sleep(0.5)
        print("network: blackhole (no FIN)", flush=True)
        proxy.blackhole()
        await proxy.wait_for_connections(3)

    async with (
        PubSubServer(handler=fill) as feed,
        FaultProxy(feed.port) as proxy,
    ):
        print(f"feed on {feed.url}, bot through {proxy.url}", flush=True)
        publisher = asyncio.ensure_future(publish(feed))
        breaker = asyncio.ensure_future(break_network(proxy))
        try:
            ok = await bot(proxy.url, count, orders)
            await breaker
        finally:
            publisher.cancel()
        print(
            f"orders run by the feed: {feed.executed} (copies received: "
            f"{feed.requests})"
        )
        return ok and feed.executed == orders


def main() -> int:
    """Run the demo or the bot; 0 when every tick and order arrived once."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--demo", action="store_true", help="run a feed and break the network"
    )
    parser.add_argument("--url", help="the feed's URL (without --demo)")
    parser.add_argument(
        "--ticks", type=int, default=150, help="ticks to read per channel"
    )
    parser.add_argument(
        "--orders", type=int, default=20, help="orders to place"
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.demo:
        ok = asyncio.run(demo(args.ticks, args.orders))
    elif args.url:
        ok = asyncio.run(bot(args.url, args.ticks, args.orders))
    else:
        parser.error("give --demo or --url")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
