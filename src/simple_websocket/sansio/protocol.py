"""The WebSocket connection after the handshake, without I/O.

:class:`Protocol` wraps ``wsproto.connection.Connection``. Feed it received bytes and
it returns whole messages (``str`` for text, ``bytes`` for binary), queues the bytes
that must be written back (pongs, the answer to a close frame, the close frame that
fails the connection on a protocol error) and tracks the closing handshake. This is
the one place where wsproto's events and errors are turned into this package's.

Fast paths. wsproto stays the protocol core, but the two things a connection does
most, framing an outgoing message and parsing an incoming one, go around its
per-frame machinery when no extension other than permessage-deflate is in use:

* :meth:`Protocol.send` builds the frame of a data message itself: the same header
  wsproto writes, and for a client the payload masked with a fresh random key. The
  frame is byte for byte the one wsproto would produce with that key.
* :meth:`Protocol.receive_data` parses unfragmented text and binary frames itself
  (masked from a client, unmasked from a server), validating UTF-8 as wsproto does.
  Every other frame goes to wsproto: a well-formed control frame is handed over on
  its own (wsproto then processes it exactly as if it had seen all the bytes), and
  anything else (fragments, reserved bits or opcodes, a wrong mask bit, a needlessly
  long length encoding, a message over ``max_message_size``, invalid UTF-8) hands
  wsproto the rest of the bytes, so that errors produce the same close frame as
  before. Bytes go back to the fast path once wsproto has nothing buffered.

With permessage-deflate, unfragmented messages stay on the fast paths: a message
is compressed, and a whole compressed frame inflated, by the extension's own
methods (its context takeover and size bound stay in one place); a compressed
frame that arrives over several reads is inflated piece by piece through the
extension's per-frame hooks, as wsproto would, so errors come as early.

The messages, their order, the bytes written back and the close codes are the same
as wsproto's in every case; :attr:`Protocol.fast_path` turns the fast paths off.
"""

from __future__ import annotations

import codecs
import contextlib
import enum
import os
import struct
from collections.abc import Callable, Iterator, Sequence

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.frame_protocol import (
    CloseReason,
    Frame,
    FrameDecoder,
    Opcode,
    ParseFailed,
    RsvBits,
    XorMaskerSimple,
)

from ..errors import ConnectionClosed
from .deflate import Deflate

__all__ = ["SPEEDUPS", "CloseCode", "Protocol", "State", "check_close_code"]

CloseCode = CloseReason


def check_close_code(code: int | None) -> int:
    """Return the close code to send for ``code`` (1000 when ``None``).

    Raises:
        ValueError: ``code`` may not be sent (RFC 6455 7.4): only 1000-1003,
            1007-1014 and 3000-4999 may. 1005, 1006 and 1015 only report what
            happened to a connection, and the rest is reserved.
    """
    if code is None:
        return int(CloseCode.NORMAL_CLOSURE)
    code = int(code)
    if _valid_close_code(code):
        return code
    raise ValueError(f"close code {code} cannot be sent: use 1000-1003, 1007-1014 or 3000-4999")


