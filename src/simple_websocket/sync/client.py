"""Opening a client connection: TCP, optional TLS and the opening handshake."""

from __future__ import annotations

import contextlib
import socket
import ssl as ssl_module
import time
from collections.abc import Sequence

from ..errors import OpenTimeout
from ..sansio.handshake import WSURL, ClientHandshake
from .connection import Connection

__all__ = ["open_connection"]


def open_connection(
    conn: Connection,
    url: WSURL,
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    ssl_context: ssl_module.SSLContext | None = None,
    compression: bool = True,
    open_timeout: float | None = 10.0,
) -> list[tuple[str, str]]:
    """Connect ``conn`` to ``url``, perform the opening handshake and attach it.

    Returns:
        The handshake response headers.

    Raises:
        OpenTimeout: TCP, TLS and handshake took longer than ``open_timeout``.
        HandshakeRejected: The server answered with a status other than 101.
        HandshakeError: The server's response is not a valid handshake response.
        OSError: The connection could not be made (refused, unreachable, name not
            resolved, TLS certificate not trusted, ...).
    """
    handshake = ClientHandshake(url, subprotocols, headers, compression)
    deadline = None if open_timeout is None else time.monotonic() + open_timeout

    def remaining() -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    sock: socket.socket | None = None
    try:
        sock = socket.create_connection((url.host, url.port), timeout=remaining())
        if url.secure:
            context = ssl_context or ssl_module.create_default_context(
                ssl_module.Purpose.SERVER_AUTH
            )
            sock.settimeout(remaining())
            sock = context.wrap_socket(sock, server_hostname=url.host)
        sock.settimeout(remaining())
        sock.sendall(handshake.request)
        while True:
            sock.settimeout(remaining())
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError("connection closed during the opening handshake")
            if handshake.receive_data(data):
                break
    except TimeoutError:
        if sock is not None:
            sock.close()
        raise OpenTimeout(open_timeout or 0.0) from None
    except BaseException:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        raise
    conn._attach(sock, handshake.extensions, handshake.subprotocol, handshake.trailing_data)
    return handshake.response_headers
