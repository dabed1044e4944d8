"""The connection rules of ``sansio/session.py``, with a fake clock: no loop, no threads."""

from __future__ import annotations

import struct

import pytest

from simple_websocket.errors import ConnectionClosed
from simple_websocket.sansio.protocol import Protocol, State
from simple_websocket.sansio.session import (
    ABORT,
    CLOSE_TRANSPORT,
    CLOSED,
    MESSAGES,
    PAUSE,
    PONG,
    PONG_HELD,
    WRITE,
    Inbox,
    Session,
    too_big,
)

from ..asyncio.rawpeer import BINARY, CLOSE, PING, TEXT, encode_frame
from ..asyncio.rawpeer import PONG as PONG_OP

KEY = b"\x01\x02\x03\x04"


class Clock:
    """A clock that only moves when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def peer(opcode: int, payload: bytes = b"", client: bool = False) -> bytes:
    """A frame as the peer of a server (masked) or of a client (unmasked) sends it."""
    return encode_frame(opcode, payload, mask=None if client else KEY)


def opcodes(data: bytes) -> list[int]:
    """The opcodes of the unmasked frames (sent by a server session) in ``data``."""
    ops = []
    while data:
        ops.append(data[0] & 0x0F)
        n = data[1] & 0x7F
        head = 2 if n < 126 else 4 if n == 126 else 10
        if n >= 126:
            n = int.from_bytes(data[2:head], "big")
        data = data[head + n :]
    return ops


def session(
    client: bool = False,
    max_queue: int = 4,
    ping_interval: float | None = None,
    ping_timeout: float | None = None,
    close_timeout: float = 5.0,
) -> tuple[Session, Clock]:
    clock = Clock()
    proto = Protocol(client, clock=clock)
    s = Session(
        proto,
        Inbox(max_queue),
        clock,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
    )
    return s, clock


# -- the inbox ------------------------------------------------------------------------


def test_inbox_pauses_at_the_high_water_mark_and_resumes_at_a_quarter() -> None:
    inbox = Inbox(8)
    assert inbox.room() == 8
    assert not inbox.put(["a"] * 7)
    assert inbox.room() == 1
    assert inbox.put(["b"])  # full: pause now
    assert inbox.paused and inbox.room() == 1  # never 0: one message at a time
    assert not inbox.put(["c"])  # already paused
    taken = [inbox.take() for _ in range(6)]
    assert taken == ["a"] * 6 and inbox.paused and not inbox.resumed
    inbox.take()  # 2 left: a quarter of 8
    assert not inbox.paused and inbox.resumed


def test_inbox_after_close_never_pauses_and_has_no_limit() -> None:
    inbox = Inbox(2)
    assert inbox.put(["a", "b"])
    inbox.close_requested()
    assert not inbox.paused and inbox.resumed
    assert inbox.room() is None
    assert not inbox.put(["c"] * 10)


def test_inbox_finishes_once_and_says_how() -> None:
    inbox = Inbox()
    assert inbox.closed_error().reason == 1005
    assert inbox.finish(1001, "bye")
    assert not inbox.finish(1006, None)
    error = inbox.closed_error()
    assert (error.reason, error.message) == (1001, "bye")


@pytest.mark.parametrize(
    ("code", "close_called", "quiet"),
    [(1000, False, True), (1001, False, True), (1006, False, False), (1011, True, True)],
)
def test_iteration_ends_quietly_on_a_normal_close(
    code: int, close_called: bool, quiet: bool
) -> None:
    inbox = Inbox()
    inbox.close_called = close_called
    assert inbox.ends_iteration(ConnectionClosed(code)) is quiet


def test_inbox_needs_room_for_one_message() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        Inbox(0)


def test_too_big_counts_utf8_bytes() -> None:
    assert not too_big("é" * 5, None)
    assert not too_big("é" * 5, 10)
    assert too_big("é" * 6, 11)
    assert too_big(b"x" * 12, 11)


# -- receiving ------------------------------------------------------------------------


def test_a_read_without_a_complete_message_is_no_step() -> None:
    s, _ = session()
    frame = peer(TEXT, b"hello")
    assert s.feed(frame[:3]) == 0
    assert s.feed(frame[3:]) == MESSAGES
    assert list(s.inbox.messages) == ["hello"]


def test_feeding_stops_at_the_inbox_room_and_resumes_later() -> None:
    s, _ = session(max_queue=4)
    data = b"".join(peer(TEXT, str(i).encode()) for i in range(10))
    assert s.feed(data) == MESSAGES | PAUSE
    assert list(s.inbox.messages) == ["0", "1", "2", "3"]
    assert s.protocol.stalled
    while s.inbox.messages:
        s.inbox.take()
    assert s.inbox.resumed
    assert s.resume() == MESSAGES | PAUSE
    assert list(s.inbox.messages) == ["4", "5", "6", "7"]


def test_pings_are_answered_and_pongs_reported() -> None:
    s, _ = session()
    assert s.feed(peer(PING, b"p")) == WRITE
    assert opcodes(s.output) == [PONG_OP]
    payload, frame = s.ping()
    assert opcodes(frame) == [PING]
    assert s.ping_pending(payload)
    assert s.feed(peer(PONG_OP, payload)) == PONG
    assert not s.ping_pending(payload)


def test_pongs_are_held_while_writing_is_blocked() -> None:
    s, _ = session()
    assert s.feed(peer(PING, b"1") + peer(PING, b"2"), write_blocked=True) == PONG_HELD
    assert s.release_pong() == WRITE
    assert s.output == encode_frame(PONG_OP, b"2")  # only the most recent one


def test_peer_close_on_the_server_closes_the_transport() -> None:
    s, clock = session(close_timeout=5.0)
    flags = s.feed(peer(TEXT, b"last") + peer(CLOSE, struct.pack("!H", 1001) + b"bye"))
    assert flags == MESSAGES | WRITE | CLOSED | CLOSE_TRANSPORT
    assert opcodes(s.output) == [CLOSE]
    assert s.inbox.finished and s.inbox.close_code == 1001
    assert list(s.inbox.messages) == ["last"]  # delivered before the end
    assert s.deadline() == clock.now + 5.0
    error = s.send_error()
    assert (error.reason, error.message) == (1001, "bye")


def test_peer_close_on_the_client_waits_for_the_server_to_close_tcp() -> None:
    s, clock = session(client=True, close_timeout=2.0)
    assert s.feed(peer(CLOSE, struct.pack("!H", 1000), client=True)) == WRITE | CLOSED
    assert s.tick() == 0
    clock.now += 2.0
    assert s.tick() == ABORT


def test_protocol_errors_close_the_transport_on_both_sides() -> None:
    s, _ = session(client=True)
    flags = s.feed(encode_frame(0x3, b"", mask=None))  # reserved opcode
    assert flags == WRITE | CLOSED | CLOSE_TRANSPORT
    assert s.inbox.close_code == 1002


def test_lost_connection_delivers_what_arrived_then_1006() -> None:
    s, _ = session(max_queue=1)
    assert s.feed(peer(TEXT, b"a") + peer(TEXT, b"b")) == MESSAGES | PAUSE
    assert s.lost() == MESSAGES | CLOSED | CLOSE_TRANSPORT
    assert list(s.inbox.messages) == ["a", "b"]
    assert s.inbox.close_code == 1006
    assert s.lost() == 0


def test_send_error_while_open_after_a_write_failure() -> None:
    s, _ = session()
    assert s.send_error(lost=True).reason == 1006
    assert s.send_error().reason == 1005


# -- closing --------------------------------------------------------------------------


def test_close_sends_a_frame_and_sets_the_deadline() -> None:
    s, clock = session(close_timeout=3.0)
    assert s.close(1000, "done") == WRITE
    assert opcodes(s.output) == [CLOSE]
    assert s.protocol.state is State.CLOSING
    assert s.deadline() == clock.now + 3.0
    assert s.close(1000, None) == 0  # once
    clock.now += 1.0
    assert s.feed(peer(CLOSE, struct.pack("!H", 1000))) == CLOSED | CLOSE_TRANSPORT
    assert s.deadline() == clock.now + 2.0  # the first deadline stands
    clock.now += 2.0
    assert s.tick() == ABORT


def test_close_first_parses_what_waited_while_paused() -> None:
    s, _ = session(max_queue=1)
    data = peer(TEXT, b"a") + peer(TEXT, b"b") + peer(CLOSE, struct.pack("!H", 1000))
    assert s.feed(data) == MESSAGES | PAUSE
    # The peer's close frame waits behind "b": close() finds it, no frame of ours.
    flags = s.close(1000, None)
    assert flags == MESSAGES | WRITE | CLOSED | CLOSE_TRANSPORT
    assert s.inbox.resumed
    assert list(s.inbox.messages) == ["a", "b"]


# -- keepalive ------------------------------------------------------------------------


def test_keepalive_pings_on_time_and_fails_without_pongs() -> None:
    s, clock = session(ping_interval=10.0, ping_timeout=4.0)
    start = clock.now
    assert s.deadline() == start + 10.0
    clock.now = start + 9.5
    assert s.tick() == 0
    clock.now = start + 10.0 - 1e-10  # a timer may fire this early
    assert s.tick() == WRITE
    assert opcodes(s.output) == [PING]
    assert s.deadline() == clock.now + 4.0  # the pong is due before the next ping
    clock.now += 4.0
    assert s.tick() == WRITE | CLOSED | CLOSE_TRANSPORT
    assert opcodes(s.output) == [CLOSE]
    assert (s.inbox.close_code, s.inbox.close_reason) == (1011, "keepalive ping timeout")


def test_keepalive_goes_on_while_pongs_come() -> None:
    s, clock = session(ping_interval=10.0)
    for _ in range(5):
        clock.now = s.deadline() or 0.0
        assert s.tick() == WRITE
        payload = s.output[2:]  # an unmasked ping frame (server side)
        clock.now += 1.0
        assert s.feed(peer(PONG_OP, payload)) == PONG
    assert s.protocol.state is State.OPEN
    assert s.protocol.latency == 1.0


def test_without_ping_timeout_the_pong_is_due_at_the_next_ping() -> None:
    s, clock = session(ping_interval=10.0)
    clock.now = s.deadline() or 0.0
    assert s.tick() == WRITE
    assert s.deadline() == clock.now + 10.0
    clock.now += 10.0
    assert s.tick() & CLOSED


def test_no_timer_without_keepalive_or_closing() -> None:
    s, _ = session()
    assert s.deadline() is None
    assert s.tick() == 0


def test_keepalive_stops_once_closing() -> None:
    s, clock = session(ping_interval=1.0, close_timeout=30.0)
    s.close(1000, None)
    assert s.deadline() == clock.now + 30.0
    clock.now += 5.0
    assert s.tick() == 0


def test_ping_on_a_closed_session_raises() -> None:
    s, _ = session()
    s.feed(peer(CLOSE, struct.pack("!H", 1000)))
    with pytest.raises(ConnectionClosed):
        s.ping()


def test_messages_of_both_kinds() -> None:
    s, _ = session()
    assert s.feed(peer(BINARY, b"\x00") + peer(TEXT, "é".encode())) == MESSAGES
    assert list(s.inbox.messages) == [b"\x00", "é"]
