"""The examples of docs/howto/streams.md that are not in examples/, as a user would
write them, and the types its table promises.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from __future__ import annotations

from typing import assert_type

from aiostream import Stream, pipe
from pydantic import BaseModel

from simple_websocket import AioClient, PydanticCodec
from simple_websocket.operators import batch, decode, encode, idle_timeout, send_to


def is_text(message: str | bytes) -> bool:
    return isinstance(message, str)


async def forward_text(source: AioClient, target: AioClient) -> None:
    # Forward the text messages of one connection to another.
    await (source.stream() | pipe.filter(is_text) | send_to.pipe(target))


async def running(xs: Stream[str | bytes]) -> None:
    async with xs.stream() as items:  # iterate; clean up when leaving
        async for item in items:
            ...

    last = await xs  # the last item (StreamEmpty if none)
    print(last)


class Reading(BaseModel):
    feed: str
    celsius: float


async def types(ws: AioClient) -> None:
    xs = ws.stream()
    assert_type(xs, Stream[str | bytes])
    assert_type(ws.typed(Reading).stream(), Stream[Reading])
    readings = xs | decode.pipe(PydanticCodec(Reading))
    assert_type(readings, Stream[Reading])
    assert_type(readings | encode.pipe(PydanticCodec(Reading)), Stream[str | bytes])
    assert_type(readings | batch.pipe(10), Stream[list[Reading]])
    assert_type(readings | idle_timeout.pipe(5), Stream[Reading])
    assert_type(readings | send_to.pipe(ws), Stream[Reading])
    client = AioClient.connect("ws://127.0.0.1:8000/", reconnect=True)
    assert_type(client.stream(), Stream[str | bytes])
