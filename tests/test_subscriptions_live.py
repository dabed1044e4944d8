"""Subscriptions and requests over loopback, across reconnects.

Against the reference feed (``simple_websocket.testing.PubSubServer``) and servers
written in the test, through ``simple_websocket.testing.FaultProxy`` where the
network must break: restarts, cuts and blackholes lose and repeat nothing, gaps are
asked for again, requests are answered once.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from simple_websocket import AioClient, AioServer, Backoff, serve
from simple_websocket.errors import ConnectionClosed, Disconnected
from simple_websocket.reconnect import ReconnectingClient
from simple_websocket.subscriptions import Subscription
from simple_websocket.testing import FaultProxy, PubSubServer, Script, ScriptedServer

pytestmark = pytest.mark.timeout(30)

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0)


class Event(BaseModel):
    type: Literal["event"]
    channel: str
    seq: int
    data: Any = None


class Response(BaseModel):
    type: Literal["response"]
    id: int
    result: Any = None


def feed(client: ReconnectingClient, channel: str, **options: Any) -> Subscription[Event]:
    """A subscription to ``channel`` of the reference feed."""
    return client.subscribe(
        Event,
        subscribe=lambda last: {"op": "subscribe", "channel": channel, "since": last},
        unsubscribe={"op": "unsubscribe", "channel": channel},
        match={"type": "event", "channel": channel},
        sequence=lambda event: event.seq,
        **options,
    )


async def collect(sub: Subscription[Event], count: int) -> list[int]:
    seqs = []
    for _ in range(count):
        event = await sub.receive(timeout=10)
        assert event is not None, f"only {seqs} arrived"
        seqs.append(event.seq)
    return seqs


async def subscribed(server: PubSubServer, count: int) -> None:
    """Wait until the server has taken ``count`` subscribe messages in all."""
    await server.wait_until(lambda: len(server.subscribes) >= count)


async def test_subscriptions_resume_across_restarts_with_nothing_missed_or_repeated() -> None:
    async with PubSubServer() as server:
        async with AioClient.connect(server.url, reconnect=FAST) as client:
            btc, eth = feed(client, "BTC"), feed(client, "ETH")
            async with btc, eth:
                # The bot: one consumer per feed, reading all along.
                expected = 3 * 50
                readers = [asyncio.ensure_future(collect(sub, expected)) for sub in (btc, eth)]
                await subscribed(server, 2)
                for _ in range(3):
                    for _ in range(40):
                        server.publish("BTC")
                        server.publish("ETH")
                    # Down for a while: what is published meanwhile is replayed.
                    await server.stop()
                    for _ in range(10):
                        server.publish("BTC")
                        server.publish("ETH")
                    seen = len(server.subscribes)
                    await server.start()
                    await subscribed(server, seen + 2)
                for reader in readers:
                    assert await reader == list(range(1, expected + 1))
                assert await btc.receive(timeout=0) is None
                assert (btc.received, btc.last, eth.last) == (expected, expected, expected)
            assert client.reconnects == 3
    # Each reconnect resubscribed from the last sequence number seen by then.
    sinces = [s["since"] for s in server.subscribes if s["channel"] == "BTC"]
    assert sinces[0] is None
    assert all(isinstance(since, int) for since in sinces[1:])


async def test_after_a_reconnect_on_connect_then_subscriptions_then_the_outbox() -> None:
    async with ScriptedServer(Script(echo=False)) as server:
        hellos = 0

        async def hello(ws: AioClient) -> None:
            nonlocal hellos
            hellos += 1
            await ws.send(f"hello {hellos}")

        async with AioClient.connect(server.url, reconnect=FAST, on_connect=hello) as client:
            first = client.subscribe(dict, subscribe="sub A", match={"a": 1})
            second = client.subscribe(dict, subscribe=lambda last: "sub B", match={"b": 1})
            await first.start()
            await second.start()
            await server.wait_for_messages(3)
            await server.stop()
            await client.send("queued")  # the connection is down: into the outbox
            await server.start()
            await server.wait_for_messages(7)
    assert server.received[:3] == ["hello 1", "sub A", "sub B"]
    assert server.received[3:7] == ["hello 2", "sub A", "sub B", "queued"]


async def test_a_gap_is_asked_for_again_and_filled_in_order() -> None:
    subscribes: list[Any] = []

    async def gappy(ws: AioServer) -> None:
        async for raw in ws:
            message = json.loads(raw)
            subscribes.append(message["since"])
            # First 1, 2, then 5 (3 and 4 missing); asked again: all after ``since``.
            seqs = [1, 2, 5] if message["since"] is None else range(message["since"] + 1, 7)
            for seq in seqs:
                await ws.send(json.dumps({"type": "event", "channel": "BTC", "seq": seq}))

    async with serve(gappy) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        async with AioClient.connect(url, reconnect=FAST) as client:
            async with feed(client, "BTC") as btc:
                assert await collect(btc, 6) == [1, 2, 3, 4, 5, 6]
                assert (btc.gaps, btc.duplicates) == (1, 1)
    assert subscribes == [None, 2]


async def test_a_request_cut_off_is_sent_again_and_answered_once() -> None:
    release = asyncio.Event()

    async def slow(request: dict[str, Any]) -> Any:
        await release.wait()
        return request["params"] * 2

    async with PubSubServer(handler=slow) as server, FaultProxy(server.port) as proxy:
        async with AioClient.connect(proxy.url, reconnect=FAST) as client:
            channel = client.typed(Response)
            request = asyncio.ensure_future(
                channel.request({"op": "request", "params": 21}, timeout=10)
            )
            await server.wait_until(lambda: server.executed == 1)
            proxy.cut()  # the response can no longer come on this connection
            # Sent again, with the same id, on the new connection: not run again.
            await server.wait_until(lambda: server.requests == 2)
            assert server.executed == 1
            release.set()
            response = await request
            assert response.result == 42
            # Exactly one response reaches the application.
            assert await channel.receive(timeout=0.2) is None
    assert server.executed == 1


async def test_a_second_answer_to_a_request_sent_twice_is_dropped() -> None:
    connections = 0

    async def answers_twice(ws: AioServer) -> None:
        nonlocal connections
        connections += 1
        request = json.loads(await ws.receive(timeout=10) or "")
        if connections == 1:
            await ws.close(1012, "restarting")  # no answer on the first connection
            return
        for _ in range(2):  # the lost connection's answer, and this one's
            await ws.send(json.dumps({"type": "response", "id": request["id"], "result": 1}))
        await ws.wait_closed()

    async with serve(answers_twice) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        async with AioClient.connect(url, reconnect=FAST) as client:
            channel = client.typed(Response)
            response = await channel.request({"op": "request"}, timeout=10)
            assert response.result == 1
            assert await channel.receive(timeout=0.2) is None


async def test_a_request_times_out_across_reconnects_as_a_whole() -> None:
    async with ScriptedServer(Script(echo=False)) as server:
        async with AioClient.connect(server.url, reconnect=FAST) as client:
            channel = client.typed(Response)
            loop = asyncio.get_running_loop()
            start = loop.time()
            request = asyncio.ensure_future(channel.request({"op": "request"}, timeout=0.5))
            await server.wait_for_messages(1)
            await server.restart()
            await server.wait_for_messages(2)  # sent again on the new connection
            with pytest.raises(TimeoutError):
                await request
            assert loop.time() - start < 2
    first, second = (json.loads(m) for m in server.received[:2])
    assert first == second


async def test_a_blackholed_connection_is_replaced_and_the_feed_resumes() -> None:
    async with PubSubServer() as server, FaultProxy(server.port) as proxy:
        async with AioClient.connect(
            proxy.url, reconnect=FAST, ping_interval=0.1, ping_timeout=0.1
        ) as client:
            async with feed(client, "BTC") as btc:
                await subscribed(server, 1)
                for _ in range(20):
                    server.publish("BTC")
                assert await collect(btc, 20) == list(range(1, 21))
                proxy.blackhole()
                for _ in range(20):
                    server.publish("BTC")  # held in the dead connection, replayed later
                await subscribed(server, 2)
                assert await collect(btc, 20) == list(range(21, 41))
            assert client.reconnects == 1


async def test_a_silent_subscription_counts_as_a_dead_connection() -> None:
    causes: list[str] = []

    def dropped(exc: Disconnected) -> None:
        causes.append(exc.cause)

    async with PubSubServer() as server:
        async with AioClient.connect(server.url, reconnect=FAST, on_disconnect=dropped) as client:
            btc = feed(client, "BTC", idle_timeout=0.2)
            async with btc:
                await subscribed(server, 1)
                server.publish("BTC")
                assert await collect(btc, 1) == [1]
                # Nothing more on BTC: after 0.2 to 0.4 s the connection is failed,
                # and the new one subscribes again from 1.
                waiting = asyncio.ensure_future(btc.receive(timeout=10))
                await subscribed(server, 2)
                server.publish("BTC")
                event = await waiting
                assert event is not None and event.seq == 2
    assert causes[:1] == ["idle_timeout"]
    assert server.subscribes[1]["since"] == 1


async def test_a_feed_that_keeps_talking_is_never_idle() -> None:
    async def publish(server: PubSubServer) -> None:
        for _ in range(15):
            server.publish("BTC")
            await asyncio.sleep(0.1)  # the feed's pace, what the test is about

    async with PubSubServer() as server:
        async with AioClient.connect(server.url, reconnect=FAST) as client:
            async with feed(client, "BTC", idle_timeout=0.3) as btc:
                await subscribed(server, 1)
                publisher = asyncio.ensure_future(publish(server))
                assert await collect(btc, 15) == list(range(1, 16))
                await publisher
            assert client.reconnects == 0


async def test_a_passive_subscription_takes_the_acknowledgements() -> None:
    async with PubSubServer() as server:
        async with AioClient.connect(server.url, reconnect=FAST) as client:
            acks = client.subscribe(dict, subscribe=None, match={"type": "subscribed"})
            async with acks, feed(client, "BTC") as btc:
                ack = await acks.receive(timeout=10)
                assert ack == {"type": "subscribed", "channel": "BTC", "last": None}
                server.publish("BTC", "x")
                assert await collect(btc, 1) == [1]
                assert await client.receive(timeout=0) is None  # nothing unmatched
            assert [s["channel"] for s in server.subscribes] == ["BTC"]


async def test_the_guides_own_test_passes() -> None:
    """The test the subscriptions guide shows, run as it is written there."""
    path = Path(__file__).parent / "typing" / "howto_subscriptions.py"
    spec = importlib.util.spec_from_file_location("howto_subscriptions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    await module.test_bot_misses_nothing()


# -- on a plain connection ----------------------------------------------------------------


async def test_subscriptions_on_a_plain_connection() -> None:
    async with PubSubServer() as server:
        async with AioClient.connect(server.url) as ws:
            btc = ws.subscribe(
                Event,
                subscribe=lambda last: {"op": "subscribe", "channel": "BTC", "since": last},
                unsubscribe={"op": "unsubscribe", "channel": "BTC"},
                match={"type": "event", "channel": "BTC"},
                sequence=lambda event: event.seq,
            )
            async with btc:
                await subscribed(server, 1)
                for _ in range(5):
                    server.publish("BTC")
                assert await collect(btc, 5) == [1, 2, 3, 4, 5]
                # What no subscription matches goes to receive(), iteration and channels.
                ack = json.loads(await ws.receive(timeout=5) or "")
                assert ack == {"type": "subscribed", "channel": "BTC", "last": None}
            # Leaving sent the unsubscribe: nothing more arrives for BTC.
            await server.wait_until(lambda: server.subscribers("BTC") == 0)
            server.publish("BTC")
            assert await ws.receive(timeout=0.05) is None
        # The connection closed normally: iterating a subscription ends quietly.
        assert [event async for event in btc] == []


async def test_a_plain_connection_ends_its_subscriptions_with_the_close() -> None:
    async def one_then_close(ws: AioServer) -> None:
        await ws.receive(timeout=10)
        await ws.send(json.dumps({"type": "event", "channel": "BTC", "seq": 1}))
        await ws.close(1011, "boom")

    async with serve(one_then_close) as server:
        async with AioClient.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            btc = ws.subscribe(Event, subscribe="sub", match={"channel": "BTC"})
            seen = []
            with pytest.raises(ConnectionClosed) as caught:
                async for event in btc:
                    seen.append(event.seq)
            assert seen == [1]
            assert caught.value.reason == 1011


async def test_a_silent_feed_closes_a_plain_connection() -> None:
    async with PubSubServer() as server:
        async with AioClient.connect(server.url) as ws:
            btc = ws.subscribe(
                Event,
                subscribe={"op": "subscribe", "channel": "BTC"},
                match={"channel": "X"},
                idle_timeout=0.1,
            )
            with pytest.raises(ConnectionClosed) as caught:
                await btc.receive(timeout=10)
            assert (caught.value.reason, caught.value.message) == (1011, "idle timeout")


async def test_iterating_a_plain_connection_skips_what_subscriptions_take() -> None:
    async def mixed(ws: AioServer) -> None:
        await ws.receive(timeout=10)
        for seq in (1, 2):
            await ws.send(json.dumps({"type": "event", "channel": "BTC", "seq": seq}))
            await ws.send(json.dumps({"type": "other", "n": seq}))
        await ws.close()

    async with serve(mixed) as server:
        async with AioClient.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            btc = ws.subscribe(Event, subscribe="go", match={"type": "event"})
            await btc.start()
            others = [json.loads(message)["n"] async for message in ws]
            assert others == [1, 2]
            assert [event.seq async for event in btc] == [1, 2]
