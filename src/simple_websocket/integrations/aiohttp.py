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

A handler that returns (or raises) while its WebSocket is still open does not get
an HTTP response written into the WebSocket stream either: when aiohttp starts
writing that response, the WebSocket is closed first, with 1000 (or 1011 when the
handler raised), and aiohttp is told that the connection is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING, Any

from ..asyncio.server import ServerConnection, reject
from ..errors import HandshakeError
from ..sansio.handshake import HandshakeRequest, normalize_headers
from ..sansio.protocol import CloseCode

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


def _check_handover(request: web.Request) -> None:
    """Refuse an upgrade whose following bytes aiohttp would parse as HTTP.

    aiohttp only stops parsing HTTP after a request whose ``Upgrade`` header is
    exactly ``websocket`` (as its own ``WebSocketResponse`` requires). With another
    value (``websocket, foo``), the frames a client sends right behind its request
    would be consumed by aiohttp's HTTP parser and lost, so such a request is
    answered with 400 instead of a 101.

    An HTTP/1.0 request is refused too: RFC 6455 needs HTTP/1.1, and aiohttp lets
    one through.

    Raises:
        HandshakeError: The ``Upgrade`` header lists ``websocket`` among others, or
            the request is not HTTP/1.1.
    """
    if tuple(request.version) < (1, 1):
        raise HandshakeError(f"unsupported HTTP version {request.version}", 400)
    upgrade = request.headers.get("Upgrade", "")
    tokens = [t.strip().lower() for t in upgrade.split(",")]
    if "websocket" in tokens and upgrade.strip().lower() != "websocket":
        raise HandshakeError(
            f"the Upgrade header must be exactly 'websocket', not {upgrade!r}", 400
        )


def _guard_response(conn: ServerConnection, request: web.Request) -> None:
    """Keep aiohttp from writing the handler's HTTP response into the WebSocket.

    When the handler is done, aiohttp writes its response (the one it returned,
    a 500 for ``None`` or for an exception) through ``request.writer``, starting
    with the headers. At that point the WebSocket is closed (a no-op when it
    already is) and aiohttp gets the ``ConnectionResetError`` it expects from a
    connection that is gone, so it writes nothing and closes the transport.
    """
    writer: Any = request.writer

    async def write_headers(status_line: str, headers: Any) -> None:
        if sys.exc_info()[1] is not None:  # aiohttp is answering an exception
            await conn.close(CloseCode.INTERNAL_ERROR, "Unexpected error")
        else:
            await conn.close()
        raise ConnectionResetError("the connection was upgraded to a WebSocket")

    writer.write_headers = write_headers


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
        _check_handover(request)
    except HandshakeError as exc:
        conn.request = hs_request
        reject(transport, exc)
        handler.force_close()
        raise
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
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    conn._blocked_hook = blocked
    conn._writable_hook = drain
    _guard_response(conn, request)
    handler.set_parser(_Feeder(conn))  # type: ignore[arg-type]
    # set_parser() hands over what aiohttp buffered, which can fill the message
    # queue and pause reading, and then lets aiohttp resume the reading it had
    # paused for that buffer: pause again, or nothing would stop the client.
    if conn._inbox.paused and not transport.is_closing():
        transport.pause_reading()
