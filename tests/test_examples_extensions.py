"""Smoke-run the examples of the extension modules in subprocesses, as a user would.

``typed_server.py`` and ``typed_client.py`` are run as a pair; ``reconnecting_bot.py``
in its ``--demo`` mode, and as a bot against its ``--serve`` mode whose process is
killed and started again on the same port; ``stream_pipeline.py`` on its own. Every
step is bounded by ``STEP_TIMEOUT``, synchronisation is done on lines of output (no
sleeps), and a process still running at the end of a test is killed.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from .examples_support import STEP_TIMEOUT, Result, finish, run, spawn

URL = re.compile(r"ws://(127\.0\.0\.1):(\d+)/")

pytestmark = pytest.mark.timeout(60)


async def read_until(proc: asyncio.subprocess.Process, wanted: Callable[[str], bool]) -> str:
    """Read lines of ``proc``'s output until one satisfies ``wanted``; return them all."""
    assert proc.stdout is not None
    seen = ""
    while True:
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), STEP_TIMEOUT)).decode()
        except TimeoutError:
            line = ""
        seen += line
        if not line:  # end of output, or nothing for STEP_TIMEOUT
            proc.kill()
            pytest.fail(f"{proc.args}: the expected line never came:\n{await finish(proc, seen)}")
        if wanted(line):
            return seen


