"""What every asynchronous WebSocket connection offers, whatever moves its bytes.

:class:`BaseConnection` keeps the received messages in the core's
:class:`~simple_websocket.sansio.session.Inbox` (its flow-control and iteration
rules) and offers ``receive(timeout)``, the async iterator and async context manager
protocols and the conveniences over the extensions. The asyncio engine
(:class:`simple_websocket.asyncio.connection.Connection`) and the ASGI adapter build
on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from typing_extensions import Unpack

from ..errors import ConnectionClosed
from ..sansio.limits import UNSET, Unset, message_limits
from ..sansio.options import (
    LoggerLike,
    check_connection_options,
    check_logger,
    check_receive_timeout,
)
from ..sansio.protocol import CloseCode, check_close_code
from ..sansio.session import Inbox, Message

if TYPE_CHECKING:  # pragma: no cover
    from aiostream import Stream

    from ..channels import ChannelOptions, TypedChannel
    from ..subscriptions import Router, SubscribeOptions, Subscription

__all__ = ["BaseConnection", "Message"]

_T = TypeVar("_T")
_TIMEOUT = object()
#: The close reason of a connection whose subscription's feed went silent.
IDLE_TIMEOUT_REASON = "idle timeout"

logger = logging.getLogger("simple_websocket")


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
        logger: Where the connection logs: the ``logger=`` option (a logger, an
            adapter or a logger's name), by default the ``simple_websocket`` logger.
    """

    # Attributes in slots: a connection's instance dictionary only holds what
    # subclasses (and applications) add. ``__weakref__``: connections may be
    # weakly referenced.
    __slots__ = (
        "__weakref__",
        "_background",
        "_inbox",
        "_loop",
        "_max_inflated_size",
        "_router",
        "_waiters",
        "close_message",
        "close_reason",
        "close_timeout",
        "connected",
        "logger",
        "max_message_size",
        "max_queue",
        "ping_interval",
        "ping_timeout",
        "receive_bytes",
        "subprotocol",
    )

    #: The event loop the connection runs on, once known.
    _loop: asyncio.AbstractEventLoop | None
    #: Routes the messages to subscriptions, once ``subscribe()`` was called.
    _router: Router | None

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
        self._waiters: list[asyncio.Future[Any]] = []
        self._loop = None
        self._router = None
        # The last task started by send_nowait() or close_nowait(): each waits for
        # the one before it, so that what they do happens in call order.
        self._background: asyncio.Task[None] | None = None

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

    def send_nowait(self, data: Any) -> None:
        """Send a message without waiting: for callbacks, which cannot ``await``.

        The message is handed to the connection now and written in call order with
        the other ``send_nowait()`` and ``close_nowait()`` calls. Nothing waits for
        the peer to read it: a callback that sends much faster than the peer reads
        fills memory (the asyncio engine then stops reading from that peer until
        its write buffer drained; see :class:`~simple_websocket.MessageHandler`).

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        if not self.connected:
            raise self._inbox.closed_error()
        self._in_background(self.send(data))

    def close_nowait(self, reason: int | None = None, message: str | None = None) -> None:
        """Start closing the connection and return at once (``close()`` without the wait).

        The close frame is sent after everything sent before; the closing handshake
        then goes on without the caller, within ``close_timeout``. Calling it again,
        or after the connection closed, does nothing.

        Raises:
            ValueError: ``reason`` is a code that may not be sent (RFC 6455 7.4).
        """
        check_close_code(reason)
        if not self.connected:
            return
        self.connected = False
        self._in_background(self.close(reason, message))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a task, after the work handed over before it."""
        loop = self._loop or asyncio.get_running_loop()
        self._background = loop.create_task(self._after(self._background, work))

    async def _after(
        self, previous: asyncio.Task[None] | None, work: Coroutine[Any, Any, None]
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait((previous,))
        try:
            await work
        except ConnectionClosed:
            pass  # closed meanwhile: the peer will not read it anyway
        except Exception:
            self.logger.exception("a background send or close failed")

    def _pause_reading(self) -> None:
        """Stop taking data from the network (read backpressure)."""

    def _resume_reading(self) -> None:
        """Take data from the network again."""

    # -- receiving -----------------------------------------------------------------

    def _deliver(self, messages: Sequence[Message]) -> None:
        """Queue received messages and wake the receivers."""
        if self._inbox.put(messages):
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
        if self._inbox.finish(code, reason):
            self._finished()

    def _finished(self) -> None:
        """The inbox was just finished: publish how, and wake everyone."""
        self.connected = False
        self.close_reason = self._inbox.close_code
        self.close_message = self._inbox.close_reason
        self._wake_receivers()

    def _take(self) -> Message:
        inbox = self._inbox
        message = inbox.take()
        if inbox.resumed:
            inbox.resumed = False
            self._resume_reading()
        return message

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
            TypeError: ``timeout`` is not a number or ``None``.
            ValueError: ``timeout`` is NaN.

        Once subscriptions were made (:meth:`subscribe`), only the messages no
        subscription matched are returned.

        Cancelling a pending ``receive()`` loses nothing: a message is only taken
        from the buffer by the call that returns it.
        """
        if timeout is not None and type(timeout) is not float and type(timeout) is not int:
            timeout = check_receive_timeout(timeout)
        inbox = self._inbox
        messages = inbox.messages
        router = self._router
        if router is not None:
            return await router.receive(timeout)
        if messages:
            return self._take() if inbox.paused else messages.popleft()
        if timeout is not None or inbox.finished:
            return await self._receive_wait(timeout)
        # _receive_wait(None) written out: one coroutine less per message waited for.
        loop = self._loop or asyncio.get_running_loop()
        while True:
            waiter: asyncio.Future[Any] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                # Cancelled (a woken waiter was already taken off the list).
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                raise
            if messages:
                return self._take() if inbox.paused else messages.popleft()
            if inbox.finished:
                raise inbox.closed_error()

    async def _receive_unrouted(self, timeout: float | None) -> Message | None:
        """:meth:`receive` without the subscriptions: what their router reads."""
        inbox = self._inbox
        messages = inbox.messages
        if messages:
            return self._take() if inbox.paused else messages.popleft()
        return await self._receive_wait(timeout)

    def _poll(self) -> Message | None:
        """A message already received, or ``None``: never waits."""
        inbox = self._inbox
        messages = inbox.messages
        if messages:
            return self._take() if inbox.paused else messages.popleft()
        return None

    async def _receive_wait(self, timeout: float | None) -> Message | None:
        """Wait for a message (none is buffered)."""
        inbox = self._inbox
        messages = inbox.messages
        if inbox.finished:
            raise inbox.closed_error()
        if timeout is not None and not timeout > 0:
            if timeout != timeout:
                check_receive_timeout(timeout)  # NaN
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
                return self._take() if inbox.paused else messages.popleft()
            if inbox.finished:
                raise inbox.closed_error()
            if result is _TIMEOUT:
                return None

    @property
    def close_requested(self) -> bool:
        """``True`` once ``close()`` was called on this side."""
        return self._inbox.close_called

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

    @overload
    def subscribe(
        self, receive_type: type[_T], **options: Unpack[SubscribeOptions]
    ) -> Subscription[_T]: ...

    @overload
    def subscribe(
        self, receive_type: Any, **options: Unpack[SubscribeOptions]
    ) -> Subscription[Any]: ...

    def subscribe(
        self, receive_type: Any, **options: Unpack[SubscribeOptions]
    ) -> Subscription[Any]:
        """Make a subscription on this connection (see ``simple_websocket.subscriptions``).

        As on a reconnecting client, without the reconnects: the messages that
        match go to the subscription, the others to :meth:`receive`, iteration and
        typed channels. ``idle_timeout`` there fails this connection with 1011.
        """
        router = self._router
        if router is None:
            from ..subscriptions import Router

            router = self._router = Router(
                self._receive_unrouted,
                self._subscription_target,
                self._ends_iteration,
                poll=self._poll,
                on_idle=self._feed_idle,
            )
        return router.subscribe(receive_type, **options)

    def _subscription_target(self) -> Self | None:
        return self if self.connected else None

    def _ends_iteration(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionClosed) and self._inbox.ends_iteration(exc)

    def _feed_idle(self, subscription: Subscription[Any]) -> None:
        """A subscription's feed went silent: take the connection as dead (1011)."""
        logger.warning(
            "no message for %s s on %r; closing the connection (1011 %s)",
            subscription.idle_timeout,
            subscription,
            IDLE_TIMEOUT_REASON,
        )
        self._fail_idle()

    def _fail_idle(self) -> None:
        """Close with 1011 ``"idle timeout"``; engines fail at once instead."""
        self.close_nowait(CloseCode.INTERNAL_ERROR, IDLE_TIMEOUT_REASON)

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
        if self._router is not None or type(self).receive is not BaseConnection.receive:
            # Subscriptions take their messages first, or a subclass changed
            # receive(): iterate through it.
            try:
                message = await self.receive()
            except ConnectionClosed as exc:
                if self._inbox.ends_iteration(exc):
                    raise StopAsyncIteration from None
                raise
            assert message is not None
            return message
        # What receive() does without a timeout, one coroutine less per message.
        inbox = self._inbox
        messages = inbox.messages
        while True:
            if messages:
                return self._take() if inbox.paused else messages.popleft()
            if inbox.finished:
                closed = inbox.closed_error()
                if inbox.ends_iteration(closed):
                    raise StopAsyncIteration
                raise closed
            waiter: asyncio.Future[Any] = (self._loop or asyncio.get_running_loop()).create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                # Cancelled (a woken waiter was already taken off the list).
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                raise

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
