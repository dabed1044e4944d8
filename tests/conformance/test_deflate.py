"""RFC 7692: permessage-deflate negotiation and compressed framing.

Negotiation is checked from both sides with handcrafted offers (server targets) and
handcrafted responses (client targets); the agreed parameters are then checked on
the wire: a side that agreed to ``*_no_context_takeover`` compresses every message
independently, one that agreed to ``*_max_window_bits=N`` never refers further back
than ``2**N`` bytes (its output inflates with an ``N``-bit window).
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import pytest

from simple_websocket import HandshakeError
from tests.asyncio.rawpeer import BINARY, CLOSE, CONT, PING, PONG, TEXT

from .harness import (
    ALL_TARGETS,
    CLIENT_TARGETS,
    SERVER_TARGETS,
    ScriptedServer,
    ServerTarget,
    connect_client,
    open_peer,
    pair,
    request_headers,
    response_101,
    send_request,
    upgrade_request,
)

pytestmark = pytest.mark.timeout(10)

servers = pytest.mark.parametrize("target", SERVER_TARGETS)
clients = pytest.mark.parametrize("target", CLIENT_TARGETS)
targets = pytest.mark.parametrize("target", ALL_TARGETS)

TAIL = b"\x00\x00\xff\xff"


def inflate(payload: bytes, bits: int = 15) -> bytes:
    """Inflate one message's payload with a fresh ``bits``-bit window."""
    d = zlib.decompressobj(wbits=-bits)
    return d.decompress(payload + TAIL) + d.flush()


def far_references(size: int = 1600) -> bytes:
    """Data whose best compression refers back ``size`` bytes (beyond a 1 KiB window)."""
    block = os.urandom(300)
    return block + os.urandom(size - 300) + block + block


def params(header: str | None) -> dict[str, str | None]:
    """The parameters of a ``permessage-deflate`` extension header value."""
    assert header is not None
    name, *rest = [p.strip() for p in header.split(";")]
    assert name == "permessage-deflate", header
    out: dict[str, str | None] = {}
    for p in rest:
        key, _, value = p.partition("=")
        assert key.strip() not in out, f"duplicate parameter in {header!r}"
        out[key.strip()] = value.strip().strip('"') if value else None
    return out


# -- server side negotiation ------------------------------------------------------------


@servers
@pytest.mark.parametrize(
    ("offer", "check"),
    [
        ("permessage-deflate", lambda p: p == {}),
        # 7.1.2.2: the server may answer with a value, or leave it out.
        (
            "permessage-deflate; client_max_window_bits",
            lambda p: (
                set(p) <= {"client_max_window_bits"}
                and 8 <= int(p.get("client_max_window_bits") or 15) <= 15
            ),
        ),
        # 7.1.2.1: the server MUST answer with a value <= the offered one.
        (
            "permessage-deflate; server_max_window_bits=10",
            lambda p: 8 <= int(p["server_max_window_bits"] or 0) <= 10,
        ),
        # 7.1.1.1: the server MUST answer with server_no_context_takeover.
        (
            "permessage-deflate; server_no_context_takeover",
            lambda p: "server_no_context_takeover" in p,
        ),
        (
            "permessage-deflate; client_no_context_takeover",
            lambda p: set(p) <= {"client_no_context_takeover"},
        ),
        # The first acceptable offer wins (5: offers are in order of preference).
        ("permessage-deflate; server_max_window_bits=7, permessage-deflate", lambda p: p == {}),
        ("x-unknown, permessage-deflate", lambda p: p == {}),
    ],
)
async def test_server_accepts_valid_offer(target: str, offer: str, check: Any) -> None:
    async with ServerTarget(target) as server:
        request, _ = upgrade_request(server.port, extensions=offer)
        response = await send_request(server.port, request)
        assert response.status == 101
        accepted = response.header("sec-websocket-extensions")
        assert accepted is not None and "," not in accepted, accepted
        assert check(params(accepted)), accepted
        response.writer.close()


@servers
@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; foo",
        "permessage-deflate; foo=1",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
    ],
)
async def test_server_declines_invalid_offer(target: str, offer: str) -> None:
    async with ServerTarget(target) as server:
        peer = await open_peer(server.port, extensions=offer)
        side = await server.accepted()
        assert "sec-websocket-extensions" not in peer.response_headers, peer.response_headers
        # The connection works, uncompressed.
        await side.send("x" * 1000)
        frame = await peer.recv_wire_data()
        assert not frame.rsv1 and frame.payload == b"x" * 1000
        await peer.roundtrip(side, "uncompressed")


@servers
async def test_server_without_compression_declines(target: str) -> None:
    async with ServerTarget(target, compression=False) as server:
        peer = await open_peer(server.port, extensions="permessage-deflate")
        assert "sec-websocket-extensions" not in peer.response_headers
        side = await server.accepted()
        await peer.roundtrip(side, "plain")


