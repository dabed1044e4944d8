"""Hostile peers: absurd lengths, size limits, a zip bomb, slow-loris handshakes and
very fragmented messages.

The expected result is always the same: the connection under attack is failed with
the right close code (1002, 1009) or dropped, memory stays bounded, and the other
connections of the same server keep working.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import tracemalloc
import zlib

import pytest

from simple_websocket import OpenTimeout
from simple_websocket.sansio.limits import MAX_INFLATED_SIZE, SERVE_MAX_MESSAGE_SIZE
from simple_websocket.sansio.protocol import Protocol
from tests.asyncio.rawpeer import BINARY, CONT, PING, TEXT, encode_frame

from .harness import (
    ALL_TARGETS,
    CLIENT_TARGETS,
    SERVER_TARGETS,
    ScriptedServer,
    ServerTarget,
    T,
    connect_client,
    open_peer,
    pair,
    upgrade_request,
)

pytestmark = pytest.mark.timeout(20)

targets = pytest.mark.parametrize("target", ALL_TARGETS)
servers = pytest.mark.parametrize("target", SERVER_TARGETS)

LIMIT = 64 * 1024


# -- absurd lengths ------------------------------------------------------------------------


@targets
@pytest.mark.parametrize("length", [1 << 63, (1 << 64) - 1], ids=["2**63", "2**64-1"])
async def test_length_with_most_significant_bit_fails_with_1002(target: str, length: int) -> None:
    """5.2: "the most significant bit MUST be 0"."""
    async with pair(target) as (side, peer):
        await peer.write(peer.frame(BINARY, b"x" * 16, length=length))
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@targets
@pytest.mark.parametrize("length", [(1 << 63) - 1, 1 << 32], ids=["2**63-1", "2**32"])
async def test_huge_length_fails_with_1009_once_over_the_limit(target: str, length: int) -> None:
    """A header announcing exabytes is not trusted: past max_message_size bytes the
    connection fails with 1009, nothing near the announced size is allocated."""
    async with pair(target, max_message_size=LIMIT) as (side, peer):
        await peer.write(peer.frame(BINARY, b"x" * (LIMIT + 1), length=length))
        await peer.expect_failure(1009)
        await side.expect_closed(1009)


@targets
async def test_announced_length_over_the_limit_fails_at_the_header(target: str) -> None:
    async with pair(target, max_message_size=LIMIT) as (side, peer):
        await peer.write(peer.frame(BINARY, b"x" * 10, length=(1 << 63) - 1))
        await asyncio.wait_for(peer.expect_failure(1009), 10 * T)
        await side.expect_closed(1009)


# -- size limits ------------------------------------------------------------------------------


@targets
@pytest.mark.parametrize("how", ["one-frame", "fragments", "compressed"])
async def test_message_over_the_limit_fails_with_1009(target: str, how: str) -> None:
    async with pair(target, deflate=how == "compressed", max_message_size=LIMIT) as (
        side,
        peer,
    ):
        await peer.send_binary(b"y" * LIMIT)  # at the limit: fine
        assert await side.receive() == b"y" * LIMIT
        data = b"z" * (LIMIT + 1)
        if how == "one-frame":
            await peer.send_binary(data)
        elif how == "fragments":
            chunk = 1000
            frames = [
                peer.frame(
                    BINARY if i == 0 else CONT, data[i : i + chunk], fin=i + chunk >= len(data)
                )
                for i in range(0, len(data), chunk)
            ]
            await peer.write(b"".join(frames))
        else:
            frame = peer.compressed(BINARY, data)
            assert len(frame) < 1000  # small on the wire, too big once inflated
            await peer.write(frame)
        await peer.expect_failure(1009)
        await side.expect_closed(1009)


@servers
async def test_other_connections_keep_working_after_1009(target: str) -> None:
    async with ServerTarget(target, max_message_size=LIMIT) as server:
        peers = [await open_peer(server.port) for _ in range(4)]
        sides = [await server.side_of(peer) for peer in peers]
        for round_ in range(2):
            attacker = peers.pop(0)
            victim_side = sides.pop(0)
            await attacker.send_binary(b"!" * (LIMIT + 1))
            await attacker.expect_failure(1009)
            await victim_side.expect_closed(1009)
            for peer, side in zip(peers, sides, strict=True):
                await peer.roundtrip(side, b"%d" % round_ * LIMIT)
        fresh = await open_peer(server.port)
        await fresh.roundtrip(await server.side_of(fresh), "a new connection")


# -- zip bomb -----------------------------------------------------------------------------------

BOMB_SIZE = 256 * 1024 * 1024  # inflated
BOMB_LIMIT = 1024 * 1024  # max_message_size


def _bomb() -> bytes:
    """A permessage-deflate payload of ~250 KiB that inflates to 256 MiB of zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1024 * 1024)
    parts = [compressor.compress(chunk) for _ in range(BOMB_SIZE // len(chunk))]
    data = b"".join(parts) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


_BOMB = _bomb()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "target",
    [t for t in ALL_TARGETS],
)
async def test_zip_bomb_fails_with_1009_and_bounded_memory(target: str) -> None:
    assert len(_BOMB) < BOMB_SIZE // 500
    async with pair(target, deflate=True, max_message_size=BOMB_LIMIT) as (side, peer):
        frame = peer.frame(BINARY, _BOMB, rsv1=True)
        gc.collect()
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            await peer.write(frame)
            await peer.expect_failure(1009)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        await side.expect_closed(1009)
        grown = peak - base
        # Well below the inflated size: a bounded inflater needs about the limit plus
        # a few read buffers.
        assert grown < BOMB_SIZE // 16, f"peak grew by {grown / 2**20:.0f} MiB"


# -- default limits -------------------------------------------------------------------------
# Not given max_message_size, serve() accepts at most 1 MiB per message; the 1.1 entry
# points accept uncompressed messages of any size, as 1.1 did, but inflate a compressed
# one to at most 64 MiB. An explicit max_message_size, None included, sets both.

MIB = 1024 * 1024


@functools.cache
def deflated_zeros(size: int) -> bytes:
    """The permessage-deflate payload of ``size`` zero bytes (about size / 1000)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(MIB)
    parts = [compressor.compress(chunk) for _ in range(size // MIB)]
    parts.append(compressor.compress(bytes(size % MIB)))
    data = b"".join(parts) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


def default_limit(target: str) -> int:
    """The largest message ``target`` inflates when ``max_message_size`` is not given."""
    return SERVE_MAX_MESSAGE_SIZE if target == "serve" else MAX_INFLATED_SIZE


@pytest.mark.timeout(60)
@targets
async def test_compressed_message_over_the_default_limit_fails_with_1009(target: str) -> None:
    limit = default_limit(target)
    async with pair(target, deflate=True) as (side, peer):
        # At the limit: delivered.
        await peer.write(peer.frame(BINARY, deflated_zeros(limit), rsv1=True))
        message = await side.receive(timeout=20)
        assert len(message) == limit and not message.strip(b"\0")
        del message
        # One byte more (and a 300 MiB bomb): refused while inflating.
        await peer.write(peer.frame(BINARY, deflated_zeros(limit + 1), rsv1=True))
        frame = await peer.expect_failure(1009)
        assert frame.payload[2:] == f"Message larger than {limit} bytes".encode()
        await side.expect_closed(1009)
    async with pair(target, deflate=True) as (side, peer):
        await peer.write(peer.frame(BINARY, deflated_zeros(300 * MIB), rsv1=True))
        await peer.expect_failure(1009)
        await side.expect_closed(1009)


@pytest.mark.timeout(60)
@targets
async def test_explicit_none_lifts_the_inflate_limit(target: str) -> None:
    size = MAX_INFLATED_SIZE + 1
    async with pair(target, deflate=True, max_message_size=None) as (side, peer):
        await peer.write(peer.frame(BINARY, deflated_zeros(size), rsv1=True))
        message = await side.receive(timeout=20)
        assert len(message) == size and not message.strip(b"\0")


@targets
async def test_uncompressed_messages_keep_the_1_1_default(target: str) -> None:
    data = os.urandom(SERVE_MAX_MESSAGE_SIZE + 1)
    async with pair(target) as (side, peer):
        await peer.write(peer.frame(BINARY, data[:-1]))
        assert await side.receive() == data[:-1]
        await peer.write(peer.frame(BINARY, data))
        if target == "serve":
            frame = await peer.expect_failure(1009)
            assert (
                frame.payload[2:] == f"Message larger than {SERVE_MAX_MESSAGE_SIZE} bytes".encode()
            )
            await side.expect_closed(1009)
        else:
            assert await side.receive() == data


# -- slow handshakes ------------------------------------------------------------------------------


async def _dropped_after(reader: asyncio.StreamReader) -> float:
    """Seconds until the server dropped the connection (EOF or reset)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        data = await reader.read()
    except ConnectionResetError:
        data = b""
    assert data == b"", data
    return loop.time() - start


@pytest.mark.parametrize("behaviour", ["silent", "partial-head", "trickle"])
async def test_slow_loris_handshake_is_dropped_after_open_timeout(behaviour: str) -> None:
    open_timeout = 6 * T
    async with ServerTarget("serve", open_timeout=open_timeout) as server:
        request, _ = upgrade_request(server.port)
        loris = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(20)]
        trickling: list[asyncio.Task[None]] = []

        async def trickle(writer: asyncio.StreamWriter) -> None:
            # One byte every T, never reaching the end of the head: only the
            # behaviour under test is about time, and T scales it.
            for byte in request[:-4]:
                writer.write(bytes([byte]))
                await asyncio.sleep(T)

        for _, writer in loris:
            if behaviour == "partial-head":
                writer.write(request[:-10])
            elif behaviour == "trickle":
                trickling.append(asyncio.create_task(trickle(writer)))
        # Meanwhile the server serves others.
        peer = await open_peer(server.port)
        side = await server.side_of(peer)
        await peer.roundtrip(side, "not blocked by the slow ones")
        waits = await asyncio.gather(*(_dropped_after(reader) for reader, _ in loris))
        for task in trickling:
            task.cancel()
        assert max(waits) < open_timeout + 2.0
        for _, writer in loris:
            writer.close()
        # The established connection was not affected by the handshake timer.
        await peer.roundtrip(side, "still open")


