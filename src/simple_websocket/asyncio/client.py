"""Opening a client connection: TCP (or a proxy tunnel), optional TLS and the handshake."""

from __future__ import annotations

import asyncio
import os
import ssl as ssl_module
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import OpenTimeout, ProxyError
from ..sansio.handshake import WSURL, ClientHandshake, tls_failure
from ..sansio.limits import UNSET, Unset
from ..sansio.options import Compression
from ..sansio.proxy import (
    SOCKS_EXTRA,
    ConnectResponse,
    ProxyURL,
    connect_request,
    select_proxy,
    socks_error,
)
from .connection import Connection, StreamProtocol

__all__ = ["open_connection"]

#: python-socks' own timeout, never reached: ``open_timeout`` bounds the whole opening.
_NO_TIMEOUT = 1e9


async def open_connection(
    conn: Connection,
    url: WSURL,
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    ssl_context: ssl_module.SSLContext | None = None,
    compression: Compression = True,
    open_timeout: float | None = 10.0,
    proxy: str | bool | None = None,
    proxy_ssl_context: ssl_module.SSLContext | None = None,
    user_agent: str | Unset | None = UNSET,
    origin: str | None = None,
    unix_socket: str | None = None,
) -> list[tuple[str, str]]:
    """Connect ``conn`` to ``url`` and perform the opening handshake.

    Args:
        conn: The connection to attach.
        url: Where to connect.
        subprotocols: Subprotocols to offer.
        headers: Extra request headers.
        ssl_context: TLS settings for a ``wss://`` server (also through a proxy).
        compression: Offer permessage-deflate.
        open_timeout: Seconds for the proxy tunnel, TCP, TLS and the handshake
            together, or ``None``.
        proxy: ``True`` to use the proxy the environment sets for ``url``, ``None``
            or ``False`` to connect directly, or a proxy URL.
        proxy_ssl_context: TLS settings for an ``https://`` proxy.
        user_agent: The ``User-Agent`` header (``UNSET``: the default; ``None``:
            none).
        origin: The ``Origin`` header, or ``None``.
        unix_socket: Connect to this Unix socket path instead of the URL's host and
            port (which still make the ``Host`` header and, for ``wss://``, the name
            the certificate is checked against). No proxy is used.

    Returns:
        The handshake response headers.

    Raises:
        OpenTimeout: Opening took longer than ``open_timeout``.
        HandshakeRejected: The server answered with a status other than 101.
        HandshakeError: The server's response is not a valid handshake response.
        ProxyError: The proxy refused or failed to open the tunnel.
        ImportError: A SOCKS proxy was asked for and python-socks is not installed.
        ValueError: The proxy URL is invalid.
        OSError: The connection could not be made (refused, unreachable, name not
            resolved, TLS certificate not trusted, ...); on the way to a proxy, a
            note names it.

    Cancellation closes the transport, if one was opened.
    """
    loop = asyncio.get_running_loop()
    # The connection runs on this loop: _attach() need not ask for it (on Python
    # 3.11, get_running_loop() makes a getpid() system call).
    conn._loop = loop
    via = None if unix_socket is not None else select_proxy(proxy, url, os.environ)
    handshake = ClientHandshake(
        url, subprotocols, headers, compression, user_agent=user_agent, origin=origin
    )
    done: asyncio.Future[None] = loop.create_future()
    protocol = StreamProtocol()

    def on_data(data: bytes) -> None:
        if done.done():
            return
        try:
            complete = handshake.receive_data(data)
        except Exception as exc:
            done.set_exception(exc)
            return
        if complete:
            assert protocol.transport is not None
            conn._attach(protocol.transport, handshake.extensions, handshake.subprotocol)
            protocol.attach(conn)
            done.set_result(None)
            if handshake.trailing_data:
                # Frames that arrived in the same read as the 101 response.
                conn._data_received(handshake.trailing_data)

    def on_lost(exc: BaseException | None) -> None:
        if not done.done():
            if exc is None or isinstance(exc, (ConnectionResetError, ConnectionAbortedError)):
                error = url.closed_early()
                error.__cause__ = exc
                exc = error
            done.set_exception(exc)

    protocol.on_handshake_data = on_data
    protocol.on_handshake_lost = on_lost

    context: ssl_module.SSLContext | None = None
    if url.secure:
        context = ssl_context or ssl_module.create_default_context(ssl_module.Purpose.SERVER_AUTH)
    transport: asyncio.Transport | None = None
    try:
        async with asyncio.timeout(open_timeout):
            if via is None:
                try:
                    if unix_socket is not None:
                        base, _ = await loop.create_unix_connection(
                            lambda: protocol,
                            unix_socket,
                            ssl=context,
                            server_hostname=url.host if context is not None else None,
                        )
                    else:
                        base, _ = await loop.create_connection(
                            lambda: protocol,
                            url.host,
                            url.port,
                            ssl=context,
                            server_hostname=url.host if context is not None else None,
                        )
                except OSError as exc:
                    explained = tls_failure(exc, url) if context is not None else None
                    if explained is None:
                        raise
                    raise explained from exc
                assert isinstance(base, asyncio.Transport)
                transport = base
            elif via.is_http:
                transport = await _http_tunnel(loop, protocol, url, via, context, proxy_ssl_context)
            else:
                transport = await _socks_tunnel(loop, protocol, url, via, context)
            transport.write(handshake.request)
            await done
    except TimeoutError:
        if transport is not None:
            transport.abort()
        raise OpenTimeout(open_timeout or 0.0) from None
    except BaseException:
        if transport is not None:
            transport.abort()
        # The transport's end may reach the protocol later (a TLS session started
        # over a tunnel reports it): nobody waits for the handshake any more.
        if not done.done():
            done.cancel()
        elif not done.cancelled():
            done.exception()
        raise
    return handshake.response_headers