@servers
async def test_server_no_context_takeover_is_honoured(target: str) -> None:
    async with ServerTarget(target) as server:
        peer = await open_peer(
            server.port, extensions="permessage-deflate; server_no_context_takeover"
        )
        side = await server.accepted()
        message = "the same compressible message " * 40
        await side.send(message)
        await side.send(message)
        first = await peer.recv_wire_data()
        second = await peer.recv_wire_data()
        assert first.rsv1 and second.rsv1
        # Without context takeover both are compressed the same, on their own.
        assert first.payload == second.payload
        assert inflate(second.payload).decode() == message


@servers
@pytest.mark.parametrize("bits", [9, 10])
async def test_server_max_window_bits_is_honoured(target: str, bits: int) -> None:
    async with ServerTarget(target) as server:
        peer = await open_peer(
            server.port, extensions=f"permessage-deflate; server_max_window_bits={bits}"
        )
        side = await server.accepted()
        data = far_references()
        await side.send(data)
        frame = await peer.recv_wire_data()
        assert frame.rsv1
        assert inflate(frame.payload, bits) == data


@servers
@pytest.mark.parametrize(
    ("offer", "bits", "no_takeover"),
    [
        ("permessage-deflate; client_no_context_takeover", 15, True),
        ("permessage-deflate; client_max_window_bits=9", 9, False),
        ("permessage-deflate; client_max_window_bits", 15, False),
    ],
)
async def test_server_inflates_what_the_client_agreed_to(
    target: str, offer: str, bits: int, no_takeover: bool
) -> None:
    async with ServerTarget(target) as server:
        peer = await open_peer(server.port, extensions=offer)
        side = await server.accepted()
        peer.use_deflate(compress_bits=bits, no_context_takeover=no_takeover)
        for i in range(3):
            message = far_references() + b"%d" % i
            await peer.send(BINARY, peer.compress(message), rsv1=True)
            assert await side.receive() == message


# -- client side negotiation ---------------------------------------------------------


@clients
async def test_client_offers_permessage_deflate_by_default(target: str) -> None:
    async with ScriptedServer() as raw:
        side = await connect_client(target, raw.url)
        plain = await connect_client(target, raw.url, compression=False)
        try:
            offered = request_headers(raw.requests[0]).get("sec-websocket-extensions", "")
            assert offered.startswith("permessage-deflate")
            assert "sec-websocket-extensions" not in request_headers(raw.requests[1])
        finally:
            side.abort()
            plain.abort()


@clients
@pytest.mark.parametrize(
    ("response", "bits", "no_takeover"),
    [
        ("permessage-deflate", 15, False),
        ("permessage-deflate; server_no_context_takeover", 15, True),
        ("permessage-deflate; server_max_window_bits=10", 10, False),
        ("permessage-deflate; client_no_context_takeover", 15, False),
        ("permessage-deflate; client_max_window_bits=10", 15, False),
    ],
)
async def test_client_accepts_valid_response(
    target: str, response: str, bits: int, no_takeover: bool
) -> None:
    respond = lambda key, head: response_101(key, extensions=response)  # noqa: E731
    async with pair(target, respond=respond) as (side, peer):
        agreed = params(response)
        # What the raw server sends, compressed as it said it would.
        peer.use_deflate(compress_bits=bits, no_context_takeover=no_takeover)
        for i in range(2):
            message = far_references() + b"%d" % i
            await peer.send(BINARY, peer.compress(message), rsv1=True)
            assert await side.receive() == message
        # What the client sends, compressed as the server asked.
        client_bits = int(agreed.get("client_max_window_bits") or 15)
        message = far_references()
        await side.send(message)
        await side.send(message)
        first = await peer.recv_wire_data()
        second = await peer.recv_wire_data()
        assert first.rsv1 and second.rsv1
        assert inflate(first.payload, client_bits) == message
        if "client_no_context_takeover" in agreed:
            assert first.payload == second.payload
            assert inflate(second.payload, client_bits) == message


@clients
@pytest.mark.parametrize(
    "response",
    [
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; foo=1",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11",
        "permessage-deflate; client_max_window_bits",
    ],
)
async def test_client_fails_on_invalid_response(target: str, response: str) -> None:
    respond = lambda key, head: response_101(key, extensions=response)  # noqa: E731
    async with ScriptedServer(respond=respond) as raw:
        with pytest.raises(HandshakeError):
            await connect_client(target, raw.url)
        await (await raw.accept()).expect_eof()


@clients
async def test_client_without_compression_fails_on_accepted_deflate(target: str) -> None:
    respond = lambda key, head: response_101(key, extensions="permessage-deflate")  # noqa: E731
    async with ScriptedServer(respond=respond) as raw:
        with pytest.raises(HandshakeError):
            await connect_client(target, raw.url, compression=False)
        await (await raw.accept()).expect_eof()


# -- compressed framing, every target -----------------------------------------------------


@targets
async def test_compressed_messages_both_ways(target: str) -> None:
    async with pair(target, deflate=True) as (side, peer):
        for message in ("text " * 200, b"\x00\x01" * 500, "short", b""):
            opcode = TEXT if isinstance(message, str) else BINARY
            data = message.encode() if isinstance(message, str) else message
            await peer.write(peer.compressed(opcode, data))
            assert await side.receive() == message
            await side.send(message)
            frame = await peer.recv_frame()  # inflated by the raw peer
            assert frame.payload == data
            assert frame.opcode == opcode


