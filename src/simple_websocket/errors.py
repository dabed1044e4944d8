"""Every exception the package raises on purpose.

The tree::

    RuntimeError
     └── SimpleWebsocketError            base of everything below
          ├── ConnectionError(status_code) the connection could not be opened
          │    ├── HandshakeRejected       the server answered with a status
          │    │                           other than 101
          │    ├── HandshakeError          the opening handshake was malformed
          │    │                           or invalid
          │    ├── OpenTimeout             opening took longer than
          │    │                           ``open_timeout`` (also a builtin
          │    │                           ``TimeoutError``)
          │    └── ProxyError              the proxy refused or failed to open
          │                                the tunnel (``status_code`` for HTTP
          │                                proxies)
          ├── ConnectionClosed(reason, message)
          │    │                           the connection is closed; ``reason``
          │    │                           is the close code, ``message`` the
          │    │                           close reason text
          │    └── Disconnected(reason, message, cause)
          │                                a reconnecting client's connection
          │                                ended, and why (what
          │                                ``on_disconnect`` receives)
          ├── DecodeError(data, error)     a received message is not valid for
          │                                its codec (also a ``ValueError``); the
          │                                connection stays open
          ├── EncodeError                  an object cannot be encoded by a codec
          │                                (also a ``TypeError``); nothing was sent
          ├── RequestTimeout               no response to a typed request in time
          │                                (also a builtin ``TimeoutError``)
          ├── GapError(expected, received) a subscription's sequence has a gap
          │                                that was not filled
          ├── IdleTimeout(timeout)         no message within a pipeline's
          │                                ``idle_timeout`` (also a builtin
          │                                ``TimeoutError``)
          └── OutboxFull                   ``send()`` during an outage found the
                                           reconnecting client's outbox full
                                           (policy ``"raise"``)

``ConnectionError`` and ``ConnectionClosed`` keep the constructor signatures and
attributes of simple-websocket 1.1, so ``except simple_websocket.ConnectionError``
keeps catching a rejected handshake.

Errors that come from the operating system while opening a connection (connection
refused, name resolution, TLS certificate verification) are not wrapped: they are
raised as the usual :class:`OSError` subclasses (``ConnectionRefusedError``,
``socket.gaierror``, ``ssl.SSLCertVerificationError``), as in 1.1. When they happen
on the way to a proxy, a note on the exception names the proxy. An invalid URL
raises :class:`ValueError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

__all__ = [
    "ConnectionClosed",
    "ConnectionError",
    "DecodeError",
    "DisconnectCause",
    "Disconnected",
    "EncodeError",
    "GapError",
    "HandshakeError",
    "HandshakeRejected",
    "IdleTimeout",
    "OpenTimeout",
    "OutboxFull",
    "ProxyError",
    "RequestTimeout",
    "SimpleWebsocketError",
]

#: Close code used when the peer's close frame carried no status code (RFC 6455, 7.1.5).
NO_STATUS_RCVD = 1005


class SimpleWebsocketError(RuntimeError):
    """Base class of every exception defined by this package."""


class ConnectionError(SimpleWebsocketError):
    """The WebSocket connection could not be established.

    Attributes:
        status_code: The HTTP status code involved, when there is one: the status the
            server answered with on the client side, or the status sent to the client
            on the server side (400 for an invalid handshake). ``None`` otherwise.
    """

    def __init__(self, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(f"Connection error: {status_code}")


class HandshakeRejected(ConnectionError):
    """The server answered the opening handshake with a status other than 101.

    The message says what that means: a 2xx or 3xx answer comes from a server that
    does not serve WebSocket at that URL (a web page, a redirect, which is not
    followed); a 4xx or 5xx answer is a refusal, shown with the start of its body.

    Attributes:
        status_code: The HTTP status code of the response.
        headers: The response headers as ``(name, value)`` pairs.
        body: The beginning of the response body, if any arrived with the headers.
        url: The URL the handshake was sent to, when known.
        reason_phrase: The reason phrase of the status line (``"Forbidden"``), or
            an empty string.
    """

    def __init__(
        self,
        status_code: int,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        url: str | None = None,
        reason_phrase: str = "",
    ) -> None:
        super().__init__(status_code)
        self.headers = list(headers)
        self.body = body
        self.url = url
        self.reason_phrase = reason_phrase
        if url is not None:
            self.args = (f"Connection error: {status_code}: {self._explain(url)}",)

    def _explain(self, url: str) -> str:
        status = self.status_code or 0
        answer = f"HTTP {status} {self.reason_phrase}".rstrip()
        if status < 400:
            text = (
                f"{url} is not a WebSocket endpoint: the server answered {answer} "
                "instead of 101 Switching Protocols"
            )
            location = self.header("Location")
            if 300 <= status < 400 and location:
                text += f" (a redirect to {location}; redirects are not followed)"
            return text
        text = f"the server refused the WebSocket handshake to {url} with {answer}"
        detail = self._body_text()
        return f"{text}: {detail}" if detail else text

    def _body_text(self) -> str:
        """The first line of a short text body, if the response has one."""
        content_type = (self.header("Content-Type") or "text/plain").lower()
        if not content_type.startswith("text/plain") or not self.body:
            return ""
        line = self.body.decode("utf-8", "replace").strip().split("\n", 1)[0].strip()
        return line[:200]

    def header(self, name: str) -> str | None:
        """Return the first response header called ``name`` (case-insensitive)."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None


