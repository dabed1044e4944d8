"""The subscription router's rules, over an in-memory feed.

The router only reads messages and sends (re)subscriptions through the callables its
owner gives it, so these tests drive it with a feed made of an asyncio queue: every
routing, sequence and backpressure rule, without sockets. Connections and the
reconnecting client are tested over loopback in tests/test_subscriptions_live.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from pydantic import BaseModel

from simple_websocket.errors import ConnectionClosed, DecodeError, GapError
from simple_websocket.subscriptions import Router, Subscription

pytestmark = pytest.mark.timeout(10)


class Tick(BaseModel):
    channel: str
    seq: int
    price: float = 0.0


class Subscribe(BaseModel):
    op: str = "subscribe"
    channel: str
    since: int | None = None


class Feed:
    """A connection made of a queue: what the test puts in is what the router reads."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.sent: list[Any] = []
        self.up = True
        self.end: BaseException | None = None
        self.changed = asyncio.Event()

    async def send(self, data: Any) -> None:
        if not self.up:
            raise ConnectionClosed(1006)
        try:
            self.sent.append(json.loads(data))
        except ValueError:
            self.sent.append(data)
        self.changed.set()

    async def read(self, timeout: float | None) -> Any:
        if self.end is not None and self.inbox.empty():
            raise self.end
        try:
            item = await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def current(self) -> Feed | None:
        return self if self.up else None

    def put(self, *messages: Any) -> None:
        for message in messages:
            self.inbox.put_nowait(message if isinstance(message, str) else json.dumps(message))

    def tick(self, channel: str, seq: int) -> None:
        self.put({"channel": channel, "seq": seq, "price": float(seq)})


def router_for(feed: Feed, **options: Any) -> Router:
    return Router(
        feed.read,
        feed.current,
        lambda exc: isinstance(exc, ConnectionClosed) and exc.reason in (1000, 1001),
        **options,
    )


def ticks(router: Router, channel: str, **options: Any) -> Subscription[Tick]:
    options.setdefault("sequence", lambda tick: tick.seq)
    return router.subscribe(
        Tick,
        subscribe=lambda last: Subscribe(channel=channel, since=last),
        unsubscribe={"op": "unsubscribe", "channel": channel},
        match={"channel": channel},
        **options,
    )


async def take(sub: Subscription[Tick], n: int) -> list[int]:
    return [(await sub.receive(timeout=5)).seq for _ in range(n)]  # type: ignore[union-attr]


async def test_messages_go_to_the_subscription_that_matches() -> None:
    feed = Feed()
    router = router_for(feed)
    btc, eth = ticks(router, "BTC"), ticks(router, "ETH")
    await btc.start()
    await eth.start()
    assert feed.sent == [
        {"op": "subscribe", "channel": "BTC", "since": None},
        {"op": "subscribe", "channel": "ETH", "since": None},
    ]
    feed.tick("BTC", 1)
    feed.put({"type": "heartbeat"})
    feed.tick("ETH", 7)
    feed.put("not json")
    feed.tick("BTC", 2)
    assert await take(eth, 1) == [7]
    assert await take(btc, 2) == [1, 2]
    assert json.loads(await router.receive(timeout=5) or "") == {"type": "heartbeat"}
    assert await router.receive(timeout=5) == "not json"
    assert await router.receive(timeout=0) is None
    assert (btc.received, eth.received, btc.last, eth.last) == (2, 1, 2, 7)
    tick = await (feed.tick("BTC", 3) or btc.receive(timeout=5))
    assert isinstance(tick, Tick)


async def test_a_callable_match_and_the_first_subscription_wins() -> None:
    feed = Feed()
    router = router_for(feed)
    everything = router.subscribe(Tick, subscribe="sub-all", match=lambda data: "seq" in data)
    btc = ticks(router, "BTC")
    await everything.start()
    await btc.start()
    assert feed.sent[0] == "sub-all"
    feed.tick("BTC", 1)
    assert (await everything.receive(timeout=5)).channel == "BTC"  # type: ignore[union-attr]
    assert await btc.receive(timeout=0) is None
    await everything.close()
    feed.tick("BTC", 2)
    assert await take(btc, 1) == [2]


