"""aiostream pipelines over real connections."""

import asyncio
import json

import pytest
from aiostream import pipe, stream
from pydantic import BaseModel
from websockets.asyncio.server import serve as ws_serve

import simple_websocket
from simple_websocket import AioClient, ConnectionClosed
from simple_websocket.codecs import JsonCodec, PydanticCodec
from simple_websocket.errors import DecodeError
from simple_websocket.operators import (
    IdleTimeout,
    batch,
    decode,
    encode,
    idle_timeout,
    messages,
    send_to,
)


class Tick(BaseModel):
    price: float


def feed(items, *, close=1000, hold=None):
    """A handler that sends ``items`` then closes with ``close`` (or waits on ``hold``)."""

    async def handler(conn):
        for item in items:
            await conn.send(item)
        if hold is not None:
            await hold.wait()
        if close is not None:
            await conn.close(close)
        else:
            await conn.wait_closed()

    return handler


async def start(handler):
    server = await ws_serve(handler, "127.0.0.1", 0)
    return server, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


async def test_map_filter_take_on_a_connection():
    server, url = await start(feed([str(i) for i in range(20)], close=None))
    async with server, AioClient.connect(url) as ws:
        xs = messages(ws) | pipe.map(int) | pipe.filter(lambda i: i % 2) | pipe.take(3)
        assert await stream.list(xs) == [1, 3, 5]
        # take() left the stream early: the connection is still open.
        assert ws.connected
        assert await ws.receive(timeout=5) == "6"


async def test_stream_ends_on_normal_close_and_raises_otherwise():
    server, url = await start(feed(["a", "b"], close=1000))
    async with server, AioClient.connect(url) as ws:
        assert await stream.list(messages(ws)) == ["a", "b"]
    server, url = await start(feed(["a"], close=1011))
    async with server, AioClient.connect(url) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await stream.list(messages(ws))
        assert info.value.reason == 1011


async def test_messages_can_close_the_connection_when_asked():
    server, url = await start(feed(["a", "b", "c"], close=None))
    async with server, AioClient.connect(url) as ws:
        assert await stream.list(messages(ws, close=True) | pipe.take(1)) == ["a"]
        assert not ws.connected


async def test_chunks_timeout_and_zip():
    server, url = await start(feed([str(i) for i in range(6)], close=None))
    async with server, AioClient.connect(url) as ws:
        xs = messages(ws) | pipe.chunks(2) | pipe.take(3)
        assert await stream.list(xs) == [["0", "1"], ["2", "3"], ["4", "5"]]
        with pytest.raises(TimeoutError):
            await stream.list(messages(ws) | pipe.timeout(0.01))
        with pytest.raises(IdleTimeout, match="No message within"):
            await stream.list(messages(ws) | idle_timeout.pipe(0.01))


