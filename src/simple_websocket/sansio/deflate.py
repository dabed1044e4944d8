"""permessage-deflate (RFC 7692): wsproto's negotiation, our own compression.

:class:`Deflate` keeps wsproto's ``PerMessageDeflate`` for the negotiation (its
public ``offer``, ``accept``, ``finalize`` and parameters) and implements the
extension's per-frame hooks over compression state of its own, with these
corrections:

* Control frames between the fragments of a compressed message leave the message's
  compression state alone (wsproto resets it on the control frame, so the following
  fragments were delivered still compressed).
* Inflating is bounded: with ``max_size`` set, a message inflates to at most that
  many bytes, and a message that would grow beyond fails with close code 1009
  before it is inflated any further (a small "zip bomb" cannot allocate more than
  the limit).
* A message whose DEFLATE data ends with a final block (``BFINAL`` set, which RFC
  7692 7.2.3.4 allows a sender to use instead of an empty stored block) ends zlib's
  stream: wsproto's inflater then refuses every later message of a connection with
  context takeover. Here the inflater starts again with the sliding window of what
  was inflated so far (RFC 7692 7.2.2: each message is inflated with the window of
  the messages before it), so later messages inflate as the sender meant them.
  After a final block, only an empty stored block may follow in the message (the
  ``0x00`` of RFC 7692's example, then the ``00 00 ff ff`` tail the receiver
  appends); anything else fails the connection with 1007.

It also offers :meth:`Deflate.compress_message` and :meth:`Deflate.inflate_message`,
which do in one call what wsproto's per-frame hooks do for a whole unfragmented
message, with the same state changes; the core's fast paths use them.
"""

from __future__ import annotations

import zlib
from collections import deque
from typing import TYPE_CHECKING

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Opcode, RsvBits

if TYPE_CHECKING:  # pragma: no cover
    from wsproto.frame_protocol import FrameDecoder, FrameProtocol

__all__ = ["Deflate"]

_TAIL = b"\x00\x00\xff\xff"
#: What may follow the final DEFLATE block of a message, the appended tail included:
#: nothing (the final block was an empty stored one, whose length fields are the
#: tail), the tail alone, or an empty stored block's header byte and the tail.
_AFTER_FINAL = (b"", _TAIL, b"\x00" + _TAIL)


