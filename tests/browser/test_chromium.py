"""A real browser: headless Chromium talks to our server.

``serve()`` answers a plain GET (no ``Upgrade`` header) through ``process_request``
with an HTML page. Its JavaScript opens a WebSocket back to the same server,
exchanges text, binary and large compressible messages (Chromium offers
permessage-deflate, which the server accepts), checks what came back, and sends its
findings as a last ``report:`` message. The test asserts both sides: what the
server received and sent (and how many bytes crossed the wire, which proves the
compression), and the browser's report. Chromium is then terminated.

Needs /usr/bin/chromium (``apt-get install -y chromium chromium-driver``; CI
installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

import simple_websocket
from simple_websocket import AioServer, HTTPResponse

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(90),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]

BIG_FROM_BROWSER = "compress me " * 20_000  # 240,000 bytes
BIG_FROM_SERVER = "from the server " * 20_000  # 320,000 bytes

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>simple-websocket</title></head>
<body><pre id="log"></pre><script>
"use strict";
const results = {errors: []};
const expected = {
  bigFromServer: "from the server ".repeat(20000),
};
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.binaryType = "arraybuffer";
ws.onerror = () => results.errors.push("websocket error");
ws.onopen = () => {
  results.extensions = ws.extensions;
  ws.send("hello from chromium \\u00e9\\u{1F600}");
  ws.send(new Uint8Array([0, 1, 2, 255]).buffer);
  ws.send("compress me ".repeat(20000));
};
let received = 0;
ws.onmessage = (event) => {
  received += 1;
  if (received === 1) {
    results.textEcho = event.data;
  } else if (received === 2) {
    results.binaryEcho = Array.from(new Uint8Array(event.data));
  } else if (received === 3) {
    results.bigAck = event.data;
  } else if (received === 4) {
    results.bigFromServerOk = event.data === expected.bigFromServer;
    results.bigFromServerLength = event.data.length;
    ws.send("report:" + JSON.stringify(results));
  }
};
</script></body></html>
"""


class CountingTransport:
    """Wraps the connection's transport to count the bytes it writes."""

    def __init__(self, transport: asyncio.Transport, conn: RecordingServer) -> None:
        self._transport = transport
        self._conn = conn

    def write(self, data: bytes) -> None:
        self._conn.wire_out += len(data)
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class RecordingServer(AioServer):
    """Records the negotiated extensions and the bytes on the wire."""

    negotiated: list[str]
    wire_in = 0
    wire_out = 0

    def _attach(self, transport: Any, extensions: Any = (), subprotocol: Any = None) -> None:
        self.negotiated = [ext.name for ext in extensions]
        super()._attach(CountingTransport(transport, self), extensions, subprotocol)

    def _data_received(self, data: bytes) -> None:
        self.wire_in += len(data)
        super()._data_received(data)


async def test_chromium_exchanges_text_binary_and_compressed_messages(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    report: asyncio.Future[dict[str, Any]] = loop.create_future()
    seen: dict[str, Any] = {}

    def process_request(request: Any) -> HTTPResponse | None:
        if request.header("Upgrade") is None:
            if request.target == "/":
                return HTTPResponse(200, PAGE, [("Content-Type", "text/html; charset=utf-8")])
            return HTTPResponse(404, "not found")
        return None

    async def handler(ws: RecordingServer) -> None:
        try:
            seen["path"] = ws.request.target if ws.request else None
            seen["offer"] = ws.request.extensions if ws.request else []
            seen["text"] = await ws.receive(timeout=30)
            await ws.send(seen["text"])
            data = await ws.receive(timeout=30)
            seen["binary"] = data
            await ws.send(bytes(reversed(data)))
            big = await ws.receive(timeout=30)
            seen["big_ok"] = big == BIG_FROM_BROWSER
            in_before = ws.wire_in
            await ws.send(f"got {len(big)}")
            out_before = ws.wire_out
            await ws.send(BIG_FROM_SERVER)
            seen["big_out_wire"] = ws.wire_out - out_before
            message = await ws.receive(timeout=30)
            seen["big_in_wire"] = in_before
            assert isinstance(message, str) and message.startswith("report:")
            report.set_result(json.loads(message.removeprefix("report:")))
        except BaseException as exc:
            if not report.done():
                report.set_exception(exc)
            raise
        finally:
            seen["conn"] = ws

    async with simple_websocket.serve(
        handler, process_request=process_request, server_class=RecordingServer
    ) as server:
        url = f"http://127.0.0.1:{server.port}/"
        log = (tmp_path / "chromium.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}",
            url,
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # its helpers share this new process group
        )
        try:
            try:
                results = await asyncio.wait_for(report, 60)
            except TimeoutError:
                log.flush()
                tail = (tmp_path / "chromium.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"no report from Chromium within 60 s; its log:\n{tail}")
        finally:
            await _stop(proc)
            log.close()

    # What the server saw.
    conn = seen["conn"]
    assert seen["path"] == "/ws"
    assert any(o.startswith("permessage-deflate") for o in seen["offer"]), seen["offer"]
    assert conn.negotiated == ["permessage-deflate"]
    assert seen["text"] == "hello from chromium é😀"
    assert seen["binary"] == b"\x00\x01\x02\xff"
    assert seen["big_ok"]
    # Compressed on the wire, both ways (the messages are 240 kB and 320 kB).
    assert seen["big_in_wire"] < len(BIG_FROM_BROWSER) // 20, seen["big_in_wire"]
    assert seen["big_out_wire"] < len(BIG_FROM_SERVER) // 20, seen["big_out_wire"]
    # What the browser saw.
    assert results["errors"] == []
    assert results["extensions"].startswith("permessage-deflate")
    assert results["textEcho"] == "hello from chromium é😀"
    assert results["binaryEcho"] == [255, 2, 1, 0]
    assert results["bigAck"] == f"got {len(BIG_FROM_BROWSER)}"
    assert results["bigFromServerOk"] is True
    assert results["bigFromServerLength"] == len(BIG_FROM_SERVER)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Terminate Chromium, then kill what is left of the process group it leads."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the helpers of the Chromium we started
