"""The asyncio API of simple-websocket 1.1, at its 1.1 import path.

``AioClient.connect(url, ...)`` and ``AioServer.accept(aiohttp=... | asgi=... |
sock=..., headers=...)`` keep their 1.1 signatures and defaults; keyword-only options
after them are new. :func:`serve` runs a standalone server with no framework.

One default depends on how a client is used: a connection that is reconnected
(``reconnect=``, or ``async for ws in AioClient.connect(url)``) sends keepalive
pings unless told otherwise (:data:`RECONNECT_PING_INTERVAL`,
:data:`RECONNECT_PING_TIMEOUT`), so that a peer that vanished without closing TCP
is noticed and replaced; a plain ``await AioClient.connect(url)`` keeps 1.1's
``ping_interval=None``.
"""

from __future__ import annotations

import inspect
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, Self, TypeVar, cast, overload

from .asyncio.client import open_connection
from .asyncio.connection import BaseConnection, Connection
from .asyncio.server import (
    MessageHandler,
    ProcessRequest,
    ServerConnection,
    WebSocketServer,
    accept_socket,
)
from .asyncio.server import serve as _serve
from .integrations.aiohttp import accept_aiohttp
from .integrations.asgi import ASGIConnection
from .sansio.handshake import (
    HandshakeRequest,
    HeadersLike,
    check_header_conflicts,
    normalize_headers,
    normalize_subprotocols,
    parse_url,
)
from .sansio.limits import SERVE_MAX_MESSAGE_SIZE, UNSET, Unset
from .sansio.options import (
    Compression,
    LoggerLike,
    check_callable,
    check_compression,
    check_connection_options,
    check_header_value,
    check_instance,
    check_logger,
    check_seconds,
    check_unix_socket,
    describe,
)
from .sansio.protocol import CloseCode
from .sansio.proxy import parse_proxy_url

if TYPE_CHECKING:  # pragma: no cover
    from tenacity import AsyncRetrying

    from .errors import Disconnected
    from .reconnect import Backoff, ConnectHook, OutboxPolicy, ReconnectingClient

__all__ = [
    "RECONNECT_PING_INTERVAL",
    "RECONNECT_PING_TIMEOUT",
    "AioBase",
    "AioClient",
    "AioServer",
    "MessageHandler",
    "serve",
]

#: The base class of the asyncio client and server connections.
AioBase = Connection

RECONNECT_PING_INTERVAL: Final = 20.0
"""Seconds between keepalive pings of a reconnected client, unless ``ping_interval`` is given."""

RECONNECT_PING_TIMEOUT: Final = 20.0
"""Seconds a reconnected client's ping waits for its pong, unless ``ping_timeout`` is given."""

#: The ``(scope, receive, send)`` of an ASGI application call.
ASGITriple = tuple[Any, Any, Any]


