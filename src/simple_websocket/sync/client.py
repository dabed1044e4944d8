"""Opening a client connection: TCP (or a proxy tunnel), optional TLS and the handshake."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl as ssl_module
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

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
from .connection import Connection

__all__ = ["open_connection"]

#: python-socks' timeout when ``open_timeout`` is ``None`` (it has no "never").
_NO_TIMEOUT = 1e9


def open_connection(
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
    """Connect ``conn`` to ``url``, perform the opening handshake and attach it.

    Args:
        conn: The connection to attach.
        url: Where to connect.
        subprotocols: Subprotocols to offer.
        headers: Extra request headers.
        ssl_context: TLS settings for a ``wss://`` server (also through a proxy).
        compression: Offer permessage-deflate.
        open_timeout: Seconds for the proxy tunnel, TCP, TLS and the handshake
            together, or ``None``. Each step waits at most for what is left; a
            SOCKS proxy's exchange, run by python-socks, is bounded per read, so a
            proxy that answers byte by byte can stretch it.
        proxy: ``True`` to use the proxy the environment sets for ``url``, ``None``
            or ``False`` to connect directly, or a proxy URL.
        proxy_ssl_context: TLS settings for an ``https://`` proxy.
        user_agent: The ``User-Agent`` header (``UNSET``: the default; ``None``:
            none).
        origin: The ``Origin`` header, or ``None``.
        unix_socket: Connect to this Unix socket path instead of the URL's host and
            port; no proxy is used.

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
    """
    via = None if unix_socket is not None else select_proxy(proxy, url, os.environ)
    handshake = ClientHandshake(
        url, subprotocols, headers, compression, user_agent=user_agent, origin=origin
    )
    deadline = None if open_timeout is None else time.monotonic() + open_timeout

    def remaining() -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    sock: Any = None
    early = b""
    try:
        if unix_socket is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(remaining())
            sock.connect(unix_socket)
        elif via is None:
            sock = socket.create_connection((url.host, url.port), timeout=remaining())
        elif via.is_http:
            sock, early = _http_tunnel(url, via, remaining, proxy_ssl_context)
        else:
            sock = _socks_tunnel(url, via, remaining)
        if url.secure:
            if early:
                raise ProxyError(
                    f"proxy {via.display if via else ''} sent data before the TLS "
                    "handshake with the server",
                    proxy=via.display if via else None,
                )
            context = ssl_context or ssl_module.create_default_context(
                ssl_module.Purpose.SERVER_AUTH
            )
            sock.settimeout(remaining())
            if isinstance(sock, ssl_module.SSLSocket):
                # TLS with the server inside the TLS session with an https:// proxy.
                inner = TunnelTLSSocket(sock, context, url.host)
                sock = inner
                inner.do_handshake(remaining)
            else:
                try:
                    sock = context.wrap_socket(sock, server_hostname=url.host)
                except OSError as exc:
                    explained = tls_failure(exc, url)
                    if explained is None:
                        raise
                    raise explained from exc
        sock.settimeout(remaining())
        sock.sendall(handshake.request)
        complete = bool(early) and handshake.receive_data(early)
        while not complete:
            sock.settimeout(remaining())
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, ConnectionAbortedError) as exc:
                raise url.closed_early() from exc
            if not data:
                raise url.closed_early()
            complete = handshake.receive_data(data)
    except TimeoutError:
        if sock is not None:
            sock.close()
        raise OpenTimeout(open_timeout or 0.0) from None
    except BaseException:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        raise
    # A TunnelTLSSocket has every socket method the engine uses.
    conn._attach(
        cast(socket.socket, sock),
        handshake.extensions,
        handshake.subprotocol,
        handshake.trailing_data,
    )
    return handshake.response_headers


def _note_proxy(exc: BaseException, proxy: ProxyURL) -> None:
    """Name the proxy on a network error met on the way to it."""
    if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
        exc.add_note(f"while connecting through the proxy {proxy.display}")


def _http_tunnel(
    url: WSURL,
    proxy: ProxyURL,
    remaining: Callable[[], float | None],
    proxy_ssl_context: ssl_module.SSLContext | None,
) -> tuple[socket.socket, bytes]:
    """Open a tunnel through an HTTP(S) proxy.

    Returns:
        The socket (an ``SSLSocket`` for an ``https://`` proxy) and the bytes that
        followed the proxy's answer.
    """
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=remaining())
    except OSError as exc:
        _note_proxy(exc, proxy)
        raise
    try:
        if proxy.scheme == "https":
            context = proxy_ssl_context or ssl_module.create_default_context(
                ssl_module.Purpose.SERVER_AUTH
            )
            sock.settimeout(remaining())
            sock = context.wrap_socket(sock, server_hostname=proxy.host)
        sock.settimeout(remaining())
        sock.sendall(connect_request(url.host, url.port, proxy))
        response = ConnectResponse(proxy, url.host, url.port)
        while True:
            sock.settimeout(remaining())
            data = sock.recv(4096)
            if not data:
                raise response.closed()
            if response.receive_data(data):
                return sock, response.trailing_data
    except BaseException as exc:
        _note_proxy(exc, proxy)
        with contextlib.suppress(OSError):
            sock.close()
        raise


def _import_socks() -> Any:
    """python-socks' synchronous ``Proxy`` class, or an ``ImportError`` naming the extra."""
    try:
        from python_socks.sync import Proxy
    except ImportError as exc:
        raise ImportError(f"SOCKS proxies need python-socks: {SOCKS_EXTRA}") from exc
    return Proxy


def _socks_tunnel(
    url: WSURL, proxy: ProxyURL, remaining: Callable[[], float | None]
) -> socket.socket:
    """Open a tunnel through a SOCKS proxy with python-socks."""
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
    )
    timeout = remaining()
    try:
        sock: socket.socket = client.connect(
            url.host, url.port, timeout=_NO_TIMEOUT if timeout is None else timeout
        )
    except SocksError as exc:
        closed = type(exc.__cause__).__name__ == "IncompleteReadError"
        raise socks_error(proxy, url.host, url.port, str(exc), exc.error_code, closed) from exc
    except OSError as exc:
        _note_proxy(exc, proxy)
        raise
    return sock


