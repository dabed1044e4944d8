"""Helpers for the threaded engine's tests: a blocking raw-socket WebSocket peer.

The frames are built and parsed by hand (``tests.asyncio.rawpeer``'s functions, no
wsproto), so the engine is checked against an independent implementation of
RFC 6455. Every blocking call has a timeout; nothing sleeps.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from tests.asyncio.rawpeer import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Frame,
    accept_key,
    apply_mask,
    close_payload,
    encode_frame,
)

__all__ = [
    "BINARY",
    "CLOSE",
    "CONT",
    "PING",
    "PONG",
    "TEXT",
    "Frame",
    "SyncPeer",
    "close_payload",
    "encode_frame",
    "raw_connect",
    "raw_server",
    "run_in_thread",
]

TIMEOUT = 5.0


class SyncPeer:
    """One end of a WebSocket connection over a blocking socket, by hand.

    ``role`` is ``"client"`` (frames sent are masked) or ``"server"``.
    """

    def __init__(self, sock: socket.socket, role: str, buffer: bytes = b"") -> None:
        self.sock = sock
        self.role = role
        self.buffer = bytearray(buffer)
        self.deflate = False
        self._decompressor = zlib.decompressobj(wbits=-15)
        sock.settimeout(TIMEOUT)

    # -- sending -------------------------------------------------------------------

    def frame(self, opcode: int, payload: bytes = b"", **kwargs: Any) -> bytes:
        if "mask" not in kwargs:
            kwargs["mask"] = os.urandom(4) if self.role == "client" else None
        return encode_frame(opcode, payload, **kwargs)

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, opcode: int, payload: bytes = b"", **kwargs: Any) -> None:
        self.write(self.frame(opcode, payload, **kwargs))

    def send_text(self, text: str) -> None:
        self.send(TEXT, text.encode("utf-8"))

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        self.send(CLOSE, close_payload(code, reason))

    # -- receiving -----------------------------------------------------------------

    def _fill(self, n: int) -> None:
        while len(self.buffer) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"EOF with {len(self.buffer)} of {n} bytes")
            self.buffer += data

    def _take(self, n: int) -> bytes:
        self._fill(n)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def recv_frame(self) -> Frame:
        """Read one frame; checks the masking matches the other side's role."""
        b0, b1 = self._take(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._take(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._take(8))
        masked = bool(b1 & 0x80)
        key = self._take(4) if masked else b""
        payload = self._take(n)
        if masked:
            payload = apply_mask(key, payload)
        if b0 & 0x40 and self.deflate:
            payload = self._decompressor.decompress(payload + b"\x00\x00\xff\xff")
            b0 &= ~0x40
        frame = Frame(
            opcode=b0 & 0x0F,
            payload=payload,
            fin=bool(b0 & 0x80),
            rsv1=bool(b0 & 0x40),
            rsv2=bool(b0 & 0x20),
            rsv3=bool(b0 & 0x10),
            masked=masked,
        )
        assert masked == (self.role == "server"), f"{self.role} peer got {frame!r}"
        return frame

    def recv_data_frame(self) -> Frame:
        """Read the next frame that is not a ping or pong."""
        while True:
            frame = self.recv_frame()
            if frame.opcode not in (PING, PONG):
                return frame

    def expect_close(self) -> Frame:
        frame = self.recv_data_frame()
        assert frame.opcode == CLOSE, f"expected a close frame, got {frame!r}"
        return frame

    def expect_eof(self) -> None:
        """Wait until the other side closed TCP (FIN or reset); fail on data."""
        if self.buffer:
            raise AssertionError(f"expected EOF, got {bytes(self.buffer)!r}")
        try:
            data = self.sock.recv(1)
        except ConnectionResetError:
            return
        assert data == b"", f"expected EOF, got {data!r}"

    def barrier(self, payload: bytes = b"sync") -> None:
        """Ping and wait for the pong: everything sent before was processed."""
        self.send(PING, payload)
        while True:
            frame = self.recv_frame()
            if frame.opcode == PONG and frame.payload == payload:
                return
            assert frame.opcode in (PING, PONG), f"unexpected {frame!r} before pong"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def read_head(sock: socket.socket) -> tuple[str, bytes]:
    """Read an HTTP head; return it and the bytes after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"EOF in HTTP head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def parse_headers(head: str) -> dict[str, str]:
    headers = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def raw_connect(
    port: int,
    *,
    path: str = "/",
    extra_headers: str = "",
    after_request: bytes = b"",
    expect: int = 101,
) -> tuple[SyncPeer, str]:
    """Connect to a server and do the client handshake by hand.

    Returns:
        The peer and the response head (checked to have status ``expect``).
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"{extra_headers}"
        "\r\n"
    )
    sock.sendall(request.encode("latin-1") + after_request)
    head, rest = read_head(sock)
    status = head.split("\r\n", 1)[0]
    assert status.startswith(f"HTTP/1.1 {expect}"), head
    if expect == 101:
        assert parse_headers(head)["sec-websocket-accept"] == accept_key(key)
    return SyncPeer(sock, "client", rest), head


@contextlib.contextmanager
def raw_server(
    *, after_101: bytes = b"", deflate: bool = False, extra_headers: str = ""
) -> Iterator[RawServer]:
    """A listening socket whose :meth:`RawServer.accept` answers one upgrade by hand."""
    server = RawServer(after_101=after_101, deflate=deflate, extra_headers=extra_headers)
    try:
        yield server
    finally:
        server.close()


class RawServer:
    """Accepts connections and answers each upgrade with a handcrafted 101."""

    def __init__(self, *, after_101: bytes, deflate: bool, extra_headers: str) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.after_101 = after_101
        self.deflate = deflate
        self.extra_headers = extra_headers
        self.requests: list[str] = []
        self.peers: list[SyncPeer] = []

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def accept(self) -> SyncPeer:
        sock, _ = self.listener.accept()
        sock.settimeout(TIMEOUT)
        head, rest = read_head(sock)
        self.requests.append(head)
        key = parse_headers(head)["sec-websocket-key"]
        response = (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n"
            + ("Sec-WebSocket-Extensions: permessage-deflate\r\n" if self.deflate else "")
            + self.extra_headers
            + "\r\n"
        ).encode("latin-1")
        sock.sendall(response + self.after_101)
        peer = SyncPeer(sock, "server", rest)
        peer.deflate = self.deflate
        self.peers.append(peer)
        return peer

    def connect(self, open_client: Callable[[], Any]) -> tuple[SyncPeer, Any]:
        """Run ``open_client()`` while accepting it here; return the peer and client."""
        result: dict[str, Any] = {}
        thread = run_in_thread(lambda: result.setdefault("peer", self.accept()))
        try:
            client = open_client()
        finally:
            thread.join(TIMEOUT)
        assert "peer" in result, "the raw server did not accept the client"
        return result["peer"], client

    def close(self) -> None:
        for peer in self.peers:
            peer.close()
        self.listener.close()


def run_in_thread(target: Callable[[], Any]) -> threading.Thread:
    """Start ``target`` in a daemon thread; its exception is kept on ``thread.error``."""

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            thread.error = exc  # type: ignore[attr-defined]

    thread = threading.Thread(target=run, daemon=True)
    thread.error = None  # type: ignore[attr-defined]
    thread.start()
    return thread
