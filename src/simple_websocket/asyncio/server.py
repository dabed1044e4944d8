"""Server-side connections: the handshake answer, raw sockets and ``serve()``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import socket
import ssl as ssl_module
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Sequence
from types import TracebackType
from typing import Any, Generic, Self, cast

from typing_extensions import TypeVar

from ..errors import ConnectionClosed, HandshakeError
from ..sansio.handshake import (
    MAX_HEAD_SIZE,
    HandshakeRequest,
    HTTPResponse,
    ServerHandshake,
    parse_request_head,
    reject_response,
)
from ..sansio.options import (
    Compression,
    LoggerLike,
    check_callable,
    check_count,
    check_instance,
    check_logger,
    check_seconds,
    check_unix_socket,
    describe,
)
from ..sansio.protocol import CloseCode
from .base import BaseConnection, _wake
from .connection import Connection, Message, StreamProtocol, set_nodelay, wants_nodelay

__all__ = [
    "HTTPResponse",
    "MessageHandler",
    "ServerConnection",
    "WebSocketServer",
    "accept_socket",
    "check_origin",
    "serve",
]


class ServerConnection(ServerHandshake, Connection):
    """The server side of a connection.

    Attributes:
        subprotocols: The subprotocols this server supports, in its order.
        request: The client's :class:`~simple_websocket.sansio.handshake.HandshakeRequest`
            once the handshake was read (path, headers, offered subprotocols).
    """

    def __init__(
        self,
        subprotocols: str | Sequence[str] | None = None,
        *,
        compression: Compression = True,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._init_server_handshake(subprotocols, compression)

    def _answer_handshake(self, transport: asyncio.Transport, request: HandshakeRequest) -> None:
        """Answer ``request`` on ``transport``: 101 and attach, or an HTTP error.

        Raises:
            HandshakeError: The request was invalid; the error response was written
                and the transport is closing.
        """
        try:
            response, extensions, subprotocol = self._handshake_answer(request)
        except HandshakeError as exc:
            reject(transport, exc)
            raise
        transport.write(response)
        self._attach(transport, extensions, subprotocol)


def reject(transport: asyncio.Transport, exc: HandshakeError) -> None:
    """Write the HTTP error response for ``exc`` and close ``transport``."""
    if not transport.is_closing():
        transport.write(reject_response(exc))
        transport.close()


async def accept_socket(
    conn: ServerConnection, sock: socket.socket, request: HandshakeRequest
) -> None:
    """Complete the handshake of ``request`` on an accepted socket and attach ``conn``.

    The socket may be blocking or not; it is switched to non-blocking mode.

    Raises:
        HandshakeError: The request is not a valid upgrade; an HTTP error was sent
            and the socket closed.
    """
    loop = asyncio.get_running_loop()
    protocol = StreamProtocol()
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
    assert isinstance(transport, asyncio.Transport)
    conn._answer_handshake(transport, request)
    protocol.attach(conn)


def check_origin(request: HandshakeRequest, origins: Sequence[str | None] | None) -> None:
    """Check the request's ``Origin`` header against an allow-list.

    Args:
        request: The client's upgrade request.
        origins: The allowed ``Origin`` values, compared exactly (browsers send
            ``scheme://host[:port]`` in lower case). ``None`` in the list allows
            requests without an ``Origin`` header (clients that are not browsers).
            ``origins=None`` allows everything.

    Raises:
        HandshakeError: With ``status_code`` 403 when the origin is not allowed.
    """
    if origins is None:
        return
    origin = request.header("Origin")
    if origin not in origins:
        raise HandshakeError(
            "missing Origin header" if origin is None else f"origin {origin!r} is not allowed",
            403,
        )


Handler = Callable[[Any], Awaitable[Any]]


#: The connection a MessageHandler's callbacks take (contravariant: a handler of any
#: connection serves an AioServer too).
W = TypeVar("W", bound=BaseConnection, default=ServerConnection, contravariant=True)


class MessageHandler(Generic[W]):
    """A handler that takes each message in a callback: no task, no ``await``.

    Subclass it and override the callbacks; pass an instance wherever an async
    handler goes (``serve(handler)``, or ``await handler(ws)`` after
    ``AioServer.accept``). One instance serves every connection: keep the state of
    a connection on the connection (or in a dict keyed by it).

    - :meth:`on_open` is called once the connection is open,
    - :meth:`on_message` for each message, in order,
    - :meth:`on_close` once, when no more messages can arrive (``ws.close_reason``
      and ``ws.close_message`` then say how it ended).

    Callbacks are plain functions, run in the event loop: answer with
    ``ws.send_nowait(message)``, close with ``ws.close_nowait(code, reason)``, and
    start a task for anything that has to wait. On the asyncio engine (``serve()``,
    ``sock=``, ``aiohttp=``) they run inside the read of the network data, which is
    what makes them cheaper than an ``async for`` loop: no task is woken per
    message, and ``serve()`` starts no task per connection. While a peer does not
    read what is sent to it (the write buffer is above its high-water mark), no
    more of its messages are read. On other connections (``asgi=``) the same
    callbacks are driven by an ``async for`` loop.

    An exception in a callback is logged and fails the connection with 1011
    ("Internal server error"); a ``ConnectionClosed`` (sending on a connection
    that is closing) ends the delivery quietly. Either way the remaining messages
    are dropped and :meth:`on_close` is still called.

    Example::

        class Echo(MessageHandler):
            def on_message(self, ws: ServerConnection, message: str | bytes) -> None:
                ws.send_nowait(message)

        async with serve(Echo()) as server: ...

    Raises:
        TypeError: At class creation, when a callback is an ``async def``.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("on_open", "on_message", "on_close"):
            if inspect.iscoroutinefunction(getattr(cls, name)):
                raise TypeError(
                    f"{cls.__name__}.{name} must be a plain function, not async def: "
                    "callbacks cannot wait (use ws.send_nowait(), start a task, or "
                    "write an async handler instead)"
                )

    def on_open(self, ws: W) -> None:
        """The connection ``ws`` is open (nothing by default)."""

    def on_message(self, ws: W, message: Message) -> None:
        """A message arrived on ``ws`` (nothing by default)."""

    def on_close(self, ws: W) -> None:
        """No more messages will arrive on ``ws`` (nothing by default)."""

    async def __call__(self, ws: W) -> None:
        """Run the callbacks for ``ws``; return when it ended.

        Cancelling the call stops the wait only: on the asyncio engine the
        callbacks go on until the connection ends.
        """
        if isinstance(ws, Connection):
            ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            ws._listen(self, lambda _: _wake(ended))
            await ended
            return
        try:
            self.on_open(ws)
            async for message in ws:
                self.on_message(ws, message)
        except ConnectionClosed as exc:
            ws.logger.debug("message handler ended: %s", exc)
            await ws.close()
        except Exception:
            ws.logger.exception("message handler failed")
            await ws.close(CloseCode.INTERNAL_ERROR, "Internal server error")
        finally:
            self.on_close(ws)


ProcessRequest = Callable[
    [HandshakeRequest], "HTTPResponse | Awaitable[HTTPResponse | None] | None"
]
C = TypeVar("C", bound=ServerConnection)


class _ServerProtocol(StreamProtocol):
    """Reads one HTTP upgrade request, answers it, then runs the handler."""

    __slots__ = ("buffer", "server", "timed")

    def __init__(self, server: WebSocketServer[Any]) -> None:
        super().__init__()
        self.server = server
        self.buffer = bytearray()
        # The server's open_timeout applies until the handshake is over.
        self.timed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # StreamProtocol.connection_made(), with the Nagle check made once per
        # server: every socket it accepts is of the same kind (reading a socket's
        # family and type costs two enum conversions).
        self.transport = cast(asyncio.Transport, transport)
        server = self.server
        nodelay = server._nodelay
        if nodelay is not False:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                if nodelay is None:
                    nodelay = server._nodelay = wants_nodelay(sock)
                if nodelay:
                    set_nodelay(sock)
        self.on_handshake_data = self._head_data
        if server.open_timeout is not None:
            self.timed = True
            server._watch_handshake(self)

    def _timed_out(self) -> None:
        """The server's ``open_timeout`` passed: drop a handshake still under way."""
        if self.timed and self.conn is None and self.transport is not None:
            self._stop_timer()
            self.server.logger.info("opening handshake timed out; closing the connection")
            self.transport.abort()

    def _head_data(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        try:
            if self.server.max_head_size < MAX_HEAD_SIZE:
                self._check_head_size()
            parsed = parse_request_head(self.buffer)
        except HandshakeError as exc:
            self._stop_timer()
            self.on_handshake_data = None
            reject(self.transport, exc)
            return
        if parsed is None:
            return
        request, rest = parsed
        self.buffer = bytearray(rest)
        if self.server.process_request is None:
            self._stop_timer()
            self.on_handshake_data = None
            self._upgrade(request)
            return
        # Bytes that arrive while process_request runs wait in the buffer.
        self.on_handshake_data = self.buffer.extend
        task = (self.server._loop or asyncio.get_running_loop()).create_task(self._process(request))
        self.server._track(task)

    def _check_head_size(self) -> None:
        """Refuse a request head larger than the server's ``max_head_size``.

        (Called only when that is below ``MAX_HEAD_SIZE``, which
        ``parse_request_head`` enforces itself.)

        Raises:
            HandshakeError: With status 431.
        """
        limit = self.server.max_head_size
        end = self.buffer.find(b"\r\n\r\n")
        if (end < 0 and len(self.buffer) > limit) or end > limit:
            raise HandshakeError("HTTP head too large", 431)

    async def _process(self, request: HandshakeRequest) -> None:
        assert self.transport is not None and self.server.process_request is not None
        try:
            answer = self.server.process_request(request)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception:
            self.server.logger.exception("process_request failed")
            answer = HTTPResponse(500, "Internal Server Error\n")
        self._stop_timer()
        self.on_handshake_data = None
        if self.transport.is_closing():
            return
        if answer is not None:
            self.transport.write(answer.to_bytes())
            self.transport.close()
            return
        self._upgrade(request)

    def _upgrade(self, request: HandshakeRequest) -> None:
        assert self.transport is not None
        try:
            if self.server.origins is not None:
                check_origin(request, self.server.origins)
        except HandshakeError as exc:
            self.server.logger.info(
                "rejected handshake from %s: %s",
                self.transport.get_extra_info("peername"),
                exc.detail,
            )
            reject(self.transport, exc)
            return
        conn = self.server._new_connection()
        try:
            conn._answer_handshake(self.transport, request)
        except HandshakeError as exc:
            self.server.logger.info(
                "rejected handshake from %s: %s",
                self.transport.get_extra_info("peername"),
                exc.detail,
            )
            return
        self.attach(conn)
        if self.buffer:
            rest = bytes(self.buffer)
            self.buffer.clear()
            conn._data_received(rest)
        self.server._start_handler(conn)

    def _stop_timer(self) -> None:
        if self.timed:
            self.timed = False
            self.server._handshake_over()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)


class WebSocketServer(Generic[C]):
    """A standalone asyncio WebSocket server, created by :func:`serve`.

    Use it as an async context manager (``async with serve(handler) as server``) or
    await it; :attr:`port` tells the bound port when ``port=0`` was asked.

    Besides the options of :func:`simple_websocket.serve`, two limits protect the
    opening handshake (both are also accepted by ``serve()``):

    * ``origins``: the allowed ``Origin`` header values (``None`` in the list allows
      requests without one). Any other origin is answered with ``403 Forbidden``.
      The check runs after ``process_request``, so that hook can still serve pages.
      ``None`` (the default) allows every origin.
    * ``max_head_size``: the largest request head in bytes (at most, and by default,
      ``MAX_HEAD_SIZE``, 16 KiB); a larger one is answered with ``431 Request Header
      Fields Too Large``.

    ``unix_socket=path`` listens on a Unix socket instead of ``host`` and ``port``
    (a stale socket file there is replaced; the file is removed when the server
    closes), and ``logger=`` (a logger, an adapter or a logger's name) is where
    the server and its connections log.

    ``open_timeout`` bounds the whole opening handshake: the TLS handshake (with
    ``ssl``) and then the upgrade request each get that long.
    """

    def __init__(
        self,
        handler: Handler,
        host: str | None = "127.0.0.1",
        port: int = 0,
        *,
        connection_class: type[C],
        open_timeout: float | None = 10.0,
        sock: socket.socket | None = None,
        ssl: Any = None,
        process_request: ProcessRequest | None = None,
        origins: Sequence[str | None] | None = None,
        max_head_size: int = MAX_HEAD_SIZE,
        backlog: int = 100,
        unix_socket: str | os.PathLike[str] | None = None,
        logger: LoggerLike | None = None,
        **accept_options: Any,
    ) -> None:
        #: Where the server and its connections log (``logger=``).
        self.logger = check_logger(logger)
        #: The Unix socket path listened on, or ``None`` for TCP.
        self.unix_socket = check_unix_socket(unix_socket)
        if self.unix_socket is not None and (sock is not None or port != 0):
            raise ValueError("unix_socket= replaces host, port and sock=: give only one")
        check_callable("handler", handler, optional=False)
        check_callable("process_request", process_request)
        check_seconds("open_timeout", open_timeout)
        check_count("backlog", backlog)
        check_count("max_head_size", max_head_size)
        if max_head_size > MAX_HEAD_SIZE:
            raise ValueError(f"max_head_size must be between 1 and {MAX_HEAD_SIZE}")
        if host is not None and not isinstance(host, str):
            raise TypeError(f"host must be a str or None, not {describe(host)}")
        check_count("port", port, minimum=0)
        if port > 65535:
            raise ValueError(f"port must be between 0 and 65535, not {port}")
        check_instance("sock", sock, socket.socket, "a socket.socket")
        check_instance("ssl", ssl, ssl_module.SSLContext, "an ssl.SSLContext")
        if isinstance(origins, (str, bytes)):
            raise TypeError("origins must be a list of origins, not a str")
        self.handler = handler
        self.process_request = process_request
        #: The allowed ``Origin`` header values (``None`` in it: no header), or
        #: ``None`` to allow every origin.
        self.origins: list[str | None] | None = None if origins is None else list(origins)
        #: The largest request head (request line and headers) accepted, in bytes.
        self.max_head_size = max_head_size
        self.host = host
        self._port = port
        self.connection_class = connection_class
        self.open_timeout = open_timeout
        self._sock = sock
        self._ssl = ssl
        #: Connections the kernel queues before they are accepted (``listen()``).
        self.backlog = backlog
        if logger is not None:
            # The connections log where the server does.
            accept_options = {**accept_options, "logger": self.logger}
        self.accept_options = accept_options
        self.connections: set[C] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # The handler task of each connection, while it runs.
        self._handlers: dict[C, asyncio.Task[None]] = {}
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The handshakes under open_timeout, oldest first (all get the same time, so
        # their deadlines come in this order), and the one timer for the oldest:
        # cheaper than a timer per connection, which nearly always ends cancelled.
        # Weak references: a connection that is long gone is not kept for this.
        self._handshakes: deque[tuple[float, weakref.ref[_ServerProtocol]]] = deque()
        self._handshake_timer: asyncio.TimerHandle | None = None
        # How many of them are still under way: with none, no timer runs (an armed
        # timer costs every iteration of the event loop a little).
        self._handshaking = 0
        # Whether the sockets accepted need TCP_NODELAY set (None: not known yet).
        self._nodelay: bool | None = None
        # Fail early on options the connection class does not take.
        connection_class(**self.accept_options)

    def _new_connection(self) -> C:
        conn = self.connection_class(**self.accept_options)
        conn._loop = self._loop
        return conn

    def _watch_handshake(self, proto: _ServerProtocol) -> None:
        """Drop ``proto``'s connection if its handshake is not over in ``open_timeout``."""
        loop = self._loop
        assert loop is not None and self.open_timeout is not None
        deadline = loop.time() + self.open_timeout
        self._handshakes.append((deadline, weakref.ref(proto)))
        self._handshaking += 1
        if self._handshake_timer is None:
            self._handshake_timer = loop.call_at(deadline, self._handshake_deadlines)

    def _handshake_over(self) -> None:
        """A watched handshake ended (either way)."""
        self._handshaking -= 1
        if not self._handshaking:
            self._handshakes.clear()
            if self._handshake_timer is not None:
                self._handshake_timer.cancel()
                self._handshake_timer = None

    def _handshake_deadlines(self) -> None:
        loop = self._loop
        assert loop is not None
        self._handshake_timer = None
        now = loop.time()
        pending = self._handshakes
        while pending and pending[0][0] <= now:
            proto = pending.popleft()[1]()
            if proto is not None:
                proto._timed_out()
        if pending:
            self._handshake_timer = loop.call_at(pending[0][0], self._handshake_deadlines)

    def _start_handler(self, conn: C) -> None:
        self.connections.add(conn)
        if isinstance(self.handler, MessageHandler):
            # Callbacks from the reads: no task for this connection.
            conn._listen(self.handler, self._listener_ended)
            return
        loop = conn._loop or asyncio.get_running_loop()
        # Tracked until _run() ends (it removes itself: a done callback would cost
        # the loop one more iteration per connection).
        self._handlers[conn] = loop.create_task(self._run(conn))

    def _listener_ended(self, conn: Connection) -> None:
        self.connections.discard(conn)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, conn: C) -> None:
        try:
            await self.handler(conn)
        except asyncio.CancelledError:
            await conn.close(CloseCode.GOING_AWAY, "Server shutting down")
            raise
        except ConnectionClosed as exc:
            # The client went away while the handler talked to it: not a bug.
            self.logger.debug("handler ended: %s", exc)
            await conn.close()
        except Exception:
            self.logger.exception("connection handler failed")
            await conn.close(CloseCode.INTERNAL_ERROR, "Internal server error")
        else:
            await conn.close()
        finally:
            self.connections.discard(conn)
            self._handlers.pop(conn, None)

    async def start(self) -> Self:
        """Start listening (done by ``await`` and ``async with``)."""
        if self._server is None:
            loop = self._loop = asyncio.get_running_loop()
            # The TLS handshake happens before connection_made() starts the
            # open_timeout timer: give it the same limit.
            tls_timeout = self.open_timeout if self._ssl is not None else None
            if self.unix_socket is not None:
                self._server = await loop.create_unix_server(
                    functools.partial(_ServerProtocol, self),
                    self.unix_socket,
                    ssl=self._ssl,
                    ssl_handshake_timeout=tls_timeout,
                    backlog=self.backlog,
                )
            elif self._sock is not None:
                self._server = await loop.create_server(
                    functools.partial(_ServerProtocol, self),
                    sock=self._sock,
                    ssl=self._ssl,
                    ssl_handshake_timeout=tls_timeout,
                    backlog=self.backlog,
                )
            else:
                self._server = await loop.create_server(
                    functools.partial(_ServerProtocol, self),
                    self.host,
                    self._port,
                    ssl=self._ssl,
                    ssl_handshake_timeout=tls_timeout,
                    backlog=self.backlog,
                )
        return self

    def __await__(self) -> Generator[Any, None, Self]:
        return self.start().__await__()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return tuple(self._server.sockets) if self._server is not None else ()

    @property
    def port(self) -> int:
        """The port the server listens on (0 on a Unix socket)."""
        if self.unix_socket is not None:
            return 0
        for sock in self.sockets:
            return int(sock.getsockname()[1])
        return self._port

    @property
    def url(self) -> str:
        """A ``ws://`` URL for this server (``ws://host:port/``).

        On a Unix socket, ``ws://localhost/``: connect with
        ``AioClient.connect(server.url, unix_socket=server.unix_socket)``.
        """
        scheme = "wss" if self._ssl is not None else "ws"
        if self.unix_socket is not None:
            return f"{scheme}://localhost/"
        host = self.host or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}/"

    async def serve_forever(self) -> None:
        """Serve until cancelled; then shut down as :meth:`close` does."""
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.close()

    async def close(self, close_timeout: float | None = None) -> None:
        """Stop listening, close every connection with 1001 and wait for the handlers.

        Handlers still running after the connections closed get ``close_timeout``
        seconds (the connections' own by default) before they are cancelled.
        """
        if self._server is not None:
            self._server.close()
        conns = list(self.connections)
        await asyncio.gather(
            *(c.close(CloseCode.GOING_AWAY, "Server shutting down") for c in conns),
            return_exceptions=True,
        )
        if self._tasks or self._handlers:
            timeout = close_timeout
            if timeout is None:
                timeout = max((c.close_timeout for c in conns), default=5.0)
            _, pending = await asyncio.wait(
                self._tasks | set(self._handlers.values()), timeout=timeout
            )
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()
            if self.unix_socket is not None:
                # Python 3.13 removes the socket file itself; earlier versions do not.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.unix_socket)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def serve(
    handler: Handler,
    host: str | None = "127.0.0.1",
    port: int = 0,
    *,
    connection_class: type[ServerConnection] = ServerConnection,
    **accept_options: Any,
) -> WebSocketServer[Any]:
    """Create a standalone WebSocket server; see :func:`simple_websocket.serve`."""
    return WebSocketServer(handler, host, port, connection_class=connection_class, **accept_options)
