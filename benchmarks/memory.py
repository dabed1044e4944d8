"""Memory per idle connection: ours, websockets and picows, client and server side.

Run from the repository root::

    python -m benchmarks.memory [--connections N] [--rounds R] [--candidates a,b]

Each measurement holds ``N`` open, idle WebSocket connections in one process and
reports how much that process's resident set (``VmRSS``) grew, divided by ``N``:

* **server side**: the candidate's echo server (the same as in the benchmarks,
  ``benchmarks/servers.py``) runs in its own process; a second process opens ``N``
  minimal raw clients (upgrade request, 101, then silence). The server's RSS is read
  before the clients connect and once all are upgraded.
* **client side**: a minimal raw server (it answers every upgrade with 101, then
  stays silent) runs in its own process; the candidate's client opens ``N``
  connections to it, one after another, keeping each open. The client's RSS is read
  before the first connection (after importing the library and opening and closing
  one connection, so that lazily imported modules and one-off caches are counted
  before) and after the last.

Kernel socket buffers are not in the RSS; the process's descriptors are. The report
gives the median over the rounds (KiB per connection), lower is better.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from .common import BACKLOG, CALLBACKS, OURS, PICOWS, REPO, SRC, import_simple_websocket

CANDIDATES = {
    OURS: "simple_websocket (ours)",
    CALLBACKS: "ours: MessageHandler callbacks",
    "websockets": "websockets",
    PICOWS: "picows",
}
ROLES = ("client", "server")
UPGRADE_RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: %s\r\n\r\n"
)


def rss() -> int:
    """This process's resident set size in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


# -- the idle peers ------------------------------------------------------------------


class _IdleClient(asyncio.Protocol):
    """Sends an upgrade request, waits for the 101, then sends nothing."""

    def __init__(self, port: int) -> None:
        key = base64.b64encode(os.urandom(16))
        self.request = (
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (port, key)
        )
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
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
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionResetError("lost before the 101"))


class _SilentServer(asyncio.Protocol):
    """Answers an upgrade request with 101, then reads and ignores everything."""

    def __init__(self) -> None:
        self.head = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.head is None:
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        key = b""
        for line in self.head[:end].split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        import hashlib

        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        assert self.transport is not None
        self.transport.write(UPGRADE_RESPONSE % accept)
        self.head = None  # type: ignore[assignment]


async def _idle_clients(port: int, count: int) -> None:
    """Child process: ``count`` idle raw clients; ``ready`` on stdout; exit at EOF."""
    loop = asyncio.get_running_loop()
    transports = []
    for start in range(0, count, 100):
        made = await asyncio.gather(
            *(
                loop.create_connection(lambda: _IdleClient(port), "127.0.0.1", port)
                for _ in range(min(100, count - start))
            )
        )
        await asyncio.gather(*(protocol.upgraded for _, protocol in made))
        transports += [t for t, _ in made]
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    for t in transports:
        t.abort()


async def _silent_server() -> None:
    """Child process: the 101-then-silence server; prints its port; exits at EOF."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_SilentServer, "127.0.0.1", 0, backlog=BACKLOG)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


# -- the candidates' clients ---------------------------------------------------------


async def _open_clients(candidate: str, url: str, count: int) -> dict[str, Any]:
    """Client side: open ``count`` idle connections with ``candidate``'s client."""
    held: list[Any] = []
    if candidate == OURS:
        sw = import_simple_websocket(SRC)

        async def open_() -> Any:
            return await sw.AioClient.connect(url, compression=False, max_message_size=None)

        async def close(ws: Any) -> None:
            ws.transport.abort()  # the silent server would not answer a close frame

        version = sw.__version__
    elif candidate == "websockets":
        import websockets
        from websockets.asyncio.client import connect

        async def open_() -> Any:
            return await connect(url, compression=None, max_size=None, ping_interval=None)

        async def close(ws: Any) -> None:
            ws.transport.abort()

        version = websockets.__version__
    elif candidate == PICOWS:
        import picows
        from picows import WSListener, ws_connect

        async def open_() -> Any:
            transport, _ = await ws_connect(WSListener, url, use_aiofastnet=False)
            return transport

        async def close(ws: Any) -> None:
            ws.disconnect(graceful=False)

        version = picows.__version__
    else:
        raise ValueError(f"unknown candidate {candidate!r}")
    # One connection first: imports done on first use and one-off caches are not
    # counted per connection.
    await close(await open_())
    await asyncio.sleep(0.05)
    gc.collect()
    before = rss()
    for _ in range(count):
        held.append(await open_())
    gc.collect()
    after = rss()
    for ws in held:
        with contextlib.suppress(Exception):
            await close(ws)
    return {"before": before, "after": after, "version": version}


