"""Server-side connections: the handshake answer on an accepted socket."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence
from typing import Any

from ..errors import HandshakeError
from ..sansio.handshake import (
    HandshakeRequest,
    ServerHandshake,
    reject_response,
)
from ..sansio.options import Compression
from .connection import Connection

__all__ = ["ServerConnection", "accept_socket", "reject"]


class ServerConnection(ServerHandshake, Connection):
    """The server side of a connection.

    Attributes:
        subprotocols: The subprotocols this server supports, in its order.
        request: The client's :class:`~simple_websocket.sansio.handshake.HandshakeRequest`
            once the handshake was read (path, headers, offered subprotocols).
    """

    def __init__(
        self,
        subprotocols: str | Sequence[str] | None = None,
        *,
        compression: Compression = True,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._init_server_handshake(subprotocols, compression)

    def _answer_handshake(
        self,
        sock: socket.socket,
        request: HandshakeRequest,
        initial_data: bytes = b"",
        *,
        owns_socket: bool = True,
    ) -> None:
        """Answer ``request`` on ``sock``: 101 and attach, or an HTTP error.

        Raises:
            HandshakeError: The request was invalid; the error response was written
                and the socket shut down.
            OSError: The client went away before the answer was written.
        """
        try:
            response, extensions, subprotocol = self._handshake_answer(request)
        except HandshakeError as exc:
            self.logger.info("rejected handshake: %s", exc.detail)
            reject(sock, exc, close=owns_socket)
            raise
        sock.settimeout(None)
        sock.sendall(response)
        self._attach(sock, extensions, subprotocol, initial_data, owns_socket=owns_socket)


def reject(sock: socket.socket, exc: HandshakeError, *, close: bool = True) -> None:
    """Write the HTTP error response for ``exc`` and shut ``sock`` down.

    The socket is shut down in both directions even when it is not closed, so that
    a WSGI server cannot write its own response after this one.
    """
    with contextlib.suppress(OSError):
        sock.settimeout(None)
        sock.sendall(reject_response(exc))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    if close:
        with contextlib.suppress(OSError):
            sock.close()


def accept_socket(
    conn: ServerConnection,
    sock: socket.socket,
    request: HandshakeRequest,
    initial_data: bytes = b"",
) -> None:
    """Complete the handshake of ``request`` on an accepted socket and attach ``conn``.

    The socket may be blocking or not; it is switched to blocking mode, and closed
    when the connection ends.

    Raises:
        HandshakeError: The request is not a valid upgrade; an HTTP error was sent
            and the socket closed.
    """
    conn._answer_handshake(sock, request, initial_data)
