"""A child process that holds many idle WebSocket client connections.

Run as ``python -m tests.load.idle_clients PORT COUNT``: opens ``COUNT`` minimal
clients to ``127.0.0.1:PORT`` (upgrade request, 101, then silence), prints
``ready COUNT``, then answers each ``check`` line on stdin with ``lost N`` (how many
connections the server dropped) and exits, aborting them all, at EOF.

A separate process has its own descriptor table, so the test process only holds the
server ends (RLIMIT_NOFILE is per process).
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import sys


class IdleClient(asyncio.Protocol):
    """Sends the upgrade request, waits for the 101, then sends nothing."""

    def __init__(self, port: int) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.request = (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost = False
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done():
            self.buffer += data
            if b"\r\n\r\n" in self.buffer:
                if self.buffer.startswith(b"HTTP/1.1 101 "):
                    self.upgraded.set_result(None)
                else:
                    self.upgraded.set_exception(RuntimeError(self.buffer[:100]))

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("lost before the 101"))


async def open_idle(port: int) -> IdleClient:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: IdleClient(port), "127.0.0.1", port)
    await protocol.upgraded
    return protocol


async def main(port: int, count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = count + 256
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    clients: list[IdleClient] = []
    # 50 at a time: serve()'s listen backlog is 100.
    while len(clients) < count:
        n = min(50, count - len(clients))
        clients += await asyncio.gather(*(open_idle(port) for _ in range(n)))
    print(f"ready {len(clients)}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"check":
            print(f"lost {sum(c.lost for c in clients)}", flush=True)
    for client in clients:
        if client.transport is not None:
            client.transport.abort()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
