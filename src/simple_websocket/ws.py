"""The synchronous API of simple-websocket 1.1, at its 1.1 import path.

``Server.accept(environ, ...)`` (or ``Server(environ, ...)``) and
``Client.connect(url, ...)`` keep their 1.1 signatures and defaults; keyword-only
options after them are new. Each connection runs one background thread, created
with ``thread_class`` (``threading.Thread`` by default), so the same code runs on
eventlet or gevent green threads.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Sequence
from typing import Any, Self

from .errors import ConnectionClosed, ConnectionError
from .integrations.wsgi import accept_wsgi, find_socket
from .sansio.handshake import (
    HandshakeRequest,
    HeadersLike,
    normalize_headers,
    normalize_subprotocols,
    parse_url,
)
from .sansio.limits import UNSET, Unset
from .sansio.options import (
    Compression,
    LoggerLike,
    check_compression,
    check_instance,
    check_seconds,
    check_unix_socket,
)
from .sansio.protocol import CloseCode
from .sync.client import open_connection
from .sync.connection import (
    BaseConnection,
    Connection,
    EventFactory,
    EventLike,
    SelectorFactory,
    ThreadFactory,
)
from .sync.server import ServerConnection, accept_socket

__all__ = ["Base", "BaseConnection", "Client", "CloseCode", "Server"]

#: The base class of the synchronous client and server connections.
Base = Connection


class Server(ServerConnection):
    """The server side of a WebSocket connection, inside a WSGI application.

    ``Server.accept(environ)`` (or ``Server(environ)``, the form flask-sock and
    python-engineio use) answers the handshake and returns the connected
    WebSocket. Subclasses may override :meth:`choose_subprotocol`.

    Attributes:
        environ: The WSGI environ, or ``None`` for a ``sock=`` connection.
        mode: Where the socket came from: ``"werkzeug"``, ``"gunicorn"``,
            ``"eventlet"``, ``"gevent"``, or ``"custom"`` for ``sock=``.
        headers: The request headers for ``sock=``; for WSGI, a dict of the
            request headers rebuilt from the environ.
    """

    def __init__(
        self,
        environ: Any = None,
        subprotocols: str | Sequence[str] | None = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | Unset | None = UNSET,
        thread_class: ThreadFactory | None = None,
        event_class: EventFactory | None = None,
        selector_class: SelectorFactory | None = None,
        *,
        sock: socket.socket | None = None,
        headers: HeadersLike = None,
        path: str = "/",
        ping_timeout: float | None = None,
        close_timeout: float = 5.0,
        max_queue: int = 16,
        compression: Compression = True,
        logger: LoggerLike | None = None,
    ) -> None:
        """Accept a WebSocket connection; see :meth:`accept`."""
        if (environ is None) == (sock is None):
            raise ValueError("Server needs exactly one of environ or sock=")
        super().__init__(
            subprotocols,
            compression=compression,
            receive_bytes=receive_bytes,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_message_size=max_message_size,
            close_timeout=close_timeout,
            max_queue=max_queue,
            thread_class=thread_class,
            event_class=event_class,
            selector_class=selector_class,
            logger=logger,
        )
        self.environ = environ
        self.mode = "unknown"
        self.headers: Any = {}
        if sock is not None:
            self.mode = "custom"
            self.headers = headers or {}
            accept_socket(self, sock, HandshakeRequest(path, normalize_headers(headers)))
            return
        found = find_socket(environ)
        self.mode = found.mode
        accept_wsgi(self, environ, found)
        assert self.request is not None
        self.headers = dict(self.request.headers)

    @classmethod
    def accept(
        cls,
        environ: Any = None,
        subprotocols: str | Sequence[str] | None = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | Unset | None = UNSET,
        thread_class: ThreadFactory | None = None,
        event_class: EventFactory | None = None,
        selector_class: SelectorFactory | None = None,
        *,
        sock: socket.socket | None = None,
        headers: HeadersLike = None,
        path: str = "/",
        ping_timeout: float | None = None,
        close_timeout: float = 5.0,
        max_queue: int = 16,
        compression: Compression = True,
        logger: LoggerLike | None = None,
    ) -> Self:
        """Accept a WebSocket connection from a client.

        Exactly one source is given:

        * ``environ``: the WSGI environ of the request. The socket is found where
          Werkzeug, gunicorn, eventlet or gevent keep it (see
          :mod:`simple_websocket.integrations.wsgi`) and :attr:`mode` says which.
        * ``sock``: a connected socket whose HTTP request head was already read,
          for a custom server; ``headers`` are that request's headers (mapping or
          pairs), ``path`` its target. :attr:`mode` is ``"custom"``.

        Args:
            environ: The WSGI environ.
            subprotocols: Subprotocols this server supports, in its order.
            receive_bytes: Bytes read from the socket at a time.
            ping_interval: Seconds between keepalive pings, or ``None``.
            max_message_size: Largest accepted message in bytes (larger ones close the
                connection with 1009), or ``None`` for no limit. Not given: no limit on
                uncompressed messages, as in 1.1, and 64 MiB on what a compressed
                message inflates to.
            thread_class: Creates the connection's background thread, called as
                ``thread_class(target=function)`` (default ``threading.Thread``).
            event_class: Creates events (default ``threading.Event``).
            selector_class: Creates the selector used to wait with a deadline
                (default ``selectors.DefaultSelector``).
            sock: The connected socket, for a custom server.
            headers: The request headers, with ``sock``.
            path: The request target, with ``sock``.
            ping_timeout: Seconds to wait for a pong (default: until the next ping).
            close_timeout: Seconds ``close()`` waits for the closing handshake.
            max_queue: Messages buffered before the reader stops reading.
            compression: Accept permessage-deflate when the client offers it:
                ``True`` (default settings), ``False``, or a
                :class:`~simple_websocket.DeflateOptions` (or a dict of its fields).
            logger: Where the connection logs (a ``logging.Logger``, an adapter
                or a logger's name); default ``simple_websocket``.

        Returns:
            The connected server connection.

        Raises:
            ValueError: Not exactly one of ``environ`` and ``sock`` was given.
            RuntimeError: No socket can be found in ``environ``.
            HandshakeError: The client's request is not a valid WebSocket upgrade; an
                HTTP 400 (or 426) response was sent and the socket shut down.
        """
        return cls(
            environ,
            subprotocols,
            receive_bytes,
            ping_interval,
            max_message_size,
            thread_class,
            event_class,
            selector_class,
            sock=sock,
            headers=headers,
            path=path,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_queue=max_queue,
            compression=compression,
            logger=logger,
        )


class Client(Connection):
    """The client side of a WebSocket connection; open one with :meth:`connect`.

    Attributes:
        url: The URL given.
        host: The server's host name.
        port: The server's port.
        path: The request target (path and query).
        is_secure: ``True`` for ``wss://``.
        subprotocols: The subprotocols offered.
        response_headers: The handshake response headers.
    """

    _client = True

    def __init__(
        self,
        url: str,
        subprotocols: str | Sequence[str] | None = None,
        headers: HeadersLike = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | Unset | None = UNSET,
        ssl_context: ssl.SSLContext | None = None,
        thread_class: ThreadFactory | None = None,
        event_class: EventFactory | None = None,
        *,
        selector_class: SelectorFactory | None = None,
        open_timeout: float | None = 10.0,
        close_timeout: float = 5.0,
        ping_timeout: float | None = None,
        compression: Compression = True,
        max_queue: int = 16,
        proxy: str | bool | None = True,
        proxy_ssl_context: ssl.SSLContext | None = None,
        user_agent: str | Unset | None = UNSET,
        origin: str | None = None,
        unix_socket: str | os.PathLike[str] | None = None,
        logger: LoggerLike | None = None,
    ) -> None:
        """Connect to ``url``; see :meth:`connect`."""
        self._url = parse_url(url)
        check_seconds("open_timeout", open_timeout)
        check_instance("ssl_context", ssl_context, ssl.SSLContext, "an ssl.SSLContext")
        check_instance("proxy_ssl_context", proxy_ssl_context, ssl.SSLContext, "an ssl.SSLContext")
        check_compression(compression)
        unix_path = check_unix_socket(unix_socket)
        if unix_path is not None and proxy is not True and proxy is not None:
            raise ValueError("a proxy cannot be used with unix_socket=; give proxy=None")
        super().__init__(
            receive_bytes=receive_bytes,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_message_size=max_message_size,
            close_timeout=close_timeout,
            max_queue=max_queue,
            thread_class=thread_class,
            event_class=event_class,
            selector_class=selector_class,
            logger=logger,
        )
        self.url = url
        self.ssl_context = ssl_context
        self.is_secure = self._url.secure
        self.host = self._url.host
        self.port = self._url.port
        self.path = self._url.resource
        self.subprotocols = normalize_subprotocols(subprotocols)
        self.extra_headers = normalize_headers(headers)
        self.response_headers: list[tuple[str, str]] = open_connection(
            self,
            self._url,
            subprotocols=self.subprotocols,
            headers=self.extra_headers,
            ssl_context=ssl_context,
            compression=compression,
            open_timeout=open_timeout,
            proxy=proxy,
            proxy_ssl_context=proxy_ssl_context,
            user_agent=user_agent,
            origin=origin,
            unix_socket=unix_path,
        )

    @classmethod
    def connect(
        cls,
        url: str,
        subprotocols: str | Sequence[str] | None = None,
        headers: HeadersLike = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | Unset | None = UNSET,
        ssl_context: ssl.SSLContext | None = None,
        thread_class: ThreadFactory | None = None,
        event_class: EventFactory | None = None,
        *,
        selector_class: SelectorFactory | None = None,
        open_timeout: float | None = 10.0,
        close_timeout: float = 5.0,
        ping_timeout: float | None = None,
        compression: Compression = True,
        max_queue: int = 16,
        proxy: str | bool | None = True,
        proxy_ssl_context: ssl.SSLContext | None = None,
        user_agent: str | Unset | None = UNSET,
        origin: str | None = None,
        unix_socket: str | os.PathLike[str] | None = None,
        logger: LoggerLike | None = None,
    ) -> Self:
        """Open a WebSocket connection to ``url``.

        The connection is also a context manager (``with Client.connect(url) as
        ws:`` closes with 1000 on exit, or 1011 when the block raised) and an
        iterator of messages (``for message in ws:``, which ends quietly on a normal
        close).

        Args:
            url: A ``ws://`` or ``wss://`` URL (``http://`` and ``https://`` are
                accepted as aliases).
            subprotocols: One subprotocol, or a list in order of preference.
            headers: Extra request headers, as a mapping or ``(name, value)`` pairs.
            receive_bytes: Bytes read from the socket at a time.
            ping_interval: Seconds between keepalive pings, or ``None``.
            max_message_size: Largest accepted message in bytes (larger ones close the
                connection with 1009), or ``None`` for no limit. Not given: no limit on
                uncompressed messages, as in 1.1, and 64 MiB on what a compressed
                message inflates to.
            ssl_context: TLS settings for ``wss://``. By default certificates are
                verified against the system's trusted CAs.
            thread_class: Creates the connection's background thread, called as
                ``thread_class(target=function)`` (default ``threading.Thread``).
            event_class: Creates events (default ``threading.Event``).
            selector_class: Creates the selector used to wait with a deadline.
            open_timeout: Seconds allowed for TCP, TLS and the handshake together.
            close_timeout: Seconds ``close()`` waits for the closing handshake.
            ping_timeout: Seconds to wait for a pong (default: until the next ping).
            compression: Offer permessage-deflate (RFC 7692): ``True`` with the
                default settings, ``False``, or a
                :class:`~simple_websocket.DeflateOptions` (or a dict of its fields).
            max_queue: Messages buffered before the reader stops reading.
            proxy: ``True`` (the default) connects through the proxy the
                environment sets, as ``urllib`` reads it (``https_proxy`` for
                ``wss://``, ``http_proxy`` for ``ws://``, ``all_proxy``, ``no_proxy``,
                in lower or upper case); ``None`` connects directly; or a proxy URL:
                ``http://[user:password@]host:port``, ``https://...`` (TLS to the
                proxy), ``socks5://``, ``socks5h://`` or ``socks4://`` (SOCKS needs
                the ``socks`` extra).
            proxy_ssl_context: TLS settings for an ``https://`` proxy (default: the
                system's trusted CAs). ``ssl_context`` applies to the server.
            user_agent: The ``User-Agent`` header. Not given:
                ``simple-websocket/<version> Python/<x.y>``, or the one in
                ``headers``; ``None`` sends none.
            origin: An ``Origin`` header, or ``None``.
            unix_socket: Connect to the server on this Unix socket path instead of
                the URL's host and port (the URL still gives the ``Host`` header and
                the path). No proxy is used.
            logger: Where the connection logs (a ``logging.Logger``, an adapter or
                a logger's name); default ``simple_websocket``.

        Raises:
            ValueError: ``url`` is not a valid ``ws://`` or ``wss://`` URL,
                ``proxy`` not a valid proxy URL, or another option is out of its
                range (a timeout or interval that is negative, a size below 1, a
                header holding CR or LF, ...); nothing was opened.
            TypeError: ``proxy`` is not ``True``, ``None`` or a string, or another
                option has the wrong type (``headers`` given as a string, ...).
            OpenTimeout: Opening (the proxy's part included) took longer than
                ``open_timeout``.
            HandshakeRejected: The server answered with a status other than 101 (a
                :class:`~simple_websocket.ConnectionError` with ``status_code``).
            HandshakeError: The server's answer is not a valid handshake.
            ProxyError: The proxy refused or failed to open the tunnel (a
                :class:`~simple_websocket.ConnectionError`; ``status_code`` is the
                HTTP proxy's answer).
            ImportError: A SOCKS proxy was given and python-socks is not installed.
            OSError: The TCP or TLS connection failed (refused, unreachable, name not
                resolved, certificate not trusted, ...).
        """
        return cls(
            url,
            subprotocols,
            headers,
            receive_bytes,
            ping_interval,
            max_message_size,
            ssl_context,
            thread_class,
            event_class,
            selector_class=selector_class,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            ping_timeout=ping_timeout,
            compression=compression,
            max_queue=max_queue,
            proxy=proxy,
            proxy_ssl_context=proxy_ssl_context,
            user_agent=user_agent,
            origin=origin,
            unix_socket=unix_socket,
            logger=logger,
        )


# Re-exported for type annotations in user code.
# 1.1's ws module had these two exceptions in its namespace.
__all__ += ["ConnectionClosed", "ConnectionError"]
__all__ += ["EventFactory", "EventLike", "SelectorFactory", "ThreadFactory"]
