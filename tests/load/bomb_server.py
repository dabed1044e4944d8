"""A child process running one of our echo servers with its default options.

Run as ``python -m tests.load.bomb_server KIND`` where KIND is ``serve``
(``simple_websocket.serve()``), ``sock`` (``AioServer.accept(sock=...)``),
``aiohttp`` (``AioServer.accept(aiohttp=request)``) or ``asgi``
(``AioServer.accept(asgi=...)`` under uvicorn). It prints ``port N`` once it listens
and runs until stdin reaches EOF.

A process of its own gives the memory test a clean resident set to measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from typing import Any

from simple_websocket import AioServer, ConnectionClosed, serve
from simple_websocket.sansio.handshake import parse_request_head


async def echo(ws: Any) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            await ws.send(message)


async def serve_socket(sock: socket.socket) -> None:
    """Read the request head (nothing after it), then accept, as a custom server does."""
    loop = asyncio.get_running_loop()
    head = bytearray()
    while not head.endswith(b"\r\n\r\n"):
        chunk = await loop.sock_recv(sock, 1)
        if not chunk:
            sock.close()
            return
        head += chunk
    parsed = parse_request_head(head)
    assert parsed is not None
    request, _ = parsed
    ws = await AioServer.accept(sock=sock, headers=request.headers, path=request.target)
    await echo(ws)


async def run_sock() -> tuple[int, Any]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def accept_loop() -> None:
        while True:
            sock, _ = await loop.sock_accept(listener)
            task = loop.create_task(serve_socket(sock))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    return listener.getsockname()[1], loop.create_task(accept_loop())


async def run_aiohttp() -> tuple[int, Any]:
    from aiohttp import web

    async def handler(request: web.Request) -> web.StreamResponse:
        await echo(await AioServer.accept(aiohttp=request))
        return web.Response(text="")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner.addresses[0][1], runner


async def run_asgi() -> tuple[int, Any]:
    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await echo(await AioServer.accept(asgi=(scope, receive, send)))

    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    config = uvicorn.Config(app, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[listener]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    return listener.getsockname()[1], task


async def main(kind: str) -> None:
    logging.basicConfig(level=logging.ERROR)
    keep: Any
    if kind == "serve":
        keep = await serve(echo).start()
        port = keep.port
    elif kind == "sock":
        port, keep = await run_sock()
    elif kind == "aiohttp":
        port, keep = await run_aiohttp()
    else:
        port, keep = await run_asgi()
    print(f"port {port}", flush=True)
    # Run until the parent closes our stdin.
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
