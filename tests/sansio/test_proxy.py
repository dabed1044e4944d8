"""The sans-I/O proxy rules: URLs, the environment (as urllib), CONNECT and its answer."""

from __future__ import annotations

import base64
import urllib.request

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simple_websocket import ConnectionError, ProxyError
from simple_websocket.sansio.handshake import parse_url
from simple_websocket.sansio.proxy import (
    MAX_PROXY_HEAD_SIZE,
    ConnectResponse,
    ProxyURL,
    connect_request,
    parse_proxy_url,
    proxy_from_environment,
    select_proxy,
    socks_error,
)

WS = parse_url("ws://example.com/chat")
WSS = parse_url("wss://example.com/chat")


# -- proxy URLs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://proxy:3128", ProxyURL("http", "proxy", 3128)),
        ("http://proxy", ProxyURL("http", "proxy", 80)),
        ("https://proxy", ProxyURL("https", "proxy", 443)),
        ("HTTP://Proxy:8080/", ProxyURL("http", "proxy", 8080)),
        ("proxy.corp:3128", ProxyURL("http", "proxy.corp", 3128)),
        ("socks5://127.0.0.1", ProxyURL("socks5", "127.0.0.1", 1080)),
        ("socks5h://[::1]:9050", ProxyURL("socks5h", "::1", 9050)),
        ("socks4://h:1", ProxyURL("socks4", "h", 1)),
        (
            "http://al%40ice:p%3Ass%20w@proxy:1",
            ProxyURL("http", "proxy", 1, "al@ice", "p:ss w"),
        ),
        ("http://user@proxy:1", ProxyURL("http", "proxy", 1, "user", None)),
    ],
)
def test_proxy_urls_are_parsed(url: str, expected: ProxyURL) -> None:
    assert parse_proxy_url(url) == expected


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://proxy:21", "scheme must be one of"),
        ("socks6://proxy", "scheme must be one of"),
        ("http://", "no host"),
        ("http://proxy:99999", "invalid proxy URL"),
        ("http://proxy:port", "invalid proxy URL"),
        ("http://proxy:1/path", "a path is not allowed"),
        ("", "empty"),
    ],
)
def test_invalid_proxy_urls_raise_value_error(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_proxy_url(url)


def test_the_password_never_shows() -> None:
    proxy = parse_proxy_url("http://alice:hunter2@proxy:1")
    assert "hunter2" not in repr(proxy)
    assert proxy.display == "http://proxy:1"
    with pytest.raises(ValueError) as info:
        parse_proxy_url("ftp://alice:hunter2@proxy:1")
    assert "hunter2" not in str(info.value)
    assert "alice" in str(info.value)


def test_proxy_url_of_another_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="proxy URL must be a str"):
        parse_proxy_url(b"http://proxy")  # type: ignore[arg-type]


# -- the environment, as urllib reads it ----------------------------------------------


