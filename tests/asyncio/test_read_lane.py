"""The C lanes: reads for ``receive()`` and ``async for``, and the send lane.

With the C extension, a read of whole small messages is queued in C, and the
tasks waiting for a message are woken there, while the connection is in its plain
state (``_speedups.c``, ``lane_read``); a server's text message that starts a
burst is written there too (``send_lane``). Each test runs with the lanes and with
them turned off for every connection (the Python path, the reference; the
``read_path`` fixture) and expects the same results. Servers are real ones on
127.0.0.1 (port 0): ours, and the ``websockets`` library's for our client. The raw
peer writes one frame per write, so that each message is a read of its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websockets.asyncio.server

import simple_websocket
from simple_websocket import AioClient, serve

from . import rawpeer
from .conftest import ReadPath
from .rawpeer import TEXT, wait_for_condition

pytestmark = pytest.mark.timeout(20)


async def test_messages_read_one_at_a_time_reach_async_for(read_path: ReadPath) -> None:
    """An ``async for`` echo handler gets each message read alone; with the lane,
    none went through the Python read."""
    seen: list[str | bytes] = []

    async def handler(ws: Any) -> None:
        async for message in ws:
            seen.append(message)
            await ws.send(message)

    messages: list[str | bytes] = ["a", b"\x00\xff", "", b"", "ünïcødé €😀", "x" * 125] * 3
    async with serve(handler) as server:
        peer = await rawpeer.connect(server.port)
        for message in messages:
            if isinstance(message, str):
                await peer.send_text(message)
                assert (await peer.recv_data_frame()).text == message
            else:
                await peer.send_binary(message)
                assert (await peer.recv_data_frame()).payload == message
        assert read_path.python_reads == (0 if read_path.lane else len(messages))
        binary = sum(isinstance(m, bytes) for m in messages)
        assert read_path.python_sends == (binary if read_path.lane else len(messages))
        await peer.send_close(1000)
        assert (await peer.expect_close()).close_code == 1000
        await peer.expect_eof()
    assert seen == messages


async def test_messages_queue_until_the_inbox_is_full_then_reading_pauses(
    read_path: ReadPath,
) -> None:
    """Nobody receives: messages read alone queue up to max_queue, then reading
    pauses (the read that fills the inbox takes the Python path, which pauses it);
    once the handler reads, every message arrives, in order."""
    release = asyncio.Event()
    connections: list[Any] = []
    received: list[str | bytes] = []

    async def handler(ws: Any) -> None:
        connections.append(ws)
        await release.wait()
        async for message in ws:
            received.append(message)

    total = 12
    async with serve(handler, max_queue=4) as server:
        peer = await rawpeer.connect(server.port)
        for i in range(total):
            await peer.send_text(str(i))
        await wait_for_condition(lambda: bool(connections))
        ws = connections[0]
        await wait_for_condition(lambda: not ws._transport.is_reading())
        assert len(ws._inbox.messages) == 4
        if read_path.lane:
            assert 1 <= read_path.python_reads < total
        release.set()
        await wait_for_condition(lambda: len(received) == total)
        await peer.send_close(1000)
        await peer.expect_close()
    assert received == [str(i) for i in range(total)]


async def test_two_receivers_share_the_messages_and_none_is_lost(read_path: ReadPath) -> None:
    """Two tasks waiting in ``receive()``: every message read wakes both; each
    message goes to exactly one of them."""
    got: list[str | bytes] = []
    both_waiting = asyncio.Event()
    connections: list[Any] = []

    async def handler(ws: Any) -> None:
        connections.append(ws)

        async def one() -> None:
            while True:
                got.append(await ws.receive())

        tasks = [asyncio.create_task(one()), asyncio.create_task(one())]
        await wait_for_condition(lambda: len(ws._waiters) == 2)
        both_waiting.set()
        await wait_for_condition(lambda: len(got) == 10)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ws.send("done")

    async with serve(handler) as server:
        peer = await rawpeer.connect(server.port)
        await asyncio.wait_for(both_waiting.wait(), 10)
        for i in range(10):
            await peer.send_text(str(i))
        frame = await peer.recv_data_frame()
        assert (frame.opcode, frame.text) == (TEXT, "done")
        await peer.send_close(1000)
        await peer.expect_close()
    assert sorted(got, key=int) == [str(i) for i in range(10)]


@pytest.mark.parametrize("compression", [False, True])
async def test_our_client_against_the_websockets_server(
    read_path: ReadPath, compression: bool
) -> None:
    """Our client, exchanging messages with the websockets library's server: the
    same messages either way; text is masked by the send lane with the keys of
    the protocol's pool. Compressed messages are never the lanes'."""

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with websockets.asyncio.server.serve(
        echo, "127.0.0.1", 0, compression="deflate" if compression else None
    ) as theirs:
        port = theirs.sockets[0].getsockname()[1]
        async with AioClient.connect(f"ws://127.0.0.1:{port}/", compression=compression) as ws:
            for i in range(20):
                message = f"message {i}" if i % 2 else f"message {i}".encode()
                await ws.send(message)
                assert await ws.receive(timeout=10) == message
            lanes = read_path.lane and not compression
            assert read_path.python_reads == (0 if lanes else 20)
            # The ten binary messages are the Python path's; so are the two key
            # pool refills, which fall on binary messages here (the 1st and 17th).
            assert read_path.python_sends == (10 if lanes else 20)


async def test_a_burst_of_sends_from_one_callback_keeps_its_order(read_path: ReadPath) -> None:
    """Several send_nowait() calls from one on_message: the first frame of the
    burst goes out at once (the send lane's), the others are coalesced after it
    (the Python path's), in the order of the calls."""
    replies: list[str | bytes] = ["1", "2", b"3", "4", "5"]

    class Burst(simple_websocket.MessageHandler):
        def on_message(self, ws: Any, message: str | bytes) -> None:
            for reply in replies:
                ws.send_nowait(reply)

    async with serve(Burst()) as server:
        peer = await rawpeer.connect(server.port)
        for _ in range(3):
            await peer.send_text("go")
            for reply in replies:
                frame = await peer.recv_data_frame()
                assert frame.payload == (reply.encode() if isinstance(reply, str) else reply)
        assert read_path.python_sends == 3 * (len(replies) - (1 if read_path.lane else 0))
        await peer.send_close(1000)
        await peer.expect_close()


async def test_every_frame_of_our_client_has_a_masking_key_of_its_own(
    read_path: ReadPath,
) -> None:
    """Text sent by our client, one message per round trip (each the first frame
    of a burst): each frame masked with the next key of the pool (RFC 6455 5.3:
    unpredictable keys), across the pool's refills, the payloads intact."""
    async with rawpeer.RawServer() as raw:
        async with AioClient.connect(raw.url, compression=False) as ws:
            peer = await raw.accept()
            total = 40  # more than the first pool's 16 keys
            frames = []
            for i in range(total):
                await ws.send(f"message {i}")
                frames.append(await peer.recv_frame())
                await peer.send_text("ack")
                assert await ws.receive(timeout=10) == "ack"
            assert [f.payload for f in frames] == [f"message {i}".encode() for i in range(total)]
            assert all(f.masked and len(f.key) == 4 for f in frames)
            assert len({f.key for f in frames}) == total
            # Only the two refills of the key pool took the Python path.
            assert read_path.python_sends == (2 if read_path.lane else total)
            await peer.send_close(1000)
            assert (await peer.expect_close()).close_code == 1000
            peer.close_tcp()  # the server closes TCP first (RFC 6455 7.1.1)
            await ws.wait_closed()