def _note_proxy(exc: BaseException, proxy: ProxyURL) -> None:
    """Name the proxy on a network error met on the way to it."""
    if isinstance(exc, OSError):
        exc.add_note(f"while connecting through the proxy {proxy.display}")


class _TunnelProtocol(asyncio.Protocol):
    """Reads the proxy's answer to ``CONNECT``; pauses reading once the tunnel is open."""

    def __init__(self, response: ConnectResponse, done: asyncio.Future[None]) -> None:
        self.response = response
        self.done = done
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            # Only reachable if the proxy sent more before reading was paused.
            self.response.trailing_data += data
            return
        try:
            opened = self.response.receive_data(data)
        except ProxyError as exc:
            self.done.set_exception(exc)
            return
        if opened:
            assert self.transport is not None
            self.transport.pause_reading()
            self.done.set_result(None)

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc if exc is not None else self.response.closed())


async def _http_tunnel(
    loop: asyncio.AbstractEventLoop,
    protocol: StreamProtocol,
    url: WSURL,
    proxy: ProxyURL,
    context: ssl_module.SSLContext | None,
    proxy_ssl_context: ssl_module.SSLContext | None,
) -> asyncio.Transport:
    """Open a tunnel through an HTTP(S) proxy and hand it to ``protocol``.

    For ``wss://`` the TLS session with the server runs inside the tunnel (inside
    the TLS session with an ``https://`` proxy), checked against ``url.host``.
    """
    done: asyncio.Future[None] = loop.create_future()
    response = ConnectResponse(proxy, url.host, url.port)
    tunnel = _TunnelProtocol(response, done)
    proxy_context: ssl_module.SSLContext | None = None
    if proxy.scheme == "https":
        proxy_context = proxy_ssl_context or ssl_module.create_default_context(
            ssl_module.Purpose.SERVER_AUTH
        )
    try:
        raw, _ = await loop.create_connection(
            lambda: tunnel,
            proxy.host,
            proxy.port,
            ssl=proxy_context,
            server_hostname=proxy.host if proxy_context is not None else None,
        )
    except OSError as exc:
        _note_proxy(exc, proxy)
        raise
    assert isinstance(raw, asyncio.Transport)
    try:
        raw.write(connect_request(url.host, url.port, proxy))
        try:
            await done
        except OSError as exc:
            _note_proxy(exc, proxy)
            raise
        if context is None:
            raw.set_protocol(protocol)
            protocol.connection_made(raw)
            raw.resume_reading()
            if response.trailing_data:
                protocol.data_received(response.trailing_data)
            return raw
        if response.trailing_data:
            raise ProxyError(
                f"proxy {proxy.display} sent data before the TLS handshake with the server",
                response.status_code,
                proxy=proxy.display,
            )
        if proxy_context is not None:
            _repair_force_close(raw)
        tls = await loop.start_tls(raw, protocol, context, server_hostname=url.host)
        assert isinstance(tls, asyncio.Transport)
        protocol.connection_made(tls)
        return tls
    except BaseException:
        raw.abort()
        raise


def _repair_force_close(transport: asyncio.Transport) -> None:
    """Let a TLS session that fails inside a TLS transport end with its own error.

    In Python 3.11, a failed TLS handshake calls ``_force_close(exc)`` on the
    transport below it; on a TLS transport that method passes ``exc`` to its
    protocol's ``_abort()``, which takes no argument, so the handshake's error
    (say, an untrusted certificate) turns into a ``TypeError``. Where that is the
    case, this transport's ``_force_close`` aborts it instead.
    """
    ssl_protocol = getattr(transport, "_ssl_protocol", None)
    abort = getattr(type(ssl_protocol), "_abort", None)
    code = getattr(abort, "__code__", None)
    if code is not None and code.co_argcount == 1:
        setattr(transport, "_force_close", lambda exc: transport.abort())  # noqa: B010


def _import_socks() -> Callable[..., Any]:
    """python-socks' asyncio ``Proxy`` class, or an ``ImportError`` naming the extra."""
    try:
        from python_socks.async_.asyncio import Proxy
    except ImportError as exc:
        raise ImportError(f"SOCKS proxies need python-socks: {SOCKS_EXTRA}") from exc
    return Proxy


async def _socks_tunnel(
    loop: asyncio.AbstractEventLoop,
    protocol: StreamProtocol,
    url: WSURL,
    proxy: ProxyURL,
    context: ssl_module.SSLContext | None,
) -> asyncio.Transport:
    """Open a tunnel through a SOCKS proxy (python-socks) and hand it to ``protocol``."""
    proxy_class = _import_socks()
    from python_socks import ProxyError as SocksError
    from python_socks import ProxyType

    kind = ProxyType.SOCKS4 if proxy.scheme == "socks4" else ProxyType.SOCKS5
    client = proxy_class(
        kind,
        proxy.host,
        proxy.port,
        username=proxy.username,
        password=proxy.password,
        # socks5h:// lets the proxy resolve the server's name; the others resolve here.
        rdns=proxy.scheme == "socks5h",
        loop=loop,
    )
    try:
        sock = await client.connect(url.host, url.port, timeout=_NO_TIMEOUT)
    except SocksError as exc:
        closed = type(exc.__cause__).__name__ == "IncompleteReadError"
        raise socks_error(proxy, url.host, url.port, str(exc), exc.error_code, closed) from exc
    except OSError as exc:
        _note_proxy(exc, proxy)
        raise
    try:
        transport, _ = await loop.create_connection(
            lambda: protocol,
            sock=sock,
            ssl=context,
            server_hostname=url.host if context is not None else None,
        )
    except BaseException:
        sock.close()
        raise
    assert isinstance(transport, asyncio.Transport)
    return transport
