import base64
import hashlib

import pytest

from simple_websocket.errors import HandshakeError, HandshakeRejected
from simple_websocket.sansio.handshake import (
    DEFAULT_USER_AGENT,
    MAX_HEAD_SIZE,
    ClientHandshake,
    HandshakeRequest,
    ServerHandshake,
    accept_key,
    accept_request,
    build_accept_response,
    build_reject_response,
    normalize_headers,
    normalize_subprotocols,
    parse_request_head,
    parse_url,
    validate_request,
)
from simple_websocket.sansio.options import DeflateOptions, check_compression

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
        ("ws://h/a\r\nX-Injected: 1", "control characters"),
        ("ws://h/a\tb", "control characters"),
        ("ws://h/\x00", "control characters"),
        ("ws://h\n/", "control characters"),
        ("ws://ex ample.com/", "host must be ASCII without spaces"),
        ("ws://bücher.example/", "IDNA"),
    ],
)
def test_parse_url_rejects(url, problem):
    with pytest.raises(ValueError, match=problem):
        parse_url(url)


def test_parse_url_refuses_other_types():
    with pytest.raises(TypeError, match="URL must be a str, not bytes"):
        parse_url(b"ws://host/")


@pytest.mark.parametrize(
    ("url", "resource"),
    [
        ("ws://h/a b", "/a%20b"),
        ("ws://h/a%20b", "/a%20b"),
        ("ws://h/caf\u00e9?q=\u00e9 t", "/caf%C3%A9?q=%C3%A9%20t"),
        ("ws://h/p?a=1&b=[x]:y@z", "/p?a=1&b=[x]:y@z"),
        ('ws://h/<"x">', "/%3C%22x%22%3E"),
    ],
)
def test_parse_url_percent_encodes_the_path_as_browsers_do(url, resource):
    assert parse_url(url).resource == resource
    request = ClientHandshake(parse_url(url)).request
    request_line = request.split(b"\r\n", 1)[0]
    assert request_line == f"GET {resource} HTTP/1.1".encode()


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


@pytest.mark.parametrize("other", [KEY, base64.b64encode(b"fedcba9876543210").decode()])
def test_two_keys_are_refused(other):
    """RFC 6455 4.2.1: exactly one key, even when both are the same."""
    head = upgrade_request().replace(
        b"\r\n\r\n", f"\r\nsec-websocket-key: {other}\r\n\r\n".encode()
    )
    parsed = parse_request_head(head)
    assert parsed is not None
    with pytest.raises(HandshakeError, match="more than one Sec-WebSocket-Key") as info:
        validate_request(parsed[0])
    assert info.value.status_code == 400


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


# -- header lookups: case, repetition, token lists ------------------------------------


def request_with(*lines: str, start: str = "GET / HTTP/1.1") -> HandshakeRequest:
    parsed = parse_request_head(("\r\n".join([start, *lines]) + "\r\n\r\n").encode("latin-1"))
    assert parsed is not None
    return parsed[0]


VALID_LINES = (
    "Host: h",
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Key: {KEY}",
    "Sec-WebSocket-Version: 13",
)


def test_header_names_are_case_insensitive_and_keep_their_case():
    request = request_with(
        "hOST: h",
        "UPGRADE: WebSocket",
        "connection: keep-alive, UPGRADE",
        f"sec-websocket-key: {KEY}",
        "SEC-WEBSOCKET-VERSION: 13",
        "sec-WEBSOCKET-protocol: chat",
        "Sec-Websocket-Extensions: permessage-deflate",
    )
    assert [name for name, _ in request.headers][:2] == ["hOST", "UPGRADE"]
    assert request.header("Host") == request.host == "h"
    assert request.subprotocols == ["chat"]
    assert request.extensions == ["permessage-deflate"]
    assert validate_request(request) == KEY
    response, extensions = accept_request(request, "chat")
    assert (
        response
        == (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {expected_accept(KEY)}\r\nSec-WebSocket-Protocol: chat\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        ).encode()
    )
    assert [e.name for e in extensions] == ["permessage-deflate"]


