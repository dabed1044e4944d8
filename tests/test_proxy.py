"""The asyncio client through proxies: real ones (pproxy) and a scripted one.

Every proxy and server listens on 127.0.0.1. pproxy (HTTP with and without
credentials, HTTP over TLS, SOCKS5 with and without credentials, SOCKS4) runs in a
subprocess for the whole session (the ``pproxy`` fixture in conftest.py).
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme

import simple_websocket
from simple_websocket import AioClient, OpenTimeout, ProxyError, ReconnectingClient
from simple_websocket.reconnect import Backoff, is_retryable
from simple_websocket.testing import Script, ScriptedServer
from tests.proxy_support import (
    CREDENTIALS,
    KINDS,
    PASSWORD,
    USER,
    PProxy,
    ScriptedProxy,
    header_of,
    port_of_kind,
    proxy_url,
    trusting,
)

pytestmark = pytest.mark.timeout(30)


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.fixture
async def server() -> AsyncIterator[Any]:
    async with simple_websocket.serve(echo) as running:
        yield running


@pytest.fixture
async def tls_server(proxy_ca: trustme.CA) -> AsyncIterator[Any]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    proxy_ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    async with simple_websocket.serve(echo, ssl=context) as running:
        yield running


def options_for(kind: str, ca: trustme.CA) -> dict[str, Any]:
    return {"proxy_ssl_context": trusting(ca)} if kind == "https" else {}


# -- through real proxies --------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
async def test_ws_through_each_kind_of_proxy(
    kind: str, pproxy: PProxy, server: Any, proxy_ca: trustme.CA
) -> None:
    url = f"ws://localhost:{server.port}/"
    async with AioClient.connect(
        url, proxy=proxy_url(pproxy, kind), open_timeout=10, **options_for(kind, proxy_ca)
    ) as ws:
        # The TCP connection goes to the proxy, not to the server.
        assert ws.remote_address[1] == port_of_kind(pproxy, kind)
        for n in range(5):
            await ws.send(f"hello {n}")
            assert await ws.receive(timeout=5) == f"hello {n}"
        await ws.send(b"\x00" * 200_000)
        assert await ws.receive(timeout=5) == b"\x00" * 200_000


@pytest.mark.parametrize("kind", list(KINDS))
async def test_wss_through_each_kind_of_proxy(
    kind: str, pproxy: PProxy, tls_server: Any, proxy_ca: trustme.CA
) -> None:
    url = f"wss://localhost:{tls_server.port}/"
    async with AioClient.connect(
        url,
        ssl_context=trusting(proxy_ca),
        proxy=proxy_url(pproxy, kind),
        open_timeout=10,
        **options_for(kind, proxy_ca),
    ) as ws:
        assert ws.remote_address[1] == port_of_kind(pproxy, kind)
        await ws.send("over TLS through a proxy")
        assert await ws.receive(timeout=5) == "over TLS through a proxy"
        await ws.send(b"x" * 100_000)
        assert await ws.receive(timeout=5) == b"x" * 100_000


@pytest.mark.parametrize("kind", ["http", "https", "socks5"])
async def test_the_server_certificate_is_checked_through_a_proxy(
    kind: str, pproxy: PProxy, proxy_ca: trustme.CA
) -> None:
    """``ssl_context`` and the name check apply to the server, not to the proxy."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    proxy_ca.issue_cert("other.example").configure_cert(context)
    async with simple_websocket.serve(echo, ssl=context) as other:
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            await AioClient.connect(
                f"wss://localhost:{other.port}/",
                ssl_context=trusting(proxy_ca),
                proxy=proxy_url(pproxy, kind),
                **options_for(kind, proxy_ca),
            )