def _valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame, sent or received."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _process_close(frame: Frame) -> Frame:
    """Parse a received close frame's payload into ``(code, reason)``.

    Installed in place of wsproto's own parser, whose list of known codes stops at
    1013: every code :func:`check_close_code` lets us send is accepted here too
    (1014 included), every other one fails the connection with 1002, and a reason
    that is not UTF-8 with 1007, as RFC 6455 7.1.6 and 8.1 ask.

    Raises:
        ParseFailed: The payload is invalid (wsproto turns it into a close frame).
    """
    data = frame.payload
    assert isinstance(data, (bytes, bytearray))
    if not data:
        # RFC 6455 7.1.5: no status code in the frame means 1005.
        payload: tuple[int, str] = (CloseCode.NO_STATUS_RCVD, "")
    elif len(data) == 1:
        raise ParseFailed("CLOSE with 1 byte payload")
    else:
        code = (data[0] << 8) | data[1]
        if not _valid_close_code(code):
            raise ParseFailed(f"CLOSE with invalid code {code}")
        try:
            reason = bytes(data[2:]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseFailed(
                f"Error decoding CLOSE reason: {exc}", CloseCode.INVALID_FRAME_PAYLOAD_DATA
            ) from None
        with contextlib.suppress(ValueError):  # 1014 and 3000-4999 have no name
            code = CloseCode(code)
        payload = (code, reason)
    return Frame(frame.opcode, payload, frame.frame_finished, frame.message_finished)


class State(enum.Enum):
    """Where a connection is in its lifetime."""

    OPEN = 1
    #: We sent a close frame (or failed the connection) and wait for the peer's.
    CLOSING = 2
    #: Both close frames were exchanged, or the connection was failed or lost.
    CLOSED = 3


# -- framing helpers -------------------------------------------------------------------

#: Without the C extension, payloads shorter than this are masked through ``int``
#: (fastest for small sizes), longer ones with ``bytes.translate`` on the four byte
#: lanes.
_SMALL_MASK = 512
_XOR_TABLES = [bytes(a ^ b for a in range(256)) for b in range(256)]
_HEADER16 = struct.Struct("!BBH").pack
_HEADER64 = struct.Struct("!BBQ").pack
#: Binary frames up to this size that arrive over several reads are collected in one
#: buffer (see ``_take_buffer``), larger ones as a list of chunks.
_DIRECT_MAX = 4 * 1024 * 1024
#: Collection buffers kept for reuse: fresh large allocations cost a page fault
#: per 4 KiB the first time they are written, which is most of the cost of
#: receiving a large message. At most this many (of at most ``_DIRECT_MAX`` bytes)
#: are kept, shared by the whole process (``list.pop`` and ``append`` are atomic).
_POOL_SIZE = 2
_pool: list[bytearray] = []
#: Masking keys are taken from this many random bytes at a time.
_KEY_POOL = 4096

_OPEN = ConnectionState.OPEN
_FIN_TEXT = 0x81  # FIN + text, no reserved bit
_FIN_BINARY = 0x82  # FIN + binary
#: FIN + close, ping or pong: control frames that are handed to wsproto one by one.
_CONTROL = frozenset((0x88, 0x89, 0x8A))
#: The first byte of the data frames the fast path parses: unfragmented text or
#: binary, and with permessage-deflate also compressed (RSV1) ones.
_FAST_FIRST = frozenset((_FIN_TEXT, _FIN_BINARY))
_FAST_FIRST_DEFLATE = frozenset((_FIN_TEXT, _FIN_BINARY, 0xC1, 0xC2))
_RSV1 = RsvBits(True, False, False)
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


#: Payload size -> (``0x...0000000100000001``, ``2 ** (8 * size) - 1``): multiplying a
#: 32-bit key by the first repeats it over the payload (only small sizes get here).
_REPEAT: dict[int, tuple[int, int]] = {}


def _mask_small(key: bytes, data: bytes | bytearray) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``key`` (RFC 6455 5.3), as new bytes."""
    n = len(data)
    if not n:
        return b""
    try:
        repeat, full = _REPEAT[n]
    except KeyError:
        repeat = sum(1 << (32 * i) for i in range((n + 3) // 4))
        full = (1 << (8 * n)) - 1
        if n < _SMALL_MASK:
            _REPEAT[n] = repeat, full
    mask = int.from_bytes(key, "little") * repeat
    return ((int.from_bytes(data, "little") ^ mask) & full).to_bytes(n, "little")


def _py_mask_into(buf: bytearray, start: int, key: bytes, end: int | None = None) -> None:
    """XOR ``buf[start:end]`` in place with the repeated 4-byte ``key``."""
    for lane in range(4):
        i = start + lane
        buf[i:end:4] = buf[i:end:4].translate(_XOR_TABLES[key[lane]])


def _py_apply_mask(data: bytes | bytearray | memoryview, key: bytes) -> bytes | bytearray:
    """Return ``data`` XORed with ``key`` (a new object; ``data`` is left as it is)."""
    if len(data) < _SMALL_MASK:
        return _mask_small(key, bytes(data) if isinstance(data, memoryview) else data)
    buf = bytearray(data)
    _py_mask_into(buf, 0, key)
    return buf


_MaskInto = Callable[[bytearray, int, bytes, "int | None"], None]
_ApplyMask = Callable[[bytes | bytearray | memoryview, bytes], bytes | bytearray]

try:
    from . import _speedups
except ImportError:  # not compiled (no C compiler at install time): pure Python
    _c_apply_mask: _ApplyMask | None = None
    _c_mask_into: _MaskInto | None = None
else:
    _c_apply_mask = _speedups.apply_mask
    _c_mask_into = _speedups.mask_into

#: ``True`` when payloads are masked by the C extension ``_speedups`` (built at
#: install time where a C compiler is available; ``SIMPLE_WEBSOCKET_NO_EXTENSIONS=1``
#: in the environment turns it off). The results are the same either way.
SPEEDUPS = _c_apply_mask is not None and not os.environ.get("SIMPLE_WEBSOCKET_NO_EXTENSIONS")
#: ``_apply_mask(data, key)``: ``data`` XORed with the repeated 4-byte ``key``, as a
#: new object. ``_mask_into(buf, start, key, end)``: the same, in place on
#: ``buf[start:end]`` (``end=None``: to the end of ``buf``).
_apply_mask: _ApplyMask = _py_apply_mask
_mask_into: _MaskInto = _py_mask_into
if SPEEDUPS and _c_apply_mask is not None and _c_mask_into is not None:
    _apply_mask = _c_apply_mask
    _mask_into = _c_mask_into


def _take_buffer(size: int) -> bytearray:
    """A buffer of at least ``size`` bytes, reused if one is free."""
    try:
        buf = _pool.pop()
    except IndexError:
        return bytearray(size)
    return buf if len(buf) >= size else bytearray(size)


def _give_back(buf: bytearray) -> None:
    if len(_pool) < _POOL_SIZE:
        _pool.append(buf)


def _masked_chunks(
    head: bytes, view: memoryview, key: bytes, size: int
) -> Iterator[bytes | bytearray | memoryview]:
    """``head`` and the masked ``view``, ``size`` (a multiple of 4) bytes at a time."""
    first = bytearray(head)
    first += view[:size]
    _mask_into(first, len(head), key, None)
    yield first
    for start in range(size, len(view), size):
        chunk = bytearray(view[start : start + size])
        _mask_into(chunk, 0, key, None)
        yield chunk


def _complete(partial: _Partial) -> bytes:
    """The payload of a binary frame collected over several reads, unmasked."""
    key = partial.key
    buf = partial.buf
    if buf is None:
        if key is None:
            return b"".join(partial.chunks)
        joined = bytearray().join(partial.chunks)
        _mask_into(joined, 0, key, None)
        return bytes(joined)
    partial.buf = None
    length = partial.filled
    if key is not None:
        _mask_into(buf, 0, key, length)
    with memoryview(buf) as view:
        payload = view[:length].tobytes()
    _give_back(buf)
    return payload


def _header(first: int, mask_bit: int, n: int) -> bytes:
    if n < 126:
        return bytes((first, mask_bit | n))
    if n < 65536:
        return _HEADER16(first, mask_bit | 126, n)
    return _HEADER64(first, mask_bit | 127, n)


class _Partial:
    """An unfragmented data frame whose payload arrives over several reads."""

    __slots__ = (
        "binary",
        "buf",
        "chunks",
        "decoder",
        "filled",
        "inflate",
        "key",
        "need",
        "offset",
        "parts",
    )

    def __init__(self, binary: bool, key: bytes | None, need: int, inflate: bool = False) -> None:
        self.binary = binary
        self.key = key
        #: Payload bytes still to come.
        self.need = need
        #: Compressed (permessage-deflate): each chunk is unmasked and inflated as it
        #: arrives, as wsproto does, then handled like a text frame's chunks (binary:
        #: the inflated chunks are kept in ``chunks``).
        self.inflate = inflate
        #: Binary, up to ``_DIRECT_MAX`` bytes: a buffer for the payload (reads can
        #: go straight into it, see ``Protocol.receive_buffer``), filled so far.
        self.buf = _take_buffer(need) if binary and not inflate and need <= _DIRECT_MAX else None
        self.filled = 0
        #: Binary, larger: the raw (still masked) chunks.
        self.chunks: list[bytes | memoryview] = []
        #: Text: the chunks decoded so far (UTF-8 is checked as it arrives, as wsproto
        #: does) and the payload offset of the next chunk (for the masking key).
        self.parts: list[str] = []
        self.decoder = None if binary else _utf8_decoder()
        self.offset = 0


class _Masker:
    """Unmasks a frame's payload as it arrives, with ``_mask_into`` (C if built)."""

    __slots__ = ("key",)

    def __init__(self, key: bytes) -> None:
        self.key = key

    def process(self, data: bytearray) -> bytearray:
        if data:
            key = self.key
            _mask_into(data, 0, key, None)
            # The next piece of the payload goes on with the next key byte.
            rotate = len(data) & 3
            if rotate:
                self.key = key[rotate:] + key[:rotate]
        return data


class _FrameDecoder(FrameDecoder):
    """wsproto's frame decoder, with a size check on frame headers and a fast unmask.

    wsproto delivers a data frame's payload as it arrives, and counting it only
    then lets a peer that announces a huge frame make us buffer up to the limit
    first. Here the lengths announced by a message's frame headers are added up
    as each header is parsed, and the message fails with 1009 as soon as they
    exceed ``max_size``. A compressed message is exempt: its inflated size is
    what counts, and :class:`Deflate` checks it while inflating.

    Masked payloads (a client's frames) are unmasked by :class:`_Masker` when the
    C extension is there, instead of wsproto's pure-Python masker: this is the
    path of compressed and fragmented messages.
    """

    def __init__(
        self,
        client: bool,
        extensions: list[Extension],
        max_size: int | None,
        deflate: Deflate | None,
    ) -> None:
        super().__init__(client, extensions)
        self.max_size = max_size
        self.deflate = deflate
        #: Payload bytes announced by the headers of the current message so far.
        self.announced = 0

    def parse_header(self) -> bool:
        if not super().parse_header():
            return False
        masker = self.masker
        if SPEEDUPS and isinstance(masker, XorMaskerSimple):
            self.masker = _Masker(bytes(masker._masking_key))  # type: ignore[assignment]
        header = self.header
        assert header is not None
        opcode = header.opcode
        if opcode.iscontrol() or self.max_size is None:
            return True
        if opcode is not Opcode.CONTINUATION:
            self.announced = 0
        self.announced += header.payload_len
        if self.announced > self.max_size and not (
            self.deflate is not None and self.deflate._inbound_compressed
        ):
            raise ParseFailed(
                f"Message larger than {self.max_size} bytes", CloseCode.MESSAGE_TOO_BIG
            )
        return True


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
        fast_path: ``True`` when data frames are framed and parsed without going
            through wsproto's per-frame code (no extension in use, or only
            permessage-deflate, which then compresses and inflates whole messages
            through the extension's own methods). Setting it to
            ``False`` (before any byte was fed) sends everything through wsproto;
            the results are the same.
    """

    def __init__(
        self,
        client: bool,
        extensions: Sequence[Extension] = (),
        max_message_size: int | None = None,
        clock: Callable[[], float] | None = None,
        max_inflated_size: int | None = None,
    ) -> None:
        self.client = client
        self._conn = Connection(
            ConnectionType.CLIENT if client else ConnectionType.SERVER, list(extensions)
        )
        self.max_message_size = max_message_size
        self._deflate: Deflate | None = None
        for ext in extensions:
            if isinstance(ext, Deflate):
                # Inflate no more than a message may hold (a zip bomb fails with 1009).
                ext.max_size = (
                    max_message_size if max_message_size is not None else max_inflated_size
                )
                self._deflate = ext
        self._clock = clock or (lambda: 0.0)
        self._out = bytearray()
        #: The fragmented message being assembled, if any.
        self._assembling: bytearray | None = None
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
        #: Set by the I/O layer while what it writes does not leave (the peer does
        #: not read): each ping received then replaces the pong held back for the
        #: previous one instead of adding to the output, as RFC 6455 5.5.3 allows,
        #: so that a ping flood cannot grow our buffers. :meth:`data_to_send`
        #: returns the held pong once this is false again.
        self.defer_pongs = False
        self._held_pong: bytes | bytearray = b""
        # Fast path state: received bytes not parsed yet (``_rbuf[_rpos:]``: an
        # incomplete frame, or frames left by ``max_messages``), and the data frame
        # being collected over several reads.
        self._rbuf = b""
        self._rpos = 0
        self._partial: _Partial | None = None
        # True once bytes were handed to wsproto, until it holds nothing any more.
        self._wsproto_busy = False
        self._keys = b""
        self._key_pos = 0
        self.fast_path = False
        self._fast_deflate: Deflate | None = None
        try:
            frames = self._conn._proto
            if max_message_size is not None or SPEEDUPS:
                frames._frame_decoder = _FrameDecoder(
                    client, frames.extensions, max_message_size, self._deflate
                )
            self._frame_decoder = frames._frame_decoder
            self._message_decoder = frames._message_decoder
            # The wsproto internals the fast paths rely on (wsproto 1.2 and 1.3).
            _ = (self._frame_decoder.header, self._frame_decoder.buffer.buffer)
            _ = (self._message_decoder.opcode, frames._outbound_opcode)
            _ = (self._conn._events, self._conn._state)
            extensions_in_use = frames.extensions
            #: The negotiated permessage-deflate when it is the only extension: the
            #: fast paths then compress and inflate whole messages through it.
            self._fast_deflate = (
                extensions_in_use[0]
                if len(extensions_in_use) == 1 and isinstance(extensions_in_use[0], Deflate)
                else None
            )
            self.fast_path = not extensions_in_use or self._fast_deflate is not None
        except AttributeError:  # pragma: no cover - another wsproto
            pass
        if hasattr(self._conn._proto, "_process_close"):
            self._conn._proto._process_close = _process_close  # type: ignore[method-assign]

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
        self._stalled = False
        messages: list[str | bytes] = []
        if data is None:
            # Like wsproto, which ignores what it buffered: an incomplete frame, or
            # frames a max_messages stall left, are dropped at EOF.
            self._rbuf = b""
            self._rpos = 0
            self._partial = None
            conn.receive_data(None)
        else:
            if self.fast_path:
                if self._wsproto_busy:
                    # wsproto took over: the fast path resumes once it holds nothing.
                    self._wsproto_busy = not self._wsproto_idle()
                if not self._wsproto_busy:
                    rest = self._receive_fast(data, messages, max_messages)
                    if not rest:
                        return messages
                    data = rest
                    self._wsproto_busy = True
            if data and conn.state is not ConnectionState.CLOSED:
                conn.receive_data(data)
        self._process_events(messages, max_messages)
        return messages

    def _too_big(self) -> None:
        limit = self.max_message_size
        self.fail(CloseCode.MESSAGE_TOO_BIG, f"Message larger than {limit} bytes")

    def _wsproto_idle(self) -> bool:
        """``True`` when wsproto holds no bytes and no message in progress."""
        decoder = self._frame_decoder
        return (
            decoder.header is None
            and not decoder.buffer.buffer
            and self._message_decoder.opcode is None
            and not self._conn._events
        )

    def _process_events(self, messages: list[str | bytes], max_messages: int | None) -> None:
        """Turn wsproto's pending events into messages, pongs and state changes."""
        conn = self._conn
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
                    if self.defer_pongs:
                        # Only the most recent ping gets its pong (RFC 6455 5.5.3).
                        self._held_pong = conn.send(event.response())
                    else:
                        self._out += conn.send(event.response())
            elif isinstance(event, Pong):
                self._on_pong(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                self._on_close(event)
                break

    def _receive_fast(
        self, data: bytes, messages: list[str | bytes], max_messages: int | None
    ) -> bytes:
        """Parse what the fast path can; return the bytes left for wsproto.

        Only bytes that wsproto would hold too are kept for the next call (an
        incomplete header, mask key or control frame; frames left by
        ``max_messages``); a frame that is not a fast one is handed over as soon as
        its first two bytes tell, so that wsproto fails bad frames as early as it
        would have. ``b""`` means nothing is left for wsproto.
        """
        if type(data) is not bytes:
            data = bytes(data)
        i = 0
        partial = self._partial
        if partial is not None:
            i = self._collect(partial, data, messages)
            if i < 0 or self.failed:
                return b""  # still incomplete, or invalid UTF-8 failed the connection
            if max_messages is not None and len(messages) >= max_messages:
                self._keep(data, i, True)
                return b""
        buf = data
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
        fast_first = _FAST_FIRST if self._fast_deflate is None else _FAST_FIRST_DEFLATE
        while n - i >= 2:
            first = buf[i]
            second = buf[i + 1]
            if second & 0x80 != mask_bit:
                return buf[i:]  # wrong masking: wsproto fails the connection
            length = second & 0x7F
            if first in fast_first:  # FIN + text or binary, maybe compressed
                head = i + 2
                if length == 126:
                    head = i + 4
                    if head > n:
                        break
                    length = (buf[i + 2] << 8) | buf[i + 3]
                    if length < 126:
                        return buf[i:]  # needlessly long length: protocol error
                elif length == 127:
                    head = i + 10
                    if head > n:
                        break
                    length = int.from_bytes(buf[i + 2 : head], "big")
                    if length < 65536 or length >> 63:
                        return buf[i:]
                key = None
                if mask_bit:
                    if head + 4 > n:
                        break
                    key = buf[head : head + 4]
                    head += 4
                compressed = first & 0x40
                if limit is not None and length > limit and not compressed:
                    # Refused on its header (as _FrameDecoder does): waiting for the
                    # payload would let the peer make us buffer up to the limit.
                    # (A compressed message's inflated size is what counts.)
                    self._too_big()
                    return b""
                end = head + length
                if end > n:
                    # The payload goes on in later reads: collect it.
                    if compressed:
                        assert self._fast_deflate is not None
                        opcode = Opcode.TEXT if first & 1 else Opcode.BINARY
                        self._fast_deflate.frame_inbound_header(
                            self._frame_decoder, opcode, _RSV1, length
                        )
                        partial = _Partial(not first & 1, key, length, inflate=True)
                    else:
                        partial = _Partial(first == _FIN_BINARY, key, length)
                    self._partial = partial
                    with memoryview(buf) as view:
                        self._collect(partial, view[head:], messages)
                    return b""
                if key is None:
                    payload: bytes | bytearray = buf[head:end]
                elif length < _SMALL_MASK:
                    payload = _apply_mask(buf[head:end], key)
                else:
                    payload = _apply_mask(memoryview(buf)[head:end], key)
                if compressed:
                    inflated = self._inflate(payload)
                    if inflated is None:
                        return b""  # the extension failed the connection
                    payload = inflated
                if first & 1:  # text
                    try:
                        append(payload.decode("utf-8"))
                    except UnicodeDecodeError as exc:
                        if not compressed:
                            return buf[i:]  # wsproto fails it with 1007 (same reason)
                        # Inflated already: fail as wsproto's message decoder does.
                        self.fail(CloseCode.INVALID_FRAME_PAYLOAD_DATA, str(exc))
                        return b""
                else:
                    append(payload if type(payload) is bytes else bytes(payload))
                i = end
                if max_messages is not None and len(messages) >= max_messages:
                    self._keep(buf, i, True)
                    return b""
            elif first in _CONTROL and length <= 125:
                end = i + 2 + length + (4 if mask_bit else 0)
                if end > n:
                    break
                # One whole control frame: wsproto processes it on its own and is
                # idle again afterwards.
                self._conn.receive_data(buf[i:end])
                i = end
                self._process_events(messages, max_messages)
                if self.state is State.CLOSED:
                    return b""
            else:
                return buf[i:]  # fragments, reserved bits or opcodes: wsproto
        self._keep(buf, i, False)
        return b""

    def _inflate_chunk(self, chunk: bytes | bytearray | memoryview, final: bool) -> bytes | None:
        """Inflate a piece of a compressed frame's payload, as wsproto's decoder does.

        The extension's per-frame hooks are called as wsproto calls them, so a
        frame that arrives over several reads fails (1007, 1009) as early as it
        would there. Returns ``None`` when the extension refused it; the
        connection was then failed with its code and wsproto's reason.
        """
        deflate = self._fast_deflate
        decoder = self._frame_decoder
        assert deflate is not None
        out = deflate.frame_inbound_payload_data(decoder, bytes(chunk))
        if not isinstance(out, CloseReason):
            if not final:
                return out
            tail = deflate.frame_inbound_complete(decoder, True)
            if not isinstance(tail, CloseReason):
                return out + tail if tail else out
            out = tail
        self.fail(out, "error in extension")
        return None

    def _inflate(self, payload: bytes | bytearray) -> bytes | None:
        """Inflate one whole compressed frame through the permessage-deflate extension.

        :meth:`Deflate.inflate_message` changes the extension's state (context
        takeover, the ``max_message_size`` bound) as wsproto's per-frame hooks do.
        Returns ``None`` when the extension refused the frame; the connection was
        then failed with its code and wsproto's reason.
        """
        deflate = self._fast_deflate
        assert deflate is not None
        data = deflate.inflate_message(self.client, payload)
        if isinstance(data, CloseReason):
            self.fail(data, "error in extension")
            return None
        return data

    def _keep(self, buf: bytes, pos: int, stalled: bool) -> None:
        """Keep ``buf[pos:]`` for the next call (without copying it now).

        ``stalled``: ``max_messages`` was reached (set even when nothing is left,
        as the wsproto path does).
        """
        if pos < len(buf):
            self._rbuf = buf
            self._rpos = pos
        if stalled:
            self._stalled = True

    def _collect(
        self, partial: _Partial, data: bytes | memoryview, messages: list[str | bytes]
    ) -> int:
        """Add ``data`` to a frame in progress.

        Returns the position in ``data`` after the frame once it is complete (the
        message is then appended to ``messages``), or -1 while it is not.
        """
        take = min(partial.need, len(data))
        chunk = data if take == len(data) else data[:take]
        partial.need -= take
        if partial.binary and not partial.inflate:
            if partial.buf is not None:
                filled = partial.filled
                partial.buf[filled : filled + take] = chunk
                partial.filled = filled + take
            elif chunk:
                partial.chunks.append(chunk)
            if partial.need:
                return -1
            self._partial = None
            messages.append(_complete(partial))
            return take
        key = partial.key
        if key is not None and chunk:
            rotate = partial.offset & 3
            if rotate:
                key = key[rotate:] + key[:rotate]
            partial.offset += take
            chunk = _apply_mask(chunk, key)  # type: ignore[assignment]
        final = not partial.need
        if partial.inflate:
            inflated = self._inflate_chunk(chunk, final)
            if inflated is None:
                self._partial = None
                return take  # the extension failed the connection
            chunk = inflated
            if partial.decoder is None:  # binary
                if chunk:
                    partial.chunks.append(chunk)
                if not final:
                    return -1
                self._partial = None
                messages.append(b"".join(partial.chunks))
                return take
        assert partial.decoder is not None
        try:
            text = partial.decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            # What wsproto does with invalid UTF-8 in a frame as it arrives.
            self._partial = None
            self.fail(CloseCode.INVALID_FRAME_PAYLOAD_DATA, str(exc))
            return take
        if text:
            partial.parts.append(text)
        if not final:
            return -1
        self._partial = None
        parts = partial.parts
        messages.append(parts[0] if len(parts) == 1 else "".join(parts))
        return take

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
            return None
        return memoryview(partial.buf)[partial.filled : partial.filled + partial.need]

    def receive_buffer_updated(
        self, nbytes: int, max_messages: int | None = None
    ) -> list[str | bytes]:
        """Account for ``nbytes`` read into :meth:`receive_buffer`.

        Returns:
            The message completed by these bytes, if any (as :meth:`receive_data`).
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
        return [_complete(partial)]

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
                self._too_big()
                return
        assembling = self._assembling
        if event.message_finished and assembling is None:
            out.append(data if isinstance(data, str) else bytes(data))
            self._size = 0
            return
        # A fragmented message is assembled in one growing buffer, text as UTF-8
        # (wsproto validated it already): keeping its fragments, or the strings
        # wsproto decoded them to, would cost far more memory than the message
        # when they are small (50 to 100 bytes per fragment).
        if assembling is None:
            assembling = self._assembling = bytearray()
        if isinstance(data, str):
            assembling += data.encode("utf-8")
        else:
            assembling += data
        if event.message_finished:
            self._assembling = None
            self._size = 0
            if isinstance(event, TextMessage):
                out.append(assembling.decode("utf-8"))
            else:
                out.append(bytes(assembling))

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
            self._release_pong()
            self._out += conn.send(event.response())
            self.close_sent = True
        self.state = State.CLOSED

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
        conn = self._conn
        if (
            not self.fast_path
            or conn._state is not _OPEN
            or conn._proto._outbound_opcode is not None
        ):
            if isinstance(data, str):
                return conn.send(TextMessage(data=data))
            return conn.send(BytesMessage(data=bytes(data)))
        if isinstance(data, str):
            payload: bytes | bytearray = data.encode("utf-8")
            first = _FIN_TEXT
        else:
            payload = data if isinstance(data, (bytes, bytearray)) else bytes(data)
            first = _FIN_BINARY
        deflate = self._fast_deflate
        if deflate is not None:
            # Compressed by the extension, as wsproto's framing would (RSV1 set).
            payload = deflate.compress_message(self.client, payload)
            first |= 0x40
        n = len(payload)
        if not self.client:
            return _header(first, 0, n) + payload
        key = self._mask_key()
        if n < _SMALL_MASK:
            return _header(first, 0x80, n) + key + _apply_mask(payload, key)
        frame = bytearray(_header(first, 0x80, n))
        frame += key
        start = len(frame)
        frame += payload
        _mask_into(frame, start, key, None)
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
            ConnectionClosed: The connection is closing or closed.
        """
        if chunk_size <= 0 or chunk_size % 4:
            raise ValueError("chunk_size must be a positive multiple of 4")
        if self.state is not State.OPEN:
            raise self.closed_error()
        conn = self._conn
        if (
            isinstance(data, str)
            or len(data) <= chunk_size
            or not self.fast_path
            or self._fast_deflate is not None
            or conn._state is not _OPEN
            or conn._proto._outbound_opcode is not None
        ):
            return iter((self.send_frame(data),))
        view = memoryview(data)
        if view.itemsize != 1 or not view.c_contiguous:
            view = memoryview(bytes(view))
        n = len(view)
        if not self.client:
            return iter((_header(_FIN_BINARY, 0, n) + view[:chunk_size], view[chunk_size:]))
        key = self._mask_key()
        return _masked_chunks(_header(_FIN_BINARY, 0x80, n) + key, view, key, chunk_size)

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
        code = check_close_code(code)
        if self.close_sent or self.state is State.CLOSED:
            return b""
        frame = bytes(self._conn.send(CloseConnection(code=code, reason=reason)))
        self.close_sent = True
        self.state = State.CLOSING
        if self._held_pong:
            # The pong answers a ping that came before the close: it goes first.
            frame = bytes(self._held_pong) + frame
            self._held_pong = b""
        return frame

    def fail(self, code: int, reason: str | None = None) -> None:
        """Fail the connection: queue a close frame with ``code`` and stop reading."""
        if self.state is State.CLOSED:
            return
        if not self.close_sent:
            self._release_pong()
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

    def _release_pong(self) -> None:
        """Queue the pong held back by :attr:`defer_pongs`, if any."""
        if self._held_pong:
            self._out += self._held_pong
            self._held_pong = b""

    @property
    def pong_held(self) -> bool:
        """``True`` while a pong held back by :attr:`defer_pongs` waits to be sent."""
        return bool(self._held_pong)

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
        return out

    def closed_error(self) -> ConnectionClosed:
        """Return the ``ConnectionClosed`` exception describing how the connection ended."""
        if self.close_code is None:
            return ConnectionClosed(CloseCode.NO_STATUS_RCVD, None)
        return ConnectionClosed(self.close_code, self.close_reason)
