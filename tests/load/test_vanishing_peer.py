"""A peer that vanishes without a FIN is detected by keepalive, with close code 1011.

Between our side and its peer sits :class:`~tests.load.proxy.BlackholeProxy`. Once
the connection is shown to work (a keepalive ping was answered), the proxy starts
dropping every byte in both directions and closes nothing: no FIN, no reset, just
silence. Our side must notice through its keepalive (``ping_interval`` and
``ping_timeout``, tiny here and scaled by ``SIMPLE_WEBSOCKET_TEST_TIME_FACTOR``)
and fail the connection with 1011.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import simple_websocket
from simple_websocket import AioClient
from tests.asyncio.rawpeer import wait_for_condition
from tests.conformance.harness import (
    CLIENT_TARGETS,
    SERVER_TARGETS,
    ServerTarget,
    T,
    connect_client,
)

from .proxy import BlackholeProxy

pytestmark = pytest.mark.timeout(30)

INTERVAL = 4 * T
TIMEOUT = 4 * T


async def _detected(side: Any, loop: asyncio.AbstractEventLoop) -> float:
    start = loop.time()
    await asyncio.wait_for(side.wait_closed(), 10 * (INTERVAL + TIMEOUT) + 5)
    return loop.time() - start


@pytest.mark.parametrize("target", SERVER_TARGETS)
async def test_server_detects_vanished_client(target: str) -> None:
    loop = asyncio.get_running_loop()
    async with (
        ServerTarget(target, ping_interval=INTERVAL, ping_timeout=TIMEOUT) as server,
        BlackholeProxy(server.port) as proxy,
    ):
        client = await AioClient.connect(f"ws://127.0.0.1:{proxy.port}/")
        try:
            side = await server.accepted()
            await client.send("hello")
            assert await side.receive() == "hello"
            # Keepalive works while the client is there: a ping was answered.
            await wait_for_condition(lambda: side.ws.latency is not None)
            proxy.blackhole()
            elapsed = await _detected(side, loop)
            assert side.close_reason == 1011
            assert elapsed < 4 * (INTERVAL + TIMEOUT) + 2.0
            assert proxy.dropped > 0  # the pings (and the close frame) were lost
        finally:
            if client.transport is not None:
                client.transport.abort()


@pytest.mark.parametrize("target", CLIENT_TARGETS)
async def test_client_detects_vanished_server(target: str) -> None:
    loop = asyncio.get_running_loop()

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with (
        simple_websocket.serve(echo, close_timeout=1.0) as server,
        BlackholeProxy(server.port) as proxy,
    ):
        side = await connect_client(
            target,
            f"ws://127.0.0.1:{proxy.port}/",
            ping_interval=INTERVAL,
            ping_timeout=TIMEOUT,
        )
        try:
            await side.send("hello")
            assert await side.receive() == "hello"
            await wait_for_condition(lambda: side.ws.latency is not None)
            proxy.blackhole()
            elapsed = await _detected(side, loop)
            assert side.close_reason == 1011
            assert elapsed < 4 * (INTERVAL + TIMEOUT) + 2.0
        finally:
            side.abort()
            for conn in list(server.connections):
                if conn.transport is not None:
                    conn.transport.abort()
