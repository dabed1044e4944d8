"""Accept a WebSocket inside a WSGI application, as simple-websocket 1.1 did.

WSGI has no upgrade mechanism, so the connection's socket is taken from the
``environ`` where each server keeps it, in 1.1's order:

============  ==============================================================
``mode``      where the socket is found
============  ==============================================================
``werkzeug``  ``environ["werkzeug.socket"]`` (Werkzeug's and Flask's dev server)
``gunicorn``  ``environ["gunicorn.socket"]`` (sync and gthread workers)
``eventlet``  ``environ["eventlet.input"].get_socket()``
``gevent``    ``environ["wsgi.input"]`` (``.rfile``) ``.raw._sock``, duplicated,
              when ``SERVER_SOFTWARE`` starts with ``gevent``
============  ==============================================================

The handshake request is rebuilt from the environ: ``REQUEST_METHOD``, the raw
target (``RAW_URI`` or ``REQUEST_URI``, else ``PATH_INFO`` and ``QUERY_STRING``)
and the ``HTTP_*`` keys as headers. The 101 response (or an HTTP error) is written
straight to the socket.

When the WebSocket ends, the socket is shut down in both directions. The WSGI
server then cannot write an HTTP response into the closed WebSocket stream: its
write fails with a broken pipe, which Werkzeug and gunicorn treat as a client that
went away. The socket itself is closed by its owner: Werkzeug and gunicorn close
theirs; with eventlet and gevent it is closed by the connection, as in 1.1.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ..sansio.handshake import HandshakeRequest
from ..sync.server import ServerConnection

__all__ = ["WSGISocket", "accept_wsgi", "find_socket", "request_from_environ"]

Environ = Mapping[str, Any]


class WSGISocket:
    """The socket of a WSGI request and how it was found.

    Attributes:
        sock: The connected socket.
        mode: ``"werkzeug"``, ``"gunicorn"``, ``"eventlet"`` or ``"gevent"``.
        owned: ``True`` when the connection closes the socket at the end (eventlet,
            gevent); ``False`` when the server closes it itself (Werkzeug, gunicorn).
        stream: A buffered reader over the socket that may hold bytes read past the
            request head, or ``None``.
    """

    __slots__ = ("mode", "owned", "sock", "stream")

    def __init__(self, sock: socket.socket, mode: str, owned: bool, stream: Any = None) -> None:
        self.sock = sock
        self.mode = mode
        self.owned = owned
        self.stream = stream


def find_socket(environ: Environ) -> WSGISocket:
    """Find the connection's socket in a WSGI ``environ``.

    Raises:
        RuntimeError: The server is not one whose socket can be found (the message
            is 1.1's: ``Cannot obtain socket from WSGI environment.``).
    """
    if "werkzeug.socket" in environ:
        return WSGISocket(environ["werkzeug.socket"], "werkzeug", False, environ.get("wsgi.input"))
    if "gunicorn.socket" in environ:
        return WSGISocket(environ["gunicorn.socket"], "gunicorn", False)
    if "eventlet.input" in environ:
        return WSGISocket(environ["eventlet.input"].get_socket(), "eventlet", True)
    if str(environ.get("SERVER_SOFTWARE", "")).startswith("gevent"):
        wsgi_input: Any = environ.get("wsgi.input")
        if not hasattr(wsgi_input, "raw") and hasattr(wsgi_input, "rfile"):
            wsgi_input = wsgi_input.rfile
        if hasattr(wsgi_input, "raw"):
            sock = wsgi_input.raw._sock
            with contextlib.suppress(NotImplementedError):
                sock = sock.dup()
            return WSGISocket(sock, "gevent", True)
    raise RuntimeError("Cannot obtain socket from WSGI environment.")


def _target(environ: Environ) -> str:
    for key in ("RAW_URI", "REQUEST_URI"):
        value = environ.get(key)
        if value:
            return str(value)
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    # WSGI strings are bytes decoded as latin-1 ("the WSGI encoding dance").
    target = quote(path.encode("latin-1"), safe="/;=,@:!$&'()*+~") or "/"
    query = environ.get("QUERY_STRING")
    return f"{target}?{query}" if query else target


def request_from_environ(environ: Environ) -> HandshakeRequest:
    """Rebuild the client's upgrade request from a WSGI ``environ``.

    Header names are rebuilt from the ``HTTP_*`` keys (``HTTP_SEC_WEBSOCKET_KEY``
    becomes ``Sec-Websocket-Key``; names are case-insensitive).
    """
    headers: list[tuple[str, str]] = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = "-".join(part.capitalize() for part in key[5:].split("_"))
            headers.append((name, str(value)))
    method = str(environ.get("REQUEST_METHOD", "GET"))
    return HandshakeRequest(_target(environ), headers, method)


def _buffered_bytes(stream: Any, sock: socket.socket) -> bytes:
    """Take the bytes a buffered reader read past the request head, if any.

    A client may send its first frames right behind its request; Werkzeug's reader
    can then hold them. They are taken without blocking and handed to the
    connection first, so that nothing received early is lost.
    """
    peek = getattr(stream, "peek", None)
    read = getattr(stream, "read", None)
    if not callable(peek) or not callable(read):
        return b""
    timeout = sock.gettimeout()
    try:
        sock.setblocking(False)
        data = peek()
    except (OSError, ValueError):
        data = b""
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(timeout)
    if not isinstance(data, (bytes, bytearray)) or not data:
        return b""
    return bytes(read(len(data)))


def accept_wsgi(conn: ServerConnection, environ: Environ, found: WSGISocket | None = None) -> str:
    """Answer the WebSocket handshake of a WSGI request and attach ``conn``.

    Args:
        conn: The connection to attach.
        environ: The request's WSGI environ.
        found: The socket, when :func:`find_socket` was already called.

    Returns:
        The ``mode`` (which server the socket was found in).

    Raises:
        RuntimeError: No socket can be found in ``environ``.
        HandshakeError: The request is not a valid upgrade: an HTTP error response
            (400 or 426) was written and the socket shut down.
    """
    if found is None:
        found = find_socket(environ)
    request = request_from_environ(environ)
    initial = b""
    if found.stream is not None and found.mode == "werkzeug":
        initial = _buffered_bytes(found.stream, found.sock)
    conn._answer_handshake(found.sock, request, initial, owns_socket=found.owned)
    return found.mode
