"""Subscriptions: typed streams of the messages that match, resumed after reconnects.

``client.subscribe(Tick, subscribe=..., match=..., sequence=...)`` returns a
:class:`Subscription`: an async iterator of the messages of one feed, validated into
``Tick``, each with its own bounded queue. Many subscriptions share one connection;
a :class:`Router` reads the connection, decodes each JSON message once, and hands it
to the first open subscription whose ``match`` accepts it. Messages no subscription
matches keep flowing to the connection's ``receive()``, iteration and typed channels.

Reading is done by whichever caller needs a message (a subscription's iteration, or
``receive()``): one caller reads at a time and the others wait for it, so there is no
background task. A message for a subscription whose queue is full is held, and
nothing more is read until that subscription's consumer takes one: reading pauses,
nothing is dropped. The same goes for unmatched messages when ``receive()`` is not
called: after ``max_unmatched`` of them reading pauses (and a warning is logged once).

Resuming. Every open subscription sends ``subscribe(last)`` on each new connection,
after ``on_connect`` and before the outbox (see
:class:`~simple_websocket.reconnect.ReconnectingClient`); ``last`` is the last
sequence number received, so a server that keeps history can replay what was missed.
With ``sequence=``, a message at or below ``last`` is a duplicate (dropped and
counted), and a jump is a gap (counted, handled as ``on_gap`` says).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    NotRequired,
    Protocol,
    Required,
    Self,
    TypedDict,
    TypeVar,
    overload,
)

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from .channels import InvalidPolicy, apply_invalid_policy, check_invalid_policy, schema_errors
from .errors import ConnectionClosed, DecodeError, GapError
from .sansio.options import check_count, check_receive_timeout, check_seconds, describe

if TYPE_CHECKING:  # pragma: no cover
    from aiostream import Stream

__all__ = ["GapPolicy", "Match", "Router", "SubscribeOptions", "Subscription"]

logger = logging.getLogger("simple_websocket")

T = TypeVar("T")
Message = str | bytes
#: Top-level JSON fields a message must have, with their values, or a callable
#: that gets the decoded JSON and says whether the message belongs.
Match = Mapping[str, Any] | Callable[[Any], bool]
GapPolicy = Literal["resubscribe", "raise", "ignore"]


class SubscribeOptions(TypedDict):
    """The keyword options of ``subscribe()`` (see :meth:`Router.subscribe`)."""

    subscribe: Required[Any]  # a message, (last) -> message, or None
    match: Required[Match]
    unsubscribe: NotRequired[Any]
    sequence: NotRequired[Callable[[Any], int | None] | None]
    on_gap: NotRequired[GapPolicy]
    gap_timeout: NotRequired[float]
    max_queue: NotRequired[int]
    on_invalid: NotRequired[InvalidPolicy]
    idle_timeout: NotRequired[float | None]


_ANY: TypeAdapter[Any] = TypeAdapter(Any)
#: Messages routed in one go from what the connection already buffered.
_BATCH = 64
_NOT_JSON = object()
_MISSING = object()
_TIMEOUT = object()


def encode(message: Any) -> Message:
    """Encode a message to send: ``str`` and ``bytes`` as they are, the rest as JSON.

    Models, dataclasses and dicts become JSON text.
    """
    if isinstance(message, (str, bytes)):
        return message
    return _ANY.dump_json(message).decode("utf-8")


class Sender(Protocol):
    """A connection (re)subscriptions are sent on."""

    async def send(self, data: Any) -> None:
        """Send one message."""


def _wake(waiter: asyncio.Future[Any], value: Any = None) -> None:
    if not waiter.done():
        waiter.set_result(value)


def _matcher(match: Match) -> Callable[[Any], bool]:
    if callable(match):
        return match
    if not isinstance(match, Mapping):
        raise TypeError(f"match must be a mapping or a callable, not {type(match).__name__}")
    items = tuple(match.items())
    if not items:
        raise ValueError("match must name at least one field")
    if len(items) == 1:
        ((key, value),) = items

        def one(data: Any) -> bool:
            return data.__class__ is dict and data.get(key, _MISSING) == value

        return one

    def every(data: Any) -> bool:
        if data.__class__ is not dict:
            return False
        get = data.get
        # A plain loop: all() over a generator costs a frame per message.
        for key, value in items:  # noqa: SIM110
            if get(key, _MISSING) != value:
                return False
        return True

    return every


class _Resync:
    """A gap being filled: the messages after it, held until the missing ones come."""

    __slots__ = ("deadline", "held")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.held: dict[int, Any] = {}


class Subscription(Generic[T]):
    """The messages of one feed, typed, in order, each once; see :meth:`Router.subscribe`.

    An async iterator (ends quietly when the connection or client closes normally,
    or when the subscription is closed) and an async context manager (entering it
    sends ``subscribe``; leaving it sends ``unsubscribe`` once).

    Attributes:
        received: Messages delivered to this subscription's queue.
        duplicates: Messages dropped because their sequence number was at or below
            :attr:`last`.
        gaps: Jumps in the sequence numbers seen.
        last: The last sequence number delivered, or ``None``.
        max_queue: Messages buffered for this subscription before reading pauses.
    """

    def __init__(
        self,
        router: Router,
        receive_type: Any,
        *,
        subscribe: Any,
        unsubscribe: Any,
        match: Match,
        sequence: Callable[[T], int | None] | None,
        on_gap: GapPolicy,
        gap_timeout: float,
        max_queue: int,
        on_invalid: InvalidPolicy,
        idle_timeout: float | None = None,
    ) -> None:
        if on_gap not in ("resubscribe", "raise", "ignore"):
            raise ValueError(f"on_gap must be 'resubscribe', 'raise' or 'ignore', not {on_gap!r}")
        check_invalid_policy(on_invalid)
        check_count("max_queue", max_queue)
        check_seconds("gap_timeout", gap_timeout, optional=False)
        check_seconds("idle_timeout", idle_timeout)
        if sequence is not None and not callable(sequence):
            raise TypeError(
                "sequence must be a callable returning the sequence number, "
                f"not {describe(sequence)}"
            )
        self._router = router
        self.receive_type = receive_type
        with schema_errors("receive_type", receive_type):
            self._validate = TypeAdapter(receive_type).validator.validate_python
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._matches = _matcher(match)
        self._sequence = sequence
        self.on_gap: GapPolicy = on_gap
        self.gap_timeout = gap_timeout
        self.max_queue = max_queue
        self.on_invalid = on_invalid
        self.idle_timeout = idle_timeout
        self.received = 0
        self.duplicates = 0
        self.gaps = 0
        self.last: int | None = None
        # (True, message) or (False, exception to raise at that point).
        self._queue: deque[tuple[bool, Any]] = deque()
        self._resync: _Resync | None = None
        self._started = False
        self._closed = False
        # The connection the subscribe message was last sent on.
        self._sent_on: object | None = None
        # The idle check: matching messages so far (duplicates too), the count at
        # the last check, its timer, and whether a new connection restarts it.
        self._routed = 0
        self._idle_seen = 0
        self._idle_handle: asyncio.TimerHandle | None = None
        self._idle_reset = False

    def __repr__(self) -> str:
        name = getattr(self.receive_type, "__name__", repr(self.receive_type))
        state = "closed" if self._closed else "open" if self._started else "new"
        return f"<Subscription {name} {state} last={self.last} received={self.received}>"

    @property
    def closed(self) -> bool:
        """``True`` once :meth:`close` was called."""
        return self._closed

    def subscribe_message(self) -> Message:
        """The subscribe message for the current :attr:`last`, encoded."""
        message = self._subscribe
        if callable(message):
            message = message(self.last)
        return encode(message)

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> Self:
        """Open the subscription: send ``subscribe(last)`` now if connected.

        Iterating or receiving starts it too. Once open, it is sent again on every
        new connection of a reconnecting client.

        Raises:
            RuntimeError: The subscription was closed.
        """
        if self._closed:
            raise RuntimeError("this subscription is closed; make a new one")
        if not self._started:
            self._started = True
            self._router._open(self)
            self._router._watch_idle(self)
        await self._router._send_subscribe(self)
        return self

    async def close(self) -> None:
        """Close the subscription: send ``unsubscribe`` (once, if given and connected).

        Messages still queued are discarded; messages that match later go to the
        connection's ``receive()``. Calling it again does nothing.
        """
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._resync = None
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        self._router._close(self)
        if self._started and self._unsubscribe is not None:
            message = self._unsubscribe
            if callable(message):
                message = message(self.last)
            await self._router._send(encode(message))

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- routing (called by the router while it reads) ----------------------------

    def _full(self) -> bool:
        return len(self._queue) >= self.max_queue

    def _route(self, raw: Message, data: Any, clock: Callable[[], float]) -> bool:
        """Take one matching message.

        Returns ``True`` when it revealed a gap that must be asked for again
        (``on_gap="resubscribe"``).
        """
        self._routed += 1
        try:
            obj = self._validate(data)
        except ValidationError as exc:
            self._queue.append((False, DecodeError(raw, exc)))
            return False
        sequence = self._sequence
        if sequence is None:
            self._deliver(obj)
            return False
        seq = sequence(obj)
        last = self.last
        if seq is None or last is None:
            if seq is not None:
                self.last = seq
            self._deliver(obj)
            return False
        if seq <= last:
            self.duplicates += 1
            return False
        resync = self._resync
        if seq == last + 1:
            self.last = seq
            self._deliver(obj)
            if resync is not None:
                self._drain(resync)
            return False
        if resync is not None:
            resync.held.setdefault(seq, obj)
            if len(resync.held) > max(1024, self.max_queue):
                self._give_up(resync)  # the replay is not coming: do not hold more
            return False
        # A new gap.
        self.gaps += 1
        if self.on_gap == "ignore":
            self.last = seq
            self._deliver(obj)
            return False
        if self.on_gap == "raise":
            self._queue.append((False, GapError(last + 1, seq)))
            self.last = seq
            self._deliver(obj)
            return False
        resync = self._resync = _Resync(clock() + self.gap_timeout)
        resync.held[seq] = obj
        return True

    def _deliver(self, obj: Any) -> None:
        self.received += 1
        self._queue.append((True, obj))

    def _drain(self, resync: _Resync) -> None:
        """Deliver the held messages that follow :attr:`last`.

        The resync ends when no message is held any more.
        """
        held = resync.held
        assert self.last is not None
        while self.last + 1 in held:
            self.last += 1
            self._deliver(held.pop(self.last))
        for seq in [s for s in held if s <= self.last]:
            del held[seq]
            self.duplicates += 1
        if not held:
            self._resync = None

    def _give_up(self, resync: _Resync) -> None:
        """Accept the gap: raise :class:`GapError`, then go on after it."""
        assert self.last is not None
        first = min(resync.held)
        self._queue.append((False, GapError(self.last + 1, first)))
        self.last = first - 1
        self._drain(resync)

    # -- receiving -----------------------------------------------------------------

    def _take(self) -> tuple[bool, Any]:
        entry = self._queue.popleft()
        self._router._notify()  # room in the queue: a held message may go on
        return entry

    async def _next(self, timeout: float | None, iterate: bool) -> T | None:
        if not self._started:
            await self.start()
        router = self._router
        deadline = None if timeout is None else router._clock() + timeout
        while True:
            while self._queue:
                ok, value = self._take()
                if ok:
                    return value  # type: ignore[no-any-return]
                if isinstance(value, DecodeError):
                    apply_invalid_policy(self.on_invalid, value)
                    continue
                raise value
            if self._closed:
                if iterate:
                    raise StopAsyncIteration
                raise ConnectionClosed(1000, "subscription closed")
            resync = self._resync
            if resync is not None and router._clock() >= resync.deadline:
                self._give_up(resync)
                continue
            end = router._end
            if end is not None:
                if iterate and router._normal_end(end):
                    raise StopAsyncIteration
                raise end
            wait_until = deadline
            if resync is not None and (wait_until is None or resync.deadline < wait_until):
                wait_until = resync.deadline
            progressed = await router._pump(wait_until)
            if not progressed and deadline is not None and router._clock() >= deadline:
                return None

    async def receive(self, timeout: float | None = None) -> T | None:
        """Receive the next message of this subscription.

        Args:
            timeout: Seconds to wait; ``None`` waits as long as it takes, ``0`` only
                returns what is already queued.

        Returns:
            The message, or ``None`` when ``timeout`` passed.

        Raises:
            GapError: A gap in the sequence was not filled (``on_gap="raise"``, or
                ``"resubscribe"`` after ``gap_timeout``); the next call goes on
                after it.
            DecodeError: With ``on_invalid="raise"``, a matching message failed
                validation; the next call goes on with the next one.
            ConnectionClosed: The connection (or the reconnecting client) is closed,
                or this subscription was closed.

            TypeError: ``timeout`` is not a number or ``None``.

        Cancelling ``receive()`` loses no message.
        """
        if timeout is not None:
            check_receive_timeout(timeout)
        return await self._next(timeout, iterate=False)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        """Return the next message.

        Iteration ends quietly when the subscription is closed or the connection
        closes normally.

        Raises:
            GapError: See :meth:`receive`.
            DecodeError: See :meth:`receive`.
            ConnectionClosed: The connection closed abnormally.
        """
        value = await self._next(None, iterate=True)
        return value  # type: ignore[return-value]

    def stream(self) -> Stream[T]:
        """Return an ``aiostream`` stream of this subscription's messages."""
        from aiostream import stream

        return stream.iterate(self)


