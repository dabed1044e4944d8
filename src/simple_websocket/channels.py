"""Typed message channels: pydantic-validated objects over a WebSocket connection.

``ws.typed(ServerEvent)`` wraps any async connection (client, server, ASGI, or
anything with ``send``/``receive``/``close``) in a :class:`TypedChannel`:
``await channel.send(obj)``, ``await channel.receive()``, ``async for event in
channel``, ``async with``, ``channel.stream()`` and ``await channel.request(msg)``.

Reading is done by whichever caller needs a message (``receive``, iteration or a
pending ``request``); one caller reads at a time and the others wait for it, so
there is no background task and messages keep their order. Messages that are not
the response to a pending request go to a small inbox consumed by ``receive`` and
iteration. When the inbox is empty, no other caller is reading and no request is
pending, ``receive`` and iteration decode the message they read and return it
directly, which costs about what ``Model.model_validate_json(await ws.receive())``
does.

To type checkers a channel is generic over what it receives: ``ws.typed(Tick)`` is a
``TypedChannel[Tick]``, so ``await channel.receive()`` is a ``Tick | None`` and
``async for tick in channel`` yields ``Tick``. A receive type that is not a class (an
``Annotated`` discriminated union, say) gives a ``TypedChannel[Any]``, which can be
annotated as what it holds: ``channel: TypedChannel[Trade | Quote] = ws.typed(Event)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, Self, TypedDict, overload

from pydantic import (
    BaseModel,
    PydanticSchemaGenerationError,
    PydanticUndefinedAnnotation,
    ValidationError,
)
from typing_extensions import TypeVar

from .codecs import Codec, PydanticCodec
from .errors import ConnectionClosed, DecodeError, RequestTimeout
from .sansio.options import check_count, check_receive_timeout, describe

if TYPE_CHECKING:  # pragma: no cover
    from aiostream import Stream

__all__ = ["ChannelOptions", "MessageConnection", "TypedChannel", "schema_errors", "typed"]

logger = logging.getLogger("simple_websocket")

#: What a channel receives. Covariant: a ``TypedChannel[Tick]`` is also a
#: ``TypedChannel[Tick | Quote]``. A bare ``TypedChannel`` is a ``TypedChannel[Any]``.
R_co = TypeVar("R_co", covariant=True, default=Any)
T = TypeVar("T")
InvalidPolicy = Literal["raise", "skip"] | Callable[[DecodeError], Any]


def check_invalid_policy(policy: InvalidPolicy) -> None:
    """Check an ``on_invalid`` value.

    Raises:
        ValueError: It is not ``"raise"``, ``"skip"`` or a callable.
    """
    if not (policy in ("raise", "skip") or callable(policy)):
        raise ValueError(f"on_invalid must be 'raise', 'skip' or a callable, not {policy!r}")


def apply_invalid_policy(policy: InvalidPolicy, error: DecodeError) -> None:
    """Apply an ``on_invalid`` policy to a message that failed decoding.

    Returns only when the message is to be skipped (``"skip"``, after logging it,
    or a callable, after calling it).

    Raises:
        DecodeError: ``error`` itself, with ``"raise"``.
    """
    if policy == "raise":
        raise error
    if policy == "skip":
        logger.warning("skipped invalid message: %s", error)
    else:
        assert callable(policy)
        policy(error)


class ChannelOptions(TypedDict, total=False):
    """The keyword options of ``typed()`` besides the receive type (see :func:`typed`)."""

    send: Any
    codec: Codec[Any] | None
    on_invalid: InvalidPolicy
    id_field: str
    binary: bool
    max_inbox: int | None


_TIMEOUT = object()
_SKIP = object()


class MessageConnection(Protocol):
    """The part of a connection a channel uses."""

    async def send(self, data: Any) -> None:
        """Send one message."""

    async def receive(self, timeout: float | None = None) -> str | bytes | None:
        """Receive one message, or ``None`` on timeout."""

    async def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Close the connection."""

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """Iterate over messages."""
        ...  # pragma: no cover


