"""The testing toolkit, driven by our client."""

import asyncio
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest
import websockets

from simple_websocket import AioClient, ConnectionClosed, ConnectionError, HandshakeRejected
from simple_websocket.testing import FaultProxy, PubSubServer, Script, ScriptedServer, free_port


async def test_fixture_echoes_and_records(ws_server):
    async with AioClient.connect(ws_server.url) as ws:
        await ws.send("a")
        await ws.send(b"b")
        assert await ws.receive(timeout=5) == "a"
        assert await ws.receive(timeout=5) == b"b"
    assert await ws_server.wait_for_messages(2) == ["a", b"b"]
    assert ws_server.connections == 1


async def test_greeting_and_close_after(ws_server):
    ws_server.script = Script(
        greeting=["hi", "there"], close_after=1, close_code=4001, close_reason="bye"
    )
    ws = await AioClient.connect(ws_server.url)
    assert await ws.receive(timeout=5) == "hi"
    assert await ws.receive(timeout=5) == "there"
    await ws.send("one")
    assert await ws.receive(timeout=5) == "one"
    with pytest.raises(ConnectionClosed) as info:
        await ws.receive(timeout=5)
    assert (info.value.reason, info.value.message) == (4001, "bye")


async def test_close_right_after_greeting(ws_server):
    ws_server.script = Script(close_after=0, close_code=1012)
    ws = await AioClient.connect(ws_server.url)
    with pytest.raises(ConnectionClosed) as info:
        await ws.receive(timeout=5)
    assert info.value.reason == 1012


@pytest.mark.parametrize("after", [0, 2])
async def test_drop_after_aborts_without_close_frame(ws_server, after):
    ws_server.script = Script(drop_after=after)
    ws = await AioClient.connect(ws_server.url)
    for i in range(after):
        await ws.send(str(i))
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await ws.receive(timeout=5)
    assert info.value.reason == 1006


async def test_refuse_with_status_and_retry_after(ws_server):
    ws_server.script = Script(refuse=429, retry_after=2)
    with pytest.raises(HandshakeRejected) as info:
        await AioClient.connect(ws_server.url)
    assert info.value.status_code == 429
    assert info.value.header("Retry-After") == "2"
    assert ws_server.refused == 1
    assert ws_server.connections == 0


@pytest.mark.timeout(10)
async def test_withheld_pongs_trip_the_client_keepalive(ws_server):
    ws_server.script = Script(withhold_pongs=True)
    ws = await AioClient.connect(ws_server.url, ping_interval=0.05, ping_timeout=0.05)
    with pytest.raises(ConnectionClosed) as info:
        await ws.receive(timeout=5)
    assert info.value.reason == 1011


@pytest.mark.timeout(20)
async def test_slow_consumer_blocks_the_sender_until_released(ws_server):
    ws_server.script = Script(slow=True, echo=False)
    payload = b"x" * 65536
    async with AioClient.connect(ws_server.url, compression=False) as ws:
        sender = asyncio.create_task(_send_many(ws, payload, 400))  # 26 MB
        done, _ = await asyncio.wait({sender}, timeout=0.2)
        assert not done  # blocked by write backpressure
        ws_server.release()
        await asyncio.wait_for(sender, 15)
        await ws_server.wait_for_messages(400, timeout=15)


async def _send_many(ws, payload, count):
    for _ in range(count):
        await ws.send(payload)


async def test_restart_keeps_the_port_and_send_all():
    port = free_port()
    async with ScriptedServer(port=port) as server:
        assert server.port == port
        ws = await AioClient.connect(server.url)
        await server.wait_for_connections(1)
        await server.send_all("broadcast")
        assert await ws.receive(timeout=5) == "broadcast"
        await server.restart()
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive(timeout=5)
        assert info.value.reason == 1001
        ws2 = await AioClient.connect(server.url)
        await ws2.send("again")
        assert await ws2.receive(timeout=5) == "again"
        await ws2.close()
        assert server.port == port


async def test_factory_makes_independent_servers(ws_server_factory):
    a = await ws_server_factory(Script(greeting=["a"]))
    b = await ws_server_factory(Script(greeting=["b"]), max_queue=4)
    assert a.port != b.port
    async with AioClient.connect(a.url) as wa, AioClient.connect(b.url) as wb:
        assert await wa.receive(timeout=5) == "a"
        assert await wb.receive(timeout=5) == "b"


async def test_wait_until_times_out(ws_server):
    with pytest.raises(TimeoutError):
        await ws_server.wait_for_messages(1, timeout=0.01)