async def test_duplicates_are_dropped_and_counted() -> None:
    feed = Feed()
    router = router_for(feed)
    btc = await ticks(router, "BTC").start()
    for seq in (1, 2, 2, 1, 3, 3, 4):
        feed.tick("BTC", seq)
    assert await take(btc, 4) == [1, 2, 3, 4]
    assert (btc.duplicates, btc.gaps, btc.last) == (3, 0, 4)


async def test_on_gap_ignore_goes_on() -> None:
    feed = Feed()
    btc = await ticks(router_for(feed), "BTC", on_gap="ignore").start()
    for seq in (1, 2, 5, 6):
        feed.tick("BTC", seq)
    assert await take(btc, 4) == [1, 2, 5, 6]
    assert btc.gaps == 1


async def test_on_gap_raise_raises_then_goes_on() -> None:
    feed = Feed()
    btc = await ticks(router_for(feed), "BTC", on_gap="raise").start()
    for seq in (1, 2, 5, 6):
        feed.tick("BTC", seq)
    assert await take(btc, 2) == [1, 2]
    with pytest.raises(GapError) as caught:
        await btc.receive(timeout=5)
    assert (caught.value.expected, caught.value.received) == (3, 5)
    assert "2 messages missing" in str(caught.value)
    assert await take(btc, 2) == [5, 6]
    assert btc.gaps == 1


async def test_on_gap_resubscribe_asks_again_and_fills_the_gap_in_order() -> None:
    feed = Feed()
    btc = await ticks(router_for(feed), "BTC").start()
    feed.sent.clear()
    for seq in (1, 2, 5, 6):
        feed.tick("BTC", seq)
    assert await take(btc, 2) == [1, 2]
    feed.changed.clear()
    receiving = asyncio.ensure_future(btc.receive(timeout=5))
    await feed.changed.wait()
    # Asked again from the last one received; the server replays 3 onwards.
    assert feed.sent == [{"op": "subscribe", "channel": "BTC", "since": 2}]
    assert not receiving.done()
    for seq in (3, 4, 5, 6, 7):
        feed.tick("BTC", seq)
    assert (await receiving).seq == 3  # type: ignore[union-attr]
    assert await take(btc, 4) == [4, 5, 6, 7]
    assert (btc.gaps, btc.duplicates, btc.last) == (1, 2, 7)


async def test_on_gap_resubscribe_gives_up_after_gap_timeout() -> None:
    feed = Feed()
    btc = await ticks(router_for(feed), "BTC", gap_timeout=0.05).start()
    for seq in (1, 4, 5):
        feed.tick("BTC", seq)
    assert await take(btc, 1) == [1]
    with pytest.raises(GapError) as caught:
        await btc.receive(timeout=5)
    assert (caught.value.expected, caught.value.received) == (2, 4)
    assert await take(btc, 2) == [4, 5]
    feed.tick("BTC", 6)
    assert await take(btc, 1) == [6]


async def test_a_full_queue_pauses_reading_and_loses_nothing() -> None:
    feed = Feed()
    router = router_for(feed)
    btc = await ticks(router, "BTC", max_queue=2).start()
    for seq in range(1, 6):
        feed.tick("BTC", seq)
    feed.put({"type": "status"})
    # receive() reads for the unmatched message: it routes ticks until the BTC queue
    # is full and the next tick is held, then waits.
    assert await router.receive(timeout=0.05) is None
    assert len(btc._queue) == 2
    assert feed.inbox.qsize() == 3  # reading paused: 3 is held; 4, 5, the status wait
    got = []
    unmatched = asyncio.ensure_future(router.receive(timeout=5))
    got += await take(btc, 5)
    assert got == [1, 2, 3, 4, 5]
    assert json.loads(await unmatched or "") == {"type": "status"}


async def test_unmatched_messages_not_received_pause_reading_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed = Feed()
    router = router_for(feed, max_unmatched=3)
    btc = await ticks(router, "BTC").start()
    for n in range(5):
        feed.put({"type": "status", "n": n})
    feed.tick("BTC", 1)
    with caplog.at_level(logging.WARNING, logger="simple_websocket"):
        assert await btc.receive(timeout=0.05) is None
    assert "wait for receive()" in caplog.text
    received = [json.loads(await router.receive(timeout=5) or "")["n"] for _ in range(5)]
    assert received == [0, 1, 2, 3, 4]
    assert await take(btc, 1) == [1]


