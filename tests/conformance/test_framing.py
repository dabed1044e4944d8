"""RFC 6455 section 5 (framing), 7.4 (close codes) and 8.1 (UTF-8), byte by byte.

Every case runs against every target it applies to (see :mod:`.harness`): our
servers facing a raw client, and our clients facing a raw server. Expected results
are the RFC's MUSTs, plus its SHOULD that a failed connection gets a close frame
with the right code (1002 protocol error, 1007 invalid data, 1009 too big) before
TCP is closed.
"""

from __future__ import annotations

import os

import pytest

from simple_websocket import ConnectionClosed
from tests.asyncio.rawpeer import BINARY, CLOSE, CONT, PING, PONG, TEXT

from .harness import (
    ALL_TARGETS,
    CLIENT_TARGETS,
    SERVER_TARGETS,
    Side,
    close_code_of,
    code_payload,
    is_server,
    pair,
)

pytestmark = pytest.mark.timeout(10)

targets = pytest.mark.parametrize("target", ALL_TARGETS)


async def finish_peer_close(side: Side, peer: object, target: str) -> None:
    """After the peer's close frame was answered: TCP ends as RFC 6455 7.1.1 says."""
    if is_server(target):
        await peer.expect_eof()  # type: ignore[attr-defined]
    else:
        peer.close_tcp()  # type: ignore[attr-defined]
    await side.wait_closed()


# -- 5.2 base framing: payload length encodings ----------------------------------------

SIZES = [0, 1, 125, 126, 127, 65535, 65536]


@targets
@pytest.mark.parametrize("size", SIZES)
async def test_receive_every_length_encoding(target: str, size: int) -> None:
    async with pair(target) as (side, peer):
        payload = os.urandom(size)
        await peer.send_binary(payload)
        text = "é" * (size // 2) + "x" * (size % 2)
        await peer.send_text(text)
        assert await side.receive() == payload
        assert await side.receive() == text


@targets
@pytest.mark.parametrize("size", SIZES)
async def test_send_uses_minimal_length_encoding(target: str, size: int) -> None:
    """5.2: "the minimal number of bytes MUST be used to encode the length"."""
    async with pair(target) as (side, peer):
        payload = os.urandom(size)
        await side.send(payload)
        frame = await peer.recv_wire_data()
        assert (frame.opcode, frame.fin, frame.rsv1, frame.rsv2, frame.rsv3) == (
            BINARY,
            True,
            False,
            False,
            False,
        )
        assert frame.payload == payload
        assert frame.length_bits == (7 if size <= 125 else 16 if size <= 0xFFFF else 64)


@targets
@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
async def test_one_byte_tcp_writes(target: str, size: int) -> None:
    """A frame arriving one byte per TCP write (header, mask key, payload)."""
    async with pair(target) as (side, peer):
        payload = os.urandom(size)
        frame = peer.frame(BINARY, payload)
        # Every header byte and the first 600 payload bytes one at a time, the rest
        # in one write (65536 single-byte writes would only slow the suite).
        await peer.write(frame, chunks=[1] * 600)
        assert await side.receive() == payload
        # A ping and a fragmented text message, all byte by byte.
        data = (
            peer.frame(PING, b"p")
            + peer.frame(TEXT, "κό".encode(), fin=False)
            + peer.frame(CONT, "σμε".encode())
        )
        await peer.write(data, chunks=[1] * len(data))
        pong = await peer.recv_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"p")
        assert await side.receive() == "κόσμε"


# -- 5.5.2 / 5.5.3 ping and pong ---------------------------------------------------------


@targets
@pytest.mark.parametrize("size", [0, 1, 125])
async def test_pong_echoes_ping_payload(target: str, size: int) -> None:
    async with pair(target) as (side, peer):
        payload = os.urandom(size)
        await peer.send(PING, payload)
        frame = await peer.recv_wire()
        assert (frame.opcode, frame.payload, frame.fin) == (PONG, payload, True)
        assert frame.masked == (not is_server(target))
        await peer.roundtrip(side, "still open")


