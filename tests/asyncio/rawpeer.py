"""A raw-socket WebSocket peer for byte-level tests of the asyncio engine.

Everything on the wire is built and parsed here, by hand: the opening handshake
(request or 101 response, ``Sec-WebSocket-Accept`` computed with hashlib/base64) and
the frames (any opcode, FIN/RSV bits, announced length, masking, split into arbitrary
writes). Nothing here uses wsproto, so the engine under test is checked against an
independent implementation of RFC 6455.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode()


def apply_mask(key: bytes, data: bytes) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` (RFC 6455 5.3)."""
    if not data:
        return b""
    n = len(data)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """Build one frame.

    ``mask`` is the masking key (``None``: unmasked). ``length`` is the payload length
    written in the header; by default ``len(payload)``, but it may announce more (or
    less) than the payload given, to build truncated or oversized frames.
    """
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0)
    first |= (0x10 if rsv3 else 0) | (opcode & 0x0F)
    n = len(payload) if length is None else length
    mask_bit = 0x80 if mask is not None else 0
    if n <= 125:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask is not None:
        assert len(mask) == 4
        return head + mask + apply_mask(mask, payload)
    return head + payload


def close_payload(code: int | None = None, reason: str = "") -> bytes:
    if code is None:
        return b""
    return struct.pack("!H", code) + reason.encode("utf-8")


@dataclass
class Frame:
    """A frame as it was read off the wire (payload already unmasked)."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False
    masked: bool = False
    #: The masking key (``b""`` for an unmasked frame).
    key: bytes = b""

    @property
    def close_code(self) -> int | None:
        assert self.opcode == CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        assert self.opcode == CLOSE
        return self.payload[2:].decode("utf-8")

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


class RawPeer:
    """One end of a WebSocket connection, speaking raw bytes over asyncio streams.

    ``role`` is ``"client"`` (frames sent are masked, frames received must not be)
    or ``"server"`` (the opposite).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        role: str,
        deflate: bool = False,
    ) -> None:
        assert role in ("client", "server")
        self.reader = reader
        self.writer = writer
        self.role = role
        #: permessage-deflate (RFC 7692) was negotiated, with context takeover.
        self.deflate = deflate
        self._compressor = zlib.compressobj(wbits=-15)
        self._decompressor = zlib.decompressobj(wbits=-15)

    @property
    def transport(self) -> asyncio.WriteTransport:
        transport = self.writer.transport
        assert isinstance(transport, asyncio.WriteTransport)
        return transport

    # -- sending ---------------------------------------------------------------

    def frame(self, opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
        """Build a frame the way this role must (masked for a client) unless
        ``mask`` is given explicitly (``mask=None`` sends an unmasked frame)."""
        if "mask" not in kwargs:
            kwargs["mask"] = os.urandom(4) if self.role == "client" else None
        return encode_frame(opcode, payload, **kwargs)  # type: ignore[arg-type]

    async def write(self, data: bytes, chunks: Iterable[int] | None = None) -> None:
        """Write ``data``, in one write or split into writes of the ``chunks`` sizes
        (the rest goes in a last write), draining after each."""
        if chunks is None:
            self.writer.write(data)
            await self.writer.drain()
            return
        pos = 0
        for size in chunks:
            if pos >= len(data):
                break
            self.writer.write(data[pos : pos + size])
            await self.writer.drain()
            pos += size
        if pos < len(data):
            self.writer.write(data[pos:])
            await self.writer.drain()

    async def send(self, opcode: int, payload: bytes = b"", **kwargs: object) -> None:
        await self.write(self.frame(opcode, payload, **kwargs))

    def compressed(self, opcode: int, payload: bytes) -> bytes:
        """Build one permessage-deflate compressed message (RSV1 set)."""
        assert self.deflate
        data = self._compressor.compress(payload) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        return self.frame(opcode, data[:-4], rsv1=True)

    async def send_text(self, text: str) -> None:
        await self.send(TEXT, text.encode("utf-8"))

    async def send_binary(self, data: bytes) -> None:
        await self.send(BINARY, data)

    async def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        await self.send(CLOSE, close_payload(code, reason))

    def abort(self) -> None:
        self.transport.abort()

    def close_tcp(self) -> None:
        self.transport.close()

    # -- receiving -------------------------------------------------------------

    async def recv_frame(self) -> Frame:
        """Read one frame; checks masking matches the other side's role.

        Raises:
            asyncio.IncompleteReadError: EOF before a whole frame.
        """
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        masked = bool(b1 & 0x80)
        key = await self.reader.readexactly(4) if masked else b""
        payload = await self.reader.readexactly(n)
        if masked:
            payload = apply_mask(key, payload)
        if b0 & 0x40 and self.deflate:
            # Our side compresses whole messages in one frame.
            assert b0 & 0x80, "fragmented compressed message"
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
            key=key,
        )
        # RFC 6455 5.1: a client masks every frame, a server none.
        expected_masked = self.role == "server"
        assert masked == expected_masked, f"{self.role} peer got {frame!r}"
        return frame

    async def recv_data_frame(self) -> Frame:
        """Read the next frame that is not a ping or pong (pings are not answered)."""
        while True:
            frame = await self.recv_frame()
            if frame.opcode not in (PING, PONG):
                return frame

    async def expect_close(self) -> Frame:
        """Read frames until a close frame, skipping pings and pongs."""
        frame = await self.recv_data_frame()
        assert frame.opcode == CLOSE, f"expected a close frame, got {frame!r}"
        return frame

    async def expect_eof(self) -> None:
        """Wait until the other side closed TCP (a FIN or a reset); fail on data."""
        try:
            data = await self.reader.read(1)
        except ConnectionResetError:
            return
        assert data == b"", f"expected EOF, got {data!r}"

    async def barrier(self, payload: bytes = b"sync") -> None:
        """Send a ping and wait for its pong: everything sent before was processed.

        Data frames received meanwhile are a test error.
        """
        await self.send(PING, payload)
        while True:
            frame = await self.recv_frame()
            if frame.opcode == PONG and frame.payload == payload:
                return
            assert frame.opcode in (PING, PONG), f"unexpected {frame!r} before pong"


