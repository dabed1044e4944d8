"""The connection rules every engine shares, without I/O.

:class:`Inbox` is the bounded queue of received messages with its flow-control
rule, the record of how the connection ended and the rule that makes iteration end
quietly. Every async and sync connection has one, the ASGI connection included.

:class:`Session` drives a :class:`~simple_websocket.sansio.protocol.Protocol` for an
engine that owns a byte stream (the asyncio and thread engines): it feeds received
bytes into the inbox without ever parsing more messages than the inbox has room
for, sends keepalive pings and fails the connection when their pongs are late,
and keeps the deadlines of the closing handshake. Time is a number: the session
reads the clock it was given and tells the engine when to call :meth:`Session.tick`
next (:meth:`Session.deadline`).

Each of :meth:`Session.feed`, :meth:`Session.feed_buffer`, :meth:`Session.tick`,
:meth:`Session.lost` and :meth:`Session.close` returns one step: an ``int`` made of
the flags below (0 when the engine has nothing to do, the common case of a read
that completed no message), with the bytes to write in :attr:`Session.output`. An
engine only does what the flags say, with its own I/O and wake-up primitives.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ConnectionClosed
from .framing import CloseCode, too_big_reason
from .protocol import Protocol, State

__all__ = [
    "ABORT",
    "CLOSED",
    "CLOSE_TRANSPORT",
    "MESSAGES",
    "PAUSE",
    "PONG",
    "PONG_HELD",
    "WRITE",
    "Inbox",
    "Message",
    "Session",
    "too_big",
    "too_big_reason",
]

logger = logging.getLogger("simple_websocket")

#: A WebSocket message: ``str`` for a text message, ``bytes`` for a binary one.
Message = str | bytes

#: Messages were added to the inbox: wake the receivers.
MESSAGES = 1
#: The inbox is full: stop reading from the network until :attr:`Inbox.resumed`.
PAUSE = 2
#: :attr:`Session.output` holds bytes to write, after everything written before.
WRITE = 4
#: A pong arrived: wake whoever waits for one (:meth:`Session.ping_pending`).
PONG = 8
#: No message will arrive any more: the inbox is finished (wake everyone).
CLOSED = 16
#: Close the transport once the output is written (the server closes first, or
#: the connection failed).
CLOSE_TRANSPORT = 32
#: A pong waits until writing is possible again: call :meth:`Session.release_pong`
#: once it is.
PONG_HELD = 64
#: A deadline of the closing handshake passed: abort the transport.
ABORT = 128

_CLOSED = State.CLOSED

#: Timers may fire up to the clock's resolution early; a deadline that close is
#: taken as reached.
_EARLY = 1e-9


def too_big(message: Message, limit: int | None) -> bool:
    """Whether ``message`` is over ``limit`` bytes (text counted in UTF-8)."""
    if limit is None or len(message) <= limit // 4:
        return False
    size = len(message.encode("utf-8")) if isinstance(message, str) else len(message)
    return size > limit


class Inbox:
    """Received messages waiting for ``receive()``, with read flow control.

    Reading pauses when ``max_queue`` messages wait (:attr:`paused`) and resumes
    once no more than a quarter of that wait; after ``close()`` was called it never
    pauses, so that the peer's close frame behind unread messages is found.

    Args:
        max_queue: The high-water mark, at least 1.

    Raises:
        ValueError: ``max_queue`` is below 1.
    """

    __slots__ = (
        "close_called",
        "close_code",
        "close_reason",
        "finished",
        "low_water",
        "max_queue",
        "messages",
        "paused",
        "resumed",
    )

    def __init__(self, max_queue: int = 16) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.max_queue = max_queue
        self.low_water = max_queue // 4
        self.messages: deque[Message] = deque()
        #: Reading is paused because the inbox is full.
        self.paused = False
        #: Set by :meth:`take` or :meth:`close_requested` when reading must resume;
        #: the engine clears it when it did.
        self.resumed = False
        #: No further message can arrive (close frame received, connection failed
        #: or lost).
        self.finished = False
        #: ``close()`` was called on this side.
        self.close_called = False
        #: How the connection ended (1005 and ``None`` until it did).
        self.close_code: int = CloseCode.NO_STATUS_RCVD
        self.close_reason: str | None = None

    def room(self) -> int | None:
        """How many more messages may be parsed now (``None``: no limit, after close)."""
        if self.close_called:
            return None
        return max(1, self.max_queue - len(self.messages))

    def put(self, messages: Sequence[Message]) -> bool:
        """Queue received messages; return ``True`` when reading must pause now."""
        self.messages.extend(messages)
        if not self.paused and not self.close_called and len(self.messages) >= self.max_queue:
            self.paused = True
            return True
        return False

    def take(self) -> Message:
        """Remove and return the oldest message (there must be one).

        Sets :attr:`resumed` when reading must resume. While reading is not
        paused this is ``messages.popleft()``, which a hot path may call itself.
        """
        messages = self.messages
        message = messages.popleft()
        if self.paused and len(messages) <= self.low_water:
            self.paused = False
            self.resumed = True
        return message

    def close_requested(self) -> None:
        """Record that ``close()`` was called; reading resumes if it was paused."""
        self.close_called = True
        if self.paused:
            self.paused = False
            self.resumed = True

    def finish(self, code: int, reason: str | None) -> bool:
        """Record that no more messages will arrive, and why.

        Returns:
            ``True`` the first time, ``False`` when it was already finished.
        """
        if self.finished:
            return False
        self.finished = True
        self.close_code = code
        self.close_reason = reason
        return True

    def closed_error(self) -> ConnectionClosed:
        """The ``ConnectionClosed`` to raise once the inbox is finished and empty."""
        return ConnectionClosed(self.close_code, self.close_reason)

    def ends_iteration(self, exc: ConnectionClosed) -> bool:
        """Whether ``exc`` ends iteration quietly: a normal close, or one we asked for."""
        return exc.reason in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY) or self.close_called


class Session:
    """One connection's rules over its :class:`Protocol`; see the module docstring.

    Args:
        protocol: The connection's protocol state (after the handshake).
        inbox: The connection's inbox.
        clock: Returns the current time in seconds.
        ping_interval: Seconds between keepalive pings, or ``None`` (no keepalive).
        ping_timeout: Seconds a ping may wait for its pong before the connection
            fails with 1011 (``None``: ``ping_interval``).
        close_timeout: Seconds the closing handshake may take before the transport
            is aborted.
        logger: Where the session logs (default: the ``simple_websocket`` logger).

    Attributes:
        output: The bytes to write when a step has :data:`WRITE` (taken by the
            engine; replaced by the next step).
    """

    __slots__ = (
        "_clock",
        "_closed",
        "_pongs_seen",
        "close_deadline",
        "close_timeout",
        "inbox",
        "logger",
        "next_ping",
        "output",
        "ping_interval",
        "ping_timeout",
        "protocol",
    )

    def __init__(
        self,
        protocol: Protocol,
        inbox: Inbox,
        clock: Callable[[], float],
        *,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        close_timeout: float = 5.0,
        logger: logging.Logger | logging.LoggerAdapter[Any] = logger,
    ) -> None:
        self.logger = logger
        self.protocol = protocol
        self.inbox = inbox
        self._clock = clock
        self.ping_interval = ping_interval or None
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.output = b""
        self.next_ping = clock() + ping_interval if ping_interval else None
        #: When to abort the transport if it is still open, once closing started.
        self.close_deadline: float | None = None
        self._closed = False
        self._pongs_seen = 0

    # -- receiving ---------------------------------------------------------------

    def feed(self, data: bytes, write_blocked: bool = False) -> int:
        """Process bytes read from the network (``b""``: go on with bytes left unparsed).

        Args:
            data: The bytes read.
            write_blocked: The engine cannot write now (the peer does not read):
                pongs are then held back (only the most recent one is kept).
        """
        # The hot path of every engine: Inbox.room(), Inbox.put() and the common
        # case of _step() are written out here.
        proto = self.protocol
        proto.defer_pongs = write_blocked
        inbox = self.inbox
        queue = inbox.messages
        if inbox.close_called:
            room = None
        else:
            room = inbox.max_queue - len(queue)
            if room < 1:
                room = 1
        messages = proto.receive_data(data, room)
        flags = 0
        if messages:
            flags = MESSAGES
            queue.extend(messages)
            if len(queue) >= inbox.max_queue and not inbox.paused and not inbox.close_called:
                inbox.paused = True
                flags = MESSAGES | PAUSE
        if (
            proto.pongs_received == self._pongs_seen
            and not proto.output_ready
            and not proto.pong_held
            and proto.state is not _CLOSED
        ):
            return flags  # nothing else happened
        return self._step(flags)

    def receive_buffer(self) -> memoryview | None:
        """Where the next read may go directly (see ``Protocol.receive_buffer``)."""
        return self.protocol.receive_buffer()

    def feed_buffer(self, nbytes: int) -> int:
        """``nbytes`` were read into :meth:`receive_buffer`.

        Raises:
            ValueError: Nothing was lent by :meth:`receive_buffer`.
        """
        messages = self.protocol.receive_buffer_updated(nbytes, self.inbox.room())
        if messages:
            return self._step(MESSAGES | PAUSE if self.inbox.put(messages) else MESSAGES)
        return self._step(0)

    def resume(self, write_blocked: bool = False) -> int:
        """Reading may resume: first parse what was left unparsed while paused.

        Returns the step; reading really resumes only if the inbox is not full
        again (:attr:`Inbox.paused`).
        """
        if self.protocol.stalled:
            return self.feed(b"", write_blocked)
        return 0

    def lost(self) -> int:
        """The transport is gone (EOF or an error); messages received before still count."""
        proto = self.protocol
        flags = 0
        if proto.stalled:
            messages = proto.receive_data(b"")
            if messages:
                self.inbox.messages.extend(messages)
                flags = MESSAGES
        proto.connection_lost()
        return self._step(flags)

    def _step(self, flags: int) -> int:
        proto = self.protocol
        if proto.pongs_received != self._pongs_seen:
            self._pongs_seen = proto.pongs_received
            proto.take_pongs()
            flags |= PONG
        if proto.output_ready or proto.pong_held:
            out = proto.data_to_send()
            if out:
                self.output = out
                flags |= WRITE
            if proto.pong_held:
                flags |= PONG_HELD
        if proto.state is State.CLOSED and not self._closed:
            flags |= self._on_closed()
        return flags

    def _on_closed(self) -> int:
        """The closing handshake completed, or the connection failed or was lost."""
        self._closed = True
        proto = self.protocol
        self.inbox.finish(proto.close_code or CloseCode.ABNORMAL_CLOSURE, proto.close_reason)
        self.next_ping = None
        if self.close_deadline is None:
            self.close_deadline = self._clock() + self.close_timeout
        if proto.client and not proto.failed:
            # RFC 6455 7.1.1: the server closes TCP first; the client waits for it
            # until the deadline.
            return CLOSED
        return CLOSED | CLOSE_TRANSPORT

    # -- sending -----------------------------------------------------------------

    def release_pong(self) -> int:
        """Writing is possible again: the held pong (if any) goes out."""
        self.protocol.defer_pongs = False
        return self._step(0)

    def ping(self, payload: bytes | None = None) -> tuple[bytes, bytes]:
        """Return ``(payload, frame)`` of a ping whose pong is awaited.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        proto = self.protocol
        if proto.state is not State.OPEN:
            raise self.send_error()
        return proto.ping(payload)

    def ping_pending(self, payload: bytes) -> bool:
        """``True`` while the ping with ``payload`` waits for its pong."""
        return self.protocol.ping_pending(payload)

    def close(self, code: int, reason: str | None) -> int:
        """Start the closing handshake (``close()`` was called).

        Reading resumes if the inbox had paused it (:attr:`Inbox.resumed`), and
        what was left unparsed is parsed first: the peer's close frame may be
        there. The close frame, if one is still to be sent, is in :attr:`output`
        (with :data:`WRITE`); the transport is to be aborted at :meth:`deadline`
        unless it closed before.

        Raises:
            ValueError: ``code`` may not be sent.
        """
        inbox = self.inbox
        inbox.close_requested()
        flags = self.resume() if inbox.resumed else 0
        proto = self.protocol
        if proto.state is not State.OPEN:
            return flags
        frame = proto.close(code, reason)
        if self.close_deadline is None:
            self.close_deadline = self._clock() + self.close_timeout
        self.next_ping = None
        if frame:
            self.output = self.output + frame if flags & WRITE else frame
            flags |= WRITE
        return flags

    def fail(self, code: int, reason: str | None = None) -> int:
        """Fail the connection with ``code`` (a close frame, then close the transport)."""
        if self.protocol.state is State.CLOSED:
            return 0
        self.protocol.fail(code, reason)
        return self._step(0)

    def send_error(self, lost: bool = False) -> ConnectionClosed:
        """The ``ConnectionClosed`` for a send on a connection that is not open.

        Args:
            lost: The engine saw the transport fail while writing.
        """
        proto = self.protocol
        if proto.close_code is not None:
            return ConnectionClosed(proto.close_code, proto.close_reason)
        if lost and not self.inbox.finished:
            return ConnectionClosed(CloseCode.ABNORMAL_CLOSURE, None)
        return self.inbox.closed_error()

    # -- time --------------------------------------------------------------------

    def deadline(self) -> float | None:
        """When :meth:`tick` must be called next, or ``None`` when no timer runs."""
        when = self.close_deadline
        next_ping = self.next_ping
        if next_ping is not None and self.protocol.state is State.OPEN:
            oldest = self.protocol.oldest_unanswered_ping
            if oldest is not None:
                # Also when the oldest ping's pong is overdue.
                next_ping = min(next_ping, oldest + self._ping_timeout())
            when = next_ping if when is None else min(when, next_ping)
        return when

    def _ping_timeout(self) -> float:
        if self.ping_timeout is not None:
            return self.ping_timeout
        assert self.ping_interval is not None
        return self.ping_interval

    def tick(self) -> int:
        """Act on the deadlines that passed: keepalive pings, pong and close timeouts."""
        now = self._clock()
        close_deadline = self.close_deadline
        if close_deadline is not None and now >= close_deadline - _EARLY:
            return ABORT
        interval = self.ping_interval
        proto = self.protocol
        if interval is None or self.next_ping is None or proto.state is not State.OPEN:
            return 0
        oldest = proto.oldest_unanswered_ping
        if oldest is not None and now - oldest >= self._ping_timeout() - _EARLY:
            self.logger.info(
                "keepalive ping timeout after %.3f s; failing the connection", now - oldest
            )
            return self.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        if now >= self.next_ping - _EARLY:
            _, self.output = proto.ping()
            self.next_ping = now + interval
            return WRITE
        return 0
