"""Soak: subscriptions and requests through random cuts and blackholes.

A reconnecting client follows two channels of the reference feed
(``simple_websocket.testing.PubSubServer``) through a ``FaultProxy`` that cuts every
connection or blackholes it (no FIN: found by keepalive pings) at random moments,
while it sends concurrent requests. In the end every message of both channels was
delivered once and in order, and every request was answered once and run once.

Reduced by default; the full size runs with::

    SIMPLE_WEBSOCKET_LOAD=full .venv/bin/python -m pytest tests/load/test_soak.py -s

Every run prints what it measured (``-s`` shows it).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from simple_websocket import AioClient, Backoff
from simple_websocket.reconnect import ReconnectingClient
from simple_websocket.subscriptions import Subscription
from simple_websocket.testing import FaultProxy, PubSubServer

FULL = os.environ.get("SIMPLE_WEBSOCKET_LOAD") == "full"
#: (messages per channel, faults, requests)
SIZES = {"reduced": (2_000, 20, 200), "full": (50_000, 60, 2_000)}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600 if FULL else 60)]


class Event(BaseModel):
    type: Literal["event"]
    channel: str
    seq: int
    data: Any = None


class Response(BaseModel):
    type: Literal["response"]
    id: int
    result: Any = None


def follow(client: ReconnectingClient, channel: str) -> Subscription[Event]:
    return client.subscribe(
        Event,
        subscribe=lambda last: {"op": "subscribe", "channel": channel, "since": last},
        match={"type": "event", "channel": channel},
        sequence=lambda event: event.seq,
    )


async def consume(sub: Subscription[Any], count: int) -> list[int]:
    """The sequence numbers of the next ``count`` messages (``-1``: until closed)."""
    seqs: list[int] = []
    async for event in sub:
        seqs.append(getattr(event, "seq", 0))
        if len(seqs) == count:
            break
    return seqs


async def publish(server: PubSubServer, count: int, batches: int) -> None:
    """Publish ``count`` messages on each channel, in ``batches`` steps."""
    size = max(1, count // batches)
    sent = 0
    while sent < count:
        for _ in range(min(size, count - sent)):
            sent += 1
            server.publish("BTC", sent)
            server.publish("ETH", sent)
        await asyncio.sleep(0.005)  # the feed's pace: spreads the messages over the faults


async def inject_faults(proxy: FaultProxy, faults: int) -> list[str]:
    rng = random.Random(7)  # the same sequence of faults every run
    done = []
    for _ in range(faults):
        await asyncio.sleep(rng.uniform(0.02, 0.08))  # when: the behaviour under test
        connections = proxy.connections
        kind = rng.choice(["cut", "blackhole"])
        if kind == "cut":
            proxy.cut()
        else:
            proxy.blackhole()  # new connections still go through
        done.append(kind)
        # One fault per connection: wait for the client to be back.
        await proxy.wait_until(lambda seen=connections: proxy.connections > seen, timeout=30)
    return done


async def test_soak_nothing_lost_nothing_repeated_every_request_answered_once() -> None:
    messages, faults, requests = SIZES["full" if FULL else "reduced"]
    rng = random.Random(11)

    async def work(request: dict[str, Any]) -> Any:
        await asyncio.sleep(rng.uniform(0, 0.05))  # in flight while faults happen
        return request["params"] * 2

    start = time.perf_counter()
    async with PubSubServer(handler=work) as server, FaultProxy(server.port) as proxy:
        retry = Backoff(initial=0.01, maximum=0.05, jitter=0)
        async with AioClient.connect(
            proxy.url, reconnect=retry, ping_interval=0.05, ping_timeout=0.1
        ) as client:
            btc, eth = follow(client, "BTC"), follow(client, "ETH")
            # The feed acknowledges every subscribe: a bot takes those too.
            acks = client.subscribe(dict, subscribe=None, match={"type": "subscribed"})
            async with btc, eth, acks:
                drain = asyncio.ensure_future(consume(acks, -1))
                readers = [asyncio.ensure_future(consume(s, messages)) for s in (btc, eth)]
                await server.wait_until(lambda: len(server.subscribes) >= 2)
                channel = client.typed(Response)
                faulting = asyncio.ensure_future(inject_faults(proxy, faults))
                publishing = asyncio.ensure_future(publish(server, messages, faults * 15))
                calls = []
                for n in range(requests):
                    # Requests all along the faults, each in flight for a while.
                    calls.append(
                        asyncio.ensure_future(
                            channel.request({"op": "request", "params": n}, timeout=60)
                        )
                    )
                    await asyncio.sleep(0.005)
                await publishing
                kinds = await faulting
                btc_seqs, eth_seqs = [await reader for reader in readers]
                answers = [await call for call in calls]
                stray = await channel.receive(timeout=0.1)
                drain.cancel()
            reconnects = client.reconnects
    elapsed = time.perf_counter() - start
    print(
        f"soak: {messages} messages x 2 channels, {len(kinds)} faults "
        f"({kinds.count('cut')} cuts, {kinds.count('blackhole')} blackholes), "
        f"{reconnects} reconnects, {requests} requests ({server.requests} sent, "
        f"{server.executed} run), {btc.duplicates + eth.duplicates} duplicates dropped, "
        f"{elapsed:.1f} s"
    )
    assert btc_seqs == list(range(1, messages + 1))
    assert eth_seqs == list(range(1, messages + 1))
    assert sorted(answer.result for answer in answers) == [2 * n for n in range(requests)]
    assert stray is None  # no request answered twice to the application
    assert server.executed == requests
    assert reconnects >= faults