class AioServer(ServerConnection):
    """The server side of a WebSocket connection.

    Use :meth:`accept` from a request handler, or :func:`serve` for a standalone
    server. Subclasses may override :meth:`choose_subprotocol`.
    """

    def __init__(
        self,
        request: Any = None,
        subprotocols: str | Sequence[str] | None = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | Unset | None = UNSET,
        **options: Any,
    ) -> None:
        super().__init__(
            subprotocols,
            receive_bytes=receive_bytes,
            ping_interval=ping_interval,
            max_message_size=max_message_size,
            **options,
        )
        self.mode = "unknown"
        self.headers: Any = {}

    @overload
    @classmethod
    async def accept(
        cls,
        aiohttp: None = None,
        *,
        asgi: ASGITriple,
        sock: None = None,
        headers: HeadersLike = None,
        subprotocols: str | Sequence[str] | None = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | Unset | None = UNSET,
        ping_timeout: float | None = None,
        close_timeout: float = 5.0,
        max_queue: int = 16,
        compression: Compression = True,
        path: str = "/",
        logger: LoggerLike | None = None,
    ) -> ASGIConnection: ...

    @overload
    @classmethod
    async def accept(
        cls,
        aiohttp: None,
        asgi: ASGITriple,
        sock: None = None,
        headers: HeadersLike = None,
        subprotocols: str | Sequence[str] | None = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | Unset | None = UNSET,
        *,
        ping_timeout: float | None = None,
        close_timeout: float = 5.0,
        max_queue: int = 16,
        compression: Compression = True,
        path: str = "/",
        logger: LoggerLike | None = None,
    ) -> ASGIConnection: ...

    @overload
    @classmethod
    async def accept(
        cls,
        aiohttp: Any = None,
        asgi: None = None,
        sock: socket.socket | None = None,
        headers: HeadersLike = None,
        subprotocols: str | Sequence[str] | None = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | Unset | None = UNSET,
        *,
        ping_timeout: float | None = None,
        close_timeout: float = 5.0,
        max_queue: int = 16,
        compression: Compression = True,
        path: str = "/",
        logger: LoggerLike | None = None,
    ) -> Self: ...

    @classmethod
    async def accept(
        cls,
        aiohttp: Any = None,
        asgi: ASGITriple | None = None,
        sock: socket.socket | None = None,
        headers: HeadersLike = None,
        subprotocols: str | Sequence[str] | None = None,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        max_message_size: int | Unset | None = UNSET,
        *,
        ping_timeout: float | None = None,
        close_timeout: float = 5.0,
        max_queue: int = 16,
        compression: Compression = True,
        path: str = "/",
        logger: LoggerLike | None = None,
    ) -> Self | ASGIConnection:
        """Accept a WebSocket connection from a client.

        Exactly one source is given:

        * ``aiohttp``: an ``aiohttp.web.Request`` whose handler is running.
        * ``asgi``: the ``(scope, receive, send)`` of an ASGI ``websocket`` scope;
          returns an :class:`~simple_websocket.integrations.asgi.ASGIConnection`,
          which has the same interface. ``headers`` are then sent with the accept.
        * ``sock``: a connected socket whose HTTP request head was already read;
          ``headers`` are that request's headers (mapping or pairs), ``path`` its
          target.

        Args:
            aiohttp: The aiohttp request.
            asgi: The ASGI triple.
            sock: The connected socket (blocking or not).
            headers: Request headers for ``sock``; response headers for ``asgi``.
            subprotocols: Subprotocols this server supports, in its order.
            receive_bytes: Kept from 1.1; the engine reads what the transport delivers.
            ping_interval: Seconds between keepalive pings, or ``None``.
            max_message_size: Largest accepted message in bytes (larger ones close the
                connection with 1009), or ``None`` for no limit. Not given: no limit on
                uncompressed messages, as in 1.1, and 64 MiB on what a compressed
                message inflates to.
            ping_timeout: Seconds to wait for a pong (default: until the next ping).
            close_timeout: Seconds ``close()`` waits for the closing handshake.
            max_queue: Messages buffered before reading pauses.
            compression: Accept permessage-deflate when the client offers it:
                ``True`` (default settings), ``False``, or a
                :class:`~simple_websocket.DeflateOptions` (or a dict of its fields)
                with window sizes and context takeover.
            path: The request target, for ``sock``.
            logger: The logger of this connection (a ``logging.Logger``, an
                adapter, or a logger's name); default ``simple_websocket``.

        Returns:
            The connected server connection: an instance of this class, or an
            :class:`~simple_websocket.integrations.asgi.ASGIConnection` for ``asgi``.

        Raises:
            ValueError: Not exactly one of ``aiohttp``, ``asgi``, ``sock`` was given.
            HandshakeError: The client's request is not a valid WebSocket upgrade; an
                HTTP 400 (or 426) response was sent and the connection closed.
        """
        given = [name for name, v in (("aiohttp", aiohttp), ("asgi", asgi), ("sock", sock)) if v]
        if len(given) != 1:
            raise ValueError(
                "AioServer.accept() needs exactly one of aiohttp=, asgi= or sock=, got "
                + (", ".join(given) if given else "none")
            )
        options: dict[str, Any] = {
            "receive_bytes": receive_bytes,
            "ping_interval": ping_interval,
            "max_message_size": max_message_size,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "max_queue": max_queue,
            "logger": logger,
        }
        ws = cls(
            {"aiohttp": aiohttp, "asgi": asgi, "sock": sock, "headers": headers},
            subprotocols,
            compression=compression,
            **options,
        )
        if asgi is not None:
            chooser = None
            if type(ws).choose_subprotocol is not AioServer.choose_subprotocol:
                chooser = ws.choose_subprotocol
            scope, receive, send = asgi
            return await ASGIConnection.accept(
                scope, receive, send, ws.subprotocols, headers=headers, chooser=chooser, **options
            )
        if aiohttp is not None:
            ws.mode = "aiohttp"
            ws.headers = aiohttp.headers
            await accept_aiohttp(ws, aiohttp)
            return ws
        assert sock is not None
        ws.mode = "custom"
        ws.headers = headers or {}
        request = HandshakeRequest(path, normalize_headers(headers))
        await accept_socket(ws, sock, request)
        return ws

    def _answer_handshake(self, transport: Any, request: HandshakeRequest) -> None:
        if self.mode == "unknown":
            # A connection accepted by serve(): expose the request as 1.1 did.
            self.mode = "serve"
            self.headers = dict(request.headers)
        super()._answer_handshake(transport, request)