async def test_the_documented_example(ws_server):
    from simple_websocket import Backoff

    client = await AioClient.connect(ws_server.url, reconnect=Backoff(initial=0.01))
    await client.send("before")
    await ws_server.wait_for_messages(1)
    await ws_server.restart()  # same port; connections get 1001
    await client.send("after")  # kept in the outbox if needed
    await ws_server.wait_for_messages(2)
    assert ws_server.received == ["before", "after"]
    await client.close()


# -- the reference publish/subscribe server ------------------------------------------------


async def _next_json(ws, **match):
    """The next message whose fields include ``match``, skipping others."""
    while True:
        message = json.loads(await ws.recv())
        if all(message.get(k) == v for k, v in match.items()):
            return message


async def test_pubsub_replays_history_since_a_sequence_number():
    async with PubSubServer(history=3) as server:
        for n in range(5):
            server.publish("BTC", n)
        assert server.last("BTC") == 5
        async with websockets.connect(server.url) as ws:
            await ws.send(json.dumps({"op": "subscribe", "channel": "BTC", "since": 1}))
            ack = await _next_json(ws, type="subscribed")
            assert ack == {"type": "subscribed", "channel": "BTC", "last": 5}
            # Only the last 3 are kept: 3, 4, 5 (2 is gone).
            seqs = [(await _next_json(ws, type="event"))["seq"] for _ in range(3)]
            assert seqs == [3, 4, 5]
            server.publish("BTC", "live")
            live = await _next_json(ws, type="event")
            assert (live["seq"], live["data"]) == (6, "live")
            await ws.send(json.dumps({"op": "subscribe", "channel": "ETH", "since": None}))
            await _next_json(ws, type="subscribed", channel="ETH")
            server.publish("ETH", 1)
            assert (await _next_json(ws, type="event"))["channel"] == "ETH"
        assert [m["channel"] for m in server.subscribes] == ["BTC", "ETH"]


async def test_pubsub_runs_each_request_once_and_keeps_history_across_restarts():
    async with PubSubServer(handler=lambda request: request["params"] * 2) as server:
        server.publish("BTC", "before")
        async with websockets.connect(server.url) as ws:
            request = {"op": "request", "id": "r1", "params": 21}
            await ws.send(json.dumps(request))
            await ws.send(json.dumps(request))  # sent again: deduplicated by id
            for _ in range(2):
                response = await _next_json(ws, type="response")
                assert response == {"type": "response", "id": "r1", "result": 42}
        assert (server.executed, server.answered) == (1, 2)
        await server.restart()
        async with websockets.connect(server.url) as ws:
            await ws.send(json.dumps({"op": "subscribe", "channel": "BTC", "since": 0}))
            event = await _next_json(ws, type="event")
            assert (event["seq"], event["data"]) == (1, "before")
            await ws.send(json.dumps(request))
            assert (await _next_json(ws, type="response"))["result"] == 42
        assert server.executed == 1


# -- FaultProxy ---------------------------------------------------------------------------


async def test_fault_proxy_forwards_both_ways_and_counts(ws_server):
    async with FaultProxy(ws_server.port) as proxy:
        assert proxy.url == f"ws://127.0.0.1:{proxy.port}/"
        async with AioClient.connect(proxy.url) as ws:
            for i in range(50):
                await ws.send(f"m{i}")
            assert [await ws.receive(timeout=5) for _ in range(50)] == [f"m{i}" for i in range(50)]
            big = bytes(range(256)) * 4096  # 1 MiB: flow control through the proxy
            await ws.send(big)
            assert await ws.receive(timeout=10) == big
            assert proxy.connections == 1
            assert proxy.open_connections == 1
        # The client's close went through, and so did the server's end of TCP.
        await proxy.wait_until(lambda: proxy.open_connections == 0)


async def test_fault_proxy_cut_aborts_every_connection_and_accepts_new_ones(ws_server):
    async with FaultProxy(ws_server.port) as proxy:
        a = await AioClient.connect(proxy.url)
        b = await AioClient.connect(proxy.url)
        await proxy.wait_for_connections(2)
        proxy.cut()
        for ws in (a, b):
            with pytest.raises(ConnectionClosed) as info:
                await ws.receive(timeout=5)
            assert info.value.reason == 1006
        await ws_server.wait_until(lambda: not ws_server.active)
        async with AioClient.connect(proxy.url) as c:
            await c.send("again")
            assert await c.receive(timeout=5) == "again"
        assert proxy.connections == 3