def test_repeated_headers_concatenate_tokens_in_order():
    request = request_with(
        *VALID_LINES,
        "Sec-WebSocket-Protocol: a, b",
        "sec-websocket-protocol: c",
        "Sec-WebSocket-Extensions: x-one",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-two",
    )
    assert request.subprotocols == ["a", "b", "c"]
    assert request.extensions == [
        "x-one",
        "permessage-deflate; client_max_window_bits",
        "x-two",
    ]
    # A subprotocol from the second header is one the client offered.
    response, extensions = accept_request(request, "c")
    assert b"\r\nSec-WebSocket-Protocol: c\r\n" in response
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=15\r\n" in (
        response
    )
    assert [e.name for e in extensions] == ["permessage-deflate"]


@pytest.mark.parametrize(
    "lines",
    [
        ("Upgrade: h2c", "Upgrade: websocket"),
        ("Upgrade: h2c,websocket",),
        ("Connection: keep-alive", "Connection: Upgrade"),
        ("Connection: , keep-alive ,,\tUpgrade ,",),
        ("Connection: upgrade",),
    ],
)
def test_token_lists_are_split_stripped_and_matched_case_insensitively(lines):
    names = {line.partition(":")[0] for line in lines}
    base = [line for line in VALID_LINES if line.partition(":")[0] not in names]
    assert validate_request(request_with(*base, *lines)) == KEY


@pytest.mark.parametrize(
    ("lines", "status", "problem"),
    [
        # The first value of a repeated single-valued header is the one that counts.
        (("Sec-WebSocket-Version: 8", "Sec-WebSocket-Version: 13"), 426, "'8'"),
        (("Sec-WebSocket-Version: 13, 8",), 426, "'13, 8'"),
        (("Host: ", "Host: h"), 400, "Host"),
        # A token must match exactly, not as a substring.
        (("Upgrade: websocket/13",), 426, "Upgrade"),
        (("Connection: Upgraded",), 400, "Connection"),
        (("Sec-WebSocket-Key: " + "\xe9" * 24,), 400, "Key"),
        (("Sec-WebSocket-Key: " + KEY[:8] + " " + KEY[8:],), 400, "Key"),
    ],
)
def test_single_valued_headers_and_tokens(lines, status, problem):
    names = {line.partition(":")[0] for line in lines}
    base = [line for line in VALID_LINES if line.partition(":")[0] not in names]
    with pytest.raises(HandshakeError, match=problem) as info:
        validate_request(request_with(*base, *lines))
    assert info.value.status_code == status


def test_validation_reports_the_first_problem_in_a_fixed_order():
    # Upgrade comes first (426) even when Connection, Version, Key and Host fail too.
    with pytest.raises(HandshakeError, match="Upgrade") as info:
        validate_request(request_with("Sec-WebSocket-Version: 8"))
    assert info.value.status_code == 426
    with pytest.raises(HandshakeError, match="Connection"):
        validate_request(request_with("Upgrade: websocket", "Sec-WebSocket-Version: 8"))
    with pytest.raises(HandshakeError, match="Key"):
        validate_request(request_with(*VALID_LINES[1:3], "Sec-WebSocket-Version: 13"))
    with pytest.raises(HandshakeError, match="Host"):
        validate_request(request_with(*VALID_LINES[1:]))
    with pytest.raises(HandshakeError, match="GET"):
        validate_request(request_with(*VALID_LINES, start="POST / HTTP/1.1"))


def test_header_values_are_stripped_and_keep_inner_colons():
    request = request_with(
        "Host:\t h:8000 \t",
        "X-Empty:",
        "X-Spaced  Name: v",
        "Upgrade:websocket",
    )
    assert request.headers == [
        ("Host", "h:8000"),
        ("X-Empty", ""),
        ("X-Spaced  Name", "v"),
        ("Upgrade", "websocket"),
    ]


@pytest.mark.parametrize(
    "line",
    [
        " Folded: value",  # obsolete line folding (RFC 7230 3.2.4)
        "\tFolded: value",
        "Host : h",  # whitespace between name and colon
        "Host\t: h",
        ": no name",
        "no colon",
    ],
)
def test_malformed_header_lines_name_the_first_one(line):
    with pytest.raises(HandshakeError) as info:
        parse_request_head(f"GET / HTTP/1.1\r\nHost: h\r\n{line}\r\nBad line\r\n\r\n".encode())
    assert info.value.status_code == 400
    assert repr(line) in info.value.detail


