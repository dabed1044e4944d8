"""Accept a WebSocket inside an aiohttp request handler.

aiohttp keeps owning the transport and its protocol. The 101 response is written on
the transport and received bytes reach the connection through aiohttp's own hook for
upgraded connections (``request.protocol.set_parser``, the one aiohttp's
``WebSocketResponse`` uses), so nothing is read by two parties: bytes that aiohttp
had already buffered after the request head are handed over first.

When the WebSocket closes, the transport is closed. Whatever the handler then
returns (``web.Response(text='')`` as in simple-websocket 1.1's example, or
nothing), aiohttp finds the transport closed and writes no HTTP response after the
WebSocket; for a handler that returns ``None`` aiohttp still logs "Missing return
statement on request handler".
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..asyncio.server import ServerConnection
from ..errors import HandshakeError
from ..sansio.handshake import HandshakeRequest, normalize_headers

if TYPE_CHECKING:  # pragma: no cover
    from aiohttp import web

__all__ = ["accept_aiohttp"]


class _Feeder:
    """Receives the upgraded connection's bytes from aiohttp's request handler."""

    __slots__ = ("conn",)

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.conn._data_received(data)
        return False, b""

    def feed_eof(self) -> None:
        self.conn._connection_lost(None)

    def set_exception(self, exc: BaseException, exc_cause: BaseException | None = None) -> None:
        self.conn._connection_lost(exc)


def _aiohttp_request(request: web.Request) -> HandshakeRequest:
    return HandshakeRequest(request.path_qs, normalize_headers(request.headers), request.method)


async def accept_aiohttp(conn: ServerConnection, request: web.Request) -> None:
    """Answer the WebSocket handshake of an aiohttp ``request`` and attach ``conn``.

    Raises:
        HandshakeError: The request is not a valid upgrade: an HTTP error response
            (400 or 426) was written and the connection closed.
        ConnectionResetError: The client went away before the handshake.
    """
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client disconnected before the handshake")
    assert isinstance(transport, asyncio.Transport)
    handler = request.protocol
    handler.keep_alive(False)
    hs_request = _aiohttp_request(request)
    try:
        conn._answer_handshake(transport, hs_request)
    except HandshakeError:
        handler.force_close()
        raise
    # Write backpressure: aiohttp's protocol receives the transport's pause and
    # resume calls, so ask the transport and wait on aiohttp's own drain.
    high = transport.get_write_buffer_limits()[1]
    writer: Any = request.writer

    def blocked() -> bool:
        return transport.get_write_buffer_size() > high and not transport.is_closing()

    async def drain() -> None:
        try:
            await writer.drain()
        except ConnectionError:
            pass

    conn._write_blocked = blocked
    conn._wait_writable = drain
    handler.set_parser(_Feeder(conn))  # type: ignore[arg-type]
