"""Quick start demo: an embedded WebSocket server and a client talking to it.

Starts a standalone server on localhost (a free port), connects a client, exchanges
text and binary messages, measures round trips, shows a server-side close and an
invalid URL, and exits. Run it with ``python examples/demo.py [--host HOST] [--port PORT]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import simple_websocket
from simple_websocket import AioClient, AioServer


async def handler(ws: AioServer) -> None:
    """Answer each message; close with 1000 when asked to say goodbye."""
    async for message in ws:
        if message == "bye":
            await ws.close(1000, "see you")
            return
        if isinstance(message, bytes):
            await ws.send(message[::-1])
        else:
            await ws.send(f"echo: {message}")


async def main(host: str = "127.0.0.1", port: int = 0) -> None:
    """Run the demo against a server on ``host``:``port`` (0 picks a free port)."""
    async with simple_websocket.serve(handler, host, port) as server:
        print(f"server listening on {server.url}")
        async with AioClient.connect(server.url) as ws:
            print(f"connected (compression offered; subprotocol={ws.subprotocol})")
            await ws.send("hello")
            print("text   ->", await ws.receive(timeout=5))
            await ws.send(b"\x01\x02\x03")
            print("binary ->", await ws.receive(timeout=5))

            start = time.perf_counter()
            for i in range(1000):
                await ws.send(str(i))
                await ws.receive(timeout=5)
            elapsed = time.perf_counter() - start
            print(f"1000 round trips in {elapsed * 1000:.0f} ms")
            print(f"ping round trip: {await ws.ping() * 1e6:.0f} µs")

            await ws.send("bye")
            async for message in ws:  # ends quietly on the server's 1000 close
                print("unexpected", message)
            print(f"server closed: code={ws.close_reason} reason={ws.close_message!r}")

        try:
            await AioClient.connect("ftp://example.invalid/")
        except ValueError as exc:
            print(f"invalid URL rejected: {exc}")
    print("server stopped; demo done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