def test_header_count_limit():
    lines = "".join(f"X-{i}: v\r\n" for i in range(128))
    parsed = parse_request_head(f"GET / HTTP/1.1\r\n{lines}\r\n".encode())
    assert parsed is not None
    assert len(parsed[0].headers) == 128
    with pytest.raises(HandshakeError) as info:
        parse_request_head(f"GET / HTTP/1.1\r\n{lines}X-128: v\r\n\r\n".encode())
    assert info.value.status_code == 431


@pytest.mark.parametrize("convert", [bytes, bytearray])
def test_bytes_after_the_head_are_returned_as_bytes(convert):
    head = upgrade_request()
    for after in (b"", b"\x81\x02hi", b"\r\n\r\n"):
        parsed = parse_request_head(convert(head + after))
        assert parsed is not None
        assert type(parsed[1]) is bytes
        assert parsed[1] == after
    assert parse_request_head(convert(head[:-1])) is None


def test_head_size_limit_is_exact():
    filler = "GET / HTTP/1.1\r\nX: "
    # The head (without its final CRLF CRLF) may be MAX_HEAD_SIZE bytes long.
    at_limit = filler + "a" * (MAX_HEAD_SIZE - len(filler))
    assert parse_request_head((at_limit + "\r\n\r\n").encode()) is not None
    with pytest.raises(HandshakeError) as info:
        parse_request_head((at_limit + "a\r\n\r\n").encode())
    assert info.value.status_code == 431
    # Incomplete: refused once more than MAX_HEAD_SIZE bytes wait for the end.
    assert parse_request_head(b"x" * MAX_HEAD_SIZE) is None
    with pytest.raises(HandshakeError):
        parse_request_head(b"x" * (MAX_HEAD_SIZE + 1))


# -- the 101 response ---------------------------------------------------------------


def test_accept_response_bytes():
    head = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {expected_accept(KEY)}\r\n"
    )
    assert build_accept_response(KEY, None, None) == (head + "\r\n").encode()
    assert build_accept_response(KEY, "", "", []) == (head + "\r\n").encode()
    assert build_accept_response(
        KEY, "chat", "permessage-deflate", [("X-A", "1"), ("X-B", "\xe9")]
    ) == (
        head + "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
        "X-A: 1\r\nX-B: \xe9\r\n\r\n"
    ).encode("latin-1")
    assert (
        build_accept_response(KEY, None, None, [("X-A", "1")]) == (head + "X-A: 1\r\n\r\n").encode()
    )
    with pytest.raises(UnicodeEncodeError):
        build_accept_response(KEY, None, None, [("X-A", "\u20ac")])


def test_accept_request_response_bytes_for_a_plain_request():
    request = request_with(*VALID_LINES, "Sec-WebSocket-Extensions: permessage-deflate")
    expected = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {expected_accept(KEY)}\r\n\r\n"
    ).encode()
    assert accept_request(request, None, compression=False) == (expected, [])
    response, extensions = accept_request(request, None, extra_headers=[("X-A", "1")])
    assert response == expected[:-2] + (
        b"Sec-WebSocket-Extensions: permessage-deflate\r\nX-A: 1\r\n\r\n"
    )
    assert [e.name for e in extensions] == ["permessage-deflate"]


def test_compression_off_ignores_extension_offers():
    request = request_with(*VALID_LINES, "Sec-WebSocket-Extensions: permessage-deflate; bogus")
    response, extensions = accept_request(request, None, compression=False)
    assert extensions == []
    assert b"Extensions" not in response


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; client_max_window_bits=\xb2",  # a digit int() refuses
        "permessage-deflate; server_max_window_bits=1\xb9",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=09",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; unknown",
    ],
)
def test_invalid_deflate_offers_are_declined(offer):
    request = request_with(*VALID_LINES, f"Sec-WebSocket-Extensions: {offer}")
    response, extensions = accept_request(request, None)
    assert extensions == []
    assert b"Sec-WebSocket-Extensions" not in response
    # The next offer is still considered.
    request = request_with(*VALID_LINES, f"Sec-WebSocket-Extensions: {offer}, permessage-deflate")
    response, extensions = accept_request(request, None)
    assert [e.name for e in extensions] == ["permessage-deflate"]
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n" in response


def test_client_refuses_a_deflate_response_with_a_digit_int_refuses():
    hs = ClientHandshake(parse_url("ws://h/"))
    extra = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=\xb2\r\n"
    with pytest.raises(HandshakeError, match="invalid extension"):
        hs.receive_data(_response(hs.key, extra).decode().encode("latin-1"))


