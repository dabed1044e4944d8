import base64
import hashlib

import pytest

from simple_websocket.errors import HandshakeError, HandshakeRejected
from simple_websocket.sansio.handshake import (
    MAX_HEAD_SIZE,
    ClientHandshake,
    HandshakeRequest,
    accept_key,
    accept_request,
    build_reject_response,
    normalize_headers,
    normalize_subprotocols,
    parse_request_head,
    parse_url,
    validate_request,
)

KEY = base64.b64encode(b"0123456789abcdef").decode()


def expected_accept(key: str) -> str:
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    return base64.b64encode(hashlib.sha1(key.encode() + guid).digest()).decode()


@pytest.mark.parametrize(
    ("url", "secure", "host", "port", "resource", "host_header"),
    [
        ("ws://example.com", False, "example.com", 80, "/", "example.com"),
        ("ws://example.com:80/a", False, "example.com", 80, "/a", "example.com"),
        ("wss://example.com/x?y=1", True, "example.com", 443, "/x?y=1", "example.com"),
        ("ws://127.0.0.1:8000/ws", False, "127.0.0.1", 8000, "/ws", "127.0.0.1:8000"),
        ("ws://[::1]:9/", False, "::1", 9, "/", "[::1]:9"),
        ("http://h/p", False, "h", 80, "/p", "h"),
        ("https://h:444/", True, "h", 444, "/", "h:444"),
        ("WS://Host/", False, "host", 80, "/", "host"),
    ],
)
def test_parse_url(url, secure, host, port, resource, host_header):
    parsed = parse_url(url)
    assert (parsed.secure, parsed.host, parsed.port, parsed.resource) == (
        secure,
        host,
        port,
        resource,
    )
    assert parsed.host_header == host_header


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/", "scheme"),
        ("example.com/ws", "scheme"),
        ("ws:///path", "no host"),
        ("ws://host:notaport/", "port"),
        ("ws://host:99999/", "(?i)port"),
        ("ws://host/#frag", "fragment"),
        (b"ws://host/", "str"),
    ],
)
def test_parse_url_rejects(url, problem):
    with pytest.raises(ValueError, match=problem):
        parse_url(url)


def test_normalize_headers_and_subprotocols():
    assert normalize_headers({"A": "1"}) == [("A", "1")]
    assert normalize_headers([("A", "1"), ("A", "2")]) == [("A", "1"), ("A", "2")]
    assert normalize_headers(None) == []
    with pytest.raises(ValueError):
        normalize_headers({"X": "a\r\nInjected: yes"})
    with pytest.raises(ValueError):
        normalize_headers([("", "x")])
    assert normalize_subprotocols("chat") == ["chat"]
    assert normalize_subprotocols(["a", "b"]) == ["a", "b"]
    assert normalize_subprotocols(None) == []


def test_accept_key_matches_rfc_example():
    # RFC 6455 section 1.3.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_client_request_and_successful_response():
    hs = ClientHandshake(
        parse_url("ws://h:8000/p?q"),
        ["b", "a"],
        [("X-Token", "t")],
        compression=True,
        key_factory=lambda n: b"k" * n,
    )
    request = hs.request.decode()
    assert request.startswith("GET /p?q HTTP/1.1\r\n")
    assert "Host: h:8000\r\n" in request
    assert "Sec-WebSocket-Protocol: b, a\r\n" in request
    assert "Sec-WebSocket-Extensions: permessage-deflate" in request
    assert "X-Token: t\r\n" in request
    assert request.endswith("\r\n\r\n")
    response = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Accept: {expected_accept(hs.key)}\r\n"
        "Sec-WebSocket-Protocol: a\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
    ).encode()
    # Byte by byte, with a frame glued to the head.
    done = False
    data = response + b"\x81\x02hi"
    for i in range(len(data)):
        done = hs.receive_data(data[i : i + 1])
        if done:
            break
    assert done
    assert hs.subprotocol == "a"
    assert [e.name for e in hs.extensions] == ["permessage-deflate"]
    # The bytes after the head are returned, not swallowed; the rest is fed later.
    assert hs.trailing_data == b""
    hs2 = ClientHandshake(parse_url("ws://h/"), key_factory=lambda n: b"k" * n)
    ok = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        f"Connection: upgrade\r\nSec-WebSocket-Accept: {expected_accept(hs2.key)}\r\n\r\n"
    ).encode()
    assert hs2.receive_data(ok + b"\x81\x02hi") is True
    assert hs2.trailing_data == b"\x81\x02hi"


