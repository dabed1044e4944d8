"""The asyncio engine: one WebSocket connection over an asyncio transport.

:class:`BaseConnection` holds what every async connection shares, whatever moves its
bytes: the bounded queue of received messages, ``receive(timeout)``, the async
iterator and async context manager protocols. :class:`Connection` drives the sans-I/O
core (:class:`simple_websocket.sansio.Protocol`) from an asyncio transport: no reader
task, bytes are parsed in the transport's ``data_received`` callback, frames are
written straight to the transport, and both directions apply backpressure.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self

from wsproto.extensions import Extension

from ..errors import ConnectionClosed
from ..sansio.protocol import CloseCode, Protocol, State

__all__ = ["BaseConnection", "Connection", "Message", "StreamProtocol"]

logger = logging.getLogger("simple_websocket")

#: A WebSocket message: ``str`` for a text message, ``bytes`` for a binary one.
Message = str | bytes

_TIMEOUT = object()


def _wake(waiter: asyncio.Future[Any], value: Any = None) -> None:
    if not waiter.done():
        waiter.set_result(value)


class BaseConnection:
    """What every asynchronous WebSocket connection offers.

    Attributes:
        subprotocol: The negotiated subprotocol, or ``None``.
        connected: ``True`` while the connection is open; ``False`` once a close was
            started by either side or the transport was lost.
        receive_bytes: Kept from simple-websocket 1.1 for compatibility; the engine
            reads whatever the transport delivers.
        ping_interval: Seconds between keepalive pings, or ``None``.
        ping_timeout: Seconds to wait for a pong before failing the connection with
            close code 1011 (``None``: until the next ping is due).
        max_message_size: The largest message accepted, in bytes, or ``None``.
        close_timeout: Seconds ``close()`` waits for the closing handshake.
        max_queue: Received messages buffered before reading from the network pauses.
        close_reason: The close code once the connection is closed (1005 before).
        close_message: The close reason text once closed, or ``None``.
    """

    def __init__(
        self,
        *,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        max_message_size: int | None = None,
        close_timeout: float = 5.0,
        max_queue: int = 16,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.subprotocol: str | None = None
        self.connected = False
        self.receive_bytes = receive_bytes
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_message_size = max_message_size
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self.close_reason: int = CloseCode.NO_STATUS_RCVD
        self.close_message: str | None = None
        self._messages: deque[Message] = deque()
        self._waiters: list[asyncio.Future[Any]] = []
        # True once no further message can arrive (close frame received, connection
        # failed or lost).
        self._finished = False
        # True once the user called close().
        self._close_called = False
        self._read_paused = False

    # -- to be provided by subclasses ---------------------------------------------

    async def send(self, data: Any) -> None:
        """Send a message: bytes-like data as binary, anything else as text.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        raise NotImplementedError

    async def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Close the connection; see the concrete class."""
        raise NotImplementedError

    def _pause_reading(self) -> None:
        """Stop taking data from the network (read backpressure)."""

    def _resume_reading(self) -> None:
        """Take data from the network again."""

    # -- receiving -----------------------------------------------------------------

    def _deliver(self, messages: Sequence[Message]) -> None:
        """Queue received messages and wake the receivers."""
        self._messages.extend(messages)
        if not self._read_paused and len(self._messages) >= self.max_queue:
            self._read_paused = True
            self._pause_reading()
        self._wake_receivers()

    def _wake_receivers(self) -> None:
        if self._waiters:
            waiters = self._waiters
            self._waiters = []
            for waiter in waiters:
                _wake(waiter)

    def _finish(self, code: int, reason: str | None) -> None:
        """Record that no more messages will arrive, and why."""
        if self._finished:
            return
        self._finished = True
        self.connected = False
        self.close_reason = code
        self.close_message = reason
        self._wake_receivers()

    def _closed_exception(self) -> ConnectionClosed:
        return ConnectionClosed(self.close_reason, self.close_message)

    async def receive(self, timeout: float | None = None) -> Message | None:
        """Receive the next message.

        Args:
            timeout: Seconds to wait; ``None`` waits as long as it takes, ``0`` only
                returns a message that is already buffered.

        Returns:
            The message (``str`` or ``bytes``), or ``None`` if ``timeout`` passed.

        Raises:
            ConnectionClosed: The connection is closed and every message received
                before the close was already returned.

        Cancelling a pending ``receive()`` loses nothing: a message is only taken
        from the buffer by the call that returns it.
        """
        messages = self._messages
        if messages:
            message = messages.popleft()
            if self._read_paused and len(messages) <= self.max_queue // 4:
                self._read_paused = False
                self._resume_reading()
            return message
        if self._finished:
            raise self._closed_exception()
        if timeout is not None and timeout <= 0:
            return None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            waiter: asyncio.Future[Any] = loop.create_future()
            self._waiters.append(waiter)
            handle = None if deadline is None else loop.call_at(deadline, _wake, waiter, _TIMEOUT)
            try:
                result = await waiter
            finally:
                if handle is not None:
                    handle.cancel()
                if not waiter.done() or waiter.cancelled():
                    try:
                        self._waiters.remove(waiter)
                    except ValueError:
                        pass
            if messages:
                message = messages.popleft()
                if self._read_paused and len(messages) <= self.max_queue // 4:
                    self._read_paused = False
                    self._resume_reading()
                return message
            if self._finished:
                raise self._closed_exception()
            if result is _TIMEOUT:
                return None

    # -- async iteration and context management ---------------------------------

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        """Return the next message.

        Iteration ends quietly when the connection closes normally (1000 or 1001,
        or after ``close()`` was called) and raises ``ConnectionClosed`` otherwise.
        """
        try:
            message = await self.receive()
        except ConnectionClosed as exc:
            if exc.reason in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY) or (
                self._close_called
            ):
                raise StopAsyncIteration from None
            raise
        assert message is not None
        return message

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close with 1000, or with 1011 when the block raised."""
        if exc_type is None:
            await self.close()
        else:
            await self.close(CloseCode.INTERNAL_ERROR, "Unexpected error")