class AioClient(Connection):
    """The client side of a WebSocket connection; open one with :meth:`connect`."""

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
        **options: Any,
    ) -> None:
        self._url = parse_url(url)
        super().__init__(
            receive_bytes=receive_bytes,
            ping_interval=ping_interval,
            max_message_size=max_message_size,
            **options,
        )
        self.url = url
        self.ssl_context = ssl_context
        self.is_secure = self._url.secure
        self.host = self._url.host
        self.port = self._url.port
        self.path = self._url.resource
        self.subprotocols = normalize_subprotocols(subprotocols)
        self.extra_headers = normalize_headers(headers)
        #: The handshake response headers, once connected.
        self.response_headers: list[tuple[str, str]] = []

    @overload
    @classmethod
    def connect(
        cls,
        url: URLSource,
        subprotocols: str | Sequence[str] | None = None,
        headers: HeadersSource = None,
        receive_bytes: int = 4096,
        ping_interval: float | Unset | None = UNSET,
        max_message_size: int | Unset | None = UNSET,
        ssl_context: ssl.SSLContext | None = None,
        *,
        open_timeout: float | None = 10.0,
        close_timeout: float = 5.0,
        ping_timeout: float | Unset | None = UNSET,
        compression: Compression = True,
        max_queue: int = 16,
        retry: Backoff | AsyncRetrying | None = None,
        reconnect: Literal[False] | None = None,
        on_connect: Callable[[Self], object] | None = None,
        on_disconnect: Callable[[Disconnected], object] | None = None,
        outbox_size: int = 1024,
        outbox_policy: OutboxPolicy = "block",
        proxy: ProxySource = True,
        proxy_ssl_context: ssl.SSLContext | None = None,
        user_agent: str | Unset | None = UNSET,
        origin: str | None = None,
        unix_socket: str | os.PathLike[str] | None = None,
        logger: LoggerLike | None = None,
    ) -> Connect[Self]: ...

    @overload
    @classmethod
    def connect(
        cls,
        url: URLSource,
        subprotocols: str | Sequence[str] | None = None,
        headers: HeadersSource = None,
        receive_bytes: int = 4096,
        ping_interval: float | Unset | None = UNSET,
        max_message_size: int | Unset | None = UNSET,
        ssl_context: ssl.SSLContext | None = None,
        *,
        open_timeout: float | None = 10.0,
        close_timeout: float = 5.0,
        ping_timeout: float | Unset | None = UNSET,
        compression: Compression = True,
        max_queue: int = 16,
        retry: Backoff | AsyncRetrying | None = None,
        reconnect: Literal[True] | Backoff | AsyncRetrying,
        on_connect: Callable[[Self], object] | None = None,
        on_disconnect: Callable[[Disconnected], object] | None = None,
        outbox_size: int = 1024,
        outbox_policy: OutboxPolicy = "block",
        idle_timeout: float | None = None,
        proxy: ProxySource = True,
        proxy_ssl_context: ssl.SSLContext | None = None,
        user_agent: str | Unset | None = UNSET,
        origin: str | None = None,
        unix_socket: str | os.PathLike[str] | None = None,
        logger: LoggerLike | None = None,
    ) -> ReconnectingClient: ...

    @overload
    @classmethod
    def connect(
        cls,
        url: URLSource,
        subprotocols: str | Sequence[str] | None = None,
        headers: HeadersSource = None,
        receive_bytes: int = 4096,
        ping_interval: float | Unset | None = UNSET,
        max_message_size: int | Unset | None = UNSET,
        ssl_context: ssl.SSLContext | None = None,
        *,
        open_timeout: float | None = 10.0,
        close_timeout: float = 5.0,
        ping_timeout: float | Unset | None = UNSET,
        compression: Compression = True,
        max_queue: int = 16,
        retry: Backoff | AsyncRetrying | None = None,
        reconnect: bool | Backoff | AsyncRetrying | None,
        on_connect: Callable[[Self], object] | None = None,
        on_disconnect: Callable[[Disconnected], object] | None = None,
        outbox_size: int = 1024,
        outbox_policy: OutboxPolicy = "block",
        idle_timeout: float | None = None,
        proxy: ProxySource = True,
        proxy_ssl_context: ssl.SSLContext | None = None,
        user_agent: str | Unset | None = UNSET,
        origin: str | None = None,
        unix_socket: str | os.PathLike[str] | None = None,
        logger: LoggerLike | None = None,
    ) -> Connect[Self] | ReconnectingClient: ...

    @classmethod
    def connect(
        cls,
        url: URLSource,
        subprotocols: str | Sequence[str] | None = None,
        headers: HeadersSource = None,
        receive_bytes: int = 4096,
        ping_interval: float | Unset | None = UNSET,
        max_message_size: int | Unset | None = UNSET,
        ssl_context: ssl.SSLContext | None = None,
        *,
        open_timeout: float | None = 10.0,
        close_timeout: float = 5.0,
        ping_timeout: float | Unset | None = UNSET,
        compression: Compression = True,
        max_queue: int = 16,
        retry: Backoff | AsyncRetrying | None = None,
        reconnect: bool | Backoff | AsyncRetrying | None = None,
        on_connect: Callable[[Self], object] | None = None,
        on_disconnect: Callable[[Disconnected], object] | None = None,
        outbox_size: int = 1024,
        outbox_policy: OutboxPolicy = "block",
        idle_timeout: float | None = None,
        proxy: ProxySource = True,
        proxy_ssl_context: ssl.SSLContext | None = None,
        user_agent: str | Unset | None = UNSET,
        origin: str | None = None,
        unix_socket: str | os.PathLike[str] | None = None,
        logger: LoggerLike | None = None,
    ) -> Connect[Self] | ReconnectingClient:
        """Open a WebSocket connection to ``url``.

        The result is awaitable (``ws = await AioClient.connect(url)``), an async
        context manager (``async with AioClient.connect(url) as ws:``, which closes
        with 1000 on exit, or 1011 when the block raised) and an async iterator of
        connections (``async for ws in AioClient.connect(url):``, which opens a new
        connection after a failure or an abnormal drop, waiting as ``retry`` says).

        With ``reconnect`` set, a :class:`~simple_websocket.reconnect.ReconnectingClient`
        is returned instead: one object with the connection interface that
        reconnects by itself and keeps messages sent during an outage.

        Keepalive depends on that choice when ``ping_interval`` and ``ping_timeout``
        are not given: the connections of ``async for`` and of a reconnecting
        client ping every :data:`RECONNECT_PING_INTERVAL` (20) seconds and fail
        (close code 1011, then a reconnect) when a pong takes longer than
        :data:`RECONNECT_PING_TIMEOUT` (20) seconds; ``await`` and ``async with``
        keep 1.1's default, no pings. ``ping_interval=None`` turns pings off in
        every case.

        Args:
            url: A ``ws://`` or ``wss://`` URL, or a callable (sync or async)
                returning one, evaluated for every connection attempt.
            subprotocols: One subprotocol, or a list in order of preference.
            headers: Extra request headers, as a mapping or ``(name, value)`` pairs,
                or a callable (sync or async) returning them per attempt (for
                instance to refresh a token).
            receive_bytes: Kept from 1.1; the engine reads what the transport delivers.
            ping_interval: Seconds between keepalive pings, or ``None`` for none.
                Not given: ``None``, or 20 for reconnected connections (see above).
            max_message_size: Largest accepted message in bytes (larger ones close the
                connection with 1009), or ``None`` for no limit. Not given: no limit on
                uncompressed messages, as in 1.1, and 64 MiB on what a compressed
                message inflates to.
            ssl_context: TLS settings for ``wss://``. By default certificates are
                verified against the system's trusted CAs.
            open_timeout: Seconds allowed for TCP, TLS and the handshake together.
            close_timeout: Seconds ``close()`` waits for the closing handshake.
            ping_timeout: Seconds to wait for a pong; ``None`` waits until the next
                ping is due. Not given: ``None``, or 20 for reconnected connections.
            compression: Offer permessage-deflate (RFC 7692): ``True`` with the
                default settings, ``False``, or a
                :class:`~simple_websocket.DeflateOptions` (or a dict of its fields)
                with window sizes and context takeover.
            max_queue: Messages buffered before reading pauses.
            retry: The retry policy of ``await`` (retries opening), ``async with``
                and ``async for``: a :class:`~simple_websocket.reconnect.Backoff` or a
                ``tenacity.AsyncRetrying``. ``None``: ``await`` and ``async with``
                try once; ``async for`` uses ``Backoff()``.
            reconnect: ``True``, a ``Backoff`` or an ``AsyncRetrying``: return a
                reconnecting client with that policy.
            on_connect: Reconnecting client: ``(ws)`` hook run after every
                (re)connect before queued messages are sent (sync or async).
            on_disconnect: Reconnecting client: ``(exc)`` hook run after every drop,
                with a :class:`~simple_websocket.errors.Disconnected` (a
                ``ConnectionClosed`` whose ``cause`` says why).
            outbox_size: Reconnecting client: messages kept during an outage.
            outbox_policy: Reconnecting client: ``"block"``, ``"drop_oldest"`` or
                ``"raise"`` when the outbox is full.
            idle_timeout: Reconnecting client: seconds without any message after
                which a connection is taken as dead, failed with 1011 and replaced
                (``None``: never). See
                :class:`~simple_websocket.reconnect.ReconnectingClient`.
            proxy: ``True`` (the default) connects through the proxy the
                environment sets, as ``urllib`` reads it (``https_proxy`` for
                ``wss://``, ``http_proxy`` for ``ws://``, ``all_proxy``, ``no_proxy``,
                in lower or upper case); ``None`` connects directly; or a proxy URL:
                ``http://[user:password@]host:port``, ``https://...`` (TLS to the
                proxy), ``socks5://``, ``socks5h://`` (the proxy resolves the
                server's name) or ``socks4://`` (SOCKS needs the ``socks`` extra). A
                callable (sync or async) returning one of these is evaluated for
                every connection attempt.
            proxy_ssl_context: TLS settings for an ``https://`` proxy (default: the
                system's trusted CAs). ``ssl_context`` applies to the server.
            user_agent: The ``User-Agent`` header. Not given:
                ``simple-websocket/<version> Python/<x.y>``
                (:data:`~simple_websocket.sansio.handshake.DEFAULT_USER_AGENT`),
                or the one in ``headers``; ``None`` sends none.
            origin: An ``Origin`` header (``"https://example.com"``), for servers
                that check where a client comes from as they do for browsers.
            unix_socket: Connect to the server listening on this Unix socket path
                (``str`` or ``os.PathLike``) instead of the URL's host and port. The
                URL still gives the ``Host`` header, the path and, for ``wss://``,
                the name the certificate is checked against
                (``ws://localhost/feed``). No proxy is used.
            logger: Where the connection (and a reconnecting client) logs: a
                ``logging.Logger``, a ``LoggerAdapter`` or a logger's name.
                Default: the ``simple_websocket`` logger.

        Every option is checked at once, not when the result is awaited.

        Raises:
            ValueError: An option is out of its range: ``url`` is a string that is
                not a valid ``ws://`` or ``wss://`` URL, ``proxy`` a string that is
                not a valid proxy URL, a timeout or interval is not positive
                (``close_timeout`` may be 0), a size or count is below 1 (a
                negative ``max_message_size``), a header holds CR or LF, or
                ``idle_timeout`` is given without ``reconnect``.
            TypeError: An option has the wrong type (``headers`` given as a
                string, ``timeout="5"``, ``proxy`` not ``True``, ``None``, a string
                or a callable, ...). Every message names the parameter.
        """
        _check_proxy(proxy)
        unix_path = check_unix_socket(unix_socket)
        if unix_path is not None and proxy is not True and proxy is not None:
            raise ValueError("a proxy cannot be used with unix_socket=; give proxy=None")
        reconnecting = reconnect is not None and reconnect is not False
        if idle_timeout is not None and not reconnecting:
            raise ValueError(
                "idle_timeout needs a reconnecting client (reconnect=True or a policy); "
                "with a plain connection, use receive(timeout=...)"
            )
        _check_connect(
            url,
            subprotocols,
            headers,
            ssl_context,
            open_timeout=open_timeout,
            compression=compression,
            retry=retry,
            reconnect=reconnect,
            hooks={"on_connect": on_connect, "on_disconnect": on_disconnect},
            proxy_ssl_context=proxy_ssl_context,
            user_agent=user_agent,
            origin=origin,
        )
        check_logger(logger)
        options: dict[str, Any] = {
            "receive_bytes": receive_bytes,
            "ping_interval": None if ping_interval is UNSET else ping_interval,
            "max_message_size": max_message_size,
            "ssl_context": ssl_context,
            "close_timeout": close_timeout,
            "ping_timeout": None if ping_timeout is UNSET else ping_timeout,
            "max_queue": max_queue,
            "logger": logger,
        }
        check_connection_options(
            receive_bytes=receive_bytes,
            ping_interval=options["ping_interval"],
            max_message_size=max_message_size,
            close_timeout=close_timeout,
            ping_timeout=options["ping_timeout"],
            max_queue=max_queue,
        )
        # What the connections of `async for` and of a reconnecting client use.
        reconnected = {
            **options,
            "ping_interval": RECONNECT_PING_INTERVAL if ping_interval is UNSET else ping_interval,
            "ping_timeout": RECONNECT_PING_TIMEOUT if ping_timeout is UNSET else ping_timeout,
        }
        connect = Connect(
            cls,
            url,
            subprotocols,
            headers,
            reconnected if reconnecting else options,
            open_timeout=open_timeout,
            compression=compression,
            retry=retry,
            iter_options=reconnected,
            proxy=proxy,
            proxy_ssl_context=proxy_ssl_context,
            user_agent=user_agent,
            origin=origin,
            unix_socket=unix_path,
        )
        if not reconnecting:
            return connect
        # The reconnecting client is an extension over this API: imported on use.
        from .reconnect import ReconnectingClient

        return ReconnectingClient(
            connect.open_once,
            retry if reconnect is True else reconnect,
            # The hook gets connections of this class: Self, not just AioClient.
            on_connect=cast("ConnectHook | None", on_connect),
            on_disconnect=on_disconnect,
            outbox_size=outbox_size,
            outbox_policy=outbox_policy,
            idle_timeout=idle_timeout,
            logger=logger,
        )

    async def _open(
        self,
        open_timeout: float | None,
        proxy: str | bool | None = None,
        proxy_ssl_context: ssl.SSLContext | None = None,
        **handshake: Any,
    ) -> None:
        """Connect (through ``proxy``, if any) and perform the opening handshake.

        ``handshake`` holds the options of ``open_connection`` that shape the
        request: ``compression``, ``user_agent``, ``origin`` and ``unix_socket``.

        Raises:
            OpenTimeout: Opening took longer than ``open_timeout``.
            HandshakeRejected: The server answered with a status other than 101 (a
                :class:`~simple_websocket.ConnectionError` with ``status_code``).
            HandshakeError: The server's answer is not a valid handshake.
            ProxyError: The proxy refused or failed to open the tunnel.
            OSError: The TCP or TLS connection failed.
        """
        self.response_headers = await open_connection(
            self,
            self._url,
            subprotocols=self.subprotocols,
            headers=self.extra_headers,
            ssl_context=self.ssl_context,
            open_timeout=open_timeout,
            proxy=proxy,
            proxy_ssl_context=proxy_ssl_context,
            **handshake,
        )


