"""Byte-level and semantic tests of the asyncio engine (``asyncio.connection``).

Our side is either our server (``simple_websocket.serve``) facing a raw client, or
our client (``AioClient.connect``) facing a raw asyncio server; the raw peer
(:mod:`tests.asyncio.rawpeer`) builds and parses every frame by hand. Everything runs
over real loopback sockets. Waits are on data or events; where real time is part of
the behaviour (keepalive, close timeouts) it is a multiple of :data:`T`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

import simple_websocket
from simple_websocket import AioClient, ConnectionClosed

from . import rawpeer
from .rawpeer import BINARY, CLOSE, CONT, PING, PONG, TEXT, RawPeer, wait_for_condition

#: Multiply every real-time duration of these tests (for slow machines).
FACTOR = float(os.environ.get("SIMPLE_WEBSOCKET_TEST_TIME_FACTOR", "1"))
#: The unit of real time used where the behaviour under test is about time.
T = 0.05 * FACTOR
#: A close_timeout that a test must never wait for (its own timeout is shorter).
NEVER = 120.0

ROLES = ["server", "client"]


# -- harness ----------------------------------------------------------------------


class OurServer:
    """``simple_websocket.serve`` whose handler hands each connection to the test."""

    def __init__(self, **options: Any) -> None:
        self.conns: asyncio.Queue[Any] = asyncio.Queue()
        self.release = asyncio.Event()
        self.server = simple_websocket.serve(self._handler, **options)

    async def _handler(self, ws: Any) -> None:
        await self.conns.put(ws)
        await self.release.wait()

    @property
    def port(self) -> int:
        return self.server.port

    async def __aenter__(self) -> OurServer:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.server.close(close_timeout=5)


async def _abort(ws: Any) -> None:
    if ws.transport is not None and not ws.transport.is_closing():
        ws.transport.abort()
    await ws.wait_closed()


@asynccontextmanager
async def pair(
    role: str,
    *,
    peer_rcvbuf: int | None = None,
    peer_sndbuf: int | None = None,
    after_handshake: bytes = b"",
    deflate: bool = False,
    **options: Any,
) -> AsyncIterator[tuple[Any, RawPeer]]:
    """Yield ``(ws, peer)``: our side in ``role`` and a raw peer in the other one.

    ``after_handshake`` is written by the peer in the same write as its request or
    its 101 response; ``deflate`` negotiates permessage-deflate.
    """
    if role == "server":
        async with OurServer(**options) as server:
            peer = await rawpeer.connect(
                server.port,
                rcvbuf=peer_rcvbuf,
                sndbuf=peer_sndbuf,
                deflate=deflate,
                after_request=after_handshake,
            )
            ws = await server.conns.get()
            try:
                yield ws, peer
            finally:
                peer.abort()
                await _abort(ws)
    else:
        raw = rawpeer.RawServer(
            after_101=after_handshake, rcvbuf=peer_rcvbuf, sndbuf=peer_sndbuf, deflate=deflate
        )
        async with raw:
            ws = await AioClient.connect(raw.url, **options)
            peer = await raw.accept()
            try:
                yield ws, peer
            finally:
                await _abort(ws)


@pytest.fixture(params=ROLES)
def role(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def queued(ws: Any) -> int:
    """How many received messages wait in our side's queue."""
    return len(ws._inbox.messages)


def now() -> float:
    return asyncio.get_running_loop().time()


async def finish_close_as_peer(ws: Any, peer: RawPeer, role: str) -> None:
    """Complete a close handshake that our side started; check TCP ends right."""
    frame = await peer.expect_close()
    await peer.send_close(frame.close_code)
    if role == "server":
        # Our server closes TCP first once the handshake is done (RFC 6455 7.1.1).
        await peer.expect_eof()
    else:
        peer.close_tcp()
    await ws.wait_closed()


# -- sending ------------------------------------------------------------------------


@pytest.mark.timeout(5)
async def test_a_str_subclass_is_sent_as_its_text(role: str) -> None:
    class Tagged(str):
        def __str__(self) -> str:
            return "not this"

    async with pair(role) as (ws, peer):
        await ws.send(Tagged("the text"))
        await ws.send(42)  # anything else is sent as str(data)
        assert (await peer.recv_frame()).payload == b"the text"
        assert (await peer.recv_frame()).payload == b"42"


@pytest.mark.timeout(5)
async def test_send_types_map_to_opcodes(role: str) -> None:
    async with pair(role) as (ws, peer):
        await ws.send("héllo")
        await ws.send(b"\x00\x01")
        await ws.send(bytearray(b"ba"))
        await ws.send(memoryview(b"xmemoryviewx")[1:-1])
        await ws.send("")
        await ws.send(b"")
        expected = [
            (TEXT, "héllo".encode()),
            (BINARY, b"\x00\x01"),
            (BINARY, b"ba"),
            (BINARY, b"memoryview"),
            (TEXT, b""),
            (BINARY, b""),
        ]
        for opcode, payload in expected:
            # recv_frame also checks masking: masked from our client, not from our server.
            frame = await peer.recv_frame()
            assert (frame.opcode, frame.payload, frame.fin) == (opcode, payload, True)
            assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)