@pytest.mark.parametrize(
    ("environ", "url", "expected"),
    [
        ({}, WS, None),
        ({"http_proxy": "http://p:1"}, WS, "http://p:1"),
        ({"http_proxy": "http://p:1"}, WSS, None),
        ({"https_proxy": "http://p:2"}, WSS, "http://p:2"),
        ({"HTTPS_PROXY": "http://p:2"}, WSS, "http://p:2"),
        ({"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:1"}, WSS, "http://low:1"),
        # An empty lower-case variable hides the upper-case one.
        ({"https_proxy": "", "HTTPS_PROXY": "http://up:1"}, WSS, None),
        ({"all_proxy": "socks5://s:1"}, WS, "socks5://s:1"),
        ({"ALL_PROXY": "socks5://s:1", "https_proxy": "http://p:2"}, WSS, "http://p:2"),
        # A CGI script ignores an upper-case HTTP_PROXY (a client can set it).
        ({"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"}, WS, None),
        ({"http_proxy": "http://ok:1", "REQUEST_METHOD": "GET"}, WS, "http://ok:1"),
    ],
)
def test_proxy_variables(environ: dict[str, str], url: object, expected: str | None) -> None:
    assert proxy_from_environment(url, environ) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("no_proxy", "host", "bypassed"),
    [
        ("*", "anything.example", True),
        ("example.com", "example.com", True),
        ("example.com", "api.example.com", True),
        (".example.com", "api.example.com", True),
        ("example.com", "notexample.com", False),
        ("EXAMPLE.com", "Example.COM", True),
        ("other.org, example.com", "example.com", True),
        ("example.com:8080", "example.com", True),
        ("example.com:9090", "example.com", False),
        ("127.0.0.1", "127.0.0.1", True),
        # Unlike urllib: loopback destinations are never proxied from the environment.
        ("example.com", "localhost", True),
        ("", "localhost", True),
        ("", "app.localhost", True),
        ("", "127.0.0.2", True),
        ("", "::1", True),
        ("", "localhost.example.com", False),
        ("localhost", "localhost", True),
        ("::1", "::1", True),
        ("[::1]", "::1", True),
        ("", "example.com", False),
    ],
)
def test_no_proxy(no_proxy: str, host: str, bypassed: bool) -> None:
    url = parse_url(f"ws://{'[' + host + ']' if ':' in host else host}:8080/")
    environ = {"http_proxy": "http://p:1", "no_proxy": no_proxy}
    assert (proxy_from_environment(url, environ) is None) is bypassed


hosts = st.from_regex(r"[a-z][a-z0-9-]{0,8}(\.[a-z][a-z0-9-]{0,8}){0,3}", fullmatch=True).filter(
    lambda host: host != "localhost" and not host.endswith(".localhost")
)


@given(
    host=hosts,
    entries=st.lists(
        st.one_of(hosts, hosts.map(lambda h: "." + h), st.just("*")), min_size=1, max_size=4
    ),
)
def test_no_proxy_agrees_with_urllib(host: str, entries: list[str]) -> None:
    no_proxy = ",".join(entries)
    url = parse_url(f"ws://{host}/")
    ours = proxy_from_environment(url, {"http_proxy": "http://p:1", "no_proxy": no_proxy})
    theirs = urllib.request.proxy_bypass_environment(host, {"no": no_proxy})
    assert (ours is None) is bool(theirs)


def test_select_proxy() -> None:
    environ = {"https_proxy": "http://env:1"}
    assert select_proxy(True, WSS, environ) == ProxyURL("http", "env", 1)
    assert select_proxy(None, WSS, environ) is None
    assert select_proxy(False, WSS, environ) is None
    assert select_proxy("socks5h://s:2", WSS, environ) == ProxyURL("socks5h", "s", 2)
    assert select_proxy(True, WS, environ) is None
    with pytest.raises(ValueError, match="from the environment"):
        select_proxy(True, WSS, {"https_proxy": "ftp://bad"})
    with pytest.raises(TypeError, match="proxy must be"):
        select_proxy(3, WSS, environ)  # type: ignore[arg-type]


# -- CONNECT ---------------------------------------------------------------------------