def _response(key: str, extra: str = "", accept: str | None = None) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept or expected_accept(key)}\r\n{extra}\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("extra", "accept", "problem"),
    [
        ("", "bm90IHRoZSByaWdodCBrZXk=", "Sec-WebSocket-Accept"),
        ("Sec-WebSocket-Protocol: zzz\r\n", None, "not offered"),
        ("Sec-WebSocket-Extensions: x-unknown\r\n", None, "not offered"),
        (
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=99\r\n",
            None,
            "invalid extension",
        ),
    ],
)
def test_client_rejects_invalid_response(extra, accept, problem):
    hs = ClientHandshake(parse_url("ws://h/"), ["chat"])
    with pytest.raises(HandshakeError, match=problem):
        hs.receive_data(_response(hs.key, extra, accept))


def test_client_rejected_status_keeps_headers_and_body():
    hs = ClientHandshake(parse_url("ws://h/"))
    with pytest.raises(HandshakeRejected) as info:
        hs.receive_data(b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nContent-Length: 2\r\n\r\nno")
    assert info.value.status_code == 429
    assert info.value.header("retry-after") == "7"
    assert info.value.body == b"no"


def test_client_rejects_garbage_and_huge_heads():
    with pytest.raises(HandshakeError, match="status line"):
        ClientHandshake(parse_url("ws://h/")).receive_data(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(HandshakeError, match="too large"):
        ClientHandshake(parse_url("ws://h/")).receive_data(b"x" * (MAX_HEAD_SIZE + 1))


def upgrade_request(**overrides: str | None) -> bytes:
    headers = {
        "Host": "h",
        "Upgrade": "websocket",
        "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    headers.update(overrides)
    lines = ["GET /chat?room=1 HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items() if v]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_parse_request_head_incomplete_then_complete():
    data = upgrade_request() + b"rest"
    assert parse_request_head(data[:10]) is None
    parsed = parse_request_head(data)
    assert parsed is not None
    request, rest = parsed
    assert request.target == "/chat?room=1"
    assert request.host == "h"
    assert rest == b"rest"
    assert validate_request(request) == KEY


@pytest.mark.parametrize(
    ("overrides", "status", "problem"),
    [
        ({"Upgrade": None}, 426, "Upgrade"),
        ({"Connection": "keep-alive"}, 400, "Connection"),
        ({"Sec-WebSocket-Version": "8"}, 426, "Version"),
        ({"Sec-WebSocket-Key": None}, 400, "Key"),
        ({"Sec-WebSocket-Key": "c2hvcnQ="}, 400, "Key"),
        ({"Sec-WebSocket-Key": "not base64 at all!"}, 400, "Key"),
    ],
)
def test_validate_request_errors(overrides, status, problem):
    parsed = parse_request_head(upgrade_request(**overrides))
    assert parsed is not None
    with pytest.raises(HandshakeError, match=problem) as info:
        validate_request(parsed[0])
    assert info.value.status_code == status


@pytest.mark.parametrize(
    "head",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\n folded: header\r\n\r\n",
    ],
)
def test_malformed_request_heads(head):
    with pytest.raises(HandshakeError) as info:
        parse_request_head(head)
    assert info.value.status_code == 400


def test_post_is_rejected():
    request = HandshakeRequest("/", [("Upgrade", "websocket")], method="POST")
    with pytest.raises(HandshakeError, match="GET"):
        validate_request(request)


def test_accept_request_negotiates_subprotocol_and_deflate():
    parsed = parse_request_head(
        upgrade_request(
            **{
                "Sec-WebSocket-Protocol": "b, a",
                "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
            }
        )
    )
    assert parsed is not None
    request = parsed[0]
    assert request.subprotocols == ["b", "a"]
    response, extensions = accept_request(request, "a")
    text = response.decode()
    assert text.startswith("HTTP/1.1 101 ")
    assert f"Sec-WebSocket-Accept: {expected_accept(KEY)}" in text
    assert "Sec-WebSocket-Protocol: a\r\n" in text
    assert "Sec-WebSocket-Extensions: permessage-deflate" in text
    assert [e.name for e in extensions] == ["permessage-deflate"]
    response, extensions = accept_request(request, None, compression=False)
    assert b"Sec-WebSocket-Extensions" not in response
    assert b"Sec-WebSocket-Protocol" not in response
    assert extensions == []
    with pytest.raises(HandshakeError):
        accept_request(request, "not-offered")


def test_invalid_deflate_offer_is_declined_not_fatal():
    parsed = parse_request_head(
        upgrade_request(
            **{"Sec-WebSocket-Extensions": "permessage-deflate; server_max_window_bits=3"}
        )
    )
    assert parsed is not None
    response, extensions = accept_request(parsed[0], None)
    assert extensions == []
    assert b"Sec-WebSocket-Extensions" not in response


def test_reject_response():
    data = build_reject_response(426, "upgrade please\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required")
    assert b"Upgrade: websocket" in head
    assert b"Content-Length: 15" in head
    assert body == b"upgrade please\n"


def test_response_with_its_own_content_type():
    data = build_reject_response(200, "<p>hi</p>", [("Content-Type", "text/html")])
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"text/plain" not in head
    assert b"Content-Type: text/html" in head
    assert body == b"<p>hi</p>"
