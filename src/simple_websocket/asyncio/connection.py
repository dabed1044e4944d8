"""The asyncio engine: one WebSocket connection over an asyncio transport.

:class:`BaseConnection` holds what every async connection shares, whatever moves its
bytes: the bounded queue of received messages, ``receive(timeout)``, the async
iterator and async context manager protocols. :class:`Connection` drives the sans-I/O
core (:class:`simple_websocket.sansio.Protocol`) from an asyncio transport: no reader
task, bytes are parsed in the transport's ``data_received`` callback, frames are
written straight to the transport, and both directions apply backpressure.

Writes are coalesced within a burst: the first frame written after the connection
last received data (or after the last flush) goes straight to the transport; frames
written right after it, in the same loop iteration (a task sending many messages
without waiting), are joined into one buffer that is written at the start of the
next iteration, or as soon as it holds ``_COALESCE_LIMIT`` bytes, so that a burst of
small messages costs a few system calls instead of one each. Frames keep their order
(a frame only goes straight out when nothing waits in the buffer), large frames are
never copied into it, and backpressure still applies: at most ``_COALESCE_LIMIT``
bytes wait outside the transport.

Pings are answered from ``data_received`` too. While the transport's write buffer is
over its high-water mark (the peer is not reading), only the most recent ping gets a
pong, held in the core and written once the buffer drains: a peer flooding pings
without reading cannot make our buffers grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from typing_extensions import Unpack
from wsproto.extensions import Extension

from ..errors import ConnectionClosed
from ..sansio.limits import UNSET, Unset, message_limits
from ..sansio.protocol import CloseCode, Protocol, State, check_close_code

if TYPE_CHECKING:  # pragma: no cover
    from aiostream import Stream

    from ..channels import ChannelOptions, TypedChannel

__all__ = ["BaseConnection", "Connection", "Message", "StreamProtocol"]

logger = logging.getLogger("simple_websocket")

#: A WebSocket message: ``str`` for a text message, ``bytes`` for a binary one.
Message = str | bytes

_T = TypeVar("_T")
_TIMEOUT = object()
_OPEN = State.OPEN
_CLOSED = State.CLOSED
#: Frames at least this large go straight to the transport; the coalescing buffer is
#: written out once it reaches this size.
_COALESCE_LIMIT = 16 * 1024
#: Binary messages at least this large are written in pieces (``Protocol.send_chunks``):
#: no copy of the payload behind the header, and a client masks piece by piece.
_LARGE_FRAME = 128 * 1024
#: The most a transport reads at once (asyncio's own limit for plain protocols).
_READ_SIZE = 256 * 1024


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
        max_message_size: The largest message accepted, in bytes, or ``None``. When
            it was not given (``UNSET``), this is ``None`` and only compressed messages
            are limited, to ``MAX_INFLATED_SIZE`` inflated (see ``sansio.limits``).
        close_timeout: Seconds ``close()`` waits for the closing handshake.
        max_queue: Received messages buffered before reading from the network pauses.
        close_reason: The close code once the connection is closed (1005 before).
        close_message: The close reason text once closed, or ``None``.
    """

    #: The event loop the connection runs on, once known.
    _loop: asyncio.AbstractEventLoop | None = None

    def __init__(
        self,
        *,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        max_message_size: int | Unset | None = UNSET,
        close_timeout: float = 5.0,
        max_queue: int = 16,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.max_message_size, self._max_inflated_size = message_limits(max_message_size)
        self.subprotocol: str | None = None
        self.connected = False
        self.receive_bytes = receive_bytes
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
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
        # Once close() was called, reading must go on: the peer's close frame may be
        # behind the messages (see close()).
        if (
            not self._read_paused
            and not self._close_called
            and len(self._messages) >= self.max_queue
        ):
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
        # The connection's own loop when it has one: get_running_loop() costs a
        # getpid() system call per call on Python 3.11.
        loop = self._loop or asyncio.get_running_loop()
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
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
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

    @property
    def close_requested(self) -> bool:
        """``True`` once ``close()`` was called on this side."""
        return self._close_called

    # -- extensions ------------------------------------------------------------------
    # Conveniences over the extension modules, which use only this public
    # interface; they are imported on first use so the engine does not depend on
    # pydantic or aiostream being imported.

    @overload
    def typed(
        self, receive_type: type[_T], **options: Unpack[ChannelOptions]
    ) -> TypedChannel[_T]: ...

    @overload
    def typed(self, receive_type: Any, **options: Unpack[ChannelOptions]) -> TypedChannel[Any]: ...

    def typed(self, receive_type: Any, **options: Unpack[ChannelOptions]) -> TypedChannel[Any]:
        """Return a typed channel over this connection.

        ``receive_type`` is any type a pydantic ``TypeAdapter`` accepts; see
        ``simple_websocket.channels.typed`` for ``send``, ``codec``,
        ``on_invalid``, ``id_field``, ``binary`` and ``max_inbox``. To type
        checkers, a class ``X`` gives a ``TypedChannel[X]`` and any other form a
        ``TypedChannel[Any]``.
        """
        from ..channels import typed

        return typed(self, receive_type, **options)

    def stream(self, *, close: bool = False) -> Stream[Message]:
        """Return an ``aiostream`` stream of this connection's messages.

        The stream ends when the connection closes normally and raises
        ``ConnectionClosed`` otherwise. Leaving it early does not close the
        connection unless ``close`` is true.
        """
        from ..operators import messages

        return messages(self, close=close)

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
        # send() calls waiting for their turn to write, oldest first.
        self._send_queue: deque[asyncio.Future[None]] = deque()
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._next_ping = 0.0
        # ping() calls waiting for a pong (woken by every pong and by the end).
        self._pong_waiters: list[asyncio.Future[None]] = []
        self._close_handle: asyncio.TimerHandle | None = None
        # Writes the pong held back while the write buffer was full (see above).
        self._pong_task: asyncio.Task[None] | None = None
        # Replaced by adapters whose transport belongs to someone else (aiohttp).
        self._write_blocked: Callable[[], bool] = lambda: self._write_paused
        self._wait_writable: Callable[[], Awaitable[None]] = self._drain
        # Write coalescing (see the module docstring): a frame went out in the
        # current burst; the frames that followed it, not written yet.
        self._burst = False
        self._coalesced: bytearray | None = None
        self._flush_scheduled = False

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
            self._client,
            extensions,
            max_message_size=self.max_message_size,
            clock=loop.time,
            max_inflated_size=self._max_inflated_size,
        )
        self.subprotocol = subprotocol
        self.connected = True
        if self.ping_interval:
            self._next_ping = loop.time() + self.ping_interval
            self._keepalive_handle = loop.call_at(self._next_ping, self._keepalive)

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
        if data:
            # New bytes from the network: the next frame written starts a new burst.
            self._burst = False
        # Parse no more messages than the queue has room for: the rest of the bytes
        # wait in the core while reading is paused (one read of compressed data can
        # hold thousands of messages). After close() the peer's close frame must
        # be found, so everything is parsed.
        room = None if self._close_called else self.max_queue - len(self._messages)
        proto.defer_pongs = self._write_blocked()
        messages = proto.receive_data(data, room)
        if messages:
            self._deliver(messages)
        self._after_receive(proto)

    def _buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were read into ``Protocol.receive_buffer()`` (a large frame)."""
        proto = self._proto
        assert proto is not None
        self._burst = False
        room = None if self._close_called else self.max_queue - len(self._messages)
        messages = proto.receive_buffer_updated(nbytes, room)
        if messages:
            self._deliver(messages)
        self._after_receive(proto)

    def _after_receive(self, proto: Protocol) -> None:
        # Peeking first saves two calls per read in the common case (nothing to do).
        if proto._pongs and proto.take_pongs():
            self._wake_pong_waiters()
        if proto._out:
            self._write(proto.data_to_send())
        if proto._held_pong and self._pong_task is None and self._loop is not None:
            self._pong_task = self._loop.create_task(self._send_held_pong())
        if proto.state is _CLOSED:
            self._on_protocol_closed()

    async def _send_held_pong(self) -> None:
        """Write the pong the core held back, once the write buffer has drained."""
        try:
            await self._wait_writable()
        finally:
            self._pong_task = None
        proto = self._proto
        assert proto is not None
        if proto.pong_held and not self._write_blocked():
            proto.defer_pongs = False
            self._write(proto.data_to_send())

    def _wake_pong_waiters(self) -> None:
        if self._pong_waiters:
            waiters = self._pong_waiters
            self._pong_waiters = []
            for waiter in waiters:
                _wake(waiter)

    def _finish(self, code: int, reason: str | None) -> None:
        super()._finish(code, reason)
        self._wake_pong_waiters()

    def _eof_received(self) -> bool:
        # Returning False lets the transport close itself; connection_lost follows.
        return False

    def _connection_lost(self, exc: BaseException | None) -> None:
        proto = self._proto
        if proto is None:
            return
        if proto.stalled:
            # Messages that arrived before the loss are still delivered.
            messages = proto.receive_data(b"")
            if messages:
                self._deliver(messages)
        proto.connection_lost()
        self._coalesced = None
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
        proto = self._proto
        if proto is not None and proto.stalled:
            # First the bytes already received but left unparsed.
            self._data_received(b"")
            if self._read_paused:
                return
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
            self._flush()
            self._transport.close()
            if self._close_handle is None and self._loop is not None:
                self._close_handle = self._loop.call_later(self.close_timeout, self._abort)

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- sending -------------------------------------------------------------------

    def _write(self, frame: bytes | bytearray) -> None:
        """Write ``frame`` after everything written before it (coalescing bursts)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        coalesced = self._coalesced
        if coalesced is not None:
            if len(frame) >= _COALESCE_LIMIT:
                self._coalesced = None
                transport.write(coalesced)
                transport.write(frame)
                return
            coalesced += frame
            if len(coalesced) >= _COALESCE_LIMIT:
                self._coalesced = None
                transport.write(coalesced)
            return
        if self._burst and len(frame) < _COALESCE_LIMIT:
            # Another frame in the same burst: hold it until the burst ends.
            self._coalesced = bytearray(frame)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                assert self._loop is not None
                self._loop.call_soon(self._end_burst)
            return
        self._burst = True
        transport.write(frame)

    def _write_chunks(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write the pieces of one large frame, in order, straight to the transport."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._flush()
        for chunk in chunks:
            transport.write(chunk)
        self._burst = True

    # The name the adapters knew before writes were coalesced.
    _write_raw = _write

    def _end_burst(self) -> None:
        self._flush_scheduled = False
        self._burst = False
        self._flush()

    def _flush(self) -> None:
        """Hand the coalesced frames to the transport now."""
        coalesced = self._coalesced
        if coalesced is not None:
            self._coalesced = None
            transport = self._transport
            if coalesced and transport is not None and not transport.is_closing():
                transport.write(coalesced)

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
        if proto is None or proto.state is not _OPEN or self._close_called:
            raise self._send_closed_error()
        if self._send_queue or self._write_blocked():
            await self._wait_send_turn()
            if proto.state is not State.OPEN:
                raise self._send_closed_error()
        if not isinstance(data, (str, bytes, bytearray, memoryview)):
            data = str(data)
        if type(data) is not str and len(data) >= _LARGE_FRAME:
            self._write_chunks(proto.send_chunks(data))
        else:
            self._write(proto.send_frame(data))
        if self._write_blocked():
            await self._wait_writable()

    async def _wait_send_turn(self) -> None:
        """Wait until every earlier blocked ``send()`` wrote and writing is possible.

        Senders queue in call order, so that one calling ``send()`` just when
        writing resumes cannot overtake those that were already waiting.
        """
        queue = self._send_queue
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(turn)
        try:
            if queue[0] is not turn:
                await turn  # woken by the sender ahead of us
            while self._write_blocked():
                await self._wait_writable()
        finally:
            first = queue[0] is turn
            queue.remove(turn)
            if first and queue:
                # The caller writes before the next sender runs.
                _wake(queue[0])

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
        loop = asyncio.get_running_loop()
        # Taken before the core records its own send time, so that the result is
        # never below ``latency``.
        sent = loop.time()
        payload, frame = proto.ping(data)
        self._write(frame)
        while payload in proto._pings:
            if self._finished:
                raise self._closed_exception()
            waiter: asyncio.Future[None] = loop.create_future()
            self._pong_waiters.append(waiter)
            await waiter
        return loop.time() - sent

    def _keepalive(self) -> None:
        """Send a ping every ``ping_interval``; fail if one waits over ``ping_timeout``."""
        proto = self._proto
        loop = self._loop
        interval = self.ping_interval
        if proto is None or loop is None or not interval or proto.state is not State.OPEN:
            return
        timeout = self.ping_timeout if self.ping_timeout is not None else interval
        now = loop.time()
        oldest = proto.oldest_unanswered_ping
        if oldest is not None and now - oldest >= timeout - 1e-9:
            logger.info("keepalive ping timeout after %.3f s; failing the connection", now - oldest)
            self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            return
        if now >= self._next_ping - 1e-9:
            _, frame = proto.ping()
            self._write(frame)
            self._next_ping = now + interval
        # Wake up for the next ping, or when the oldest ping's pong is overdue.
        when = self._next_ping
        oldest = proto.oldest_unanswered_ping
        if oldest is not None:
            when = min(when, oldest + timeout)
        self._keepalive_handle = loop.call_at(when, self._keepalive)

    def _fail(self, code: int, reason: str | None = None) -> None:
        """Fail the connection: send a close frame with ``code`` and close TCP."""
        proto = self._proto
        if proto is None or proto.state is State.CLOSED:
            return
        proto.fail(code, reason)
        out = proto.data_to_send()
        if out:
            self._write(out)
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

        Raises:
            ValueError: ``reason`` is a code that may not be sent (RFC 6455 7.4);
                nothing was done.
        """
        reason = check_close_code(reason)
        self._close_called = True
        self.connected = False
        proto = self._proto
        if proto is None or self._lost is None:
            return
        if self._read_paused:
            # The peer's close frame may wait behind messages nobody will receive.
            self._read_paused = False
            self._resume_reading()
        if proto.state is State.OPEN:
            frame = proto.close(reason or CloseCode.NORMAL_CLOSURE, message)
            self._write(frame)
            assert self._loop is not None
            if self._close_handle is None:
                self._close_handle = self._loop.call_later(self.close_timeout, self._abort)
        if not self._lost.done():
            await asyncio.shield(self._lost)

    async def wait_closed(self) -> None:
        """Wait until the transport is closed, without starting a close."""
        if self._lost is not None:
            await asyncio.shield(self._lost)


class _ReadBuffer(threading.local):
    """The buffer the transports of one thread read into (see :class:`StreamProtocol`)."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(_READ_SIZE))


_read_buffer = _ReadBuffer()


class StreamProtocol(asyncio.BufferedProtocol):
    """The asyncio protocol behind client, ``serve()`` and ``sock=`` connections.

    Before the handshake completes, received bytes go to :attr:`on_handshake_data`;
    afterwards straight to the connection.

    It is a buffered protocol: the transport reads into one buffer shared by the
    connections of the thread, and only the bytes received are copied out. A plain
    protocol makes the transport allocate a 256 KiB ``bytes`` for every read and
    shrink it, which costs three more system calls (``mmap``, ``mremap``,
    ``munmap``) per read. Sharing is safe: the transport fills the buffer and calls
    :meth:`buffer_updated` right away, which copies the bytes out before anything
    else runs.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.conn: Connection | None = None
        self.on_handshake_data: Callable[[bytes], None] | None = None
        self.on_handshake_lost: Callable[[BaseException | None], None] | None = None
        self._view = _read_buffer.view
        self._direct = False

    def get_buffer(self, sizehint: int) -> memoryview:
        """Lend the transport the thread's read buffer.

        While a large binary frame arrives, lend it the rest of that frame's
        payload buffer instead (``Protocol.receive_buffer``): no copy at all.
        """
        conn = self.conn
        if conn is not None and conn._proto is not None and conn._proto._partial is not None:
            direct = conn._proto.receive_buffer()
            if direct is not None:
                self._direct = True
                return direct
        self._direct = False
        self._view = view = _read_buffer.view
        return view

    def buffer_updated(self, nbytes: int) -> None:
        """Pass the ``nbytes`` bytes just read on, as :meth:`data_received` does."""
        if self._direct:
            self._direct = False
            assert self.conn is not None
            self.conn._buffer_updated(nbytes)
        else:
            self.data_received(self._view[:nbytes].tobytes())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; the handshake code writes to it.

        Also turns Nagle's algorithm off where asyncio did not: it only sets
        ``TCP_NODELAY`` on sockets whose ``proto`` is TCP, and a socket made with
        ``socket.socket()`` or ``socket.create_server()`` (``serve(sock=...)``,
        ``accept(sock=...)``) has ``proto`` 0. With Nagle on, the last small frame
        of a burst waits for the peer's delayed ACK, up to 40 ms.
        """
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if (
            sock is not None
            and sock.proto != socket.IPPROTO_TCP
            and sock.family in (socket.AF_INET, socket.AF_INET6)
            and sock.type == socket.SOCK_STREAM
        ):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def attach(self, conn: Connection) -> None:
        """Route everything the transport reports to ``conn`` from now on."""
        self.conn = conn
        # Skip one indirection per read on the hot path.
        self.data_received = conn._data_received  # type: ignore[method-assign]

    def data_received(self, data: bytes) -> None:
        """Pass bytes to the handshake, or to the connection once attached."""
        if self.conn is not None:
            self.conn._data_received(data)
        elif self.on_handshake_data is not None:
            self.on_handshake_data(data)

    def eof_received(self) -> bool | None:
        """Let the connection decide whether the transport closes."""
        if self.conn is not None:
            return self.conn._eof_received()
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        """Tell the connection, or the pending handshake, that TCP is gone."""
        if self.conn is not None:
            self.conn._connection_lost(exc)
        elif self.on_handshake_lost is not None:
            self.on_handshake_lost(exc)

    def pause_writing(self) -> None:
        """The transport's buffer went over its high-water mark."""
        if self.conn is not None:
            self.conn._pause_writing()

    def resume_writing(self) -> None:
        """The transport's buffer drained below its low-water mark."""
        if self.conn is not None:
            self.conn._resume_writing()
