"""The examples of docs/howto/subscriptions.md, as a user would write them.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from pydantic import BaseModel

from simple_websocket import AioClient, Backoff, GapError, ReconnectingClient, Subscription
from simple_websocket.testing import FaultProxy, PubSubServer

log = logging.getLogger(__name__)


class Tick(BaseModel):
    type: Literal["tick"]
    channel: str
    seq: int
    price: float


async def follow_btc() -> None:
    url = "wss://feed.example.com/ws"
    async with AioClient.connect(url, reconnect=True) as client:
        btc = client.subscribe(
            Tick,
            subscribe=lambda last: {
                "op": "subscribe",
                "channel": "BTC",
                "since": last,
            },
            unsubscribe={"op": "unsubscribe", "channel": "BTC"},
            match={"type": "tick", "channel": "BTC"},
            sequence=lambda tick: tick.seq,
        )
        async with btc:  # sends subscribe(None); leaving it sends unsubscribe
            async for tick in btc:  # a Tick, in sequence order, each once
                print(tick.seq, tick.price)


async def print_ticks(sub: Subscription[Tick]) -> None:
    async for tick in sub:
        print(tick.channel, tick.price)


async def follow_two(client: ReconnectingClient) -> None:
    btc = client.subscribe(
        Tick,
        subscribe=lambda last: {
            "op": "subscribe",
            "channel": "BTC",
            "since": last,
        },
        match={"type": "tick", "channel": "BTC"},
        sequence=lambda tick: tick.seq,
    )
    eth = client.subscribe(
        Tick,
        subscribe=lambda last: {
            "op": "subscribe",
            "channel": "ETH",
            "since": last,
        },
        match={"type": "tick", "channel": "ETH"},
        sequence=lambda tick: tick.seq,
    )
    async with btc, eth:
        # One consumer per subscription:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(print_ticks(btc))
            tasks.create_task(print_ticks(eth))


async def tolerate_gaps(client: ReconnectingClient) -> None:
    btc = client.subscribe(
        Tick,
        subscribe=lambda last: {
            "op": "subscribe",
            "channel": "BTC",
            "since": last,
        },
        match={"type": "tick", "channel": "BTC"},
        sequence=lambda tick: tick.seq,
        on_gap="raise",
    )
    async with btc:
        while True:
            try:
                tick = await btc.receive()
            except GapError as gap:
                log.warning("missed %d ticks", gap.received - gap.expected)
                continue
            if tick is not None:
                print(tick.price)


async def with_acknowledgements(client: ReconnectingClient) -> None:
    acks = client.subscribe(dict, subscribe=None, match={"type": "subscribed"})
    async with acks:
        async for ack in acks:
            log.info("subscribed: %s", ack)


async def watchdog(client: ReconnectingClient) -> None:
    btc = client.subscribe(
        Tick,
        subscribe=lambda last: {
            "op": "subscribe",
            "channel": "BTC",
            "since": last,
        },
        match={"type": "tick", "channel": "BTC"},
        sequence=lambda tick: tick.seq,
        idle_timeout=30,
    )
    async with btc:
        async for tick in btc:
            print(tick.price)


class Order(BaseModel):
    op: Literal["order"] = "order"
    id: int | None = None
    side: str
    size: float


class Filled(BaseModel):
    type: Literal["filled"]
    id: int
    price: float


async def buy(client: ReconnectingClient) -> Filled:
    orders = client.typed(Filled, send=Order)
    return await orders.request(Order(side="buy", size=0.5), timeout=30)


class Event(BaseModel):
    type: Literal["event"]
    channel: str
    seq: int
    data: object = None


async def take(sub: Subscription[Event], count: int) -> list[int]:
    """The sequence numbers of the next ``count`` events."""
    seqs = []
    async for event in sub:
        seqs.append(event.seq)
        if len(seqs) == count:
            break
    return seqs


async def test_bot_misses_nothing() -> None:
    async with PubSubServer() as feed, FaultProxy(feed.port) as proxy:
        async with AioClient.connect(
            proxy.url,
            reconnect=Backoff(initial=0.01),
            ping_interval=0.1,
            ping_timeout=0.1,
        ) as client:
            btc = client.subscribe(
                Event,
                subscribe=lambda last: {
                    "op": "subscribe",
                    "channel": "BTC",
                    "since": last,
                },
                match={"type": "event", "channel": "BTC"},
                sequence=lambda event: event.seq,
            )
            async with btc:
                await feed.wait_until(lambda: len(feed.subscribes) == 1)
                for n in range(10):
                    feed.publish("BTC", n)
                seqs = await take(btc, 10)
                proxy.cut()  # the connection drops; the client reconnects
                for n in range(10, 20):
                    # Replayed from 10 on the new connection:
                    feed.publish("BTC", n)
                seqs += await take(btc, 10)
                assert seqs == list(range(1, 21))
