"""The examples of docs/howto/testing.md, as a user would write them.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from __future__ import annotations

import asyncio

from simple_websocket import AioClient, Backoff, Disconnected
from simple_websocket.testing import FaultProxy, Script, ScriptedServer


async def test_bot_survives_a_restart(ws_server: ScriptedServer) -> None:
    client = await AioClient.connect(
        ws_server.url,
        reconnect=Backoff(initial=0.01),
    )
    await client.send("before")
    await ws_server.wait_for_messages(1)
    await ws_server.restart()  # same port; connections get 1001
    await client.send("after")  # kept in the outbox if needed
    await ws_server.wait_for_messages(2)
    assert ws_server.received == ["before", "after"]
    await client.close()
    ws_server.script = Script(close_after=1)


async def test_bot_notices_a_dead_network(ws_server: ScriptedServer) -> None:
    drops: asyncio.Queue[Disconnected] = asyncio.Queue()
    async with FaultProxy(ws_server.port) as proxy:
        client = AioClient.connect(
            proxy.url,
            reconnect=Backoff(initial=0.01),
            ping_interval=0.1,  # tiny values: the test takes a second
            ping_timeout=0.1,
            on_disconnect=drops.put_nowait,
        )
        async with client:
            proxy.blackhole()  # silence, no FIN
            drop = await asyncio.wait_for(drops.get(), 5)
            assert drop.cause == "ping_timeout"
            await client.send("back")  # sent on the new connection
            await ws_server.wait_for_messages(1)
