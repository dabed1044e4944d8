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
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Literal, Protocol, TypeVar

from aiostream import operator, pipable_operator, streamcontext
from aiostream.stream import timeout as _timeout

from .codecs import Codec
from .errors import DecodeError, SimpleWebsocketError

__all__ = ["IdleTimeout", "batch", "decode", "encode", "idle_timeout", "messages", "send_to"]

logger = logging.getLogger("simple_websocket")

T = TypeVar("T")


class _Sender(Protocol):
    async def send(self, data: Any) -> None: ...  # pragma: no cover


class _Closable(Protocol):
    def __aiter__(self) -> AsyncIterator[Any]: ...  # pragma: no cover

    async def close(self, reason: int | None = None, message: str | None = None) -> None: ...


class IdleTimeout(SimpleWebsocketError, TimeoutError):
    """No item arrived within the ``idle_timeout`` of a pipeline.

    Attributes:
        timeout: The timeout in seconds.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(f"No message within {timeout} s")


@operator
async def messages(connection: _Closable, *, close: bool = False) -> AsyncIterator[Any]:
    """Generate the messages of a connection (or typed channel).

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


@pipable_operator
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


@pipable_operator
async def decode(
    source: AsyncIterable[str | bytes],
    codec: Codec,
    *,
    on_invalid: Literal["raise", "skip"] = "raise",
) -> AsyncIterator[Any]:
    """Decode every message with ``codec``.

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
async def encode(source: AsyncIterable[Any], codec: Codec) -> AsyncIterator[str | bytes]:
    """Encode every item with ``codec``.

    Raises:
        EncodeError: An item cannot be encoded.
    """
    async with streamcontext(source) as streamer:
        async for item in streamer:
            yield codec.encode(item)


@pipable_operator
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


@pipable_operator
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
