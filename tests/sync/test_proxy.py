"""The sync ``Client`` through proxies: pproxy (see conftest.py) and a scripted proxy.

The servers are ``websockets``' sync servers in threads, on 127.0.0.1.
"""

from __future__ import annotations

import ssl
import sys
import threading
import time
from typing import Any

import pytest
import trustme
from websockets.sync.server import ServerConnection as WSServerConnection

from simple_websocket import OpenTimeout, ProxyError
from simple_websocket.reconnect import is_retryable
from simple_websocket.ws import Client
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
from tests.sync.test_client import port_of, ws_server

pytestmark = pytest.mark.timeout(20)


def echo(ws: WSServerConnection) -> None:
    for message in ws:
        ws.send(message)


def options_for(kind: str, ca: trustme.CA) -> dict[str, Any]:
    return {"proxy_ssl_context": trusting(ca)} if kind == "https" else {}


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def exchange(ws: Client, count: int = 5) -> None:
    for n in range(count):
        ws.send(f"hello {n}")
        assert ws.receive(timeout=5) == f"hello {n}"
    ws.send(b"\x01" * 150_000)
    assert ws.receive(timeout=5) == b"\x01" * 150_000


@pytest.mark.parametrize("kind", list(KINDS))
def test_ws_through_each_kind_of_proxy(kind: str, pproxy: PProxy, proxy_ca: trustme.CA) -> None:
    with ws_server(echo) as server:
        ws = Client.connect(
            f"ws://localhost:{port_of(server)}/",
            proxy=proxy_url(pproxy, kind),
            **options_for(kind, proxy_ca),
        )
        try:
            assert ws.remote_address[1] == port_of_kind(pproxy, kind)
            exchange(ws)
        finally:
            ws.close()
        assert ws.close_reason == 1000


@pytest.mark.parametrize("kind", list(KINDS))
def test_wss_through_each_kind_of_proxy(kind: str, pproxy: PProxy, proxy_ca: trustme.CA) -> None:
    with ws_server(echo, ssl=server_context(proxy_ca, "localhost")) as server:
        url = f"wss://localhost:{port_of(server)}/"
        ws = Client.connect(
            url,
            ssl_context=trusting(proxy_ca),
            proxy=proxy_url(pproxy, kind),
            ping_interval=0.05,
            **options_for(kind, proxy_ca),
        )
        try:
            assert ws.is_secure
            assert ws.remote_address[1] == port_of_kind(pproxy, kind)
            exchange(ws)
            # Pings and pongs flow while the reader waits with a deadline.
            deadline = time.monotonic() + 5
            while ws.latency is None and time.monotonic() < deadline:
                ws.receive(timeout=0.05)
            assert ws.latency is not None
        finally:
            ws.close()
        assert ws.close_reason == 1000


def test_tls_in_tls_with_concurrent_senders(pproxy: PProxy, proxy_ca: trustme.CA) -> None:
    """Through an https:// proxy, several threads send while the reader receives."""
    with ws_server(echo, ssl=server_context(proxy_ca, "localhost")) as server:
        ws = Client.connect(
            f"wss://localhost:{port_of(server)}/",
            ssl_context=trusting(proxy_ca),
            proxy=pproxy.url("https"),
            proxy_ssl_context=trusting(proxy_ca),
        )
        try:
            per_thread, threads = 50, 4

            def send_some(t: int) -> None:
                for n in range(per_thread):
                    ws.send(f"{t}:{n}:" + "x" * (n * 97 % 5000))

            senders = [threading.Thread(target=send_some, args=(t,)) for t in range(threads)]
            for thread in senders:
                thread.start()
            received = [ws.receive(timeout=5) for _ in range(per_thread * threads)]
            for thread in senders:
                thread.join(5)
            for t in range(threads):
                mine = [m for m in received if isinstance(m, str) and m.startswith(f"{t}:")]
                assert [int(m.split(":")[1]) for m in mine] == list(range(per_thread))
        finally:
            ws.close()
        assert ws.close_reason == 1000