C = TypeVar("C", bound=AioClient)
URLSource = str | Callable[[], str | Awaitable[str]]
HeadersSource = HeadersLike | Callable[[], Any]
ProxySource = str | bool | None | Callable[[], Any]


def _check_connect(
    url: Any,
    subprotocols: Any,
    headers: Any,
    ssl_context: Any,
    *,
    open_timeout: Any,
    compression: Any,
    retry: Any,
    reconnect: Any,
    hooks: dict[str, Any],
    proxy_ssl_context: Any = None,
    user_agent: Any = UNSET,
    origin: Any = None,
) -> None:
    """Check the options of :meth:`AioClient.connect` besides the connection's own.

    Raises:
        TypeError: An option has the wrong type.
        ValueError: An option is out of its range.
    """
    if isinstance(url, str):
        parse_url(url)
    elif not callable(url):
        raise TypeError(
            "url must be a ws:// or wss:// URL string or a callable returning one, "
            f"not {describe(url)}"
        )
    normalize_subprotocols(subprotocols)
    if not callable(headers):
        names = {name.lower() for name, _ in normalize_headers(headers)}
        check_header_conflicts(names, user_agent, origin)
    if user_agent is not UNSET:
        check_header_value("user_agent", user_agent)
    check_header_value("origin", origin)
    check_instance("ssl_context", ssl_context, ssl.SSLContext, "an ssl.SSLContext")
    check_instance("proxy_ssl_context", proxy_ssl_context, ssl.SSLContext, "an ssl.SSLContext")
    check_seconds("open_timeout", open_timeout)
    check_compression(compression)
    for name, hook in hooks.items():
        check_callable(name, hook)
    policies = {"retry": retry, "reconnect": reconnect}
    for name, policy in policies.items():
        if policy is not None and not isinstance(policy, bool):
            from .reconnect import as_retrying

            try:
                as_retrying(policy)
            except TypeError:
                raise TypeError(
                    f"{name} must be "
                    + ("True, " if name == "reconnect" else "")
                    + f"a Backoff, a tenacity.AsyncRetrying or None, not {describe(policy)}"
                ) from None


