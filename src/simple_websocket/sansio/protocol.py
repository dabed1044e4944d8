"""The WebSocket connection after the handshake, without I/O.

:class:`Protocol` wraps ``wsproto.connection.Connection``. Feed it received bytes and
it returns whole messages (``str`` for text, ``bytes`` for binary), queues the bytes
that must be written back (pongs, the answer to a close frame, the close frame that
fails the connection on a protocol error) and tracks the closing handshake. This is
the one place where wsproto's events and errors are turned into this package's.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason

from ..errors import ConnectionClosed

__all__ = ["CloseCode", "Protocol", "State"]

CloseCode = CloseReason


class State(enum.Enum):
    """Where a connection is in its lifetime."""

    OPEN = 1
    #: We sent a close frame (or failed the connection) and wait for the peer's.
    CLOSING = 2
    #: Both close frames were exchanged, or the connection was failed or lost.
    CLOSED = 3


class Protocol:
    """A WebSocket connection's protocol state, fed with bytes.

    Args:
        client: ``True`` on the client side (frames we send are masked).
        extensions: Extensions negotiated during the handshake.
        max_message_size: Largest incoming message in bytes, or ``None``. A larger
            message fails the connection with close code 1009.
        clock: Returns the current time in seconds; used for ping round-trip times.
    """

    def __init__(
        self,
        client: bool,
        extensions: Sequence[Extension] = (),
        max_message_size: int | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.client = client
        self._conn = Connection(
            ConnectionType.CLIENT if client else ConnectionType.SERVER, list(extensions)
        )
        self.max_message_size = max_message_size
        self._clock = clock or (lambda: 0.0)
        self._out = bytearray()
        self._parts: list[str | bytes | bytearray] = []
        self._stalled = False
        self._size = 0
        self._text = False
        self.state = State.OPEN
        #: The close code the peer sent (or 1006 when the connection was lost, or the
        #: code we failed the connection with). ``None`` while open.
        self.close_code: int | None = None
        #: The close reason text matching :attr:`close_code`.
        self.close_reason: str | None = None
        #: ``True`` once a close frame was received from the peer.
        self.close_received = False
        #: ``True`` once we sent a close frame.
        self.close_sent = False
        #: ``True`` when we failed the connection (protocol error or size limit):
        #: the transport should be closed as soon as the close frame is written.
        self.failed = False
        self._pings: dict[bytes, float] = {}
        self._ping_counter = 0
        #: Round-trip time of the most recent answered ping, in seconds.
        self.latency: float | None = None
        #: Payloads of pongs received since the last call of :meth:`take_pongs`.
        self._pongs: list[bytes] = []

    # -- receiving ---------------------------------------------------------------

    def receive_data(
        self, data: bytes | None, max_messages: int | None = None
    ) -> list[str | bytes]:
        """Process bytes from the peer; ``None`` means the transport reached EOF.

        Args:
            data: The bytes received (``b""`` only parses what is buffered), or
                ``None`` at EOF.
            max_messages: Stop parsing once this many messages are complete. The
                remaining bytes stay buffered (:attr:`stalled` is then true) until
                the next call; ``receive_data(b"")`` goes on with them. This bounds
                what one call can produce however many (compressed) messages the
                bytes hold.

        Returns:
            The messages completed by these bytes, oldest first. Anything to write
            back is then available from :meth:`data_to_send`.
        """
        if self.state is State.CLOSED or (self.failed and data is not None):
            return []
        conn = self._conn
        if data is None:
            conn.receive_data(None)
        elif data and conn.state is not ConnectionState.CLOSED:
            conn.receive_data(data)
        self._stalled = False
        messages: list[str | bytes] = []
        for event in conn.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self._on_message(event, messages)
                if self.failed:
                    break
                if max_messages is not None and len(messages) >= max_messages:
                    self._stalled = True
                    break
            elif isinstance(event, Ping):
                if not self.close_sent:
                    self._out += conn.send(event.response())
            elif isinstance(event, Pong):
                self._on_pong(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                self._on_close(event)
                break
        return messages

    @property
    def stalled(self) -> bool:
        """``True`` when received bytes wait unparsed because of ``max_messages``."""
        return self._stalled and self.state is not State.CLOSED

    def _on_message(self, event: TextMessage | BytesMessage, out: list[str | bytes]) -> None:
        data = event.data
        limit = self.max_message_size
        if limit is not None:
            if isinstance(data, str):
                # The limit is on UTF-8 bytes, not characters.
                n = len(data) if data.isascii() else len(data.encode("utf-8"))
            else:
                n = len(data)
            self._size += n
            if self._size > limit:
                self.fail(CloseCode.MESSAGE_TOO_BIG, f"Message larger than {limit} bytes")
                return
        if event.message_finished and not self._parts:
            out.append(data if isinstance(data, str) else bytes(data))
            self._size = 0
            return
        self._parts.append(data)
        if event.message_finished:
            if isinstance(event, TextMessage):
                out.append("".join(self._parts))  # type: ignore[arg-type]
            else:
                assert isinstance(event, BytesMessage)
                out.append(b"".join(self._parts))  # type: ignore[arg-type]
            self._parts = []
            self._size = 0

    def _on_pong(self, payload: bytes) -> None:
        sent = self._pings.pop(payload, None)
        if sent is not None:
            # A pong also answers every older ping (RFC 6455 5.5.3 allows a peer to
            # answer only the most recent one).
            for key, when in list(self._pings.items()):
                if when <= sent:
                    del self._pings[key]
            self.latency = self._clock() - sent
        self._pongs.append(payload)

    def _on_close(self, event: CloseConnection) -> None:
        conn = self._conn
        if conn.state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):
            # wsproto reports a protocol violation as a CloseConnection event without
            # changing its state (a real close frame moves it to REMOTE_CLOSING or
            # CLOSED): fail the connection with that code, also while we are closing.
            self.fail(event.code, event.reason or None)
            return
        if event.code == CloseCode.ABNORMAL_CLOSURE and conn.state is ConnectionState.CLOSED:
            # EOF (receive_data(None)) without a close frame.
            if self.close_code is None or not self.close_received:
                self.close_code = CloseCode.ABNORMAL_CLOSURE
                self.close_reason = None
            self.state = State.CLOSED
            return
        self.close_received = True
        self.close_code = int(event.code)
        self.close_reason = event.reason or None
        if conn.state is ConnectionState.REMOTE_CLOSING:
            # Answer with the same code, as RFC 6455 5.5.1 asks.
            self._out += conn.send(event.response())
            self.close_sent = True
        self.state = State.CLOSED

    # -- sending -----------------------------------------------------------------

    def send(self, data: str | bytes | bytearray | memoryview) -> bytes:
        """Return the frame that carries one message.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        if self.state is not State.OPEN:
            raise self.closed_error()
        if isinstance(data, str):
            return bytes(self._conn.send(TextMessage(data=data)))
        return bytes(self._conn.send(BytesMessage(data=bytes(data))))

    def ping(self, payload: bytes | None = None) -> tuple[bytes, bytes]:
        """Return ``(payload, frame)`` for a ping whose round trip is timed.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        if self.state is not State.OPEN:
            raise self.closed_error()
        if payload is None:
            self._ping_counter += 1
            payload = self._ping_counter.to_bytes(4, "big")
        self._pings[payload] = self._clock()
        return payload, bytes(self._conn.send(Ping(payload=payload)))

    @property
    def oldest_unanswered_ping(self) -> float | None:
        """When the oldest ping still waiting for its pong was sent, or ``None``."""
        return min(self._pings.values()) if self._pings else None

    def take_pongs(self) -> list[bytes]:
        """Return and clear the payloads of the pongs received since the last call."""
        pongs = self._pongs
        if pongs:
            self._pongs = []
        return pongs

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str | None = None) -> bytes:
        """Start the closing handshake; returns the close frame (empty if already sent)."""
        if self.close_sent or self.state is State.CLOSED:
            return b""
        frame = bytes(self._conn.send(CloseConnection(code=code, reason=reason)))
        self.close_sent = True
        self.state = State.CLOSING
        return frame

    def fail(self, code: int, reason: str | None = None) -> None:
        """Fail the connection: queue a close frame with ``code`` and stop reading."""
        if self.state is State.CLOSED:
            return
        if not self.close_sent:
            self._out += self._conn.send(CloseConnection(code=code, reason=reason))
            self.close_sent = True
        self.failed = True
        self.close_code = int(code)
        self.close_reason = reason
        self.state = State.CLOSED

    def connection_lost(self) -> None:
        """Record that the transport is gone (1006 unless a close frame arrived)."""
        if self.state is not State.CLOSED:
            self.receive_data(None)
        self.state = State.CLOSED

    def data_to_send(self) -> bytes:
        """Return and clear the bytes queued for the peer."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def closed_error(self) -> ConnectionClosed:
        """Return the ``ConnectionClosed`` exception describing how the connection ended."""
        if self.close_code is None:
            return ConnectionClosed(CloseCode.NO_STATUS_RCVD, None)
        return ConnectionClosed(self.close_code, self.close_reason)