@targets
@pytest.mark.parametrize("size", [126, 1000])
async def test_ping_over_125_bytes_fails_with_1002(target: str, size: int) -> None:
    async with pair(target) as (side, peer):
        await peer.send(PING, b"x" * size)
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@targets
async def test_pong_over_125_bytes_fails_with_1002(target: str) -> None:
    async with pair(target) as (side, peer):
        await peer.send(PONG, b"x" * 126)
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@targets
@pytest.mark.parametrize("payload", [b"", b"unsolicited", bytes(125)])
async def test_unsolicited_pong_is_ignored(target: str, payload: bytes) -> None:
    async with pair(target) as (side, peer):
        await peer.send(PONG, payload)
        # Nothing is sent back: the next frame is the answer to our barrier ping.
        await peer.barrier()
        await peer.roundtrip(side, b"\x00still open")


@targets
async def test_our_ping_is_answered_by_pong(target: str) -> None:
    async with pair(target) as (side, peer):
        import asyncio

        task = asyncio.create_task(side.ping(b"ours"))
        frame = await peer.recv_wire()
        assert (frame.opcode, frame.payload) == (PING, b"ours")
        assert frame.masked == (not is_server(target))
        await peer.send(PONG, b"ours")
        assert await asyncio.wait_for(task, 5) >= 0


@targets
async def test_several_pings_get_pongs(target: str) -> None:
    """5.5.3: at least the most recent ping is answered."""
    async with pair(target) as (_, peer):
        await peer.write(b"".join(peer.frame(PING, b"%d" % i) for i in range(5)))
        payloads = []
        while b"4" not in payloads:
            frame = await peer.recv_frame()
            assert frame.opcode == PONG
            payloads.append(frame.payload)
        assert payloads == sorted(payloads)


# -- 5.2 reserved bits and opcodes ------------------------------------------------------------


@targets
@pytest.mark.parametrize("bit", ["rsv1", "rsv2", "rsv3"])
@pytest.mark.parametrize("where", ["text", "binary", "ping", "close", "continuation"])
async def test_reserved_bit_without_extension_fails_with_1002(
    target: str, bit: str, where: str
) -> None:
    async with pair(target, compression=False) as (side, peer):
        flags = {bit: True}
        if where == "text":
            bad = peer.frame(TEXT, b"hi", **flags)
        elif where == "binary":
            bad = peer.frame(BINARY, b"hi", **flags)
        elif where == "ping":
            bad = peer.frame(PING, b"hi", **flags)
        elif where == "close":
            bad = peer.frame(CLOSE, code_payload(1000), **flags)
        else:
            bad = peer.frame(TEXT, b"a", fin=False) + peer.frame(CONT, b"b", **flags)
        await peer.send_text("before")
        await peer.write(bad)
        await peer.expect_failure(1002)
        assert await side.receive() == "before"
        await side.expect_closed(1002)


@targets
@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
async def test_reserved_opcode_fails_with_1002(target: str, opcode: int) -> None:
    async with pair(target) as (side, peer):
        await peer.send(opcode, b"x")
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@targets
@pytest.mark.parametrize("opcode", [3, 0xB])
async def test_reserved_opcode_inside_fragmented_message_fails_with_1002(
    target: str, opcode: int
) -> None:
    async with pair(target) as (side, peer):
        await peer.write(peer.frame(TEXT, b"a", fin=False) + peer.frame(opcode, b"x", fin=False))
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


# -- 5.4 fragmentation ----------------------------------------------------------------------


@targets
@pytest.mark.parametrize("split", [False, True], ids=["whole", "bytewise"])
async def test_fragmented_messages_with_interleaved_control_frames(
    target: str, split: bool
) -> None:
    async with pair(target) as (side, peer):
        data = (
            peer.frame(TEXT, b"fra", fin=False)
            + peer.frame(PING, b"in between")
            + peer.frame(CONT, b"", fin=False)  # empty fragments are allowed
            + peer.frame(PONG, b"unsolicited")
            + peer.frame(CONT, b"gmen", fin=False)
            + peer.frame(PING, b"again")
            + peer.frame(CONT, b"ted")
            + peer.frame(BINARY, b"\x01", fin=False)
            + peer.frame(CONT, b"\x02")
        )
        await peer.write(data, chunks=[1] * len(data) if split else None)
        # The pongs come while the message is still incomplete for our side.
        first = await peer.recv_frame()
        second = await peer.recv_frame()
        assert [(f.opcode, f.payload) for f in (first, second)] == [
            (PONG, b"in between"),
            (PONG, b"again"),
        ]
        assert await side.receive() == "fragmented"
        assert await side.receive() == b"\x01\x02"


