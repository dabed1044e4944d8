"""aiostream operators for WebSocket connections and typed channels.

Only what aiostream lacks for this domain is here; everything else (``pipe.map``,
``pipe.filter``, ``pipe.take``, ``pipe.timeout``, ``pipe.chunks``,
``stream.merge``, ``stream.zip``, ...) is aiostream's own and works on these
streams unchanged.

* :func:`messages` -- a source: the messages of a connection or channel.
* :func:`send_to` -- sends every item to a connection and passes it on; use it as
  a sink (``await (xs | send_to.pipe(ws))``) or in the middle of a pipeline.
* :func:`decode` / :func:`encode` -- apply a codec.
* :func:`batch` -- lists of up to ``max_size`` items, emitted at the latest
  ``max_delay`` seconds after their first item.
* :func:`idle_timeout` -- fail with :class:`IdleTimeout` when no item arrives for a
  while.

Every operator pulls one item at a time, so a slow consumer at the end of a pipe
makes the connection stop reading (its bounded queue fills and reading pauses):
there is no unbounded buffer anywhere in a pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar, cast

from aiostream import operator, pipable_operator, streamcontext
from aiostream.stream import timeout as _timeout

from .codecs import Codec
from .errors import DecodeError, IdleTimeout, SimpleWebsocketError

__all__ = ["IdleTimeout", "batch", "decode", "encode", "idle_timeout", "messages", "send_to"]

logger = logging.getLogger("simple_websocket")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")

if TYPE_CHECKING:  # pragma: no cover
    from aiostream import Stream


class _Sender(Protocol):
    async def send(self, data: Any) -> None: ...  # pragma: no cover


class _Closable(Protocol[T_co]):
    def __aiter__(self) -> AsyncIterator[T_co]: ...  # pragma: no cover

    async def close(self, reason: int | None = None, message: str | None = None) -> None: ...


class _Messages(Protocol):
    # What type checkers see of `messages`: aiostream's decorator cannot carry the
    # item type of a generic function through, so it is spelled out here.
    def __call__(self, connection: _Closable[T], *, close: bool = False) -> Stream[T]: ...

    def raw(self, connection: _Closable[T], *, close: bool = False) -> AsyncIterator[T]: ...


class _SameItems(Protocol[P]):
    # A pipable operator whose items keep their type (the source's item type).
    def __call__(
        self, source: AsyncIterable[T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Stream[T]: ...

    def raw(
        self, source: AsyncIterable[T], /, *args: P.args, **kwargs: P.kwargs
    ) -> AsyncIterator[T]: ...

    def pipe(
        self, *args: P.args, **kwargs: P.kwargs
    ) -> Callable[[AsyncIterable[T]], Stream[T]]: ...


class _ListsOfItems(Protocol[P]):
    # A pipable operator that groups the source's items into lists.
    def __call__(
        self, source: AsyncIterable[T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Stream[list[T]]: ...

    def raw(
        self, source: AsyncIterable[T], /, *args: P.args, **kwargs: P.kwargs
    ) -> AsyncIterator[list[T]]: ...

    def pipe(
        self, *args: P.args, **kwargs: P.kwargs
    ) -> Callable[[AsyncIterable[T]], Stream[list[T]]]: ...


class _Decode(Protocol):
    # decode: the items are what the codec decodes to.
    def __call__(
        self,
        source: AsyncIterable[str | bytes],
        codec: Codec[T],
        *,
        on_invalid: Literal["raise", "skip"] = "raise",
    ) -> Stream[T]: ...

    def raw(
        self,
        source: AsyncIterable[str | bytes],
        codec: Codec[T],
        *,
        on_invalid: Literal["raise", "skip"] = "raise",
    ) -> AsyncIterator[T]: ...

    def pipe(
        self, codec: Codec[T], *, on_invalid: Literal["raise", "skip"] = "raise"
    ) -> Callable[[AsyncIterable[str | bytes]], Stream[T]]: ...


def _source(func: Callable[..., AsyncIterator[Any]]) -> _Messages:
    return cast("_Messages", operator(func))


def _same_items(
    func: Callable[Concatenate[AsyncIterable[Any], P], AsyncIterator[Any]],
) -> _SameItems[P]:
    return cast("_SameItems[P]", pipable_operator(func))


def _decoding(func: Callable[..., AsyncIterator[Any]]) -> _Decode:
    return cast("_Decode", pipable_operator(func))


def _lists_of_items(
    func: Callable[Concatenate[AsyncIterable[Any], P], AsyncIterator[list[Any]]],
) -> _ListsOfItems[P]:
    return cast("_ListsOfItems[P]", pipable_operator(func))


@_source
async def messages(connection: _Closable[T], *, close: bool = False) -> AsyncIterator[T]:
    """Generate the messages of a connection (or typed channel).

    Its items have the type the connection's iteration yields: ``str | bytes`` for
    a connection, the channel's type for a typed channel.

    The stream ends when the connection closes normally (1000 or 1001, or after
    ``close()`` was called locally) and raises ``ConnectionClosed`` otherwise.
    Leaving the stream early does not close the connection unless ``close`` is true.
    """
    try:
        async for message in connection:
            yield message
    finally:
        if close:
            await connection.close()


@_same_items
async def send_to(source: AsyncIterable[T], connection: _Sender) -> AsyncIterator[T]:
    """Send every item of ``source`` to ``connection``, then pass it on.

    Each ``send`` completes (with write backpressure) before the next item is
    pulled. ``await (xs | send_to.pipe(ws))`` runs the pipeline and returns the last
    item sent.
    """
    async with streamcontext(source) as streamer:
        async for item in streamer:
            await connection.send(item)
            yield item


@_decoding
async def decode(
    source: AsyncIterable[str | bytes],
    codec: Codec[T],
    *,
    on_invalid: Literal["raise", "skip"] = "raise",
) -> AsyncIterator[T]:
    """Decode every message with ``codec``.

    The items have the codec's type (``PydanticCodec(Reading)`` gives ``Reading``
    items).

    Raises:
        DecodeError: A message failed decoding (with ``on_invalid="raise"``; with
            ``"skip"`` it is logged at WARNING and skipped).
    """
    async with streamcontext(source) as streamer:
        async for data in streamer:
            try:
                yield codec.decode(data)
            except DecodeError as exc:
                if on_invalid == "raise":
                    raise
                logger.warning("skipped invalid message: %s", exc)


@pipable_operator
async def encode(source: AsyncIterable[Any], codec: Codec[Any]) -> AsyncIterator[str | bytes]:
    """Encode every item with ``codec``.

    Raises:
        EncodeError: An item cannot be encoded.
    """
    async with streamcontext(source) as streamer:
        async for item in streamer:
            yield codec.encode(item)


@_lists_of_items
async def batch(
    source: AsyncIterable[T], max_size: int, max_delay: float | None = None
) -> AsyncIterator[list[T]]:
    """Group items into lists of at most ``max_size``.

    A list is emitted when it is full, or ``max_delay`` seconds after its first
    item arrived, whichever comes first (never empty). The last, partial list is
    emitted when the source ends.
    """
    if max_size < 1:
        raise ValueError("max_size must be at least 1")
    loop = asyncio.get_running_loop()
    async with streamcontext(source) as streamer:
        pending: asyncio.Future[T] | None = None
        items: list[T] = []
        deadline: float | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(streamer))
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait({pending}, timeout=timeout)
                if done:
                    try:
                        item = pending.result()
                    except StopAsyncIteration:
                        pending = None
                        break
                    pending = None
                    items.append(item)
                    if max_delay is not None and len(items) == 1:
                        deadline = loop.time() + max_delay
                    if len(items) < max_size:
                        continue
                # Full, or the first item's max_delay passed.
                out, items, deadline = items, [], None
                yield out
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
        if items:
            yield items


@_same_items
async def idle_timeout(source: AsyncIterable[T], seconds: float) -> AsyncIterator[T]:
    """Pass items on; raise :class:`IdleTimeout` if none arrives for ``seconds``.

    This is aiostream's ``timeout`` with an error that says what happened.
    """
    try:
        limited: AsyncIterator[T] = _timeout.raw(source, seconds)  # type: ignore[arg-type]
        async with streamcontext(limited) as streamer:
            async for item in streamer:
                yield item
    except TimeoutError as exc:
        if isinstance(exc, SimpleWebsocketError):
            raise
        raise IdleTimeout(seconds) from exc
