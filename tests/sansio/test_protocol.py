"""``sansio/protocol.py``: the frame parser's own rules, and that it works alone.

The comparisons with wsproto, frame by frame, are in ``test_fastpath.py`` and
``test_fastpath_deflate.py``; here are the rules that are ours: close codes, UTF-8
that fails as soon as it cannot become valid, the reason of a 1009, the checks of
frame headers, and that the fast path never needs wsproto's connection.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest

from simple_websocket.sansio import protocol as protocol_module
from simple_websocket.sansio.deflate import Deflate
from simple_websocket.sansio.protocol import Protocol, State

from ..asyncio.rawpeer import BINARY, CLOSE, CONT, PING, PONG, TEXT, encode_frame

KEY = b"\x0a\x0b\x0c\x0d"


def masked(opcode: int, payload: bytes = b"", **kwargs: Any) -> bytes:
    """A client's frame, as a server-side ``Protocol`` receives it."""
    return encode_frame(opcode, payload, mask=KEY, **kwargs)


def close_frame_of(proto: Protocol) -> tuple[int, str]:
    """The code and reason of the (unmasked) close frame a server protocol queued."""
    out = proto.data_to_send()
    assert out[0] == 0x88, out
    payload = out[2 : 2 + out[1]]
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def deflate_pair() -> tuple[Deflate, Deflate]:
    client, server = Deflate(), Deflate()
    client.finalize(server.accept(client.offer()) or "")
    return client, server


# -- close codes ------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1014, 3000, 4321, 4999])
def test_received_close_codes_are_accepted_and_echoed(code: int) -> None:
    proto = Protocol(False)
    proto.receive_data(masked(CLOSE, struct.pack("!H", code) + "é".encode()))
    assert (proto.state, proto.close_code, proto.close_reason) == (State.CLOSED, code, "é")
    assert close_frame_of(proto) == (code, "é")
    assert not proto.failed


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_invalid_received_close_codes_fail_with_1002(code: int) -> None:
    proto = Protocol(False)
    proto.receive_data(masked(CLOSE, struct.pack("!H", code)))
    assert proto.failed
    assert close_frame_of(proto) == (1002, f"CLOSE with invalid code {code}")


def test_a_long_close_reason_is_cut_at_a_character_boundary() -> None:
    proto = Protocol(False)
    frame = proto.close(1000, "é" * 100)
    assert frame[1] == 2 + 122  # 61 characters of 2 bytes; 123 would split one
    assert frame[4:].decode() == "é" * 61


# -- UTF-8 ------------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "wsproto"])
def test_a_surrogate_at_the_end_of_a_fragment_fails_at_once(fast: bool) -> None:
    proto = Protocol(False)
    proto.fast_path = fast
    # "ED A0" can only continue as a UTF-16 surrogate: invalid whatever follows.
    assert proto.receive_data(masked(TEXT, b"ok \xed\xa0", fin=False)) == []
    assert proto.failed and proto.close_code == 1007
    code, reason = close_frame_of(proto)
    assert code == 1007 and "0xed" in reason


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "wsproto"])
def test_a_surrogate_at_the_end_of_a_read_fails_at_once(fast: bool) -> None:
    proto = Protocol(False)
    proto.fast_path = fast
    frame = masked(TEXT, b"abc\xed\xa0\x80 and more")
    assert proto.receive_data(frame[: 6 + 5]) == []  # header, key, "abc" + ED A0
    assert proto.failed and proto.close_code == 1007


def test_a_valid_prefix_at_the_end_of_a_fragment_waits() -> None:
    proto = Protocol(False)
    euro = "€".encode()
    assert proto.receive_data(masked(TEXT, b"x" + euro[:2], fin=False)) == []
    assert not proto.failed
    assert proto.receive_data(masked(CONT, euro[2:])) == ["x€"]


