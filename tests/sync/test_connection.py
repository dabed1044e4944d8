"""The threaded engine, byte by byte: our sync ``Client`` against a hand-built server.

The peer (``tests.sync.SyncPeer``) writes and parses every frame itself, so close
codes, masking and the closing handshake are checked on the wire.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from simple_websocket import ConnectionClosed
from simple_websocket.ws import Client
from tests.sync import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    RawServer,
    SyncPeer,
    close_payload,
    encode_frame,
    raw_server,
    run_in_thread,
)

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def server() -> Iterator[RawServer]:
    with raw_server() as srv:
        yield srv


def open_pair(server: RawServer, **options: Any) -> tuple[SyncPeer, Client]:
    peer, ws = server.connect(lambda: Client.connect(server.url, **options))
    return peer, ws


def close_pair(peer: SyncPeer, ws: Client) -> None:
    """Close from the client and complete the closing handshake as a server does."""
    thread = run_in_thread(ws.close)
    frame = peer.expect_close()
    peer.send(CLOSE, frame.payload)
    peer.sock.shutdown(socket.SHUT_WR)
    thread.join(5)
    assert not thread.is_alive()
    peer.expect_eof()


# -- messages ------------------------------------------------------------------------


def test_text_and_binary_both_ways(server: RawServer) -> None:
    peer, ws = open_pair(server, compression=False)
    ws.send("héllo")
    ws.send(b"\x00\x01")
    ws.send(bytearray(b"ba"))
    ws.send(memoryview(b"mv"))
    ws.send(42)
    frames = [peer.recv_frame() for _ in range(5)]
    assert [(f.opcode, f.payload) for f in frames] == [
        (TEXT, "héllo".encode()),
        (BINARY, b"\x00\x01"),
        (BINARY, b"ba"),
        (BINARY, b"mv"),
        (TEXT, b"42"),
    ]
    assert all(f.masked for f in frames)
    peer.send_text("réponse")
    peer.send(BINARY, b"\xff")
    assert ws.receive(timeout=5) == "réponse"
    assert ws.receive(timeout=5) == b"\xff"
    peer.send_close(1000)
    peer.expect_close()
    peer.sock.shutdown(socket.SHUT_WR)
    ws.close()
    peer.expect_eof()


def test_fragmented_message_with_ping_in_between(server: RawServer) -> None:
    peer, ws = open_pair(server)
    peer.send(TEXT, b"hel", fin=False)
    peer.send(PING, b"p1")
    peer.send(CONT, b"lo", fin=False)
    peer.send(CONT, b"!", fin=True)
    pong = peer.recv_frame()
    assert (pong.opcode, pong.payload) == (PONG, b"p1")
    assert ws.receive(timeout=5) == "hello!"
    close_pair(peer, ws)


def test_frames_glued_to_the_101_are_not_lost() -> None:
    glued = encode_frame(TEXT, b"first") + encode_frame(TEXT, b"second")
    with raw_server(after_101=glued) as server:
        peer, ws = open_pair(server)
        assert ws.receive(timeout=5) == "first"
        assert ws.receive(timeout=5) == "second"
        close_pair(peer, ws)


def test_receive_timeout_none_zero_and_positive(server: RawServer) -> None:
    peer, ws = open_pair(server)
    assert ws.receive(timeout=0) is None
    start = time.monotonic()
    assert ws.receive(timeout=0.05) is None
    assert time.monotonic() - start >= 0.04
    got: list[Any] = []
    thread = run_in_thread(lambda: got.append(ws.receive()))
    peer.send_text("late")
    thread.join(5)
    assert got == ["late"]
    peer.send_text("buffered")
    peer.barrier()
    assert ws.receive(timeout=0) == "buffered"
    close_pair(peer, ws)


# -- closing -------------------------------------------------------------------------


def test_peer_close_is_answered_with_the_same_code(server: RawServer) -> None:
    peer, ws = open_pair(server)
    peer.send_close(1001, "bye")
    answer = peer.expect_close()
    assert answer.masked
    assert (answer.close_code, answer.close_reason) == (1001, "bye")
    with pytest.raises(ConnectionClosed) as info:
        ws.receive(timeout=5)
    assert (info.value.reason, info.value.message) == (1001, "bye")
    assert (ws.close_reason, ws.close_message) == (1001, "bye")
    assert not ws.connected
    # RFC 6455 7.1.1: the server closes TCP first; the client follows.
    peer.sock.shutdown(socket.SHUT_WR)
    peer.expect_eof()
    assert ws.wait_closed(5)


def test_close_sends_a_masked_close_frame_and_waits_for_the_answer(
    server: RawServer,
) -> None:
    peer, ws = open_pair(server)
    done = threading.Event()

    def close() -> None:
        ws.close(4000, "done")
        done.set()

    thread = run_in_thread(close)
    frame = peer.expect_close()
    assert frame.masked
    assert (frame.close_code, frame.close_reason) == (4000, "done")
    assert not done.is_set()
    peer.send(CLOSE, frame.payload)
    peer.sock.shutdown(socket.SHUT_WR)
    thread.join(5)
    assert done.is_set()
    assert ws.close_reason == 4000
    peer.expect_eof()


def test_close_gives_up_after_close_timeout(server: RawServer) -> None:
    peer, ws = open_pair(server, close_timeout=0.2)
    start = time.monotonic()
    ws.close()
    elapsed = time.monotonic() - start
    assert 0.15 <= elapsed < 2.0
    peer.expect_close()
    peer.expect_eof()
    assert ws.close_reason == 1006
    with pytest.raises(ConnectionClosed):
        ws.receive()


def test_close_is_idempotent_and_send_after_close_raises(server: RawServer) -> None:
    peer, ws = open_pair(server)
    thread = run_in_thread(ws.close)
    peer.expect_close()
    peer.send_close(1000)
    peer.sock.shutdown(socket.SHUT_WR)
    thread.join(5)
    ws.close()
    ws.close(1011)
    with pytest.raises(ConnectionClosed) as info:
        ws.send("late")
    assert info.value.reason == 1000
    peer.expect_eof()


def test_messages_buffered_before_the_close_are_delivered_first(server: RawServer) -> None:
    peer, ws = open_pair(server)
    peer.write(
        peer.frame(TEXT, b"1")
        + peer.frame(TEXT, b"2")
        + peer.frame(TEXT, b"3")
        + peer.frame(CLOSE, close_payload(1000))
    )
    peer.expect_close()
    assert [ws.receive(timeout=5) for _ in range(3)] == ["1", "2", "3"]
    with pytest.raises(ConnectionClosed):
        ws.receive(timeout=5)


def test_connection_lost_without_close_frame_is_1006(server: RawServer) -> None:
    peer, ws = open_pair(server)
    peer.send_text("last")
    peer.close()
    assert ws.receive(timeout=5) == "last"
    with pytest.raises(ConnectionClosed) as info:
        ws.receive(timeout=5)
    assert info.value.reason == 1006
    assert ws.close_reason == 1006
    ws.close()


def test_iteration_ends_quietly_on_1001_and_raises_on_1011(server: RawServer) -> None:
    peer, ws = open_pair(server)
    peer.send_text("a")
    peer.send_close(1001)
    assert list(ws) == ["a"]
    peer2, ws2 = open_pair(server)
    peer2.send_text("b")
    peer2.send_close(1011, "oops")
    received = []
    with pytest.raises(ConnectionClosed) as info:
        for message in ws2:
            received.append(message)
    assert received == ["b"]
    assert info.value.reason == 1011


def test_with_block_closes_1000_or_1011(server: RawServer) -> None:
    peer, ws = open_pair(server)

    def block() -> None:
        with ws:
            ws.send("x")

    thread = run_in_thread(block)
    assert peer.recv_frame().payload == b"x"
    frame = peer.expect_close()
    assert frame.close_code == 1000
    peer.send(CLOSE, frame.payload)
    peer.sock.shutdown(socket.SHUT_WR)
    thread.join(5)
    assert not thread.is_alive() and thread.error is None  # type: ignore[attr-defined]

    peer2, ws2 = open_pair(server)

    def failing_block() -> None:
        with ws2:
            raise ZeroDivisionError

    thread = run_in_thread(failing_block)
    frame = peer2.expect_close()
    assert (frame.close_code, frame.close_reason) == (1011, "Unexpected error")
    peer2.send(CLOSE, frame.payload)
    peer2.sock.shutdown(socket.SHUT_WR)
    thread.join(5)
    assert isinstance(thread.error, ZeroDivisionError)  # type: ignore[attr-defined]


# -- protocol errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        # A server must not mask its frames.
        (encode_frame(TEXT, b"masked", mask=b"abcd"), 1002),
        # Reserved opcode.
        (encode_frame(0x3, b""), 1002),
        # Invalid UTF-8 in a text message.
        (encode_frame(TEXT, b"\xff\xfe"), 1007),
        # Control frame longer than 125 bytes.
        (encode_frame(PING, b"x" * 126), 1002),
    ],
)
def test_protocol_errors_fail_with_the_right_code(
    server: RawServer, frame: bytes, code: int
) -> None:
    peer, ws = open_pair(server)
    peer.write(frame)
    close = peer.expect_close()
    assert close.close_code == code
    # A failed connection is closed at once, by the client too.
    peer.expect_eof()
    with pytest.raises(ConnectionClosed) as info:
        ws.receive(timeout=5)
    assert info.value.reason == code
    ws.close()


def test_message_too_big_fails_with_1009(server: RawServer) -> None:
    peer, ws = open_pair(server, max_message_size=10)
    peer.send_text("small")
    peer.send(TEXT, b"x" * 11)
    assert peer.expect_close().close_code == 1009
    assert ws.receive(timeout=5) == "small"
    with pytest.raises(ConnectionClosed) as info:
        ws.receive(timeout=5)
    assert info.value.reason == 1009


# -- keepalive -----------------------------------------------------------------------


def test_keepalive_pings_and_ping_timeout(server: RawServer) -> None:
    peer, ws = open_pair(server, ping_interval=0.05, ping_timeout=0.3)
    # Pings arrive and are answered: the connection stays open.
    for _ in range(3):
        frame = peer.recv_frame()
        assert frame.opcode == PING
        peer.send(PONG, frame.payload)
    assert ws.connected
    # Pings left unanswered fail the connection with 1011.
    while True:
        frame = peer.recv_frame()
        if frame.opcode == CLOSE:
            break
        assert frame.opcode == PING
    assert (frame.close_code, frame.close_reason) == (1011, "keepalive ping timeout")
    with pytest.raises(ConnectionClosed) as info:
        ws.receive(timeout=5)
    assert info.value.reason == 1011


def test_ping_returns_the_round_trip_time(server: RawServer) -> None:
    peer, ws = open_pair(server)
    result: list[float] = []
    thread = run_in_thread(lambda: result.append(ws.ping(b"rtt")))
    frame = peer.recv_frame()
    assert (frame.opcode, frame.payload) == (PING, b"rtt")
    peer.send(PONG, b"rtt")
    thread.join(5)
    assert result and result[0] >= 0
    assert ws.latency is not None
    close_pair(peer, ws)


# -- backpressure --------------------------------------------------------------------


def test_reader_stops_reading_when_max_queue_messages_are_unread(server: RawServer) -> None:
    peer, ws = open_pair(server, max_queue=2, compression=False)
    assert ws.sock is not None
    chunk = peer.frame(BINARY, b"x" * 65536)
    peer.sock.settimeout(0.5)
    sent = 0
    # Without backpressure the client would read all of it (64 MiB).
    with pytest.raises(TimeoutError):
        while sent < 1024:
            peer.sock.sendall(chunk)
            sent += 1
    assert sent < 1024
    assert len(ws._inbox.messages) == 2
    # Receiving resumes reading: every message sent arrives.
    peer.sock.settimeout(5)
    received = 0
    while received < sent:
        assert ws.receive(timeout=5) == b"x" * 65536
        received += 1
    close_pair(peer, ws)


def test_concurrent_senders_keep_messages_whole() -> None:
    # Compressed: frames written out of the order the compressor made them in
    # would not decompress.
    with raw_server(deflate=True) as server:
        _concurrent_senders(server)


def _concurrent_senders(server: RawServer) -> None:
    peer, ws = open_pair(server)
    payloads = {f"{n}-" + "y" * (1000 + n) for n in range(40)}

    def sender(items: list[str]) -> None:
        for item in items:
            ws.send(item)

    items = sorted(payloads)
    threads = [run_in_thread(lambda part=items[i::4]: sender(part)) for i in range(4)]
    received = set()
    while len(received) < len(payloads):
        frame = peer.recv_frame()
        received.add(frame.payload.decode())
    for thread in threads:
        thread.join(5)
    assert received == payloads
    close_pair(peer, ws)


# -- injection -----------------------------------------------------------------------


def test_thread_and_event_classes_are_injectable(server: RawServer) -> None:
    created: list[str] = []

    class MyThread(threading.Thread):
        def __init__(self, target: Any) -> None:
            created.append("thread")
            super().__init__(target=target, daemon=True)

    def my_event() -> threading.Event:
        created.append("event")
        return threading.Event()

    peer, ws = open_pair(server, thread_class=MyThread, event_class=my_event)
    assert isinstance(ws.thread, MyThread)
    assert created.count("thread") == 1
    assert created.count("event") >= 1
    peer.send_text("hi")
    assert ws.receive(timeout=5) == "hi"
    thread = run_in_thread(ws.close)
    peer.expect_close()
    peer.send_close(1000)
    peer.close()
    thread.join(5)
    ws.thread.join(5)
    assert not ws.thread.is_alive()
