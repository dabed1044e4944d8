"""The WebSocket connection after the handshake, without I/O.

:class:`Protocol` turns received bytes into whole messages (``str`` for text,
``bytes`` for binary), queues the bytes that must be written back (pongs, the answer
to a close frame, the close frame that fails the connection on a protocol error),
builds the frames we send and tracks the closing handshake.

It parses and builds every frame itself: frame headers are checked in the order
RFC 6455 gives them meaning (opcode, fragmentation of control frames, lengths and
their shortest encoding, reserved bits, masking), a message's size is checked
against ``max_message_size`` as soon as its headers announce it, text is validated
as UTF-8 as it arrives, control frames are answered between the fragments of a
message, and close codes are checked (1014 and 3000-4999 included). With
permessage-deflate, whole compressed frames are inflated in one call and others
through the extension's per-frame hooks, which are wsproto's public extension
interface; the negotiation itself is the handshake's.

``fast_path = False`` (set before the first byte) is the reference used by the tests:
data frames are then handed to ``wsproto.Connection`` (through ``receive_data``,
``events`` and ``send`` only), and the messages, their order, the bytes written
back and the close codes are the same. It is also used when an extension other than
permessage-deflate was negotiated.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Opcode, RsvBits

from ..errors import ConnectionClosed
from . import framing
from .deflate import Deflate
from .framing import (
    FIN_BINARY,
    FIN_TEXT,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    SMALL_MASK,
    SPEEDUPS,
    CloseCode,
    Partial,
    check_close_code,
    close_payload,
    control_frame,
    header,
    masked_chunks,
    surrogate_pending,
    too_big_reason,
    valid_close_code,
)
from .reference import WsprotoPath

__all__ = ["SPEEDUPS", "CloseCode", "Protocol", "State", "check_close_code"]


class State(enum.Enum):
    """Where a connection is in its lifetime."""

    OPEN = 1
    #: We sent a close frame (or failed the connection) and wait for the peer's.
    CLOSING = 2
    #: Both close frames were exchanged, or the connection was failed or lost.
    CLOSED = 3


#: Masking keys are taken from this many random bytes at a time.
_KEY_POOL = 4096
#: The first byte of the data frames parsed in one step: unfragmented text or
#: binary, and with permessage-deflate also compressed (RSV1) ones.
_FAST_FIRST = frozenset((FIN_TEXT, FIN_BINARY))
_FAST_FIRST_DEFLATE = frozenset((FIN_TEXT, FIN_BINARY, 0xC1, 0xC2))
_OPCODES = frozenset((0, 1, 2, 8, 9, 10))
_RSV1 = RsvBits(True, False, False)
_PROTOCOL_ERROR = int(CloseCode.PROTOCOL_ERROR)
_TOO_BIG = int(CloseCode.MESSAGE_TOO_BIG)


class Protocol:
    """A WebSocket connection's protocol state, fed with bytes.

    Args:
        client: ``True`` on the client side (frames we send are masked).
        extensions: Extensions negotiated during the handshake.
        max_message_size: Largest incoming message in bytes, or ``None``. A larger
            message fails the connection with close code 1009.
        clock: Returns the current time in seconds; used for ping round-trip times.
        max_inflated_size: When ``max_message_size`` is ``None``: the largest a
            compressed message may inflate to (``None``: no limit). A larger one
            fails the connection with 1009.

    Attributes:
        fast_path: ``True`` when data frames are framed and parsed here (no extension
            in use, or only permessage-deflate). Setting it to ``False`` before any
            byte was fed hands data frames to wsproto instead; the results are the
            same.
    """

    # One per connection: no instance dictionary (about 1.5 KiB less per connection).
    __slots__ = (
        "_announced",
        "_clock",
        "_compressed",
        "_deflate_rsv",
        "_extensions",
        "_fast_deflate",
        "_held_pong",
        "_inflate_limit",
        "_key_pos",
        "_keys",
        "_out",
        "_partial",
        "_ping_counter",
        "_pings",
        "_pongs",
        "_rbuf",
        "_ref",
        "_rpos",
        "_stalled",
        "client",
        "close_code",
        "close_reason",
        "close_received",
        "close_sent",
        "defer_pongs",
        "failed",
        "fast_path",
        "latency",
        "lending",
        "max_message_size",
        "output_ready",
        "pong_held",
        "pongs_received",
        "state",
    )

    def __init__(
        self,
        client: bool,
        extensions: Sequence[Extension] = (),
        max_message_size: int | None = None,
        clock: Callable[[], float] | None = None,
        max_inflated_size: int | None = None,
    ) -> None:
        self.client = client
        self.max_message_size = max_message_size
        #: The largest a compressed message may inflate to (for the 1009 reason).
        self._inflate_limit = (
            max_message_size if max_message_size is not None else (max_inflated_size)
        )
        #: The negotiated permessage-deflate when it is the only extension: the
        #: fast paths then compress and inflate through it.
        self._fast_deflate: Deflate | None = None
        self._extensions: list[Extension] = []
        self._deflate_rsv = False
        if extensions:  # (most connections negotiate none: skip the scan)
            self._extensions = [ext for ext in extensions if ext.enabled()]
            for ext in self._extensions:
                if isinstance(ext, Deflate):
                    # Inflate no more than a message may hold (a zip bomb fails with 1009).
                    ext.max_size = self._inflate_limit
            if len(self._extensions) == 1 and isinstance(self._extensions[0], Deflate):
                self._fast_deflate = self._extensions[0]
            self._deflate_rsv = any(isinstance(e, PerMessageDeflate) for e in self._extensions)
        self.fast_path = not self._extensions or self._fast_deflate is not None
        # Data frames through wsproto: the reference path only (created on first use).
        self._ref: WsprotoPath | None = None
        self._clock = clock or (lambda: 0.0)
        self._out = bytearray()
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
        #: How many pongs arrived so far (see :meth:`take_pongs`).
        self.pongs_received = 0
        self._pongs: list[bytes] = []
        #: Set by the I/O layer while what it writes does not leave (the peer does
        #: not read): each ping received then replaces the pong held back for the
        #: previous one instead of adding to the output, as RFC 6455 5.5.3 allows,
        #: so that a ping flood cannot grow our buffers. :meth:`data_to_send`
        #: returns the held pong once this is false again.
        self.defer_pongs = False
        self._held_pong: bytes | bytearray = b""
        #: ``True`` while a pong held back by :attr:`defer_pongs` waits to be sent.
        self.pong_held = False
        #: ``True`` while bytes are queued for the peer (see :meth:`data_to_send`).
        self.output_ready = False
        #: ``False`` when :meth:`receive_buffer` would return ``None`` (no need to
        #: ask it before each read); ``True`` when it may lend a buffer.
        self.lending = False
        # Received bytes not parsed yet (``_rbuf[_rpos:]``: an incomplete header or
        # control frame, or frames left by ``max_messages``).
        self._rbuf = b""
        self._rpos = 0
        self._stalled = False
        # The data message in progress (fast path), between frames or within one.
        self._partial: Partial | None = None
        # Payload bytes announced by the current message's headers so far, and
        # whether it is compressed (its inflated size is checked instead).
        self._announced = 0
        self._compressed = False
        # Reference path: a fragmented message is open; payload bytes of the
        # current data frame still to hand to wsproto; a message being assembled.
        self._keys = b""
        self._key_pos = 0

    def _wsproto(self) -> WsprotoPath:
        ref = self._ref
        if ref is None:
            ref = self._ref = WsprotoPath(self.client, self._extensions, self.max_message_size)
        return ref

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
        self._stalled = False
        messages: list[str | bytes] = []
        if data is None:
            # What was buffered (an incomplete frame, frames a max_messages stall
            # left) is dropped at EOF.
            self._rbuf = b""
            self._rpos = 0
            self._drop_partial()
            if not self.close_received:
                self.close_code = CloseCode.ABNORMAL_CLOSURE
                self.close_reason = None
            self.state = State.CLOSED
            return messages
        if type(data) is not bytes:
            data = bytes(data)
        parse_small = framing._parse_small
        if (
            parse_small is not None
            and not self._rbuf
            and self._partial is None
            and self.fast_path
            and self._fast_deflate is None
        ):
            # The common case first: the bytes are whole small frames, parsed in C.
            limit = self.max_message_size
            i = parse_small(
                data,
                0,
                not self.client,
                126 if limit is None or limit > 124 else limit + 1,
                messages,
                -1 if max_messages is None else max_messages,
            )
            if max_messages is not None and len(messages) >= max_messages:
                # As _parse() does: stalled once max_messages are out, even when no
                # byte is left (the next call then parses nothing more).
                if i < len(data):
                    self._rbuf, self._rpos = data, i
                self._stalled = True
                return messages
            n = len(data)
            if i == n:
                return messages
            if data[i] == 0x88 and n - i >= 2:
                # The read ends with a close frame (FIN, no RSV bit; once per
                # connection): what _parse() would do with it, without the general
                # frame parser. Anything else goes to _parse(), which also fails
                # what is malformed.
                second = data[i + 1]
                length = second & 0x7F
                masked = second & 0x80
                head = i + 6 if masked else i + 2
                if length < 126 and (not masked) == self.client and head + length == n:
                    payload = data[head:]
                    if masked:
                        payload = bytes(framing._apply_mask(payload, data[i + 2 : head]))
                    self._on_close_frame(payload)
                    return messages
            self._parse(data, messages, max_messages, i)
            return messages
        self._parse(data, messages, max_messages)
        return messages

    def _drop_partial(self) -> None:
        if self._partial is not None:
            self._partial.release()
            self._partial = None

    def _parse(
        self,
        data: bytes,
        messages: list[str | bytes],
        max_messages: int | None,
        start: int = 0,
    ) -> None:
        """Parse ``data[start:]``, after the bytes left unparsed by the last call."""
        buf = data
        i = start
        if self._rbuf:
            buf, i = self._rbuf, self._rpos
            self._rbuf, self._rpos = b"", 0
            if data:
                buf = buf[i:] + data
                i = 0
        n = len(buf)
        mask_bit = 0 if self.client else 0x80
        limit = self.max_message_size
        append = messages.append
        fast = self.fast_path
        fast_first = _FAST_FIRST if self._fast_deflate is None else _FAST_FIRST_DEFLATE
        # Frames of fewer payload bytes take the one-step path below.
        small = 126 if limit is None else min(126, limit + 1)
        partial = self._partial
        # Runs of such frames are parsed in C when the extension is there (not with
        # permessage-deflate: nearly every frame is compressed then).
        parse_small = framing._parse_small if fast and self._fast_deflate is None else None
        budget = -1 if max_messages is None else max_messages
        while True:
            if partial is not None and partial.need:
                # The payload of a data frame goes on.
                take = min(partial.need, n - i)
                if not take:
                    return
                with memoryview(buf) as view:
                    self._payload(partial, view[i : i + take], messages)
                i += take
                if self.failed or partial.need:
                    return
                partial = self._partial
            elif not fast and self._ref is not None and self._ref.forward:
                ref = self._ref
                take = min(ref.forward, n - i)
                if not take:
                    return
                ref.payload(buf[i : i + take], messages)
                i += take
                if ref.failure is not None:
                    self.fail(*ref.failure)
                if self.failed or ref.forward:
                    return
            elif n - i < 2:
                break
            elif (
                parse_small is not None
                and partial is None
                and (j := parse_small(buf, i, mask_bit != 0, small, messages, budget)) != i
            ):
                i = j
            else:
                first = buf[i]
                second = buf[i + 1]
                length = second & 0x7F
                head = i + 6 if mask_bit else i + 2
                end = head + length
                if (
                    length < small
                    and first in fast_first
                    and second & 0x80 == mask_bit
                    and end <= n
                    and partial is None
                    and fast
                ):
                    # The common case: a small unfragmented data frame, all there.
                    key = buf[i + 2 : head] if mask_bit else None
                    if key is None:
                        payload: bytes | bytearray = buf[head:end]
                    else:
                        payload = framing._apply_mask(buf[head:end], key)
                    if first & 0x40:
                        inflated = self._inflate(payload)
                        if inflated is None:
                            return
                        payload = inflated
                    if first & 1:
                        try:
                            append(payload.decode("utf-8"))
                        except UnicodeDecodeError as exc:
                            self.fail(CloseCode.INVALID_FRAME_PAYLOAD_DATA, str(exc))
                            return
                    else:
                        append(payload if type(payload) is bytes else bytes(payload))
                    i = end
                else:
                    j = self._frame(buf, i, n, messages, limit)
                    partial = self._partial
                    if j < 0 or self.state is State.CLOSED:
                        if self.failed or self.state is State.CLOSED:
                            return
                        break  # incomplete: wait for more bytes
                    i = j
            if max_messages is not None and len(messages) >= max_messages:
                if i < n:
                    self._rbuf, self._rpos = buf, i
                self._stalled = True
                return
        if i < n:
            self._rbuf, self._rpos = buf, i

    def _bad(self, reason: str, code: int = _PROTOCOL_ERROR) -> int:
        self.fail(code, reason)
        return -1

    def _frame(
        self, buf: bytes, i: int, n: int, messages: list[str | bytes], limit: int | None
    ) -> int:
        """Parse the frame that starts at ``buf[i]``.

        All of a control frame is taken; of a data frame, the header (and the
        payload too when the frame is unfragmented and all there).

        Returns:
            The position after what was taken, or -1 when the frame is incomplete
            (nothing is taken) or failed the connection.
        """
        first = buf[i]
        second = buf[i + 1]
        fin = first & 0x80
        opcode = first & 0x0F
        if opcode not in _OPCODES:
            return self._bad(f"Invalid opcode {opcode:#x}")
        control = opcode >= OP_CLOSE
        if control and not fin:
            return self._bad("Invalid attempt to fragment control frame")
        length = second & 0x7F
        if control and length > 125:
            return self._bad("Control frame with payload len > 125")
        head = i + 2
        if length == 126:
            head = i + 4
            if head > n:
                return -1
            length = (buf[i + 2] << 8) | buf[i + 3]
            if length < 126:
                return self._bad("Payload length used 2 bytes when 1 would have sufficed")
        elif length == 127:
            head = i + 10
            if head > n:
                return -1
            length = int.from_bytes(buf[i + 2 : head], "big")
            if length < 65536:
                return self._bad("Payload length used 8 bytes when 2 would have sufficed")
            if length >> 63:
                return self._bad("8-byte payload length with non-zero MSB")
        rsv = first & 0x70
        if rsv and (control or self._deflate_rsv or not self._extensions):
            if self._deflate_rsv and rsv & 0x40 and (control or opcode == OP_CONT):
                return self._bad("error in extension")
            if rsv & (0x30 if self._deflate_rsv else 0x70):
                return self._bad("Reserved bit set unexpectedly")
        masked = second & 0x80
        if masked and self.client:
            return self._bad("client received unexpected masked frame")
        if not masked and not self.client:
            return self._bad("server received unexpected unmasked frame")
        key = None
        if masked:
            if head + 4 > n:
                return -1
            key = buf[head : head + 4]
            head += 4
        if control:
            end = head + length
            if end > n:
                return -1
            payload = buf[head:end]
            self._control(
                opcode, payload if key is None else bytes(framing._apply_mask(payload, key))
            )
            return end
        # A data frame: its place in the message, then the announced size.
        if self.fast_path:
            open_message = self._partial is not None
        else:
            open_message = self._ref is not None and self._ref.open
        if opcode == OP_CONT:
            if not open_message:
                return self._bad("unexpected CONTINUATION")
        else:
            if open_message:
                return self._bad(f"expected CONTINUATION, got {Opcode(opcode)!r}")
            self._announced = 0
            self._compressed = bool(rsv & 0x40) and self._deflate_rsv
        self._announced += length
        if limit is not None and self._announced > limit and not self._compressed:
            # Refused on its header: waiting for the payload would let the peer
            # make us buffer up to the limit.
            self._too_big()
            return -1
        if not self.fast_path:
            ref = self._wsproto()
            ref.start(buf[i:head], opcode, bool(fin), length, key, self._compressed, messages)
            if ref.failure is not None:
                self.fail(*ref.failure)
                return -1
            return head
        partial = self._partial
        end = head + length
        if partial is None and fin and end <= n:
            self._whole(buf, head, end, key, opcode == 1, messages)
            return end
        if partial is None:
            partial = Partial(opcode != 1, key, length, bool(fin), self._compressed)
            self._partial = partial
            if partial.buf is not None:
                self.lending = True
        else:
            partial.frame(key, length, bool(fin))
        if partial.compressed:
            deflate = self._fast_deflate
            assert deflate is not None
            rsv_bits = _RSV1 if opcode != OP_CONT else RsvBits(False, False, False)
            deflate.frame_inbound_header(cast(Any, self), Opcode(opcode), rsv_bits, length)
        if not length:
            self._payload(partial, b"", messages)
        return head

    def _whole(
        self,
        buf: bytes,
        head: int,
        end: int,
        key: bytes | None,
        text: bool,
        messages: list[str | bytes],
    ) -> None:
        """Take an unfragmented data frame whose payload is all in ``buf[head:end]``."""
        if key is None:
            payload: bytes | bytearray = buf[head:end]
        elif end - head < SMALL_MASK:
            payload = framing._apply_mask(buf[head:end], key)
        else:
            with memoryview(buf) as view:
                payload = framing._apply_mask(view[head:end], key)
        if self._compressed:
            inflated = self._inflate(payload)
            if inflated is None:
                return
            payload = inflated
        if not text:
            messages.append(payload if type(payload) is bytes else bytes(payload))
            return
        try:
            messages.append(payload.decode("utf-8"))
        except UnicodeDecodeError as exc:
            self.fail(CloseCode.INVALID_FRAME_PAYLOAD_DATA, str(exc))

    def _payload(
        self, partial: Partial, chunk: bytes | memoryview, messages: list[str | bytes]
    ) -> None:
        """Take the next piece of a data frame's payload; complete the message at its end."""
        partial.need -= len(chunk)
        if partial.whole:
            partial.add_whole(chunk)
            if not partial.need:
                self._partial = None
                messages.append(partial.complete())
            return
        data: Any = partial.unmask(chunk)
        frame_end = not partial.need
        if partial.compressed:
            deflate = self._fast_deflate
            assert deflate is not None
            out = deflate.frame_inbound_payload_data(cast(Any, self), bytes(data))
            if not isinstance(out, CloseReason) and frame_end:
                tail = deflate.frame_inbound_complete(cast(Any, self), partial.fin)
                out = tail if isinstance(tail, CloseReason) else out + tail if tail else out
            if isinstance(out, CloseReason):
                self._extension_failed(out)
                return
            data = out
        end = frame_end and partial.fin
        assembled = partial.data
        if partial.decoder is None:
            if data:
                if assembled is not None:
                    assembled += data
                else:
                    partial.chunks.append(data)
            if end:
                self._partial = None
                messages.append(
                    bytes(assembled) if assembled is not None else b"".join(partial.chunks)
                )
            return
        try:
            text = partial.decoder.decode(data, end)
        except UnicodeDecodeError as exc:
            self.fail(CloseCode.INVALID_FRAME_PAYLOAD_DATA, str(exc))
            return
        if assembled is not None:
            assembled += data  # the text is only validated here, decoded at the end
        elif text:
            partial.parts.append(text)
        if not end:
            why = surrogate_pending(partial.decoder)
            if why is not None:
                self.fail(CloseCode.INVALID_FRAME_PAYLOAD_DATA, why)
            return
        self._partial = None
        if assembled is not None:
            messages.append(assembled.decode("utf-8"))
            return
        parts = partial.parts
        messages.append(parts[0] if len(parts) == 1 else "".join(parts))

    def _inflate(self, payload: bytes | bytearray) -> bytes | None:
        """Inflate one whole compressed frame (``None``: the connection was failed)."""
        deflate = self._fast_deflate
        assert deflate is not None
        data = deflate.inflate_message(self.client, payload)
        if isinstance(data, CloseReason):
            self._extension_failed(data)
            return None
        return data

    def _extension_failed(self, code: int) -> None:
        if code == _TOO_BIG:
            # Inflating passed the limit: max_message_size, or the default cap.
            self.fail(CloseCode.MESSAGE_TOO_BIG, too_big_reason(self._inflate_limit))
        else:
            self.fail(code, "error in extension")

    def _too_big(self) -> None:
        self.fail(CloseCode.MESSAGE_TOO_BIG, too_big_reason(self.max_message_size))

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            if not self.close_sent:
                pong = self._build(Pong(payload=payload))
                if self.defer_pongs:
                    # Only the most recent ping gets its pong (RFC 6455 5.5.3).
                    self._held_pong = pong
                    self.pong_held = True
                else:
                    self._out += pong
                    self.output_ready = True
        elif opcode == OP_PONG:
            self._on_pong(payload)
        else:
            self._on_close_frame(payload)

    def _on_close_frame(self, data: bytes) -> None:
        if not data:
            code, reason = int(CloseCode.NO_STATUS_RCVD), ""  # RFC 6455 7.1.5
        elif len(data) == 1:
            self.fail(_PROTOCOL_ERROR, "CLOSE with 1 byte payload")
            return
        else:
            code = (data[0] << 8) | data[1]
            if not valid_close_code(code):
                self.fail(_PROTOCOL_ERROR, f"CLOSE with invalid code {code}")
                return
            try:
                reason = data[2:].decode("utf-8")
            except UnicodeDecodeError as exc:
                self.fail(
                    CloseCode.INVALID_FRAME_PAYLOAD_DATA, f"Error decoding CLOSE reason: {exc}"
                )
                return
        self.close_received = True
        self.close_code = code
        self.close_reason = reason or None
        if not self.close_sent:
            # Answer with the same code, as RFC 6455 5.5.1 asks.
            if self._held_pong:
                self._release_pong()
            if self.fast_path:
                key = self._mask_key() if self.client else None
                self._out += control_frame(OP_CLOSE, close_payload(code, reason), key)
            else:
                self._out += self._build(CloseConnection(code=code, reason=reason))
            self.output_ready = True
            self.close_sent = True
        if self._partial is not None:
            self._drop_partial()
        self.state = State.CLOSED

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
        self.pongs_received += 1

    def receive_buffer(self) -> memoryview | None:
        """Where the next bytes received may be read to directly, or ``None``.

        While a binary frame of up to 4 MiB arrives over several reads, this is
        the rest of its payload's buffer: reading into it, then calling
        :meth:`receive_buffer_updated`, saves copying every read (and joining them).
        At most the bytes of that payload fit in it, and it may only be written
        until that call. ``None`` otherwise: pass the bytes to :meth:`receive_data`.
        """
        partial = self._partial
        if partial is None or partial.buf is None or self.state is State.CLOSED:
            self.lending = False
            return None
        return memoryview(partial.buf)[partial.filled : partial.filled + partial.need]

    def receive_buffer_updated(
        self, nbytes: int, max_messages: int | None = None
    ) -> list[str | bytes]:
        """Account for ``nbytes`` read into :meth:`receive_buffer`.

        Returns:
            The message completed by these bytes, if any (as :meth:`receive_data`).

        Raises:
            ValueError: No read into :meth:`receive_buffer` can be accounted for.
        """
        partial = self._partial
        if partial is None or partial.buf is None or not 0 < nbytes <= partial.need:
            raise ValueError("no read into receive_buffer() to account for")
        self._stalled = False
        partial.filled += nbytes
        partial.need -= nbytes
        if partial.need:
            return []
        self._partial = None
        return [partial.complete()]

    @property
    def stalled(self) -> bool:
        """``True`` when received bytes wait unparsed because of ``max_messages``."""
        return self._stalled and self.state is not State.CLOSED

    # -- sending -----------------------------------------------------------------

    def send(self, data: str | bytes | bytearray | memoryview) -> bytes:
        """Return the frame that carries one message.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        frame = self.send_frame(data)
        return frame if type(frame) is bytes else bytes(frame)

    def send_frame(self, data: str | bytes | bytearray | memoryview) -> bytes | bytearray:
        """Like :meth:`send`, but the frame may be a ``bytearray`` (saves a copy).

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        if self.state is not State.OPEN:
            raise self.closed_error()
        if not self.fast_path:
            if isinstance(data, str):
                return self._wsproto().send(TextMessage(data=data))
            return self._wsproto().send(BytesMessage(data=bytes(data)))
        deflate = self._fast_deflate
        build = framing._build_frame
        if build is not None and deflate is None:
            # The whole frame in one step, in C (the Python below gives the same).
            first = FIN_TEXT if isinstance(data, str) else FIN_BINARY
            if not self.client:
                return build(first, data, None)
            pos = self._key_pos
            if pos < len(self._keys):
                self._key_pos = pos + 4
                return build(first, data, self._keys[pos : pos + 4])
            return build(first, data, self._mask_key())
        if isinstance(data, str):
            payload: bytes | bytearray = data.encode("utf-8")
            first = FIN_TEXT
        else:
            payload = data if isinstance(data, (bytes, bytearray)) else bytes(data)
            first = FIN_BINARY
        if deflate is not None:
            # Compressed by the extension (RSV1 set).
            payload = deflate.compress_message(self.client, payload)
            first |= 0x40
        n = len(payload)
        if not self.client:
            if n < 126:
                return bytes((first, n)) + payload  # header(), inlined
            return header(first, 0, n) + payload
        if n < 126:
            # The common small frame, with _mask_key() and header() inlined.
            pos = self._key_pos
            keys = self._keys
            if pos < len(keys):
                self._key_pos = pos + 4
                key = keys[pos : pos + 4]
            else:
                key = self._mask_key()
            return bytes((first, 0x80 | n)) + key + framing._apply_mask(payload, key)
        key = self._mask_key()
        if n < SMALL_MASK:
            return header(first, 0x80, n) + key + framing._apply_mask(payload, key)
        frame = bytearray(header(first, 0x80, n))
        frame += key
        start = len(frame)
        frame += payload
        framing._mask_into(frame, start, key, None)
        return frame

    def send_chunks(
        self, data: str | bytes | bytearray | memoryview, chunk_size: int = 64 * 1024
    ) -> Iterator[bytes | bytearray | memoryview]:
        """Return the frame of one message in pieces, to be written in order.

        Joined, the pieces are the frame :meth:`send` returns (with the same
        masking key), but a large message costs fewer copies: a server's payload
        is not copied behind the header, and a client masks it ``chunk_size`` bytes
        at a time as the pieces are taken, so that the first ones can be on their
        way while the rest is masked. Take every piece before sending anything else.

        Raises:
            ValueError: ``chunk_size`` is not a positive multiple of 4.
            ConnectionClosed: The connection is closing or closed.
        """
        if chunk_size <= 0 or chunk_size % 4:
            raise ValueError("chunk_size must be a positive multiple of 4")
        if self.state is not State.OPEN:
            raise self.closed_error()
        if (
            isinstance(data, str)
            or len(data) <= chunk_size
            or not self.fast_path
            or self._fast_deflate is not None
        ):
            return iter((self.send_frame(data),))
        view = memoryview(data)
        if view.itemsize != 1 or not view.c_contiguous:
            view = memoryview(bytes(view))
        n = len(view)
        if not self.client:
            return iter((header(FIN_BINARY, 0, n) + view[:chunk_size], view[chunk_size:]))
        key = self._mask_key()
        return masked_chunks(header(FIN_BINARY, 0x80, n) + key, view, key, chunk_size)

    def _mask_key(self) -> bytes:
        """A fresh random masking key (from a pool of ``os.urandom`` bytes).

        The first pool is small (most connections send few messages), the next
        ones ``_KEY_POOL`` bytes.
        """
        pos = self._key_pos
        if pos >= len(self._keys):
            self._keys = os.urandom(_KEY_POOL if self._keys else 64)
            pos = 0
        self._key_pos = pos + 4
        return self._keys[pos : pos + 4]

    def _build(self, event: Ping | Pong | CloseConnection) -> bytes:
        """The frame of a ping, pong or close."""
        if not self.fast_path:
            return self._wsproto().send(event)
        key = self._mask_key() if self.client else None
        if isinstance(event, CloseConnection):
            return control_frame(OP_CLOSE, close_payload(event.code, event.reason), key)
        opcode = OP_PING if isinstance(event, Ping) else OP_PONG
        return control_frame(opcode, bytes(event.payload), key)

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
        return payload, self._build(Ping(payload=payload))

    def ping_pending(self, payload: bytes) -> bool:
        """``True`` while the ping with ``payload`` waits for its pong."""
        return payload in self._pings

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
        """Start the closing handshake; returns the close frame (empty if already sent).

        Raises:
            ValueError: ``code`` may not be sent (see :func:`check_close_code`).
        """
        code = check_close_code(code)
        if self.close_sent or self.state is State.CLOSED:
            return b""
        frame = self._build(CloseConnection(code=code, reason=reason))
        self.close_sent = True
        self.state = State.CLOSING
        if self._held_pong:
            # The pong answers a ping that came before the close: it goes first.
            frame = bytes(self._held_pong) + frame
            self._held_pong = b""
            self.pong_held = False
        return frame

    def fail(self, code: int, reason: str | None = None) -> None:
        """Fail the connection: queue a close frame with ``code`` and stop reading."""
        if self.state is State.CLOSED:
            return
        if not self.close_sent:
            self._release_pong()
            if self.fast_path:
                key = self._mask_key() if self.client else None
                self._out += control_frame(OP_CLOSE, close_payload(code, reason), key)
            else:
                self._out += self._build(CloseConnection(code=code, reason=reason))
            self.output_ready = True
            self.close_sent = True
        self.failed = True
        self.close_code = int(code)
        self.close_reason = reason
        self._drop_partial()
        self.state = State.CLOSED

    def connection_lost(self) -> None:
        """Record that the transport is gone (1006 unless a close frame arrived)."""
        if self.state is not State.CLOSED:
            self.receive_data(None)
        self.state = State.CLOSED

    def _release_pong(self) -> None:
        """Queue the pong held back by :attr:`defer_pongs`, if any."""
        if self._held_pong:
            self._out += self._held_pong
            self._held_pong = b""
            self.pong_held = False
            self.output_ready = True

    def data_to_send(self) -> bytes:
        """Return and clear the bytes queued for the peer.

        This includes the pong held back while :attr:`defer_pongs` was set, once it
        is no longer set.
        """
        if self._held_pong and not self.defer_pongs:
            self._release_pong()
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        self.output_ready = False
        return out

    def closed_error(self) -> ConnectionClosed:
        """Return the ``ConnectionClosed`` exception describing how the connection ended."""
        if self.close_code is None:
            return ConnectionClosed(CloseCode.NO_STATUS_RCVD, None)
        return ConnectionClosed(self.close_code, self.close_reason)
