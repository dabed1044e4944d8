"""The fixed load generator of the server role: a raw-socket WebSocket client.

Started by the harness as ``python -m benchmarks.loadgen SCENARIO --port PORT
--server-pid PID ...`` against one candidate server (``benchmarks/servers.py``, in
another process). It prints one JSON line with the count of items, the elapsed time,
the server process's CPU time over the measured window (read from that process's
CPU clock) and its own.

It is the same for every candidate and does as little as possible per message, so
that the server is what limits the rate:

* every frame it sends is built (and masked, with a fresh random key per frame) once,
  before the measurement: sending is one ``transport.write`` of ready bytes;
* the handshake request is a fixed byte string (no extension offered, so no server
  compresses, except in ``compressed``); the response is only checked for ``101``
  and the expected ``Sec-WebSocket-Accept``;
* received frames are parsed just enough to find their boundaries, and every echoed
  payload is compared with what was sent;
* a ``pipelined`` (or ``typed``) batch of N messages is written at once;
* ``compressed`` offers permessage-deflate with no context takeover either way, so
  that one pre-built compressed frame is valid for every message; each echo is
  inflated (when the server compressed it) and compared with what was sent.

With ``--raw`` it speaks the raw TCP candidate's records instead (a 4-byte
big-endian length + payload, echoed as they are).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import json
import os
import struct
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from .common import (
    CONNECTIONS,
    MESSAGES_PER_CONNECTION,
    MIB,
    TEXT,
    pin,
    process_cpu_clock,
    typed_sample,
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
#: What the ``compressed`` scenario offers: each message is compressed on its own both
#: ways, so frames can be built once and each echo inflated on its own.
DEFLATE_OFFER = b"permessage-deflate; client_no_context_takeover; server_no_context_takeover"
_TAIL = b"\x00\x00\xff\xff"

KEY = base64.b64encode(os.urandom(16))
ACCEPT = base64.b64encode(
    hashlib.sha1(KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
).lower()


def _mask(key: bytes, data: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes, compress: bool = False) -> bytes:
    """A masked, unfragmented frame as a client sends it (``compress``: deflated, RSV1)."""
    first = 0x80 | opcode
    if compress:
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        payload = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        payload = payload.removesuffix(_TAIL)
        first |= 0x40
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    key = os.urandom(4)
    return head + key + _mask(key, payload)


def server_frame(opcode: int, payload: bytes) -> bytes:
    """The unmasked frame a server sends back for ``payload``."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


CLOSE_FRAME = client_frame(0x8, struct.pack("!H", 1000))