def test_connect_request() -> None:
    request = connect_request("example.com", 443, parse_proxy_url("http://p:1"))
    assert request == b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    request = connect_request("::1", 8443, parse_proxy_url("http://p:1"))
    assert request.startswith(b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n")


def test_connect_request_carries_basic_credentials() -> None:
    proxy = parse_proxy_url("http://al%C3%AFce:p%3Ass@p:1")
    request = connect_request("example.com", 80, proxy)
    line = next(x for x in request.split(b"\r\n") if x.startswith(b"Proxy-Authorization"))
    token = line.split(b" ")[-1]
    assert base64.b64decode(token) == "alïce:p:ss".encode()


@pytest.mark.parametrize("host", ["evil\r\nX: y", "a b"])
def test_connect_request_refuses_header_injection(host: str) -> None:
    with pytest.raises(ValueError, match="invalid host"):
        connect_request(host, 80, parse_proxy_url("http://p:1"))


def response() -> ConnectResponse:
    return ConnectResponse(parse_proxy_url("http://p:1"), "example.com", 443)


def test_a_2xx_answer_opens_the_tunnel_and_keeps_what_follows() -> None:
    r = response()
    assert not r.receive_data(b"HTTP/1.1 200 Connection")
    assert not r.receive_data(b" established\r\nVia: p\r\n\r")
    assert r.receive_data(b"\nserver bytes")
    assert (r.status_code, r.reason) == (200, "Connection established")
    assert r.headers == [("Via", "p")]
    assert r.trailing_data == b"server bytes"
    with pytest.raises(RuntimeError):
        r.receive_data(b"more")


def test_http_1_0_and_no_reason_are_accepted() -> None:
    r = response()
    assert r.receive_data(b"HTTP/1.0 200\r\n\r\n")
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("status", "transient"),
    [(407, False), (403, False), (404, False), (429, True), (502, True), (503, True)],
)
def test_a_refusal_is_a_proxy_error(status: int, transient: bool) -> None:
    r = response()
    with pytest.raises(ProxyError) as info:
        r.receive_data(
            f"HTTP/1.1 {status} Nope\r\nProxy-Authenticate: Basic realm=x\r\n\r\n".encode()
        )
    error = info.value
    assert isinstance(error, ConnectionError)
    assert error.status_code == status
    assert error.transient is transient
    assert error.proxy == "http://p:1"
    assert error.header("proxy-authenticate") == "Basic realm=x"
    assert f"{status} Nope" in str(error)
    assert "example.com:443" in str(error)


def test_a_407_says_what_to_do() -> None:
    with pytest.raises(ProxyError, match="needs credentials"):
        response().receive_data(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
    r = ConnectResponse(parse_proxy_url("http://u:p@p:1"), "h", 1)
    with pytest.raises(ProxyError, match="check the credentials"):
        r.receive_data(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")


@pytest.mark.parametrize(
    "head",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
    ],
)
def test_an_answer_that_is_not_http_is_a_proxy_error(head: bytes) -> None:
    with pytest.raises(ProxyError) as info:
        response().receive_data(head)
    assert info.value.status_code is None
    assert not info.value.transient


def test_the_answer_head_is_bounded() -> None:
    r = response()
    r.receive_data(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ProxyError, match="larger than 16 KiB"):
        for _ in range(MAX_PROXY_HEAD_SIZE // 1000 + 2):
            r.receive_data(b"X-Pad: " + b"a" * 1000 + b"\r\n")
    with pytest.raises(ProxyError, match="larger than 16 KiB"):
        response().receive_data(b"HTTP/1.1 200 OK\r\n" + b"a" * MAX_PROXY_HEAD_SIZE + b"\r\n\r\n")
    with pytest.raises(ProxyError, match="too many headers"):
        response().receive_data(b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * 200 + b"\r\n")


@given(st.binary(max_size=300))
def test_any_bytes_open_the_tunnel_or_raise_proxy_error(data: bytes) -> None:
    r = response()
    try:
        r.receive_data(data)
    except ProxyError:
        pass


def test_a_proxy_that_closes_is_transient() -> None:
    error = response().closed()
    assert error.transient
    assert "closed the connection before answering" in str(error)


@pytest.mark.parametrize(
    ("scheme", "code", "closed", "transient"),
    [
        ("socks5", 0x05, False, True),  # connection refused by the server
        ("socks5", 0x04, False, True),  # host unreachable
        ("socks5", 0x01, False, True),  # general failure
        ("socks5", 0x02, False, False),  # not allowed by the ruleset
        ("socks5", 0x07, False, False),  # command not supported
        ("socks5", None, False, False),  # bad credentials: no reply code
        ("socks5h", None, True, True),  # closed before answering
        ("socks4", 0x5B, False, True),
        ("socks4", 0x5D, False, False),
    ],
)
def test_socks_failures(scheme: str, code: int | None, closed: bool, transient: bool) -> None:
    proxy = parse_proxy_url(f"{scheme}://s:1")
    error = socks_error(proxy, "example.com", 443, "it failed", code, closed)
    assert error.transient is transient
    assert error.status_code is None
    assert str(error) == f"proxy {scheme}://s:1 failed: it failed (tunnel to example.com:443)"
