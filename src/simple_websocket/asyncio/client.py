"""Opening a client connection: TCP, optional TLS and the opening handshake."""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Sequence

from ..errors import OpenTimeout
from ..sansio.handshake import WSURL, ClientHandshake
from .connection import Connection, StreamProtocol

__all__ = ["open_connection"]


async def open_connection(
    conn: Connection,
    url: WSURL,
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    ssl_context: ssl_module.SSLContext | None = None,
    compression: bool = True,
    open_timeout: float | None = 10.0,
) -> list[tuple[str, str]]:
    """Connect ``conn`` to ``url`` and perform the opening handshake.

    Returns:
        The handshake response headers.

    Raises:
        OpenTimeout: TCP, TLS and handshake took longer than ``open_timeout``.
        HandshakeRejected: The server answered with a status other than 101.
        HandshakeError: The server's response is not a valid handshake response.
        OSError: The connection could not be made (refused, unreachable, name not
            resolved, TLS certificate not trusted, ...).

    Cancellation closes the transport, if one was opened.
    """
    loop = asyncio.get_running_loop()
    handshake = ClientHandshake(url, subprotocols, headers, compression)
    done: asyncio.Future[None] = loop.create_future()
    protocol = StreamProtocol()

    def on_data(data: bytes) -> None:
        if done.done():
            return
        try:
            complete = handshake.receive_data(data)
        except Exception as exc:
            done.set_exception(exc)
            return
        if complete:
            assert protocol.transport is not None
            conn._attach(protocol.transport, handshake.extensions, handshake.subprotocol)
            protocol.attach(conn)
            done.set_result(None)
            if handshake.trailing_data:
                # Frames that arrived in the same read as the 101 response.
                conn._data_received(handshake.trailing_data)

    def on_lost(exc: BaseException | None) -> None:
        if not done.done():
            done.set_exception(
                exc
                if exc is not None
                else ConnectionResetError("connection closed during the opening handshake")
            )

    protocol.on_handshake_data = on_data
    protocol.on_handshake_lost = on_lost

    context: ssl_module.SSLContext | None = None
    if url.secure:
        context = ssl_context or ssl_module.create_default_context(ssl_module.Purpose.SERVER_AUTH)
    transport: asyncio.Transport | None = None
    try:
        async with asyncio.timeout(open_timeout):
            base, _ = await loop.create_connection(
                lambda: protocol,
                url.host,
                url.port,
                ssl=context,
                server_hostname=url.host if context is not None else None,
            )
            assert isinstance(base, asyncio.Transport)
            transport = base
            transport.write(handshake.request)
            await done
    except TimeoutError:
        if transport is not None:
            transport.abort()
        raise OpenTimeout(open_timeout or 0.0) from None
    except BaseException:
        if transport is not None:
            transport.abort()
        raise
    return handshake.response_headers