async def test_fault_proxy_blackhole_holds_everything_and_restore_loses_nothing(ws_server):
    async with FaultProxy(ws_server.port) as proxy:
        ws = await AioClient.connect(proxy.url)
        await ws.send("before")
        assert await ws.receive(timeout=5) == "before"
        proxy.blackhole()
        await ws.send("held")
        # Nothing goes through, and nothing is closed on either side.
        assert await ws.receive(timeout=0.3) is None
        assert ws_server.received == ["before"]
        assert ws.connected
        assert len(ws_server.active) == 1
        assert proxy.open_connections == 1
        # New connections are forwarded.
        async with AioClient.connect(proxy.url) as other:
            await other.send("other")
            assert await other.receive(timeout=5) == "other"
        proxy.restore()
        assert await ws.receive(timeout=5) == "held"
        assert ws_server.received == ["before", "other", "held"]
        await ws.close()


async def test_fault_proxy_blackhole_of_new_connections(ws_server):
    from simple_websocket import OpenTimeout

    async with FaultProxy(ws_server.port) as proxy:
        proxy.blackhole(new_connections=True)
        with pytest.raises(OpenTimeout):
            await AioClient.connect(proxy.url, open_timeout=0.3)
        pending = asyncio.ensure_future(AioClient.connect(proxy.url, open_timeout=10))
        await proxy.wait_for_connections(2)
        proxy.restore()
        ws = await asyncio.wait_for(pending, 10)
        await ws.send("through")
        assert await ws.receive(timeout=5) == "through"
        await ws.close()


async def test_fault_proxy_delay_holds_each_chunk_and_keeps_the_order(ws_server):
    delay = 0.1
    async with FaultProxy(ws_server.port, delay=delay) as proxy:
        loop = asyncio.get_running_loop()
        ws = await AioClient.connect(proxy.url)
        start = loop.time()
        await ws.send("ping")
        assert await ws.receive(timeout=5) == "ping"
        assert loop.time() - start >= 2 * delay  # there and back
        for i in range(20):
            await ws.send(str(i))
        assert [await ws.receive(timeout=5) for _ in range(20)] == [str(i) for i in range(20)]
        proxy.delay = 0
        start = loop.time()
        await ws.send("fast")
        assert await ws.receive(timeout=5) == "fast"
        await ws.close()
    with pytest.raises(ValueError, match="delay"):
        FaultProxy(1, delay=-1)


async def test_fault_proxy_with_its_target_down_closes_the_client_side():
    async with FaultProxy(free_port()) as proxy:
        with pytest.raises((OSError, ConnectionError)):
            await AioClient.connect(proxy.url, open_timeout=5)
        await proxy.wait_until(lambda: proxy.open_connections == 0)


async def test_the_documented_fault_proxy_example(ws_server):
    from simple_websocket import Backoff, Disconnected

    drops: asyncio.Queue[Disconnected] = asyncio.Queue()
    async with FaultProxy(ws_server.port) as proxy:
        client = AioClient.connect(
            proxy.url,
            reconnect=Backoff(initial=0.01),
            ping_interval=0.1,  # tiny values: the test runs in a second
            ping_timeout=0.1,
            on_disconnect=drops.put_nowait,
        )
        async with client:
            proxy.blackhole()  # silence, no FIN
            drop = await asyncio.wait_for(drops.get(), 5)
            assert drop.cause == "ping_timeout"
            await client.send("back")  # sent on the new connection
            await ws_server.wait_for_messages(1)


# -- the pytest plugin in a project of its own -------------------------------------------

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _fresh_project_env() -> dict[str, str]:
    """The environment without what the running pytest set for itself."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PYTEST_") and name != "PYTHONPATH"
    }


def test_the_documented_fixtures_work_in_a_fresh_project(tmp_path):
    """The testing how-to's examples pass in a project with no pytest configuration."""
    doc = (ROOT / "docs" / "howto" / "testing.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert len(blocks) == 2, "the how-to's examples changed: update this test"
    (tmp_path / "test_bot.py").write_text("\n\n".join(blocks))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA"],
        cwd=tmp_path,
        env=_fresh_project_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "2 passed" in output, output
    assert "not natively supported" not in output


def test_an_asyncio_mark_of_the_project_is_kept(tmp_path):
    (tmp_path / "test_marked.py").write_text(
        textwrap.dedent(
            """
            import asyncio

            import pytest

            pytestmark = pytest.mark.asyncio(loop_scope="module")
            loops = []

            async def test_first(ws_server):
                loops.append(asyncio.get_running_loop())

            async def test_second(ws_server):
                loops.append(asyncio.get_running_loop())
                # The module's loop scope, not a loop per test.
                assert loops[0] is loops[1]

            async def test_other_tests_keep_the_module_mark():
                pass
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        env=_fresh_project_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "3 passed" in output, output
