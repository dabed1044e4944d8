"""The asyncio engine: one WebSocket connection over an asyncio transport.

:class:`Connection` (on :class:`~simple_websocket.asyncio.base.BaseConnection`)
moves bytes between an asyncio transport and the core's
:class:`~simple_websocket.sansio.session.Session`, which holds the connection rules
(flow control, keepalive, the closing handshake's deadlines) and says after each
read or timer what to do: wake receivers, write, pause or resume reading, close or
abort the transport. There is no reader task: bytes are parsed in the transport's
``data_received`` callback, frames are written straight to the transport, one timer
follows the session's next deadline, and both directions apply backpressure.

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
from typing import TYPE_CHECKING, Any, cast
from typing import Protocol as TypingProtocol

from wsproto.extensions import Extension

from ..errors import ConnectionClosed
from ..sansio.framing import C_BIND_LANE, C_READER, C_SEND_LANE
from ..sansio.protocol import CloseCode, Protocol, State, check_close_code
from ..sansio.session import (
    ABORT,
    CLOSE_TRANSPORT,
    CLOSED,
    MESSAGES,
    PAUSE,
    PONG,
    PONG_HELD,
    WRITE,
    Inbox,
    Message,
    Session,
)
from .base import IDLE_TIMEOUT_REASON, BaseConnection, _wake

__all__ = ["BaseConnection", "Connection", "Message", "StreamProtocol"]

# Where a listening connection is in its life (Connection._listener_state).
_NEW, _OPEN_CALLED, _MUTED, _ENDED = range(4)


class Listener(TypingProtocol):
    """What :meth:`Connection._listen` calls (``MessageHandler``'s callbacks)."""

    def on_open(self, ws: Any, /) -> None: ...
    def on_message(self, ws: Any, message: Message, /) -> None: ...
    def on_close(self, ws: Any, /) -> None: ...


logger = logging.getLogger("simple_websocket")

_OPEN = State.OPEN
#: Frames at least this large go straight to the transport; the coalescing buffer is
#: written out once it reaches this size.
_COALESCE_LIMIT = 16 * 1024
#: Binary messages at least this large are written in pieces (``Protocol.send_chunks``):
#: no copy of the payload behind the header, and a client masks piece by piece.
_LARGE_FRAME = 128 * 1024
#: The most a transport reads at once (asyncio's own limit for plain protocols).
_READ_SIZE = 256 * 1024


class Connection(BaseConnection):
    """A WebSocket connection driven by the sans-I/O core over an asyncio transport.

    Instances are created by the client and server entry points
    (``AioClient.connect``, ``AioServer.accept``, ``serve``) and attached to a
    transport once the opening handshake succeeded. The connection rules (flow
    control, keepalive, the closing handshake's deadlines) are the core's
    :class:`~simple_websocket.sansio.session.Session`; this class moves bytes and
    wakes tasks.
    """

    __slots__ = (
        "_blocked_hook",
        "_burst",
        "_coalesced",
        "_dispatching",
        "_drain_waiters",
        "_flush_scheduled",
        "_gone",
        "_listener",
        "_listener_state",
        "_lost_waiters",
        "_on_listener_end",
        "_pong_task",
        "_pong_waiters",
        "_send_queue",
        "_session",
        "_timer",
        "_transport",
        "_writable_hook",
        "_writable_task",
        "_write_paused",
    )

    _client = False

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._session: Session | None = None
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The transport is gone (connection_lost was called), and the close() and
        # wait_closed() calls waiting for that (a list once one waits).
        self._gone = False
        self._lost_waiters: list[asyncio.Future[None]] | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        # send() calls waiting for their turn to write, oldest first (created when
        # the first one has to wait: most connections never need it).
        self._send_queue: deque[asyncio.Future[None]] | None = None
        # The one timer: the session's next deadline.
        self._timer: asyncio.TimerHandle | None = None
        # ping() calls waiting for a pong (woken by every pong and by the end).
        self._pong_waiters: list[asyncio.Future[None]] = []
        # Writes the pong held back while the write buffer was full (see above).
        self._pong_task: asyncio.Task[None] | None = None
        # Set by adapters whose transport belongs to someone else (aiohttp): whether
        # writing is blocked, and waiting until it is not (see _write_blocked).
        self._blocked_hook: Callable[[], bool] | None = None
        self._writable_hook: Callable[[], Awaitable[None]] | None = None
        # Write coalescing (see the module docstring): a frame went out in the
        # current burst; the frames that followed it, not written yet.
        self._burst = False
        self._coalesced: bytearray | None = None
        self._flush_scheduled = False
        # A MessageHandler taking the messages in callbacks (see _listen), where it
        # is in the connection's life, and what to call after its on_close.
        self._listener: Listener | None = None
        self._listener_state = _NEW
        self._on_listener_end: Callable[[Connection], None] | None = None
        self._dispatching = False
        # Resumes reading once a foreign transport's write buffer drained.
        self._writable_task: asyncio.Task[None] | None = None

    @property
    def is_server(self) -> bool:
        """``True`` on the server side of the connection (as in simple-websocket 1.1)."""
        return not self._client

    # -- attaching -------------------------------------------------------------

    def _attach(
        self,
        transport: asyncio.Transport,
        extensions: Sequence[Extension] = (),
        subprotocol: str | None = None,
    ) -> None:
        """Start the connection on ``transport`` once the handshake is done."""
        # (get_running_loop() costs a getpid() system call on Python 3.11: the
        # server sets the loop it runs on beforehand.)
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        self._transport = transport
        proto = Protocol(
            self._client,
            extensions,
            max_message_size=self.max_message_size,
            clock=loop.time,
            max_inflated_size=self._max_inflated_size,
        )
        self._session = Session(
            proto,
            self._inbox,
            loop.time,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=self.close_timeout,
            logger=self.logger,
        )
        self.subprotocol = subprotocol
        self.connected = True
        if self._session.next_ping is not None:
            # (Nothing else is due yet: without keepalive pings, no timer.)
            self._arm_timer()

    @property
    def transport(self) -> asyncio.Transport | None:
        """The asyncio transport the connection runs on (``None`` before it opened)."""
        return self._transport

    @property
    def latency(self) -> float | None:
        """Round-trip time of the last answered ping in seconds, or ``None``."""
        return self._session.protocol.latency if self._session is not None else None

    @property
    def local_address(self) -> Any:
        """The local socket address, as ``transport.get_extra_info('sockname')``."""
        return self._transport.get_extra_info("sockname") if self._transport else None

    @property
    def remote_address(self) -> Any:
        """The peer's socket address, as ``transport.get_extra_info('peername')``."""
        return self._transport.get_extra_info("peername") if self._transport else None

    # -- what the session says ---------------------------------------------------------

    def _data_received(self, data: bytes) -> None:
        session = self._session
        assert session is not None
        if data:
            # New bytes from the network: the next frame written starts a new burst.
            self._burst = False
        hook = self._blocked_hook
        flags = session.feed(data, self._write_paused if hook is None else hook())
        if flags == MESSAGES:
            if self._listener is not None:
                self._dispatch()
                return
            waiters = self._waiters  # _wake_receivers(), written out
            if waiters:
                self._waiters = []
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
        elif flags:
            self._act(flags)

    def _buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were read into the session's receive buffer (a large frame)."""
        session = self._session
        assert session is not None
        self._burst = False
        flags = session.feed_buffer(nbytes)
        if flags:
            self._act(flags)

    def _act(self, flags: int) -> None:
        """Do what a step of the session asks, in order."""
        session = self._session
        assert session is not None
        if flags & MESSAGES:
            if self._listener is not None:
                # Callbacks take every message now: reading need not pause. With
                # CLOSED, _finished() below delivers them, once the close code and
                # reason that on_close() reads are set.
                if not flags & CLOSED:
                    self._dispatch()
            else:
                if flags & PAUSE:
                    self._pause_reading()
                self._wake_receivers()
        if flags & PONG:
            self._wake_pong_waiters()
        if flags & WRITE:
            self._write(session.output)
        if flags & PONG_HELD and self._pong_task is None and self._loop is not None:
            self._pong_task = self._loop.create_task(self._send_held_pong())
        if flags & CLOSED:
            ending = False
            transport = self._transport
            if flags & CLOSE_TRANSPORT and transport is not None:
                # Before waking anyone: with nothing left to write, the transport
                # reports its end first, so that the woken tasks find it closed
                # (close() then returns without waiting for another iteration).
                if self._coalesced is not None:
                    self._flush()
                transport.close()
                # (A TLS transport first exchanges close_notify, which may not come.)
                ending = (
                    not transport.get_write_buffer_size()
                    and transport.get_extra_info("sslcontext") is None
                )
            self._finished()
            if self._pong_waiters:
                self._wake_pong_waiters()
            if not ending:
                # The deadline that aborts a transport whose end does not come.
                self._arm_timer()
        if flags & ABORT:
            self._abort()

    def _arm_timer(self) -> None:
        """Call the session's ``tick`` at its next deadline (and only then)."""
        session = self._session
        loop = self._loop
        if session is None or loop is None or self._gone:
            return
        when = session.deadline()
        timer = self._timer
        if timer is not None:
            if timer.when() == when:
                return
            timer.cancel()
        self._timer = None if when is None else loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        session = self._session
        assert session is not None
        flags = session.tick()
        if flags:
            self._act(flags)
        if not flags & ABORT:
            self._arm_timer()

    async def _send_held_pong(self) -> None:
        """Write the pong the core held back, once the write buffer has drained."""
        try:
            await self._wait_writable()
        finally:
            self._pong_task = None
        session = self._session
        if session is not None and not self._write_blocked():
            flags = session.release_pong()
            if flags:
                self._act(flags)

    def _wake_pong_waiters(self) -> None:
        if self._pong_waiters:
            waiters = self._pong_waiters
            self._pong_waiters = []
            for waiter in waiters:
                _wake(waiter)

    def _eof_received(self) -> bool:
        # Returning False lets the transport close itself; connection_lost follows.
        return False

    def _connection_lost(self, exc: BaseException | None) -> None:
        session = self._session
        if session is None:
            return
        flags = session.lost()
        self._coalesced = None
        if flags:
            self._act(flags & (MESSAGES | PONG | CLOSED))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._write_paused = False
        for waiter in self._drain_waiters:
            _wake(waiter)
        self._drain_waiters.clear()
        self._gone = True
        waiters = self._lost_waiters
        if waiters:
            self._lost_waiters = None
            for waiter in waiters:
                _wake(waiter)

    # -- callbacks (MessageHandler) ------------------------------------------------

    def _listen(
        self, listener: Listener, on_end: Callable[[Connection], None] | None = None
    ) -> None:
        """Hand every message to ``listener``'s callbacks, from the read itself.

        ``on_open`` is called now, then ``on_message`` for each message (those
        already received first), in the transport's read callback: no task is
        woken per message. ``on_close`` follows once no more messages can arrive,
        then ``on_end(self)``. A callback that raises ends the delivery: the
        connection fails with 1011 (a ``ConnectionClosed`` only stops it). While the
        transport's write buffer is full, reading pauses (see ``send_nowait``).
        """
        self._listener = listener
        self._on_listener_end = on_end
        self._dispatch()

    def _dispatch(self) -> None:
        """Deliver what the listener has not seen yet: open, messages, close."""
        listener = self._listener
        if listener is None or self._dispatching:
            # (Re-entered from a callback, or from parsing resumed by _take():
            # the outer call delivers what arrived, in order.)
            return
        self._dispatching = True
        inbox = self._inbox
        messages = inbox.messages
        try:
            if self._listener_state == _NEW:
                self._listener_state = _OPEN_CALLED
                listener.on_open(self)
            if self._listener_state == _OPEN_CALLED:
                on_message = listener.on_message
                while messages:
                    on_message(self, self._take() if inbox.paused else messages.popleft())
            else:
                messages.clear()
        except Exception as exc:
            self._callback_failed(exc)
        finally:
            self._dispatching = False
        hook = self._blocked_hook
        if hook is not None and self._writable_task is None and hook():
            # A transport that is not ours (aiohttp's) reports no pause_writing():
            # stop reading until its buffer drained, as _pause_writing() does.
            self._pause_reading()
            assert self._loop is not None
            self._writable_task = self._loop.create_task(self._read_when_writable())
        if inbox.finished and not messages and self._listener_state != _ENDED:
            self._listener_state = _ENDED
            self._listener = None
            try:
                listener.on_close(self)
            except Exception:
                self.logger.exception("message handler's on_close failed")
            on_end = self._on_listener_end
            if on_end is not None:
                self._on_listener_end = None
                on_end(self)

    def _callback_failed(self, exc: Exception) -> None:
        """A callback raised ``exc`` during delivery: no more messages for it.

        (Also called by the C read lane, which delivers a read's one message
        itself.)
        """
        self._listener_state = _MUTED
        self._inbox.messages.clear()
        if isinstance(exc, ConnectionClosed):
            # Sending on a connection that is closing: delivery ends, as a
            # handler's would.
            self.logger.debug("message handler ended: %s", exc)
            self.close_nowait()
        else:
            self.logger.error("message handler failed", exc_info=exc)
            self._fail(CloseCode.INTERNAL_ERROR, "Internal server error")

    async def _read_when_writable(self) -> None:
        try:
            while self._write_blocked() and not self._gone:
                await self._wait_writable()
        except Exception:
            return  # the transport failed meanwhile: its end is reported as such
        finally:
            self._writable_task = None
        self._resume_reading()

    def _finished(self) -> None:
        # BaseConnection._finished(), written out (once per connection, but on the
        # path of every short-lived one).
        inbox = self._inbox
        self.connected = False
        self.close_reason = inbox.close_code
        self.close_message = inbox.close_reason
        if self._waiters:
            self._wake_receivers()
        if self._listener is not None:
            self._dispatch()

    def _write_blocked(self) -> bool:
        """Whether writing must wait (the peer does not read what we write)."""
        hook = self._blocked_hook
        return self._write_paused if hook is None else hook()

    async def _wait_writable(self) -> None:
        """Wait until :meth:`_write_blocked` may have become false."""
        hook = self._writable_hook
        await (self._drain() if hook is None else hook())

    def _pause_writing(self) -> None:
        self._write_paused = True
        if self._listener is not None:
            # Callbacks cannot wait for the buffer to drain: stop taking messages
            # from a peer that does not read our answers.
            self._pause_reading()

    def _resume_writing(self) -> None:
        self._write_paused = False
        if self._listener is not None:
            self._resume_reading()
        waiters = self._drain_waiters
        self._drain_waiters = []
        for waiter in waiters:
            _wake(waiter)

    def _pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        session = self._session
        if session is not None:
            # First the bytes already received but left unparsed.
            flags = session.resume(self._write_blocked())
            if flags:
                self._act(flags)
            if self._inbox.paused or (self._listener is not None and self._write_blocked()):
                return
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _fail(self, code: int, reason: str | None = None) -> None:
        """Fail the connection now: a close frame with ``code``, then close TCP."""
        session = self._session
        if session is not None:
            flags = session.fail(code, reason)
            if flags:
                self._act(flags)

    def _fail_idle(self) -> None:
        # A silent peer would never answer a close frame: send it and close TCP.
        self._fail(CloseCode.INTERNAL_ERROR, IDLE_TIMEOUT_REASON)

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
        session = self._session
        if session is None or session.protocol.state is not _OPEN or self._inbox.close_called:
            raise self._send_closed_error()
        proto = session.protocol
        hook = self._blocked_hook
        if self._send_queue or (self._write_paused if hook is None else hook()):
            await self._wait_send_turn()
            if proto.state is not _OPEN:
                raise self._send_closed_error()
        if type(data) is not str:
            self._write_message(proto, data)
        elif not self._burst and _send_lane is not None and _send_lane(self, data):
            pass  # written by the C send lane (the common case of what follows)
        else:
            frame = proto.send_frame(data)
            transport = self._transport
            if self._burst or self._coalesced is not None or transport is None:
                self._write(frame)
            elif not transport.is_closing():
                # _write() for the first frame of a burst, as in send_nowait().
                self._burst = True
                transport.write(frame)
        if self._write_paused if hook is None else hook():
            await self._wait_writable()

    def _write_message(self, proto: Protocol, data: Any) -> None:
        """Write a message that is not a ``str`` (bytes-like, or made one by ``str()``)."""
        if not isinstance(data, (str, bytes, bytearray, memoryview)):
            data = str(data)
        if type(data) is not str and len(data) >= _LARGE_FRAME:
            self._write_chunks(proto.send_chunks(data))
        else:
            self._write(proto.send_frame(data))

    def send_nowait(self, data: Any) -> None:
        """Send a message now, without waiting: for callbacks, which cannot ``await``.

        The frame goes to the transport at once (after the frames of earlier
        calls); it does not wait for ``send()`` calls that are themselves waiting
        for the write buffer to drain. There is no write backpressure: while the
        buffer is above its high-water mark the transport keeps what it is given,
        and a connection whose messages go to a
        :class:`~simple_websocket.MessageHandler` stops reading from the peer
        until it drained, so that a peer which does not read cannot make it grow
        without bound.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        if not self._burst and _send_lane is not None and _send_lane(self, data):
            return  # written by the C send lane (the common case of what follows)
        session = self._session
        if session is None or session.protocol.state is not _OPEN or self._inbox.close_called:
            raise self._send_closed_error()
        proto = session.protocol
        if type(data) is not str:
            self._write_message(proto, data)
            return
        frame = proto.send_frame(data)
        transport = self._transport
        if self._burst or self._coalesced is not None or transport is None:
            self._write(frame)
        elif not transport.is_closing():
            # _write(), written out for the first frame of a burst: the answer to
            # a message goes straight to the transport.
            self._burst = True
            transport.write(frame)

    async def _wait_send_turn(self) -> None:
        """Wait until every earlier blocked ``send()`` wrote and writing is possible.

        Senders queue in call order, so that one calling ``send()`` just when
        writing resumes cannot overtake those that were already waiting.
        """
        queue = self._send_queue
        if queue is None:
            queue = self._send_queue = deque()
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
        if self._session is not None:
            return self._session.send_error()
        return self._inbox.closed_error()

    async def ping(self, data: bytes | None = None) -> float:
        """Send a ping and wait for its pong.

        Returns:
            The round-trip time in seconds.

        Raises:
            ConnectionClosed: The connection closed before the pong arrived.
        """
        session = self._session
        if session is None:
            raise self._inbox.closed_error()
        loop = asyncio.get_running_loop()
        # Taken before the core records its own send time, so that the result is
        # never below ``latency``.
        sent = loop.time()
        payload, frame = session.ping(data)
        self._write(frame)
        while session.ping_pending(payload):
            if self._inbox.finished:
                raise self._inbox.closed_error()
            waiter: asyncio.Future[None] = loop.create_future()
            self._pong_waiters.append(waiter)
            await waiter
        return loop.time() - sent

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
        self.close_nowait(reason, message)
        if self._session is not None and not self._gone:
            await self._wait_lost()

    def close_nowait(self, reason: int | None = None, message: str | None = None) -> None:
        """Start closing the connection and return at once (``close()`` without the wait).

        The close frame is written now, after everything sent before it; the
        closing handshake goes on without the caller, and the transport is aborted
        if it is not closed ``close_timeout`` seconds later. Calling it again, or
        after the peer closed, does nothing more.

        Raises:
            ValueError: ``reason`` is a code that may not be sent (RFC 6455 7.4);
                nothing was done.
        """
        code = check_close_code(reason)
        self.connected = False
        session = self._session
        if session is None:
            self._inbox.close_requested()
            return
        flags = session.close(code, message)
        if flags:
            self._act(flags)
        if self._inbox.resumed:
            self._inbox.resumed = False
            self._resume_reading()
        self._arm_timer()

    async def wait_closed(self) -> None:
        """Wait until the transport is closed, without starting a close."""
        if self._session is not None and not self._gone:
            await self._wait_lost()

    async def _wait_lost(self) -> None:
        """Wait until the transport is gone (cancelling the wait changes nothing else)."""
        loop = self._loop
        assert loop is not None
        waiter: asyncio.Future[None] = loop.create_future()
        waiters = self._lost_waiters
        if waiters is None:
            waiters = self._lost_waiters = []
        waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter.cancelled() and self._lost_waiters is not None:
                with contextlib.suppress(ValueError):
                    self._lost_waiters.remove(waiter)


def wants_nodelay(sock: Any) -> bool:
    """Whether ``sock`` is a TCP socket on which asyncio left Nagle's algorithm on.

    asyncio turns it off only where ``sock.proto`` is TCP (see
    :meth:`StreamProtocol.connection_made`).
    """
    return (
        sock.proto != socket.IPPROTO_TCP
        and sock.family in (socket.AF_INET, socket.AF_INET6)
        and sock.type == socket.SOCK_STREAM
    )


def set_nodelay(sock: Any) -> None:
    """Turn Nagle's algorithm off on ``sock`` (a failure is ignored)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _ReadBuffer(threading.local):
    """The buffer the transports of one thread read into (see :class:`StreamProtocol`)."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(_READ_SIZE))


_read_buffer = _ReadBuffer()

#: Writes a text message in C where send() and send_nowait() would frame it and
#: write it straight to the transport (see _speedups.c), or None: the Python path.
_send_lane = C_SEND_LANE
if C_BIND_LANE is not None:
    # The C reader's read lane (see StreamProtocol.attach) and the send lane read
    # and write these classes' slots; they find them here, once.
    C_BIND_LANE(Connection, Session, Protocol, Inbox, deque, State.OPEN, _OPEN_CALLED)


class _PyReader:
    """Lends the transport a read buffer and hands each read on (``_speedups.Reader``).

    The C extension's ``Reader`` does the same (without two Python calls per
    read); this class is used without it. ``get_buffer()`` lends the buffer given to
    ``_use_buffer()``, or, while ``_lender`` (the connection's ``Protocol``) is
    ``lending``, the rest of a large frame's payload buffer (no copy at all).
    ``buffer_updated(nbytes)`` then calls ``_on_direct(nbytes)`` after a read into
    a lent buffer, else ``_on_data(data)`` with a copy of the bytes read
    (``data_received(data)`` while ``_on_data`` is ``None``).
    """

    __slots__ = ("_direct", "_lane", "_lender", "_on_data", "_on_direct", "_view")

    _on_data: Callable[[bytes], object] | None
    _on_direct: Callable[[int], object] | None
    _lender: Protocol | None
    #: Used by the C reader only (its read lane).
    _lane: Connection | None

    def _use_buffer(self, view: memoryview) -> None:
        self._view = view
        self._on_data = self._on_direct = self._lender = self._lane = None
        self._direct = False

    def get_buffer(self, sizehint: int) -> memoryview:
        """Return the buffer the transport reads into next."""
        lender = self._lender
        if lender is not None and lender.lending:
            direct = lender.receive_buffer()
            if direct is not None:
                self._direct = True
                return direct
        self._direct = False
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were read into the buffer lent last: pass them on."""
        if self._direct:
            self._direct = False
            assert self._on_direct is not None
            self._on_direct(nbytes)
            return
        data = self._view[:nbytes].tobytes()
        if self._on_data is None:
            self.data_received(data)
        else:
            self._on_data(data)

    def data_received(self, data: bytes) -> None:
        raise NotImplementedError


# (An if statement, not a conditional expression: type checkers then see the
# Python class, with its attributes, as the base.)
if TYPE_CHECKING or C_READER is None:  # noqa: SIM108
    _Reader = _PyReader
else:
    _Reader = C_READER


class StreamProtocol(_Reader, asyncio.BufferedProtocol):
    """The asyncio protocol behind client, ``serve()`` and ``sock=`` connections.

    Before the handshake completes, received bytes go to :attr:`on_handshake_data`;
    afterwards straight to the connection.

    It is a buffered protocol: the transport reads into one buffer shared by the
    connections of the thread, and only the bytes received are copied out. A plain
    protocol makes the transport allocate a 256 KiB ``bytes`` for every read and
    shrink it, which costs three more system calls (``mmap``, ``mremap``,
    ``munmap``) per read. Sharing is safe: the transport fills the buffer and calls
    ``buffer_updated()`` right away, which copies the bytes out before anything
    else runs. While a large binary frame arrives, the transport reads straight
    into the rest of that frame's payload buffer (``Protocol.receive_buffer``).
    The two calls the transport makes per read are in C when the extension is
    built (``_speedups.Reader``), in :class:`_PyReader` otherwise.
    """

    # Slots, not a __dict__: a subclass of a C type gets a plain dict, slower to
    # use than the inline attributes of other classes.
    __slots__ = ("__weakref__", "conn", "on_handshake_data", "on_handshake_lost", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.conn: Connection | None = None
        self.on_handshake_data: Callable[[bytes], None] | None = None
        self.on_handshake_lost: Callable[[BaseException | None], None] | None = None
        self._use_buffer(_read_buffer.view)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; the handshake code writes to it.

        Also turns Nagle's algorithm off where asyncio did not: it only sets
        ``TCP_NODELAY`` on sockets whose ``proto`` is TCP, and a socket made with
        ``socket.socket()`` or ``socket.create_server()`` (``serve(sock=...)``,
        ``accept(sock=...)``) has ``proto`` 0. With Nagle on, the last small frame
        of a burst waits for the peer's delayed ACK, up to 40 ms.
        """
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and wants_nodelay(sock):
            set_nodelay(sock)

    def attach(self, conn: Connection) -> None:
        """Route everything the transport reports to ``conn`` from now on."""
        self.conn = conn
        # Reads go straight to the connection (see _PyReader).
        self._on_data = conn._data_received
        self._on_direct = conn._buffer_updated
        if conn._session is not None:
            self._lender = conn._session.protocol
        # With the C reader, a read of whole small messages is queued for the
        # receivers, or delivered to a MessageHandler, in C while the connection
        # is in its plain state: _speedups.c, lane_read(), says which; anything
        # else goes to conn._data_received.
        self._lane = conn
        # The handshake's callbacks (and what they hold) are not needed any more.
        self.on_handshake_data = None
        self.on_handshake_lost = None

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