class LoadConnection(asyncio.Protocol):
    """One client connection of the load generator.

    ``expect(count)`` returns a future done once ``count`` more data frames (or raw
    records) arrived, each equal to ``self.payload``.
    """

    def __init__(self, raw: bool, deflate: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.raw = raw
        #: permessage-deflate offered: it must be accepted, echoes may be compressed.
        self.deflate = deflate
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.open = loop.create_future()
        self.lost = loop.create_future()
        # Received bytes not parsed yet, how many, and how many the frame in
        # progress needs (0: unknown).
        self.chunks: list[bytes] = []
        self.have = 0
        self.need = 0
        self.payload = b""
        self.remaining = 0
        self.waiter: asyncio.Future[None] | None = None
        self.close_code: int | None = None
        self.closing: asyncio.Future[None] | None = None

    # -- asyncio callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.raw:
            self.open.set_result(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        error = exc or ConnectionResetError("the server closed the connection")
        for future in (self.open, self.waiter):
            if future is not None and not future.done():
                future.set_exception(error)
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self.open.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.head[:end]).lower()
            if not head.startswith(b"http/1.1 101") or ACCEPT not in head:
                self.open.set_exception(RuntimeError(f"bad handshake response: {head[:200]!r}"))
                return
            if self.deflate and b"permessage-deflate" not in head:
                self.open.set_exception(RuntimeError("permessage-deflate was not negotiated"))
                return
            self.open.set_result(None)
            data = bytes(self.head[end + 4 :])
            if not data:
                return
        if self.close_code is not None:
            return  # whatever follows a close frame is not WebSocket
        # Bytes are only joined and parsed once the frame in progress is complete:
        # a 1 MiB echo arriving in pieces is joined once, not copied per piece.
        self.chunks.append(data)
        self.have += len(data)
        if self.have < self.need:
            return
        buf = data if len(self.chunks) == 1 else b"".join(self.chunks)
        i, n = 0, len(buf)
        need = 0
        payload = self.payload
        size = len(payload)
        if self.raw:
            while n - i >= 4:
                end = i + 4 + int.from_bytes(buf[i : i + 4], "big")
                if end > n:
                    need = end - i
                    break
                if end - i - 4 != size or not buf.startswith(payload, i + 4):
                    self._fail(RuntimeError("bad echo"))
                    return
                self.remaining -= 1
                i = end
        else:
            while n - i >= 2:
                length = buf[i + 1] & 0x7F
                start = i + 2
                if length == 126:
                    if n - i < 4:
                        break
                    length = int.from_bytes(buf[i + 2 : i + 4], "big")
                    start = i + 4
                elif length == 127:
                    if n - i < 10:
                        break
                    length = int.from_bytes(buf[i + 2 : i + 10], "big")
                    start = i + 10
                end = start + length
                if end > n:
                    need = end - i
                    break
                opcode = buf[i] & 0x0F
                if opcode == 0x8:
                    self.close_code = int.from_bytes(buf[start : start + 2], "big") or 1005
                    # Nothing may follow a close frame: stop reading, close our end.
                    self.chunks, self.have, self.need = [], 0, 0
                    if self.closing is not None and not self.closing.done():
                        self.closing.set_result(None)
                    return
                if opcode in (0x1, 0x2) and buf[i] & 0x40 and self.deflate:
                    inflated = zlib.decompressobj(-15).decompress(buf[start:end] + _TAIL)
                    if inflated != payload:
                        self._fail(RuntimeError(f"bad compressed echo: {inflated[:80]!r}"))
                        return
                    self.remaining -= 1
                elif opcode in (0x1, 0x2):
                    # startswith compares in place (no copy of a 1 MiB payload).
                    if length != size or not buf.startswith(payload, start):
                        self._fail(RuntimeError(f"bad echo: {buf[start:end][:80]!r}"))
                        return
                    self.remaining -= 1
                # pings (never sent by these servers) and pongs are ignored
                i = end
        rest = buf[i:] if i < n else b""
        self.chunks = [rest] if rest else []
        self.have = len(rest)
        self.need = need
        waiter = self.waiter
        if waiter is not None and self.remaining <= 0 and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    # -- driving ------------------------------------------------------------------

    def expect(self, count: int) -> asyncio.Future[None]:
        self.remaining = count
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter

    async def close(self) -> None:
        """Close handshake (or EOF for raw records), then close TCP.

        The load generator closes its end as soon as it has the server's close
        frame rather than waiting for the server to close TCP first (RFC 6455 7.1.1
        lets a client do that after a timeout): not every server closes TCP itself
        (simple-websocket 1.1.0 behind aiohttp does not), and the measurement should
        not depend on it.
        """
        transport = self.transport
        assert transport is not None
        if self.raw:
            transport.write_eof()
        else:
            self.closing = asyncio.get_running_loop().create_future()
            transport.write(CLOSE_FRAME)
            try:
                await asyncio.wait_for(
                    asyncio.wait([self.closing, self.lost], return_when=asyncio.FIRST_COMPLETED),
                    5,
                )
            except TimeoutError:
                transport.abort()
                raise RuntimeError("no close frame from the server within 5 s") from None
            if self.close_code != 1000:
                transport.abort()
                raise RuntimeError(f"expected the close code 1000 back, got {self.close_code}")
            transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self.lost), 5)
        except TimeoutError:
            transport.abort()
            raise RuntimeError("the connection did not close within 5 s") from None


async def connect(port: int, raw: bool, deflate: bool = False) -> LoadConnection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: LoadConnection(raw, deflate), "127.0.0.1", port)
    if not raw:
        assert conn.transport is not None
        extensions = b"Sec-WebSocket-Extensions: %s\r\n" % DEFLATE_OFFER if deflate else b""
        conn.transport.write(
            b"GET / HTTP/1.1\r\n"
            b"Host: 127.0.0.1:%d\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
            b"%s"
            b"\r\n" % (port, KEY, extensions)
        )
    await conn.open
    return conn


# -- scenarios --------------------------------------------------------------------

Unit = Callable[[], Awaitable[int]]