class _Server(ServerHandshake):
    def __init__(self, subprotocols: list[str], compression: bool = True) -> None:
        self._init_server_handshake(subprotocols, compression)


def test_server_handshake_chooses_the_clients_first_supported_subprotocol():
    request = request_with(
        *VALID_LINES, "Sec-WebSocket-Protocol: a, b", "Sec-WebSocket-Protocol: c"
    )
    assert _Server([]).choose_subprotocol(request) is None
    assert _Server(["c", "b"]).choose_subprotocol(request) == "b"
    assert _Server(["c"]).choose_subprotocol(request) == "c"
    assert _Server(["z"]).choose_subprotocol(request) is None
    response, _, subprotocol = _Server(["c"])._handshake_answer(request)
    assert subprotocol == "c"
    assert b"\r\nSec-WebSocket-Protocol: c\r\n" in response
    # Without supported subprotocols the offers are not even looked at.
    bad = request_with(*VALID_LINES, "Sec-WebSocket-Protocol: ,")
    assert _Server([])._handshake_answer(bad)[2] is None


# -- permessage-deflate settings ---------------------------------------------------------


def _answer(offer: str, compression=True) -> str | None:
    parsed = parse_request_head(upgrade_request(**{"Sec-WebSocket-Extensions": offer}))
    assert parsed is not None
    response, extensions = accept_request(parsed[0], None, compression)
    for line in response.decode().split("\r\n"):
        if line.startswith("Sec-WebSocket-Extensions: "):
            assert [e.name for e in extensions] == ["permessage-deflate"]
            return line.split(": ", 1)[1]
    assert extensions == []
    return None


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        # The defaults answer as wsproto does.
        ("permessage-deflate", "permessage-deflate"),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=15",
        ),
        (
            "permessage-deflate; client_max_window_bits=15; server_max_window_bits=15",
            "permessage-deflate; client_max_window_bits=15; server_max_window_bits=15",
        ),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
        ),
        ("permessage-deflate; server_max_window_bits=8", None),
        ("permessage-deflate; client_max_window_bits=8", None),
    ],
)
def test_default_deflate_answers(offer, answer):
    assert _answer(offer) == answer


@pytest.mark.parametrize(
    ("offer", "settings", "answer"),
    [
        # The server's own window and flags, announced even when not offered.
        (
            "permessage-deflate",
            DeflateOptions(server_max_window_bits=10, server_no_context_takeover=True),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
        ),
        (
            "permessage-deflate",
            {"client_no_context_takeover": True},
            "permessage-deflate; client_no_context_takeover",
        ),
        # The smaller of what the client allows and what the server wants.
        (
            "permessage-deflate; server_max_window_bits=12",
            {"server_max_window_bits": 14},
            "permessage-deflate; server_max_window_bits=12",
        ),
        (
            "permessage-deflate; client_max_window_bits; server_max_window_bits=15",
            {"client_max_window_bits": 9, "server_max_window_bits": 11},
            "permessage-deflate; client_max_window_bits=9; server_max_window_bits=11",
        ),
        # A client that cannot limit its window is accepted with its full window.
        (
            "permessage-deflate",
            {"client_max_window_bits": 9},
            "permessage-deflate",
        ),
    ],
)
def test_deflate_answers_with_server_settings(offer, settings, answer):
    assert _answer(offer, check_compression(settings)) == answer


def test_server_deflate_settings_are_the_ones_used():
    parsed = parse_request_head(
        upgrade_request(
            **{"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
        )
    )
    assert parsed is not None
    options = DeflateOptions(
        server_max_window_bits=10, client_max_window_bits=12, client_no_context_takeover=True
    )
    _, extensions = accept_request(parsed[0], None, options)
    (ext,) = extensions
    assert (ext.server_max_window_bits, ext.client_max_window_bits) == (10, 12)
    assert (ext.client_no_context_takeover, ext.server_no_context_takeover) == (True, False)


def _accept_response(hs: ClientHandshake, extensions: str) -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Accept: {expected_accept(hs.key)}\r\n"
        f"Sec-WebSocket-Extensions: {extensions}\r\n\r\n"
    ).encode()