async def test_subscriptions_are_sent_again_on_a_new_connection_in_order() -> None:
    feed = Feed()
    router = router_for(feed)
    btc, eth = ticks(router, "BTC"), ticks(router, "ETH")
    feed.up = False
    await btc.start()  # not connected: sent on the next connection
    await eth.start()
    assert feed.sent == []
    feed.up = True
    await router.connected(feed)
    await router.connected(feed)  # once per connection
    await btc.start()
    assert [m["channel"] for m in feed.sent] == ["BTC", "ETH"]
    feed.tick("BTC", 1)
    feed.tick("BTC", 2)
    assert await take(btc, 2) == [1, 2]
    second = Feed()
    await router.connected(second)
    assert second.sent == [
        {"op": "subscribe", "channel": "BTC", "since": 2},
        {"op": "subscribe", "channel": "ETH", "since": None},
    ]


async def test_leaving_sends_unsubscribe_once_and_later_matches_are_unmatched() -> None:
    feed = Feed()
    router = router_for(feed)
    async with ticks(router, "BTC") as btc:
        feed.tick("BTC", 1)
        assert await take(btc, 1) == [1]
    await btc.close()
    assert feed.sent[-1] == {"op": "unsubscribe", "channel": "BTC"}
    assert len(feed.sent) == 2
    feed.tick("BTC", 2)
    assert json.loads(await router.receive(timeout=5) or "")["seq"] == 2
    with pytest.raises(RuntimeError):
        await btc.start()
    assert [tick async for tick in btc] == []


async def test_iteration_ends_on_a_normal_end_after_the_queued_messages() -> None:
    feed = Feed()
    router = router_for(feed)
    btc = await ticks(router, "BTC").start()
    feed.tick("BTC", 1)
    feed.tick("BTC", 2)
    feed.end = ConnectionClosed(1000, "bye")
    assert [tick.seq async for tick in btc] == [1, 2]
    with pytest.raises(ConnectionClosed):
        await router.receive(timeout=5)


async def test_an_abnormal_end_is_raised_after_the_queued_messages() -> None:
    feed = Feed()
    btc = await ticks(router_for(feed), "BTC").start()
    feed.tick("BTC", 1)
    feed.end = ConnectionClosed(1011, "boom")
    seen = []
    with pytest.raises(ConnectionClosed) as caught:
        async for tick in btc:
            seen.append(tick.seq)
    assert seen == [1]
    assert caught.value.reason == 1011


@pytest.mark.parametrize("policy", ["raise", "skip", "callable"])
async def test_a_matching_message_that_fails_validation(policy: str) -> None:
    feed = Feed()
    errors: list[DecodeError] = []
    on_invalid: Any = errors.append if policy == "callable" else policy
    btc = await ticks(router_for(feed), "BTC", on_invalid=on_invalid).start()
    feed.put({"channel": "BTC", "seq": "not a number"})
    feed.tick("BTC", 1)
    if policy == "raise":
        with pytest.raises(DecodeError):
            await btc.receive(timeout=5)
    assert await take(btc, 1) == [1]
    assert len(errors) == (policy == "callable")


async def test_cancelling_a_receive_loses_nothing() -> None:
    feed = Feed()
    btc = await ticks(router_for(feed), "BTC").start()
    waiting = asyncio.ensure_future(btc.receive())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    feed.tick("BTC", 1)
    assert await take(btc, 1) == [1]


async def test_invalid_options_are_refused_when_made() -> None:
    router = router_for(Feed())
    with pytest.raises(ValueError, match="on_gap"):
        ticks(router, "BTC", on_gap="retry")
    with pytest.raises(ValueError, match="max_queue"):
        ticks(router, "BTC", max_queue=0)
    with pytest.raises(ValueError, match="gap_timeout"):
        ticks(router, "BTC", gap_timeout=0)
    with pytest.raises(TypeError, match="match"):
        router.subscribe(Tick, subscribe="s", match=["channel"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="match"):
        router.subscribe(Tick, subscribe="s", match={})
