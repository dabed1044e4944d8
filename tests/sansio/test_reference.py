"""``sansio/reference.py``: data frames through wsproto's public API."""

from __future__ import annotations

from simple_websocket.sansio.framing import OP_BINARY, OP_CONT, OP_TEXT
from simple_websocket.sansio.reference import WsprotoPath

from ..asyncio.rawpeer import encode_frame

KEY = b"\x05\x06\x07\x08"


def feed(path: WsprotoPath, opcode: int, payload: bytes, fin: bool = True) -> list[str | bytes]:
    """Hand one masked frame over as Protocol does: header first, then the payload."""
    frame = encode_frame(opcode, payload, fin=fin, mask=KEY)
    head = frame[: len(frame) - len(payload)]
    messages: list[str | bytes] = []
    path.start(head, opcode, fin, len(payload), KEY, False, messages)
    if payload:
        path.payload(frame[len(head) :], messages)
    return messages


def test_messages_and_fragments() -> None:
    path = WsprotoPath(False, [], None)
    assert feed(path, OP_TEXT, "é".encode()) == ["é"]
    assert feed(path, OP_BINARY, b"ab", fin=False) == []
    assert path.open
    assert feed(path, OP_CONT, b"cd") == [b"abcd"]
    assert not path.open and path.failure is None


def test_invalid_utf8_is_a_failure_with_wsproto_s_reason() -> None:
    path = WsprotoPath(False, [], None)
    feed(path, OP_TEXT, b"ok \xff")
    assert path.failure is not None and path.failure[0] == 1007


def test_a_surrogate_prefix_fails_at_once() -> None:
    path = WsprotoPath(False, [], None)
    assert feed(path, OP_TEXT, b"ok \xed\xa0", fin=False) == []
    assert path.failure is not None and path.failure[0] == 1007


def test_too_big_says_so() -> None:
    path = WsprotoPath(False, [], 4)
    feed(path, OP_TEXT, b"abcdef")
    assert path.failure == (1009, "Message larger than 4 bytes")


def test_frames_we_send_are_wsproto_s() -> None:
    from wsproto.events import TextMessage

    path = WsprotoPath(False, [], None)
    assert path.send(TextMessage(data="hi")) == b"\x81\x02hi"