@pytest.mark.parametrize("target", CLIENT_TARGETS)
async def test_client_open_timeout_when_server_never_answers(target: str) -> None:
    async with ScriptedServer(respond=lambda key, head: None) as raw:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(OpenTimeout):
            await connect_client(target, raw.url, open_timeout=4 * T)
        assert loop.time() - start < 4 * T + 2.0
        await (await raw.accept()).expect_eof()


# -- many fragments ----------------------------------------------------------------------


@targets
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
async def test_ten_thousand_fragments_of_one_message(target: str, opcode: int) -> None:
    async with pair(target) as (side, peer):
        n = 10_000
        frames = [peer.frame(opcode, b"a", fin=False)]
        frames += [peer.frame(CONT, b"a" if i % 2 else b"", fin=False) for i in range(n - 2)]
        frames.append(peer.frame(CONT, b"a"))
        await peer.write(b"".join(frames))
        expected = b"a" * (2 + (n - 2) // 2)
        assert await side.receive(timeout=10) == (expected.decode() if opcode == TEXT else expected)
        await peer.roundtrip(side, "next message")


@targets
async def test_ten_thousand_fragments_over_the_limit_fail_with_1009(target: str) -> None:
    async with pair(target, max_message_size=5000) as (side, peer):
        frames = [peer.frame(BINARY, b"a", fin=False)]
        frames += [peer.frame(CONT, b"a", fin=False) for _ in range(9_998)]
        frames.append(peer.frame(CONT, b"a"))
        await peer.write(b"".join(frames))
        await peer.expect_failure(1009)
        await side.expect_closed(1009)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_a_message_of_tiny_fragments_costs_about_its_size_in_memory(opcode: int) -> None:
    """Fragments are assembled in one buffer, not kept one object each (which cost
    50 to 100 bytes per fragment: 120 times the message for one-byte fragments)."""
    n = 100_000
    frames = [encode_frame(opcode, b"ab", fin=False, mask=b"abcd")]
    frames += [encode_frame(CONT, b"ab", fin=False, mask=b"abcd") for _ in range(n - 2)]
    frames.append(encode_frame(CONT, b"ab", mask=b"abcd"))
    stream = b"".join(frames)
    del frames
    proto = Protocol(client=False)
    messages: list[str | bytes] = []
    gc.collect()
    tracemalloc.start()
    try:
        for start in range(0, len(stream), 256 * 1024):
            messages += proto.receive_data(stream[start : start + 256 * 1024])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert messages == ["ab" * n if opcode == TEXT else b"ab" * n]
    size = 2 * n
    # The buffer, the message made of it, and a read's worth of bytes.
    assert peak < 3 * size + 2 * 256 * 1024, f"peak {peak} bytes for a {size}-byte message"


@pytest.mark.timeout(60)
@servers
async def test_fragment_flood_leaves_other_connections_served(target: str) -> None:
    """100,000 one-byte fragments (700 KB on the wire) cost a few microseconds each,
    and the server keeps serving another connection while it parses them."""
    n = 100_000
    async with ServerTarget(target) as server:
        flooder = await open_peer(server.port)
        flooded = await server.side_of(flooder)
        other = await open_peer(server.port)
        other_side = await server.side_of(other)
        frames = [flooder.frame(BINARY, b"a", fin=False)]
        frames += [flooder.frame(CONT, b"a", fin=False) for _ in range(n - 2)]
        frames.append(flooder.frame(CONT, b"a"))
        flood = asyncio.ensure_future(flooder.write(b"".join(frames)))
        received = asyncio.ensure_future(flooded.receive(timeout=30))
        served = 0
        while not received.done():
            await other.roundtrip(other_side, f"served {served}")
            served += 1
        await flood
        assert await received == b"a" * n
        assert served > 0
        await other.roundtrip(other_side, "after the flood")


# -- a ping flood from a peer that never reads -------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("target", ["serve", "sock", "aiohttp", "client"])
async def test_ping_flood_without_reading_keeps_our_buffers_bounded(target: str) -> None:
    """A peer that never reads the pongs must not make our side buffer them without
    limit: while our write buffer is full only the latest ping is answered (RFC 6455
    5.5.3), and that pong goes out once the peer reads again (asyncio targets: their
    write buffer is observable; the threaded engine blocks in sendall() and stops
    reading)."""
    bound = 4 * 2**20
    async with pair(target) as (side, peer):
        transport = side.ws.transport
        batch = peer.frame(PING, b"x" * 125) * 1000
        for _ in range(160):
            peer.writer.write(batch)
            try:
                await asyncio.wait_for(peer.writer.drain(), 20 * T)
            except TimeoutError:
                break  # our side stopped reading: backpressure works
            assert transport.get_write_buffer_size() <= bound
        assert transport.get_write_buffer_size() <= bound
        # The peer reads again: the most recent ping is answered, and the
        # connection still carries messages both ways.
        await asyncio.wait_for(peer.barrier(b"the last ping"), 20 * T)
        await asyncio.wait_for(peer.roundtrip(side, "still open"), 20 * T)