def _check_proxy(proxy: Any) -> None:
    """Refuse a ``proxy=`` value of the wrong type, or an invalid URL, at once.

    Raises:
        TypeError: Not ``True``, ``False``, ``None``, a string or a callable.
        ValueError: A string that is not a valid proxy URL.
    """
    if isinstance(proxy, str):
        parse_proxy_url(proxy)
    elif proxy is not None and not isinstance(proxy, bool) and not callable(proxy):
        raise TypeError(
            f"proxy must be True, None, a URL string or a callable, not {type(proxy).__name__}"
        )


async def _resolve(value: Any) -> Any:
    if callable(value):
        value = value()
        if inspect.isawaitable(value):
            value = await value
    return value


class Connect(Generic[C]):
    """The pending connection returned by :meth:`AioClient.connect`.

    ``await`` it for a connection, use it with ``async with``, or iterate over it
    with ``async for`` for a new connection after each failure or abnormal drop.
    ``options`` are the connection options of ``await`` and ``async with``;
    ``iter_options`` (by default the same) those of ``async for``.
    """

    def __init__(
        self,
        cls: type[C],
        url: URLSource,
        subprotocols: str | Sequence[str] | None,
        headers: HeadersSource,
        options: dict[str, Any],
        *,
        open_timeout: float | None,
        compression: Compression = True,
        retry: Backoff | AsyncRetrying | None,
        iter_options: dict[str, Any] | None = None,
        proxy: ProxySource = True,
        proxy_ssl_context: ssl.SSLContext | None = None,
        user_agent: str | Unset | None = UNSET,
        origin: str | None = None,
        unix_socket: str | None = None,
    ) -> None:
        self._cls = cls
        self._url = url
        self._subprotocols = subprotocols
        self._headers = headers
        self._options = options
        self._iter_options = options if iter_options is None else iter_options
        self._open_timeout = open_timeout
        # What shapes the opening handshake, for AioClient._open.
        self._handshake: dict[str, Any] = {
            "compression": compression,
            "user_agent": user_agent,
            "origin": origin,
            "unix_socket": unix_socket,
        }
        self._retry = retry
        self._proxy = proxy
        self._proxy_ssl_context = proxy_ssl_context
        self._ws: C | None = None

    async def open_once(self) -> C:
        """Make one connection attempt (URL, headers and proxy are evaluated now).

        Raises:
            ValueError: The URL or the proxy URL is invalid.
            TypeError: The ``proxy`` callable returned a value of the wrong type.
            ConnectionError: The handshake failed, was rejected or timed out, or the
                proxy refused (:class:`~simple_websocket.errors.ProxyError`).
            OSError: The TCP or TLS connection failed.
        """
        return await self._open_with(self._options)

    async def _open_with(self, options: dict[str, Any]) -> C:
        url = await _resolve(self._url)
        headers = await _resolve(self._headers)
        proxy = await _resolve(self._proxy)
        if callable(proxy):
            raise TypeError("the proxy callable must return True, None or a URL string")
        _check_proxy(proxy)
        ws = self._cls(url, self._subprotocols, headers, **options)
        await ws._open(self._open_timeout, proxy, self._proxy_ssl_context, **self._handshake)
        return ws

    async def _open_iterated(self) -> C:
        return await self._open_with(self._iter_options)

    async def _connect(self) -> C:
        if self._retry is None:
            ws = await self.open_once()
        else:
            from .reconnect import as_retrying

            retrying, _ = as_retrying(self._retry)
            ws = await retrying(self.open_once)
        self._ws = ws
        return ws

    def __await__(self) -> Generator[Any, None, C]:
        return self._connect().__await__()

    async def __aenter__(self) -> C:
        return await self._connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ws is not None:
            await self._ws.__aexit__(exc_type, exc, tb)

    def __aiter__(self) -> AsyncIterator[C]:
        from .reconnect import as_retrying, connections

        retrying, healthy_after = as_retrying(self._retry)
        return connections(self._open_iterated, retrying, healthy_after=healthy_after)