# -- raw client: handshake against our server -------------------------------------


def _sock(rcvbuf: int | None = None, sndbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return sock


async def connect(
    port: int,
    *,
    path: str = "/",
    extra_headers: str = "",
    rcvbuf: int | None = None,
    sndbuf: int | None = None,
    deflate: bool = False,
    after_request: bytes = b"",
) -> RawPeer:
    """Open a TCP connection to our server and do the client handshake by hand.

    ``deflate`` offers permessage-deflate (and requires it accepted);
    ``after_request`` is written in the same write as the request.
    """
    sock = _sock(rcvbuf, sndbuf)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        + ("Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else "")
        + f"{extra_headers}"
        "\r\n"
    )
    writer.write(request.encode("latin-1") + after_request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 101"), lines[0]
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    assert headers["sec-websocket-accept"] == accept_key(key)
    if deflate:
        # Accepted without parameters that would change the defaults used here.
        assert headers["sec-websocket-extensions"] == "permessage-deflate", headers
    else:
        assert "sec-websocket-extensions" not in headers
    return RawPeer(reader, writer, "client", deflate)


# -- raw server: handshake for our client -------------------------------------------


class RawServer:
    """A raw asyncio server answering each upgrade request with a handcrafted 101.

    ``after_101`` is written in the same write as the response (frames glued to the
    handshake). Accepted peers are available from :meth:`accept`.
    """

    def __init__(
        self,
        *,
        after_101: bytes = b"",
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
        deflate: bool = False,
    ) -> None:
        self.after_101 = after_101
        self.deflate = deflate
        self.rcvbuf = rcvbuf
        self.sndbuf = sndbuf
        self.peers: asyncio.Queue[RawPeer] = asyncio.Queue()
        self.requests: list[str] = []
        self.server: asyncio.Server | None = None
        self._peers: list[RawPeer] = []

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        self.requests.append(head)
        key = ""
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-key":
                key = value.strip()
        response = (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n"
            + ("Sec-WebSocket-Extensions: permessage-deflate\r\n" if self.deflate else "")
            + "\r\n"
        ).encode("latin-1")
        peer = RawPeer(reader, writer, "server", self.deflate)
        self._peers.append(peer)
        writer.write(response + self.after_101)
        await self.peers.put(peer)

    async def start(self) -> RawServer:
        sock = _sock(self.rcvbuf, self.sndbuf)
        sock.bind(("127.0.0.1", 0))
        self.server = await asyncio.start_server(self._on_client, sock=sock)
        return self

    async def accept(self) -> RawPeer:
        return await self.peers.get()

    async def close(self) -> None:
        for peer in self._peers:
            peer.abort()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def __aenter__(self) -> RawServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def wait_for_condition(predicate: Callable[[], bool], step: float = 0.001) -> None:
    """Poll ``predicate`` until it holds; the test's timeout bounds the wait.

    Only for states that offer nothing to await (a transport's reading or write
    buffer, a connection attribute set inside a protocol callback).
    """
    while not predicate():  # noqa: ASYNC110 - nothing to await for these states
        await asyncio.sleep(step)