@contextlib.contextmanager
def schema_errors(name: str, type_: Any) -> Iterator[None]:
    """Turn pydantic's refusal of ``type_`` into a ``TypeError`` that names ``name``.

    A string is refused before pydantic sees it: pydantic would take ``"str"`` as a
    forward reference and resolve it against whatever namespace it finds.

    Raises:
        TypeError: ``type_`` is a string, or pydantic cannot build a validator for it
            (a plain class that is not a model, a dataclass or a standard type).
    """
    if isinstance(type_, str):
        raise TypeError(
            f"{name} must be a type, not the string {type_!r}: pass the type itself "
            f"(for instance str, not 'str')"
        )
    try:
        yield
    except PydanticSchemaGenerationError as exc:
        # pydantic's own advice (arbitrary_types_allowed) is about models' fields;
        # it does not apply to a channel's type. The error stays the cause.
        raise TypeError(
            f"{name}={type_!r} is not a type pydantic can validate: use a pydantic "
            "model, a dataclass, a TypedDict or a standard type (int, list[str], ...)"
        ) from exc
    except PydanticUndefinedAnnotation as exc:
        raise TypeError(f"{name}={type_!r} refers to an undefined name: {exc}") from exc


def _wake(waiter: asyncio.Future[Any], value: Any = None) -> None:
    if not waiter.done():
        waiter.set_result(value)


