"""Typed channels over real connections to a websockets server."""

import asyncio
import dataclasses
import json
import logging
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field, ValidationError
from typing_extensions import TypedDict
from websockets.asyncio.server import serve as ws_serve

from simple_websocket import AioClient, ConnectionClosed
from simple_websocket.channels import TypedChannel, typed
from simple_websocket.codecs import JsonCodec
from simple_websocket.errors import DecodeError, EncodeError, RequestTimeout


class Subscribe(BaseModel):
    type: Literal["subscribe"] = "subscribe"
    id: int | None = None
    channel: str


class Ack(BaseModel):
    type: Literal["ack"] = "ack"
    id: int
    channel: str


class Tick(BaseModel):
    type: Literal["tick"] = "tick"
    price: float


ServerEvent = Annotated[Ack | Tick, Field(discriminator="type")]


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Movie(TypedDict):
    title: str
    year: int


@pytest.fixture
async def scripted():
    """A websockets server that sends each connection a script, then echoes.

    ``script`` is a list of raw messages to send right after the connection opens;
    everything the client sends is recorded in ``received``.
    """
    state = {"script": [], "received": asyncio.Queue(), "handler": None}

    async def handler(conn):
        if state["handler"] is not None:
            await state["handler"](conn)
            return
        for message in state["script"]:
            await conn.send(message)
        async for message in conn:
            await state["received"].put(message)

    async with ws_serve(handler, "127.0.0.1", 0) as server:
        state["url"] = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        yield state


@pytest.mark.parametrize(
    ("type_", "raw", "expected"),
    [
        (Tick, '{"type": "tick", "price": 1.5}', Tick(price=1.5)),
        (Point, '{"x": 1, "y": 2}', Point(1, 2)),
        (Movie, '{"title": "Alien", "year": 1979}', {"title": "Alien", "year": 1979}),
        (ServerEvent, '{"type": "ack", "id": 3, "channel": "c"}', Ack(id=3, channel="c")),
        (list[Point], '[{"x": 1, "y": 2}]', [Point(1, 2)]),
        (Point, b'{"x": 5, "y": 6}', Point(5, 6)),  # binary frames decode too
    ],
)
async def test_each_type_kind(scripted, type_, raw, expected):
    scripted["script"] = [raw]
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, type_)
        assert await channel.receive(timeout=5) == expected


async def test_send_encodes_and_wrong_types_are_refused_before_writing(scripted):
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, ServerEvent, send=Subscribe)
        with pytest.raises(EncodeError) as info:
            await channel.send(Tick(price=1))
        assert isinstance(info.value, TypeError)
        await channel.send(Subscribe(channel="trades"))
        first = await asyncio.wait_for(scripted["received"].get(), 5)
        assert json.loads(first) == {"type": "subscribe", "id": None, "channel": "trades"}
        assert scripted["received"].empty()  # the refused object was never sent


async def test_binary_json(scripted):
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, Point, binary=True)
        await channel.send(Point(1, 2))
        assert await asyncio.wait_for(scripted["received"].get(), 5) == b'{"x":1,"y":2}'


async def test_invalid_messages_raise_then_the_next_one_is_received(scripted):
    scripted["script"] = [
        "not json",
        '{"type": "tick", "price": "high"}',
        '{"type": "tick", "price": 2}',
    ]
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, Tick)
        with pytest.raises(DecodeError) as info:
            await channel.receive(timeout=5)
        assert info.value.data == "not json"
        with pytest.raises(DecodeError) as info:
            await channel.receive(timeout=5)
        assert isinstance(info.value.__cause__, ValidationError)
        assert await channel.receive(timeout=5) == Tick(price=2)
        assert ws.connected


async def test_skip_policy_logs_and_skips(scripted, caplog):
    scripted["script"] = ["garbage", '{"type": "tick", "price": 3}']
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, Tick, on_invalid="skip")
        with caplog.at_level(logging.WARNING, logger="simple_websocket"):
            assert await channel.receive(timeout=5) == Tick(price=3)
        assert "garbage" in caplog.text


async def test_callable_policy_gets_the_error(scripted):
    scripted["script"] = ['{"type": "tick"}', '{"type": "tick", "price": 4}']
    errors = []
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, Tick, on_invalid=errors.append)
        assert await channel.receive(timeout=5) == Tick(price=4)
    assert len(errors) == 1
    assert errors[0].data == '{"type": "tick"}'