@pytest.mark.timeout(5)
@pytest.mark.parametrize("size", [125, 126, 65535, 65536, 300_000])
async def test_length_encodings_both_ways(role: str, size: int) -> None:
    payload = bytes(random.Random(size).getrandbits(8) for _ in range(256)) * (size // 256 + 1)
    payload = payload[:size]
    async with pair(role) as (ws, peer):
        await peer.write(peer.frame(BINARY, payload), chunks=[1, 1, 3, 7, 1000])
        assert await ws.receive() == payload
        await ws.send(payload)
        frame = await peer.recv_frame()
        assert (frame.opcode, frame.payload) == (BINARY, payload)


@pytest.mark.timeout(5)
async def test_send_after_close_raises(role: str) -> None:
    async with pair(role, close_timeout=NEVER) as (ws, peer):
        closing = asyncio.create_task(ws.close())
        await finish_close_as_peer(ws, peer, role)
        await closing
        with pytest.raises(ConnectionClosed):
            await ws.send("too late")
        with pytest.raises(ConnectionClosed):
            await ws.send(b"too late")


@pytest.mark.timeout(5)
async def test_send_after_peer_closed_raises_with_peer_code(role: str) -> None:
    async with pair(role, close_timeout=NEVER) as (ws, peer):
        await peer.send_close(4000, "done")
        frame = await peer.expect_close()
        assert frame.close_code == 4000
        with pytest.raises(ConnectionClosed) as info:
            await ws.send("too late")
        assert (info.value.reason, info.value.message) == (4000, "done")


# -- closing handshake ------------------------------------------------------------


@pytest.mark.timeout(5)
async def test_pending_receive_raises_when_we_close(role: str) -> None:
    async with pair(role, close_timeout=NEVER) as (ws, peer):
        receiving = asyncio.create_task(ws.receive())
        closing = asyncio.create_task(ws.close())
        await finish_close_as_peer(ws, peer, role)
        await closing
        with pytest.raises(ConnectionClosed) as info:
            await receiving
        assert info.value.reason == 1000


@pytest.mark.timeout(5)
async def test_context_manager_closes_with_1011_on_error(role: str) -> None:
    async with pair(role, close_timeout=NEVER) as (ws, peer):

        async def use() -> None:
            async with ws:
                raise ValueError("boom")

        using = asyncio.create_task(use())
        frame = await peer.expect_close()
        assert frame.close_code == 1011
        await peer.send_close(1011)
        if role == "client":
            peer.close_tcp()
        with pytest.raises(ValueError, match="boom"):
            await using
        assert ws.close_reason == 1011


@pytest.mark.timeout(5)
async def test_frames_after_peer_close_are_ignored(role: str) -> None:
    async with pair(role) as (ws, peer):
        await peer.write(
            peer.frame(TEXT, b"before")
            + peer.frame(CLOSE, rawpeer.close_payload(1000, ""))
            + peer.frame(TEXT, b"after")
        )
        frame = await peer.expect_close()
        assert frame.close_code == 1000
        assert [m async for m in ws] == ["before"]


@pytest.mark.timeout(5)
async def test_peer_close_is_echoed_after_buffered_messages(role: str) -> None:
    async with pair(role, close_timeout=NEVER) as (ws, peer):
        # Two messages and the close frame in a single TCP write.
        await peer.write(
            peer.frame(TEXT, b"one")
            + peer.frame(BINARY, b"two")
            + peer.frame(CLOSE, rawpeer.close_payload(1000, "bye"))
        )
        frame = await peer.expect_close()
        assert frame.close_code == 1000
        if role == "server":
            await peer.expect_eof()
        else:
            # The client leaves closing TCP to the server (RFC 6455 7.1.1).
            await wait_for_condition(lambda: ws.close_reason == 1000)
            assert not ws.transport.is_closing()
            peer.close_tcp()
        await ws.wait_closed()
        assert not ws.connected
        assert await ws.receive() == "one"
        assert await ws.receive() == b"two"
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        assert (info.value.reason, info.value.message) == (1000, "bye")
        assert (ws.close_reason, ws.close_message) == (1000, "bye")
        # Still raises, and does not block.
        with pytest.raises(ConnectionClosed):
            await ws.receive(timeout=0)


@pytest.mark.timeout(5)
@pytest.mark.parametrize("code", [1000, 1001])
async def test_iteration_ends_quietly_on_normal_close(role: str, code: int) -> None:
    async with pair(role) as (ws, peer):
        await peer.write(
            peer.frame(TEXT, b"a")
            + peer.frame(TEXT, b"b")
            + peer.frame(BINARY, b"c")
            + peer.frame(CLOSE, rawpeer.close_payload(code, ""))
        )
        received = [message async for message in ws]
        assert received == ["a", "b", b"c"]
        assert ws.close_reason == code


@pytest.mark.timeout(5)
async def test_iteration_raises_on_abnormal_close_code(role: str) -> None:
    async with pair(role) as (ws, peer):
        await peer.write(
            peer.frame(TEXT, b"a") + peer.frame(CLOSE, rawpeer.close_payload(1011, "oops"))
        )
        received = []
        with pytest.raises(ConnectionClosed) as info:
            async for message in ws:
                received.append(message)
        assert received == ["a"]
        assert (info.value.reason, info.value.message) == (1011, "oops")


@pytest.mark.timeout(5)
async def test_our_close_handshake(role: str) -> None:
    async with pair(role, close_timeout=NEVER) as (ws, peer):
        closing = asyncio.create_task(ws.close(1001, "x"))
        frame = await peer.expect_close()
        assert (frame.close_code, frame.close_reason) == (1001, "x")
        assert not ws.connected
        await peer.send_close(1001, "x")
        if role == "server":
            await peer.expect_eof()
        else:
            await wait_for_condition(lambda: ws.close_reason == 1001)
            # Waiting for the server to close TCP first.
            assert not closing.done()
            assert not ws.transport.is_closing()
            peer.close_tcp()
        await closing
        assert ws.close_reason == 1001
        with pytest.raises(ConnectionClosed):
            await ws.receive()


@pytest.mark.timeout(5)
async def test_client_close_aborts_when_server_keeps_tcp_open() -> None:
    close_timeout = 4 * T
    async with pair("client", close_timeout=close_timeout) as (ws, peer):
        start = now()
        closing = asyncio.create_task(ws.close())
        frame = await peer.expect_close()
        await peer.send_close(frame.close_code)
        # The server never closes TCP: the client gives up after close_timeout.
        await closing
        elapsed = now() - start
        assert close_timeout * 0.9 <= elapsed < close_timeout + 40 * T
        assert ws.close_reason == 1000
        await peer.expect_eof()


@pytest.mark.timeout(5)
async def test_close_is_idempotent(role: str) -> None:
    async with pair(role, close_timeout=NEVER) as (ws, peer):
        first = asyncio.create_task(ws.close())
        second = asyncio.create_task(ws.close(1011, "ignored"))
        frame = await peer.expect_close()
        assert frame.close_code == 1000
        await peer.send_close(1000)
        if role == "client":
            peer.close_tcp()
        # Exactly one close frame was sent.
        await peer.expect_eof()
        await asyncio.gather(first, second)
        # Once closed, close() returns at once.
        async with asyncio.timeout(T):
            await ws.close()
            await ws.close(1001)
        assert ws.close_reason == 1000


@pytest.mark.timeout(5)
async def test_close_returns_after_close_timeout_when_peer_is_silent(role: str) -> None:
    close_timeout = 4 * T
    async with pair(role, close_timeout=close_timeout) as (ws, peer):
        start = now()
        closing = asyncio.create_task(ws.close())
        frame = await peer.expect_close()
        assert frame.close_code == 1000
        await closing
        elapsed = now() - start
        assert close_timeout * 0.9 <= elapsed < close_timeout + 40 * T
        assert ws.close_reason == 1006
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        assert info.value.reason == 1006
        await peer.expect_eof()


@pytest.mark.timeout(5)
async def test_close_when_peer_already_closed(role: str) -> None:
    async with pair(role, close_timeout=NEVER) as (ws, peer):
        await peer.send_close(1000, "bye")
        await peer.expect_close()
        if role == "client":
            peer.close_tcp()
        else:
            await peer.expect_eof()
        async with asyncio.timeout(10 * T):
            await ws.close(1001)
        assert (ws.close_reason, ws.close_message) == (1000, "bye")


@pytest.mark.timeout(5)
async def test_cancelled_close_leaves_the_others_waiting(role: str) -> None:
    async with pair(role, close_timeout=NEVER) as (ws, peer):
        first = asyncio.create_task(ws.close())
        second = asyncio.create_task(ws.close())
        third = asyncio.create_task(ws.wait_closed())
        await peer.expect_close()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert not second.done() and not third.done()
        await peer.send_close(1000)
        if role == "client":
            peer.close_tcp()
        async with asyncio.timeout(10 * T):
            await asyncio.gather(second, third)
        assert ws.close_reason == 1000


@pytest.mark.timeout(5)
async def test_the_server_handler_sees_tcp_closed_after_the_close_handshake() -> None:
    """A close frame from the client: our server answers it and closes TCP before
    it wakes the handler, so the handler's close() has nothing left to wait for."""
    seen: asyncio.Queue[tuple[bool, int]] = asyncio.Queue()

    async def handler(ws: Any) -> None:
        async for _ in ws:
            pass
        await ws.close()
        seen.put_nowait((ws.transport.is_closing(), ws.close_reason))

    async with simple_websocket.serve(handler, close_timeout=NEVER) as server:
        peer = await rawpeer.connect(server.port)
        try:
            await peer.send_close(1000)
            frame = await peer.expect_close()
            assert frame.close_code == 1000
            await peer.expect_eof()
            async with asyncio.timeout(10 * T):
                assert await seen.get() == (True, 1000)
            await wait_for_condition(lambda: not server._handlers)
            assert not server.connections
        finally:
            peer.abort()


@pytest.mark.timeout(5)
async def test_iteration_goes_through_a_receive_of_a_subclass() -> None:
    received: list[Any] = []

    class Logging(simple_websocket.AioServer):
        async def receive(self, timeout: float | None = None) -> Any:
            message = await super().receive(timeout)
            received.append(message)
            return message

    got: asyncio.Queue[list[Any]] = asyncio.Queue()

    async def handler(ws: Any) -> None:
        got.put_nowait([m async for m in ws])

    async with simple_websocket.serve(handler, server_class=Logging) as server:
        peer = await rawpeer.connect(server.port)
        try:
            await peer.send_text("one")
            await peer.send_text("two")
            await peer.send_close(1000)
            async with asyncio.timeout(10 * T):
                assert await got.get() == ["one", "two"]
            assert received == ["one", "two"]
        finally:
            peer.abort()


def test_connections_keep_the_engine_state_out_of_the_instance_dict() -> None:
    """Slots: a connection's dictionary only holds what its class adds."""
    from simple_websocket.sansio.protocol import Protocol

    assert not hasattr(Protocol(True), "__dict__")
    client = AioClient("ws://127.0.0.1:1/")
    assert set(vars(client)) <= {
        "_url",
        "url",
        "ssl_context",
        "is_secure",
        "host",
        "port",
        "path",
        "subprotocols",
        "extra_headers",
        "response_headers",
    }
    client.anything = 1  # applications may still add attributes (1.1 allowed it)
    assert client._send_queue is None  # made when a send() first has to wait


@pytest.mark.timeout(5)
async def test_close_frame_without_status_gives_1005(role: str) -> None:
    async with pair(role) as (ws, peer):
        await peer.send_close(None)
        frame = await peer.expect_close()
        # An empty close frame is answered with an empty one (or 1000).
        assert frame.close_code in (None, 1000)
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        assert info.value.reason == 1005


@pytest.mark.timeout(5)
async def test_peer_abort_gives_1006(role: str) -> None:
    async with pair(role) as (ws, peer):
        await peer.send_text("last")
        await peer.barrier()
        peer.abort()
        assert await ws.receive() == "last"
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        assert info.value.reason == 1006
        assert not ws.connected
        with pytest.raises(ConnectionClosed):
            await ws.send("x")
        # close() after the loss returns at once.
        async with asyncio.timeout(T):
            await ws.close()


@pytest.mark.timeout(5)
async def test_peer_eof_without_close_frame_gives_1006(role: str) -> None:
    async with pair(role) as (ws, peer):
        peer.writer.write_eof()
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        assert info.value.reason == 1006
        await ws.wait_closed()


@pytest.mark.timeout(5)
async def test_protocol_error_while_closing_fails_at_once(role: str) -> None:
    async with pair(role, close_timeout=NEVER) as (ws, peer):
        closing = asyncio.create_task(ws.close())
        await peer.expect_close()
        # Garbage instead of the close answer: no need to wait for anything more.
        await peer.send(0x3, b"?")
        await peer.expect_eof()
        await closing
        assert ws.close_reason == 1002


# -- protocol errors --------------------------------------------------------------


LIMIT = 1024


def _cases() -> list[Any]:
    """(id, builder(peer) -> bytes, expected close code, roles)."""

    def f(opcode: int, payload: bytes = b"", **kw: Any) -> Any:
        return lambda peer: peer.frame(opcode, payload, **kw)

    def seq(*builders: Any) -> Any:
        return lambda peer: b"".join(b(peer) for b in builders)

    both = ("server", "client")
    cases = [
        ("rsv1", f(TEXT, b"hi", rsv1=True), 1002, both),
        ("rsv2", f(BINARY, b"hi", rsv2=True), 1002, both),
        ("rsv3-on-ping", f(PING, b"hi", rsv3=True), 1002, both),
        ("opcode-3", f(0x3, b"hi"), 1002, both),
        ("opcode-B", f(0xB, b"hi"), 1002, both),
        ("unmasked-from-client", f(TEXT, b"hi", mask=None), 1002, ("server",)),
        ("masked-from-server", f(TEXT, b"hi", mask=b"abcd"), 1002, ("client",)),
        ("fragmented-ping", f(PING, b"hi", fin=False), 1002, both),
        ("fragmented-close", f(CLOSE, struct.pack("!H", 1000), fin=False), 1002, both),
        ("ping-too-long", f(PING, b"x" * 126), 1002, both),
        ("continuation-without-start", f(CONT, b"hi"), 1002, both),
        ("new-message-inside-fragmented", seq(f(TEXT, b"a", fin=False), f(TEXT, b"b")), 1002, both),
        ("close-1-byte", f(CLOSE, b"\x03"), 1002, both),
        ("close-code-999", f(CLOSE, struct.pack("!H", 999)), 1002, both),
        ("close-code-1006", f(CLOSE, struct.pack("!H", 1006)), 1002, both),
        ("close-bad-utf8-reason", f(CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007, both),
        ("length-msb-set", f(BINARY, b"x" * 16, length=1 << 63), 1002, both),
        ("invalid-utf8", f(TEXT, b"ok \xff"), 1007, both),
        ("invalid-utf8-surrogate", f(TEXT, b"\xed\xa0\x80"), 1007, both),
        (
            "invalid-utf8-across-fragments",
            seq(f(TEXT, b"\xe2\x82", fin=False), f(CONT, b"\x28")),
            1007,
            both,
        ),
        (
            "truncated-utf8-at-message-end",
            seq(f(TEXT, b"abc", fin=False), f(CONT, b"\xe2\x82")),
            1007,
            both,
        ),
        ("too-big-one-frame", f(BINARY, b"x" * (LIMIT + 1)), 1009, both),
        ("too-big-text", f(TEXT, "é".encode() * (LIMIT // 2 + 1)), 1009, both),
        # The limit is in bytes: 600 two-byte characters in small fragments are 1200.
        (
            "too-big-text-fragmented",
            seq(
                *(f(TEXT if i == 0 else CONT, "é".encode() * 100, fin=False) for i in range(5)),
                f(CONT, "é".encode() * 100),
            ),
            1009,
            both,
        ),
        (
            "too-big-fragmented",
            seq(
                f(BINARY, b"x" * 400, fin=False),
                f(CONT, b"x" * 400, fin=False),
                f(CONT, b"x" * 400),
            ),
            1009,
            both,
        ),
        # A header announcing 2**62 bytes, followed by more than the limit: must fail
        # with 1009 without trying to buffer (or allocate) the announced size.
        ("too-big-huge-length", f(BINARY, b"x" * (2 * LIMIT), length=1 << 62), 1009, both),
    ]
    return [
        pytest.param(role, build, code, id=f"{role}-{name}")
        for name, build, code, roles in cases
        for role in roles
    ]


@pytest.mark.timeout(5)
@pytest.mark.parametrize("split", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize(("role", "build", "code"), _cases())
async def test_protocol_error_gets_close_frame(
    role: str, build: Any, code: int, split: bool
) -> None:
    async with pair(role, max_message_size=LIMIT, close_timeout=NEVER) as (ws, peer):
        await peer.send_text("ok")
        bad = build(peer)
        await peer.write(bad, chunks=[1] * 40 if split else None)
        frame = await peer.expect_close()
        assert frame.close_code == code, frame
        # After failing the connection, both roles close TCP without waiting.
        await peer.expect_eof()
        assert await ws.receive() == "ok"
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        assert info.value.reason == code
        assert ws.close_reason == code


@pytest.mark.timeout(5)
async def test_server_keeps_serving_after_failed_connections() -> None:
    async with OurServer(max_message_size=LIMIT) as server:
        for bad in (
            rawpeer.encode_frame(BINARY, b"x" * 64, mask=b"abcd", length=1 << 62),
            rawpeer.encode_frame(TEXT, b"\xff", mask=b"abcd"),
            rawpeer.encode_frame(TEXT, b"hi"),
        ):
            peer = await rawpeer.connect(server.port)
            ws = await server.conns.get()
            await peer.write(bad + b"x" * (2 * LIMIT))
            await peer.expect_close()
            await peer.expect_eof()
            with pytest.raises(ConnectionClosed):
                await ws.receive()
            peer.abort()
        peer = await rawpeer.connect(server.port)
        ws = await server.conns.get()
        await peer.send_text("still there?")
        assert await ws.receive() == "still there?"
        await ws.send("yes")
        frame = await peer.recv_frame()
        assert (frame.opcode, frame.text) == (TEXT, "yes")
        peer.abort()


@pytest.mark.timeout(5)
async def test_message_at_the_size_limit_is_accepted(role: str) -> None:
    async with pair(role, max_message_size=LIMIT) as (ws, peer):
        await peer.send(BINARY, b"x" * LIMIT)
        await peer.send(TEXT, b"y" * 500, fin=False)
        await peer.send(CONT, b"y" * (LIMIT - 500))
        await peer.send(TEXT, "€".encode() * (LIMIT // 3))
        assert await ws.receive() == b"x" * LIMIT
        assert await ws.receive() == "y" * LIMIT
        assert await ws.receive() == "€" * (LIMIT // 3)
        assert ws.connected


@pytest.mark.timeout(5)
async def test_fragmented_messages_and_interleaved_control_frames(role: str) -> None:
    async with pair(role) as (ws, peer):
        euro = "€".encode()
        data = (
            peer.frame(TEXT, b"ab" + euro[:1], fin=False)
            + peer.frame(PING, b"in-between")
            + peer.frame(CONT, euro[1:], fin=False)
            + peer.frame(PONG, b"unsolicited")
            + peer.frame(CONT, b"", fin=False)
            + peer.frame(CONT, b"cd")
            + peer.frame(BINARY, b"\x00", fin=False)
            + peer.frame(CONT, b"\x01")
        )
        await peer.write(data, chunks=[1] * len(data))
        assert await ws.receive() == "ab€cd"
        assert await ws.receive() == b"\x00\x01"
        frame = await peer.recv_frame()
        assert (frame.opcode, frame.payload) == (PONG, b"in-between")


# -- data glued to the handshake ------------------------------------------------------


@pytest.mark.timeout(5)
async def test_frames_glued_to_101_are_not_lost() -> None:
    glued = (
        rawpeer.encode_frame(TEXT, b"first")
        + rawpeer.encode_frame(PING, b"glued-ping")
        + rawpeer.encode_frame(BINARY, b"second")
        + rawpeer.encode_frame(TEXT, b"thi", fin=False)
    )
    async with pair("client", after_handshake=glued) as (ws, peer):
        assert await ws.receive() == "first"
        assert await ws.receive() == b"second"
        frame = await peer.recv_frame()
        assert (frame.opcode, frame.payload) == (PONG, b"glued-ping")
        await peer.send(CONT, b"rd")
        assert await ws.receive() == "third"


@pytest.mark.timeout(5)
async def test_frames_glued_to_request_are_not_lost() -> None:
    glued = rawpeer.encode_frame(TEXT, b"early", mask=b"1234") + rawpeer.encode_frame(
        PING, b"early-ping", mask=b"5678"
    )
    async with pair("server", after_handshake=glued) as (ws, peer):
        assert await ws.receive() == "early"
        frame = await peer.recv_frame()
        assert (frame.opcode, frame.payload) == (PONG, b"early-ping")


@pytest.mark.timeout(5)
async def test_close_glued_to_101() -> None:
    glued = rawpeer.encode_frame(TEXT, b"hi") + rawpeer.encode_frame(
        CLOSE, rawpeer.close_payload(1001, "going")
    )
    async with pair("client", after_handshake=glued, close_timeout=NEVER) as (ws, peer):
        frame = await peer.expect_close()
        assert frame.close_code == 1001
        peer.close_tcp()
        assert [m async for m in ws] == ["hi"]
        assert (ws.close_reason, ws.close_message) == (1001, "going")


# -- ping, pong and keepalive -------------------------------------------------------


@pytest.mark.timeout(5)
@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(125))])
async def test_ping_is_answered_with_same_payload(role: str, payload: bytes) -> None:
    async with pair(role) as (ws, peer):
        await peer.send(PING, payload)
        frame = await peer.recv_frame()
        assert (frame.opcode, frame.payload) == (PONG, payload)
        assert ws.connected


async def answer_pings(peer: RawPeer, count: list[int], times: list[float] | None = None) -> None:
    """Answer every ping until the connection ends; count them."""
    try:
        while True:
            frame = await peer.recv_frame()
            if frame.opcode == PING:
                if times is not None:
                    times.append(now())
                count[0] += 1
                await peer.send(PONG, frame.payload)
            elif frame.opcode == CLOSE:
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        return


@pytest.mark.timeout(5)
async def test_ping_returns_round_trip_time(role: str) -> None:
    async with pair(role) as (ws, peer):
        assert ws.latency is None
        answering = asyncio.create_task(answer_pings(peer, [0]))
        rtt = await ws.ping()
        assert 0 <= rtt < 1
        assert ws.latency is not None
        assert 0 <= ws.latency <= rtt + 1e-6
        rtt2 = await ws.ping(b"explicit")
        assert rtt2 >= 0
        answering.cancel()


@pytest.mark.timeout(5)
async def test_ping_raises_when_connection_closes(role: str) -> None:
    async with pair(role) as (ws, peer):
        pinging = asyncio.create_task(ws.ping())
        frame = await peer.recv_frame()
        assert frame.opcode == PING
        peer.abort()
        with pytest.raises(ConnectionClosed):
            await pinging


@pytest.mark.timeout(5)
async def test_keepalive_fails_connection_without_pongs(role: str) -> None:
    async with pair(role, ping_interval=T, ping_timeout=T) as (ws, peer):
        frame = await peer.recv_frame()
        assert frame.opcode == PING
        start = now()
        frame = await peer.expect_close()
        assert frame.close_code == 1011
        # The ping went out after ping_interval, the failure ping_timeout later.
        assert now() - start >= T * 0.5
        await peer.expect_eof()
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        assert info.value.reason == 1011


@pytest.mark.timeout(5)
async def test_keepalive_survives_when_pongs_come(role: str) -> None:
    async with pair(role, ping_interval=T, ping_timeout=T) as (ws, peer):
        count = [0]
        answering = asyncio.create_task(answer_pings(peer, count))
        await wait_for_condition(lambda: count[0] >= 6 or answering.done())
        assert count[0] >= 6
        assert ws.connected
        assert ws.latency is not None
        await ws.send("still open")
        answering.cancel()


@pytest.mark.timeout(5)
async def test_keepalive_pings_every_ping_interval_with_short_ping_timeout(role: str) -> None:
    interval = 4 * T
    async with pair(role, ping_interval=interval, ping_timeout=T) as (ws, peer):
        count = [0]
        times: list[float] = []
        answering = asyncio.create_task(answer_pings(peer, count, times))
        await wait_for_condition(lambda: count[0] >= 3 or answering.done())
        assert ws.connected
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap >= interval * 0.75 for gap in gaps), gaps
        answering.cancel()


@pytest.mark.timeout(5)
async def test_keepalive_short_ping_timeout_fails_early(role: str) -> None:
    interval = 4 * T
    async with pair(role, ping_interval=interval, ping_timeout=T) as (ws, peer):
        frame = await peer.recv_frame()
        assert frame.opcode == PING
        pinged = now()
        frame = await peer.expect_close()
        assert frame.close_code == 1011
        # Failed ping_timeout after the ping, not a whole ping_interval later.
        assert T * 0.5 <= now() - pinged < interval
        assert ws.close_reason == 1011


# -- receive: timeouts and cancellation -----------------------------------------------


@pytest.mark.timeout(5)
async def test_receive_timeout_returns_none(role: str) -> None:
    async with pair(role) as (ws, peer):
        start = now()
        assert await ws.receive(timeout=2 * T) is None
        assert now() - start >= 2 * T * 0.9
        assert ws.connected
        # A message that arrives within the timeout is returned.
        receiving = asyncio.create_task(ws.receive(timeout=NEVER))
        await peer.send_text("in time")
        assert await receiving == "in time"


@pytest.mark.timeout(5)
async def test_receive_zero_does_not_block(role: str) -> None:
    async with pair(role) as (ws, peer):
        assert await ws.receive(0) is None
        assert await ws.receive(timeout=0) is None
        await peer.send_text("x")
        await peer.send_binary(b"y")
        await peer.barrier()
        assert await ws.receive(0) == "x"
        assert await ws.receive(0) == b"y"
        assert await ws.receive(0) is None


@pytest.mark.timeout(20)
@pytest.mark.parametrize("seed", range(4))
async def test_cancelled_receives_lose_no_message(role: str, seed: int) -> None:
    rnd = random.Random(seed)
    total = 300
    async with pair(role, max_queue=4) as (ws, peer):

        async def produce() -> None:
            for i in range(total):
                await peer.send_text(str(i))
                for _ in range(rnd.randrange(3)):
                    await asyncio.sleep(0)

        producer = asyncio.create_task(produce())
        received: list[Any] = []
        while len(received) < total:
            how = rnd.randrange(4)
            if how == 0:
                try:
                    received.append(
                        await asyncio.wait_for(ws.receive(), rnd.choice([0, 1e-4, 1e-3]))
                    )
                except TimeoutError:
                    pass
            elif how == 1:
                task = asyncio.create_task(ws.receive())
                for _ in range(rnd.randrange(4)):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    received.append(await task)
                except asyncio.CancelledError:
                    pass
            elif how == 2:
                message = await ws.receive(timeout=rnd.choice([0, 1e-4]))
                if message is not None:
                    received.append(message)
            else:
                received.append(await ws.receive())
        await producer
        assert received == [str(i) for i in range(total)]
        assert await ws.receive(0) is None


@pytest.mark.timeout(5)
async def test_concurrent_receivers_each_get_one_message(role: str) -> None:
    async with pair(role) as (ws, peer):
        receivers = [asyncio.create_task(ws.receive()) for _ in range(5)]
        await asyncio.sleep(0)
        for i in range(5):
            await peer.send_text(str(i))
        results = await asyncio.gather(*receivers)
        assert sorted(results) == [str(i) for i in range(5)]


# -- backpressure -------------------------------------------------------------------


@pytest.mark.timeout(20)
async def test_read_backpressure(role: str) -> None:
    max_queue = 4
    size = 4096
    total = 2000  # 8 MB: far more than one read and than the socket buffers
    async with pair(role, max_queue=max_queue, peer_sndbuf=16384) as (ws, peer):
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)

        def message(i: int) -> bytes:
            return i.to_bytes(4, "big") * (size // 4)

        async def produce() -> None:
            for i in range(total):
                peer.writer.write(peer.frame(BINARY, message(i)))
                await peer.writer.drain()

        producer = asyncio.create_task(produce())
        await wait_for_condition(lambda: not ws.transport.is_reading())
        # Wait until the peer is blocked by TCP flow control (or wrote everything).
        await wait_for_condition(
            lambda: producer.done() or peer.transport.get_write_buffer_size() > 0
        )
        assert not ws.transport.is_reading()
        assert queued(ws) <= max_queue
        assert not producer.done(), "backpressure did not reach the peer"
        for i in range(total):
            assert await ws.receive() == message(i)
            assert queued(ws) <= max_queue
        await producer
        assert ws.transport.is_reading()
        assert ws.connected


@pytest.mark.timeout(10)
@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_read_backpressure_counts_messages_not_reads(role: str, deflate: bool) -> None:
    """One read holding thousands of messages does not fill the queue beyond max_queue.

    With permessage-deflate, 2000 messages of 10 kB are about 60 kB on the wire
    but 20 MB once inflated: only max_queue of them may be inflated ahead.
    """
    max_queue = 4
    total = 2000
    size = 10_000 if deflate else 1
    async with pair(role, max_queue=max_queue, deflate=deflate) as (ws, peer):

        def message(i: int) -> str:
            return (str(i % 10) * size) if deflate else str(i % 10)

        data = b"".join(
            peer.compressed(TEXT, message(i).encode())
            if deflate
            else peer.frame(TEXT, message(i).encode())
            for i in range(total)
        )
        await peer.write(data)
        await wait_for_condition(lambda: not ws.transport.is_reading())
        assert queued(ws) <= max_queue
        for i in range(total):
            assert await ws.receive() == message(i)
            assert queued(ws) <= max_queue
        # Everything was read: reading goes on, and the connection still works.
        await peer.barrier()
        assert ws.transport.is_reading()


@pytest.mark.timeout(5)
async def test_eof_after_messages_while_paused_delivers_all(role: str) -> None:
    async with pair(role, max_queue=4) as (ws, peer):
        await peer.write(b"".join(peer.frame(TEXT, str(i).encode()) for i in range(50)))
        peer.writer.write_eof()
        await wait_for_condition(lambda: not ws.transport.is_reading())
        received = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                received.append(await ws.receive())
        assert received == [str(i) for i in range(50)]
        assert info.value.reason == 1006


@pytest.mark.timeout(10)
async def test_close_while_reading_is_paused(role: str) -> None:
    async with pair(role, max_queue=4, close_timeout=NEVER) as (ws, peer):
        for i in range(20):
            await peer.send_text(str(i))
        await wait_for_condition(lambda: not ws.transport.is_reading())
        closing = asyncio.create_task(ws.close())
        # The peer answers the close frame; our side must read on to find it.
        frame = await peer.expect_close()
        await peer.send_close(frame.close_code, "answer")
        if role == "client":
            peer.close_tcp()
        else:
            await peer.expect_eof()
        await closing
        assert (ws.close_reason, ws.close_message) == (1000, "answer")


async def track_max(value: Any, stop: asyncio.Event, out: list[int]) -> None:
    """Sample ``value()`` on every loop iteration until ``stop``; keep the maximum."""
    while not stop.is_set():
        out[0] = max(out[0], value())
        await asyncio.sleep(0)


@pytest.mark.timeout(20)
async def test_write_backpressure(role: str) -> None:
    senders = 8
    per_sender = 8
    size = 64 * 1024  # 4 MB in all, far more than the socket buffers
    async with pair(role, peer_rcvbuf=4096) as (ws, peer):
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        low, high = ws.transport.get_write_buffer_limits()
        buffered = [0]
        stop = asyncio.Event()
        monitor = asyncio.create_task(track_max(ws.transport.get_write_buffer_size, stop, buffered))

        def message(sender: int, seq: int) -> bytes:
            return bytes([sender, seq]) * (size // 2)

        async def send_all(sender: int) -> None:
            for seq in range(per_sender):
                await ws.send(message(sender, seq))

        tasks = [asyncio.create_task(send_all(s)) for s in range(senders)]
        # Writing is paused above the high-water mark and resumes below the low one.
        await wait_for_condition(
            lambda: all(t.done() for t in tasks) or ws.transport.get_write_buffer_size() > low
        )
        for _ in range(20):
            await asyncio.sleep(0)
        # The peer does not read: the senders are blocked and the buffer is bounded.
        assert not any(t.done() for t in tasks)
        assert buffered[0] <= high + size + 256, (buffered[0], high)
        # The peer reads: every send completes, every message intact, per-sender order.
        next_seq = [0] * senders
        for _ in range(senders * per_sender):
            frame = await peer.recv_frame()
            assert frame.opcode == BINARY
            sender, seq = frame.payload[0], frame.payload[1]
            assert frame.payload == message(sender, seq)
            assert seq == next_seq[sender]
            next_seq[sender] += 1
        await asyncio.gather(*tasks)
        stop.set()
        await monitor
        assert next_seq == [per_sender] * senders
        # At most one message beyond the high-water mark (plus a control frame).
        assert buffered[0] <= high + size + 256, (buffered[0], high)


@pytest.mark.timeout(20)
async def test_send_order_is_call_order_under_backpressure(role: str) -> None:
    size = 16 * 1024
    total = 400
    async with pair(role, peer_rcvbuf=4096) as (ws, peer):
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        order: list[int] = []
        tasks: list[asyncio.Task[None]] = []

        async def send(i: int) -> None:
            order.append(i)
            await ws.send(i.to_bytes(4, "big") * (size // 4))

        async def spawn() -> None:
            # A new send() on every loop iteration, while earlier ones are blocked
            # or being released.
            for i in range(total):
                tasks.append(asyncio.create_task(send(i)))
                await asyncio.sleep(0)

        spawner = asyncio.create_task(spawn())
        got = []
        for _ in range(total):
            frame = await peer.recv_frame()
            got.append(int.from_bytes(frame.payload[:4], "big"))
        await spawner
        await asyncio.gather(*tasks)
        assert got == order