class TypedChannel(Generic[R_co]):
    """Typed messages over a WebSocket connection.

    Create one with ``ws.typed(receive_type, ...)`` or :func:`typed`. The type
    parameter is what :meth:`receive`, iteration and :meth:`request` return.

    Attributes:
        ws: The underlying connection.
        receive_codec: Decodes received messages.
        send_codec: Encodes sent objects.
        on_invalid: What happens to a message that fails decoding: ``"raise"``
            (``receive`` raises :class:`DecodeError`; the connection stays open and
            the next call receives the next message), ``"skip"`` (logged at
            WARNING on the ``simple_websocket`` logger and skipped), or a plain
            (not async) callable that gets the :class:`DecodeError` (the message
            is then skipped).
        id_field: The correlation field of :meth:`request`.
        max_inbox: Messages buffered for ``receive()`` while requests read ahead
            looking for their responses (1024 by default). When it is full, reading
            waits for ``receive()`` or iteration to take some, so a request whose
            response is behind more than ``max_inbox`` unconsumed messages times out.
    """

    def __init__(
        self,
        ws: MessageConnection,
        receive_codec: Codec[R_co],
        send_codec: Codec[Any],
        *,
        on_invalid: InvalidPolicy = "raise",
        id_field: str = "id",
        max_inbox: int | None = None,
    ) -> None:
        check_invalid_policy(on_invalid)
        if not isinstance(id_field, str) or not id_field:
            raise TypeError(f"id_field must be a non-empty str, not {describe(id_field)}")
        check_count("max_inbox", max_inbox, optional=True)
        self.ws = ws
        self.receive_codec = receive_codec
        self.send_codec = send_codec
        self.on_invalid = on_invalid
        self.id_field = id_field
        self.max_inbox = max_inbox or 1024
        # Decoded messages (or their DecodeError) not yet returned, oldest first.
        self._inbox: deque[tuple[bool, Any]] = deque()
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._reading = False
        self._watchers: list[asyncio.Future[Any]] = []
        self._ids = itertools.count(1)
        # Requests a reconnecting client sent more than once, answered already: key ->
        # how many more responses may still come (dropped, the caller got one).
        self._repeats: dict[str, int] = {}

    # -- sending -------------------------------------------------------------------

    async def send(self, obj: Any) -> None:
        """Encode ``obj`` and send it.

        Raises:
            EncodeError: ``obj`` is not of the channel's send type (a ``TypeError``);
                nothing was sent.
            ConnectionClosed: The connection is closed.
        """
        await self.ws.send(self.send_codec.encode(obj))

    # -- reading -------------------------------------------------------------------

    def _notify(self) -> None:
        if self._watchers:
            watchers = self._watchers
            self._watchers = []
            for waiter in watchers:
                _wake(waiter)

    async def _wait_change(self, deadline: float | None) -> bool:
        """Wait until the current reader finished a read; ``False`` at the deadline."""
        loop = asyncio.get_running_loop()
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

    async def _pull(self, deadline: float | None, iterate: bool = False) -> bool:
        """Read one message (or wait for the reader). ``False`` on timeout.

        Raises:
            ConnectionClosed: The connection is closed (every pending request fails
                with it too).
            StopAsyncIteration: With ``iterate``, the connection closed normally.
        """
        if self._reading:
            return await self._wait_change(deadline)
        self._reading = True
        try:
            if iterate:
                raw: str | bytes | None = await self.ws.__aiter__().__anext__()
            else:
                timeout = (
                    None
                    if deadline is None
                    else max(0.0, deadline - asyncio.get_running_loop().time())
                )
                raw = await self.ws.receive(timeout)
        except StopAsyncIteration:
            self._fail_pending(self._closed_normally())
            raise
        except ConnectionClosed as exc:
            self._fail_pending(exc)
            raise
        finally:
            self._reading = False
            self._notify()
        if raw is None:
            return False
        self._dispatch(raw)
        return True

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            obj = self.receive_codec.decode(raw)
        except DecodeError as exc:
            if not (self._pending and self._fail_request(raw, exc)):
                self._inbox.append((False, exc))
            return
        if self._pending or self._repeats:
            key = self._key(self._get_id(obj))
            if key is not None:
                future = self._pending.pop(key, None)
                if future is not None and not future.done():
                    future.set_result(obj)
                    return
                repeats = self._repeats.get(key)
                if repeats is not None:
                    # Another answer to a request sent again after a reconnect.
                    if repeats > 1:
                        self._repeats[key] = repeats - 1
                    else:
                        del self._repeats[key]
                    return
        self._inbox.append((True, obj))

    def _fail_request(self, raw: str | bytes, error: DecodeError) -> bool:
        """Fail the pending request an invalid message answers, if its id says so.

        A response that does not validate would otherwise leave its request
        waiting for the whole timeout. Returns ``True`` when a request took it.
        """
        try:
            data = json.loads(raw)
        except ValueError:
            return False
        key = self._key(data.get(self.id_field)) if isinstance(data, dict) else None
        future = None if key is None else self._pending.pop(key, None)
        if future is None or future.done():
            return False
        future.set_exception(error)
        return True

    def _closed_normally(self) -> ConnectionClosed:
        """Return the error pending requests fail with when iteration ends."""
        return ConnectionClosed(
            getattr(self.ws, "close_reason", 1000), getattr(self.ws, "close_message", None)
        )

    def _fail_pending(self, exc: ConnectionClosed) -> None:
        pending = self._pending
        self._pending = {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionClosed(exc.reason, exc.message))

    def _take(self) -> Any:
        """Return the oldest inbox item, applying ``on_invalid`` (``_SKIP`` if skipped)."""
        ok, value = self._inbox.popleft()
        self._notify()  # room in the inbox: a request waiting for it may read on
        if ok:
            return value
        self._invalid(value)
        return _SKIP

    def _invalid(self, error: DecodeError) -> None:
        """Apply the ``on_invalid`` policy to a message that failed decoding.

        Returns only when the message is to be skipped (``"skip"``, after logging
        it, or a callable, after calling it).

        Raises:
            DecodeError: ``error`` itself, with ``on_invalid="raise"``.
        """
        apply_invalid_policy(self.on_invalid, error)

    def _direct(self, raw: str | bytes) -> Any:
        """Decode a message read on the fast path of ``receive`` or iteration.

        Returns the decoded object, or ``_SKIP`` when there is none to return: the
        message failed decoding and the policy skips it, or a request started while
        it was being read (the message may be its response, so it takes the
        request-matching route and lands in the inbox if it is not), or it may be
        a repeated answer to a request sent twice.

        Raises:
            DecodeError: With ``on_invalid="raise"``, the message failed decoding.
        """
        if self._pending or self._repeats:
            self._dispatch(raw)
            return _SKIP
        try:
            return self.receive_codec.decode(raw)
        except DecodeError as exc:
            error = exc
        # Out of the handler, as when the error comes from the inbox.
        self._invalid(error)
        return _SKIP

    async def receive(self, timeout: float | None = None) -> R_co | None:
        """Receive the next message as an instance of the channel's type.

        Args:
            timeout: Seconds to wait; ``None`` waits as long as it takes, ``0`` only
                returns what is already buffered.

        Returns:
            The decoded message, or ``None`` when ``timeout`` passed.

        Raises:
            DecodeError: With ``on_invalid="raise"``, the next message failed
                decoding; the connection stays open.
            ConnectionClosed: The connection is closed.
            TypeError: ``timeout`` is not a number or ``None``.

        Cancelling ``receive()`` loses no message.
        """
        if timeout is not None:
            check_receive_timeout(timeout)
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        if not self._inbox and not self._reading:
            # Fast path: nothing is buffered and no other caller is reading, so this
            # call becomes the reader and decodes the message itself, without going
            # through the inbox. It does what one turn of the loop below would do:
            # same reader flag, same wake-ups, same failure of pending requests.
            self._reading = True
            try:
                raw = await self.ws.receive(None if timeout is None else max(0.0, timeout))
            except ConnectionClosed as exc:
                self._fail_pending(exc)
                raise
            finally:
                self._reading = False
                if self._watchers:
                    self._notify()
            if raw is not None:
                value = self._direct(raw)
                if value is not _SKIP:
                    return value  # type: ignore[no-any-return]
            elif deadline is not None:
                return None
        while True:
            while self._inbox:
                value = self._take()
                if value is not _SKIP:
                    return value  # type: ignore[no-any-return]
            progressed = await self._pull(deadline)
            if not progressed and not self._inbox and deadline is not None:
                return None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> R_co:
        """Return the next message; ends quietly when the connection closes normally.

        Raises:
            StopAsyncIteration: The connection closed normally (pending requests
                fail with :class:`ConnectionClosed`).
            DecodeError: With ``on_invalid="raise"``, the next message failed
                decoding; iteration may go on with the next one.
            ConnectionClosed: The connection closed abnormally.
        """
        if not self._inbox and not self._reading:
            # Fast path, as in receive(): become the reader and decode directly.
            self._reading = True
            try:
                raw = await self.ws.__aiter__().__anext__()
            except StopAsyncIteration:
                self._fail_pending(self._closed_normally())
                raise
            except ConnectionClosed as exc:
                self._fail_pending(exc)
                raise
            finally:
                self._reading = False
                if self._watchers:
                    self._notify()
            if raw is not None:
                value = self._direct(raw)
                if value is not _SKIP:
                    return value  # type: ignore[no-any-return]
        while True:
            while self._inbox:
                value = self._take()
                if value is not _SKIP:
                    return value  # type: ignore[no-any-return]
            await self._pull(None, iterate=True)

    def stream(self) -> Stream[R_co]:
        """Return an ``aiostream`` stream of this channel's messages.

        Closing the stream early does not close the connection.
        """
        from aiostream import stream

        return stream.iterate(self)

    # -- request/response ----------------------------------------------------------

    def _get_id(self, obj: Any) -> Any:
        if isinstance(obj, dict):
            return obj.get(self.id_field)
        return getattr(obj, self.id_field, None)

    @staticmethod
    def _key(value: Any) -> str | None:
        return None if value is None else str(value)

    def _with_id(self, message: Any) -> tuple[Any, Any]:
        current = self._get_id(message)
        if current is not None:
            return message, current
        new_id = next(self._ids)
        field = self.id_field
        if isinstance(message, dict):
            return {**message, field: new_id}, new_id
        if isinstance(message, BaseModel):
            if field not in type(message).model_fields:
                raise TypeError(
                    f"{type(message).__name__} has no field {field!r} to correlate a "
                    "response with; add one or choose another id_field"
                )
            data = message.model_dump()
            for candidate in (new_id, str(new_id)):
                try:
                    return type(message).model_validate({**data, field: candidate}), candidate
                except ValidationError:
                    continue
            raise TypeError(f"cannot set {field!r} on {type(message).__name__}")
        if dataclasses.is_dataclass(message) and not isinstance(message, type):
            return dataclasses.replace(message, **{field: new_id}), new_id
        raise TypeError(
            f"cannot set the correlation field {field!r} on a {type(message).__name__}; "
            "give the message an id"
        )

    async def request(self, message: Any, *, timeout: float | None = None) -> R_co:
        """Send ``message`` and return the response with the same correlation id.

        The id is read from ``message``'s ``id_field``; when it is missing or
        ``None`` a fresh one is set on a copy. Other messages received meanwhile
        stay available to ``receive()`` and iteration, in order. Several requests
        may be in flight at once.

        Raises:
            RequestTimeout: No response within ``timeout`` seconds (a
                ``TimeoutError``); a late response is then received as an ordinary
                message.
            DecodeError: The response (a message carrying the request's id) does
                not validate.
            ConnectionClosed: The connection closed before the response arrived.
            EncodeError: ``message`` cannot be encoded; nothing was sent.

        Over a reconnecting client, a request whose response has not arrived when
        the connection drops is sent again, with the same id, on the next
        connection (at least once: the server must deduplicate requests by id), and
        this returns exactly one response; ``timeout`` covers the whole wait.

        While requests wait, at most ``max_inbox`` other messages are buffered;
        beyond that reading waits for ``receive()`` or iteration to take some.
        """
        message, request_id = self._with_id(message)
        key = self._key(request_id)
        assert key is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[key] = future
        deadline = None if timeout is None else loop.time() + timeout
        send_request: Callable[[str, Any], Awaitable[None]] | None = getattr(
            self.ws, "send_request", None
        )
        try:
            if send_request is None:
                await self.send(message)
            else:
                await send_request(key, self.send_codec.encode(message))
            while not future.done():
                if len(self._inbox) >= self.max_inbox and not self._reading:
                    progressed = await self._wait_change(deadline)
                else:
                    progressed = await self._pull(deadline)
                if future.done():
                    break
                if not progressed and deadline is not None and loop.time() >= deadline:
                    raise RequestTimeout(request_id, timeout or 0.0)
            return future.result()  # type: ignore[no-any-return]
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]
            if send_request is not None:
                sends: int = self.ws.request_done(key)  # type: ignore[attr-defined]
                if sends > 1 and future.done() and not future.cancelled():
                    self._remember_repeats(key, sends - 1)

    def _remember_repeats(self, key: str, count: int) -> None:
        repeats = self._repeats
        repeats[key] = count
        if len(repeats) > 1024:
            del repeats[next(iter(repeats))]  # the oldest

    # -- closing -------------------------------------------------------------------

    async def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Close the underlying connection."""
        await self.ws.close(reason, message)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the connection with 1000, or 1011 when the block raised."""
        if exc_type is None:
            await self.ws.close()
        else:
            await self.ws.close(1011, "Unexpected error")


