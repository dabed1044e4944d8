"""Decompression bombs against our servers with their default options.

Twenty clients at once each send one permessage-deflate message of about 300 KiB
that inflates to 300 MiB of zeros, while another client keeps exchanging messages
with the same server. The server runs in a process of its own, so that its peak
resident set (``VmHWM``, reset just before the attack) measures what the attack
cost. Every bomb must be refused with 1009 and the other client served throughout.

Bounds: ``serve()`` accepts 1 MiB per message by default, so the attack costs it
little more than its read buffers (32 MiB allowed). The 1.1 entry points (``sock=``,
``aiohttp=``) inflate at most 64 MiB per message when ``max_message_size`` is not
given; a few connections inflate at the same time and the allocator keeps some of
what they freed (192 MiB allowed: three times the cap). Under an ASGI server the
server inflates, within its own limit: uvicorn's ``ws_max_size``, 16 MiB per
connection by default (20 x 16 MiB + 64 MiB allowed).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from simple_websocket import AioClient
from tests.asyncio.rawpeer import BINARY
from tests.conformance.harness import close_code_of, open_peer
from tests.conformance.test_abuse import MIB, deflated_zeros

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

BOMBS = 20
BOMB_SIZE = 300 * MIB

#: Peak resident set growth allowed during the attack, per server kind.
BOUNDS = {"serve": 32 * MIB, "sock": 192 * MIB, "aiohttp": 192 * MIB, "asgi": 384 * MIB}


def status(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` memory field, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


def reset_peak(pid: int) -> None:
    """Reset ``VmHWM`` of process ``pid`` to its current resident set."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


@contextlib.asynccontextmanager
async def server_process(kind: str) -> AsyncIterator[tuple[int, int]]:
    """Yield ``(pid, port)`` of a ``tests.load.bomb_server`` child running ``kind``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.load.bomb_server",
        kind,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.startswith(b"port "), line
        yield proc.pid, int(line.split()[1])
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def bomb(port: int, frame_payload: bytes) -> int | None:
    """Send one bomb; return the close code the server failed the connection with."""
    peer = await open_peer(port, extensions="permessage-deflate")
    assert peer.deflate
    try:
        with contextlib.suppress(ConnectionError):
            await peer.write(peer.frame(BINARY, frame_payload, rsv1=True))
        frame = await peer.expect_close()
        return close_code_of(frame)
    finally:
        peer.abort()


@pytest.mark.parametrize("kind", ["serve", "sock", "aiohttp", "asgi"])
async def test_twenty_bombs_at_once_cost_bounded_memory(kind: str) -> None:
    payload = deflated_zeros(BOMB_SIZE)
    assert len(payload) < BOMB_SIZE // 500
    async with server_process(kind) as (pid, port):
        url = f"ws://127.0.0.1:{port}/"
        async with AioClient.connect(url) as other:
            # Warm up: every code path the attack takes is imported and allocated.
            await other.send("warm-up")
            assert await other.receive(timeout=10) == "warm-up"
            survivor = await open_peer(port, extensions="permessage-deflate")
            await survivor.write(survivor.frame(BINARY, deflated_zeros(MIB // 2), rsv1=True))
            survivor.abort()
            base = status(pid, "VmRSS")
            reset_peak(pid)

            attack = asyncio.gather(*(bomb(port, payload) for _ in range(BOMBS)))
            served = 0
            while not attack.done():
                message = f"still served {served}"
                await other.send(message)
                assert await other.receive(timeout=10) == message
                served += 1
            codes = await attack
            peak = status(pid, "VmHWM")
            # And after the attack too.
            await other.send("after")
            assert await other.receive(timeout=10) == "after"
    grown = peak - base
    print(f"{kind}: {BOMBS} bombs, peak RSS +{grown / MIB:.1f} MiB, {served} echoes meanwhile")
    assert codes == [1009] * BOMBS, codes
    assert served > 0
    assert grown < BOUNDS[kind], f"{kind}: peak RSS grew by {grown / MIB:.0f} MiB"
