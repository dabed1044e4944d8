"""The fast paths with permessage-deflate: the same results as wsproto's own framing.

With permessage-deflate negotiated, :class:`Protocol` compresses outgoing messages and
inflates whole incoming compressed frames itself, through the extension's methods.
Each test feeds the same bytes to a protocol on the fast path and to one that sends
everything through wsproto, and compares everything observable after every read
(messages, bytes written back, state, close code and reason).
"""

from __future__ import annotations

import os
import random
import struct
import zlib
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from simple_websocket.sansio.deflate import Deflate
from simple_websocket.sansio.protocol import Protocol, State

from ..asyncio.rawpeer import BINARY, CLOSE, CONT, PING, TEXT
from ..fuzzing import examples
from .test_fastpath import KeyStream, compare, frame, masking, messages_of

__all__ = ["masking"]  # the fixture runs every test with both masking implementations

PARAMS = {
    "takeover": "",
    "no-takeover": "; client_no_context_takeover; server_no_context_takeover",
    "window-10": "; client_max_window_bits=10; server_max_window_bits=10",
}


def negotiated(client: bool, params: str) -> list[Any]:
    """A ``Deflate`` for the ``client`` (or server) side, negotiated with ``params``."""
    server_ext = Deflate()
    response = server_ext.accept("permessage-deflate" + params)
    assert isinstance(response, str)
    if not client:
        return [server_ext]
    client_ext = Deflate()
    # What the client reads in the server's Sec-WebSocket-Extensions answer.
    client_ext.finalize(
        "; ".join(["permessage-deflate", response]) if response else "permessage-deflate"
    )
    return [client_ext]


class PeerCompressor:
    """Compresses messages as the peer of a ``client`` (or server) protocol does."""

    def __init__(self, client: bool, params: str) -> None:
        # The peer of a client is a server: it compresses with the server's settings.
        role = "server" if client else "client"
        self.takeover = f"{role}_no_context_takeover" not in params
        bits = 10 if "window_bits=10" in params else 15
        self.bits = bits
        self.client = client
        self._compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits)

    def payload(self, data: bytes) -> bytes:
        if not self.takeover:
            self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.bits
            )
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]

    def frame(self, opcode: int, data: bytes) -> bytes:
        return frame(self.client, opcode, self.payload(data), rsv1=True)


