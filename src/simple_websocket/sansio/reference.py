"""The reference path: data frames handed to ``wsproto.Connection``.

:class:`~simple_websocket.sansio.protocol.Protocol` parses frame headers and control
frames itself in every case. With ``fast_path = False`` (the reference the tests
compare the fast path against) or with an extension other than permessage-deflate,
it hands each data frame, header and payload as they arrive, to :class:`WsprotoPath`,
which drives wsproto through its public API only (``receive_data``, ``events``,
``send``) and turns its events into messages.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, TextMessage
from wsproto.extensions import Extension

from . import framing
from .framing import CloseCode, surrogate_pending, too_big_reason

__all__ = ["WsprotoPath"]


class WsprotoPath:
    """Data frames through wsproto: messages out, or the reason to fail.

    Args:
        client: ``True`` on the client side.
        extensions: The negotiated extensions (wsproto applies them).
        max_message_size: Largest message in bytes, or ``None``.

    Attributes:
        open: A fragmented message is in progress.
        forward: Payload bytes of the current data frame still to hand over.
        failure: ``(code, reason)`` once wsproto refused a frame (or a message was
            too big): the connection must fail with it.
    """

    def __init__(
        self, client: bool, extensions: Sequence[Extension], max_message_size: int | None
    ) -> None:
        kind = ConnectionType.CLIENT if client else ConnectionType.SERVER
        self.conn = Connection(kind, list(extensions))
        self.max_message_size = max_message_size
        self.open = False
        self.forward = 0
        self.failure: tuple[int, str | None] | None = None
        self._assembling: bytearray | None = None
        self._size = 0
        # The text of the current message also goes through a decoder of ours, only
        # to fail fast on a surrogate, as the fast path does: wsproto's decoder holds
        # such bytes back until the message ends.
        self._shadow: codecs.IncrementalDecoder | None = None
        self._shadow_key: bytes | None = None
        self._shadow_offset = 0
        self._shadow_end = False

    def send(self, event: Event) -> bytes:
        """The frame of a message, ping, pong or close, framed by wsproto."""
        return bytes(self.conn.send(event))

    def start(
        self,
        head: bytes,
        opcode: int,
        fin: bool,
        length: int,
        key: bytes | None,
        compressed: bool,
        messages: list[str | bytes],
    ) -> None:
        """Hand over the header of a data frame (already checked by the caller)."""
        self.open = not fin
        self.forward = length
        if opcode != framing.OP_CONT:
            text = opcode == framing.OP_TEXT and not compressed
            self._shadow = framing._utf8_decoder() if text else None
        if self._shadow is not None:
            self._shadow_key = key
            self._shadow_offset = 0
            self._shadow_end = fin
        self.conn.receive_data(head)
        if not length:
            self._events(messages)

    def payload(self, chunk: bytes, messages: list[str | bytes]) -> None:
        """Hand over the next piece of the current data frame's payload."""
        self.forward -= len(chunk)
        self.conn.receive_data(chunk)
        self._events(messages)
        if self._shadow is not None and self.failure is None:
            self._shadow_check(chunk)

    def _shadow_check(self, chunk: bytes) -> None:
        shadow = self._shadow
        assert shadow is not None
        key = self._shadow_key
        if key is not None:
            chunk = bytes(framing._apply_mask(chunk, framing.rotate(key, self._shadow_offset)))
            self._shadow_offset += len(chunk)
        try:
            shadow.decode(chunk, False)
        except UnicodeDecodeError:
            self._shadow = None  # wsproto reports it
            return
        if self._shadow_end and not self.forward:
            self._shadow = None
            return
        why = surrogate_pending(shadow)
        if why is not None:
            self.failure = (CloseCode.INVALID_FRAME_PAYLOAD_DATA, why)

    def _events(self, messages: list[str | bytes]) -> None:
        for event in self.conn.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self._on_message(event, messages)
            elif isinstance(event, CloseConnection):
                # A data frame wsproto refused (it sees no control frame).
                if event.code == CloseCode.MESSAGE_TOO_BIG:
                    self.failure = (event.code, too_big_reason(self.max_message_size))
                else:
                    self.failure = (event.code, event.reason or None)
            if self.failure is not None:
                break

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
                self.failure = (CloseCode.MESSAGE_TOO_BIG, too_big_reason(limit))
                return
        assembling = self._assembling
        if event.message_finished and assembling is None:
            out.append(data if isinstance(data, str) else bytes(data))
            self._size = 0
            return
        # A fragmented message is assembled in one growing buffer, text as UTF-8
        # (wsproto validated it already): keeping its fragments, or the strings
        # wsproto decoded them to, would cost far more memory than the message
        # when they are small.
        if assembling is None:
            assembling = self._assembling = bytearray()
        assembling += data.encode("utf-8") if isinstance(data, str) else data
        if event.message_finished:
            self._assembling = None
            self._size = 0
            if isinstance(event, TextMessage):
                out.append(assembling.decode("utf-8"))
            else:
                out.append(bytes(assembling))
