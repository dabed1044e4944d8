"""The option checks of sansio/options.py and the deflate settings."""

import logging
import math
import pathlib
from fractions import Fraction

import pytest

from simple_websocket.sansio.limits import UNSET
from simple_websocket.sansio.options import (
    DeflateOptions,
    check_callable,
    check_choice,
    check_compression,
    check_connection_options,
    check_count,
    check_header_value,
    check_instance,
    check_logger,
    check_receive_timeout,
    check_seconds,
    check_subprotocols,
    check_unix_socket,
    describe,
)


@pytest.mark.parametrize("value", [0.5, 1, 10**9, Fraction(1, 2)])
def test_seconds_accepts_positive_numbers_unchanged(value):
    assert check_seconds("t", value) is value


@pytest.mark.parametrize(
    ("value", "options", "error", "message"),
    [
        (None, {"optional": False}, TypeError, "t must be a number of seconds, not NoneType"),
        ("5", {}, TypeError, "t must be a number of seconds or None, not str '5'"),
        (True, {}, TypeError, "not bool True"),
        (b"1", {}, TypeError, "not bytes"),
        (-1, {}, ValueError, "t must be > 0 seconds, not -1"),
        (0, {}, ValueError, "t must be > 0 seconds, not 0"),
        (-0.5, {"zero": True}, ValueError, "t must be >= 0 seconds"),
        (math.inf, {}, ValueError, r"finite number of seconds \(None means no limit\)"),
        (math.nan, {}, ValueError, "finite"),
    ],
)
def test_seconds_refuses(value, options, error, message):
    with pytest.raises(error, match=message):
        check_seconds("t", value, **options)


def test_seconds_optional_and_zero():
    assert check_seconds("t", None) is None
    assert check_seconds("t", 0, zero=True) == 0


def test_receive_timeout_keeps_the_meaning_of_zero_and_below():
    for value in (None, 0, -1, 2.5):
        assert check_receive_timeout(value) == value
    with pytest.raises(TypeError, match="timeout must be a number of seconds or None, not str"):
        check_receive_timeout("5")
    with pytest.raises(ValueError, match="nan"):
        check_receive_timeout(math.nan)


def test_counts():
    assert check_count("n", 1) == 1
    assert check_count("n", 0, minimum=0) == 0
    assert check_count("n", None, optional=True) is None
    with pytest.raises(ValueError, match="n must be at least 1, not 0"):
        check_count("n", 0)
    for bad in (1.0, "1", True, None):
        with pytest.raises(TypeError, match="n must be an int"):
            check_count("n", bad)


def test_choice_callable_and_instance():
    assert check_choice("p", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match="p must be one of 'a', 'b', not 'c'"):
        check_choice("p", "c", ("a", "b"))
    assert check_callable("f", print) is print
    assert check_callable("f", None) is None
    with pytest.raises(TypeError, match="f must be a callable or None, not int 1"):
        check_callable("f", 1)
    with pytest.raises(TypeError, match="f must be a callable, not NoneType"):
        check_callable("f", None, optional=False)
    assert check_instance("x", 1, int, "an int") == 1
    with pytest.raises(TypeError, match="x must be an int or None, not str"):
        check_instance("x", "1", int, "an int")


def test_describe_shortens_long_values():
    assert describe("a" * 100).endswith("...")
    assert len(describe("a" * 100)) < 80
    assert describe(3) == "int 3"


def test_header_values():
    assert check_header_value("user_agent", "bot/1.0 (+https://example.com)") is not None
    assert check_header_value("user_agent", None) is None
    with pytest.raises(ValueError, match="user_agent must not contain control characters"):
        check_header_value("user_agent", "bot\r\nX-Injected: 1")
    with pytest.raises(ValueError, match="Latin-1"):
        check_header_value("origin", "https://\u2603.example")
    with pytest.raises(TypeError, match="origin must be a str or None, not bytes"):
        check_header_value("origin", b"https://example.com")


def test_subprotocols():
    assert check_subprotocols("chat") == ["chat"]
    assert check_subprotocols(("a", "b.v2")) == ["a", "b.v2"]
    assert check_subprotocols(None) == []
    for bad, error in [
        (b"chat", TypeError),
        ({"chat": 1}, TypeError),
        (3, TypeError),
        ([3], TypeError),
        (["a,b"], ValueError),
        (["a b"], ValueError),
        ([""], ValueError),
        (["caf\u00e9"], ValueError),
    ]:
        with pytest.raises(error, match="subprotocols"):
            check_subprotocols(bad)


def test_logger():
    assert check_logger(None) is logging.getLogger("simple_websocket")
    assert check_logger("app.ws") is logging.getLogger("app.ws")
    mine = logging.getLogger("mine")
    assert check_logger(mine) is mine
    adapter = logging.LoggerAdapter(mine, {"conn": 1})
    assert check_logger(adapter) is adapter
    with pytest.raises(TypeError, match=r"logger must be a logging\.Logger"):
        check_logger(print)


def test_unix_socket(tmp_path):
    assert check_unix_socket(None) is None
    assert check_unix_socket(tmp_path / "s") == str(tmp_path / "s")
    assert check_unix_socket(str(tmp_path)) == str(tmp_path)
    assert check_unix_socket(pathlib.PurePosixPath("/run/x.sock")) == "/run/x.sock"
    with pytest.raises(ValueError, match="unix_socket must not be an empty path"):
        check_unix_socket("")
    with pytest.raises(TypeError, match="unix_socket must be a path"):
        check_unix_socket(8000)


def test_connection_options():
    check_connection_options()
    check_connection_options(max_message_size=UNSET, ping_interval=0)
    with pytest.raises(ValueError, match="max_message_size"):
        check_connection_options(max_message_size=-1)
    with pytest.raises(TypeError, match="close_timeout must be a number of seconds, not"):
        check_connection_options(close_timeout=None)


def test_deflate_options():
    assert check_compression(True) == DeflateOptions()
    assert check_compression(False) is None
    assert check_compression(None) is None
    options = DeflateOptions(server_max_window_bits=10, client_no_context_takeover=True)
    assert check_compression(options) is options
    assert check_compression({"client_max_window_bits": 9}) == DeflateOptions(
        client_max_window_bits=9
    )
    with pytest.raises(ValueError, match="unknown setting 'level'"):
        check_compression({"level": 9})
    with pytest.raises(TypeError, match="compression must be True, False, a DeflateOptions"):
        check_compression("deflate")
    with pytest.raises(ValueError, match="server_max_window_bits must be between 9 and 15, not 8"):
        DeflateOptions(server_max_window_bits=8)
    with pytest.raises(TypeError, match="client_max_window_bits must be an int"):
        DeflateOptions(client_max_window_bits=12.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="server_no_context_takeover must be a bool"):
        DeflateOptions(server_no_context_takeover=1)  # type: ignore[arg-type]