async def test_merge_of_two_servers():
    server_a, url_a = await start(feed([f"a{i}" for i in range(5)]))
    server_b, url_b = await start(feed([f"b{i}" for i in range(5)]))
    async with server_a, server_b:
        async with AioClient.connect(url_a) as a, AioClient.connect(url_b) as b:
            merged = await stream.list(stream.merge(messages(a), messages(b)))
            assert sorted(merged) == sorted(
                [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
            )
            # Per-source order is kept.
            assert [m for m in merged if m[0] == "a"] == [f"a{i}" for i in range(5)]
        async with AioClient.connect(url_a) as a, AioClient.connect(url_b) as b:
            pairs = await stream.list(stream.zip(messages(a), messages(b)) | pipe.take(2))
            assert pairs == [("a0", "b0"), ("a1", "b1")]


async def test_decode_encode_and_typed_channel_streams():
    raw = [json.dumps({"price": p}) for p in range(3)] + ["oops", json.dumps({"price": 9})]
    server, url = await start(feed(raw))
    codec = PydanticCodec(Tick)
    async with server, AioClient.connect(url) as ws:
        ticks = await stream.list(messages(ws) | decode.pipe(codec, on_invalid="skip"))
        assert [t.price for t in ticks] == [0, 1, 2, 9]
    server, url = await start(feed(raw))
    async with server, AioClient.connect(url) as ws:
        with pytest.raises(DecodeError):
            await stream.list(messages(ws) | decode.pipe(codec))
    encoded = await stream.list(
        stream.iterate([Tick(price=1)])
        | encode.pipe(JsonCodec(dumps=lambda t: t.model_dump_json()))
    )
    assert encoded == ['{"price":1.0}']


async def test_send_to_bridges_one_connection_into_another():
    received = asyncio.Queue()

    async def sink(conn):
        async for message in conn:
            await received.put(message)

    source_server, source_url = await start(feed([f"m{i}" for i in range(10)]))
    sink_server, sink_url = await start(sink)
    async with source_server, sink_server:
        async with AioClient.connect(source_url) as src, AioClient.connect(sink_url) as dst:
            last = await (messages(src) | pipe.map(str.upper) | send_to.pipe(dst))
            assert last == "M9"
            got = [await asyncio.wait_for(received.get(), 5) for _ in range(10)]
            assert got == [f"M{i}" for i in range(10)]


async def test_batch_by_size_and_delay():
    hold = asyncio.Event()
    server, url = await start(feed([str(i) for i in range(5)], close=1000, hold=hold))
    async with server, AioClient.connect(url) as ws:
        batches = []
        async with (messages(ws) | batch.pipe(2, max_delay=0.02)).stream() as s:
            batches.append(await anext(s))
            batches.append(await anext(s))
            # The fifth message waits alone; max_delay flushes it.
            batches.append(await anext(s))
            hold.set()
            batches += [b async for b in s]
        assert batches == [["0", "1"], ["2", "3"], ["4"]]
    assert await stream.list(stream.iterate(range(5)) | batch.pipe(3)) == [[0, 1, 2], [3, 4]]
    with pytest.raises(ValueError):
        await stream.list(stream.iterate(range(5)) | batch.pipe(0))


@pytest.mark.timeout(20)
async def test_slow_consumer_keeps_memory_bounded():
    """A fast producer and a consumer that stops: the client stops reading."""
    # 20 MB, more than the socket buffers of both ends can hold, so the producer must
    # block once the client stops reading.
    count = 20000
    payload = "x" * 1000
    sent = asyncio.Event()

    async def producer(conn):
        for _ in range(count):
            await conn.send(payload)
        sent.set()
        await conn.wait_closed()

    server = await ws_serve(producer, "127.0.0.1", 0, compression=None)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    async with server, AioClient.connect(url, max_queue=8, compression=False) as ws:
        paused = asyncio.Event()
        pause_reading = ws.transport.pause_reading

        def spy():
            paused.set()
            pause_reading()

        ws.transport.pause_reading = spy
        pipeline = messages(ws) | pipe.map(len)
        async with pipeline.stream() as s:
            assert await anext(s) == 1000
            # The consumer stalls: the client stops reading once max_queue is full.
            if ws.transport.is_reading():
                await asyncio.wait_for(paused.wait(), 5)
            assert not ws.transport.is_reading()
            assert len(ws._inbox.messages) <= ws.max_queue
            assert not sent.is_set()  # the producer is blocked by TCP flow control
            total = 1
            async for _ in s:
                total += 1
                assert len(ws._inbox.messages) <= ws.max_queue
                if total == count:
                    break
        assert sent.is_set()


async def test_no_tasks_left_after_streams_end():
    server, url = await start(feed([str(i) for i in range(10)]))
    before = asyncio.all_tasks()
    async with server, AioClient.connect(url) as ws:
        await stream.list(messages(ws) | batch.pipe(3, max_delay=0.01) | pipe.take(2))
        await stream.list(stream.merge(messages(ws), stream.iterate([])) | pipe.take(1))
    await asyncio.sleep(0)
    left = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert left == set()


async def test_stream_over_our_own_server():
    async def handler(ws):
        await (messages(ws) | pipe.map(lambda m: m * 2) | send_to.pipe(ws))

    async with simple_websocket.serve(handler) as server:
        async with AioClient.connect(server.url) as ws:
            await ws.send("ab")
            assert await ws.receive(timeout=5) == "abab"
