"""Echo server: a standalone WebSocket server on ``simple_websocket.serve()``.

Every message a client sends is sent back unchanged. The first line of output is
the server's URL; then one line per connection and per message. Stop it with
Ctrl+C: open connections are closed with 1001 (going away).

    python examples/echo_server.py                   # ws://127.0.0.1:8000/
    python examples/echo_server.py --port 0 --once   # free port, one client

Try it with ``python examples/echo_client.py --url ws://127.0.0.1:8000/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import simple_websocket


# --8<-- [start:main]
async def main(
    host: str = "127.0.0.1", port: int = 8000, once: bool = False
) -> None:
    """Serve on ``host``:``port`` until cancelled (``once``: one client)."""
    finished = asyncio.Event()

    async def echo(ws: simple_websocket.AioServer) -> None:
        # Called once per connection, after a successful handshake. Returning
        # closes the connection with 1000; raising would close it with 1011.
        peer = "{}:{}".format(*ws.remote_address[:2])
        print(f"{peer} connected to {ws.request.target if ws.request else '/'}")
        try:
            # Ends quietly when the client closes normally.
            async for message in ws:
                print(f"{peer} echo {message!r}")
                await ws.send(message)
            print(f"{peer} closed with code {ws.close_reason}")
        finally:
            if once:
                finished.set()

    async with simple_websocket.serve(echo, host, port) as server:
        # server.url has the real port when port 0 asked for a free one.
        print(f"listening on {server.url}", flush=True)
        await finished.wait()  # never set without --once: serve until Ctrl+C
    print("server stopped")


# --8<-- [end:main]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="0 picks a free port"
    )
    parser.add_argument(
        "--once", action="store_true", help="exit after the first connection"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.host, args.port, args.once))
