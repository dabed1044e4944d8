"""``sansio/framing.py``: close codes, close payloads, control frames, UTF-8 prefixes."""

from __future__ import annotations

import codecs

import pytest

from simple_websocket.sansio.framing import (
    CloseCode,
    check_close_code,
    close_payload,
    control_frame,
    rotate,
    surrogate_pending,
    too_big_reason,
    valid_close_code,
)

from ..asyncio.rawpeer import PING, apply_mask


def test_close_code_is_our_own_int_enum() -> None:
    assert CloseCode.__module__ == "simple_websocket.sansio.framing"
    assert CloseCode(1014) is CloseCode.BAD_GATEWAY
    assert CloseCode(1000) == 1000 and isinstance(CloseCode.NORMAL_CLOSURE, int)
    app = CloseCode(4001)
    assert app == 4001 and app.name == "CODE_4001"
    assert CloseCode(4001) is app
    assert CloseCode(3000).value == 3000
    for bad in (999, 1004, 2999, 5000):
        with pytest.raises(ValueError):
            CloseCode(bad)


@pytest.mark.parametrize("code", [1000, 1003, 1007, 1014, 3000, 4999])
def test_close_codes_that_may_be_sent(code: int) -> None:
    assert valid_close_code(code)
    assert check_close_code(code) == code


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_close_codes_that_may_not_be_sent(code: int) -> None:
    assert not valid_close_code(code)
    with pytest.raises(ValueError, match=str(code)):
        check_close_code(code)


def test_no_code_means_a_normal_closure() -> None:
    assert check_close_code(None) == 1000


def test_close_payloads() -> None:
    assert close_payload(None, "ignored") == b""
    assert close_payload(1005, None) == b""
    assert close_payload(1000, None) == b"\x03\xe8"
    assert close_payload(4001, "é") == b"\x0f\xa1" + "é".encode()
    # 123 bytes of reason at most, never half a character.
    assert close_payload(1000, "x" * 200)[2:] == b"x" * 123
    assert close_payload(1000, "€" * 50)[2:] == "€".encode() * 41


def test_control_frames_masked_or_not() -> None:
    assert control_frame(PING, b"hi", None) == b"\x89\x02hi"
    key = b"\x01\x02\x03\x04"
    assert control_frame(PING, b"hi", key) == b"\x89\x82" + key + apply_mask(key, b"hi")


def test_rotate_continues_the_key_where_the_payload_goes_on() -> None:
    key = b"abcd"
    assert rotate(key, 0) is key
    assert rotate(key, 1) == b"bcda"
    assert rotate(key, 6) == b"cdab"


@pytest.mark.parametrize(
    ("data", "fails"),
    [(b"ab\xed\xa0", True), (b"\xed\xbf", True), (b"\xed\x9f", False), (b"\xed", False)],
)
def test_surrogate_prefixes_are_noticed(data: bytes, fails: bool) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    decoder.decode(data, False)  # the decoder itself accepts all of these for now
    reason = surrogate_pending(decoder)
    assert (reason is not None) is fails
    if reason is not None:
        assert "0xed" in reason


def test_too_big_reason() -> None:
    assert too_big_reason(1000) == "Message larger than 1000 bytes"