class Router:
    """Routes the messages read from one connection to its subscriptions.

    Args:
        read: Reads the next message from the connection (or reconnecting client),
            ``None`` on timeout; raises when it is closed.
        current: The connection to send (re)subscriptions on now, or ``None`` while
            there is none (they are sent on the next one, see :meth:`connected`).
        normal_end: Whether the exception that ended reading is a normal end (the
            iterations then end quietly).
        poll: Returns a message the connection already holds, or ``None``,
            without waiting (optional: messages are then read one wait at a time).
        on_idle: Called with a subscription made with ``idle_timeout`` that got no
            message for that long while the connection was read: the owner takes
            the connection as dead. ``None``: ``idle_timeout`` is refused.
        max_unmatched: Unmatched messages buffered for ``receive()`` before reading
            pauses.
    """

    def __init__(
        self,
        read: Callable[[float | None], Awaitable[Message | None]],
        current: Callable[[], Sender | None],
        normal_end: Callable[[BaseException], bool],
        *,
        poll: Callable[[], Message | None] | None = None,
        on_idle: Callable[[Subscription[Any]], None] | None = None,
        max_unmatched: int = 1024,
    ) -> None:
        self._read = read
        self._poll = poll
        self._loop: asyncio.AbstractEventLoop | None = None
        self._current = current
        self._normal_end = normal_end
        self._on_idle = on_idle
        self.max_unmatched = max_unmatched
        #: The open subscriptions, in the order they were opened.
        self.subscriptions: list[Subscription[Any]] = []
        self._unmatched: deque[Message] = deque()
        self._reading = False
        self._watchers: list[asyncio.Future[Any]] = []
        # A message read but not routed yet: its subscription's queue (or the
        # unmatched queue, target None) was full.
        self._held: tuple[Subscription[Any] | None, Message, Any] | None = None
        self._warned = False
        #: What ended reading (raised to every consumer once its queue is empty).
        self._end: BaseException | None = None

    @overload
    def subscribe(
        self,
        receive_type: type[T],
        *,
        subscribe: Any,
        unsubscribe: Any = None,
        match: Match,
        sequence: Callable[[T], int | None] | None = None,
        on_gap: GapPolicy = "resubscribe",
        gap_timeout: float = 10.0,
        max_queue: int = 256,
        on_invalid: InvalidPolicy = "raise",
        idle_timeout: float | None = None,
    ) -> Subscription[T]: ...

    @overload
    def subscribe(
        self,
        receive_type: Any,
        *,
        subscribe: Any,
        unsubscribe: Any = None,
        match: Match,
        sequence: Callable[[Any], int | None] | None = None,
        on_gap: GapPolicy = "resubscribe",
        gap_timeout: float = 10.0,
        max_queue: int = 256,
        on_invalid: InvalidPolicy = "raise",
        idle_timeout: float | None = None,
    ) -> Subscription[Any]: ...

    def subscribe(
        self,
        receive_type: Any,
        *,
        subscribe: Any,
        unsubscribe: Any = None,
        match: Match,
        sequence: Callable[[Any], int | None] | None = None,
        on_gap: GapPolicy = "resubscribe",
        gap_timeout: float = 10.0,
        max_queue: int = 256,
        on_invalid: InvalidPolicy = "raise",
        idle_timeout: float | None = None,
    ) -> Subscription[Any]:
        """Make a subscription; entering it, iterating or ``start()`` opens it.

        Args:
            receive_type: What its messages are validated into: anything a pydantic
                ``TypeAdapter`` accepts.
            subscribe: The message that subscribes, or a callable ``(last) ->
                message`` (``last``: the last sequence number received, ``None`` at
                first). Sent when the subscription opens and again on every new
                connection. A ``str``/``bytes`` is sent as it is, anything else as
                JSON. ``None`` sends nothing: the subscription only routes the
                messages that match (acknowledgements, heartbeats) to its queue.
            unsubscribe: The message (or ``(last) -> message``) sent once when the
                subscription is closed, if connected then.
            match: Which messages belong: top-level JSON fields and their values
                (``{"channel": "BTC"}``), or a callable on the decoded JSON. The
                first open subscription that matches gets the message.
            sequence: Returns a message's sequence number (consecutive integers),
                or ``None`` for a message outside the sequence. Enables duplicate
                and gap handling.
            on_gap: ``"resubscribe"`` sends ``subscribe(last)`` again and holds the
                later messages until the missing ones arrive (or ``gap_timeout``
                passes: :class:`~simple_websocket.errors.GapError`, then it goes
                on); ``"raise"`` raises ``GapError`` at once, then goes on;
                ``"ignore"`` goes on.
            gap_timeout: Seconds to wait for the messages of a gap.
            max_queue: Messages buffered for this subscription before reading pauses.
            on_invalid: A matching message that fails validation: ``"raise"``
                (:class:`~simple_websocket.errors.DecodeError` from the iteration),
                ``"skip"`` (logged) or a callable.
            idle_timeout: Seconds without a matching message (while the connection
                is read) after which the connection is taken as dead: failed with
                1011, and reconnected by a reconnecting client. ``None``: never.

        Raises:
            ValueError: An option has an invalid value, or ``idle_timeout`` is
                given where nothing can act on it.
            TypeError: ``match`` or ``sequence`` has the wrong type.
        """
        if idle_timeout is not None and self._on_idle is None:
            raise ValueError("idle_timeout needs a connection that can be failed")
        return Subscription(
            self,
            receive_type,
            subscribe=subscribe,
            unsubscribe=unsubscribe,
            match=match,
            sequence=sequence,
            on_gap=on_gap,
            gap_timeout=gap_timeout,
            max_queue=max_queue,
            on_invalid=on_invalid,
            idle_timeout=idle_timeout,
        )

    # -- subscriptions ---------------------------------------------------------------

    def _open(self, sub: Subscription[Any]) -> None:
        self.subscriptions.append(sub)

    def _close(self, sub: Subscription[Any]) -> None:
        if sub in self.subscriptions:
            self.subscriptions.remove(sub)
        held = self._held
        if held is not None and held[0] is sub:
            # Its held message goes where unmatched ones go.
            self._held = (None, held[1], held[2])
        self._notify()

    async def _send(self, data: Message) -> None:
        conn = self._current()
        if conn is not None:
            with contextlib.suppress(ConnectionClosed):
                await conn.send(data)

    async def _send_subscribe(self, sub: Subscription[Any], *, again: bool = False) -> None:
        """Send ``sub``'s subscribe message on the current connection.

        Not if it was already sent there, unless ``again`` (to fill a gap).
        """
        conn = self._current()
        if (
            conn is None
            or sub._closed
            or sub._subscribe is None
            or (sub._sent_on is conn and not again)
        ):
            return
        sub._sent_on = conn
        try:
            await conn.send(sub.subscribe_message())
        except ConnectionClosed:
            sub._sent_on = None  # sent on the next connection

    async def connected(self, conn: Sender) -> None:
        """Send every open subscription's ``subscribe(last)`` on a new connection.

        They are sent in the order the subscriptions were opened.

        Raises:
            ConnectionClosed: The connection closed meanwhile (the rest are sent on
                the next one).
        """
        for sub in self.subscriptions:
            sub._idle_reset = True
        while True:
            # Subscriptions opened while these are sent are sent too.
            pending = [
                s
                for s in self.subscriptions
                if s._sent_on is not conn and not s._closed and s._subscribe is not None
            ]
            if not pending:
                return
            for sub in pending:
                sub._sent_on = conn
                await conn.send(sub.subscribe_message())

    # -- the idle check ------------------------------------------------------------------
    # A timer per subscription with idle_timeout, no task: every idle_timeout seconds
    # it compares the count of its matching messages with the last check's.

    def _watch_idle(self, sub: Subscription[Any]) -> None:
        if sub.idle_timeout is None or sub._closed or self._end is not None:
            return
        sub._idle_seen = sub._routed
        loop = self._event_loop()
        sub._idle_handle = loop.call_later(sub.idle_timeout, self._check_idle, sub)

    def _check_idle(self, sub: Subscription[Any]) -> None:
        sub._idle_handle = None
        # Silent only if the connection was being read all along: not while reading
        # was paused (a full queue), nobody was reading, or it was down.
        silent = (
            not sub._idle_reset
            and sub._routed == sub._idle_seen
            and self._reading
            and self._held is None
            and self._current() is not None
        )
        sub._idle_reset = False
        self._watch_idle(sub)
        if silent and self._on_idle is not None:
            self._on_idle(sub)

    # -- reading -----------------------------------------------------------------------

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            # Once: get_running_loop() costs a system call on Python 3.11.
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _clock(self) -> float:
        return self._event_loop().time()

    def _notify(self) -> None:
        if self._watchers:
            watchers = self._watchers
            self._watchers = []
            for waiter in watchers:
                _wake(waiter)

    async def _wait_change(self, deadline: float | None) -> bool:
        """Wait until the reader made progress or room was made.

        Returns ``False`` when ``deadline`` passed first.
        """
        loop = self._event_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        self._watchers.append(waiter)
        handle = None if deadline is None else loop.call_at(deadline, _wake, waiter, _TIMEOUT)
        try:
            result = await waiter
        finally:
            if handle is not None:
                handle.cancel()
            if waiter in self._watchers:
                self._watchers.remove(waiter)
        return result is not _TIMEOUT

    def _room_for(self, target: Subscription[Any] | None) -> bool:
        if target is None:
            return len(self._unmatched) < self.max_unmatched
        return target._closed or not target._full()

    async def _pump(self, deadline: float | None) -> bool:
        """Make progress: route the held message, or read and route one.

        After a message that had to be waited for, the ones already buffered by the
        connection are routed too (up to ``_BATCH``), without a wait each.

        Returns ``False`` when ``deadline`` passed first. When reading ended, the
        error is kept in ``_end`` for the consumers.
        """
        if self._end is not None:
            return True
        held = self._held
        if self._reading or (held is not None and not self._room_for(held[0])):
            return await self._wait_change(deadline)
        self._reading = True
        try:
            if held is not None:
                self._held = None
                gap = self._route(held[1], held[2])
            else:
                timeout = None if deadline is None else max(0.0, deadline - self._clock())
                try:
                    raw = await self._read(timeout)
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._end = exc
                    return True
                if raw is None:
                    return False
                gap = self._route(raw, _NOT_JSON)
            poll = self._poll
            if poll is not None:
                for _ in range(_BATCH):
                    if gap is not None or self._held is not None:
                        break
                    raw = poll()
                    if raw is None:
                        break
                    gap = self._route(raw, _NOT_JSON)
            if gap is not None:
                await self._send_subscribe(gap, again=True)
            return True
        finally:
            self._reading = False
            self._notify()

    def _route(self, raw: Message, data: Any) -> Subscription[Any] | None:
        """Hand ``raw`` to the first open subscription that matches it.

        Messages no subscription matches go to the unmatched queue. When the
        target queue is full, the message is held and reading pauses.

        Returns the subscription that must be asked again for a gap, if any.
        """
        subs = self.subscriptions
        target: Subscription[Any] | None = None
        if subs:
            if data is _NOT_JSON:
                try:
                    data = from_json(raw)
                except ValueError:
                    data = _NOT_JSON
            if data is not _NOT_JSON:
                for sub in subs:
                    if sub._matches(data):
                        target = sub
                        break
        if not self._room_for(target):
            self._held = (target, raw, data)
            if target is None and not self._warned and subs:
                self._warned = True
                logger.warning(
                    "%d messages that no subscription matches wait for receive(); "
                    "reading paused until they are received",
                    len(self._unmatched),
                )
            return None
        if target is None:
            self._unmatched.append(raw)
            return None
        if target._route(raw, data, self._clock):
            return target
        return None

    async def receive(self, timeout: float | None = None) -> Message | None:
        """Receive the next message no subscription matched.

        Returns:
            The message, or ``None`` when ``timeout`` passed.

        Raises:
            Exception: What ended reading (``ConnectionClosed`` for a connection),
                once every unmatched message was received.
        """
        unmatched = self._unmatched
        if unmatched:
            message = unmatched.popleft()
            if self._held is not None:
                self._notify()
            return message
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            if unmatched:
                message = unmatched.popleft()
                if self._held is not None:
                    self._notify()
                return message
            if self._end is not None:
                raise self._end
            progressed = await self._pump(deadline)
            if not progressed and deadline is not None and self._clock() >= deadline:
                return None