@targets
async def test_pong_answers_ping_before_fragmented_message_completes(target: str) -> None:
    async with pair(target) as (side, peer):
        await peer.write(peer.frame(BINARY, b"part", fin=False) + peer.frame(PING, b"now"))
        frame = await peer.recv_frame()
        assert (frame.opcode, frame.payload) == (PONG, b"now")
        assert await side.receive(timeout=0) is None  # not delivered yet
        await peer.send(CONT, b"s")
        assert await side.receive() == b"parts"


@targets
@pytest.mark.parametrize("second", [TEXT, BINARY])
async def test_data_frame_inside_fragmented_message_fails_with_1002(
    target: str, second: int
) -> None:
    async with pair(target) as (side, peer):
        await peer.write(peer.frame(TEXT, b"a", fin=False) + peer.frame(second, b"b"))
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@targets
@pytest.mark.parametrize("fin", [True, False])
async def test_continuation_without_start_fails_with_1002(target: str, fin: bool) -> None:
    async with pair(target) as (side, peer):
        await peer.send(CONT, b"orphan", fin=fin)
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@targets
@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
async def test_fragmented_control_frame_fails_with_1002(target: str, opcode: int) -> None:
    async with pair(target) as (side, peer):
        payload = code_payload(1000) if opcode == CLOSE else b"x"
        await peer.send(opcode, payload, fin=False)
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@targets
async def test_close_inside_fragmented_message_closes(target: str) -> None:
    async with pair(target) as (side, peer):
        await peer.write(
            peer.frame(TEXT, b"never", fin=False) + peer.frame(CLOSE, code_payload(1001))
        )
        frame = await peer.expect_close()
        assert frame.close_code == 1001
        await finish_peer_close(side, peer, target)
        await side.expect_closed(1001)


# -- 8.1 UTF-8 ---------------------------------------------------------------------------------

VALID_TEXT = [
    "",
    "hello",
    "κόσμε",
    "\u0080",
    "\u07ff",
    "\u0800",
    "\ud7ff",
    "\ue000",
    "\ufffd",
    "\uffff",
    "\U00010000",
    "\U0010ffff",
    "😀 mixed ascii ✓",
]

INVALID_UTF8 = {
    "ff": b"\xff",
    "fe": b"\xfe",
    "lone-continuation": b"ab\x80cd",
    "overlong-2": b"\xc0\xaf",
    "overlong-3": b"\xe0\x80\xaf",
    "overlong-4": b"\xf0\x80\x80\xaf",
    "surrogate-high": b"\xed\xa0\x80",
    "surrogate-low": b"\xed\xbf\xbf",
    "above-10ffff": b"\xf4\x90\x80\x80",
    "five-bytes": b"\xf8\x88\x80\x80\x80",
    "truncated-2": b"ok\xc2",
    "truncated-3": b"ok\xe2\x82",
    "kosme-then-surrogate": b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
}


@targets
@pytest.mark.parametrize("text", VALID_TEXT, ids=[t.encode().hex() or "empty" for t in VALID_TEXT])
async def test_valid_utf8_whole_and_split_across_fragments(target: str, text: str) -> None:
    async with pair(target) as (side, peer):
        data = text.encode("utf-8")
        await peer.send_text(text)
        assert await side.receive() == text
        # One byte per fragment: every multi-byte sequence is split across frames.
        if data:
            frames = [
                peer.frame(TEXT if i == 0 else CONT, data[i : i + 1], fin=i == len(data) - 1)
                for i in range(len(data))
            ]
            await peer.write(b"".join(frames))
            assert await side.receive() == text


