"""Pongs held back while the I/O layer cannot write (``Protocol.defer_pongs``)."""

from __future__ import annotations

import pytest

from simple_websocket.sansio.protocol import Protocol

from ..asyncio.rawpeer import PING, PONG, TEXT, encode_frame


def ping(payload: bytes) -> bytes:
    """A ping as a client sends it to a server-side protocol."""
    return encode_frame(PING, payload, mask=b"abcd")


def pong_frame(payload: bytes) -> bytes:
    """The pong a server-side protocol writes (unmasked)."""
    return encode_frame(PONG, payload)


def test_pings_are_answered_at_once_by_default() -> None:
    proto = Protocol(False)
    proto.receive_data(ping(b"1") + ping(b"2"))
    assert proto.data_to_send() == pong_frame(b"1") + pong_frame(b"2")
    assert not proto.pong_held


def test_only_the_latest_ping_is_answered_while_deferred() -> None:
    proto = Protocol(False)
    proto.defer_pongs = True
    proto.receive_data(ping(b"1") + ping(b"2"))
    proto.receive_data(ping(b"3"))
    assert proto.data_to_send() == b""
    assert proto.pong_held
    proto.defer_pongs = False
    assert proto.data_to_send() == pong_frame(b"3")
    assert not proto.pong_held
    assert proto.data_to_send() == b""


def test_messages_still_arrive_while_pongs_are_deferred() -> None:
    proto = Protocol(False)
    proto.defer_pongs = True
    data = ping(b"p") + encode_frame(TEXT, b"hello", mask=b"wxyz")
    assert proto.receive_data(data) == ["hello"]


def test_held_pong_goes_before_our_close_frame() -> None:
    proto = Protocol(False)
    proto.defer_pongs = True
    proto.receive_data(ping(b"p"))
    frame = proto.close(1000)
    assert frame.startswith(pong_frame(b"p"))
    assert frame[len(pong_frame(b"p")) :][:1] == b"\x88"
    assert not proto.pong_held


@pytest.mark.parametrize("how", ["fail", "peer-close"])
def test_held_pong_goes_before_a_close_frame_we_queue(how: str) -> None:
    proto = Protocol(False)
    proto.defer_pongs = True
    proto.receive_data(ping(b"p"))
    if how == "fail":
        proto.fail(1008, "policy")
    else:
        proto.receive_data(encode_frame(0x8, b"\x03\xe8", mask=b"abcd"))
    out = proto.data_to_send()
    assert out.startswith(pong_frame(b"p"))
    assert out[len(pong_frame(b"p")) :][:1] == b"\x88"
