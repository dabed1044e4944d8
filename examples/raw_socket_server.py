"""Raw socket server: read the HTTP request yourself, then hand the socket over.

A plain asyncio accept loop on a listening socket, with no web framework. For
each connection it reads the HTTP request head itself and parses the request
line and the headers, then passes the socket, the headers and the target to
``AioServer.accept(sock=..., headers=..., path=...)``. That call validates the
upgrade request strictly (a missing or malformed ``Sec-WebSocket-Key`` is
answered with 400 and raises ``HandshakeError``), answers 101 and runs the
WebSocket on the socket. The first line of output is the server's URL.

    python examples/raw_socket_server.py                  # port 8000
    python examples/raw_socket_server.py --port 0 --once  # 1 client, any port
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket

import simple_websocket
from simple_websocket import AioServer

#: The largest request head read, in bytes.
MAX_HEAD_SIZE = 16 * 1024
#: Seconds a client has to send its request head.
OPEN_TIMEOUT = 10.0
REASONS = {400: "Bad Request", 431: "Request Header Fields Too Large"}

Headers = list[tuple[str, str]]


class BadRequest(Exception):
    """The request head could not be read or parsed; ``status`` was sent."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


async def read_request_head(sock: socket.socket) -> bytes:
    """Read the HTTP request head from ``sock`` (without the final blank line).

    A client must wait for the 101 response before it sends frames (RFC 6455,
    4.1), so nothing may follow the head in what was read.
    """
    loop = asyncio.get_running_loop()
    data = b""
    while True:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise ConnectionResetError(
                "the client closed the connection before its request"
            )
        data += chunk
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            if end + 4 != len(data):
                raise BadRequest(400, "data after the request head")
            return data[:end]
        if len(data) > MAX_HEAD_SIZE:
            raise BadRequest(431, "request head too large")


def parse_request_head(head: bytes) -> tuple[str, str, Headers]:
    """Return the method, target and headers (as pairs) of a request head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] != "HTTP/1.1":
        raise BadRequest(400, f"malformed request line {lines[0]!r}")
    method, target, _ = parts
    if method != "GET":
        raise BadRequest(400, f"method must be GET, not {method}")
    headers: Headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, f"malformed header line {line!r}")
        headers.append((name, value.strip()))
    return method, target, headers


async def send_error(sock: socket.socket, status: int, detail: str) -> None:
    """Answer with a plain-text HTTP error and close the socket."""
    body = f"{detail}\n".encode()
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    with sock:
        await asyncio.get_running_loop().sock_sendall(
            sock, head.encode("latin-1") + body
        )


async def handle(
    sock: socket.socket, peer: str, open_ws: set[AioServer]
) -> bool:
    """Serve one TCP connection; return ``True`` when a WebSocket ran on it."""
    try:
        async with asyncio.timeout(OPEN_TIMEOUT):
            head = await read_request_head(sock)
        _, target, headers = parse_request_head(head)
    except BadRequest as exc:
        print(f"{peer} bad request: {exc.detail} (HTTP {exc.status})")
        with contextlib.suppress(OSError):
            await send_error(sock, exc.status, exc.detail)
        return False
    except (OSError, TimeoutError) as exc:
        print(f"{peer} no request: {exc!r}")
        sock.close()
        return False

    try:
        # headers may be a dict or (name, value) pairs; path is the request
        # target.
        ws = await AioServer.accept(sock=sock, headers=headers, path=target)
    except simple_websocket.HandshakeError as exc:
        # The 400 (or 426) response was sent and the socket closed.
        print(f"{peer} rejected: {exc.detail} (HTTP {exc.status_code})")
        return False

    print(f"{peer} connected to {target} (mode={ws.mode})")
    open_ws.add(ws)
    try:
        async with ws:  # closes with 1000 on exit (1011 if the block raised)
            async for message in ws:
                print(f"{peer} echo {message!r}")
                await ws.send(message)
    finally:
        open_ws.discard(ws)
    print(f"{peer} closed with code {ws.close_reason}")
    return True


async def main(
    host: str = "127.0.0.1", port: int = 8000, once: bool = False
) -> None:
    """Accept connections until cancelled, or one WebSocket ended (``once``)."""
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    open_ws: set[AioServer] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def serve_one(sock: socket.socket, peer: str) -> None:
        if await handle(sock, peer, open_ws) and once:
            finished.set()

    async def accept_forever(listener: socket.socket) -> None:
        while True:
            sock, addr = await loop.sock_accept(listener)
            task = asyncio.create_task(serve_one(sock, f"{addr[0]}:{addr[1]}"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    with socket.create_server((host, port)) as listener:
        listener.setblocking(False)
        print(
            f"listening on ws://{host}:{listener.getsockname()[1]}/", flush=True
        )
        acceptor = asyncio.create_task(accept_forever(listener))
        try:
            # Never set without --once: serve until Ctrl+C.
            await finished.wait()
        finally:
            acceptor.cancel()
            # Close the open WebSockets with 1001 and let their handlers finish.
            await asyncio.gather(
                *(
                    ws.close(1001, "Server shutting down")
                    for ws in list(open_ws)
                ),
                return_exceptions=True,
            )
            if tasks:
                await asyncio.wait(tasks, timeout=5)
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
        "--once", action="store_true", help="exit after the first WebSocket"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.host, args.port, args.once))
