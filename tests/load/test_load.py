"""Many connections in one process, and a fast producer facing a slow consumer.

The connection counts are reduced by default (2,000 idle, 200 active) so that CI
runs them in seconds; the full size (10,000 idle, 1,000 active) runs with::

    SIMPLE_WEBSOCKET_LOAD=full .venv/bin/pytest tests/load -m load_full -s

Every test prints what it measured (run with ``-s`` to see it).
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import sys
from pathlib import Path
from typing import Any

import pytest

import simple_websocket
from simple_websocket import AioClient
from tests.asyncio.rawpeer import wait_for_condition

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("SIMPLE_WEBSOCKET_LOAD") == "full"

pytestmark = pytest.mark.slow

SIZES = {"reduced": (2_000, 200), "full": (10_000, 1_000)}
MESSAGES_PER_ACTIVE = 20


def rss() -> int:
    """This process's resident set size in bytes (VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")  # pragma: no cover


def raise_nofile(needed: int) -> None:
    """Raise RLIMIT_NOFILE to ``needed`` descriptors, or skip the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:  # only a privileged process may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return
        except (ValueError, OSError):
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed} descriptors needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class IdleClients:
    """``count`` idle clients held by a child process (see :mod:`.idle_clients`)."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> IdleClients:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.load.idle_clients",
            str(self.port),
            str(self.count),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        assert line == f"ready {self.count}\n".encode(), line
        return self

    async def lost(self) -> int:
        """How many of the idle connections were dropped."""
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(b"check\n")
        line = await self.proc.stdout.readline()
        return int(line.split()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def in_batches(count: int, batch: int, factory: Any) -> list[Any]:
    """Run ``factory()`` ``count`` times, ``batch`` at a time (the listen backlog
    of ``serve()`` is 100: more concurrent connects only wait for SYN retries)."""
    results: list[Any] = []
    while len(results) < count:
        n = min(batch, count - len(results))
        results += await asyncio.gather(*(factory() for _ in range(n)))
    return results


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "size",
    [
        "reduced",
        pytest.param(
            "full",
            marks=[
                pytest.mark.load_full,
                pytest.mark.skipif(
                    not FULL, reason="full-size load: SIMPLE_WEBSOCKET_LOAD=full or -m load_full"
                ),
            ],
        ),
    ],
)
async def test_idle_and_active_connections_in_one_process(size: str) -> None:
    n_idle, n_active = SIZES[size]
    # The server ends of all connections and both ends of the active ones live in
    # this process (the idle clients run in a child process), plus some spare.
    raise_nofile(n_idle + 2 * n_active + 256)
    loop = asyncio.get_running_loop()

    async def talk(i: int, ws: Any) -> int:
        for j in range(MESSAGES_PER_ACTIVE):
            message = f"client {i} message {j} " + "x" * (j * 50)
            await ws.send(message)
            assert await ws.receive(timeout=60) == message
        await ws.close()
        return MESSAGES_PER_ACTIVE

    async with simple_websocket.serve(echo, close_timeout=1.0) as server:
        gc.collect()
        rss0 = rss()
        t0 = loop.time()
        async with IdleClients(server.port, n_idle) as idle:
            t_idle = loop.time() - t0
            gc.collect()
            rss_idle = rss()
            assert len(server.connections) == n_idle
            # The active clients connect (50 at a time, for the listen backlog), then
            # all talk at once while the idle ones stay connected.
            t1 = loop.time()
            active = await in_batches(n_active, 50, lambda: AioClient.connect(server.url))
            t_connect = loop.time() - t1
            t2 = loop.time()
            done = await asyncio.gather(*(talk(i, ws) for i, ws in enumerate(active)))
            t_active = loop.time() - t2
            assert sum(done) == n_active * MESSAGES_PER_ACTIVE
            assert await idle.lost() == 0
            assert len(server.connections) == n_idle
    per_conn = (rss_idle - rss0) / n_idle
    print(
        f"\n[load {size}] {n_idle} idle connections opened in {t_idle:.1f} s "
        f"({n_idle / t_idle:.0f}/s); server RSS +{(rss_idle - rss0) / 2**20:.1f} MiB = "
        f"{per_conn / 1024:.1f} KiB per idle connection (the idle clients run in a "
        f"child process); {n_active} active clients connected in {t_connect:.1f} s, then "
        f"{MESSAGES_PER_ACTIVE} echoes each, all at once, in {t_active:.1f} s "
        f"({n_active * MESSAGES_PER_ACTIVE * 2 / t_active:.0f} messages/s) and closed; "
        f"peak RSS {rss() / 2**20:.0f} MiB"
    )
    # A generous bound: a buffer leaked per connection would show here.
    assert per_conn < 64 * 1024


@pytest.mark.timeout(120)
@pytest.mark.parametrize("direction", ["server-to-client", "client-to-server"])
async def test_slow_consumer_keeps_rss_bounded(direction: str) -> None:
    """A producer that sends as fast as it can to a consumer that does not read:
    send() blocks on backpressure instead of buffering everything."""
    size = 1024 * 1024
    count = 300  # 300 MiB produced in total
    message = os.urandom(size)
    progress = {"sent": 0}
    peak = {"rss": 0}

    def sample() -> None:
        peak["rss"] = max(peak["rss"], rss())

    async def produce(ws: Any) -> None:
        for _ in range(count):
            await ws.send(message)
            progress["sent"] += 1
            sample()

    async def consume(ws: Any, blocked: asyncio.Event) -> None:
        await blocked.wait()
        for _ in range(count):
            assert await ws.receive(timeout=60) == message
            sample()
            # A slow consumer: hand the loop over between messages.
            await asyncio.sleep(0)

    server_ws: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    finished = asyncio.Event()

    async def handler(ws: Any) -> None:
        server_ws.set_result(ws)
        await finished.wait()

    async with simple_websocket.serve(
        handler, max_queue=4, compression=False, max_message_size=None
    ) as server:
        client = await AioClient.connect(server.url, max_queue=4, compression=False)
        theirs = await server_ws
        producer_ws, consumer_ws = (
            (theirs, client) if direction == "server-to-client" else (client, theirs)
        )
        gc.collect()
        base = rss()
        blocked = asyncio.Event()
        producer = asyncio.create_task(produce(producer_ws))
        # Wait until the producer is stuck on backpressure: the consumer stopped
        # reading (its queue is full) and the producer's write buffer is full.
        transport = producer_ws.transport
        high = transport.get_write_buffer_limits()[1]
        await wait_for_condition(
            lambda: (
                producer.done()
                or (consumer_ws._inbox.paused and transport.get_write_buffer_size() > high)
            )
        )
        assert progress["sent"] < count // 4, "nothing stopped the producer"
        stuck_at = progress["sent"]
        blocked.set()
        await consume(consumer_ws, blocked)
        await producer
        grown = peak["rss"] - base
        print(
            f"\n[slow consumer {direction}] {count} x 1 MiB produced; the producer "
            f"blocked after {stuck_at} messages; peak RSS +{grown / 2**20:.0f} MiB"
        )
        assert grown < 96 * 2**20, f"RSS grew by {grown / 2**20:.0f} MiB"
        finished.set()
        await client.close()
