"""Smoke-run every example in a subprocess, as a user would.

Each server example is started on a free port with ``--once``; its first line of
output carries its URL, which tells that it is listening. ``echo_client.py`` is then
run against it, and both processes must exit by themselves with status 0. Every step
is bounded; a process still running at the end of a test is killed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from .examples_support import EXAMPLES, STEP_TIMEOUT, Result, finish, run, spawn

pytestmark = pytest.mark.timeout(60)


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    first_line: str
    url: str
    host: str
    port: int

    async def wait(self) -> Result:
        return await finish(self.proc, self.first_line)


@asynccontextmanager
async def server(script: str, *args: str) -> AsyncIterator[Server]:
    """Start a server example on a free port and yield once it printed its URL."""
    proc = await spawn(script, "--host", "127.0.0.1", "--port", "0", "--once", *args)
    try:
        assert proc.stdout is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), STEP_TIMEOUT)).decode()
        except TimeoutError:
            line = ""
        match = re.search(r"ws://(127\.0\.0\.1):(\d+)(/\S*)", line)
        if match is None:
            proc.kill()
            pytest.fail(f"{script} printed no URL first:\n{await finish(proc, line)}")
        yield Server(proc, line, match.group(0), match.group(1), int(match.group(2)))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def http_exchange(host: str, port: int, request: bytes) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), STEP_TIMEOUT)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), STEP_TIMEOUT)
    finally:
        writer.close()


def upgrade_request(path: str, *, key: str | None = "auto") -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
    ]
    if key == "auto":
        key = base64.b64encode(os.urandom(16)).decode()
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def check_echo(srv: Server, count: int = 3) -> tuple[Result, Result]:
    """Run echo_client.py against ``srv``; both must succeed and the server exit."""
    client = await run("echo_client.py", "--url", srv.url, "--count", str(count))
    assert client.returncode == 0, client
    for i in range(1, count + 1):
        assert f"sent 'message {i}', received 'message {i}'" in client.stdout, client
    assert "ping round trip:" in client.stdout, client
    assert "closed with code 1000" in client.stdout, client
    assert "Traceback" not in client.stderr, client

    result = await srv.wait()
    assert result.returncode == 0, result
    for i in range(1, count + 1):
        assert f"echo 'message {i}'" in result.stdout, result
    assert "server stopped" in result.stdout, result
    assert "Traceback" not in result.stderr, result
    return client, result


# -- the servers --------------------------------------------------------------------


async def test_echo_server():
    async with server("echo_server.py") as srv:
        assert srv.url.endswith("/")
        # Not a WebSocket request: serve() answers 426 and keeps serving.
        response = await http_exchange(srv.host, srv.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 426 "), response
        _, result = await check_echo(srv)
        assert "closed with code 1000" in result.stdout, result


async def test_aiohttp_server():
    async with server("aiohttp_server.py") as srv:
        assert srv.url.endswith("/ws")
        # The plain HTTP page, then a non-WebSocket request to the WebSocket route.
        page = await http_exchange(
            srv.host, srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert page.startswith(b"HTTP/1.1 200 "), page
        rejected = await http_exchange(srv.host, srv.port, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        assert rejected.startswith(b"HTTP/1.1 426 "), rejected
        assert rejected.count(b"HTTP/1.1") == 1, rejected  # nothing after the 426
        _, result = await check_echo(srv)
    assert "mode=aiohttp" in result.stdout, result
    assert "rejected a request" in result.stdout, result
    # The handler returns a web.Response: aiohttp has nothing to complain about.
    assert "Missing return statement" not in result.stderr, result
    assert "Error handling request" not in result.stderr, result


@pytest.mark.parametrize("asgi_server", ["uvicorn", "hypercorn"])
async def test_asgi_server(asgi_server):
    async with server("asgi_server.py", "--server", asgi_server) as srv:
        assert f"({asgi_server})" in srv.first_line
        response = await http_exchange(
            srv.host, srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert response.startswith(b"HTTP/1.1 426 "), response
        await check_echo(srv)


async def test_raw_socket_server():
    async with server("raw_socket_server.py") as srv:
        # A handshake without Sec-WebSocket-Key: accept(sock=...) answers 400.
        response = await http_exchange(srv.host, srv.port, upgrade_request("/", key=None))
        assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n"), response
        assert b"Sec-WebSocket-Key" in response, response
        # A malformed request line: the example's own parser answers 400.
        response = await http_exchange(srv.host, srv.port, b"HELLO\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n"), response
        _, result = await check_echo(srv)
    assert "rejected: missing Sec-WebSocket-Key header (HTTP 400)" in result.stdout, result
    assert "bad request: malformed request line" in result.stdout, result
    assert "mode=custom" in result.stdout, result


# -- the client on its own ------------------------------------------------------------


async def test_echo_client_without_server_fails_cleanly():
    with socket.socket() as sock:  # a port nobody listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await run("echo_client.py", "--url", f"ws://127.0.0.1:{port}/", "--timeout", "5")
    assert result.returncode == 1, result
    assert "could not connect" in result.stderr, result
    assert "Traceback" not in result.stderr, result


# -- the demo and the command lines ---------------------------------------------------


async def test_demo():
    result = await run("demo.py")
    assert result.returncode == 0, result
    assert "server listening on ws://127.0.0.1:" in result.stdout, result
    assert "demo done" in result.stdout, result
    assert "Traceback" not in result.stderr, result
    # The client lived through the restart and the outbox was delivered.
    assert "client: 1 message waiting in the outbox" in result.stdout, result
    assert "channel='news' connection=2" in result.stdout, result
    assert "outbox now 0" in result.stdout, result


@pytest.mark.parametrize(
    "script", sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
)
async def test_help(script):
    result = await run(script, "--help")
    assert result.returncode == 0, result
    assert "usage:" in result.stdout, result