def test_bad_policy_is_rejected():
    with pytest.raises(ValueError):
        TypedChannel(object(), JsonCodec(), JsonCodec(), on_invalid="ignore")


async def test_iteration_and_receive_timeout(scripted):
    scripted["script"] = [json.dumps({"type": "tick", "price": p}) for p in range(5)]

    async def handler(conn):
        for message in scripted["script"]:
            await conn.send(message)
        await conn.close()

    scripted["handler"] = handler
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, Tick)
        prices = [tick.price async for tick in channel]
        assert prices == [0, 1, 2, 3, 4]
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, Tick)
        await channel.receive(timeout=5)
        await ws.close()
        assert [t.price async for t in channel] == [1, 2, 3, 4]  # buffered ones first


async def test_receive_timeout_returns_none(scripted):
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, Tick)
        assert await channel.receive(timeout=0.01) is None
        assert await channel.receive(timeout=0) is None


async def test_concurrent_requests_answered_out_of_order(scripted):
    async def handler(conn):
        requests = [json.loads(await conn.recv()) for _ in range(3)]
        await conn.send(json.dumps({"type": "tick", "price": 1}))
        for request in reversed(requests):
            await conn.send(
                json.dumps({"type": "ack", "id": request["id"], "channel": request["channel"]})
            )
            await conn.send(json.dumps({"type": "tick", "price": 2}))
        await conn.wait_closed()

    scripted["handler"] = handler
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, ServerEvent, send=Subscribe)
        acks = await asyncio.gather(
            *(channel.request(Subscribe(channel=name), timeout=5) for name in ["a", "b", "c"])
        )
        assert [ack.channel for ack in acks] == ["a", "b", "c"]
        assert len({ack.id for ack in acks}) == 3
        # Every other message is still there, in order.
        ticks = [await channel.receive(timeout=5) for _ in range(4)]
        assert [t.price for t in ticks] == [1, 2, 2, 2]
        assert await channel.receive(timeout=0) is None


async def test_request_keeps_a_given_id_and_dict_messages(scripted):
    async def handler(conn):
        async for message in conn:
            request = json.loads(message)
            await conn.send(json.dumps({**request, "echo": True}))

    scripted["handler"] = handler
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, None, codec=JsonCodec(), id_field="rid")
        reply = await channel.request({"rid": "abc", "q": 1}, timeout=5)
        assert reply == {"rid": "abc", "q": 1, "echo": True}
        reply = await channel.request({"q": 2}, timeout=5)
        assert reply["q"] == 2 and reply["rid"] is not None


async def test_request_timeout_then_late_answer_is_a_normal_message(scripted):
    release = asyncio.Event()

    async def handler(conn):
        request = json.loads(await conn.recv())
        await release.wait()
        await conn.send(json.dumps({"type": "ack", "id": request["id"], "channel": "late"}))
        await conn.wait_closed()

    scripted["handler"] = handler
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, ServerEvent)
        with pytest.raises(RequestTimeout) as info:
            await channel.request(Subscribe(channel="x"), timeout=0.05)
        assert isinstance(info.value, TimeoutError)
        release.set()
        late = await channel.receive(timeout=5)
        assert late == Ack(id=info.value.request_id, channel="late")


async def test_close_fails_pending_requests(scripted):
    async def handler(conn):
        await conn.recv()
        await conn.recv()
        await conn.close(1011, "gone")

    scripted["handler"] = handler
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, ServerEvent)
        results = await asyncio.gather(
            channel.request(Subscribe(channel="a"), timeout=5),
            channel.request(Subscribe(channel="b"), timeout=5),
            return_exceptions=True,
        )
        assert all(isinstance(r, ConnectionClosed) for r in results), results
        assert all(r.reason == 1011 for r in results)


async def test_cancelled_receive_loses_nothing(scripted):
    scripted["script"] = [json.dumps({"type": "tick", "price": p}) for p in range(50)]
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, Tick)
        got = []
        while len(got) < 50:
            try:
                tick = await asyncio.wait_for(channel.receive(), 0.0005)
            except TimeoutError:
                continue
            got.append(tick.price)
        assert got == list(range(50))