# -- limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "wsproto"])
@pytest.mark.parametrize("pieces", [1, 3])
def test_a_compressed_message_over_the_limit_says_so(fast: bool, pieces: int) -> None:
    _, server_ext = deflate_pair()
    proto = Protocol(False, [server_ext], max_message_size=1000)
    proto.fast_path = fast
    compress = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    payload = compress.compress(b"a" * 5000) + compress.flush(zlib.Z_SYNC_FLUSH)
    frame = masked(BINARY, payload[:-4], rsv1=True)
    step = -(-len(frame) // pieces)
    for k in range(0, len(frame), step):
        proto.receive_data(frame[k : k + step])
    assert proto.failed
    assert close_frame_of(proto) == (1009, "Message larger than 1000 bytes")


def test_an_uncompressed_message_over_the_limit_fails_on_its_header() -> None:
    proto = Protocol(False, max_message_size=10)
    proto.receive_data(masked(TEXT, b"x" * 11)[:8])  # header and key only
    assert close_frame_of(proto) == (1009, "Message larger than 10 bytes")


# -- frame headers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (masked(0x3), "Invalid opcode 0x3"),
        (masked(PING, b"x", fin=False), "Invalid attempt to fragment control frame"),
        (masked(PONG, b"x" * 126), "Control frame with payload len > 125"),
        (masked(TEXT, b"x", rsv2=True), "Reserved bit set unexpectedly"),
        (encode_frame(TEXT, b"x"), "server received unexpected unmasked frame"),
        (masked(CONT, b"x"), "unexpected CONTINUATION"),
        (
            masked(TEXT, b"a", fin=False) + masked(BINARY, b"b"),
            "expected CONTINUATION, got <Opcode.BINARY: 2>",
        ),
        (masked(CLOSE, b"\x03"), "CLOSE with 1 byte payload"),
    ],
)
def test_bad_headers_fail_with_1002_and_say_why(frame: bytes, reason: str) -> None:
    proto = Protocol(False)
    assert proto.receive_data(frame) == []
    assert close_frame_of(proto) == (1002, reason)


def test_a_client_refuses_masked_frames() -> None:
    proto = Protocol(True)
    proto.receive_data(masked(TEXT, b"x"))
    assert proto.failed and proto.close_code == 1002
    assert proto.close_reason == "client received unexpected masked frame"


# -- no wsproto on the fast path ----------------------------------------------------------


def _no_wsproto(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the fast path used wsproto's connection")


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "permessage-deflate"])
def test_the_fast_path_is_active_and_needs_no_wsproto_connection(
    monkeypatch: pytest.MonkeyPatch, compressed: bool
) -> None:
    """Fails if a wsproto release (or a change here) turned the fast path off."""
    monkeypatch.setattr(protocol_module, "WsprotoPath", _no_wsproto)
    server_exts: list[Deflate] = []
    client_exts: list[Deflate] = []
    if compressed:
        client_ext, server_ext = deflate_pair()
        client_exts, server_exts = [client_ext], [server_ext]
    proto = Protocol(False, server_exts, max_message_size=1 << 20)
    sender = Protocol(True, client_exts)
    assert proto.fast_path and sender.fast_path
    stream = masked(TEXT, b"frag", fin=False) + masked(PING, b"p") + masked(CONT, b"ment")
    stream += sender.send(b"\x00" * 70_000) + masked(PONG, b"") + sender.send("z" * 5000)
    received: list[str | bytes] = []
    for k in range(0, len(stream), 1000):
        received += proto.receive_data(stream[k : k + 1000])
    assert received == ["fragment", b"\x00" * 70_000, "z" * 5000]
    assert proto.send("out")[:1] == (b"\xc1" if compressed else b"\x81")
    proto.ping(b"x")
    assert proto.data_to_send()[:1] == b"\x8a"  # the pong
    proto.close(1000)
    assert proto.state is State.CLOSING


def test_other_extensions_use_wsproto_public_api() -> None:
    from wsproto.extensions import PerMessageDeflate

    client_ext, server_ext = PerMessageDeflate(), PerMessageDeflate()
    client_ext.finalize(server_ext.accept(client_ext.offer()) or "")
    client = Protocol(True, [client_ext])
    server = Protocol(False, [server_ext])
    assert not client.fast_path and not server.fast_path
    assert server.receive_data(client.send("hello " * 50)) == ["hello " * 50]
