"""What every synchronous WebSocket connection offers, and what threads it needs.

:class:`BaseConnection` keeps the received messages in the core's
:class:`~simple_websocket.sansio.session.Inbox` behind a lock and offers
``receive(timeout)``, iteration and the context manager protocol. The protocols
:class:`EventLike` and :class:`ThreadLike` say what the engine needs from the
injectable ``event_class`` and ``thread_class`` (eventlet's and gevent's fit).
"""

from __future__ import annotations

import selectors
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self
from typing import Protocol as TypingProtocol

from ..errors import ConnectionClosed
from ..sansio.limits import UNSET, Unset, message_limits
from ..sansio.options import (
    LoggerLike,
    check_connection_options,
    check_logger,
    check_receive_timeout,
)
from ..sansio.protocol import CloseCode
from ..sansio.session import Inbox, Message

__all__ = [
    "BaseConnection",
    "EventFactory",
    "EventLike",
    "Message",
    "SelectorFactory",
    "ThreadFactory",
    "ThreadLike",
]


class EventLike(TypingProtocol):
    """What the engine needs from an event (``threading.Event`` and its green twins)."""

    def set(self) -> None: ...  # noqa: D102

    def clear(self) -> None: ...  # noqa: D102

    def is_set(self) -> bool: ...  # noqa: D102

    def wait(self, timeout: float | None = None) -> Any: ...  # noqa: D102


class ThreadLike(TypingProtocol):
    """What the engine needs from a thread: it is started once and never joined."""

    def start(self) -> None: ...  # noqa: D102


#: Called as ``thread_class(target=function)``, like ``threading.Thread``.
ThreadFactory = Callable[..., ThreadLike]
#: Called with no arguments, like ``selectors.DefaultSelector``.
SelectorFactory = Callable[[], selectors.BaseSelector]
EventFactory = Callable[[], EventLike]


class BaseConnection:
    """What every synchronous WebSocket connection offers.

    Attributes:
        subprotocol: The negotiated subprotocol, or ``None``.
        connected: ``True`` while the connection is open; ``False`` once a close was
            started by either side or the connection was lost.
        receive_bytes: How many bytes the reader asks the socket for at a time.
        ping_interval: Seconds between keepalive pings, or ``None``.
        ping_timeout: Seconds to wait for a pong before failing the connection with
            close code 1011 (``None``: until the next ping is due).
        max_message_size: The largest message accepted, in bytes, or ``None``. When
            it was not given (``UNSET``), this is ``None`` and only compressed messages
            are limited, to ``MAX_INFLATED_SIZE`` inflated (see ``sansio.limits``).
        close_timeout: Seconds ``close()`` waits for the closing handshake.
        max_queue: Received messages buffered before the reader stops reading.
        close_reason: The close code once the connection is closed (1005 before).
        close_message: The close reason text once closed, or ``None``.
        logger: Where the connection logs: the ``logger=`` option (a logger, an
            adapter or a logger's name), by default the ``simple_websocket`` logger.
    """

    def __init__(
        self,
        *,
        receive_bytes: int = 4096,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        max_message_size: int | Unset | None = UNSET,
        close_timeout: float = 5.0,
        max_queue: int = 16,
        logger: LoggerLike | None = None,
        event_class: EventFactory | None = None,
    ) -> None:
        check_connection_options(
            receive_bytes=receive_bytes,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_message_size=max_message_size,
            close_timeout=close_timeout,
            max_queue=max_queue,
        )
        #: Where this connection logs (``logger=``; default ``simple_websocket``).
        self.logger = check_logger(logger)
        self._inbox = Inbox(max_queue)
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
        self._event_class: EventFactory = event_class or _default_event
        # Guards every field shared with the reader thread; held only briefly.
        self._lock = threading.Lock()
        # Set whenever a message arrives or the connection finishes.
        self._message_event = self._event_class()

    # -- to be provided by subclasses ---------------------------------------------

    def send(self, data: Any) -> None:
        """Send a message: bytes-like data as binary, anything else as text.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        raise NotImplementedError

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Close the connection; see the concrete class."""
        raise NotImplementedError

    def _resume_reading(self) -> None:
        """Take data from the network again (called without the lock)."""

    def _ended(self) -> None:
        """Called (without the lock) before ``ConnectionClosed`` reaches the caller."""

    # -- receiving -----------------------------------------------------------------

    def _finished_locked(self) -> None:
        """The inbox was just finished (the lock is held): publish how."""
        self.connected = False
        self.close_reason = self._inbox.close_code
        self.close_message = self._inbox.close_reason

    def receive(self, timeout: float | None = None) -> Message | None:
        """Receive the next message.

        Args:
            timeout: Seconds to wait; ``None`` waits as long as it takes, ``0`` only
                returns a message that is already buffered.

        Returns:
            The message (``str`` or ``bytes``), or ``None`` if ``timeout`` passed.

        Raises:
            ConnectionClosed: The connection is closed and every message received
                before the close was already returned.
            TypeError: ``timeout`` is not a number or ``None``.
            ValueError: ``timeout`` is NaN.
        """
        if timeout is not None:
            check_receive_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        event = self._message_event
        while True:
            with self._lock:
                inbox = self._inbox
                if inbox.messages:
                    message = inbox.take()
                    resume = inbox.resumed
                    inbox.resumed = False
                    break
                finished = inbox.finished
                if not finished:
                    event.clear()
            if finished:
                self._ended()
                raise inbox.closed_error()
            if deadline is None:
                event.wait()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            event.wait(remaining)
        if resume:
            self._resume_reading()
        return message

    @property
    def close_requested(self) -> bool:
        """``True`` once ``close()`` was called on this side."""
        return self._inbox.close_called

    # -- iteration and context management ----------------------------------------

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        """Return the next message.

        Iteration ends quietly when the connection closes normally (1000 or 1001,
        or after ``close()`` was called) and raises ``ConnectionClosed`` otherwise.
        """
        try:
            message = self.receive()
        except ConnectionClosed as exc:
            if self._inbox.ends_iteration(exc):
                raise StopIteration from None
            raise
        assert message is not None
        return message

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close with 1000, or with 1011 when the block raised."""
        if exc_type is None:
            self.close()
        else:
            self.close(CloseCode.INTERNAL_ERROR, "Unexpected error")


def _default_event() -> EventLike:
    # Looked up on each call, so that eventlet's or gevent's monkey patching,
    # applied after this module was imported, is honoured.
    return threading.Event()