def test_client_offers_its_deflate_settings():
    hs = ClientHandshake(parse_url("ws://h/"))
    assert (
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=15; "
        b"server_max_window_bits=15\r\n" in hs.request
    )
    hs = ClientHandshake(
        parse_url("ws://h/"),
        compression={
            "server_max_window_bits": 10,
            "client_max_window_bits": 11,
            "server_no_context_takeover": True,
            "client_no_context_takeover": True,
        },
    )
    assert (
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=11; "
        b"server_max_window_bits=10; client_no_context_takeover; server_no_context_takeover\r\n"
        in hs.request
    )
    answer = (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=9"
    )
    assert hs.receive_data(_accept_response(hs, answer))
    (ext,) = hs.extensions
    assert (ext.server_max_window_bits, ext.client_max_window_bits) == (9, 11)
    assert ext.server_no_context_takeover and ext.client_no_context_takeover
    assert (
        b"Sec-WebSocket-Extensions"
        not in ClientHandshake(parse_url("ws://h/"), compression=False).request
    )


@pytest.mark.parametrize(
    ("settings", "answer", "problem"),
    [
        (
            {"server_max_window_bits": 10},
            "permessage-deflate; server_max_window_bits=12",
            "above the 10",
        ),
        ({"server_max_window_bits": 10}, "permessage-deflate", "no server_max_window_bits"),
        (
            {"client_max_window_bits": 10},
            "permessage-deflate; client_max_window_bits=11",
            "above the 10",
        ),
        ({"server_no_context_takeover": True}, "permessage-deflate", "server_no_context_takeover"),
        ({}, "permessage-deflate; server_max_window_bits=8", "window size of 8"),
    ],
)
def test_client_fails_a_deflate_answer_that_ignores_its_offer(settings, answer, problem):
    hs = ClientHandshake(parse_url("ws://h/"), compression=settings)
    with pytest.raises(HandshakeError, match=problem):
        hs.receive_data(_accept_response(hs, answer))


def test_tls_where_plain_http_is_expected_is_named():
    client_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32
    with pytest.raises(HandshakeError, match="client used wss:// where ws:// is served") as info:
        parse_request_head(client_hello)
    assert info.value.status_code == 400
    alert = b"\x15\x03\x03\x00\x02\x02\x46"
    with pytest.raises(HandshakeError, match=r"answered with TLS: use wss:// instead of ws://"):
        ClientHandshake(parse_url("ws://h:8000/")).receive_data(alert)


def test_a_rejected_handshake_carries_the_url_and_reason_phrase():
    hs = ClientHandshake(parse_url("ws://h:8000/feed?x=1"))
    with pytest.raises(HandshakeRejected) as info:
        hs.receive_data(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    assert info.value.url == "ws://h:8000/feed?x=1"
    assert info.value.reason_phrase == "Not Found"
    assert "refused the WebSocket handshake to ws://h:8000/feed?x=1 with HTTP 404 Not Found" in str(
        info.value
    )


def test_client_request_user_agent_and_origin():
    request = ClientHandshake(parse_url("ws://h/")).request.decode()
    assert f"\r\nUser-Agent: {DEFAULT_USER_AGENT}\r\n" in request
    assert DEFAULT_USER_AGENT.startswith("simple-websocket/") and " Python/3." in DEFAULT_USER_AGENT
    assert "Origin" not in request
    request = ClientHandshake(
        parse_url("ws://h/"), user_agent=None, origin="https://app.example"
    ).request.decode()
    assert "User-Agent" not in request
    assert "\r\nOrigin: https://app.example\r\n" in request
    # A User-Agent among the extra headers replaces the default, once.
    request = ClientHandshake(parse_url("ws://h/"), (), [("user-agent", "mine/1")]).request.decode()
    assert request.lower().count("user-agent") == 1 and "user-agent: mine/1" in request
    with pytest.raises(ValueError, match="User-Agent is given twice"):
        ClientHandshake(parse_url("ws://h/"), (), [("User-Agent", "a")], user_agent="b")


def test_parse_url_remembers_valid_urls_and_checks_every_call():
    from simple_websocket.sansio.handshake import parse_url

    first = parse_url("ws://example.com:8080/feed?x=1")
    assert parse_url("ws://example.com:8080/feed?x=1") is first  # parsed once
    for _ in range(2):  # errors are not remembered: each call raises
        with pytest.raises(ValueError, match="scheme"):
            parse_url("ftp://example.com/")
        with pytest.raises(TypeError, match="must be a str"):
            parse_url(["ws://example.com/"])  # type: ignore[arg-type]
