"""Server role: one candidate's echo server in its own process.

Started by the harness as ``python -m benchmarks.servers CANDIDATE SCENARIO``. It
listens on 127.0.0.1 (a port chosen by the OS, backlog ``BACKLOG``), prints one
JSON line (``{"port": ..., "pid": ..., "version": ..., "module": ...}``) and serves
until its stdin closes or it gets SIGTERM/SIGINT. The load generator
(``benchmarks/loadgen.py``, another process) then drives it and reads this
process's CPU clock.

Every WebSocket server echoes each message as it came (text as text, binary as
binary), with compression off (no server enables it unless the client offers it,
and the load generator offers nothing), no keepalive pings and no size limit:

* ``simple_websocket``: ``simple_websocket.serve(handler, sock=...)``, the handler
  an ``async for message in ws: await ws.send(message)`` loop;
* ``callbacks``: the same server with a ``MessageHandler`` whose ``on_message``
  calls ``ws.send_nowait(message)`` (no task per connection or message);
* ``websockets``: ``websockets.asyncio.server.serve(handler, sock=...)``;
* ``aiohttp``: an ``aiohttp.web`` application whose handler runs a
  ``web.WebSocketResponse``;
* ``simple-websocket-1.1.0``: an ``aiohttp.web`` application whose handler calls
  ``AioServer.accept(aiohttp=request)``, the way 1.1's documentation does it;
* ``raw-tcp``: an asyncio protocol writing every received chunk straight back;
* ``raw-tcp-task``: the same echo through a task per connection, woken by a
  future for each chunk, as an awaited ``receive()`` is (the cost of a task
  wake-up, with nothing else).

For the ``typed`` scenario, ours decodes every message into the model and sends
``obj.model_dump_json()`` back: ``simple_websocket`` through ``ws.typed(Model)``,
``pydantic-manual`` with ``receive()`` + ``Model.model_validate_json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .common import (
    BACKLOG,
    CALLBACKS,
    MANUAL,
    MSGSPEC,
    OURS,
    PICOWS,
    PICOWS_FASTNET,
    RAW,
    RAW_TASK,
    SRC,
    SW11,
    SW11_DIR,
    import_simple_websocket,
    pin,
    sw11_version,
    typed_model,
    typed_struct,
)

Stop = Callable[[], Awaitable[None]]


class RawEcho(asyncio.Protocol):
    """Writes every received chunk straight back (no framing, no copies)."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class RawTaskEcho(asyncio.BufferedProtocol):
    """Writes every received chunk back from a task: the floor of an awaited receive.

    Each read lands in a buffer of its own (as picows' and ours do: asyncio's
    plain protocols allocate 256 KiB per read) and is copied out; the task's
    future is woken, and the task writes the chunk one loop iteration later, as a
    handler task blocked in ``await ws.receive()`` would.
    """

    def __init__(self) -> None:
        self.buffer = memoryview(bytearray(1 << 16))
        self.chunks: deque[bytes] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.queue(bytes(self.buffer[:nbytes]))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.task = asyncio.get_running_loop().create_task(self.echo(transport))

    def queue(self, data: bytes) -> None:
        """Hand ``data`` to the task (``b""``: the connection ended)."""
        self.chunks.append(data)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue(b"")

    async def echo(self, transport: asyncio.Transport) -> None:
        chunks = self.chunks
        loop = asyncio.get_running_loop()
        while True:
            if not chunks:
                self.waiter = loop.create_future()
                await self.waiter
            data = chunks.popleft()
            if not data:
                transport.close()
                return
            transport.write(data)


def force_backlog(loop: asyncio.AbstractEventLoop, backlog: int = BACKLOG) -> None:
    """Make every ``create_server`` on ``loop`` listen with at least ``backlog``.

    asyncio listens again with its default backlog (100) on a socket passed with
    ``sock=``; not every server lets the caller choose it, so the loop does it for
    all of them alike.
    """
    create_server = loop.create_server

    async def patched(*args: Any, **kwargs: Any) -> Any:
        kwargs["backlog"] = max(int(kwargs.get("backlog") or 100), backlog)
        return await create_server(*args, **kwargs)

    loop.create_server = patched  # type: ignore[method-assign]