@targets
@pytest.mark.parametrize("split", [False, True], ids=["one-frame", "byte-fragments"])
@pytest.mark.parametrize("name", list(INVALID_UTF8))
async def test_invalid_utf8_fails_with_1007(target: str, name: str, split: bool) -> None:
    async with pair(target) as (side, peer):
        data = INVALID_UTF8[name]
        await peer.send_text("before")
        if split:
            frames = [
                peer.frame(TEXT if i == 0 else CONT, data[i : i + 1], fin=i == len(data) - 1)
                for i in range(len(data))
            ]
            await peer.write(b"".join(frames))
        else:
            await peer.send(TEXT, data)
        await peer.expect_failure(1007)
        assert await side.receive() == "before"
        await side.expect_closed(1007)


@targets
async def test_invalid_utf8_fails_fast_before_the_message_ends(target: str) -> None:
    """8.1: fail as soon as an invalid sequence arrives, not at the end of the message."""
    async with pair(target) as (side, peer):
        await peer.send(TEXT, "κόσμε".encode() + b"\xed\xa0\x80", fin=False)
        # The rest of the message never comes: the close frame must arrive anyway.
        await peer.expect_failure(1007)
        await side.expect_closed(1007)


@targets
async def test_invalid_utf8_fails_fast_inside_one_frame(target: str) -> None:
    """Autobahn 6.4.3: the frame is incomplete, its first bytes are already invalid."""
    async with pair(target) as (side, peer):
        payload = "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"x" * 1000
        frame = peer.frame(TEXT, payload)
        await peer.write(frame[: 6 + len("κόσμε".encode()) + 4])
        await peer.expect_failure(1007)
        await side.expect_closed(1007)


@targets
async def test_binary_message_is_not_utf8_checked(target: str) -> None:
    async with pair(target) as (side, peer):
        await peer.send_binary(b"\xff\xfe\xed\xa0\x80")
        assert await side.receive() == b"\xff\xfe\xed\xa0\x80"


# -- 5.5.1 / 7.4 close frames and codes -------------------------------------------------

VALID_CODES = [1000, 1001, 1002, 1003, *range(1007, 1015), 3000, 3999, 4000, 4999]
SENDABLE_CODES = {1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)}
INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@targets
@pytest.mark.parametrize("code", VALID_CODES)
async def test_valid_close_code_is_echoed(target: str, code: int) -> None:
    async with pair(target) as (side, peer):
        await peer.send(CLOSE, code_payload(code, "bye ☃".encode()))
        frame = await peer.expect_close()
        assert close_code_of(frame) == code
        await finish_peer_close(side, peer, target)
        assert side.close_reason == code
        assert side.close_message == "bye ☃"
        with pytest.raises(ConnectionClosed) as info:
            await side.receive()
        assert info.value.reason == code


@targets
@pytest.mark.parametrize("code", INVALID_CODES)
async def test_invalid_close_code_fails_with_1002(target: str, code: int) -> None:
    async with pair(target) as (side, peer):
        await peer.send(CLOSE, code_payload(code))
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@targets
async def test_close_without_payload_is_answered(target: str) -> None:
    async with pair(target) as (side, peer):
        await peer.send(CLOSE, b"")
        frame = await peer.expect_close()
        # No status code was received: none (or 1000) is sent back, never 1005.
        assert close_code_of(frame) in (None, 1000)
        await finish_peer_close(side, peer, target)
        assert side.close_reason == 1005


@targets
async def test_close_with_one_byte_payload_fails_with_1002(target: str) -> None:
    async with pair(target) as (side, peer):
        await peer.send(CLOSE, b"\x03")
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@targets
async def test_close_with_invalid_utf8_reason_fails_with_1007(target: str) -> None:
    async with pair(target) as (side, peer):
        await peer.send(CLOSE, code_payload(1000, b"bad \xed\xa0\x80"))
        await peer.expect_failure(1007)
        await side.expect_closed(1007)