@asynccontextmanager
async def running(script: str, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``script``; kill it on the way out if it is still running."""
    proc = await spawn(script, *args)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.stderr, result
    assert "Task exception was never retrieved" not in result.stderr, result
    assert "was never awaited" not in result.stderr, result


# -- typed channels -------------------------------------------------------------------------


async def test_typed_client_and_server():
    async with running("typed_server.py", "--host", "127.0.0.1", "--port", "0", "--once") as srv:
        first = await read_until(srv, lambda line: True)
        match = URL.search(first)
        assert match is not None, first
        client = await run("typed_client.py", "--url", match.group(0), "--ticks", "6")
        server = await finish(srv, first)

    assert client.returncode == 0, client
    no_traceback(client)
    out = client.stdout
    # Request/response: each answer carries its request's id.
    assert "quote ACME = 12.5 (request id 1)" in out, client
    assert "error for request 2: unknown symbol 'NOPE'" in out, client
    # An object of the wrong type is refused before anything is written.
    assert "refused before sending: EncodeError for a Tick" in out, client
    assert "subscribed to ['ACME', 'GLOBEX'] (request id 3)" in out, client
    assert "quote GLOBEX = 101.0 (request id 4)" in out, client
    # The invalid raw message was answered with an Error event; the connection stayed.
    assert "server says: invalid message: Invalid JSON" in out, client
    # The discriminated union decoded the ticks, in the order they were sent, none
    # lost to the requests that were read meanwhile.
    seqs = [int(s) for s in re.findall(r"^tick (\d+) (?:ACME|GLOBEX) ", out, re.MULTILINE)]
    assert len(seqs) >= 6, client
    assert seqs == list(range(1, len(seqs) + 1)), client
    assert f"received {len(seqs)} ticks; closed with code 1000" in out, client

    assert server.returncode == 0, server
    no_traceback(server)
    for line in (
        "get_quote ACME (id 1)",
        "get_quote NOPE (id 2): unknown",
        "subscribe ['ACME', 'GLOBEX'] (id 3)",
        "get_quote GLOBEX (id 4)",
        "invalid message 'hello?': Invalid JSON",
        "closed with code 1000",
        "server stopped",
    ):
        assert line in server.stdout, server
    # The client's refused Tick never reached the server.
    assert "Tick" not in server.stdout, server


async def test_typed_client_without_server_fails_cleanly():
    with socket.socket() as sock:  # a port nobody listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await run("typed_client.py", "--url", f"ws://127.0.0.1:{port}/", "--timeout", "5")
    assert result.returncode == 1, result
    assert "could not connect" in result.stderr, result
    assert "Traceback" not in result.stderr, result


# -- reconnecting client --------------------------------------------------------------------


def index(lines: list[str], text: str, start: int = 0) -> int:
    """The index of the first line from ``start`` that contains ``text``."""
    for i in range(start, len(lines)):
        if text in lines[i]:
            return i
    raise AssertionError(f"no line with {text!r} after line {start}")


async def test_reconnecting_bot_demo():
    result = await run("reconnecting_bot.py", "--demo", "--host", "127.0.0.1", "--port", "0")
    assert result.returncode == 0, result
    no_traceback(result)
    lines = result.lines()
    assert URL.search(lines[0]) and lines[0].startswith("server listening on "), result
    first = index(lines, "connected (connection 1)")
    assert index(lines, "subscribed to ['prices', 'news']", first) > first
    lost = index(lines, "connection lost (code 1001, closed); reconnecting")
    queued = index(lines, "sent 3 notes while the server is down; outbox: 3", lost)
    back = index(lines, "server started again", queued)
    # on_connect resubscribes on the new connection before the outbox is sent...
    second = index(lines, "connected (connection 2)", back)
    resubscribed = index(lines, "subscribed to ['prices', 'news']", second)
    # ...then the notes handed to send() during the outage: once each, in order.
    notes = [index(lines, f"server heard: note {i}", resubscribed) for i in (1, 2, 3)]
    assert notes == sorted(notes), result
    assert sum("server heard:" in line for line in lines) == 3, result
    assert "done: 6 ticks over 2 connections (1 reconnects" in lines[-1], result
    # The backoff logged its attempts while the server was down.
    assert "WARNING simple_websocket: connection attempt" in result.stderr, result
    assert "retrying in" in result.stderr, result


async def test_reconnecting_bot_survives_a_server_process_restart():
    # Two ticks every 50 ms: the bot needs about a second for its 40 ticks, so the first
    # server is killed long before the bot could be done with it.
    serve = ("reconnecting_bot.py", "--serve", "--host", "127.0.0.1", "--interval", "0.05")
    async with running(*serve, "--port", "0") as first:
        line = await read_until(first, lambda line: True)
        match = URL.search(line)
        assert match is not None, line
        url, port = match.group(0), match.group(2)
        async with running("reconnecting_bot.py", "--url", url, "--ticks", "40") as bot:
            seen = await read_until(bot, lambda line: "(1/40)" in line)
            first.kill()  # no close frame: the bot sees the TCP connection vanish
            await first.wait()
            seen += await read_until(bot, lambda line: line.startswith("connection lost"))
            assert "connection lost (code 1006, network_error)" in seen, seen
            # A new server process on the same port, which exits after one connection.
            async with running(*serve, "--port", port, "--once") as second:
                restarted = await read_until(second, lambda line: True)
                assert url in restarted, restarted
                result = await finish(bot, seen)
                server = await finish(second, restarted)

    assert result.returncode == 0, result
    no_traceback(result)
    lines = result.lines()
    second_connection = index(lines, "connected (connection 2)")
    assert index(lines, "subscribed to", second_connection) > second_connection
    assert "done: 40 ticks over 2 connections (1 reconnects" in lines[-1], result
    assert server.returncode == 0, server
    assert "server stopped" in server.stdout, server
    no_traceback(server)


# -- stream pipelines -------------------------------------------------------------------------


async def test_stream_pipeline():
    result = await run("stream_pipeline.py", "--host", "127.0.0.1", "--port", "0")
    assert result.returncode == 0, result
    no_traceback(result)
    lines = result.lines()
    assert len(URL.findall(lines[0])) == 5, result  # three feeds, the burst, the archive
    out = result.stdout

    # merge: every reading of every feed, each feed's readings in their order.
    merged = re.findall(r"^merged: (\w+) #(\d+) ", out, re.MULTILINE)
    assert len(merged) == 15, result
    for feed in ("north", "south", "east"):
        assert [int(seq) for name, seq in merged if name == feed] == [1, 2, 3, 4, 5], result
    assert "merged 15 readings from 3 feeds: east=5 north=5 south=5" in out, result

    # throttle and batch: ten readings in batches of at most four, none lost.
    assert "batch sizes: [4, 4, 2]" in out, result
    assert "batch of 4: #1-#4," in out and "batch of 2: #9-#10," in out, result

    # bridge: what was forwarded is what the archive stored.
    bridged = re.search(r"^bridged (\d+) readings above 19.0 C; last: \{", out, re.MULTILINE)
    assert bridged is not None, result
    count = int(bridged.group(1))
    assert count > 0, result
    assert f"archive: stored {count} messages, closed with code 1000" in out, result
    assert lines[-1] == "pipelines done", result


# -- subscriptions --------------------------------------------------------------------------


async def test_market_bot_demo():
    result = await run("market_bot.py", "--demo", "--ticks", "120", "--orders", "12")
    assert result.returncode == 0, result
    no_traceback(result)
    lines = result.lines()
    cut = index(lines, "network: cut")
    index(lines, "connection lost (network_error, code 1006); reconnecting", cut)
    blackhole = index(lines, "network: blackhole (no FIN)", cut)
    index(lines, "connection lost (ping_timeout, code 1011); reconnecting", blackhole)
    for channel in ("BTC-USD", "ETH-USD"):
        assert f"{channel}: 120 ticks, in order and once each: True" in result.stdout, result
    assert "orders answered once each: True" in result.stdout, result
    assert "orders run by the feed: 12 " in result.stdout, result