def check(client: bool, params: str, stream: bytes, **kwargs: Any) -> list[Any]:
    """Compare both paths on ``stream`` in one piece, byte by byte, and in pieces."""
    limit = kwargs.pop("max_message_size", None)

    def extensions() -> list[Any]:
        return negotiated(client, params)

    result: list[Any] = []
    for splits in (None, range(len(stream)), range(0, len(stream), 7), [len(stream) // 2]):
        result = compare(
            client, stream, splits, extensions=extensions, max_message_size=limit, **kwargs
        )
    return result


def test_deflate_keeps_the_fast_path_on() -> None:
    for client in (True, False):
        proto = Protocol(client, negotiated(client, ""))
        assert proto.fast_path
        assert proto._fast_deflate is not None


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("params", sorted(PARAMS))
def test_compressed_messages_arrive_the_same(client: bool, params: str) -> None:
    peer = PeerCompressor(client, PARAMS[params])
    texts = ["hello " * 40, "é€ " * 30, "", "hello " * 40]
    stream = b"".join(peer.frame(TEXT, t.encode()) for t in texts)
    stream += peer.frame(BINARY, bytes(range(256)) * 8)
    stream += frame(client, TEXT, b"not compressed") + frame(client, BINARY, b"\x00\xff")
    stream += frame(client, PING, b"p") + peer.frame(TEXT, b"after the ping")
    result = check(client, PARAMS[params], stream)
    assert messages_of(result) == [
        *(("str", t) for t in texts),
        ("bytes", bytes(range(256)) * 8),
        ("str", "not compressed"),
        ("bytes", b"\x00\xff"),
        ("str", "after the ping"),
    ]
    assert not result[-1][7]


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_fragmented_compressed_message_goes_through_wsproto_and_back(client: bool) -> None:
    peer = PeerCompressor(client, "")
    data = peer.payload(b"fragmented " * 50)
    stream = frame(client, TEXT, data[:10], rsv1=True, fin=False)
    stream += frame(client, PING, b"between")
    stream += frame(client, CONT, data[10:])
    stream += peer.frame(TEXT, b"fragmented " * 50)  # the shared context goes on
    result = check(client, "", stream)
    assert messages_of(result) == [("str", "fragmented " * 50)] * 2


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_max_messages_stalls_the_same_way_on_compressed_frames(client: bool) -> None:
    peer = PeerCompressor(client, "")
    stream = b"".join(peer.frame(TEXT, f"message {k}".encode()) for k in range(9))
    for max_messages in (1, 2, 4):
        result = check(client, "", stream, max_messages=max_messages)
        assert [m for _, m in messages_of(result)] == [f"message {k}" for k in range(9)]


def _errors(client: bool) -> list[tuple[str, bytes, int]]:
    peer = PeerCompressor(client, "")
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    zipped = bomb.compress(b"\x00" * 200_000) + bomb.flush(zlib.Z_SYNC_FLUSH)
    return [
        ("invalid-deflate-data", frame(client, TEXT, b"\xff\xff\xff\xff", rsv1=True), 1007),
        (
            "rsv1-on-continuation",
            frame(client, TEXT, b"a", fin=False) + frame(client, CONT, b"b", rsv1=True),
            1002,
        ),
        ("compressed-ping", frame(client, PING, b"x", rsv1=True), 1002),
        ("invalid-utf8-inside", peer.frame(TEXT, b"ok \xff"), 1007),
        ("truncated-utf8-inside", peer.frame(TEXT, b"\xe2\x82"), 1007),
        ("zip-bomb", frame(client, BINARY, zipped[:-4], rsv1=True), 1009),
        ("rsv2", frame(client, TEXT, b"x", rsv2=True), 1002),
    ]


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_compressed_protocol_errors_fail_the_same_way(client: bool) -> None:
    for name, bad, code in _errors(client):
        peer = PeerCompressor(client, "")
        stream = peer.frame(TEXT, b"before") + bad + frame(client, TEXT, b"after")
        result = check(client, "", stream, max_message_size=100_000)
        last = result[-1]
        assert last[4] is State.CLOSED, name
        assert last[5] == code, (name, last[5], last[6])
        assert last[7], name
        assert messages_of(result)[0] == ("str", "before"), name


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_compressed_message_at_and_over_the_limit(client: bool) -> None:
    peer = PeerCompressor(client, "")
    stream = peer.frame(BINARY, b"a" * 1000) + peer.frame(BINARY, b"b" * 1001)
    result = check(client, "", stream, max_message_size=1000)
    assert messages_of(result) == [("bytes", b"a" * 1000)]
    assert result[-1][5] == 1009


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("params", sorted(PARAMS))
def test_compressed_frames_we_send_are_byte_identical(client: bool, params: str) -> None:
    messages: list[str | bytes] = ["hello " * 40, b"\x00" * 5000, "x", "", b"", "hello " * 40]
    messages.append(os.urandom(200_000))  # larger than a send_chunks piece
    frames = []
    saved = os.urandom
    try:
        for fast in (True, False):
            os.urandom = KeyStream(7)
            proto = Protocol(client, negotiated(client, PARAMS[params]))
            proto.fast_path = fast
            frames.append([b"".join(proto.send_chunks(m)) for m in messages])
    finally:
        os.urandom = saved
    assert frames[0] == frames[1]
    # And the peer reads them back.
    peer = Protocol(not client, negotiated(not client, PARAMS[params]))
    received = []
    for data in frames[0]:
        received += peer.receive_data(data)
    assert received == messages
    assert frames[0][0][0] & 0x40, "RSV1: compressed"


class FinalBlockSender:
    """Compresses each message as a sender that ends every message with a final block.

    RFC 7692 7.2.3.4 lets a sender flush with a DEFLATE block whose ``BFINAL`` bit is
    set. With context takeover, such a sender starts each next message as a new
    DEFLATE stream primed with the window of everything it sent before, so that
    back-references into earlier messages are valid. ``trailer`` is what follows the
    final block: ``b"\\x00"`` as in the RFC's example, or nothing.
    """

    def __init__(self, client: bool, params: str, trailer: bytes) -> None:
        self.client = client
        self.takeover = ("server" if client else "client") + "_no_context_takeover" not in params
        self.bits = 10 if "window_bits=10" in params else 15
        self.trailer = trailer
        self.history = b""

    def frame(self, opcode: int, data: bytes) -> bytes:
        window = self.history[-(1 << self.bits) :] if self.takeover else b""
        compressor = zlib.compressobj(9, zlib.DEFLATED, -self.bits, zdict=window)
        payload = compressor.compress(data) + compressor.flush(zlib.Z_FINISH) + self.trailer
        self.history += data
        return frame(self.client, opcode, payload, rsv1=True)


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("params", sorted(PARAMS))
@pytest.mark.parametrize("trailer", [b"\x00", b""], ids=["rfc-trailer", "no-trailer"])
@pytest.mark.parametrize("limit", [None, 10_000], ids=["unlimited", "limited"])
def test_messages_ending_with_a_final_block_inflate_with_the_window(
    client: bool, params: str, trailer: bytes, limit: int | None
) -> None:
    # Each message repeats most of the one before: with context takeover, the
    # sender refers back into earlier messages, across their final blocks.
    sender = FinalBlockSender(client, PARAMS[params], trailer)
    texts = ["the quick brown fox " * 20, "the quick brown fox " * 19 + "jumps", "", "fox " * 50]
    stream = b"".join(sender.frame(TEXT, t.encode()) for t in texts)
    # Then a message flushed the usual way (sync flush), in the same sender's stream.
    window = sender.history[-(1 << sender.bits) :] if sender.takeover else b""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -sender.bits, zdict=window)
    tail = compressor.compress(b"the quick brown fox") + compressor.flush(zlib.Z_SYNC_FLUSH)
    stream += frame(client, BINARY, tail[:-4], rsv1=True)
    result = check(client, PARAMS[params], stream, max_message_size=limit)
    assert messages_of(result) == [
        *(("str", t) for t in texts),
        ("bytes", b"the quick brown fox"),
    ]
    assert result[-1][4] is State.OPEN


def test_rfc_7692_final_block_example() -> None:
    # RFC 7692 7.2.3.4: "Hello" in a final block, then an empty stored block's header.
    payload = bytes.fromhex("f348cdc9c90700") + b"\x00"
    for client in (True, False):
        stream = frame(client, TEXT, payload, rsv1=True) + frame(client, TEXT, payload, rsv1=True)
        result = check(client, "", stream)
        assert messages_of(result) == [("str", "Hello")] * 2
        assert result[-1][4] is State.OPEN


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize(
    "after",
    [b"\x00\x00", bytes.fromhex("f348cdc9c90700"), b"\x02\x00", b"\x01\x00"],
    ids=["two-zero-bytes", "second-final-block", "fixed-block", "stored-block"],
)
def test_data_after_the_final_block_fails_with_1007(client: bool, after: bytes) -> None:
    payload = bytes.fromhex("f348cdc9c90700") + after
    stream = frame(client, TEXT, b"before") + frame(client, TEXT, payload, rsv1=True)
    stream += frame(client, TEXT, b"after")
    result = check(client, "", stream)
    assert messages_of(result) == [("str", "before")]
    assert result[-1][4] is State.CLOSED
    assert result[-1][5] == 1007


_kinds = st.one_of(
    st.tuples(st.just("ztext"), st.text(max_size=300)),
    st.tuples(st.just("zbinary"), st.binary(max_size=3000)),
    st.tuples(st.just("text"), st.text(max_size=50)),
    st.tuples(st.just("ping"), st.binary(max_size=20)),
    st.tuples(st.just("zbad"), st.binary(min_size=1, max_size=20)),
)


# A final stored block (``01``, its length fields being the appended tail) in the
# middle of a stream with context takeover: the next message inflates with the window.
_FINAL_BLOCK = [("ztext", "0\x80\u0800\U00010000"), ("zbad", b"\x01"), ("ztext", "")]


@examples(120)
@example(False, "takeover", _FINAL_BLOCK, [32], None, None, False)
@example(True, "takeover", _FINAL_BLOCK, [32], None, None, False)
@example(False, "takeover", _FINAL_BLOCK, [], None, 2000, True)
@example(True, "takeover", _FINAL_BLOCK, [5, 20], 1, 2000, False)
@example(True, "window-10", [*_FINAL_BLOCK, ("ztext", "after " * 20)], [], None, None, True)
@example(False, "no-takeover", [*_FINAL_BLOCK, ("zbinary", b"x" * 100)], [7], None, 50, False)
@example(False, "takeover", [("zbad", b"\x01"), ("zbad", b"\x01"), ("ztext", "a")], [], 2, 0, False)
@given(
    client=st.booleans(),
    params=st.sampled_from(sorted(PARAMS)),
    kinds=st.lists(_kinds, max_size=10),
    splits=st.lists(st.integers(min_value=1, max_value=20_000), max_size=10),
    max_messages=st.one_of(st.none(), st.integers(min_value=1, max_value=3)),
    limit=st.one_of(st.none(), st.integers(min_value=0, max_value=2000)),
    close=st.booleans(),
)
def test_random_compressed_streams_give_the_same_results(
    client: bool,
    params: str,
    kinds: list[tuple[str, Any]],
    splits: list[int],
    max_messages: int | None,
    limit: int | None,
    close: bool,
) -> None:
    peer = PeerCompressor(client, PARAMS[params])
    out = []
    for kind, value in kinds:
        if kind == "ztext":
            out.append(peer.frame(TEXT, value.encode()))
        elif kind == "zbinary":
            out.append(peer.frame(BINARY, value))
        elif kind == "text":
            out.append(frame(client, TEXT, value.encode()))
        elif kind == "ping":
            out.append(frame(client, PING, value))
        else:  # compressed bytes that are often invalid
            out.append(frame(client, random.Random(value).choice((TEXT, BINARY)), value, rsv1=True))
    stream = b"".join(out)
    if close:
        stream += frame(client, CLOSE, struct.pack("!H", 1000))

    def extensions() -> list[Any]:
        return negotiated(client, PARAMS[params])

    compare(client, stream, splits, max_messages, extensions=extensions, max_message_size=limit)