@targets
async def test_close_with_123_byte_reason_is_accepted(target: str) -> None:
    async with pair(target) as (side, peer):
        reason = "r" * 123
        await peer.send(CLOSE, code_payload(1000, reason.encode()))
        frame = await peer.expect_close()
        assert close_code_of(frame) == 1000
        await finish_peer_close(side, peer, target)
        assert side.close_message == reason


@targets
async def test_close_over_125_bytes_fails_with_1002(target: str) -> None:
    async with pair(target) as (side, peer):
        await peer.send(CLOSE, code_payload(1000, b"r" * 124))
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@targets
@pytest.mark.parametrize("code", [1000, 1001, 3000, 4999])
async def test_our_close_sends_code_and_reason(target: str, code: int) -> None:
    import asyncio

    async with pair(target) as (side, peer):
        closing = asyncio.create_task(side.close(code, "done ✓"))
        frame = await peer.expect_close()
        assert frame.masked == (not is_server(target))
        assert (close_code_of(frame), frame.close_reason) == (code, "done ✓")
        await peer.send(CLOSE, code_payload(code))
        if is_server(target):
            await peer.expect_eof()
        else:
            peer.close_tcp()
        await asyncio.wait_for(closing, 5)


@targets
@pytest.mark.parametrize(
    "code",
    [1005, 1006, 1015, 999, 1004, 2000, 5000],
)
async def test_our_close_never_sends_a_reserved_code(target: str, code: int) -> None:
    """7.4.1: 1005, 1006 and 1015 MUST NOT be set in a close frame; a code a peer must
    refuse (0-999, unassigned 1000-2999, >= 5000) must not be sent either: close()
    refuses it with ValueError, sends nothing, and the connection can still close."""
    import asyncio

    async with pair(target, close_timeout=1.0) as (side, peer):
        with pytest.raises(ValueError, match="cannot be sent"):
            await side.close(code, "x")
        closing = asyncio.create_task(side.close(1000, "bye"))
        frame = await peer.expect_close()
        assert close_code_of(frame) == 1000
        await peer.send(CLOSE, frame.payload[:2])
        await asyncio.wait_for(closing, 5)


# -- 5.1 / 5.3 masking -------------------------------------------------------------------


@pytest.mark.parametrize("target", SERVER_TARGETS)
@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, CLOSE])
async def test_server_fails_on_unmasked_client_frame(target: str, opcode: int) -> None:
    async with pair(target) as (side, peer):
        payload = code_payload(1000) if opcode == CLOSE else b"hi"
        await peer.send(opcode, payload, mask=None)
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@pytest.mark.parametrize("target", CLIENT_TARGETS)
@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, CLOSE])
async def test_client_fails_on_masked_server_frame(target: str, opcode: int) -> None:
    async with pair(target) as (side, peer):
        payload = code_payload(1000) if opcode == CLOSE else b"hi"
        await peer.send(opcode, payload, mask=b"\x01\x02\x03\x04")
        await peer.expect_failure(1002)
        await side.expect_closed(1002)


@pytest.mark.parametrize("target", CLIENT_TARGETS)
async def test_client_masks_every_frame_with_fresh_keys(target: str) -> None:
    async with pair(target) as (side, peer):
        for i in range(16):
            await side.send(f"message {i}")
        await peer.send(PING, b"answer me")
        keys = []
        for _ in range(17):
            frame = await peer.recv_wire()
            assert frame.masked and len(frame.mask_key) == 4, frame
            keys.append(frame.mask_key)
        # 5.3: a new, unpredictable key per frame (17 keys from a strong RNG).
        assert len(set(keys)) >= 16


@pytest.mark.parametrize("target", SERVER_TARGETS)
async def test_server_never_masks(target: str) -> None:
    async with pair(target) as (side, peer):
        await side.send("text")
        await side.send(b"binary")
        await peer.send(PING, b"p")
        for _ in range(3):
            frame = await peer.recv_wire()
            assert not frame.masked, frame
        await peer.send(CLOSE, code_payload(1000))
        frame = await peer.recv_wire()
        assert frame.opcode == CLOSE and not frame.masked
