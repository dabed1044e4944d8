"""``errors.py``: the whole exception tree, drawn in its docstring."""

from __future__ import annotations

import inspect
import re

import simple_websocket
from simple_websocket import errors, operators, reconnect


def test_every_exception_is_in_the_tree_with_its_parents() -> None:
    doc = errors.__doc__ or ""
    exported = [getattr(errors, name) for name in errors.__all__]
    classes = [c for c in exported if isinstance(c, type) and issubclass(c, BaseException)]
    assert {c.__name__ for c in classes} == set(re.findall(r"── (\w+)", doc))
    for cls in classes:
        assert issubclass(cls, errors.SimpleWebsocketError)
        assert cls.__module__ == "simple_websocket.errors"
        # The tree's indentation says who the parent is.
        line = next(line for line in doc.splitlines() if f"── {cls.__name__}" in line)
        depth = line.index("──")
        parents = [
            other
            for other in doc.splitlines()[: doc.splitlines().index(line)]
            if "── " in other and other.index("──") < depth
        ]
        if not parents:  # the root, under RuntimeError
            assert cls is errors.SimpleWebsocketError and issubclass(cls, RuntimeError)
            continue
        parent = re.findall(r"── (\w+)", parents[-1])[0]
        assert parent in [base.__name__ for base in inspect.getmro(cls)[1:]], cls


def test_errors_are_importable_from_where_they_were() -> None:
    assert reconnect.OutboxFull is errors.OutboxFull is simple_websocket.OutboxFull
    assert operators.IdleTimeout is errors.IdleTimeout is simple_websocket.IdleTimeout
    for name in ("IdleTimeout", "OutboxFull"):
        assert name in simple_websocket.__all__, name


def test_idle_timeout_is_a_timeout() -> None:
    exc = errors.IdleTimeout(2.5)
    assert isinstance(exc, TimeoutError) and exc.timeout == 2.5
    assert "2.5" in str(exc)


def test_connection_closed_without_a_reason_has_no_trailing_space() -> None:
    assert str(errors.ConnectionClosed(1006)) == "Connection closed: 1006"
    assert str(errors.ConnectionClosed(1000, "bye")) == "Connection closed: 1000 bye"
    assert str(errors.ConnectionClosed(1001, "")) == "Connection closed: 1001"
    assert str(errors.ConnectionClosed()) == "Connection closed: 1005"


def test_a_rejected_handshake_says_what_the_answer_means() -> None:
    url = "ws://h:8000/feed"
    page = errors.HandshakeRejected(
        200, [("Content-Type", "text/html")], b"<html>", url=url, reason_phrase="OK"
    )
    assert str(page) == (
        "Connection error: 200: ws://h:8000/feed is not a WebSocket endpoint: the server "
        "answered HTTP 200 OK instead of 101 Switching Protocols"
    )
    moved = errors.HandshakeRejected(
        301, [("Location", "wss://h/feed")], url=url, reason_phrase="Moved Permanently"
    )
    assert "is not a WebSocket endpoint" in str(moved)
    assert "(a redirect to wss://h/feed; redirects are not followed)" in str(moved)
    refused = errors.HandshakeRejected(
        401, [], b"token expired\nmore\n", url=url, reason_phrase="Unauthorized"
    )
    assert str(refused) == (
        "Connection error: 401: the server refused the WebSocket handshake to "
        "ws://h:8000/feed with HTTP 401 Unauthorized: token expired"
    )
    html = errors.HandshakeRejected(503, [("Content-Type", "text/html")], b"<h1>down</h1>", url=url)
    assert str(html).endswith("with HTTP 503")
    # Without a URL (built by hand), the message of simple-websocket 1.1.
    assert str(errors.HandshakeRejected(403)) == "Connection error: 403"
    assert page.status_code == 200 and page.url == url and page.reason_phrase == "OK"
