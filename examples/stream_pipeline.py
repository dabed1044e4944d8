"""Stream pipeline: aiostream operators over WebSocket connections.

Starts embedded servers on localhost: three sensor feeds (``north``, ``south``,
``east``) that each send a few JSON readings and close normally, a ``burst``
feed that sends ten readings at once, and an ``archive`` that stores what it
receives. Then it runs three pipelines and exits:

1. **merge**: the three feeds as one stream (``stream.merge``), decoded into
   pydantic models with ``operators.decode``; it ends when every feed ended.
2. **throttle and batch**: the burst feed spaced out with ``pipe.spaceout`` (at
   most one reading every 20 ms) and grouped with ``operators.batch`` (lists of
   up to 4, or whatever arrived within ``max_delay`` of a list's first reading).
3. **bridge**: the readings of one connection filtered, re-encoded and sent into
   another connection (the archive) with ``operators.send_to``.

    python examples/stream_pipeline.py                # free ports
    python examples/stream_pipeline.py --port 9000    # ports 9000 to 9004
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
from collections import Counter
from typing import Any

from aiostream import pipe, stream
from pydantic import BaseModel

import simple_websocket
from simple_websocket import AioClient, PydanticCodec
from simple_websocket.operators import (
    batch,
    decode,
    encode,
    idle_timeout,
    send_to,
)


class Reading(BaseModel):
    """One sensor reading."""

    feed: str
    seq: int
    celsius: float


CODEC: PydanticCodec[Reading] = PydanticCodec(Reading)


# -- the servers ---------------------------------------------------------------


def feed(name: str, count: int, period: float, hold: float = 0.0) -> Any:
    """A handler sending ``count`` readings, one per ``period``, then closing.

    ``hold`` keeps the connection open that long after the last reading.
    """

    async def handler(ws: simple_websocket.AioServer) -> None:
        for seq in range(1, count + 1):
            celsius = 17.0 + (seq * 7 % 10) * 0.5 + len(name) / 10
            await ws.send(
                CODEC.encode(Reading(feed=name, seq=seq, celsius=celsius))
            )
            if period:
                await asyncio.sleep(period)
        await asyncio.sleep(hold)
        # Returning closes the connection with 1000: the client's stream ends
        # quietly.

    return handler


async def archive(ws: simple_websocket.AioServer) -> None:
    """Store every message until the client closes; report how many arrived."""
    stored = [message async for message in ws]
    print(
        f"archive: stored {len(stored)} messages, closed with code "
        f"{ws.close_reason}"
    )


# -- the pipelines -------------------------------------------------------------


# --8<-- [start:merge]
async def merge_feeds(urls: list[str]) -> Counter[str]:
    """Print the readings of several feeds as they arrive, as one stream."""
    counts: Counter[str] = Counter()
    async with contextlib.AsyncExitStack() as stack:
        feeds = [
            await stack.enter_async_context(AioClient.connect(url))
            for url in urls
        ]
        readings = (
            # Ends when every feed ended.
            stream.merge(*(ws.stream() for ws in feeds))
            # str -> Reading; DecodeError on an invalid one.
            | decode.pipe(CODEC)
            # IdleTimeout if all feeds stay silent for 5 s.
            | idle_timeout.pipe(5.0)
        )
        async with readings.stream() as merged:
            async for reading in merged:
                counts[reading.feed] += 1
                print(
                    f"merged: {reading.feed} #{reading.seq} "
                    f"{reading.celsius:.1f} C"
                )
    summary = " ".join(f"{name}={n}" for name, n in sorted(counts.items()))
    print(
        f"merged {sum(counts.values())} readings from {len(counts)} feeds: "
        f"{summary}"
    )
    return counts


# --8<-- [end:merge]


# --8<-- [start:batch]
async def throttle_and_batch(url: str) -> list[int]:
    """Space a burst out and group it into batches; return the batch sizes."""
    sizes = []
    async with AioClient.connect(url) as ws:
        batches = (
            ws.stream()
            | decode.pipe(CODEC)
            | pipe.spaceout(0.02)  # at most one reading every 20 ms
            | batch.pipe(4, max_delay=0.2)  # up to 4, or what came within 0.2 s
        )
        async with batches.stream() as groups:
            async for group in groups:
                sizes.append(len(group))
                mean = statistics.mean(r.celsius for r in group)
                print(
                    f"batch of {len(group)}: "
                    f"#{group[0].seq}-#{group[-1].seq}, mean {mean:.2f} C"
                )
    print(f"batch sizes: {sizes}")
    return sizes


# --8<-- [end:batch]


# --8<-- [start:bridge]
async def bridge(source_url: str, target_url: str, threshold: float) -> int:
    """Send ``source_url``'s readings above ``threshold`` to ``target_url``."""
    forwarded = 0

    def count(reading: Reading) -> None:
        nonlocal forwarded
        forwarded += 1

    def above_threshold(reading: Reading) -> bool:
        return reading.celsius > threshold

    async with (
        AioClient.connect(source_url) as source,
        AioClient.connect(target_url) as target,
    ):
        pipeline = (
            source.stream()
            | decode.pipe(CODEC)
            | pipe.filter(above_threshold)
            | pipe.action(count)
            | encode.pipe(CODEC)
            # Each send completes before the next item is pulled.
            | send_to.pipe(target)
        )
        # Runs it; the last item sent (StreamEmpty if none was).
        last = await pipeline
        print(
            f"bridged {forwarded} readings above {threshold} C; last: {last!s}"
        )
    # Leaving the block closed both connections with 1000.
    return forwarded


# --8<-- [end:bridge]


async def main(host: str = "127.0.0.1", port: int = 0) -> None:
    """Start the servers on ``host`` (from ``port``; 0: free), run it all."""
    handlers = {
        "north": feed("north", 5, 0.01),
        "south": feed("south", 5, 0.015),
        "east": feed("east", 5, 0.02),
        "burst": feed("burst", 10, 0, hold=0.5),
        "archive": archive,
    }
    async with contextlib.AsyncExitStack() as stack:
        urls = {}
        for offset, (name, handler) in enumerate(handlers.items()):
            server = await stack.enter_async_context(
                simple_websocket.serve(
                    handler, host, port + offset if port else 0
                )
            )
            urls[name] = server.url
        print(
            " ".join(f"{name}={url}" for name, url in urls.items()), flush=True
        )

        await merge_feeds([urls["north"], urls["south"], urls["east"]])
        await throttle_and_batch(urls["burst"])
        await bridge(urls["north"], urls["archive"], threshold=19.0)
    # Leaving the block stopped the servers (after the archive's handler
    # returned).
    print("pipelines done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="first port; 0 picks free ports"
    )
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
