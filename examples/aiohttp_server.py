"""aiohttp server: a WebSocket echo endpoint inside an aiohttp application.

The handler accepts the WebSocket with ``AioServer.accept(aiohttp=request)``, as
in simple-websocket 1.1. aiohttp keeps owning the connection; once the WebSocket
is closed, the ``web.Response()`` the handler returns is not written (the
transport is closed), it only keeps aiohttp from logging "Missing return
statement". A plain HTTP request to ``/ws`` is answered with 426 by
``accept()``. The first line of output is the WebSocket URL.

    python examples/aiohttp_server.py                   # ws://127.0.0.1:8000/ws
    python examples/aiohttp_server.py --port 0 --once   # free port, one client
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from aiohttp import web

import simple_websocket
from simple_websocket import AioServer

#: The open WebSockets, closed with 1001 before the application shuts down.
WEBSOCKETS = web.AppKey("websockets", set[AioServer])
#: Set when a WebSocket connection ended (``--once`` stops the server then).
FINISHED = web.AppKey("finished", asyncio.Event)


async def index(request: web.Request) -> web.Response:
    """A plain HTTP page: the WebSocket lives at ``/ws``."""
    return web.Response(text="WebSocket echo endpoint: /ws\n")


async def websocket_echo(request: web.Request) -> web.StreamResponse:
    """Accept a WebSocket and echo every message back."""
    try:
        ws = await AioServer.accept(aiohttp=request)
    except simple_websocket.HandshakeError as exc:
        # accept() already answered 400 or 426 and closed the connection.
        print(f"rejected a request: {exc} (HTTP {exc.status_code})")
        return web.Response()
    peer = request.remote
    print(f"{peer} connected (mode={ws.mode})")
    request.app[WEBSOCKETS].add(ws)
    try:
        async for message in ws:
            print(f"{peer} echo {message!r}")
            await ws.send(message)
        print(f"{peer} closed with code {ws.close_reason}")
    finally:
        request.app[WEBSOCKETS].discard(ws)
        request.app[FINISHED].set()
    return web.Response()  # not sent: the WebSocket closed the connection


async def close_websockets(app: web.Application) -> None:
    """Close the open WebSockets with 1001 (going away): their handlers return.

    Call it before ``runner.cleanup()``, not from ``app.on_shutdown``: once
    aiohttp's shutdown has begun it drops the bytes it receives, so the clients'
    answers to the close frames would be lost and each close would wait for its
    ``close_timeout``.
    """
    await asyncio.gather(
        *(ws.close(1001, "Server shutting down") for ws in app[WEBSOCKETS])
    )


def make_app() -> web.Application:
    """Build the aiohttp application."""
    app = web.Application()
    app[WEBSOCKETS] = set()
    app[FINISHED] = asyncio.Event()
    app.router.add_get("/", index)
    app.router.add_get("/ws", websocket_echo)
    return app


async def main(
    host: str = "127.0.0.1", port: int = 8000, once: bool = False
) -> None:
    """Serve until cancelled, or until one client left (``once``)."""
    app = make_app()
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        # The real port when port 0 was asked.
        bound_port = runner.addresses[0][1]
        print(f"listening on ws://{host}:{bound_port}/ws", flush=True)
        if once:
            await app[FINISHED].wait()
        else:
            await asyncio.Future()  # serve until Ctrl+C
    finally:
        await close_websockets(app)
        await runner.cleanup()
    print("server stopped")


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