S = TypeVar("S", bound=AioServer)


@overload
def serve(
    handler: Callable[[S], Awaitable[object]],
    host: str | None = "127.0.0.1",
    port: int = 0,
    *,
    server_class: type[S],
    open_timeout: float | None = 10.0,
    sock: socket.socket | None = None,
    ssl: ssl.SSLContext | None = None,
    process_request: ProcessRequest | None = None,
    backlog: int = 100,
    max_message_size: int | None = SERVE_MAX_MESSAGE_SIZE,
    unix_socket: str | os.PathLike[str] | None = None,
    logger: LoggerLike | None = None,
    **accept_options: Any,
) -> WebSocketServer[S]: ...


@overload
def serve(
    handler: Callable[[AioServer], Awaitable[object]],
    host: str | None = "127.0.0.1",
    port: int = 0,
    *,
    open_timeout: float | None = 10.0,
    sock: socket.socket | None = None,
    ssl: ssl.SSLContext | None = None,
    process_request: ProcessRequest | None = None,
    backlog: int = 100,
    max_message_size: int | None = SERVE_MAX_MESSAGE_SIZE,
    unix_socket: str | os.PathLike[str] | None = None,
    logger: LoggerLike | None = None,
    **accept_options: Any,
) -> WebSocketServer[AioServer]: ...