async def test_channel_context_manager_and_stream(scripted):
    from aiostream import pipe, stream

    scripted["script"] = [json.dumps({"type": "tick", "price": p}) for p in range(10)]
    async with AioClient.connect(scripted["url"]) as ws:
        async with typed(ws, Tick) as channel:
            xs = stream.iterate(channel) | pipe.map(lambda t: t.price) | pipe.take(3)
            assert await stream.list(xs) == [0, 1, 2]
            async with channel.stream().stream() as s:
                assert (await anext(s)).price == 3
            assert ws.connected  # closing the stream did not close the connection
        assert not ws.connected


# -- the direct path (nothing buffered, no request pending) and the inbox path --------

PARITY_SCRIPT = [
    json.dumps({"type": "tick", "price": 1}),
    "not json",
    json.dumps({"type": "ack", "id": 99, "channel": "other"}),  # answers no request
    json.dumps({"type": "tick", "price": "high"}),
    json.dumps({"type": "tick", "price": 2}),
    b'{"type": "tick", "price": 3}',
]


async def _outcomes(channel, mode, calls):
    """Receive ``calls`` times; record each message or each DecodeError's details."""
    outcomes = []
    for _ in range(calls):
        try:
            if mode == "receive":
                outcomes.append(await channel.receive(timeout=5))
            else:
                outcomes.append(await asyncio.wait_for(anext(channel), 5))
        except DecodeError as exc:
            outcomes.append(("error", exc.data, type(exc.__cause__), type(exc.__context__)))
    return outcomes


@pytest.mark.parametrize("mode", ["receive", "iterate"])
@pytest.mark.parametrize("policy", ["raise", "skip", "callable"])
async def test_direct_and_request_tracking_paths_agree(scripted, caplog, mode, policy):
    """With or without a request pending, the same messages and errors come out."""
    scripted["script"] = PARITY_SCRIPT
    valid = [Tick(price=1), Ack(id=99, channel="other"), Tick(price=2), Tick(price=3)]
    if policy == "raise":
        expected = [
            valid[0],
            ("error", "not json", ValidationError, ValidationError),
            valid[1],
            ("error", PARITY_SCRIPT[3], ValidationError, ValidationError),
            *valid[2:],
        ]
    else:
        expected = valid
    results = {}
    for tracking in (False, True):
        errors = []
        on_invalid = errors.append if policy == "callable" else policy
        caplog.clear()
        async with AioClient.connect(scripted["url"]) as ws:
            channel = typed(ws, ServerEvent, on_invalid=on_invalid)
            request = None
            if tracking:
                # The scripted server never answers: the request stays pending and
                # every message goes through id matching and the inbox.
                request = asyncio.create_task(channel.request(Subscribe(channel="x")))
                await asyncio.sleep(0)
                assert channel._pending
            with caplog.at_level(logging.WARNING, logger="simple_websocket"):
                outcomes = await _outcomes(channel, mode, len(expected))
            if request is not None:
                assert not request.done()
                request.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await request
            assert await channel.receive(timeout=0) is None
        skipped = [record.getMessage() for record in caplog.records]
        results[tracking] = (outcomes, [error.data for error in errors], skipped)
    assert results[False][0] == expected
    assert results[False] == results[True]
    if policy == "callable":
        assert results[False][1] == ["not json", PARITY_SCRIPT[3]]
    if policy == "skip":
        assert len(results[False][2]) == 2


@pytest.mark.parametrize("mode", ["receive", "iterate"])
async def test_switching_between_paths_while_messages_flow_loses_nothing(scripted, mode):
    """Requests start and finish in the middle of a stream: every tick arrives once."""
    counter = iter(range(1000))

    def tick():
        return json.dumps({"type": "tick", "price": next(counter)})

    async def handler(conn):
        for _ in range(20):
            await conn.send(tick())
        async for message in conn:
            request = json.loads(message)
            # Ticks before and after the response, then more for the direct path.
            for _ in range(5):
                await conn.send(tick())
            await conn.send(json.dumps({"type": "ack", "id": request["id"], "channel": "ok"}))
            for _ in range(25):
                await conn.send(tick())

    scripted["handler"] = handler
    rounds, per_round = 4, 20
    total = 20 + rounds * 30
    prices, acks, requests = [], [], []
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, ServerEvent)

        def on_message(event):
            assert isinstance(event, Tick), event
            prices.append(event.price)
            if len(prices) % per_round == 0 and len(requests) < rounds:
                # Started between two reads; the next read may already be under way.
                requests.append(
                    asyncio.create_task(channel.request(Subscribe(channel="c"), timeout=5))
                )

        if mode == "receive":
            while len(prices) < total:
                on_message(await channel.receive(timeout=5))
        else:
            async for event in channel:
                on_message(event)
                if len(prices) == total:
                    break
        acks = await asyncio.gather(*requests)
        assert await channel.receive(timeout=0.05) is None
    assert prices == list(range(total))
    assert len(acks) == rounds and all(isinstance(ack, Ack) for ack in acks)
    assert len({ack.id for ack in acks}) == rounds


