"""The fixed, fast peer the benchmark clients talk to.

Runs in its own process (``python -m benchmarks.peer``) so that the client under
test and the peer each get a core. It starts three servers on 127.0.0.1, each on a
port chosen by the OS:

* a ``websockets`` (asyncio implementation) echo server with compression disabled,
  no keepalive pings and no message size limit: every message is sent back as it
  came (text as text, binary as binary);
* the same echo server with permessage-deflate enabled (websockets' defaults), for
  the ``compressed`` scenario;
* a raw asyncio TCP echo server: every byte received is written back at once. The
  ``raw-tcp`` candidate sends length-prefixed records through it, which gives the
  framing-free limit of the machine (loopback TCP + asyncio on both sides).

Once they listen it prints one JSON line on stdout, for instance
``{"ws_port": 40001, "deflate_port": 40003, "tcp_port": 40002, "websockets": "15.0"}``,
and serves until SIGTERM/SIGINT or until its stdin is closed (so it never outlives
the harness).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading

import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .common import BACKLOG


class _RawEcho(asyncio.Protocol):
    """Writes every received chunk straight back (no framing, no copies)."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _ws_echo(ws: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            await ws.send(message)


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Stop the peer when the harness goes away (its end of our stdin closes)."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    with contextlib.suppress(RuntimeError):  # the loop may already be closed
        loop.call_soon_threadsafe(stop.set)


async def _main(watch_stdin: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if watch_stdin:
        threading.Thread(target=_watch_stdin, args=(loop, stop), daemon=True).start()

    # A large backlog: the connections scenario opens CONNECTIONS connections at once.
    raw = await loop.create_server(_RawEcho, "127.0.0.1", 0, backlog=BACKLOG)
    async with (
        serve(
            _ws_echo,
            "127.0.0.1",
            0,
            compression=None,
            max_size=None,
            ping_interval=None,
            close_timeout=2,
            backlog=BACKLOG,
        ) as server,
        serve(
            _ws_echo,
            "127.0.0.1",
            0,
            compression="deflate",
            max_size=None,
            ping_interval=None,
            close_timeout=2,
            backlog=BACKLOG,
        ) as deflate_server,
    ):
        ws_port = server.sockets[0].getsockname()[1]
        tcp_port = raw.sockets[0].getsockname()[1]
        line = {
            "ws_port": ws_port,
            "deflate_port": deflate_server.sockets[0].getsockname()[1],
            "tcp_port": tcp_port,
            "websockets": websockets.__version__,
            "pid": os.getpid(),
        }
        print(json.dumps(line), flush=True)
        await stop.wait()
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument(
        "--no-stdin-watch",
        action="store_true",
        help="do not exit when stdin is closed (for running it by hand)",
    )
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(_main(watch_stdin=not args.no_stdin_watch))


if __name__ == "__main__":
    main()
