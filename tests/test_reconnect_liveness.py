"""Liveness of reconnected clients: keepalive by default, idle_timeout, and why a drop happened.

A :class:`~simple_websocket.testing.FaultProxy` between client and server makes the
server vanish without a FIN (blackhole) or cuts the connection. Times are tiny and
scaled by ``SIMPLE_WEBSOCKET_TEST_TIME_FACTOR``; every wait is on an event or a
condition, bounded by a timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import simple_websocket
from simple_websocket import AioClient, Backoff, ConnectionClosed, Disconnected
from simple_websocket.aiows import RECONNECT_PING_INTERVAL, RECONNECT_PING_TIMEOUT
from simple_websocket.reconnect import ReconnectingClient
from simple_websocket.testing import FaultProxy, Script, ScriptedServer
from tests.asyncio.rawpeer import wait_for_condition
from tests.conformance.harness import FACTOR

pytestmark = pytest.mark.timeout(30)

INTERVAL = 0.1 * FACTOR
TIMEOUT = 0.1 * FACTOR
# Timers fire late on a loaded machine, and the failed connection needs a few turns
# of the event loop to be closed: this much is allowed beyond the nominal bound.
SLACK = 0.5 * FACTOR


class Drops:
    """An ``on_disconnect`` hook that records each drop and when it was reported."""

    def __init__(self) -> None:
        self.errors: list[Disconnected] = []
        self.times: list[float] = []
        self._event = asyncio.Event()

    def __call__(self, exc: Disconnected) -> None:
        self.errors.append(exc)
        self.times.append(asyncio.get_running_loop().time())
        self._event.set()

    async def wait(self, count: int = 1, timeout: float = 10) -> Disconnected:
        async with asyncio.timeout(timeout):
            while len(self.errors) < count:
                self._event.clear()
                await self._event.wait()
        return self.errors[count - 1]


async def wait_state(client: ReconnectingClient, state: str, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while client.state != state:
        if not await client._wait_change(deadline):
            raise TimeoutError(f"state {client.state!r}, expected {state!r}")


# -- defaults -------------------------------------------------------------------------------


async def test_a_plain_client_keeps_the_1_1_default_no_pings(ws_server):
    ws = await AioClient.connect(ws_server.url)
    assert (ws.ping_interval, ws.ping_timeout) == (None, None)
    await ws.close()
    async with AioClient.connect(ws_server.url) as ws:
        assert (ws.ping_interval, ws.ping_timeout) == (None, None)


async def test_a_reconnecting_client_pings_by_default(ws_server):
    assert (RECONNECT_PING_INTERVAL, RECONNECT_PING_TIMEOUT) == (20, 20)
    async with AioClient.connect(ws_server.url, reconnect=True) as client:
        assert client.connection is not None
        assert client.connection.ping_interval == 20
        assert client.connection.ping_timeout == 20


async def test_the_connections_of_async_for_ping_by_default(ws_server):
    async for ws in AioClient.connect(ws_server.url):
        assert (ws.ping_interval, ws.ping_timeout) == (20, 20)
        await ws.close()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"ping_interval": None}, (None, 20)),
        ({"ping_interval": 5}, (5, 20)),
        ({"ping_timeout": 3}, (20, 3)),
        ({"ping_interval": 7, "ping_timeout": None}, (7, None)),
    ],
)
async def test_given_keepalive_options_win(ws_server, options, expected):
    async with AioClient.connect(ws_server.url, reconnect=True, **options) as client:
        assert client.connection is not None
        assert (client.connection.ping_interval, client.connection.ping_timeout) == expected
    async for ws in AioClient.connect(ws_server.url, **options):
        assert (ws.ping_interval, ws.ping_timeout) == expected
        await ws.close()
    ws = await AioClient.connect(ws_server.url, **options)
    given = (options.get("ping_interval"), options.get("ping_timeout"))
    assert (ws.ping_interval, ws.ping_timeout) == given
    await ws.close()


def test_idle_timeout_needs_a_reconnecting_client_and_a_positive_value():
    with pytest.raises(ValueError, match="idle_timeout needs a reconnecting client"):
        AioClient.connect("ws://127.0.0.1:1/", idle_timeout=5)
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="idle_timeout must be > 0 seconds"):
            AioClient.connect("ws://127.0.0.1:1/", reconnect=True, idle_timeout=bad)


# -- a peer that vanishes without a FIN -----------------------------------------------------


async def test_reconnecting_client_detects_a_blackholed_server_and_reconnects():
    loop = asyncio.get_running_loop()
    drops = Drops()
    async with ScriptedServer() as server, FaultProxy(server.port) as proxy:
        client = AioClient.connect(
            proxy.url,
            reconnect=Backoff(initial=0.01, maximum=0.05, jitter=0),
            ping_interval=INTERVAL,
            ping_timeout=TIMEOUT,
            on_disconnect=drops,
        )
        async with client:
            await client.send("before")
            assert await client.receive(timeout=5) == "before"
            first = client.connection
            assert first is not None
            # Keepalive works while the server is reachable: a ping was answered.
            await wait_for_condition(lambda: first.latency is not None)
            proxy.blackhole()
            vanished = loop.time()
            exc = await drops.wait()
            assert drops.times[0] - vanished <= INTERVAL + TIMEOUT + SLACK
            assert isinstance(exc, ConnectionClosed)
            assert (exc.reason, exc.message, exc.cause) == (
                1011,
                "keepalive ping timeout",
                "ping_timeout",
            )
            # A new connection, and messages flow again.
            await wait_state(client, "open")
            assert client.connection is not first
            assert client.reconnects == 1
            await client.send("after")
            assert await client.receive(timeout=5) == "after"
            assert proxy.connections == 2
            assert server.received == ["before", "after"]


async def test_async_for_detects_a_blackholed_server_and_opens_a_new_connection():
    loop = asyncio.get_running_loop()
    async with ScriptedServer() as server, FaultProxy(server.port) as proxy:
        seen: list[str | bytes] = []
        closes: list[tuple[int, str | None, float]] = []
        async for ws in AioClient.connect(
            proxy.url,
            retry=Backoff(initial=0.01, maximum=0.05, jitter=0),
            ping_interval=INTERVAL,
            ping_timeout=TIMEOUT,
        ):
            await ws.send(f"hello {len(closes)}")
            message = await ws.receive(timeout=5)
            assert message is not None
            seen.append(message)
            if closes:
                await ws.close()
                break
            await wait_for_condition(lambda ws=ws: ws.latency is not None)
            proxy.blackhole()
            vanished = loop.time()
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive()
            closes.append((info.value.reason, info.value.message, loop.time() - vanished))
        assert seen == ["hello 0", "hello 1"]
        [(code, reason, elapsed)] = closes
        assert (code, reason) == (1011, "keepalive ping timeout")
        assert elapsed <= INTERVAL + TIMEOUT + SLACK
        assert proxy.connections == 2


async def test_ping_interval_none_turns_keepalive_off():
    async with ScriptedServer() as server, FaultProxy(server.port) as proxy:
        drops = Drops()
        async with AioClient.connect(
            proxy.url, reconnect=True, ping_interval=None, on_disconnect=drops
        ) as client:
            assert client.connection is not None
            assert client.connection.ping_interval is None
            proxy.blackhole()
            # Nothing notices: no drop within many ping timeouts.
            with pytest.raises(TimeoutError):
                await drops.wait(timeout=4 * (INTERVAL + TIMEOUT))
            assert client.connected
            proxy.cut()
            assert (await drops.wait()).cause == "network_error"


# -- idle_timeout ------------------------------------------------------------------------------


class Feed:
    """A server whose connections send ``tick N`` every ``period`` seconds (forever
    with ``period``; never without) and record how each one was closed."""

    def __init__(self, period: float | None) -> None:
        self.period = period
        self.closes: list[tuple[int, str | None]] = []
        self.closed = asyncio.Event()

    async def handler(self, ws: simple_websocket.AioServer) -> None:
        n = 0
        try:
            while True:
                if self.period is None:
                    await ws.wait_closed()
                    break
                n += 1
                await ws.send(f"tick {n}")
                # The feed's own pace (the behaviour under test), not a wait for a
                # condition.
                await asyncio.sleep(self.period)
        except ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            self.closes.append((ws.close_reason, ws.close_message))
            self.closed.set()


async def test_a_silent_feed_is_taken_as_dead_after_idle_timeout():
    idle = 0.2 * FACTOR
    loop = asyncio.get_running_loop()
    feed = Feed(period=None)
    drops = Drops()
    opened: list[float] = []
    async with simple_websocket.serve(feed.handler) as server:
        client = AioClient.connect(
            server.url,
            reconnect=Backoff(initial=0.01, jitter=0),
            idle_timeout=idle,
            ping_interval=None,
            # Runs before the connection is handed over and the idle check starts.
            on_connect=lambda ws: opened.append(loop.time()),
            on_disconnect=drops,
        )
        async with client:
            assert client.idle_timeout == idle
            reader = asyncio.ensure_future(client.receive())
            exc = await drops.wait()
            elapsed = drops.times[0] - opened[0]
            # Never sooner than idle_timeout; at the latest twice that (the check
            # runs every idle_timeout), plus scheduling.
            assert idle <= elapsed <= 2 * idle + SLACK
            assert (exc.reason, exc.message, exc.cause) == (1011, "idle timeout", "idle_timeout")
            # The server was told, with a close frame.
            async with asyncio.timeout(10):
                await feed.closed.wait()
            assert feed.closes == [(1011, "idle timeout")]
            await wait_state(client, "open")
            assert client.reconnects == 1
            assert not reader.done()
            reader.cancel()


async def test_a_feed_every_200_ms_is_never_taken_for_idle_with_500_ms():
    feed = Feed(period=0.2)
    drops = Drops()
    async with simple_websocket.serve(feed.handler) as server:
        async with AioClient.connect(
            server.url, reconnect=True, idle_timeout=0.5, on_disconnect=drops
        ) as client:
            ticks = [await client.receive(timeout=5) for _ in range(12)]
            assert ticks == [f"tick {n}" for n in range(1, 13)]
            assert client.reconnects == 0
            assert drops.errors == []


async def test_a_busy_application_is_not_an_idle_feed():
    """Nobody waits for a message: the client does not fail the connection."""
    idle = 0.1 * FACTOR
    feed = Feed(period=None)
    drops = Drops()
    async with simple_websocket.serve(feed.handler) as server:
        async with AioClient.connect(
            server.url, reconnect=True, idle_timeout=idle, ping_interval=None, on_disconnect=drops
        ) as client:
            with pytest.raises(TimeoutError):
                await drops.wait(timeout=5 * idle)
            # Once the application waits for a message, the silence counts.
            reader = asyncio.ensure_future(client.receive())
            assert (await drops.wait()).cause == "idle_timeout"
            reader.cancel()


async def test_idle_check_stops_with_the_client():
    feed = Feed(period=None)
    async with simple_websocket.serve(feed.handler) as server:
        client = await AioClient.connect(server.url, reconnect=True, idle_timeout=60)
        assert client._idle_handle is not None
        await client.close()
        assert client._idle_handle is None


# -- why on_disconnect was called --------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            Script(close_after=0, close_code=1012, close_reason="restart"),
            (1012, "restart", "closed"),
        ),
        (Script(close_after=0, close_code=1001), (1001, None, "closed")),
        (Script(drop_after=0), (1006, None, "network_error")),
    ],
)
async def test_on_disconnect_says_why(ws_server, script, expected):
    ws_server.script = script
    drops = Drops()
    client = AioClient.connect(
        ws_server.url, reconnect=Backoff(initial=0.01, jitter=0), on_disconnect=drops
    )
    async with client:
        exc = await drops.wait()
        ws_server.script = Script()
    assert isinstance(exc, Disconnected)
    assert (exc.reason, exc.message, exc.cause) == expected
    assert str(exc).startswith(f"Connection closed: {expected[0]}")
    assert str(exc).endswith(f"({expected[2]})")


async def test_a_cut_connection_is_a_network_error():
    drops = Drops()
    async with ScriptedServer() as server, FaultProxy(server.port) as proxy:
        async with AioClient.connect(
            proxy.url, reconnect=Backoff(initial=0.01, jitter=0), on_disconnect=drops
        ) as client:
            proxy.cut()
            exc = await drops.wait()
            assert (exc.reason, exc.cause) == (1006, "network_error")
            await wait_state(client, "open")
            await client.send("back")
            assert await client.receive(timeout=5) == "back"


async def test_existing_hooks_that_take_a_connection_closed_keep_working(ws_server):
    reasons: list[int] = []

    def hook(exc: ConnectionClosed) -> None:
        reasons.append(exc.reason)

    ws_server.script = Script(close_after=0, close_code=1012)
    client: Any = AioClient.connect(
        ws_server.url, reconnect=Backoff(initial=0.01, jitter=0), on_disconnect=hook
    )
    async with client:
        await wait_for_condition(lambda: bool(reasons))
        ws_server.script = Script()
    assert reasons[0] == 1012
