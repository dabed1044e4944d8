"""ASGI server: a WebSocket echo endpoint as a plain ASGI application.

The application accepts the WebSocket with ``AioServer.accept(asgi=(scope,
receive, send))`` and runs under uvicorn (the default) or hypercorn, both
started from Python here. Any other ASGI server works the same way (``uvicorn
module:app`` from the command line, for instance). Plain HTTP requests get a 426
answer. The first line of output is the WebSocket URL.

    python examples/asgi_server.py                  # uvicorn, port 8000
    python examples/asgi_server.py --server hypercorn
    python examples/asgi_server.py --port 0 --once  # free port, one client
    uvicorn --app-dir examples asgi_server:app --ws wsproto  # uvicorn's CLI
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

import simple_websocket
from simple_websocket import AioServer, ASGIConnection

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def make_app(finished: asyncio.Event, open_ws: set[ASGIConnection]) -> App:
    """Build the ASGI application.

    ``finished`` is set when a WebSocket ended; ``open_ws`` holds the open ones.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        elif scope["type"] == "http":
            await send(
                {
                    "type": "http.response.start",
                    "status": 426,
                    "headers": [
                        (b"content-type", b"text/plain"),
                        (b"upgrade", b"websocket"),
                    ],
                }
            )
            await send(
                {"type": "http.response.body", "body": b"WebSocket endpoint\n"}
            )
        elif scope["type"] == "websocket":
            await websocket_echo(scope, receive, send, open_ws)
            finished.set()

    return app


#: The application for ASGI servers started from their command line.
app = make_app(asyncio.Event(), set())


async def lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge the ASGI lifespan startup and shutdown events."""
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def websocket_echo(
    scope: Scope, receive: Receive, send: Send, open_ws: set[ASGIConnection]
) -> None:
    """Accept the WebSocket of a ``websocket`` scope and echo every message."""
    # An ASGIConnection.
    ws = await AioServer.accept(asgi=(scope, receive, send))
    peer = "{}:{}".format(*(scope.get("client") or ("?", "?")))
    print(f"{peer} connected to {scope['path']}")
    open_ws.add(ws)
    try:
        async with ws:  # closes with 1000 on exit (1011 if the block raised)
            async for message in ws:
                print(f"{peer} echo {message!r}")
                await ws.send(message)
    except simple_websocket.ConnectionClosed:
        # Hypercorn reports a client's normal close as 1006 (hypercorn issue
        # #127), which ends the iteration with this exception instead of
        # quietly.
        pass
    finally:
        open_ws.discard(ws)
    print(f"{peer} closed with code {ws.close_reason}")


def listen(host: str, port: int) -> socket.socket:
    """Bind and listen here: the real port is known before the server starts."""
    sock = socket.create_server((host, port))
    sock.setblocking(False)
    return sock


async def run_uvicorn(
    app: App, sock: socket.socket, stop: asyncio.Event | None
) -> None:
    """Serve ``app`` with uvicorn on ``sock`` until ``stop`` is set."""
    import uvicorn

    # ws="wsproto": uvicorn's WebSocket implementation on wsproto, which this
    # package depends on anyway. uvicorn handles Ctrl+C (SIGINT) itself.
    config = uvicorn.Config(
        app, ws="wsproto", lifespan="on", log_level="warning"
    )
    server = uvicorn.Server(config)
    if stop is None:
        await server.serve(sockets=[sock])
        return
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait(
            {serving, stopping}, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopping.cancel()
        server.should_exit = True
        await serving


async def run_hypercorn(
    app: App,
    sock: socket.socket,
    stop: asyncio.Event | None,
    open_ws: set[ASGIConnection],
) -> None:
    """Serve ``app`` with hypercorn on ``sock`` until ``stop`` is set."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from hypercorn.typing import ASGIFramework

    config = Config()
    # Hypercorn owns the socket from now on.
    config.bind = [f"fd://{sock.detach()}"]
    config.loglevel = "WARNING"
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(signum, stop.set)

    async def shutdown_trigger() -> None:
        await stop.wait()
        # Hypercorn cancels the connections that are still open when it stops:
        # close them with 1001 (going away) first.
        await asyncio.gather(
            *(ws.close(1001, "Server shutting down") for ws in list(open_ws))
        )

    # hypercorn's annotations describe each ASGI event as its own TypedDict;
    # this application takes any mapping, which they do not express.
    await serve(
        cast("ASGIFramework", app), config, shutdown_trigger=shutdown_trigger
    )


async def main(
    host: str = "127.0.0.1",
    port: int = 8000,
    once: bool = False,
    server: str = "uvicorn",
) -> None:
    """Serve until cancelled, or until one client left (``once``)."""
    finished = asyncio.Event()
    open_ws: set[ASGIConnection] = set()
    app = make_app(finished, open_ws)
    sock = listen(host, port)
    # Connections made from now on wait in the listen backlog until the server
    # runs.
    print(
        f"listening on ws://{host}:{sock.getsockname()[1]}/ ({server})",
        flush=True,
    )
    stop = finished if once else None
    if server == "hypercorn":
        await run_hypercorn(app, sock, stop, open_ws)
    else:
        await run_uvicorn(app, sock, stop)
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
    parser.add_argument(
        "--server", choices=["uvicorn", "hypercorn"], default="uvicorn"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.host, args.port, args.once, args.server))
