"""Reconnecting with backoff, driven by tenacity.

Two things live here:

* :func:`connections` -- an async iterator of connections: it opens one, hands it
  out, and when it failed or dropped (with a retryable error) opens the next after
  waiting as the retry policy says. ``async for ws in AioClient.connect(url)`` uses it.
* :class:`ReconnectingClient` -- one long-lived object with the interface of a
  connection (``send``, ``receive``, ``close``, ``async for``, ``async with``,
  ``typed``, ``stream``) that reconnects underneath, runs ``on_connect`` after every
  (re)connect, and keeps what ``send()`` was given during an outage in a bounded
  outbox that is flushed, in order, once the new connection is ready.

Policies are tenacity ``AsyncRetrying`` objects (their ``wait``, ``stop``, ``retry``
predicate, ``before``/``after``/``before_sleep`` hooks, ``sleep`` and ``reraise``
are honoured), or a :class:`Backoff`, which builds one. The retry count restarts only
after a connection stayed open for ``healthy_after`` seconds, so a server that
accepts and closes at once is retried on the backoff schedule, never in a loop.

Liveness: connections opened here ping by default (``ping_interval=20``,
``ping_timeout=20``; see :func:`simple_websocket.aiows.AioClient.connect`), so a
peer that vanished without closing TCP is noticed, and ``idle_timeout`` takes a
connection on which no message arrived for that long as dead. ``on_disconnect``
receives a :class:`~simple_websocket.errors.Disconnected` that says why a
connection ended. Neither needs a task: each connection has at most two timer
handles (the engine's keepalive and the idle check), and nothing is done per
message but counting it.

What can be lost: a message is lost only if ``send()`` had already written it to a
socket that then died (the bytes were in the kernel's or the transport's buffer, or
in flight, when the connection broke; WebSocket has no acknowledgements to find
out). A ``send()`` that starts while the client knows the connection is down, or
whose connection is found closed before writing, puts the message in the outbox,
and it is delivered exactly once, in order, after the reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import numbers
import random
import ssl
import sys
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, TypeVar, overload

from tenacity import (
    AsyncRetrying,
    DoAttempt,
    DoSleep,
    RetryCallState,
    RetryError,
    retry_if_exception,
)
from tenacity.stop import stop_after_attempt, stop_after_delay, stop_never
from tenacity.wait import wait_base
from typing_extensions import Unpack

from .asyncio.base import IDLE_TIMEOUT_REASON as _IDLE_TIMEOUT_REASON
from .errors import (
    ConnectionClosed,
    DisconnectCause,
    Disconnected,
    HandshakeError,
    HandshakeRejected,
    OutboxFull,
    ProxyError,
)
from .sansio.options import (
    LoggerLike,
    check_callable,
    check_choice,
    check_count,
    check_logger,
    check_receive_timeout,
    check_seconds,
    describe,
)
from .sansio.protocol import CloseCode, check_close_code

if TYPE_CHECKING:  # pragma: no cover
    from aiostream import Stream

    from .aiows import AioClient
    from .asyncio.connection import Message
    from .channels import ChannelOptions, TypedChannel
    from .subscriptions import Router, SubscribeOptions, Subscription

__all__ = [
    "FATAL_CLOSE_CODES",
    "IDLE_TIMEOUT_REASON",
    "PING_TIMEOUT_REASON",
    "RETRYABLE_CLOSE_CODES",
    "Backoff",
    "OutboxFull",
    "ReconnectingClient",
    "connections",
    "is_retryable",
    "retry_after",
]

logger = logging.getLogger("simple_websocket")

RETRYABLE_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})
"""Close codes after which a client reconnects by default."""

FATAL_CLOSE_CODES = frozenset({1002, 1003, 1007, 1008, 1009, 1010})
"""Close codes after which a client gives up by default (as on any code not retryable)."""

PING_TIMEOUT_REASON = "keepalive ping timeout"
"""The close reason of a connection failed because a ping went unanswered (code 1011)."""

IDLE_TIMEOUT_REASON = _IDLE_TIMEOUT_REASON
"""The close reason of a connection failed by ``idle_timeout`` (code 1011)."""

T = TypeVar("T")


class _Request:
    """A request waiting for its response, and where it was last sent."""

    __slots__ = ("data", "sends", "sent_on")

    def __init__(self, data: Any) -> None:
        self.data = data
        self.sent_on: object | None = None
        self.sends = 0


class _Conn(Protocol):
    connected: bool
    close_reason: int
    close_message: str | None

    @property
    def close_requested(self) -> bool: ...  # pragma: no cover

    async def send(self, data: Any) -> None: ...  # pragma: no cover

    async def receive(self, timeout: float | None = None) -> Any: ...  # pragma: no cover

    async def close(self, reason: int | None = None, message: str | None = None) -> None: ...

    async def wait_closed(self) -> None: ...  # pragma: no cover


C = TypeVar("C", bound=_Conn)


def retry_after(exc: BaseException) -> float | None:
    """Return the ``Retry-After`` delay of a rejected handshake, in seconds, or ``None``.

    Only the delay-seconds form is understood; an HTTP date is ignored.
    """
    if isinstance(exc, HandshakeRejected):
        value = exc.header("Retry-After")
        if value is not None:
            with contextlib.suppress(ValueError):
                return max(0.0, float(value.strip()))
    return None


def is_retryable(exc: BaseException) -> bool:
    """The default classification of a failed or dropped connection.

    Retried: network errors (``OSError``, except TLS certificate errors), timeouts,
    HTTP 5xx and 429 answers, closes 1001, 1006, 1011, 1012, 1013, 1014, and proxy
    failures that are ``transient`` (a proxy's 5xx or 429, a proxy that could not
    reach the server). Not retried: other HTTP answers, invalid handshakes,
    certificate errors, proxies that refuse (407, 403, a SOCKS refusal), and every
    other close code (1000 ends the iteration quietly; see :func:`connections`).
    """
    if isinstance(exc, ProxyError):
        return exc.transient
    if isinstance(exc, ConnectionClosed):
        return exc.reason not in FATAL_CLOSE_CODES and exc.reason in RETRYABLE_CLOSE_CODES
    if isinstance(exc, HandshakeRejected):
        status = exc.status_code or 0
        return status >= 500 or status == 429
    if isinstance(exc, HandshakeError):
        return False
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False
    return isinstance(exc, (OSError, TimeoutError))


class _ExponentialJitter(wait_base):
    """``initial * multiplier ** (n - 1)``, capped, minus up to ``jitter`` of it at random.

    A ``Retry-After`` header of a rejected handshake raises the wait to its value.
    """

    def __init__(
        self, initial: float, maximum: float, multiplier: float, jitter: float, rng: random.Random
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.jitter = jitter
        self.rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        n = max(1, retry_state.attempt_number)
        try:
            delay = self.initial * self.multiplier ** (n - 1)
        except OverflowError:
            delay = self.maximum
        delay = min(self.maximum, delay)
        delay -= delay * self.jitter * self.rng.random()
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            exc = outcome.exception()
            hint = retry_after(exc) if exc is not None else None
            if hint is not None:
                delay = max(delay, hint)
        return delay


def not_retryable_reason(exc: BaseException) -> str:
    """Say why :func:`is_retryable` does not retry ``exc`` (for logs and errors)."""
    if isinstance(exc, ProxyError):
        return "the proxy refused the tunnel; only its 5xx, 429 and network failures are retried"
    if isinstance(exc, ConnectionClosed):
        codes = ", ".join(map(str, sorted(RETRYABLE_CLOSE_CODES)))
        return f"close code {exc.reason} is not retried (only {codes} are)"
    if isinstance(exc, HandshakeRejected):
        return f"HTTP {exc.status_code} is not retried (only 5xx and 429 answers are)"
    if isinstance(exc, HandshakeError):
        return "an invalid handshake is not retried"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "a TLS certificate that is not trusted is not retried"
    return f"{type(exc).__name__} is not retried"


async def _give_up_reason(policy: AsyncRetrying, state: RetryCallState, exc: BaseException) -> str:
    """Say why ``policy`` stopped after the outcome in ``state``.

    The policy's retry condition decides first (tenacity asks it before the stop
    condition): when it refuses the outcome, the error was not retryable;
    otherwise the stop condition (``max_attempts``, ``max_elapsed``) was reached.
    """
    if isinstance(exc, RetryError):
        outcome = exc.last_attempt
        inner = outcome.exception() if outcome.failed else None
        exc = inner if inner is not None else exc
    try:
        verdict = policy.retry(state)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Exception:  # a retry condition that fails here: say what is known
        verdict = True
    if not verdict:
        why = not_retryable_reason(exc) if not is_retryable(exc) else "the retry policy refused it"
        return f"not retryable: {exc} ({why})"
    attempts = state.attempt_number
    return f"stopped after {attempts} attempt{'s' if attempts != 1 else ''}: {exc}"


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, as a tenacity policy.

    Args:
        initial: The first wait, in seconds.
        maximum: The longest wait.
        multiplier: Growth factor between consecutive waits.
        jitter: Fraction (0 to 1) of each wait taken off at random, so that many
            clients do not reconnect in step.
        max_attempts: Give up after this many consecutive failed attempts.
        max_elapsed: Give up when this many seconds passed since the first attempt
            of the current series (a healthy connection starts a new series).
        healthy_after: A connection that stayed open this long resets the schedule.
        retry_if: Which exceptions are retried (default :func:`is_retryable`).
        seed: Seeds the jitter's random generator (for reproducible schedules).

    Raises:
        ValueError: A value out of its range: a negative wait, ``multiplier``
            below 1, ``jitter`` outside 0..1, ``max_attempts`` below 1, or
            ``max_elapsed`` not positive.
        TypeError: A value of the wrong type (every message names the field).
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.25
    max_attempts: int | None = None
    max_elapsed: float | None = None
    healthy_after: float = 10.0
    retry_if: Callable[[BaseException], bool] = is_retryable
    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_seconds("initial", self.initial, optional=False, zero=True)
        check_seconds("maximum", self.maximum, optional=False, zero=True)
        if not isinstance(self.multiplier, numbers.Real) or isinstance(self.multiplier, bool):
            raise TypeError(f"multiplier must be a number, not {describe(self.multiplier)}")
        if not self.multiplier >= 1 or not math.isfinite(self.multiplier):
            raise ValueError(f"multiplier must be a finite number >= 1, not {self.multiplier!r}")
        if not isinstance(self.jitter, numbers.Real) or isinstance(self.jitter, bool):
            raise TypeError(f"jitter must be a number between 0 and 1, not {describe(self.jitter)}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, not {self.jitter!r}")
        check_count("max_attempts", self.max_attempts, optional=True)
        check_seconds("max_elapsed", self.max_elapsed)
        check_seconds("healthy_after", self.healthy_after, optional=False, zero=True)
        check_callable("retry_if", self.retry_if, optional=False)
        check_count("seed", self.seed, minimum=-(2**63), optional=True)
        if self.seed is not None:
            self._rng.seed(self.seed)

    def retrying(
        self, *, sleep: Callable[[float], Awaitable[None] | None] | None = None
    ) -> AsyncRetrying:
        """Return the tenacity policy (``sleep`` replaces ``asyncio.sleep``, for tests)."""
        stop: Any = stop_never
        if self.max_attempts is not None:
            stop = stop_after_attempt(self.max_attempts)
        if self.max_elapsed is not None:
            elapsed = stop_after_delay(self.max_elapsed)
            stop = elapsed if stop is stop_never else stop | elapsed
        options: dict[str, Any] = {}
        if sleep is not None:
            options["sleep"] = sleep
        return AsyncRetrying(
            wait=_ExponentialJitter(
                self.initial, self.maximum, self.multiplier, self.jitter, self._rng
            ),
            stop=stop,
            retry=retry_if_exception(self.retry_if),
            reraise=True,
            **options,
        )


RetryPolicy = Backoff | AsyncRetrying


def as_retrying(policy: RetryPolicy | bool | None) -> tuple[AsyncRetrying, float]:
    """Return ``(AsyncRetrying, healthy_after)`` for what users may pass."""
    if policy is None or policy is True:
        policy = Backoff()
    if isinstance(policy, Backoff):
        return policy.retrying(), policy.healthy_after
    if isinstance(policy, AsyncRetrying):
        return policy, Backoff.healthy_after
    raise TypeError(
        f"retry policy must be a Backoff or a tenacity.AsyncRetrying, not {type(policy).__name__}"
    )


async def connections(
    open_connection: Callable[[], Awaitable[C]],
    retrying: AsyncRetrying,
    *,
    healthy_after: float = 10.0,
    clock: Callable[[], float] | None = None,
    logger: logging.Logger | logging.LoggerAdapter[Any] = logger,
) -> AsyncGenerator[C, None]:
    """Yield connections, reconnecting after failures as ``retrying`` says.

    A new connection is opened when the consumer asks for the next one; by then the
    previous one has normally ended. If it is still open, it is closed (1000) and
    the iteration ends. The iteration also ends quietly when the previous
    connection was closed by this side or by the peer with 1000, and raises the
    error when the policy gives up or the failure is not retryable.

    Each wait is logged at WARNING, as a failed attempt or as a lost connection,
    and giving up at ERROR with the reason (not retryable, and why; or the
    policy's stop condition reached).

    Args:
        open_connection: Opens one connection.
        retrying: The tenacity policy; a copy is used, so it can be shared.
        healthy_after: Seconds a connection must stay open for the retry count to
            start again from the first attempt.
        clock: Current time in seconds (default: the event loop's clock).
        logger: Where to log (default: the ``simple_websocket`` logger).

    Raises:
        Exception: The last error, when the policy stops retrying (tenacity's
            ``RetryError`` unless the policy has ``reraise=True``).
    """
    now = clock or asyncio.get_running_loop().time
    policy = retrying.copy()
    policy.begin()
    state = RetryCallState(policy, fn=None, args=(), kwargs={})
    # The last outcome was an open connection that dropped (not a failed attempt).
    lost = False
    while True:
        try:
            do = await policy.iter(retry_state=state)
        except Exception as exc:
            logger.error("giving up reconnecting: %s", await _give_up_reason(policy, state, exc))
            raise
        if isinstance(do, DoAttempt):
            logger.info("opening connection (attempt %d)", state.attempt_number)
            try:
                ws = await open_connection()
            except BaseException:
                exc_info = sys.exc_info()
                if isinstance(exc_info[1], (asyncio.CancelledError, KeyboardInterrupt)):
                    raise
                state.set_exception(exc_info)  # type: ignore[arg-type]
                lost = False
                continue
            opened = now()
            yield ws
            if ws.connected:
                await ws.close()
            if ws.close_requested or ws.close_reason == 1000:
                return
            if now() - opened >= healthy_after:
                policy = retrying.copy()
                policy.begin()
                state = RetryCallState(policy, fn=None, args=(), kwargs={})
            dropped = ConnectionClosed(ws.close_reason, ws.close_message)
            state.set_exception((ConnectionClosed, dropped, None))
            lost = True
        elif isinstance(do, DoSleep):
            outcome = state.outcome
            error = outcome.exception() if outcome is not None and outcome.failed else None
            if lost:
                logger.warning(
                    "connection lost after %.1f s (%s); reconnecting in %.2f s",
                    now() - opened,
                    error,
                    float(do),
                )
            else:
                logger.warning(
                    "connection attempt %d failed (%s); retrying in %.2f s",
                    state.attempt_number,
                    _describe_error(error),
                    float(do),
                )
            state.prepare_for_next_attempt()
            await policy.sleep(do)  # type: ignore[misc]
        else:
            return


def _describe_error(exc: BaseException | None) -> str:
    """An error as a log line shows it: its type, and its message if it has one."""
    if exc is None:
        return "no error"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


OutboxPolicy = Literal["block", "drop_oldest", "raise"]
#: ``on_connect(ws)``: sync, or async (its awaitable is awaited).
ConnectHook = Callable[["AioClient"], object]
#: ``on_disconnect(exc)``: sync, or async (its awaitable is awaited).
DisconnectHook = Callable[[Disconnected], object]


async def _call(hook: Callable[[Any], object] | None, arg: Any) -> None:
    if hook is not None:
        result = hook(arg)
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            await result


def _disconnect_cause(ws: _Conn, *, idle: bool = False) -> DisconnectCause:
    """Tell why a connection that is closed ended (see :class:`Disconnected`).

    Args:
        ws: The closed connection.
        idle: The connection was failed by the idle check.
    """
    if idle:
        return "idle_timeout"
    if ws.close_reason == CloseCode.INTERNAL_ERROR and ws.close_message == PING_TIMEOUT_REASON:
        return "ping_timeout"
    if ws.close_reason == CloseCode.ABNORMAL_CLOSURE:
        return "network_error"
    return "closed"


class ReconnectingClient:
    """A client connection that reconnects by itself and loses nothing it was handed.

    Created by ``AioClient.connect(url, reconnect=...)``. ``await`` it (or enter it
    with ``async with``) to wait for the first connection.

    Its connections ping by default (see ``AioClient.connect``). With
    ``idle_timeout``, a connection on which no message arrived for that long while
    the application was waiting for one is taken as dead: it is failed with close
    code 1011 (reason ``"idle timeout"``, a close frame is sent and TCP closed at
    once, without waiting for the peer) and the client reconnects. The check runs
    on a timer every ``idle_timeout`` seconds and only compares a message count, so
    a connection is failed between ``idle_timeout`` and twice that after its last
    message, never sooner. While no ``receive()`` waits (the application is busy
    with earlier messages), a connection is not taken as idle.

    Args:
        open_connection: Opens one connection (``AioClient.connect`` passes its
            own).
        retry: The reconnect policy: ``True`` or ``None`` for ``Backoff()``, a
            :class:`Backoff` or a ``tenacity.AsyncRetrying``.
        on_connect: ``(ws)``, sync or async: run on every new connection before
            the outbox is sent.
        on_disconnect: ``(exc)``, sync or async: run after every drop with a
            :class:`~simple_websocket.errors.Disconnected` that says why.
        outbox_size: Messages kept during an outage.
        outbox_policy: ``"block"``, ``"drop_oldest"`` or ``"raise"`` when the outbox
            is full.
        idle_timeout: Seconds without a message after which a connection is taken
            as dead, or ``None``.
        logger: Where to log (a ``logging.Logger``, an adapter or a logger's
            name); default ``simple_websocket``.

    Attributes:
        state: ``"connecting"``, ``"open"``, ``"reconnecting"`` or ``"closed"``.
        attempts: Connection attempts made so far.
        reconnects: Successful connections after the first one.
        dropped: Messages discarded by the ``drop_oldest`` outbox policy.
        connection: The current underlying connection, or ``None``.
        idle_timeout: See above.

    Raises:
        ValueError: An unknown ``outbox_policy``, ``outbox_size`` below 1, or an
            ``idle_timeout`` that is not positive.
        TypeError: An option has the wrong type (a hook that is not callable, a
            policy that is not a ``Backoff`` or an ``AsyncRetrying``, ...).
    """

    def __init__(
        self,
        open_connection: Callable[[], Awaitable[AioClient]],
        retry: RetryPolicy | bool | None = None,
        *,
        on_connect: ConnectHook | None = None,
        on_disconnect: DisconnectHook | None = None,
        outbox_size: int = 1024,
        outbox_policy: OutboxPolicy = "block",
        idle_timeout: float | None = None,
        logger: LoggerLike | None = None,
    ) -> None:
        #: Where the client logs its reconnects and why it gives up.
        self.logger = check_logger(logger)
        check_choice("outbox_policy", outbox_policy, ("block", "drop_oldest", "raise"))
        check_count("outbox_size", outbox_size)
        check_seconds("idle_timeout", idle_timeout)
        check_callable("open_connection", open_connection, optional=False)
        check_callable("on_connect", on_connect)
        check_callable("on_disconnect", on_disconnect)
        self._open = open_connection
        self._retrying, self.healthy_after = as_retrying(retry)
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.outbox_size = outbox_size
        self.outbox_policy = outbox_policy
        self.state = "connecting"
        self.attempts = 0
        self.reconnects = 0
        self.dropped = 0
        self.connection: AioClient | None = None
        self.idle_timeout = idle_timeout
        # The idle check: messages handed out so far, the count at the last check,
        # receive() calls waiting on the connection, and the timer.
        self._received = 0
        self._idle_seen = 0
        self._readers = 0
        self._idle_handle: asyncio.Handle | None = None
        # The connection the idle check failed, if it did.
        self._idle_failed: AioClient | None = None
        self._outbox: deque[Any] = deque()
        self._flush_lock = asyncio.Lock()
        # Subscriptions (made by subscribe()) and the connection their subscribe
        # messages were last all sent on.
        self._router: Router | None = None
        self._subscribed_on: AioClient | None = None
        # Requests waiting for their response (channel.request()), sent again on a
        # new connection: correlation key -> request.
        self._requests: dict[str, _Request] = {}
        # Earlier connections whose buffered messages were not all received yet.
        self._previous: deque[AioClient] = deque()
        self._changed: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._closing = False
        self._opened = False
        self.close_reason = 1000
        self.close_message: str | None = None

    # -- lifecycle -------------------------------------------------------------------

    def _notify(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    async def _wait_change(self, deadline: float | None = None) -> bool:
        loop = asyncio.get_running_loop()
        if self._changed is None:
            self._changed = loop.create_future()
        waiter = self._changed
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            return False
        return True

    async def start(self) -> Self:
        """Start connecting and wait for the first connection.

        Raises:
            Exception: The error that made the policy give up before any connection
                opened.
        """
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            while not self._opened:
                if self.state == "closed":
                    raise self._final_error()
                await self._wait_change()
        except asyncio.CancelledError:
            if not self._opened:
                # Nobody is waiting for this client any more: stop connecting.
                self._closing = True
                self._task.cancel()
            raise
        return self

    def __await__(self) -> Generator[Any, None, Self]:
        return self.start().__await__()

    async def _open_counted(self) -> AioClient:
        """One attempt: open a connection and run ``on_connect`` on it.

        An exception from ``on_connect`` fails the attempt like a failed opening:
        the retry policy classifies it (a ``TimeoutError`` or a retryable close is
        retried; a bug in the hook is not).
        """
        self.attempts += 1
        ws = await self._open()
        try:
            await _call(self.on_connect, ws)
        except BaseException:
            await ws.close(1011, "on_connect failed")
            raise
        return ws

    async def _run(self) -> None:
        first = True
        try:
            async with contextlib.aclosing(
                connections(
                    self._open_counted,
                    self._retrying,
                    healthy_after=self.healthy_after,
                    logger=self.logger,
                )
            ) as attempts:
                async for ws in attempts:
                    if self._closing:
                        await ws.close()
                        break
                    try:
                        await self._serve(ws, first)
                    except Exception as exc:
                        self.logger.error("reconnecting client stopped: %s", _describe_error(exc))
                        raise
                    first = False
                    if self._closing:
                        break
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # Logged already: by connections() when it gave up, or above.
            self._error = exc
            if isinstance(exc, ConnectionClosed):
                self.close_reason, self.close_message = exc.reason, exc.message
            else:
                self.close_reason, self.close_message = 1006, str(exc) or None
        finally:
            last = self.connection
            if last is not None and self._error is None:
                self.close_reason = last.close_reason
                self.close_message = last.close_message
            self.state = "closed"
            self._notify()

    async def _serve(self, ws: AioClient, first: bool) -> None:
        """Run one connection (``on_connect`` already ran): flush the outbox, wait."""
        if self.connection is not None:
            self._previous.append(self.connection)
        self.connection = ws
        if not first:
            self.reconnects += 1
        try:
            # After on_connect (run by the attempt): subscriptions, the requests
            # that got no response, then the outbox.
            if self._router is not None:
                await self._router.connected(ws)
            self._subscribed_on = ws
            for request in list(self._requests.values()):
                if request.sent_on is not None and request.sent_on is not ws:
                    request.sent_on = ws
                    request.sends += 1
                    await ws.send(request.data)
            await self._flush(ws)
        except ConnectionClosed:
            pass
        else:
            # Open even if it already dropped: its messages are still to be received.
            self.state = "open"
            self._opened = True
            self._notify()
            self._start_idle_check(ws)
            try:
                await ws.wait_closed()
            finally:
                self._stop_idle_check()
        if self._closing:
            return
        self.state = "reconnecting"
        self._notify()
        cause = _disconnect_cause(ws, idle=self._idle_failed is ws)
        self._idle_failed = None
        self.logger.info("connection lost (%s, %s); reconnecting", ws.close_reason, cause)
        await _call(self.on_disconnect, Disconnected(ws.close_reason, ws.close_message, cause))

    # -- the idle check ----------------------------------------------------------------
    # A timer per connection, no task: every idle_timeout seconds it compares the
    # count of messages handed out with the count at the previous check. receive()
    # only increments the count, so the hot path reads no clock.

    def _start_idle_check(self, ws: AioClient) -> None:
        if self.idle_timeout is None:
            return
        loop = asyncio.get_running_loop()
        self._idle_seen = self._received
        self._idle_handle = loop.call_at(loop.time() + self.idle_timeout, self._check_idle, ws)

    def _stop_idle_check(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    def _idle_candidate(self, ws: AioClient, seen: int) -> bool | None:
        """``None``: stop checking ``ws``; else whether it looks idle since ``seen``."""
        if ws is not self.connection or not ws.connected or self._closing:
            return None
        # Nobody waiting for a message means the application is busy with earlier
        # ones: that is not the feed's silence.
        return self._received == seen and self._readers > 0

    def _check_idle(self, ws: AioClient) -> None:
        self._idle_handle = None
        idle = self._idle_candidate(ws, self._idle_seen)
        if idle is None:
            return
        if idle:
            # A message that arrived in this same turn of the event loop has woken
            # its reader, which has not run yet: decide after it did.
            loop = asyncio.get_running_loop()
            self._idle_handle = loop.call_soon(self._confirm_idle, ws, self._received)
        else:
            self._start_idle_check(ws)

    def _confirm_idle(self, ws: AioClient, seen: int) -> None:
        self._idle_handle = None
        idle = self._idle_candidate(ws, seen)
        if idle is None:
            return
        if not idle:
            self._start_idle_check(ws)
            return
        self.logger.warning(
            "no message for %s s; failing the connection (1011 %s)",
            self.idle_timeout,
            IDLE_TIMEOUT_REASON,
        )
        self._idle_failed = ws
        # Sends the close frame and closes TCP at once: a dead peer would never
        # answer it, and a live one has nothing to say.
        ws._fail(CloseCode.INTERNAL_ERROR, IDLE_TIMEOUT_REASON)

    async def _flush(self, ws: _Conn) -> None:
        """Send the outbox in order; one flush at a time, each message once."""
        async with self._flush_lock:
            while self._outbox:
                item = self._outbox[0]
                if isinstance(item, _Request):
                    await ws.send(item.data)
                    item.sent_on = ws
                    item.sends += 1
                else:
                    await ws.send(item)
                self._outbox.popleft()
                self._notify()

    @property
    def _flushing(self) -> bool:
        return self._flush_lock.locked()

    # -- the connection interface ----------------------------------------------------

    @property
    def outbox_depth(self) -> int:
        """Messages waiting in the outbox."""
        return len(self._outbox)

    @property
    def latency(self) -> float | None:
        """Round-trip time of the last answered ping on the current connection."""
        return getattr(self.connection, "latency", None)

    @property
    def connected(self) -> bool:
        """``True`` while a connection is open and ready."""
        return self.state == "open" and bool(getattr(self.connection, "connected", False))

    @property
    def close_requested(self) -> bool:
        """``True`` once :meth:`close` was called."""
        return self._closing

    def _final_error(self) -> BaseException:
        if self._error is not None:
            return self._error
        return ConnectionClosed(self.close_reason, self.close_message)

    async def send(self, data: Any) -> None:
        """Send a message now, or after the reconnect if the connection is down.

        Raises:
            OutboxFull: The connection is down, the outbox is full and the policy
                is ``"raise"``.
            ConnectionClosed: The client was closed.
            Exception: The client gave up reconnecting: the error that made it give
                up.
        """
        await self._send(data)

    async def _send(self, data: Any) -> None:
        """:meth:`send` for a message or a :class:`_Request`."""
        if self.state == "closed" or self._closing:
            raise self._final_error()
        ws = self.connection
        if self.state == "open" and not self._outbox and not self._flushing and ws is not None:
            request = data if isinstance(data, _Request) else None
            try:
                await ws.send(data if request is None else request.data)
            except ConnectionClosed:
                pass  # nothing was written: keep it for the next connection
            else:
                if request is not None:
                    request.sent_on = ws
                    request.sends += 1
                return
        while len(self._outbox) >= self.outbox_size:
            if self.outbox_policy == "raise":
                raise OutboxFull(f"outbox full ({self.outbox_size} messages)")
            if self.outbox_policy == "drop_oldest":
                self._outbox.popleft()
                self.dropped += 1
                break
            await self._wait_change()
            if self.state == "closed":
                raise self._final_error()
        self._outbox.append(data)
        if self.state == "open" and not self._flushing and self.connection is not None:
            # The connection came back while we waited for room: flush now.
            with contextlib.suppress(ConnectionClosed):
                await self._flush(self.connection)

    async def receive(self, timeout: float | None = None) -> Message | None:
        """Receive the next message, across reconnects.

        Once subscriptions were made, only the messages no subscription matched.

        Returns:
            The message, or ``None`` when ``timeout`` passed.

        Raises:
            ConnectionClosed: The client was closed, or gave up reconnecting (then
                the error that made it give up is raised instead).
            TypeError: ``timeout`` is not a number or ``None``.
        """
        if timeout is not None:
            check_receive_timeout(timeout)
        router = self._router
        if router is not None:
            return await router.receive(timeout)
        return await self._receive(timeout)

    async def _receive(self, timeout: float | None) -> Message | None:
        """Receive the next message from the connections, in order."""
        # The loop only when there is a deadline: get_running_loop() is a system
        # call on Python 3.11, and this runs for every message.
        loop = None if timeout is None else asyncio.get_running_loop()
        deadline = None if loop is None or timeout is None else loop.time() + timeout
        while True:
            while self._previous:
                # Messages an earlier connection received before it dropped come first.
                try:
                    message = await self._previous[0].receive(0)
                except ConnectionClosed:
                    self._previous.popleft()
                else:
                    if message is not None:
                        self._received += 1
                        return message
                    self._previous.popleft()
            ws = self.connection
            if ws is not None and (self.state == "open" or not ws.connected):
                remaining = (
                    None if loop is None or deadline is None else max(0.0, deadline - loop.time())
                )
                self._readers += 1
                try:
                    message = await ws.receive(remaining)
                except ConnectionClosed:
                    if self.state == "closed":
                        raise self._final_error() from None
                else:
                    if message is not None:
                        self._received += 1
                        return message
                    if loop is None or deadline is None:
                        return message
                    if loop.time() >= deadline:
                        return None
                    continue
                finally:
                    self._readers -= 1
            if self.state == "closed":
                raise self._final_error()
            if self.connection is ws and not await self._wait_change(deadline):
                return None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        """Next message, across reconnects.

        Ends quietly after :meth:`close` or when the server closed with 1000 or
        1001 and the client did not reconnect; raises the error when the client
        gave up reconnecting.
        """
        try:
            message = await self.receive()
        except ConnectionClosed as exc:
            if self._error is None and (self._closing or exc.reason in (1000, 1001)):
                raise StopAsyncIteration from None
            raise
        assert message is not None
        return message

    async def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Stop reconnecting and close the current connection.

        Messages still in the outbox are sent first when a connection is open;
        otherwise they are discarded (see :attr:`outbox_depth`).

        Raises:
            ValueError: ``reason`` is a code that may not be sent (RFC 6455 7.4).
        """
        if reason is not None:
            check_close_code(reason)
        if self._closing:
            if self._task is not None:
                await asyncio.wait({self._task})
            return
        self._closing = True
        self._stop_idle_check()
        ws = self.connection
        if ws is not None and self.state == "open":
            with contextlib.suppress(ConnectionClosed):
                await self._flush(ws)
        if ws is not None:
            await ws.close(reason, message)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.state = "closed"
        self.close_reason = reason or 1000
        self.close_message = message
        self._notify()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close with 1000, or 1011 when the block raised."""
        await self.close(1011 if exc_type is not None else None)

    # -- subscriptions and requests ---------------------------------------------------

    @overload
    def subscribe(
        self, receive_type: type[T], **options: Unpack[SubscribeOptions]
    ) -> Subscription[T]: ...

    @overload
    def subscribe(
        self, receive_type: Any, **options: Unpack[SubscribeOptions]
    ) -> Subscription[Any]: ...

    def subscribe(
        self, receive_type: Any, **options: Unpack[SubscribeOptions]
    ) -> Subscription[Any]:
        """Make a subscription: a typed stream of matching messages, resumed on reconnects.

        Its ``subscribe(last)`` message is sent when it opens (``async with``,
        iteration or ``start()``) and again on every new connection, after
        ``on_connect`` and before the outbox. See
        :meth:`simple_websocket.subscriptions.Router.subscribe` for the options;
        ``idle_timeout`` there makes a silent feed count as a dead connection.

        Raises:
            ValueError: An option has an invalid value.
        """
        router = self._router
        if router is None:
            from .subscriptions import Router

            router = self._router = Router(
                self._receive,
                self._subscription_target,
                self._normal_end,
                poll=self._poll,
                on_idle=self._feed_idle,
            )
        return router.subscribe(receive_type, **options)

    def _poll(self) -> Message | None:
        """A message the current connection already received, or ``None``.

        While an earlier connection may still hold messages, ``None``: those are
        read by :meth:`_receive`, in order.
        """
        ws = self.connection
        if self._previous or ws is None:
            return None
        message = ws._poll()
        if message is not None:
            self._received += 1
        return message

    def _subscription_target(self) -> AioClient | None:
        """The connection to send subscribe messages on now, or ``None``."""
        ws = self.connection
        if ws is not None and ws is self._subscribed_on and ws.connected:
            return ws
        return None

    def _normal_end(self, exc: BaseException) -> bool:
        return self._error is None and (
            self._closing or (isinstance(exc, ConnectionClosed) and exc.reason in (1000, 1001))
        )

    def _feed_idle(self, subscription: Subscription[Any]) -> None:
        ws = self.connection
        if ws is None or not ws.connected or self._closing:
            return
        self.logger.warning(
            "no message for %s s on %r; failing the connection (1011 %s)",
            subscription.idle_timeout,
            subscription,
            IDLE_TIMEOUT_REASON,
        )
        self._idle_failed = ws
        ws._fail(CloseCode.INTERNAL_ERROR, IDLE_TIMEOUT_REASON)

    async def send_request(self, key: str, data: Any) -> None:
        """Send a request, and again on each new connection until it is answered.

        It is sent unchanged until :meth:`request_done` is called for ``key``.

        A request whose response has not arrived when its connection drops is
        sent again after the reconnect (at least once: the server must
        deduplicate by the request's id). ``channel.request()`` uses it.

        Raises:
            OutboxFull: As :meth:`send`.
            ConnectionClosed: The client was closed.
        """
        request = _Request(data)
        self._requests[key] = request
        try:
            await self._send(request)
        except BaseException:
            self._requests.pop(key, None)
            raise

    def request_done(self, key: str) -> int:
        """Stop sending the request ``key`` again; return how often it was sent."""
        request = self._requests.pop(key, None)
        return 0 if request is None else request.sends

    @overload
    def typed(
        self, receive_type: type[T], **options: Unpack[ChannelOptions]
    ) -> TypedChannel[T]: ...

    @overload
    def typed(self, receive_type: Any, **options: Unpack[ChannelOptions]) -> TypedChannel[Any]: ...

    def typed(self, receive_type: Any, **options: Unpack[ChannelOptions]) -> TypedChannel[Any]:
        """Return a typed channel over this client; see ``simple_websocket.channels.typed``.

        To type checkers, a class ``X`` gives a ``TypedChannel[X]`` and any other form
        a ``TypedChannel[Any]``.
        """
        from .channels import typed

        return typed(self, receive_type, **options)

    def stream(self) -> Stream[Message]:
        """Return an aiostream stream of messages across reconnects."""
        from .operators import messages

        return messages(self)