@pytest.mark.parametrize("kind", ["http", "https", "socks5h"])
async def test_the_server_certificate_needs_a_trusted_ca_through_a_proxy(
    kind: str, pproxy: PProxy, tls_server: Any, proxy_ca: trustme.CA
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await AioClient.connect(
            f"wss://localhost:{tls_server.port}/",
            proxy=proxy_url(pproxy, kind),
            **options_for(kind, proxy_ca),
        )


async def test_an_https_proxy_certificate_is_checked(pproxy: PProxy, server: Any) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await AioClient.connect(server.url, proxy=pproxy.url("https"))
    assert any("through the proxy https://127.0.0.1" in n for n in info.value.__notes__)


async def test_wrong_or_missing_credentials(pproxy: PProxy, server: Any) -> None:
    with pytest.raises(ProxyError) as info:
        await AioClient.connect(server.url, proxy=pproxy.url("http_auth"))
    assert info.value.status_code == 407
    assert not info.value.transient
    assert not is_retryable(info.value)
    with pytest.raises(ProxyError) as info:
        await AioClient.connect(server.url, proxy=pproxy.url("http_auth", credentials="a:b"))
    assert info.value.status_code == 407
    # pproxy closes the connection on wrong SOCKS credentials (see the scripted
    # SOCKS tests for a proxy that answers).
    with pytest.raises(ProxyError) as info:
        await AioClient.connect(server.url, proxy=pproxy.url("socks5_auth", credentials="a:b"))
    assert info.value.status_code is None
    # With the right ones, and no credentials cached by address between connections.
    async with AioClient.connect(server.url, proxy=proxy_url(pproxy, "socks5_auth")) as ws:
        await ws.send("authenticated")
        assert await ws.receive(timeout=5) == "authenticated"
    with pytest.raises(ProxyError):
        await AioClient.connect(server.url, proxy=pproxy.url("socks5_auth"))


async def test_a_proxy_that_cannot_reach_the_server_is_transient(pproxy: PProxy) -> None:
    async with simple_websocket.serve(echo) as gone:
        port = gone.port
    with pytest.raises(ProxyError) as info:
        await AioClient.connect(f"ws://127.0.0.1:{port}/", proxy=pproxy.url("http"))
    assert info.value.transient
    assert is_retryable(info.value)
    # pproxy's SOCKS listeners grant the tunnel first, then close it: the
    # handshake finds the connection closed, a network error, retried too.
    for kind in ("socks5", "socks4"):
        with pytest.raises((ProxyError, OSError)) as failure:
            await AioClient.connect(f"ws://127.0.0.1:{port}/", proxy=pproxy.url(kind))
        assert is_retryable(failure.value)


SOCKS5_NO_AUTH = b"\x05\x00"
SOCKS5_USER_PASSWORD = b"\x05\x02"


def socks5_reply(code: int) -> bytes:
    return b"\x05" + bytes([code]) + b"\x00\x01" + b"\x00" * 6


@pytest.mark.parametrize(
    ("replies", "proxy", "transient"),
    [
        # Credentials refused (RFC 1929: status 1).
        ([SOCKS5_USER_PASSWORD, b"\x01\x01"], "socks5://u:p@{}", False),
        ([SOCKS5_NO_AUTH, socks5_reply(0x02)], "socks5://{}", False),  # ruleset
        ([SOCKS5_NO_AUTH, socks5_reply(0x07)], "socks5h://{}", False),  # command
        ([SOCKS5_NO_AUTH, socks5_reply(0x05)], "socks5://{}", True),  # refused
        ([SOCKS5_NO_AUTH, socks5_reply(0x04)], "socks5://{}", True),  # unreachable
        ([b"\x00\x5b" + b"\x00" * 6], "socks4://{}", True),
    ],
)
async def test_socks_failures_are_classified(
    replies: list[bytes], proxy: str, transient: bool
) -> None:
    with ScriptedProxy(b"", socks_replies=replies) as scripted:
        address = f"127.0.0.1:{scripted.port}"
        client = AioClient.connect(
            "ws://127.0.0.1:9/",
            proxy=proxy.format(address),
            reconnect=Backoff(initial=0.001, maximum=0.001, max_attempts=2),
        )
        with pytest.raises(ProxyError) as info:
            await client
    assert info.value.transient is transient
    assert info.value.status_code is None
    assert info.value.proxy is not None and address in info.value.proxy
    assert client.attempts == (2 if transient else 1)


async def test_a_proxy_that_does_not_listen_is_a_network_error() -> None:
    with ScriptedProxy(b"") as scripted:
        url = scripted.url
    for proxy in (url, url.replace("http://", "socks5://")):
        with pytest.raises(OSError) as info:
            await AioClient.connect("ws://127.0.0.1:9/", proxy=proxy)
        assert is_retryable(info.value)
        assert any(str(scripted.port) in note for note in info.value.__notes__)


# -- a scripted proxy --------------------------------------------------------------


async def test_the_connect_request_and_basic_credentials() -> None:
    with ScriptedProxy(b"HTTP/1.1 403 Forbidden\r\n\r\n") as scripted:
        proxy = scripted.url.replace("http://", f"http://{CREDENTIALS}@")
        with pytest.raises(ProxyError, match="403 Forbidden") as info:
            await AioClient.connect("wss://example.com:8443/x", proxy=proxy)
        assert info.value.status_code == 403
        assert not is_retryable(info.value)
        assert PASSWORD not in str(info.value)
    (request,) = scripted.requests
    assert request.startswith(b"CONNECT example.com:8443 HTTP/1.1\r\n")
    assert header_of(request, "Host") == "example.com:8443"
    import base64

    token = header_of(request, "Proxy-Authorization")
    assert token is not None and token.startswith("Basic ")
    assert base64.b64decode(token[6:]).decode() == f"{USER}:{PASSWORD}"


async def test_a_407_carries_the_challenge() -> None:
    answer = (
        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
        b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 5\r\n\r\nnope!'
    )
    with ScriptedProxy(answer) as scripted:
        with pytest.raises(ProxyError, match="needs credentials") as info:
            await AioClient.connect("ws://example.com/", proxy=scripted.url)
    assert info.value.header("Proxy-Authenticate") == 'Basic realm="corp"'


async def test_a_502_is_retried_by_the_reconnecting_client() -> None:
    with ScriptedProxy(b"HTTP/1.1 502 Bad Gateway\r\n\r\n") as scripted:
        client = AioClient.connect(
            "ws://example.com/",
            proxy=scripted.url,
            reconnect=Backoff(initial=0.001, maximum=0.001, max_attempts=3),
        )
        with pytest.raises(ProxyError) as info:
            await client
        assert info.value.status_code == 502
        assert client.attempts == 3
        assert scripted.connections == 3


@pytest.mark.parametrize("status", [407, 403])
async def test_a_refusal_is_fatal_for_the_reconnecting_client(status: int) -> None:
    with ScriptedProxy(f"HTTP/1.1 {status} No\r\n\r\n".encode()) as scripted:
        client = AioClient.connect(
            "ws://example.com/",
            proxy=scripted.url,
            reconnect=Backoff(initial=0.001, maximum=0.001, max_attempts=5),
        )
        with pytest.raises(ProxyError) as info:
            await client
        assert info.value.status_code == status
        assert client.attempts == 1


async def test_open_timeout_covers_a_proxy_that_does_not_answer() -> None:
    for answer in ("stall", "silent"):
        with ScriptedProxy(answer) as scripted:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(OpenTimeout):
                await AioClient.connect("ws://example.com/", proxy=scripted.url, open_timeout=0.2)
            assert loop.time() - start < 5


async def test_a_proxy_that_closes_before_answering() -> None:
    with ScriptedProxy("close") as scripted:
        with pytest.raises(ProxyError, match="closed the connection") as info:
            await AioClient.connect("ws://example.com/", proxy=scripted.url)
    assert info.value.transient


async def test_a_proxy_that_sends_bytes_before_tls_is_refused() -> None:
    with ScriptedProxy(b"HTTP/1.1 200 OK\r\n\r\nsurprise") as scripted:
        with pytest.raises(ProxyError, match="before the TLS handshake"):
            await AioClient.connect("wss://example.com/", proxy=scripted.url)


async def test_bytes_after_the_answer_reach_the_handshake(server: Any) -> None:
    """A ws:// tunnel keeps what came with the proxy's answer (here: a bad answer)."""
    with ScriptedProxy(b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 404 Not Found\r\n\r\n") as scripted:
        with pytest.raises(simple_websocket.HandshakeRejected) as info:
            await AioClient.connect("ws://example.com/", proxy=scripted.url)
    assert info.value.status_code == 404


# -- the environment -------------------------------------------------------------------


async def test_the_environment_is_read_by_default(
    monkeypatch: pytest.MonkeyPatch, server: Any
) -> None:
    # A name the proxy would resolve: it answers 403 first, so nothing is looked up.
    remote = "ws://feed.example:8080/"
    with (
        ScriptedProxy(b"HTTP/1.1 403 Forbidden\r\n\r\n") as plain,
        ScriptedProxy(b"HTTP/1.1 403 Forbidden\r\n\r\n") as secure,
    ):
        monkeypatch.setenv("HTTP_PROXY", plain.url)
        with pytest.raises(ProxyError):
            await AioClient.connect(remote)
        assert [request.split(b"\r\n")[0] for request in plain.requests] == [
            b"CONNECT feed.example:8080 HTTP/1.1"
        ]
        # wss:// reads https_proxy, not http_proxy.
        monkeypatch.setenv("https_proxy", secure.url)
        with pytest.raises(ProxyError):
            await AioClient.connect("wss://feed.example/")
        assert (len(plain.requests), len(secure.requests)) == (1, 1)
        # A loopback server is reached directly, proxy variables or not.
        async with AioClient.connect(server.url) as ws:
            await ws.send("loopback")
            assert await ws.receive(timeout=5) == "loopback"
        # proxy=None ignores the environment.
        async with AioClient.connect(server.url, proxy=None) as ws:
            await ws.send("direct")
            assert await ws.receive(timeout=5) == "direct"
        assert (len(plain.requests), len(secure.requests)) == (1, 1)


async def test_an_invalid_proxy_variable_names_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("https_proxy", "ftp://proxy")
    with pytest.raises(ValueError, match="environment"):
        await AioClient.connect("wss://example.com/")


# -- the option itself ----------------------------------------------------------------


def test_invalid_proxy_options_raise_at_once() -> None:
    with pytest.raises(TypeError, match="proxy must be"):
        AioClient.connect("ws://example.com/", proxy=42)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="scheme must be one of"):
        AioClient.connect("ws://example.com/", proxy="ftp://proxy")


async def test_socks_without_python_socks_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "python_socks.async_.asyncio", None)
    with pytest.raises(ImportError, match=r'pip install "simple-websocket\[socks\]"'):
        await AioClient.connect("ws://example.com/", proxy="socks5://127.0.0.1:9")