async def test_request_started_during_a_direct_read_gets_its_response(scripted):
    async def handler(conn):
        request = json.loads(await conn.recv())
        await conn.send(json.dumps({"type": "ack", "id": request["id"], "channel": "a"}))
        await conn.send(json.dumps({"type": "tick", "price": 7}))
        await conn.wait_closed()

    scripted["handler"] = handler
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, ServerEvent)
        reader = asyncio.create_task(channel.receive(timeout=5))
        await asyncio.sleep(0)
        assert channel._reading  # the receive() call is reading, no request pending
        ack = await channel.request(Subscribe(channel="a"), timeout=5)
        assert ack == Ack(id=ack.id, channel="a")
        assert await reader == Tick(price=7)  # the response did not go to receive()


@pytest.mark.parametrize(("code", "mode"), [(1011, "receive"), (1000, "iterate")])
async def test_close_during_a_direct_read_fails_pending_requests(scripted, code, mode):
    async def handler(conn):
        await conn.recv()
        await conn.close(code, "bye")

    scripted["handler"] = handler
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, ServerEvent)

        async def read():
            if mode == "receive":
                return await channel.receive()
            return [event async for event in channel]

        reader = asyncio.create_task(read())
        await asyncio.sleep(0)
        assert channel._reading
        with pytest.raises(ConnectionClosed) as info:
            await channel.request(Subscribe(channel="a"), timeout=5)
        assert info.value.reason == code
        if mode == "receive":
            with pytest.raises(ConnectionClosed) as info:
                await reader
            assert info.value.reason == code
        else:
            assert await reader == []  # a normal close ends iteration quietly


@pytest.mark.parametrize("mode", ["receive", "iterate"])
async def test_concurrent_receivers_get_each_message_once(scripted, mode):
    async def handler(conn):
        await conn.recv()  # once every receiver waits
        for price in range(30):
            await conn.send(json.dumps({"type": "tick", "price": price}))
        await conn.wait_closed()

    scripted["handler"] = handler
    async with AioClient.connect(scripted["url"]) as ws:
        channel = typed(ws, Tick)
        if mode == "receive":
            receivers = [asyncio.create_task(channel.receive(timeout=5)) for _ in range(30)]
        else:
            receivers = [asyncio.create_task(anext(channel)) for _ in range(30)]
        await asyncio.sleep(0)
        # One of them reads, the others wait for it and must be woken after each read.
        assert channel._reading and len(channel._watchers) == 29
        await ws.send("go")
        ticks = await asyncio.wait_for(asyncio.gather(*receivers), 5)
        assert sorted(tick.price for tick in ticks) == list(range(30))
        assert await channel.receive(timeout=0.01) is None


async def test_msgspec_codec_over_a_real_connection(scripted):
    import msgspec

    from simple_websocket.codecs import MsgspecCodec

    class MTick(msgspec.Struct):
        type: str
        price: float

    scripted["script"] = ['{"type": "tick", "price": "x"}', '{"type": "tick", "price": 1.5}']
    async with AioClient.connect(scripted["url"]) as ws:
        channel = ws.typed(MTick, codec=MsgspecCodec(MTick))
        with pytest.raises(DecodeError):
            await channel.receive(timeout=5)
        assert await channel.receive(timeout=5) == MTick("tick", 1.5)
        await channel.send(MTick("tick", 2.0))
        sent = await asyncio.wait_for(scripted["received"].get(), 5)
        assert sent == '{"type":"tick","price":2.0}'