class Connection(BaseConnection):
    """A WebSocket connection driven by the sans-I/O core over an asyncio transport.

    Instances are created by the client and server entry points
    (``AioClient.connect``, ``AioServer.accept``, ``serve``) and attached to a
    transport once the opening handshake succeeded.
    """

    _client = False

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._proto: Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lost: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._close_handle: asyncio.TimerHandle | None = None
        # Replaced by adapters whose transport belongs to someone else (aiohttp).
        self._write_blocked: Callable[[], bool] = lambda: self._write_paused
        self._wait_writable: Callable[[], Awaitable[None]] = self._drain

    # -- attaching -------------------------------------------------------------

    def _attach(
        self,
        transport: asyncio.Transport,
        extensions: Sequence[Extension] = (),
        subprotocol: str | None = None,
    ) -> None:
        """Start the connection on ``transport`` once the handshake is done."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._transport = transport
        self._lost = loop.create_future()
        self._proto = Protocol(
            self._client, extensions, max_message_size=self.max_message_size, clock=loop.time
        )
        self.subprotocol = subprotocol
        self.connected = True
        if self.ping_interval:
            self._keepalive_handle = loop.call_later(self.ping_interval, self._keepalive)

    @property
    def transport(self) -> asyncio.Transport | None:
        """The asyncio transport the connection runs on (``None`` before it opened)."""
        return self._transport

    @property
    def latency(self) -> float | None:
        """Round-trip time of the last answered ping in seconds, or ``None``."""
        return self._proto.latency if self._proto is not None else None

    @property
    def local_address(self) -> Any:
        """The local socket address, as ``transport.get_extra_info('sockname')``."""
        return self._transport.get_extra_info("sockname") if self._transport else None

    @property
    def remote_address(self) -> Any:
        """The peer's socket address, as ``transport.get_extra_info('peername')``."""
        return self._transport.get_extra_info("peername") if self._transport else None

    # -- data from the transport ---------------------------------------------------

    def _data_received(self, data: bytes) -> None:
        proto = self._proto
        assert proto is not None
        messages = proto.receive_data(data)
        if messages:
            self._deliver(messages)
        out = proto.data_to_send()
        if out:
            self._write_raw(out)
        if proto.state is State.CLOSED:
            self._on_protocol_closed()

    def _eof_received(self) -> bool:
        # Returning False lets the transport close itself; connection_lost follows.
        return False

    def _connection_lost(self, exc: BaseException | None) -> None:
        proto = self._proto
        if proto is None:
            return
        proto.connection_lost()
        self._finish(proto.close_code or CloseCode.ABNORMAL_CLOSURE, proto.close_reason)
        for handle in (self._keepalive_handle, self._close_handle):
            if handle is not None:
                handle.cancel()
        self._write_paused = False
        for waiter in self._drain_waiters:
            _wake(waiter)
        self._drain_waiters.clear()
        if self._lost is not None:
            _wake(self._lost)

    def _pause_writing(self) -> None:
        self._write_paused = True

    def _resume_writing(self) -> None:
        self._write_paused = False
        waiters = self._drain_waiters
        self._drain_waiters = []
        for waiter in waiters:
            _wake(waiter)

    def _pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _on_protocol_closed(self) -> None:
        """The closing handshake completed, or the connection failed."""
        proto = self._proto
        assert proto is not None and self._transport is not None
        self._finish(proto.close_code or CloseCode.ABNORMAL_CLOSURE, proto.close_reason)
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None
        if self._client and not proto.failed:
            # RFC 6455 7.1.1: the server closes TCP first; give it close_timeout.
            if self._close_handle is None and self._loop is not None:
                self._close_handle = self._loop.call_later(self.close_timeout, self._abort)
        else:
            self._transport.close()
            if self._close_handle is None and self._loop is not None:
                self._close_handle = self._loop.call_later(self.close_timeout, self._abort)

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- sending -------------------------------------------------------------------

    def _write_raw(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    async def _drain(self) -> None:
        while self._write_paused:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter

    async def send(self, data: Any) -> None:
        """Send a message: bytes-like data as binary, anything else as text.

        Concurrent calls are serialised: each message is written whole, in the order
        of the calls. When the transport's write buffer is above its high-water mark,
        ``send`` waits until it drained (write backpressure).

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        proto = self._proto
        if proto is None or proto.state is not State.OPEN or self._close_called:
            raise self._send_closed_error()
        if self._write_blocked():
            await self._wait_writable()
            if proto.state is not State.OPEN:
                raise self._send_closed_error()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            data = data if isinstance(data, str) else str(data)
        assert self._transport is not None
        self._transport.write(proto.send(data))
        if self._write_blocked():
            await self._wait_writable()

    def _send_closed_error(self) -> ConnectionClosed:
        proto = self._proto
        if proto is not None and proto.close_code is not None:
            return ConnectionClosed(proto.close_code, proto.close_reason)
        return self._closed_exception()

    async def ping(self, data: bytes | None = None) -> float:
        """Send a ping and wait for its pong.

        Returns:
            The round-trip time in seconds.

        Raises:
            ConnectionClosed: The connection closed before the pong arrived.
        """
        proto = self._proto
        if proto is None or proto.state is not State.OPEN:
            raise self._send_closed_error()
        payload, frame = proto.ping(data)
        sent = asyncio.get_running_loop().time()
        self._write_raw(frame)
        while payload in proto._pings:
            if self._finished:
                raise self._closed_exception()
            waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        return asyncio.get_running_loop().time() - sent

    def _keepalive(self) -> None:
        proto = self._proto
        loop = self._loop
        if proto is None or loop is None or proto.state is not State.OPEN:
            return
        oldest = proto.oldest_unanswered_ping
        timeout = self.ping_timeout if self.ping_timeout is not None else self.ping_interval
        now = loop.time()
        if oldest is not None and timeout is not None and now - oldest >= timeout - 1e-9:
            logger.info("keepalive ping timeout after %.3f s; failing the connection", now - oldest)
            self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            return
        _, frame = proto.ping()
        self._write_raw(frame)
        assert self.ping_interval is not None
        delay = self.ping_interval
        if self.ping_timeout is not None and self.ping_timeout < delay:
            delay = self.ping_timeout
        self._keepalive_handle = loop.call_later(delay, self._keepalive)

    def _fail(self, code: int, reason: str | None = None) -> None:
        """Fail the connection: send a close frame with ``code`` and close TCP."""
        proto = self._proto
        if proto is None or proto.state is State.CLOSED:
            return
        proto.fail(code, reason)
        out = proto.data_to_send()
        if out:
            self._write_raw(out)
        self._on_protocol_closed()

    # -- closing -------------------------------------------------------------------

    async def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Close the connection.

        Sends a close frame (code ``reason``, 1000 by default, and ``message``),
        waits up to ``close_timeout`` for the peer's close frame and for TCP to
        close, then aborts the transport if it is still open. Calling it again, or
        after the peer closed, is a no-op that waits for the same end.

        Cancelling ``close()`` stops the wait; the close frame is already sent and
        the transport is still closed at the latest after ``close_timeout``.
        """
        self._close_called = True
        self.connected = False
        proto = self._proto
        if proto is None or self._lost is None:
            return
        if proto.state is State.OPEN:
            frame = proto.close(reason or CloseCode.NORMAL_CLOSURE, message)
            self._write_raw(frame)
            assert self._loop is not None
            if self._close_handle is None:
                self._close_handle = self._loop.call_later(self.close_timeout, self._abort)
        if not self._lost.done():
            await asyncio.shield(self._lost)

    async def wait_closed(self) -> None:
        """Wait until the transport is closed, without starting a close."""
        if self._lost is not None:
            await asyncio.shield(self._lost)


class StreamProtocol(asyncio.Protocol):
    """The asyncio protocol behind client, ``serve()`` and ``sock=`` connections.

    Before the handshake completes, received bytes go to :attr:`on_handshake_data`;
    afterwards straight to the connection.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.conn: Connection | None = None
        self.on_handshake_data: Callable[[bytes], None] | None = None
        self.on_handshake_lost: Callable[[BaseException | None], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def attach(self, conn: Connection) -> None:
        """Route everything the transport reports to ``conn`` from now on."""
        self.conn = conn
        # Skip one indirection per read on the hot path.
        self.data_received = conn._data_received  # type: ignore[method-assign]

    def data_received(self, data: bytes) -> None:
        if self.conn is not None:
            self.conn._data_received(data)
        elif self.on_handshake_data is not None:
            self.on_handshake_data(data)

    def eof_received(self) -> bool | None:
        if self.conn is not None:
            return self.conn._eof_received()
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.conn is not None:
            self.conn._connection_lost(exc)
        elif self.on_handshake_lost is not None:
            self.on_handshake_lost(exc)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn._pause_writing()

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn._resume_writing()