def serve(
    handler: Callable[[Any], Awaitable[object]],
    host: str | None = "127.0.0.1",
    port: int = 0,
    *,
    server_class: type[AioServer] = AioServer,
    open_timeout: float | None = 10.0,
    sock: socket.socket | None = None,
    ssl: ssl.SSLContext | None = None,
    process_request: ProcessRequest | None = None,
    backlog: int = 100,
    max_message_size: int | None = SERVE_MAX_MESSAGE_SIZE,
    unix_socket: str | os.PathLike[str] | None = None,
    logger: LoggerLike | None = None,
    **accept_options: Any,
) -> WebSocketServer[Any]:
    """Run a standalone WebSocket server that calls ``await handler(ws)`` per connection.

    The server parses the HTTP upgrade itself: a request that is not a WebSocket
    upgrade gets ``426 Upgrade Required``, a malformed one ``400 Bad Request``, and a
    client that does not finish its request within ``open_timeout`` is dropped.
    When the handler returns the connection is closed with 1000; when it raises, the
    exception is logged and the connection is closed with 1011.

    ``async with serve(handler) as server:`` (or ``server = await serve(handler)``)
    starts listening; leaving the block (or ``await server.close()``) stops
    listening, closes every connection with 1001 and waits for the handlers.

    Args:
        handler: An async callable taking the :class:`AioServer` connection.
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one (see ``server.port``).
        server_class: The connection class (an :class:`AioServer` subclass, for
            instance one that overrides ``choose_subprotocol``).
        open_timeout: Seconds a client has to send its upgrade request.
        sock: Listen on this already bound socket instead of ``host``/``port``.
        ssl: A server ``SSLContext`` for ``wss://``.
        process_request: Called (sync or async) with each upgrade request's
            :class:`~simple_websocket.HandshakeRequest` before it is accepted; return
            an :class:`~simple_websocket.HTTPResponse` to refuse it (authentication,
            rate limiting), or ``None`` to go on. An exception in it is logged and
            answered with 500.
        backlog: How many connections the kernel queues before the server accepts
            them (``listen()``'s backlog, also applied to ``sock``; the kernel caps
            it at ``net.core.somaxconn``). Raise it when many clients connect at
            once: a full queue drops their SYNs, which costs them a retransmission
            (a second or more). Raises ``ValueError`` below 1.
        max_message_size: The largest message a client may send, in bytes, after
            inflating a compressed one (1 MiB by default); a larger message closes
            its connection with 1009. ``None`` lifts the limit: only do that
            behind a proxy that enforces one, since a few hundred KiB of
            compressed data can inflate to gigabytes.
        unix_socket: Listen on this Unix socket path instead of ``host`` and
            ``port`` (a stale socket file there is replaced; the file is removed
            when the server closes). Clients connect with
            ``AioClient.connect("ws://localhost/", unix_socket=path)``.
        logger: Where the server and its connections log: a ``logging.Logger``, a
            ``LoggerAdapter`` or a logger's name (default ``simple_websocket``).
        **accept_options: Options of :meth:`AioServer.accept` (``subprotocols``,
            ``ping_interval``, ``compression``, ...).

    Raises:
        TypeError: An option has the wrong type (``handler`` not callable, ``ssl``
            not an ``SSLContext``, ...), or the connection class does not take one
            of ``accept_options``.
        ValueError: An option is out of its range (``backlog`` below 1, a negative
            timeout, ...), or ``unix_socket`` is given with ``port`` or ``sock``.
    """
    return _serve(
        handler,
        host,
        port,
        connection_class=server_class,
        open_timeout=open_timeout,
        sock=sock,
        ssl=ssl,
        process_request=process_request,
        backlog=backlog,
        max_message_size=max_message_size,
        unix_socket=unix_socket,
        logger=logger,
        **accept_options,
    )


# Re-exported for type annotations in user code.
__all__ += ["BaseConnection", "CloseCode", "Connect"]
