"""The sans-I/O core's fast paths give exactly what wsproto gives.

``Protocol`` frames outgoing data messages and parses incoming unfragmented data
frames itself when no extension is in use, and hands everything else to wsproto.
Every test here runs the same input through a ``Protocol`` with the fast paths and
one with ``fast_path = False`` (everything through wsproto) and compares the
results: the frames sent (byte for byte, with the same masking keys), and for
received bytes, call by call, the messages (with their types), the bytes to write
back, ``stalled``, the state and the close code and reason. Frames are built by the
independent encoder of ``tests/asyncio/rawpeer.py``.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from wsproto.extensions import PerMessageDeflate

from simple_websocket.asyncio.connection import Connection
from simple_websocket.errors import ConnectionClosed
from simple_websocket.sansio import framing as protocol_module
from simple_websocket.sansio.protocol import Protocol, State

from ..asyncio.rawpeer import BINARY, CLOSE, CONT, PING, PONG, TEXT, apply_mask, encode_frame
from ..fuzzing import examples

SIZES = [0, 1, 2, 3, 4, 5, 7, 64, 125, 126, 127, 511, 512, 513, 1000, 4099]
SIZES += [65535, 65536, 65537, 70001, (1 << 17) + 3]


class KeyStream:
    """A stand-in for ``os.urandom``: the same deterministic bytes for each seed.

    The fast path draws masking keys from a pool (``os.urandom(4096)``) and wsproto
    calls ``os.urandom(4)`` per frame; both read the same stream, so the n-th frame
    gets the same key either way.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def __call__(self, n: int) -> bytes:
        return self.rng.randbytes(n)


MASKERS = {
    "python": (protocol_module._py_apply_mask, protocol_module._py_mask_into, None, None),
    "c": (
        protocol_module._c_apply_mask,
        protocol_module._c_mask_into,
        protocol_module._c_parse_small,
        protocol_module._c_build_frame,
    ),
}