class Deflate(PerMessageDeflate):
    """permessage-deflate with bounded inflating and control frames left alone.

    Args:
        max_size: The largest inflated message, in bytes, or ``None`` for no limit.
        **params: ``PerMessageDeflate``'s parameters.
    """

    def __init__(self, max_size: int | None = None, **params: object) -> None:
        super().__init__(**params)  # type: ignore[arg-type]
        self.max_size = max_size
        # The compression state is ours: only the negotiation (``offer``, ``accept``,
        # ``finalize`` and the parameters) is wsproto's.
        self._zin: zlib._Decompress | None = None
        self._zout: zlib._Compress | None = None
        self._end_flush = zlib.Z_SYNC_FLUSH
        #: Whether the message being received is compressed (its first frame's RSV1).
        self._compressed: bool | None = None
        self._inflated = 0
        self._in_control = False
        # With context takeover on what we receive: the most recent inflated pieces,
        # at least a window's worth (references, not copies), to start the inflater
        # again after a final block. ``None`` until the first message tells the role.
        self._recent: deque[bytes] | None = None
        self._recent_size = 0
        self._window = 0

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        """Check a frame's header; control frames do not touch the message's state."""
        if opcode.iscontrol():
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR
            self._in_control = True
            return RsvBits(True, False, False)
        self._in_control = False
        if rsv.rsv1 and opcode is Opcode.CONTINUATION:
            return CloseReason.PROTOCOL_ERROR
        if self._compressed is None:
            # The first frame of a message says whether it is compressed.
            self._compressed = rsv.rsv1
            if rsv.rsv1 and self._zin is None:
                self._zin = self._inflater(proto.client)
        return RsvBits(True, False, False)

    def _inflater(self, client: bool) -> zlib._Decompress:
        bits = self.server_max_window_bits if client else self.client_max_window_bits
        return zlib.decompressobj(-int(bits))

    def _room(self) -> int | None:
        return None if self.max_size is None else self.max_size - self._inflated

    def _inflate(self, data: bytes | bytearray, client: bool) -> bytes | CloseReason:
        """Inflate a piece of the current message, never beyond ``max_size`` for it."""
        decompressor = self._zin
        assert decompressor is not None
        room = self._room()
        try:
            if room is None:
                out = decompressor.decompress(data)
            else:
                out = decompressor.decompress(data, room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if decompressor.eof and len(decompressor.unused_data) > 1:
            # More than an empty stored block's header after the final block.
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if room is not None and len(out) > room:
            return CloseReason.MESSAGE_TOO_BIG
        if out:
            recent = self._recent
            if recent is None:
                recent = self._start_window(client)
            if self._window:
                self._remember(recent, out)
        return out

    def _start_window(self, client: bool) -> deque[bytes]:
        """Decide, once the role is known, whether inflated data must be remembered."""
        no_context_takeover = (
            self.server_no_context_takeover if client else self.client_no_context_takeover
        )
        if not no_context_takeover:
            bits = self.server_max_window_bits if client else self.client_max_window_bits
            self._window = 1 << int(bits)
        self._recent = deque()
        return self._recent

    def _remember(self, recent: deque[bytes], out: bytes) -> None:
        """Keep ``out`` among the recent pieces, dropping those out of the window."""
        recent.append(out)
        size = self._recent_size + len(out)
        window = self._window
        while size - len(recent[0]) >= window:
            size -= len(recent.popleft())
        self._recent_size = size

    def _restart(self, client: bool) -> None:
        """Start a new inflater after a final block, primed with the sliding window."""
        bits = self.server_max_window_bits if client else self.client_max_window_bits
        history = b"".join(self._recent or ())[-self._window :]
        self._zin = zlib.decompressobj(-int(bits), zdict=history)

    def _end_message(self, client: bool) -> bytes | CloseReason:
        """Flush the inflater at the end of a compressed message and reset its state.

        Returns what the flush inflated (usually nothing), or the close code.
        """
        decompressor = self._zin
        assert decompressor is not None
        room = self._room()
        try:
            if room is None:
                data = decompressor.decompress(_TAIL)
            else:
                data = decompressor.decompress(_TAIL, room + 1)
                if len(data) > room or decompressor.unconsumed_tail:
                    return CloseReason.MESSAGE_TOO_BIG
            final = decompressor.eof
            if final:
                if decompressor.unused_data not in _AFTER_FINAL:
                    return CloseReason.INVALID_FRAME_PAYLOAD_DATA
            else:
                data += decompressor.flush()
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if room is not None and len(data) > room:
            return CloseReason.MESSAGE_TOO_BIG
        no_context_takeover = (
            self.server_no_context_takeover if client else self.client_no_context_takeover
        )
        if no_context_takeover:
            self._zin = None
        else:
            recent = self._recent
            if recent is None:
                recent = self._start_window(client)
            if data:
                self._remember(recent, data)
            if final:
                self._restart(client)
        self._compressed = None
        self._inflated = 0
        return data

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        """Inflate a piece of payload, never beyond ``max_size`` for the message."""
        if self._in_control or not self._compressed:
            return data
        return self._inflate(bytes(data), proto.client)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        """Finish a frame; at the end of a compressed message, flush the inflater."""
        if self._in_control:
            self._in_control = False
            return None
        if not fin:
            return None
        if not self._compressed:
            self._inflated = 0
            self._compressed = None
            return None
        return self._end_message(proto.client)

    def frame_outbound(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        """Compress an outgoing data frame (RSV1 on the first frame of a message)."""
        if opcode.iscontrol():
            return rsv, data
        if opcode is not Opcode.CONTINUATION:
            rsv = RsvBits(True, rsv.rsv2, rsv.rsv3)
        compressor = self._compressor_for(proto.client)
        out = compressor.compress(bytes(data))
        if fin:
            out += compressor.flush(self._end_flush)
            out = out[:-4]
        return rsv, out

    # -- whole messages (the core's fast paths) -------------------------------------

    def compress_message(self, client: bool, data: bytes | bytearray) -> bytes:
        """Compress one whole message, as ``frame_outbound`` does for a final frame.

        Args:
            client: ``True`` on the client side of the connection.
            data: The message's payload.

        Returns:
            The payload to send in a frame with RSV1 set: the same bytes as wsproto
            produces, and the same compression context afterwards.
        """
        compressor = self._zout or self._compressor_for(client)
        out = compressor.compress(data) + compressor.flush(self._end_flush)
        return out[:-4]

    def _compressor_for(self, client: bool) -> zlib._Compress:
        """The compressor of what we send, and how a message ends (made once)."""
        compressor = self._zout
        if compressor is None:
            bits = self.client_max_window_bits if client else self.server_max_window_bits
            compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -int(bits))
            self._zout = compressor
            no_context_takeover = (
                self.client_no_context_takeover if client else self.server_no_context_takeover
            )
            # Without context takeover a full flush ends the message and also forgets
            # everything before it: the next message is compressed as by a new
            # compressor (the same bytes), without the cost of creating one.
            self._end_flush = zlib.Z_FULL_FLUSH if no_context_takeover else zlib.Z_SYNC_FLUSH
        return compressor

    def inflate_message(self, client: bool, data: bytes | bytearray) -> bytes | CloseReason:
        """Inflate one whole compressed message received in a single frame.

        Does what ``frame_inbound_header``, ``frame_inbound_payload_data`` and
        ``frame_inbound_complete`` do together for such a frame. Only call it
        between messages (not while a fragmented message is being received).

        Args:
            client: ``True`` on the client side of the connection.
            data: The frame's (unmasked) payload.

        Returns:
            The inflated message, or the close code to fail the connection with:
            1007 for data that does not inflate, 1009 when the message would
            exceed ``max_size``.
        """
        if self._zin is None:
            self._zin = self._inflater(client)
        out = self._inflate(data, client)
        if isinstance(out, CloseReason):
            return out
        tail = self._end_message(client)
        if isinstance(tail, CloseReason):
            return tail
        return out + tail if tail else out