@overload
def typed(
    ws: MessageConnection,
    receive_type: type[T],
    *,
    send: Any = None,
    codec: Codec[Any] | None = None,
    on_invalid: InvalidPolicy = "raise",
    id_field: str = "id",
    binary: bool = False,
    max_inbox: int | None = None,
) -> TypedChannel[T]: ...


@overload
def typed(
    ws: MessageConnection,
    receive_type: Any,
    *,
    send: Any = None,
    codec: Codec[Any] | None = None,
    on_invalid: InvalidPolicy = "raise",
    id_field: str = "id",
    binary: bool = False,
    max_inbox: int | None = None,
) -> TypedChannel[Any]: ...


def typed(
    ws: MessageConnection,
    receive_type: Any,
    *,
    send: Any = None,
    codec: Codec[Any] | None = None,
    on_invalid: InvalidPolicy = "raise",
    id_field: str = "id",
    binary: bool = False,
    max_inbox: int | None = None,
) -> TypedChannel[Any]:
    """Wrap ``ws`` in a :class:`TypedChannel`.

    Args:
        ws: An async connection.
        receive_type: The type of received messages (anything a pydantic
            ``TypeAdapter`` accepts). Ignored for decoding when ``codec`` is given.
        send: The type of sent messages; objects of another type are refused with
            :class:`~simple_websocket.errors.EncodeError`. ``None`` accepts any
            model, dataclass or JSON-compatible value.
        codec: A codec used in both directions instead of pydantic.
        on_invalid: ``"raise"``, ``"skip"`` or a callable; see :class:`TypedChannel`.
        id_field: The correlation field used by :meth:`TypedChannel.request`.
        binary: Send JSON in binary frames instead of text frames.
        max_inbox: See :class:`TypedChannel`.

    Returns:
        A ``TypedChannel[X]`` when ``receive_type`` is a class ``X`` (a model, a
        dataclass, a ``TypedDict``, ``int``, ``list[X]``...); a
        ``TypedChannel[Any]`` for any other form (an ``Annotated`` union, say),
        which may be annotated with the type it stands for.

    Raises:
        ValueError: ``on_invalid`` is not ``"raise"``, ``"skip"`` or a callable, or
            ``max_inbox`` is below 1.
        TypeError: ``receive_type`` or ``send`` is not a type pydantic can
            validate (a string such as ``"str"`` included: pass the type itself),
            ``codec`` has no ``encode`` and ``decode`` methods, or another option
            has the wrong type.
    """
    if not isinstance(binary, bool):
        raise TypeError(f"binary must be a bool, not {describe(binary)}")
    if codec is not None:
        if not (
            callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None))
        ):
            raise TypeError(
                f"codec must have encode(obj) and decode(data) methods, not {describe(codec)}"
            )
        return TypedChannel(
            ws, codec, codec, on_invalid=on_invalid, id_field=id_field, max_inbox=max_inbox
        )
    with schema_errors("receive_type", receive_type):
        receive_codec: Codec[Any] = PydanticCodec(receive_type, binary=binary)
    with schema_errors("send", send):
        send_codec: Codec[Any] = PydanticCodec(Any if send is None else send, binary=binary)
    return TypedChannel(
        ws,
        receive_codec,
        send_codec,
        on_invalid=on_invalid,
        id_field=id_field,
        max_inbox=max_inbox,
    )