def _record(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def _message(
    conn: LoadConnection,
    opcode: int,
    payload: bytes,
    count: int,
    items: int | None = None,
    compress: bool = False,
) -> Unit:
    """Send ``count`` copies of ``payload`` in one write and wait for their echoes.

    Each unit counts ``items`` (default: ``count``).
    """
    conn.payload = payload
    if conn.raw:
        data = _record(payload) * count
    else:
        data = b"".join(client_frame(opcode, payload, compress) for _ in range(count))
    assert conn.transport is not None
    write = conn.transport.write

    done = count if items is None else items

    async def unit() -> int:
        waiter = conn.expect(count)
        write(data)
        await waiter
        return done

    return unit


def _latency(conn: LoadConnection, payload: bytes, batch: int) -> Unit:
    conn.payload = payload
    frame = _record(payload) if conn.raw else client_frame(0x1, payload)
    assert conn.transport is not None
    write, expect = conn.transport.write, conn.expect

    async def unit() -> int:
        for _ in range(batch):
            waiter = expect(1)
            write(frame)
            await waiter
        return batch

    return unit


def _connections(port: int, raw: bool) -> Unit:
    payload = TEXT.encode()
    frame = _record(payload) if raw else client_frame(0x1, payload)

    async def one() -> None:
        conn = await connect(port, raw)
        conn.payload = payload
        assert conn.transport is not None
        write = conn.transport.write
        for _ in range(MESSAGES_PER_CONNECTION):
            waiter = conn.expect(1)
            write(frame)
            await waiter
        await conn.close()

    async def unit() -> int:
        await asyncio.gather(*(one() for _ in range(CONNECTIONS)))
        return CONNECTIONS

    return unit


def _handshakes(port: int, raw: bool) -> Unit:
    """One connection at a time: open (handshake), one round trip, close."""
    payload = TEXT.encode()
    frame = _record(payload) if raw else client_frame(0x1, payload)

    async def unit() -> int:
        conn = await connect(port, raw)
        conn.payload = payload
        assert conn.transport is not None
        waiter = conn.expect(1)
        conn.transport.write(frame)
        await waiter
        await conn.close()
        return 1

    return unit


async def run_for(unit: Unit, seconds: float, server_cpu: Callable[[], float]) -> dict[str, float]:
    items = units = 0
    server0 = server_cpu()
    own0 = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        items += await unit()
        units += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    own = time.process_time() - own0
    server = server_cpu() - server0
    return {
        "items": items,
        "units": units,
        "elapsed_s": now - start,
        "cpu_s": server,
        "loadgen_cpu_s": own,
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    server_cpu = process_cpu_clock(args.server_pid)
    scenario, raw, port = args.scenario, args.raw, args.port
    conn: LoadConnection | None = None
    if scenario == "connections":
        unit = _connections(port, raw)
    elif scenario == "handshakes":
        unit = _handshakes(port, raw)
    else:
        conn = await connect(port, raw, deflate=scenario == "compressed")
        text = TEXT.encode()
        if scenario == "latency":
            unit = _latency(conn, text, args.latency_batch)
        elif scenario == "pipelined":
            unit = _message(conn, 0x1, text, args.pipelined_batch)
        elif scenario == "typed":
            unit = _message(conn, 0x1, typed_sample()[1].encode(), args.pipelined_batch)
        elif scenario == "compressed":
            sample = typed_sample()[1].encode()
            unit = _message(conn, 0x1, sample, args.pipelined_batch, compress=True)
        elif scenario == "mib":
            unit = _message(conn, 0x2, os.urandom(MIB), 1, MIB)
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
    if args.warmup > 0:
        await run_for(unit, args.warmup, server_cpu)
    gc.collect()
    stats = await run_for(unit, args.seconds, server_cpu)
    result: dict[str, Any] = {}
    if conn is not None:
        try:
            await conn.close()
        except Exception as exc:
            result["close_error"] = f"{type(exc).__name__}: {exc}"
    rate = stats["items"] / stats["elapsed_s"]
    if scenario == "mib":
        rate /= 1e6
    result.update(stats, rate=rate, unit=SCENARIO_UNITS[scenario])
    result["cpu_share"] = stats["cpu_s"] / stats["elapsed_s"]
    result["loadgen_share"] = stats["loadgen_cpu_s"] / stats["elapsed_s"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--raw", action="store_true", help="length-prefixed records, no WebSocket")
    parser.add_argument("--seconds", type=float, default=0.75)
    parser.add_argument("--warmup", type=float, default=0.25)
    parser.add_argument("--latency-batch", type=int, default=32)
    parser.add_argument("--pipelined-batch", type=int, default=5000)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args(argv)
    pin(args.cpu)
    out: dict[str, Any] = {"scenario": args.scenario, "role": "server"}
    budget = args.warmup + args.seconds + 15
    try:
        out.update(asyncio.run(asyncio.wait_for(_main(args), budget)))
        out["ok"] = True
    except BaseException as exc:  # report everything, even KeyboardInterrupt
        out["ok"] = False
        out["error"] = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, TimeoutError) and not str(exc):
            out["error"] = f"TimeoutError: gave up after {budget:.0f} s"
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