@pytest.fixture(autouse=True, params=sorted(MASKERS))
def masking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with the C extension (masking, the small-frame parser
    and the frame builder) and with the pure-Python code."""
    apply_mask, mask_into, parse_small, build_frame = MASKERS[request.param]
    if apply_mask is None:
        if os.environ.get("SIMPLE_WEBSOCKET_NO_EXTENSIONS"):
            pytest.skip("the C extension is turned off (SIMPLE_WEBSOCKET_NO_EXTENSIONS)")
        pytest.fail("simple_websocket.sansio._speedups was not built: is a C compiler there?")
    monkeypatch.setattr(protocol_module, "_apply_mask", apply_mask)
    monkeypatch.setattr(protocol_module, "_mask_into", mask_into)
    monkeypatch.setattr(protocol_module, "_parse_small", parse_small)
    monkeypatch.setattr(protocol_module, "_build_frame", build_frame)
    return str(request.param)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """``keys(seed)`` restarts the masking-key stream."""

    def restart(seed: int) -> None:
        monkeypatch.setattr(os, "urandom", KeyStream(seed))

    return restart


def protocols(client: bool, **options: Any) -> tuple[Protocol, Protocol]:
    """``(fast, wsproto_only)``: two fresh protocols with the same options."""
    fast = Protocol(client, **options)
    slow = Protocol(client, **options)
    slow.fast_path = False
    assert fast.fast_path
    return fast, slow


def payload_for(size: int, seed: int, text: bool) -> str | bytes:
    rng = random.Random(seed * 7919 + size)
    if not text:
        return rng.randbytes(size)
    alphabet = "abc xyz 012 é € 𝄞 \u00ff\u0100\u07ff\u0800\uffff"
    chars: list[str] = []
    total = 0
    while total < size:
        c = rng.choice(alphabet)
        chars.append(c)
        total += len(c.encode())
    return "".join(chars)


def decode_frames(data: bytes, masked: bool) -> list[tuple[int, bool, bytes]]:
    """Parse frames independently: ``(opcode, fin, unmasked payload)`` each."""
    frames = []
    i = 0
    while i < len(data):
        first, second = data[i], data[i + 1]
        assert bool(second & 0x80) == masked
        assert not first & 0x70, "reserved bits set"
        n = second & 0x7F
        i += 2
        if n == 126:
            (n,) = struct.unpack("!H", data[i : i + 2])
            assert n >= 126
            i += 2
        elif n == 127:
            (n,) = struct.unpack("!Q", data[i : i + 8])
            assert n >= 65536
            i += 8
        key = None
        if masked:
            key = data[i : i + 4]
            i += 4
        payload = data[i : i + n]
        assert len(payload) == n
        i += n
        frames.append(
            (first & 0x0F, bool(first & 0x80), apply_mask(key, payload) if key else payload)
        )
    return frames


# -- sending ------------------------------------------------------------------------


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("kind", ["text", "bytes", "bytearray", "memoryview"])
@pytest.mark.parametrize("size", SIZES)
def test_frames_are_byte_identical(
    keys: Callable[[int], None], client: bool, kind: str, size: int
) -> None:
    data: Any = payload_for(size, 1, kind == "text")
    if kind == "bytearray":
        data = bytearray(data)
    elif kind == "memoryview":
        data = memoryview(b"<" + bytes(data) + b">")[1:-1]
    fast, slow = protocols(client)
    keys(size)
    ours = [fast.send(data), fast.send(data)]
    keys(size)
    theirs = [slow.send(data), slow.send(data)]
    assert all(type(f) is bytes for f in ours)
    assert ours == theirs
    expected = data.encode() if isinstance(data, str) else bytes(data)
    opcode = TEXT if isinstance(data, str) else BINARY
    assert decode_frames(b"".join(ours), masked=client) == [(opcode, True, expected)] * 2
    if client and size >= 4:
        # A fresh key for every frame.
        assert ours[0] != ours[1]


def test_send_frame_may_be_a_bytearray_with_the_same_bytes(keys: Callable[[int], None]) -> None:
    fast, slow = protocols(True)
    data = os.urandom(5000)
    keys(3)
    frame = fast.send_frame(data)
    keys(3)
    assert bytes(frame) == slow.send(data)


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("size", [0, 5, 4096, 4097, 65536, 65537, 300_001])
@pytest.mark.parametrize("kind", ["text", "bytes", "bytearray", "memoryview", "strided"])
def test_chunks_join_into_the_same_frame(
    keys: Callable[[int], None], client: bool, size: int, kind: str
) -> None:
    raw = payload_for(size, 4, kind == "text")
    data: Any = raw
    if kind == "bytearray":
        data = bytearray(raw)
    elif kind == "memoryview":
        data = memoryview(raw)  # type: ignore[arg-type]
    elif kind == "strided":
        data = memoryview(bytes(raw) * 2)[::2]  # type: ignore[arg-type]
    fast, slow = protocols(client)
    keys(size)
    pieces = list(fast.send_chunks(data, chunk_size=4096))
    keys(size)
    assert b"".join(pieces) == slow.send(data)
    if size > 4096 and kind != "text":
        assert len(pieces) > 1
        assert all(len(p) <= 4096 + 14 for p in pieces[:-1]) or not client


def test_chunks_check_their_size_and_the_state() -> None:
    proto = Protocol(True)
    with pytest.raises(ValueError):
        proto.send_chunks(b"x", chunk_size=6)
    proto.close()
    with pytest.raises(ConnectionClosed):
        proto.send_chunks(b"x" * 100_000)


def test_non_bytes_are_sent_as_wsproto_would(keys: Callable[[int], None]) -> None:
    fast, slow = protocols(False)
    for value in (memoryview(b"abcd").cast("I"), bytearray(b"xyz"), memoryview(b"")):
        assert fast.send(value) == slow.send(value)


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_control_frames_and_messages_keep_their_order(
    keys: Callable[[int], None], client: bool
) -> None:
    fast, slow = protocols(client)
    out = {}
    for name, proto in (("fast", fast), ("slow", slow)):
        keys(11)
        frames = [proto.send("a"), proto.ping(b"p")[1], proto.send(b"b" * 300), proto.close(1001)]
        with pytest.raises(ConnectionClosed):
            proto.send("too late")
        out[name] = decode_frames(b"".join(frames), masked=client)
    assert out["fast"] == out["slow"]
    assert [f[0] for f in out["fast"]] == [TEXT, PING, BINARY, CLOSE]


def test_unencodable_text_raises_like_wsproto() -> None:
    fast, slow = protocols(False)
    for proto in (fast, slow):
        with pytest.raises(UnicodeEncodeError):
            proto.send("\udc80")


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 255, 511, 512, 513, 4096, 65536 + 3])
def test_masking_helpers(size: int) -> None:
    data = os.urandom(size)
    key = os.urandom(4)
    expected = apply_mask(key, data)
    assert protocol_module._mask_small(key, data) == expected
    masked = protocol_module._apply_mask(data, key)
    assert bytes(masked) == expected
    assert bytes(protocol_module._apply_mask(memoryview(data), key)) == expected
    assert bytes(protocol_module._apply_mask(bytearray(data), key)) == expected
    buf = bytearray(b"head" + data + b"tail")
    protocol_module._mask_into(buf, 4, key, 4 + size)
    assert bytes(buf) == b"head" + expected + b"tail"
    buf = bytearray(b"head" + data)
    protocol_module._mask_into(buf, 4, key, None)
    assert bytes(buf) == b"head" + expected


def test_c_masking_checks_its_arguments(masking: str) -> None:
    if masking != "c":
        return
    apply_mask, mask_into, _, _ = MASKERS["c"]
    assert apply_mask is not None and mask_into is not None
    with pytest.raises(ValueError, match="4 bytes"):
        apply_mask(b"data", b"abc")
    with pytest.raises(ValueError, match="4 bytes"):
        mask_into(bytearray(8), 0, b"abcde", None)
    with pytest.raises(ValueError, match="outside"):
        mask_into(bytearray(8), 4, b"abcd", 9)
    with pytest.raises(ValueError, match="outside"):
        mask_into(bytearray(8), 5, b"abcd", 4)
    with pytest.raises(BufferError):
        mask_into(b"read-only", 0, b"abcd", None)
    with pytest.raises(TypeError):
        apply_mask("text", b"abcd")


def test_c_parser_checks_its_arguments(masking: str) -> None:
    if masking != "c":
        return
    parse_small = MASKERS["c"][2]
    assert parse_small is not None
    with pytest.raises(TypeError):
        parse_small(bytearray(b"\x81\x00"), 0, False, 126, [], -1)
    with pytest.raises(TypeError):
        parse_small(b"\x81\x00", 0, False, 126, (), -1)
    with pytest.raises(TypeError):
        parse_small(b"\x81\x00", 0, False, 126, [])
    with pytest.raises(ValueError, match="outside"):
        parse_small(b"\x81\x00", 3, False, 126, [], -1)


def test_c_builder_checks_its_arguments(masking: str) -> None:
    if masking != "c":
        return
    build_frame = MASKERS["c"][3]
    assert build_frame is not None
    with pytest.raises(ValueError, match="4 bytes"):
        build_frame(0x82, b"data", b"abc")
    with pytest.raises(ValueError, match="between 0 and 255"):
        build_frame(256, b"data", None)
    with pytest.raises(TypeError):
        build_frame(0x82, 42, None)
    with pytest.raises(TypeError):
        build_frame(0x82, b"data")
    with pytest.raises(UnicodeEncodeError):
        build_frame(0x81, "\ud800", None)  # a lone surrogate has no UTF-8


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70001])
@pytest.mark.parametrize("key", [None, b"\x01\x02\x03\xff"])
@pytest.mark.parametrize("kind", ["ascii", "utf-8", "bytes", "bytearray", "memoryview"])
def test_c_builder_matches_the_reference_encoder(
    masking: str, size: int, key: bytes | None, kind: str
) -> None:
    """Every header size, masked and not, every payload type: the same bytes as
    the independent encoder of the test peer."""
    if masking != "c":
        return
    build_frame = MASKERS["c"][3]
    assert build_frame is not None
    text = kind in ("ascii", "utf-8")
    data: Any
    if kind == "ascii":
        data = ("abc" * size)[:size]
    elif kind == "utf-8":
        data = ("é€" * size)[: size // 2]
    else:
        raw = random.Random(size).randbytes(size)
        data = {"bytes": raw, "bytearray": bytearray(raw), "memoryview": memoryview(raw)}[kind]
    payload = data.encode("utf-8") if text else bytes(data)
    expected = encode_frame(TEXT if text else BINARY, payload, mask=key)
    assert build_frame(0x81 if text else 0x82, data, key) == expected


def _server_frames(*frames: tuple[int, bytes]) -> bytes:
    """Unmasked frames as a server sends them: ``(first byte, payload)`` each."""
    return b"".join(
        encode_frame(first & 0x0F, payload, fin=bool(first & 0x80)) for first, payload in frames
    )


@pytest.mark.parametrize(
    ("stream", "taken", "expected"),
    [
        # A run of small text and binary frames, all taken.
        (
            _server_frames((0x81, b"a"), (0x82, b"\x00\x01"), (0x81, "é".encode())),
            None,
            ["a", b"\x00\x01", "é"],
        ),
        # Stops before a control frame, a fragment and a 126-byte frame.
        (_server_frames((0x81, b"a"), (0x89, b"ping")), 3, ["a"]),
        (_server_frames((0x82, b"a"), (0x01, b"frag")), 3, [b"a"]),
        (_server_frames((0x82, b""), (0x82, bytes(126))), 2, [b""]),
        # Stops before invalid UTF-8 (the Python parser reports it) and an
        # incomplete frame.
        (_server_frames((0x81, b"ok"), (0x81, b"\xff")), 4, ["ok"]),
        (_server_frames((0x81, b"ok"), (0x81, b"cut"))[:-1], 4, ["ok"]),
        # A masked frame on the client side is not taken.
        (encode_frame(TEXT, b"x", mask=b"abcd"), 0, []),
    ],
)
def test_c_parser_takes_only_what_it_may(
    masking: str, stream: bytes, taken: int | None, expected: list[str | bytes]
) -> None:
    if masking != "c":
        return
    parse_small = MASKERS["c"][2]
    assert parse_small is not None
    messages: list[str | bytes] = []
    assert parse_small(stream, 0, False, 126, messages, -1) == (
        len(stream) if taken is None else taken
    )
    assert messages == expected
    assert [type(m) for m in messages] == [type(m) for m in expected]


def test_c_parser_stops_at_max_messages_and_size(masking: str) -> None:
    if masking != "c":
        return
    parse_small = MASKERS["c"][2]
    assert parse_small is not None
    stream = _server_frames(*[(0x81, b"%d" % k) for k in range(5)])
    messages: list[str | bytes] = []
    assert parse_small(stream, 0, False, 126, messages, 2) == 6
    assert messages == ["0", "1"]
    assert parse_small(stream, 6, False, 126, messages, 4) == 12
    assert messages == ["0", "1", "2", "3"]
    # ``small``: a frame of that many payload bytes or more is left (the size limit).
    assert parse_small(_server_frames((0x81, b"abc")), 0, False, 3, [], -1) == 0
    assert parse_small(_server_frames((0x81, b"abc")), 0, False, 4, [], -1) == 5


def test_extensions_turn_the_fast_path_off() -> None:
    ext = PerMessageDeflate()
    ext.finalize(ext.offer())
    assert not Protocol(True, [ext]).fast_path
    server_ext = PerMessageDeflate()
    server_ext.accept("permessage-deflate")
    assert not Protocol(False, [server_ext]).fast_path
    # An extension that was offered but not negotiated is not in use.
    assert Protocol(True, [PerMessageDeflate()]).fast_path


def test_compressed_connection_sends_and_receives_through_wsproto() -> None:
    client_ext = PerMessageDeflate()
    server_ext = PerMessageDeflate()
    client_ext.finalize(server_ext.accept(client_ext.offer()) or "")
    client = Protocol(True, [client_ext])
    server = Protocol(False, [server_ext])
    frame = client.send("hello " * 100)
    assert frame[0] & 0x40, "RSV1: compressed"
    assert server.receive_data(frame) == ["hello " * 100]


# -- receiving ----------------------------------------------------------------------


Transcript = list[tuple[Any, ...]]


def transcript(
    proto: Protocol,
    chunks: Iterable[bytes | None],
    max_messages: int | None = None,
) -> Transcript:
    """Feed ``chunks`` (``None``: EOF) and record everything observable after each call."""
    out: Transcript = []

    def record(tag: str, messages: list[str | bytes]) -> None:
        out.append(
            (
                tag,
                [(type(m).__name__, m) for m in messages],
                proto.data_to_send(),
                proto.stalled,
                proto.state,
                proto.close_code,
                proto.close_reason,
                proto.failed,
                proto.close_received,
                proto.take_pongs(),
            )
        )

    for chunk in chunks:
        if chunk is None:
            proto.connection_lost()
            record("eof", [])
            continue
        record("data", proto.receive_data(chunk, max_messages))
        guard = 0
        while max_messages is not None and proto.stalled:
            record("more", proto.receive_data(b"", max_messages))
            guard += 1
            assert guard < 100_000
    return out


def compare(
    client: bool,
    stream: bytes,
    splits: Iterable[int] | None = None,
    max_messages: int | None = None,
    eof: bool = False,
    extensions: Callable[[], list[Any]] | None = None,
    **options: Any,
) -> Transcript:
    """Feed ``stream`` cut at ``splits`` to both protocols; assert equal transcripts.

    ``extensions`` makes each protocol's (fresh, negotiated) extensions.
    """
    chunks = list(cut(stream, splits))
    if eof:
        chunks.append(None)  # type: ignore[arg-type]
    results = []
    saved = os.urandom
    try:
        for fast in (True, False):
            # The same masking keys for the pongs and close frames of a client.
            os.urandom = KeyStream(99)
            proto = Protocol(client, extensions() if extensions else (), **options)
            proto.fast_path = fast
            results.append(transcript(proto, chunks, max_messages))
    finally:
        os.urandom = saved
    assert results[0] == results[1]
    return results[0]


def cut(data: bytes, splits: Iterable[int] | None) -> Iterator[bytes]:
    """``data`` in one piece, or cut at the given (sorted, deduplicated) offsets."""
    if splits is None:
        yield data
        return
    last = 0
    for pos in sorted({p for p in splits if 0 < p < len(data)}):
        yield data[last:pos]
        last = pos
    yield data[last:]


def frame(client: bool, opcode: int, payload: bytes = b"", **kwargs: Any) -> bytes:
    """A frame as the peer of a ``client`` (or server) protocol sends it."""
    if client:
        return encode_frame(opcode, payload, **kwargs)
    kwargs.setdefault("mask", os.urandom(4))
    return encode_frame(opcode, payload, **kwargs)


def messages_of(result: Transcript) -> list[tuple[str, Any]]:
    return [m for step in result for m in step[1]]


def random_splits(rng: random.Random, size: int, count: int) -> list[int]:
    return [rng.randrange(1, max(2, size)) for _ in range(count)]


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("size", SIZES)
def test_single_messages_of_every_size(client: bool, size: int) -> None:
    text = payload_for(size, 2, True)
    binary = payload_for(size, 3, False)
    assert isinstance(text, str) and isinstance(binary, bytes)
    stream = frame(client, TEXT, text.encode()) + frame(client, BINARY, binary)
    rng = random.Random(size)
    for splits in (None, [len(stream) // 2], random_splits(rng, len(stream), 7)):
        result = compare(client, stream, splits)
        assert messages_of(result) == [("str", text), ("bytes", binary)]


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_many_small_messages_bytewise_and_in_pieces(client: bool) -> None:
    rng = random.Random(5)
    parts = []
    expected: list[tuple[str, Any]] = []
    for i in range(60):
        size = rng.choice([0, 1, 5, 64, 125, 126, 300])
        if i % 2:
            data = rng.randbytes(size)
            parts.append(frame(client, BINARY, data))
            expected.append(("bytes", data))
        else:
            text = payload_for(size, i, True)
            parts.append(frame(client, TEXT, text.encode()))  # type: ignore[union-attr]
            expected.append(("str", text))
    stream = b"".join(parts)
    assert messages_of(compare(client, stream)) == expected
    assert messages_of(compare(client, stream, range(len(stream)))) == expected
    assert messages_of(compare(client, stream, random_splits(rng, len(stream), 40))) == expected


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_control_frames_fragments_and_close(client: bool) -> None:
    euro = "€".encode()
    stream = b"".join(
        [
            frame(client, TEXT, b"one"),
            frame(client, PING, b"ping-1"),
            frame(client, BINARY, b"\x00" * 200),
            frame(client, TEXT, b"ab" + euro[:1], fin=False),
            frame(client, PING, b"in-between"),
            frame(client, CONT, euro[1:], fin=False),
            frame(client, PONG, b"unsolicited"),
            frame(client, CONT, b"cd"),
            frame(client, TEXT, b"after fragments"),
            frame(client, PONG, b""),
            frame(client, BINARY, b"x" * 70000),
            frame(client, CLOSE, struct.pack("!H", 1001) + "bye é".encode()),
            frame(client, TEXT, b"after close: ignored"),
        ]
    )
    for splits in (None, [3, 10, 50, 51, 52, 300, 70100], range(0, len(stream), 7)):
        result = compare(client, stream, splits)
        assert [m for _, m in messages_of(result)] == [
            "one",
            b"\x00" * 200,
            "ab€cd",
            "after fragments",
            b"x" * 70000,
        ]
        last = result[-1]
        assert (last[4], last[5], last[6]) == (State.CLOSED, 1001, "bye é")


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("max_messages", [1, 2, 3, 16])
def test_max_messages_stalls_the_same_way(client: bool, max_messages: int) -> None:
    stream = b"".join(frame(client, TEXT, str(i).encode() * (i % 7)) for i in range(50))
    stream += frame(client, PING, b"p") + frame(client, BINARY, b"z" * 1000)
    stream += b"".join(frame(client, BINARY, bytes([i])) for i in range(20))
    for splits in (None, [100, 101, 400], range(0, len(stream), 97)):
        result = compare(client, stream, splits, max_messages=max_messages)
        assert all(len(step[1]) <= max_messages for step in result)
        assert len(messages_of(result)) == 71


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_eof_drops_incomplete_and_stalled_frames_alike(client: bool) -> None:
    whole = frame(client, TEXT, b"complete") + frame(client, BINARY, b"q" * 5000)
    for cut_at in (3, 9, 20, 2000, len(whole) - 1):
        compare(client, whole[:cut_at], eof=True)
    many = b"".join(frame(client, TEXT, b"m") for _ in range(10))
    result = compare(client, many, max_messages=2, eof=True)
    assert result[-1][5] == 1006


def feed_with_receive_buffer(proto: Protocol, stream: bytes, read_size: int) -> Transcript:
    """Feed ``stream`` as a buffered asyncio transport would, ``read_size`` at a time.

    When the protocol offers a buffer (a large binary frame in progress), the bytes
    are read into it; otherwise they go to ``receive_data``.
    """
    out: Transcript = []
    pos = 0
    while pos < len(stream):
        direct = proto.receive_buffer()
        if direct is not None:
            n = min(len(direct), read_size, len(stream) - pos)
            direct[:n] = stream[pos : pos + n]
            messages = proto.receive_buffer_updated(n, 4)
        else:
            n = min(read_size, len(stream) - pos)
            messages = proto.receive_data(stream[pos : pos + n], 4)
        pos += n
        out.extend((type(m).__name__, m) for m in messages)
        while proto.stalled:
            out.extend((type(m).__name__, m) for m in proto.receive_data(b"", 4))
    return out


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("read_size", [1000, 65536, 262144])
def test_reading_into_the_payload_buffer(client: bool, read_size: int) -> None:
    big = [os.urandom(n) for n in (70_000, 1 << 20, 300_001)]
    stream = b"".join(
        [
            frame(client, BINARY, big[0]),
            frame(client, TEXT, b"between"),
            frame(client, BINARY, big[1]),
            frame(client, PING, b"p"),
            frame(client, BINARY, big[2]),
            frame(client, TEXT, "é".encode() * 50_000),
        ]
    )
    expected = [("bytes", big[0]), ("str", "between"), ("bytes", big[1])]
    expected += [("bytes", big[2]), ("str", "é" * 50_000)]
    fast, slow = protocols(client)
    assert feed_with_receive_buffer(fast, stream, read_size) == expected
    assert messages_of(transcript(slow, cut(stream, range(0, len(stream), read_size)))) == expected
    # The pong was queued in both cases.
    assert decode_frames(fast.data_to_send(), masked=client)[0][0] == PONG


def test_receive_buffer_only_while_a_large_binary_frame_arrives() -> None:
    proto = Protocol(True)
    assert proto.receive_buffer() is None
    with pytest.raises(ValueError):
        proto.receive_buffer_updated(1)
    head = encode_frame(BINARY, b"x" * 1000)
    assert proto.receive_data(head[:100]) == []
    direct = proto.receive_buffer()
    assert direct is not None and len(direct) == 1000 - (100 - 4)
    with pytest.raises(ValueError):
        proto.receive_buffer_updated(len(direct) + 1)
    direct[:] = head[100:]
    assert proto.receive_buffer_updated(len(direct)) == [b"x" * 1000]
    assert proto.receive_buffer() is None
    # Text frames and frames over 4 MiB are collected from receive_data() only.
    proto.receive_data(encode_frame(TEXT, b"y" * 1000)[:100])
    assert proto.receive_buffer() is None
    huge = Protocol(True)
    length = protocol_module.DIRECT_MAX + 1
    assert huge.receive_data(encode_frame(BINARY, b"zz", length=length)) == []
    assert huge._partial is not None
    assert huge.receive_buffer() is None


LIMIT = 1000


def error_cases(client: bool) -> list[tuple[str, bytes]]:
    f = lambda *a, **k: frame(client, *a, **k)  # noqa: E731
    wrong_mask: dict[str, Any] = {"mask": b"abcd"} if client else {"mask": None}
    return [
        ("rsv1", f(TEXT, b"hi", rsv1=True)),
        ("rsv2", f(BINARY, b"hi", rsv2=True)),
        ("rsv3-ping", f(PING, b"hi", rsv3=True)),
        ("opcode-3", f(0x3, b"hi")),
        ("opcode-B", f(0xB, b"hi")),
        ("wrong-mask", encode_frame(TEXT, b"hi", **wrong_mask)),
        ("fragmented-ping", f(PING, b"hi", fin=False)),
        ("ping-too-long", f(PING, b"x" * 126)),
        ("continuation-first", f(CONT, b"hi")),
        ("new-message-in-fragmented", f(TEXT, b"a", fin=False) + f(TEXT, b"b")),
        ("close-1-byte", f(CLOSE, b"\x03")),
        ("close-999", f(CLOSE, struct.pack("!H", 999))),
        ("close-1006", f(CLOSE, struct.pack("!H", 1006))),
        ("close-bad-utf8", f(CLOSE, struct.pack("!H", 1000) + b"\xff")),
        ("length-16-for-small", _long_length(client, 10, 16)),
        ("length-64-for-small", _long_length(client, 300, 64)),
        ("length-msb", f(BINARY, b"x" * 16, length=1 << 63)),
        ("invalid-utf8", f(TEXT, b"ok \xff")),
        ("invalid-utf8-long", f(TEXT, b"a" * 3000 + b"\xff" + b"b" * 3000)),
        ("invalid-utf8-late", f(TEXT, b"a" * 70000 + b"\xc3")),
        ("surrogate", f(TEXT, b"\xed\xa0\x80")),
        ("utf8-across-fragments", f(TEXT, b"\xe2\x82", fin=False) + f(CONT, b"\x28")),
        ("too-big", f(BINARY, b"x" * (LIMIT + 1))),
        ("too-big-text", f(TEXT, "é".encode() * (LIMIT // 2 + 1))),
        ("too-big-huge", f(BINARY, b"x" * (2 * LIMIT), length=1 << 62)),
        ("at-limit-then-bad", f(BINARY, b"x" * LIMIT) + f(0x3, b"")),
        ("too-big-fragments", f(TEXT, b"x" * 600, fin=False) + f(CONT, b"x" * 600)),
        ("too-big-announced", f(BINARY, b"x" * 10, length=1 << 40)),
    ]


def _long_length(client: bool, size: int, bits: int) -> bytes:
    """A binary frame whose length uses a longer encoding than needed."""
    payload = b"y" * size
    head = bytes([0x82, (0 if client else 0x80) | (126 if bits == 16 else 127)])
    head += struct.pack("!H" if bits == 16 else "!Q", size)
    if client:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + apply_mask(key, payload)


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_protocol_errors_fail_the_same_way(client: bool) -> None:
    for name, bad in error_cases(client):
        stream = frame(client, TEXT, b"before") + bad + frame(client, TEXT, b"after")
        for splits in (None, range(len(stream)), [len(stream) // 3, len(stream) // 2]):
            result = compare(client, stream, splits, max_message_size=LIMIT)
            last = result[-1]
            assert last[4] is State.CLOSED, name
            assert last[7], f"{name}: not failed"
            assert messages_of(result)[0] == ("str", "before"), name


def close_cases(client: bool) -> list[tuple[str, bytes]]:
    """Close frames, valid and not, and what may follow them in the same read."""
    f = lambda *a, **k: frame(client, *a, **k)  # noqa: E731
    wrong_mask: dict[str, Any] = {"mask": b"abcd"} if client else {"mask": None}
    code = struct.pack("!H", 1001)
    return [
        ("code", f(CLOSE, code)),
        ("reason", f(CLOSE, code + "bye é".encode())),
        ("longest", f(CLOSE, code + b"r" * 123)),
        ("too-long", f(CLOSE, code + b"r" * 124)),
        ("1-byte", f(CLOSE, b"\x03")),
        ("code-999", f(CLOSE, struct.pack("!H", 999))),
        ("bad-utf8", f(CLOSE, code + b"\xff")),
        ("rsv1", f(CLOSE, code, rsv1=True)),
        ("not-fin", f(CLOSE, code, fin=False)),
        ("wrong-mask", encode_frame(CLOSE, code, **wrong_mask)),
        (
            "length-16",
            bytes([0x88, (0 if client else 0x80) | 126, 0, 2])
            + (b"" if client else b"abcd")
            + code,
        ),
        ("then-data", f(CLOSE, code) + f(TEXT, b"late")),
        ("then-byte", f(CLOSE, code) + b"\x81"),
        ("truncated", f(CLOSE, code + b"reason")[:-2]),
    ]


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_a_close_frame_ending_a_read_is_handled_as_the_general_parser_does(
    client: bool,
) -> None:
    """The fast path takes a close frame that ends a read without the general frame
    parser: every kind of close frame, alone, after messages, and cut anywhere,
    gives what the reference path gives."""
    for name, close in close_cases(client):
        for before in (b"", frame(client, TEXT, b"before") + frame(client, BINARY, b"x" * 90)):
            stream = before + close
            for splits in (None, range(len(stream)), [len(before)]):
                result = compare(client, stream, splits, eof=True)
                assert result[-1][4] is State.CLOSED, name
                if before:
                    assert messages_of(result)[:2] == [("str", "before"), ("bytes", b"x" * 90)]


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_a_close_frame_without_a_code_is_answered_without_one(client: bool) -> None:
    """1005 is never sent (RFC 6455 7.4.1): a close frame without a status code is
    echoed as one without a code, where wsproto's path answers 1000."""
    stream = frame(client, TEXT, b"before") + frame(client, CLOSE)
    for splits in (None, range(len(stream))):
        proto = Protocol(client)
        received = [m for chunk in cut(stream, splits) for m in proto.receive_data(chunk)]
        assert received == ["before"]
        assert proto.state is State.CLOSED and proto.close_code == 1005
        answer = proto.data_to_send()
        assert decode_frames(answer, masked=client) == [(CLOSE, True, b"")]


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "wsproto"])
@pytest.mark.parametrize(
    "stream",
    [
        [(BINARY, LIMIT + 1, True)],
        [(TEXT, 1 << 62, True)],
        [(BINARY, 600, False), (PING, 4, True), (CONT, 0, False), (CONT, 401, True)],
    ],
    ids=["one-frame", "huge", "fragments"],
)
def test_message_over_the_limit_fails_on_its_header(
    client: bool, fast: bool, stream: list[tuple[int, int, bool]]
) -> None:
    """1009 as soon as the headers announce more than the limit, before the payload."""
    proto = Protocol(client, max_message_size=LIMIT)
    proto.fast_path = fast
    *before, (opcode, length, fin) = stream
    for op, size, more in before:
        assert proto.receive_data(frame(client, op, b"y" * size, fin=more)) == []
        assert not proto.failed
        proto.data_to_send()  # the pong
    data = frame(client, opcode, b"z" * min(length, 8), fin=fin, length=length)
    header = data[: len(data) - min(length, 8)]
    assert proto.receive_data(header) == []
    assert proto.failed
    assert proto.close_code == 1009
    assert proto.data_to_send()[:1] == b"\x88"


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_protocol_errors_while_closing(client: bool) -> None:
    for name, bad in error_cases(client):
        results = []
        saved = os.urandom
        try:
            for fast in (True, False):
                os.urandom = KeyStream(5)
                proto = Protocol(client, max_message_size=LIMIT)
                proto.fast_path = fast
                proto.close(1000)
                results.append(transcript(proto, [frame(client, TEXT, b"still read") + bad]))
        finally:
            os.urandom = saved
        assert results[0] == results[1], name


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_messages_at_the_limit(client: bool) -> None:
    stream = frame(client, BINARY, b"x" * LIMIT) + frame(client, TEXT, "€".encode() * (LIMIT // 3))
    for splits in (None, range(0, len(stream), 50)):
        result = compare(client, stream, splits, max_message_size=LIMIT)
        assert not result[-1][7]
        assert len(messages_of(result)) == 2


def test_fragments_and_control_frames_stay_on_the_fast_path() -> None:
    """Every frame is parsed by the core itself: wsproto is never involved."""
    proto = Protocol(False)
    key = b"kkkk"
    stream = encode_frame(TEXT, b"frag", fin=False, mask=key)
    stream += encode_frame(PING, b"p", mask=key)
    stream += encode_frame(CONT, b"ment", mask=key)
    stream += encode_frame(BINARY, b"fast", mask=key) + encode_frame(TEXT, b"path", mask=key)
    received: list[str | bytes] = []
    for k in range(0, len(stream), 3):
        received += proto.receive_data(stream[k : k + 3])
    assert received == ["fragment", b"fast", "path"]
    assert proto.data_to_send() == encode_frame(PONG, b"p")
    assert proto._ref is None


# -- property-based --------------------------------------------------------------------

_frame_kinds = st.one_of(
    st.tuples(st.just("text"), st.text(max_size=300)),
    st.tuples(st.just("binary"), st.binary(max_size=300)),
    st.tuples(st.just("big"), st.integers(min_value=126, max_value=70_000)),
    st.tuples(st.just("ping"), st.binary(max_size=125)),
    st.tuples(st.just("pong"), st.binary(max_size=125)),
    st.tuples(st.just("fragments"), st.lists(st.text(max_size=20), min_size=1, max_size=4)),
    st.tuples(st.just("bad-utf8"), st.binary(min_size=1, max_size=50)),
)


def _build(client: bool, kinds: list[tuple[str, Any]]) -> bytes:
    out = []
    for kind, value in kinds:
        if kind == "text":
            out.append(frame(client, TEXT, value.encode()))
        elif kind == "binary":
            out.append(frame(client, BINARY, value))
        elif kind == "big":
            out.append(frame(client, BINARY, bytes(range(256)) * (value // 256) + b"!"))
        elif kind == "ping":
            out.append(frame(client, PING, value))
        elif kind == "pong":
            out.append(frame(client, PONG, value))
        elif kind == "fragments":
            for j, part in enumerate(value):
                out.append(
                    frame(client, TEXT if j == 0 else CONT, part.encode(), fin=j == len(value) - 1)
                )
        else:  # bytes that are often, not always, invalid UTF-8
            out.append(frame(client, TEXT, value))
    return b"".join(out)


@examples(150)
@given(
    client=st.booleans(),
    kinds=st.lists(_frame_kinds, max_size=12),
    splits=st.lists(st.integers(min_value=1, max_value=200_000), max_size=12),
    max_messages=st.one_of(st.none(), st.integers(min_value=1, max_value=4)),
    limit=st.one_of(st.none(), st.integers(min_value=0, max_value=400)),
    close=st.booleans(),
    eof=st.booleans(),
)
# Found by a deep search: the C parser took the only message allowed by
# max_messages and every byte, and did not report the parse as stalled.
@example(
    client=False,
    kinds=[("text", "")],
    splits=[],
    max_messages=1,
    limit=None,
    close=False,
    eof=False,
)
@example(
    client=True,
    kinds=[("text", "a"), ("binary", b"b")],
    splits=[],
    max_messages=2,
    limit=None,
    close=True,
    eof=False,
)
def test_random_streams_give_the_same_results(
    client: bool,
    kinds: list[tuple[str, Any]],
    splits: list[int],
    max_messages: int | None,
    limit: int | None,
    close: bool,
    eof: bool,
) -> None:
    stream = _build(client, kinds)
    if close:
        stream += frame(client, CLOSE, struct.pack("!H", 1000)) + frame(client, TEXT, b"late")
    compare(client, stream, splits, max_messages, eof=eof, max_message_size=limit)


@examples(60)
@given(
    client=st.booleans(),
    messages=st.lists(st.one_of(st.text(max_size=2000), st.binary(max_size=70_000)), max_size=6),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_random_messages_frame_identically(
    client: bool, messages: list[str | bytes], seed: int
) -> None:
    fast, slow = protocols(client)
    saved = os.urandom
    try:
        os.urandom = KeyStream(seed)
        ours = [fast.send(m) for m in messages]
        os.urandom = KeyStream(seed)
        theirs = [slow.send(m) for m in messages]
    finally:
        os.urandom = saved
    assert ours == theirs
    # And the other side reads them back, fast and through wsproto alike.
    peer_fast, peer_slow = protocols(not client)
    stream = b"".join(ours)
    assert peer_fast.receive_data(stream) == peer_slow.receive_data(stream) == messages


# -- the asyncio engine's write path -------------------------------------------------
# Not sans-I/O, but the other half of the fast path: frames written in a burst are
# coalesced, large ones written in pieces. A fake transport records the writes; a
# client-side Protocol reads them back.


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        assert not self.closing, "write after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def server_connection() -> tuple[Connection, RecordingTransport]:
    conn = Connection()
    transport = RecordingTransport()
    conn._attach(transport)
    return conn, transport


def read_back(writes: list[bytes]) -> list[str | bytes]:
    return Protocol(True).receive_data(b"".join(writes))


async def test_a_burst_of_sends_is_coalesced_in_order() -> None:
    conn, transport = server_connection()
    for i in range(200):
        await conn.send(f"message {i}")
    # The first frame went straight out; the others wait for the end of the burst
    # (or went out as soon as 16 KiB were waiting).
    assert 1 <= len(transport.writes) < 5
    await asyncio.sleep(0)
    assert read_back(transport.writes) == [f"message {i}" for i in range(200)]
    assert len(transport.writes) < 5


async def test_large_frames_and_control_frames_keep_their_place() -> None:
    conn, transport = server_connection()
    big = os.urandom(300_000)
    await conn.send("a")
    await conn.send(b"b")
    await conn.send(big)
    await conn.send("c")
    closing = asyncio.ensure_future(conn.close(1001, "bye"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    peer = Protocol(True)
    assert peer.receive_data(b"".join(transport.writes)) == ["a", b"b", big, "c"]
    assert peer.close_code == 1001
    # The peer answers; the server closes TCP only after everything was written.
    conn._data_received(encode_frame(CLOSE, struct.pack("!H", 1001), mask=b"abcd"))
    assert transport.closing
    conn._connection_lost(None)
    await closing


async def test_received_data_ends_the_burst() -> None:
    """Request/response: every answer goes out at once, nothing waits a loop turn."""
    conn, transport = server_connection()
    for i in range(3):
        conn._data_received(encode_frame(TEXT, b"ping", mask=b"abcd"))
        assert await conn.receive() == "ping"
        before = len(transport.writes)
        await conn.send(f"pong {i}")
        assert len(transport.writes) == before + 1
    assert read_back(transport.writes) == ["pong 0", "pong 1", "pong 2"]


async def test_failing_flushes_what_was_sent_before_closing() -> None:
    conn, transport = server_connection()
    await conn.send("first")
    await conn.send("second")  # coalesced
    conn._data_received(encode_frame(0x3, b"bad opcode", mask=b"abcd"))
    assert transport.closing
    peer = Protocol(True)
    assert peer.receive_data(b"".join(transport.writes)) == ["first", "second"]
    assert peer.close_code == 1002
    conn._connection_lost(None)


async def test_nagle_is_off_on_sockets_asyncio_leaves_alone() -> None:
    """``serve(sock=...)`` with a ``socket.create_server()`` socket: proto 0, which
    asyncio does not treat as TCP; the engine sets ``TCP_NODELAY`` itself."""
    import socket

    import simple_websocket

    sock = socket.create_server(("127.0.0.1", 0))
    assert sock.proto == 0
    seen: dict[str, int] = {}

    async def handler(ws: Any) -> None:
        raw = ws.transport.get_extra_info("socket")
        seen["nodelay"] = raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await ws.send(await ws.receive())

    async with simple_websocket.serve(handler, sock=sock):
        port = sock.getsockname()[1]
        ws = await simple_websocket.AioClient.connect(f"ws://127.0.0.1:{port}/")
        await ws.send("hi")
        assert await ws.receive() == "hi"
        await ws.close()
    assert seen["nodelay"] == 1


@pytest.mark.parametrize("read_size", [1, 3, 5, 4099])
def test_wsproto_path_unmasks_fragments_read_in_odd_pieces(read_size: int) -> None:
    """Fragments go through wsproto's decoder, whose payloads are unmasked piece by
    piece as they arrive: the key must carry on across pieces and frames."""
    rng = random.Random(read_size)
    payload = rng.randbytes(10_001)
    stream = b"".join(
        frame(False, BINARY if i == 0 else CONT, payload[i : i + 3001], fin=i + 3001 >= 10_001)
        for i in range(0, 10_001, 3001)
    )
    for options in ({}, {"max_message_size": 20_000}):
        proto = Protocol(False, **options)
        received: list[str | bytes] = []
        for chunk in cut(stream, range(0, len(stream), read_size)):
            received += proto.receive_data(chunk)
        assert received == [payload]
        assert not proto.failed


def test_the_environment_turns_every_c_path_off() -> None:
    """``SIMPLE_WEBSOCKET_NO_EXTENSIONS=1`` at run time: masking, the small-frame
    parser and the frame builder are all the Python ones, and a connection works."""
    code = (
        "from simple_websocket.sansio import framing\n"
        "from simple_websocket.sansio.protocol import Protocol\n"
        "assert not framing.SPEEDUPS\n"
        "assert framing._parse_small is None and framing._build_frame is None\n"
        "assert framing.C_READER is None\n"
        "assert framing._apply_mask is framing._py_apply_mask\n"
        "client, server = Protocol(True, ()), Protocol(False, ())\n"
        "assert server.receive_data(client.send('é' * 40)) == ['é' * 40]\n"
    )
    env = {**os.environ, "SIMPLE_WEBSOCKET_NO_EXTENSIONS": "1"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)
    if MASKERS["c"][0] is not None:
        env.pop("SIMPLE_WEBSOCKET_NO_EXTENSIONS")
        code = (
            "from simple_websocket.sansio import framing\n"
            "assert framing.SPEEDUPS and framing._parse_small is not None\n"
            "assert framing.C_READER is not None\n"
            "assert framing._build_frame is not None\n"
        )
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)