class TunnelTLSSocket:
    """A TLS session with the server inside the TLS session with an ``https://`` proxy.

    ``ssl.SSLContext.wrap_socket`` cannot wrap an ``SSLSocket`` (it would talk to the
    bare file descriptor, under the proxy's TLS), so the inner session is an
    ``SSLObject`` over memory buffers, fed from and flushed to the outer
    ``SSLSocket``. The object offers the socket methods the thread engine uses, with
    the same threading rules: one thread reads while others write.

    Writes are serialised by a lock so that TLS records leave in the order they
    were made. A read that produces records of its own (a TLS alert, a key update)
    sends them only if no write is in progress: the writer in progress sends them
    when it finishes, so a reader never waits behind a writer blocked by a peer
    that does not read.
    """

    def __init__(
        self, outer: ssl_module.SSLSocket, context: ssl_module.SSLContext, server_hostname: str
    ) -> None:
        self._outer = outer
        self._incoming = ssl_module.MemoryBIO()
        self._outgoing = ssl_module.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname
        )
        self._lock = threading.Lock()  # guards _tls, the memory buffers and _plain
        self._write_lock = threading.Lock()  # one writer of the outer socket at a time
        self._plain = bytearray()  # decrypted bytes not yet returned by recv()

    # -- TLS plumbing --------------------------------------------------------------

    def do_handshake(self, remaining: Callable[[], float | None]) -> None:
        """Run the TLS handshake with the server through the tunnel.

        Raises:
            ssl.SSLError: The handshake failed (``SSLCertVerificationError`` for a
                certificate not trusted or not matching the server's name).
            TimeoutError: The outer socket's timeout (set from ``remaining``) passed.
            ConnectionResetError: The proxy closed the tunnel.
        """
        while True:
            with self._lock:
                try:
                    self._tls.do_handshake()
                    finished = True
                except ssl_module.SSLWantReadError:
                    finished = False
            self._flush(block=True)
            if finished:
                return
            self._outer.settimeout(remaining())
            if not self._feed():
                raise ConnectionResetError("the proxy closed the tunnel during the TLS handshake")

    def _feed(self) -> bool:
        """Read once from the outer socket into the TLS input; ``False`` at EOF."""
        data = self._outer.recv(65536)
        with self._lock:
            if not data:
                self._incoming.write_eof()
                return False
            self._incoming.write(data)
        return True

    def _flush(self, block: bool) -> None:
        """Send the TLS output; see the class docstring for the locking rule."""
        while True:
            if not self._write_lock.acquire(blocking=block):
                return
            try:
                while True:
                    with self._lock:
                        out = self._outgoing.read()
                    if not out:
                        break
                    self._outer.sendall(out)
            finally:
                self._write_lock.release()
            with self._lock:
                if not self._outgoing.pending:
                    return
            # Records made while the lock was being released: send them too.
            block = False

    def _decrypt_locked(self) -> bool:
        """Move what the TLS input holds into ``_plain``; ``False`` at the end of TLS."""
        while True:
            try:
                data = self._tls.read(65536)
            except ssl_module.SSLWantReadError:
                return True
            except (ssl_module.SSLZeroReturnError, ssl_module.SSLEOFError):
                return False
            if not data:
                return False
            self._plain += data

    # -- the socket methods the engine uses -----------------------------------------

    def recv(self, bufsize: int) -> bytes:
        """Return up to ``bufsize`` decrypted bytes; ``b""`` at the end of the stream.

        Raises:
            ssl.SSLError: The server's TLS data is invalid.
            OSError: The outer socket failed (including its timeout).
        """
        while True:
            with self._lock:
                alive = self._decrypt_locked()
                if self._plain:
                    data = bytes(self._plain[:bufsize])
                    del self._plain[:bufsize]
                else:
                    data = b""
                produced = self._outgoing.pending > 0
            if produced:
                self._flush(block=False)
            if data or not alive:
                return data
            if not self._feed():
                with self._lock:
                    self._decrypt_locked()
                    data = bytes(self._plain[:bufsize])
                    del self._plain[:bufsize]
                return data

    def sendall(self, data: bytes) -> None:
        """Encrypt and send all of ``data``.

        Raises:
            OSError: The outer socket failed.
        """
        with self._lock:
            # Records queue in the output buffer in order; _flush sends them in order.
            self._tls.write(data)
        self._flush(block=True)

    def pending(self) -> int:
        """Decrypted bytes ready to be read without waiting for the socket."""
        with self._lock:
            self._decrypt_locked()
            ready = len(self._plain)
        return ready or self._outer.pending()

    def settimeout(self, timeout: float | None) -> None:
        """Set the outer socket's timeout."""
        self._outer.settimeout(timeout)

    def fileno(self) -> int:
        """The outer socket's file descriptor (for selectors)."""
        return self._outer.fileno()

    def getsockname(self) -> Any:
        """The local address."""
        return self._outer.getsockname()

    def getpeername(self) -> Any:
        """The proxy's address (the peer of the TCP connection)."""
        return self._outer.getpeername()

    def shutdown(self, how: int) -> None:
        """Shut the outer socket down: blocked reads and writes return."""
        self._outer.shutdown(how)

    def close(self) -> None:
        """Close the outer socket."""
        self._outer.close()