# -- the harness ---------------------------------------------------------------------


def _start(cmd: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"{' '.join(cmd[2:])} did not start")
    return proc, line


def _stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(OSError):
        proc.stdin.close()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(candidate: str, role: str, count: int) -> float:
    """Bytes of RSS per idle connection of ``candidate`` on ``role``'s side."""
    py = sys.executable
    if role == "server":
        server, line = _start([py, "-m", "benchmarks.servers", candidate, "latency"])
        try:
            info = json.loads(line)
            gc_settle = rss_of(info["pid"])
            clients, ready = _start(
                [py, "-m", "benchmarks.memory", "--idle-clients", str(info["port"]), str(count)]
            )
            try:
                if ready.strip() != "ready":
                    raise RuntimeError(f"idle clients: {ready!r}")
                after = rss_of(info["pid"])
            finally:
                _stop(clients)
        finally:
            _stop(server)
        return (after - gc_settle) / count
    silent, line = _start([py, "-m", "benchmarks.memory", "--silent-server"])
    try:
        port = json.loads(line)["port"]
        out = subprocess.run(
            [py, "-m", "benchmarks.memory", "--client", candidate, str(port), str(count)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
    finally:
        _stop(silent)
    result = json.loads(out.strip().splitlines()[-1])
    return float(result["after"] - result["before"]) / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--roles", default=",".join(ROLES))
    # Internal: the child processes.
    parser.add_argument("--idle-clients", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--silent-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    raise_nofile(2 * args.connections + 256)
    if args.idle_clients:
        raise_nofile(args.idle_clients[1] + 256)
        asyncio.run(_idle_clients(*args.idle_clients))
        return 0
    if args.silent_server:
        raise_nofile(100_000)
        asyncio.run(_silent_server())
        return 0
    if args.client:
        candidate, port, count = args.client[0], int(args.client[1]), int(args.client[2])
        raise_nofile(count + 256)
        result = asyncio.run(_open_clients(candidate, f"ws://127.0.0.1:{port}/", count))
        print(json.dumps(result), flush=True)
        return 0
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    results: dict[str, dict[str, list[float]]] = {c: {r: [] for r in roles} for c in candidates}
    for rnd in range(args.rounds):
        for role in roles:
            for cand in candidates[rnd % len(candidates) :] + candidates[: rnd % len(candidates)]:
                if cand == CALLBACKS and role == "client":
                    continue  # a server-side way of handling messages
                per = measure(cand, role, args.connections)
                results[cand][role].append(per)
                print(
                    f"[round {rnd + 1}/{args.rounds}] {role:<6} {CANDIDATES[cand]:<24} "
                    f"{per / 1024:6.1f} KiB per idle connection",
                    file=sys.stderr,
                    flush=True,
                )
    print(
        f"\nRSS per idle connection ({args.connections} connections, median of "
        f"{args.rounds} rounds [min - max], KiB; lower is better)\n"
    )
    print("| candidate | " + " | ".join(f"{r} side" for r in roles) + " |")
    print("|---|" + "---:|" * len(roles))
    for cand in candidates:
        cells = []
        for role in roles:
            values = [v / 1024 for v in results[cand][role]]
            if not values:
                cells.append("-")
                continue
            cells.append(f"{statistics.median(values):.1f} [{min(values):.1f} - {max(values):.1f}]")
        print(f"| {CANDIDATES[cand]} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
