"""The permessage-deflate extension: bounded inflating, control frames between fragments."""

import os
import struct
import tracemalloc
import zlib

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping

from simple_websocket.sansio.deflate import Deflate


def enabled(max_size=None):
    ext = Deflate(max_size=max_size)
    ext.accept("permessage-deflate")
    return ext


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def frame(opcode: int, payload: bytes, *, fin=True, rsv1=False) -> bytes:
    """A masked (client to server) frame."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def events(ext, data):
    conn = Connection(ConnectionType.SERVER, [ext])
    conn.receive_data(data)
    return list(conn.events())


def message(evts):
    return b"".join(bytes(e.data) for e in evts if isinstance(e, BytesMessage))


def test_compressed_message_round_trip():
    payload = os.urandom(100) * 50
    assert message(events(enabled(), frame(0x2, deflate(payload), rsv1=True))) == payload


def test_ping_between_fragments_keeps_the_message_compressed():
    payload = b"abc" * 2000
    compressed = deflate(payload)
    half = len(compressed) // 2
    data = (
        frame(0x2, compressed[:half], fin=False, rsv1=True)
        + frame(0x9, b"ping")
        + frame(0x0, compressed[half:])
    )
    evts = events(enabled(), data)
    assert any(isinstance(e, Ping) for e in evts)
    assert message(evts) == payload


def test_zip_bomb_is_refused_with_1009_without_inflating_it():
    bomb = deflate(b"\0" * (50 * 1024 * 1024))  # 50 MiB inflated, ~50 KiB on the wire
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        evts = events(enabled(max_size=1024 * 1024), frame(0x2, bomb, rsv1=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    closes = [e for e in evts if isinstance(e, CloseConnection)]
    assert closes and closes[0].code == 1009
    assert peak < 8 * 1024 * 1024, peak  # far below the 50 MiB it would inflate to


def test_limit_counts_every_fragment_and_resets_between_messages():
    ext = enabled(max_size=1000)
    ok = deflate(b"x" * 1000)
    conn = Connection(ConnectionType.SERVER, [ext])
    conn.receive_data(frame(0x2, ok, rsv1=True) + frame(0x2, deflate(b"y" * 1000), rsv1=True))
    assert [len(bytes(e.data)) for e in conn.events() if isinstance(e, BytesMessage)] == [
        1000,
        1000,
    ]
    too_big = deflate(b"z" * 1001)
    evts = events(
        enabled(max_size=1000),
        frame(0x2, too_big[:5], fin=False, rsv1=True) + frame(0x0, too_big[5:]),
    )
    assert [e.code for e in evts if isinstance(e, CloseConnection)] == [1009]


def test_compressed_control_frame_is_a_protocol_error():
    evts = events(enabled(), frame(0x9, b"p", rsv1=True))
    assert [e.code for e in evts if isinstance(e, CloseConnection)] == [1002]


# -- whole messages: compress_message / inflate_message ----------------------------------


def test_whole_message_bomb_is_refused_with_1009_without_inflating_it():
    bomb = deflate(b"\0" * (50 * 1024 * 1024))
    ext = enabled(max_size=1024 * 1024)
    tracemalloc.start()
    try:
        result = ext.inflate_message(False, bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result == 1009
    assert peak < 8 * 1024 * 1024, peak


def test_whole_message_limits_match_the_per_frame_hooks():
    for size in (999, 1000, 1001):
        data = deflate(b"q" * size)
        whole = enabled(max_size=1000).inflate_message(False, data)
        hooks = events(enabled(max_size=1000), frame(0x2, data, rsv1=True))
        closes = [e.code for e in hooks if isinstance(e, CloseConnection)]
        if size <= 1000:
            assert whole == b"q" * size and not closes
        else:
            assert whole == 1009 and closes == [1009]


def test_whole_message_invalid_data_is_1007():
    assert enabled().inflate_message(False, b"\xff\xff\xff\xff") == 1007


def test_whole_messages_keep_the_context_like_the_hooks():
    """With context takeover the second message refers to the first one's bytes."""
    sender = enabled()
    first = sender.compress_message(True, b"repeat me " * 20)
    second = sender.compress_message(True, b"repeat me " * 20)
    assert len(second) < len(first)  # it points back into the shared window
    receiver = enabled()
    assert receiver.inflate_message(False, first) == b"repeat me " * 20
    assert receiver.inflate_message(False, second) == b"repeat me " * 20
    # The per-frame hooks, fed the same frames, agree.
    evts = events(enabled(), frame(0x2, first, rsv1=True) + frame(0x2, second, rsv1=True))
    assert [bytes(e.data) for e in evts if isinstance(e, BytesMessage)] == [b"repeat me " * 20] * 2


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "wsproto-framing"])
def test_the_compression_state_is_our_own(fast: bool) -> None:
    """Only wsproto's negotiation is used: its private compression state may go."""
    from simple_websocket.sansio.protocol import Protocol

    client_ext, server_ext = Deflate(), Deflate()
    client_ext.finalize(server_ext.accept(client_ext.offer()) or "")
    for ext in (client_ext, server_ext):
        for name in ("_compressor", "_decompressor", "_inbound_compressed"):
            delattr(ext, name)
        delattr(ext, "_inbound_is_compressible")
    client, server = Protocol(True, [client_ext]), Protocol(False, [server_ext])
    client.fast_path = server.fast_path = fast
    for text in ("hello " * 100, "again " * 100):
        frame = client.send(text)
        assert frame[0] & 0x40
        assert server.receive_data(frame[:7]) + server.receive_data(frame[7:]) == [text]
    assert server.receive_data(client.send(b"\x00" * 10_000)) == [b"\x00" * 10_000]