class HandshakeError(ConnectionError):
    """The opening handshake was malformed or did not follow RFC 6455.

    On the client side ``status_code`` is the status of the (invalid) response, or
    ``None`` when no status line could be read. On the server side it is the status
    that was sent back to the client (400, or 426 for a request without upgrade).
    """

    def __init__(self, detail: str, status_code: int | None = None) -> None:
        super().__init__(status_code)
        self.detail = detail
        self.args = (f"Invalid WebSocket handshake: {detail}",)


class OpenTimeout(ConnectionError, TimeoutError):
    """Opening the connection (TCP, TLS and handshake) exceeded ``open_timeout``."""

    def __init__(self, timeout: float) -> None:
        super().__init__(None)
        self.timeout = timeout
        self.args = (f"Timed out after {timeout} s while opening the connection",)


class ProxyError(ConnectionError):
    """The proxy refused to open a tunnel to the server, or failed to.

    Raised for an HTTP proxy's answer other than 2xx to ``CONNECT`` (407: the
    credentials are missing or wrong; 403: the proxy does not allow the server;
    502, 503, 504: it could not reach the server), for a SOCKS proxy's failure
    reply, and for a proxy that closed the connection before answering. Network
    errors on the way to the proxy are raised as :class:`OSError`.

    Attributes:
        status_code: The HTTP proxy's status code, or ``None`` (SOCKS proxies, and
            proxies that did not answer).
        headers: The HTTP proxy's answer headers as ``(name, value)`` pairs (for
            instance ``Proxy-Authenticate`` with a 407).
        proxy: The proxy's URL, without credentials.
        transient: ``True`` when a later attempt may succeed: an HTTP 5xx or 429,
            a SOCKS proxy that could not reach the server, or a proxy that closed the
            connection before answering. The reconnecting client retries these and
            gives up on the others.
    """

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        *,
        proxy: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        transient: bool = False,
    ) -> None:
        super().__init__(status_code)
        self.proxy = proxy
        self.headers = list(headers)
        self.transient = transient
        self.args = (message,)

    def header(self, name: str) -> str | None:
        """Return the first answer header called ``name`` (case-insensitive)."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None


class ConnectionClosed(SimpleWebsocketError):
    """The WebSocket connection is closed.

    Attributes:
        reason: The close code (an ``int``; 1000 is a normal closure, 1006 means the
            connection was lost without a close frame).
        message: The close reason text sent with the close frame, or ``None``.
    """

    def __init__(self, reason: int = NO_STATUS_RCVD, message: str | None = None) -> None:
        self.reason = reason
        self.message = message
        super().__init__(
            f"Connection closed: {reason} {message}" if message else f"Connection closed: {reason}"
        )


#: Why a reconnecting client's connection ended; see :class:`Disconnected`.
DisconnectCause = Literal["ping_timeout", "idle_timeout", "closed", "network_error"]


class Disconnected(ConnectionClosed):
    """A reconnecting client's connection ended; ``cause`` says why.

    This is what ``on_disconnect`` receives. It is a :class:`ConnectionClosed`, so
    hooks that read ``reason`` and ``message`` keep working.

    Attributes:
        reason: The close code.
        message: The close reason text, or ``None``.
        cause: One of:

            * ``"ping_timeout"``: a keepalive ping went unanswered for
              ``ping_timeout`` seconds (the peer vanished, or stopped reading); this
              side failed the connection with 1011 ``keepalive ping timeout``.
            * ``"idle_timeout"``: no message arrived for ``idle_timeout`` seconds
              while the application waited for one; this side failed the connection
              with 1011 ``idle timeout``.
            * ``"closed"``: a closing handshake ended the connection: the peer
              closed it with ``reason`` (1001 for a server going away, ...), or this
              side failed it because the peer broke the protocol (1002, 1007,
              1009).
            * ``"network_error"``: TCP ended without a close frame (reset, EOF, an
              error of the operating system): ``reason`` is 1006.
    """

    def __init__(
        self,
        reason: int = NO_STATUS_RCVD,
        message: str | None = None,
        cause: DisconnectCause = "closed",
    ) -> None:
        super().__init__(reason, message)
        self.cause: DisconnectCause = cause
        text = f"{reason} {message}" if message else str(reason)
        self.args = (f"Connection closed: {text} ({cause})",)


class DecodeError(SimpleWebsocketError, ValueError):
    """A received message could not be decoded or failed validation.

    The connection stays open: the next message is received normally.

    Attributes:
        data: The raw message (``str`` or ``bytes``) as it was received.
        error: The underlying exception (a ``pydantic.ValidationError`` or a JSON
            decoding error); also chained as ``__cause__``.
    """

    def __init__(self, data: str | bytes, error: BaseException) -> None:
        self.data = data
        self.error = error
        preview = data[:200]
        super().__init__(f"Invalid message {preview!r}: {error}")


class EncodeError(SimpleWebsocketError, TypeError):
    """An object cannot be encoded by the channel's codec; nothing was sent.

    Attributes:
        obj: The object that was given.
        error: The underlying exception, also chained as ``__cause__``.
    """

    def __init__(self, obj: object, error: BaseException) -> None:
        self.obj = obj
        self.error = error
        super().__init__(f"Cannot encode {type(obj).__name__} object: {error}")


class RequestTimeout(SimpleWebsocketError, TimeoutError):
    """No response to a typed request arrived within its timeout.

    A response that arrives later is delivered as an ordinary message.

    Attributes:
        request_id: The correlation id of the request.
        timeout: The timeout in seconds.
    """

    def __init__(self, request_id: object, timeout: float) -> None:
        self.request_id = request_id
        self.timeout = timeout
        super().__init__(f"No response to request {request_id!r} within {timeout} s")


class GapError(SimpleWebsocketError):
    """A subscription's sequence numbers jumped, and the missing messages never came.

    Raised by a subscription made with ``sequence=`` and ``on_gap="raise"`` when a
    message skips sequence numbers, or with ``on_gap="resubscribe"`` when the
    messages asked for again did not arrive within ``gap_timeout``. Iterating on
    goes on after the gap: nothing that arrived is lost, only the missing
    messages are.

    Attributes:
        expected: The first missing sequence number.
        received: The sequence number that arrived instead (the first one after
            the gap).
    """

    def __init__(self, expected: int, received: int) -> None:
        self.expected = expected
        self.received = received
        missing = received - expected
        super().__init__(
            f"sequence gap: expected {expected}, received {received} "
            f"({missing} message{'s' if missing != 1 else ''} missing)"
        )


class IdleTimeout(SimpleWebsocketError, TimeoutError):
    """No item arrived within the ``idle_timeout`` of a pipeline.

    Attributes:
        timeout: The timeout in seconds.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(f"No message within {timeout} s")


class OutboxFull(SimpleWebsocketError):
    """``send()`` during an outage found the outbox full (policy ``"raise"``)."""