def _listen() -> socket.socket:
    """A listening socket as ``loop.create_server(host, port)`` would make it.

    Created with ``proto=IPPROTO_TCP``: asyncio only sets ``TCP_NODELAY`` on
    accepted sockets whose ``proto`` says TCP, and ``socket.create_server`` leaves it
    0, which would leave Nagle's algorithm on for every server but aiohttp (which
    sets ``TCP_NODELAY`` itself) and add delayed-ACK stalls of 40 ms.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


async def _ours(sock: socket.socket, scenario: str, candidate: str) -> tuple[Stop, str, str]:
    sw = import_simple_websocket(SRC)

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async def typed_echo(ws: Any) -> None:
        async for obj in ws.typed(typed_model()):
            await ws.send(obj.model_dump_json())

    async def manual_echo(ws: Any) -> None:
        validate = typed_model().model_validate_json
        async for message in ws:
            await ws.send(validate(message).model_dump_json())

    async def msgspec_echo(ws: Any) -> None:
        from simple_websocket.codecs import MsgspecCodec

        struct = typed_struct()
        channel = ws.typed(struct, codec=MsgspecCodec(struct))
        async for obj in channel:
            await channel.send(obj)

    class Echo(sw.MessageHandler):  # type: ignore[misc]
        def on_message(self, ws: Any, message: Any) -> None:
            ws.send_nowait(message)

    handler: Any = echo
    if candidate == CALLBACKS:
        handler = Echo()
    if scenario == "typed":
        handler = {OURS: typed_echo, MANUAL: manual_echo, MSGSPEC: msgspec_echo}[candidate]
    compress = scenario == "compressed"
    server = sw.serve(handler, sock=sock, compression=compress, max_message_size=None)
    await server.start()

    async def stop() -> None:
        await server.close(close_timeout=1)

    return stop, sw.__version__, sw.__file__


async def _websockets(sock: socket.socket, compress: bool) -> tuple[Stop, str, str]:
    import websockets
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    async def echo(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                await ws.send(message)

    server = await serve(
        echo,
        sock=sock,
        compression="deflate" if compress else None,
        max_size=None,
        ping_interval=None,
        close_timeout=1,
    )

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return stop, websockets.__version__, websockets.__file__


async def _aiohttp_app(sock: socket.socket, handler: Any) -> Stop:
    from aiohttp import web

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock, backlog=BACKLOG)
    await site.start()
    return runner.cleanup


async def _aiohttp(sock: socket.socket, compress: bool) -> tuple[Stop, str, str]:
    import aiohttp
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=compress, max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    return await _aiohttp_app(sock, echo), aiohttp.__version__, aiohttp.__file__


async def _sw11(sock: socket.socket, sw11_dir: Path) -> tuple[Stop, str, str]:
    sw = import_simple_websocket(sw11_dir)
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        # 1.1 reads a dup() of aiohttp's socket while aiohttp's own transport keeps
        # reading the original: whichever reads first gets the bytes, and what aiohttp
        # reads is lost (pipelined and mib hang or fail). Pausing aiohttp's reading
        # first is the one change to 1.1's documented usage that makes it measurable.
        assert request.transport is not None
        request.transport.pause_reading()
        ws = await sw.AioServer.accept(aiohttp=request)
        try:
            while True:
                data = await ws.receive()
                await ws.send(data)
        except sw.ConnectionClosed:
            pass
        return web.Response(text="")

    return await _aiohttp_app(sock, echo), sw11_version(sw11_dir), sw.__file__


async def _picows(sock: socket.socket, fastnet: bool) -> tuple[Stop, str, str]:
    """A picows echo server: each data frame is echoed from the listener callback.

    picows has no awaitable receive; its listener is its API, so the echo happens
    in the callback (no task). Text is decoded (UTF-8 validated) and sent back as
    text, as the other servers do; a close frame is answered and TCP closed.
    """
    import picows
    from picows import WSListener, WSMsgType, ws_create_server

    text_type, binary_type, close_type = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CLOSE

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            kind = frame.msg_type
            if kind is text_type:
                transport.send(text_type, frame.get_payload_as_utf8_text())
            elif kind is binary_type:
                transport.send(binary_type, frame.get_payload_as_memoryview())
            elif kind is close_type:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    server = await ws_create_server(
        lambda request: Echo(),
        sock=sock,
        max_frame_size=1 << 30,
        use_aiofastnet=fastnet,
        backlog=BACKLOG,
    )

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return stop, picows.__version__, picows.__file__


async def _raw(sock: socket.socket, task: bool = False) -> tuple[Stop, str, str]:
    import platform

    protocol = RawTaskEcho if task else RawEcho
    server = await asyncio.get_running_loop().create_server(protocol, sock=sock)

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return stop, f"asyncio (Python {platform.python_version()})", asyncio.__file__


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Stop when the harness goes away (its end of our stdin closes)."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    with contextlib.suppress(RuntimeError):  # the loop may already be closed
        loop.call_soon_threadsafe(stop.set)


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    force_backlog(loop)
    stop_event = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)
    if not args.no_stdin_watch:
        threading.Thread(target=_watch_stdin, args=(loop, stop_event), daemon=True).start()
    sock = _listen()
    port = sock.getsockname()[1]
    candidate, scenario = args.candidate, args.scenario
    if candidate in (OURS, CALLBACKS, MANUAL, MSGSPEC):
        stop, version, module = await _ours(sock, scenario, candidate)
    elif candidate == "websockets":
        stop, version, module = await _websockets(sock, scenario == "compressed")
    elif candidate == "aiohttp":
        stop, version, module = await _aiohttp(sock, scenario == "compressed")
    elif candidate == SW11:
        stop, version, module = await _sw11(sock, args.sw11_dir)
    elif candidate in (PICOWS, PICOWS_FASTNET):
        stop, version, module = await _picows(sock, fastnet=candidate == PICOWS_FASTNET)
    elif candidate in (RAW, RAW_TASK):
        stop, version, module = await _raw(sock, task=candidate == RAW_TASK)
    else:
        raise ValueError(f"unknown candidate {candidate!r}")
    line = {"port": port, "pid": os.getpid(), "version": version, "module": module}
    print(json.dumps(line), flush=True)
    await stop_event.wait()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(stop(), 3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidate")
    parser.add_argument("scenario")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--sw11-dir", default=str(SW11_DIR))
    parser.add_argument(
        "--no-stdin-watch",
        action="store_true",
        help="do not exit when stdin is closed (for running it by hand)",
    )
    parser.add_argument("--profile", default=None, help="write a cProfile .pstats file here")
    args = parser.parse_args(argv)
    args.sw11_dir = Path(args.sw11_dir).resolve()
    pin(args.cpu)
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            asyncio.run(_main(args))
        finally:
            profiler.disable()
            profiler.dump_stats(args.profile)
    else:
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