async def test_the_proxy_callable_is_evaluated_per_attempt(pproxy: PProxy) -> None:
    server = await ScriptedServer(Script(echo=True)).start()
    chosen: list[str] = []
    order = [pproxy.url("http"), pproxy.url("socks5")]

    async def pick() -> str:
        chosen.append(order[len(chosen) % 2])
        return chosen[-1]

    try:
        client = AioClient.connect(
            server.url, proxy=pick, reconnect=Backoff(initial=0.01, maximum=0.05, jitter=0)
        )
        async with client:
            assert client.connection.remote_address[1] == pproxy.ports["http"]
            await server.restart()
            await client.send("after restart")
            assert await client.receive(timeout=10) == "after restart"
            assert client.connection.remote_address[1] == pproxy.ports["socks5"]
    finally:
        await server.stop()
    assert chosen[:2] == order


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_the_reconnecting_client_survives_server_restarts_through_a_proxy(
    kind: str, pproxy: PProxy
) -> None:
    server = await ScriptedServer(Script(echo=False)).start()
    attempts: asyncio.Queue[None] = asyncio.Queue()
    connected: asyncio.Queue[Any] = asyncio.Queue()

    def via() -> str:
        attempts.put_nowait(None)
        return proxy_url(pproxy, kind)

    try:
        client = AioClient.connect(
            server.url,
            proxy=via,
            reconnect=Backoff(initial=0.01, maximum=0.05, jitter=0),
            on_connect=connected.put_nowait,
        )
        assert isinstance(client, ReconnectingClient)
        async with client:
            await connected.get()
            sent = 0
            for _ in range(2):
                for _ in range(10):
                    await client.send(str(sent))
                    sent += 1
                await server.wait_for_messages(sent)
                while not attempts.empty():
                    attempts.get_nowait()
                await server.stop()
                # Attempts while the server is down fail at the proxy and are retried.
                for _ in range(3):
                    await attempts.get()
                await server.start()
                await connected.get()
            for _ in range(10):
                await client.send(str(sent))
                sent += 1
            await server.wait_for_messages(sent)
        assert server.received == [str(n) for n in range(sent)]
        assert client.reconnects == 2
        assert client.attempts >= 7
    finally:
        await server.stop()


async def test_async_for_connections_through_a_proxy(pproxy: PProxy) -> None:
    server = await ScriptedServer(Script(echo=True, close_after=1, close_code=1012)).start()
    seen = 0
    try:
        async for ws in AioClient.connect(
            server.url, proxy=pproxy.url("socks4"), retry=Backoff(initial=0.01, jitter=0)
        ):
            assert ws.remote_address[1] == pproxy.ports["socks4"]
            await ws.send(f"round {seen}")
            assert await ws.receive(timeout=5) == f"round {seen}"
            seen += 1
            if seen == 3:
                await ws.close()
                break
            # The server closes with 1012 after one message: the next round reconnects.
            await ws.wait_closed()
            assert ws.close_reason == 1012
    finally:
        await server.stop()
    assert server.connections == 3