@targets
async def test_our_side_compresses_large_messages(target: str) -> None:
    async with pair(target, deflate=True) as (side, peer):
        await side.send("z" * 10_000)
        frame = await peer.recv_wire_data()
        assert frame.rsv1 and len(frame.payload) < 1000


def _fragments(peer: Any, opcode: int, data: bytes, size: int = 7) -> list[bytes]:
    """One compressed message as frames of ``size`` payload bytes, RSV1 on the first."""
    compressed = peer.compress(data)
    parts = [compressed[i : i + size] for i in range(0, len(compressed), size)]
    frames = [peer.frame(opcode, parts[0], fin=False, rsv1=True)]
    frames += [peer.frame(CONT, p, fin=False) for p in parts[1:-1]]
    frames.append(peer.frame(CONT, parts[-1]))
    return frames


@targets
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
async def test_fragmented_compressed_message(target: str, opcode: int) -> None:
    """6.1: RSV1 on the first frame only; the fragments are the compressed bytes."""
    async with pair(target, deflate=True) as (side, peer):
        peer.use_deflate()
        data = ("fragmented and compressed " * 50).encode()
        await peer.write(b"".join(_fragments(peer, opcode, data)))
        assert await side.receive() == (data.decode() if opcode == TEXT else data)
        # The compression context goes on into the next message.
        await peer.write(b"".join(_fragments(peer, opcode, data)))
        assert await side.receive() == (data.decode() if opcode == TEXT else data)


@targets
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
async def test_ping_inside_fragmented_compressed_message(target: str, opcode: int) -> None:
    async with pair(target, deflate=True) as (side, peer):
        peer.use_deflate()
        data = ("fragmented and compressed " * 50).encode()
        frames = _fragments(peer, opcode, data)
        frames.insert(2, peer.frame(PING, b"mid"))
        await peer.write(b"".join(frames))
        pong = await peer.recv_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"mid")
        assert await side.receive() == (data.decode() if opcode == TEXT else data)


@targets
async def test_uncompressed_message_when_deflate_negotiated(target: str) -> None:
    async with pair(target, deflate=True) as (side, peer):
        await peer.send_text("sent without RSV1")
        assert await side.receive() == "sent without RSV1"


@targets
async def test_control_frames_are_never_compressed_by_us(target: str) -> None:
    async with pair(target, deflate=True) as (_, peer):
        await peer.send(PING, b"p" * 100)
        pong = await peer.recv_wire()
        assert pong.opcode == PONG and not pong.rsv1 and pong.payload == b"p" * 100
        await peer.send(CLOSE, b"\x03\xe8" + b"r" * 100)
        close = await peer.recv_wire()
        assert close.opcode == CLOSE and not close.rsv1


@targets
@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
async def test_compressed_control_frame_fails_with_1002(target: str, opcode: int) -> None:
    """6.1: RSV1 MUST NOT be set on control frames; the receiver MUST fail."""
    async with pair(target, deflate=True) as (side, peer):
        payload = b"\x03\xe8" if opcode == CLOSE else b"x"
        await peer.send(opcode, payload, rsv1=True)
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@targets
@pytest.mark.parametrize("first_compressed", [True, False])
async def test_rsv1_on_continuation_fails_with_1002(target: str, first_compressed: bool) -> None:
    """6.1: RSV1 is only set on the first frame of a message."""
    async with pair(target, deflate=True) as (side, peer):
        peer.use_deflate()
        data = peer.compress(b"two fragments, both flagged")
        half = len(data) // 2
        await peer.write(
            peer.frame(BINARY, data[:half], fin=False, rsv1=first_compressed)
            + peer.frame(CONT, data[half:], rsv1=True)
        )
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@targets
@pytest.mark.parametrize("bit", ["rsv2", "rsv3"])
async def test_other_reserved_bits_still_fail_with_deflate(target: str, bit: str) -> None:
    async with pair(target, deflate=True) as (side, peer):
        await peer.send(TEXT, b"x", **{bit: True})
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@targets
async def test_invalid_deflate_data_fails_the_connection(target: str) -> None:
    """7.2.2: a message that does not inflate fails the connection."""
    async with pair(target, deflate=True) as (side, peer):
        await peer.send(BINARY, b"\xff\xff\xff\xff not deflate", rsv1=True)
        await peer.expect_failure((1002, 1007))
        await side.expect_closed((1002, 1007))


@targets
async def test_compressed_invalid_utf8_fails_with_1007(target: str) -> None:
    async with pair(target, deflate=True) as (side, peer):
        await peer.write(peer.compressed(TEXT, b"ok \xed\xa0\x80"))
        await peer.expect_failure(1007)
        await side.expect_closed(1007)


@targets
async def test_context_takeover_across_messages(target: str) -> None:
    async with pair(target, deflate=True) as (side, peer):
        message = os.urandom(500)
        await peer.write(peer.compressed(BINARY, message))
        second = peer.compressed(BINARY, message)
        # The second copy is a back-reference into the first message's window.
        assert len(second) < 100
        await peer.write(second)
        assert await side.receive() == message
        assert await side.receive() == message