@pytest.mark.parametrize("kind", ["http", "https", "socks5"])
def test_the_server_certificate_is_checked_through_a_proxy(
    kind: str, pproxy: PProxy, proxy_ca: trustme.CA
) -> None:
    with ws_server(echo, ssl=server_context(proxy_ca, "other.example")) as server:
        url = f"wss://localhost:{port_of(server)}/"
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            Client.connect(
                url,
                ssl_context=trusting(proxy_ca),
                proxy=proxy_url(pproxy, kind),
                **options_for(kind, proxy_ca),
            )
        with pytest.raises(ssl.SSLCertVerificationError):
            Client.connect(url, proxy=proxy_url(pproxy, kind), **options_for(kind, proxy_ca))


def test_an_https_proxy_certificate_is_checked(pproxy: PProxy) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        Client.connect("ws://127.0.0.1:9/", proxy=pproxy.url("https"))
    assert any("through the proxy https://127.0.0.1" in n for n in info.value.__notes__)


def test_refusals() -> None:
    with ScriptedProxy(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n") as scripted:
        proxy = scripted.url.replace("http://", f"http://{CREDENTIALS}@")
        with pytest.raises(ProxyError, match="check the credentials") as info:
            Client.connect("wss://example.com:8443/", proxy=proxy)
        assert info.value.status_code == 407
        assert not is_retryable(info.value)
    (request,) = scripted.requests
    assert request.startswith(b"CONNECT example.com:8443 HTTP/1.1\r\n")
    import base64

    token = header_of(request, "Proxy-Authorization")
    assert token is not None
    assert base64.b64decode(token[6:]).decode() == f"{USER}:{PASSWORD}"
    with ScriptedProxy(b"HTTP/1.1 502 Bad Gateway\r\n\r\n") as scripted:
        with pytest.raises(ProxyError) as info:
            Client.connect("ws://example.com/", proxy=scripted.url)
        assert info.value.status_code == 502
        assert is_retryable(info.value)
    with ScriptedProxy("close") as scripted:
        with pytest.raises(ProxyError, match="closed the connection") as info:
            Client.connect("ws://example.com/", proxy=scripted.url)
        assert info.value.transient
    with ScriptedProxy(b"", socks_replies=[b"\x05\x00", b"\x05\x02\x00\x01" + bytes(6)]) as s:
        with pytest.raises(ProxyError, match="not allowed") as info:
            Client.connect("ws://127.0.0.1:9/", proxy=f"socks5://127.0.0.1:{s.port}")
        assert not info.value.transient


def test_open_timeout_covers_the_proxy() -> None:
    for answer in ("stall", "silent"):
        with ScriptedProxy(answer) as scripted:
            start = time.monotonic()
            with pytest.raises(OpenTimeout):
                Client.connect("ws://example.com/", proxy=scripted.url, open_timeout=0.2)
            assert time.monotonic() - start < 5
    with ScriptedProxy("silent") as scripted:
        with pytest.raises(OpenTimeout):
            Client.connect(
                "ws://127.0.0.1:9/", proxy=f"socks5://127.0.0.1:{scripted.port}", open_timeout=0.2
            )


def test_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with ws_server(echo) as server, ScriptedProxy(b"HTTP/1.1 403 No\r\n\r\n") as scripted:
        monkeypatch.setenv("http_proxy", scripted.url)
        # A name the proxy would resolve: it answers 403 first, nothing is looked up.
        with pytest.raises(ProxyError):
            Client.connect("ws://feed.example:8080/")
        # A loopback server is reached directly, proxy variables or not.
        ws = Client.connect(f"ws://127.0.0.1:{port_of(server)}/")
        exchange(ws, 1)
        ws.close()
        assert len(scripted.requests) == 1


def test_socks_without_python_socks_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "python_socks.sync", None)
    with pytest.raises(ImportError, match=r'pip install "simple-websocket\[socks\]"'):
        Client.connect("ws://127.0.0.1:9/", proxy="socks4://127.0.0.1:9")


def test_invalid_proxy_options() -> None:
    with pytest.raises(TypeError, match="proxy must be"):
        Client.connect("ws://127.0.0.1:9/", proxy=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scheme must be one of"):
        Client.connect("ws://127.0.0.1:9/", proxy="gopher://x")
