"""Client role: one candidate client, one scenario, one process, one JSON line.

Started by the harness as ``python -m benchmarks.run --worker CANDIDATE SCENARIO
--url URL ...`` against the fixed peer (``benchmarks/peer.py``). It connects, warms
up on the same connection(s), measures for a fixed time, closes and prints one JSON
line with the count of items, the elapsed time and its own CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import (
    CONNECTIONS,
    MANUAL,
    MESSAGES_PER_CONNECTION,
    MIB,
    MSGSPEC,
    OURS,
    PICOWS,
    PICOWS_FASTNET,
    RAW,
    SRC,
    SUBSCRIPTION,
    SW11,
    TEXT,
    TYPED_ONLY,
    import_simple_websocket,
    pin,
    sw11_version,
    typed_sample,
    typed_struct,
)

SCENARIO_UNITS = {
    "latency": "round trips/s",
    "pipelined": "messages/s",
    "mib": "MB/s",
    "connections": "connections/s",
    "handshakes": "connections/s",
    "typed": "messages/s",
    "compressed": "messages/s",
}


@dataclass
class Conn:
    """What a scenario needs from a connected client, whatever the library."""

    send_text: Callable[[Any], Awaitable[Any]]
    send_binary: Callable[[bytes], Awaitable[Any]]
    recv: Callable[[], Awaitable[Any]]
    close: Callable[[], Awaitable[Any]]
    text: Any  # the 64-byte text payload as this client sends and receives it
    extensions: str  # negotiated extensions, as seen by the client
    raw: Any = None  # the library's own connection object


@dataclass
class Client:
    """A candidate library, ready to open connections."""

    open: Callable[[], Awaitable[Conn]]
    version: str
    module: str
    aclose: Callable[[], Awaitable[None]] | None = None


def _header(headers: Any, name: str) -> str:
    for key, value in headers or ():
        if key.lower() == name.lower():
            return str(value)
    return "none"


async def _ours(url: str, compress: bool, reconnecting: bool = False) -> Client:
    """Our client; ``reconnecting``: a reconnecting client (for subscriptions)."""
    sw = import_simple_websocket(SRC)

    async def open_() -> Conn:
        if reconnecting:
            client = await sw.AioClient.connect(
                url,
                compression=compress,
                max_message_size=None,
                reconnect=True,
                ping_interval=None,
            )
            return Conn(
                client.send, client.send, client.receive, client.close, TEXT, "none", client
            )
        ws = await sw.AioClient.connect(url, compression=compress, max_message_size=None)
        return Conn(
            ws.send,
            ws.send,
            ws.receive,
            ws.close,
            TEXT,
            _header(ws.response_headers, "Sec-WebSocket-Extensions"),
            ws,
        )

    return Client(open_, sw.__version__, sw.__file__)


async def _sw11(url: str, sw11_dir: Path) -> Client:
    sw = import_simple_websocket(sw11_dir)

    async def open_() -> Conn:
        ws = await sw.AioClient.connect(url)
        try:
            # wsproto internals: the extensions in use on the established connection
            names = [e.name for e in ws.ws.connection._proto.extensions]
            extensions = ", ".join(names) or "none"
        except AttributeError:
            extensions = "unknown"
        return Conn(ws.send, ws.send, ws.receive, ws.close, TEXT, extensions, ws)

    return Client(open_, sw11_version(sw11_dir), sw.__file__)


async def _websockets(url: str, compress: bool) -> Client:
    import websockets
    from websockets.asyncio.client import connect

    compression = "deflate" if compress else None

    async def open_() -> Conn:
        ws = await connect(url, compression=compression, max_size=None, ping_interval=None)
        return Conn(
            ws.send,
            ws.send,
            ws.recv,
            ws.close,
            TEXT,
            ws.response.headers.get("Sec-WebSocket-Extensions", "none"),
            ws,
        )

    return Client(open_, websockets.__version__, websockets.__file__)


async def _aiohttp(url: str, compress: bool) -> Client:
    import aiohttp

    # One session for every connection, as aiohttp recommends; no limit on the
    # number of connections (its default of 100 would cap the connections scenario).
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    data_types = (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)

    async def open_() -> Conn:
        ws = await session.ws_connect(url, compress=15 if compress else 0, max_msg_size=0)

        async def recv() -> Any:
            msg = await ws.receive()
            if msg.type in data_types:
                return msg.data
            raise RuntimeError(f"aiohttp received {msg.type!r}: {msg.data!r}")

        return Conn(
            ws.send_str,
            ws.send_bytes,
            recv,
            ws.close,
            TEXT,
            f"permessage-deflate (compress={ws.compress})" if ws.compress else "none",
            ws,
        )

    return Client(open_, aiohttp.__version__, aiohttp.__file__, session.close)


async def _picows(url: str, fastnet: bool) -> Client:
    """picows behind the same awaitable ``send``/``recv`` interface as the others.

    picows delivers frames to a listener callback; a benchmark task awaits each
    message, so the listener queues data frames and wakes the waiting task (the
    work ``receive()`` of the other libraries does). Text frames are decoded
    (``get_payload_as_utf8_text``: UTF-8 validated) as the other clients do.
    ``fastnet``: picows' default transport (aiofastnet, in C) instead of asyncio's.
    """
    import collections

    import picows
    from picows import WSCloseCode, WSListener, WSMsgType, ws_connect

    text_type, binary_type, close_type = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CLOSE

    class Listener(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.messages: collections.deque[Any] = collections.deque()
            self.waiter: asyncio.Future[None] | None = None
            self.closed: str | None = None

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            kind = frame.msg_type
            if kind is text_type:
                self.messages.append(frame.get_payload_as_utf8_text())
            elif kind is binary_type:
                self.messages.append(frame.get_payload_as_bytes())
            elif kind is close_type:
                self.closed = f"closed by the peer: {frame.get_close_code()}"
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            else:
                return
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        def on_ws_disconnected(self, transport: Any) -> None:
            self.closed = self.closed or "disconnected"
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def open_() -> Conn:
        transport, listener = await ws_connect(
            Listener, url, max_frame_size=1 << 30, use_aiofastnet=fastnet
        )
        loop = asyncio.get_running_loop()
        messages = listener.messages
        popleft = messages.popleft
        send_frame = transport.send

        async def send_text(data: str) -> None:
            send_frame(text_type, data)

        async def send_binary(data: bytes) -> None:
            send_frame(binary_type, data)

        async def recv() -> Any:
            while not messages:
                if listener.closed:
                    raise RuntimeError(listener.closed)
                listener.waiter = waiter = loop.create_future()
                await waiter
            return popleft()

        async def close() -> None:
            transport.send_close(WSCloseCode.OK)
            await transport.wait_disconnected()

        return Conn(send_text, send_binary, recv, close, TEXT, "none", transport)

    return Client(open_, picows.__version__, picows.__file__)


async def _raw_tcp(url: str) -> Client:
    """Length-prefixed records (4-byte big-endian length + payload) over TCP."""
    import struct

    host, _, port = url.removeprefix("tcp://").rstrip("/").rpartition(":")
    header = struct.Struct("!I")
    pack, unpack = header.pack, header.unpack

    async def open_() -> Conn:
        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 22)
        write, drain, readexactly = writer.write, writer.drain, reader.readexactly

        async def send(data: bytes) -> None:
            if len(data) < 65536:
                write(pack(len(data)) + data)
            else:
                write(pack(len(data)))
                write(data)
            await drain()

        async def recv() -> bytes:
            (size,) = unpack(await readexactly(4))
            return await readexactly(size)

        async def close() -> None:
            writer.close()
            await writer.wait_closed()

        return Conn(send, send, recv, close, TEXT.encode(), "n/a", writer)

    return Client(open_, f"asyncio streams (Python {platform.python_version()})", asyncio.__file__)


# -- scenarios --------------------------------------------------------------------


Unit = Callable[[], Awaitable[int]]


def _latency(conn: Conn, batch: int) -> Unit:
    send, recv, payload = conn.send_text, conn.recv, conn.text

    async def unit() -> int:
        for _ in range(batch):
            await send(payload)
            reply = await recv()
            if reply != payload:
                raise RuntimeError(f"bad echo: {reply!r}")
        return batch

    return unit


def _pipelined(
    conn: Conn,
    batch: int,
    payload: Any = None,
    receive: Callable[[], Awaitable[Any]] | None = None,
    expected: Any = None,
) -> Unit:
    """Batches of ``batch`` text messages in flight.

    ``payload`` is sent (``conn.text`` by default); each of the ``batch`` values
    ``receive()`` returns (``conn.recv`` by default) must equal ``expected`` (the
    payload by default).
    """
    send = conn.send_text
    if payload is None:
        payload = conn.text
    recv = conn.recv if receive is None else receive
    if expected is None:
        expected = payload

    async def sender() -> None:
        for _ in range(batch):
            await send(payload)

    async def unit() -> int:
        task = asyncio.ensure_future(sender())
        try:
            for _ in range(batch):
                reply = await recv()
                if reply != expected:
                    raise RuntimeError(f"bad echo: {reply!r}")
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return batch

    return unit


def _mib(conn: Conn) -> Unit:
    send, recv = conn.send_binary, conn.recv
    blob = os.urandom(MIB)

    async def unit() -> int:
        await send(blob)
        reply = await recv()
        if len(reply) != MIB or reply != blob:
            raise RuntimeError(f"bad echo of {len(reply)} bytes")
        return MIB

    return unit


def _connections(client: Client, info: dict[str, Any]) -> Unit:
    """CONNECTIONS connections at once, each: open, MESSAGES round trips, close."""

    async def one() -> None:
        conn = await client.open()
        info.setdefault("extensions", conn.extensions)
        payload = conn.text
        for _ in range(MESSAGES_PER_CONNECTION):
            await conn.send_text(payload)
            reply = await conn.recv()
            if reply != payload:
                raise RuntimeError(f"bad echo: {reply!r}")
        await conn.close()

    async def unit() -> int:
        await asyncio.gather(*(one() for _ in range(CONNECTIONS)))
        return CONNECTIONS

    return unit


def _handshakes(client: Client, info: dict[str, Any]) -> Unit:
    """One connection at a time: open, one round trip of a 64-byte message, close."""

    async def unit() -> int:
        conn = await client.open()
        info.setdefault("extensions", conn.extensions)
        payload = conn.text
        await conn.send_text(payload)
        reply = await conn.recv()
        if reply != payload:
            raise RuntimeError(f"bad echo: {reply!r}")
        await conn.close()
        return 1

    return unit


def _typed(conn: Conn, batch: int, candidate: str) -> Unit:
    """Pipelined JSON messages, decoded into the model on reception.

    ``OURS``: ``ws.typed(Model)``; ``MANUAL``: ``receive()`` +
    ``Model.model_validate_json``; ``MSGSPEC``: ``ws.typed(Struct,
    codec=MsgspecCodec(Struct))``; ``SUBSCRIPTION``: iterating
    ``client.subscribe(Model, match=...)`` on a reconnecting client.
    """
    expected, text = typed_sample()
    if candidate == MANUAL:
        validate = type(expected).model_validate_json
        recv = conn.recv

        async def receive() -> Any:
            return validate(await recv())

    elif candidate == MSGSPEC:
        from simple_websocket.codecs import MsgspecCodec

        struct = typed_struct()
        codec = MsgspecCodec(struct)
        expected = codec.decode(text)
        receive = conn.raw.typed(struct, codec=codec).receive
    elif candidate == SUBSCRIPTION:
        subscription = conn.raw.subscribe(
            type(expected), subscribe=None, match={"venue": expected.venue}
        )
        receive = subscription.__anext__
    else:
        receive = conn.raw.typed(type(expected)).receive
    return _pipelined(conn, batch, text, receive, expected)


async def run_for(unit: Unit, seconds: float) -> dict[str, float]:
    """Repeat ``unit`` for ``seconds``; count items, wall and CPU time."""
    items = units = 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        items += await unit()
        units += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    cpu = time.process_time() - cpu0
    return {"items": items, "units": units, "elapsed_s": now - start, "cpu_s": cpu}


async def _worker(args: argparse.Namespace) -> dict[str, Any]:
    candidate, scenario = args.worker
    compress = scenario == "compressed"
    if (
        (scenario == "typed" and candidate not in (OURS, *TYPED_ONLY))
        or (candidate in TYPED_ONLY and scenario != "typed")
        or (compress and candidate not in (OURS, "websockets", "aiohttp"))
    ):
        raise ValueError(f"{candidate} does not run the {scenario} scenario")
    if candidate in (OURS, *TYPED_ONLY):
        client = await _ours(args.url, compress, reconnecting=candidate == SUBSCRIPTION)
    elif candidate == SW11:
        client = await _sw11(args.url, args.sw11_dir)
    elif candidate == "websockets":
        client = await _websockets(args.url, compress)
    elif candidate == "aiohttp":
        client = await _aiohttp(args.url, compress)
    elif candidate in (PICOWS, PICOWS_FASTNET):
        client = await _picows(args.url, fastnet=candidate == PICOWS_FASTNET)
    elif candidate == RAW:
        client = await _raw_tcp(args.url)
    else:
        raise ValueError(f"unknown candidate {candidate!r}")

    result: dict[str, Any] = {"version": client.version, "module": client.module}
    conn: Conn | None = None
    try:
        if scenario == "connections":
            unit = _connections(client, result)
        elif scenario == "handshakes":
            unit = _handshakes(client, result)
        else:
            conn = await client.open()
            result["extensions"] = conn.extensions
            if scenario == "latency":
                unit = _latency(conn, args.latency_batch)
            elif scenario == "pipelined":
                unit = _pipelined(conn, args.pipelined_batch)
            elif scenario == "mib":
                unit = _mib(conn)
            elif scenario == "typed":
                unit = _typed(conn, args.pipelined_batch, candidate)
            elif scenario == "compressed":
                if conn.extensions == "none":
                    raise RuntimeError("permessage-deflate was not negotiated")
                unit = _pipelined(conn, args.pipelined_batch, typed_sample()[1])
            else:
                raise ValueError(f"unknown scenario {scenario!r}")
        if args.warmup > 0:
            await run_for(unit, args.warmup)
        gc.collect()
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
            stats = await run_for(unit, args.seconds)
            profiler.disable()
            profiler.dump_stats(args.profile)
        else:
            stats = await run_for(unit, args.seconds)
    finally:
        try:
            if conn is not None:
                await asyncio.wait_for(conn.close(), 5)
            if client.aclose is not None:
                await client.aclose()
        except Exception as exc:
            result["close_error"] = f"{type(exc).__name__}: {exc}"
    rate = stats["items"] / stats["elapsed_s"]
    if scenario == "mib":
        rate /= 1e6
    result.update(stats, rate=rate, unit=SCENARIO_UNITS[scenario])
    result["cpu_share"] = stats["cpu_s"] / stats["elapsed_s"]
    return result


def worker_main(args: argparse.Namespace) -> int:
    pin(args.cpu)
    candidate, scenario = args.worker
    args.sw11_dir = Path(args.sw11_dir).resolve()
    out: dict[str, Any] = {"candidate": candidate, "scenario": scenario, "role": "client"}
    # The harness kills a hung worker from outside; this is the polite limit.
    budget = args.warmup + args.seconds + 15
    try:
        out.update(asyncio.run(asyncio.wait_for(_worker(args), budget)))
        out["ok"] = True
    except BaseException as exc:  # report everything, even KeyboardInterrupt
        out["ok"] = False
        out["error"] = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, TimeoutError) and not str(exc):
            out["error"] = f"TimeoutError: gave up after {budget:.0f} s"
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1
