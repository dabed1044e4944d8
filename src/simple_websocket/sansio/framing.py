"""Frame-level building blocks of the core: close codes, masking, frame headers.

Everything here works on bytes only. :class:`CloseCode` names the close codes of
RFC 6455 7.4.1 and accepts every code a close frame may carry; the masking helpers
XOR payloads with a 4-byte key (in C when the optional ``_speedups`` extension is
built); :func:`header` and :func:`control_frame` build frames; :class:`Partial`
collects a message whose payload arrives over several reads or frames.
"""

from __future__ import annotations

import codecs
import enum
import os
import struct
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["SPEEDUPS", "CloseCode", "check_close_code", "control_frame", "valid_close_code"]


class CloseCode(enum.IntEnum):
    """WebSocket close codes (RFC 6455 7.4.1 and the IANA registry).

    Codes without a name are values too: ``CloseCode(4001)`` is a member whose name
    is ``CODE_4001`` (3000-4999 are for libraries, frameworks and applications).
    """

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    #: Reported when a close frame carried no code; never sent.
    NO_STATUS_RCVD = 1005
    #: Reported when the connection ended without a close frame; never sent.
    ABNORMAL_CLOSURE = 1006
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXT = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    #: Reported when the TLS handshake failed; never sent.
    TLS_HANDSHAKE_FAILED = 1015

    @classmethod
    def _missing_(cls, value: object) -> CloseCode | None:
        if isinstance(value, int) and 3000 <= value <= 4999:
            member = int.__new__(cls, value)
            member._name_ = f"CODE_{value}"
            member._value_ = value
            return cls._value2member_map_.setdefault(value, member)  # type: ignore[return-value]
        return None


def too_big_reason(limit: int | None) -> str:
    """The close reason sent with 1009 for a message over ``limit`` bytes."""
    return f"Message larger than {limit} bytes"


def valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame, sent or received (RFC 6455 7.4)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


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
    if valid_close_code(code):
        return code
    raise ValueError(f"close code {code} cannot be sent: use 1000-1003, 1007-1014 or 3000-4999")


# -- masking ---------------------------------------------------------------------------

#: Without the C extension, payloads shorter than this are masked through ``int``
#: (fastest for small sizes), longer ones with ``bytes.translate`` on the four byte
#: lanes.
SMALL_MASK = 512
_XOR_TABLES = [bytes(a ^ b for a in range(256)) for b in range(256)]
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
        if n < SMALL_MASK:
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
    if len(data) < SMALL_MASK:
        return _mask_small(key, bytes(data) if isinstance(data, memoryview) else data)
    buf = bytearray(data)
    _py_mask_into(buf, 0, key)
    return buf


_MaskInto = Callable[[bytearray, int, bytes, "int | None"], None]
_ApplyMask = Callable[[bytes | bytearray | memoryview, bytes], bytes | bytearray]
#: ``parse_small(buf, i, masked, small, messages, max_messages) -> i``: see
#: ``_speedups.c``. Parses a run of small unfragmented data frames.
_ParseSmall = Callable[[bytes, int, bool, int, list[str | bytes], int], int]
#: ``build_frame(first, payload, key) -> frame``: see ``_speedups.c``.
_BuildFrame = Callable[[int, "str | bytes | bytearray | memoryview", "bytes | None"], bytes]

try:
    from . import _speedups
except ImportError:  # not compiled (no C compiler at install time): pure Python
    _c_apply_mask: _ApplyMask | None = None
    _c_mask_into: _MaskInto | None = None
    _c_parse_small: _ParseSmall | None = None
    _c_build_frame: _BuildFrame | None = None
    _c_reader: type[Any] | None = None
    _c_bind_lane: Callable[..., None] | None = None
    _c_send_lane: Callable[[Any, Any], bool] | None = None
else:
    _c_apply_mask = _speedups.apply_mask
    _c_mask_into = _speedups.mask_into
    _c_parse_small = _speedups.parse_small
    _c_build_frame = _speedups.build_frame
    _c_reader = _speedups.Reader
    _c_bind_lane = _speedups.bind_lane
    _c_send_lane = _speedups.send_lane

#: ``True`` when payloads are masked by the C extension ``_speedups`` (built at
#: install time where a C compiler is available; ``SIMPLE_WEBSOCKET_NO_EXTENSIONS=1``
#: in the environment turns it off). The results are the same either way.
SPEEDUPS = _c_apply_mask is not None and not os.environ.get("SIMPLE_WEBSOCKET_NO_EXTENSIONS")
#: ``_speedups.Reader`` (the base of the asyncio engine's protocol: the transport's
#: two calls per read, in C) when the extension is in use, else ``None``.
C_READER = _c_reader if SPEEDUPS else None
#: ``bind_lane(connection, session, protocol, inbox, deque, open_state,
#: open_called)``: turns on ``C_READER``'s read lane for connections of those
#: classes (see ``_speedups.c``), when the extension is in use, else ``None``.
C_BIND_LANE = _c_bind_lane if SPEEDUPS else None
#: ``send_lane(connection, data) -> bool``: writes a text message the way
#: ``send_nowait()`` does, in the common case, once ``C_BIND_LANE`` bound the
#: classes (see ``_speedups.c``), when the extension is in use, else ``None``.
C_SEND_LANE = _c_send_lane if SPEEDUPS else None
#: ``_apply_mask(data, key)``: ``data`` XORed with the repeated 4-byte ``key``, as a
#: new object. ``_mask_into(buf, start, key, end)``: the same, in place on
#: ``buf[start:end]`` (``end=None``: to the end of ``buf``).
_apply_mask: _ApplyMask = _py_apply_mask
_mask_into: _MaskInto = _py_mask_into
#: The C parser of small data frames, or ``None``: ``Protocol`` then parses every
#: frame in Python (the same results).
_parse_small: _ParseSmall | None = None
#: The C frame builder, or ``None``: frames are then built in Python.
_build_frame: _BuildFrame | None = None
if SPEEDUPS and _c_apply_mask is not None and _c_mask_into is not None:
    _apply_mask = _c_apply_mask
    _mask_into = _c_mask_into
    _parse_small = _c_parse_small
    _build_frame = _c_build_frame


def rotate(key: bytes, offset: int) -> bytes:
    """The masking key for the payload byte at ``offset`` onwards."""
    r = offset & 3
    return key[r:] + key[:r] if r else key


# -- frames ----------------------------------------------------------------------------

_HEADER16 = struct.Struct("!BBH").pack
_HEADER64 = struct.Struct("!BBQ").pack
FIN_TEXT = 0x81  # FIN + text, no reserved bit
FIN_BINARY = 0x82  # FIN + binary
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
#: The longest close reason that fits in a control frame, in UTF-8 bytes.
_MAX_REASON = 123


def header(first: int, mask_bit: int, n: int) -> bytes:
    """A frame header: first byte, then the payload length ``n`` with ``mask_bit``."""
    if n < 126:
        return bytes((first, mask_bit | n))
    if n < 65536:
        return _HEADER16(first, mask_bit | 126, n)
    return _HEADER64(first, mask_bit | 127, n)


def close_payload(code: int | None, reason: str | None) -> bytes:
    """The payload of a close frame; 1005 (or ``None``) means no code and no reason.

    A reason longer than a control frame allows is cut at a character boundary.
    """
    if code is None or code == CloseCode.NO_STATUS_RCVD:
        return b""
    payload = code.to_bytes(2, "big")
    if reason:
        raw = reason.encode("utf-8")
        if len(raw) > _MAX_REASON:
            raw = raw[:_MAX_REASON].decode("utf-8", "ignore").encode("utf-8")
        payload += raw
    return payload


def control_frame(opcode: int, payload: bytes, key: bytes | None) -> bytes:
    """A ping, pong or close frame; masked with ``key`` unless it is ``None``."""
    if key is None:
        return bytes((0x80 | opcode, len(payload))) + payload
    return bytes((0x80 | opcode, 0x80 | len(payload))) + key + _apply_mask(payload, key)


def masked_chunks(
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


# -- collecting payloads ---------------------------------------------------------------

#: Binary frames up to this size that arrive over several reads are collected in one
#: buffer (see ``_take_buffer``), larger ones as a list of chunks.
DIRECT_MAX = 4 * 1024 * 1024
#: Collection buffers kept for reuse: fresh large allocations cost a page fault
#: per 4 KiB the first time they are written, which is most of the cost of
#: receiving a large message. At most this many (of at most ``DIRECT_MAX`` bytes)
#: are kept, shared by the whole process (``list.pop`` and ``append`` are atomic).
_POOL_SIZE = 2
_pool: list[bytearray] = []
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


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


class Partial:
    """A data message whose payload arrives over several reads or frames.

    ``need``, ``key`` and ``offset`` describe the frame being received; the rest
    the message. A binary message in one frame keeps its payload still masked
    (unmasked once, at the end): in one buffer up to ``DIRECT_MAX`` bytes, which
    reads may fill directly, as chunks beyond. Every other message has each chunk
    unmasked (and inflated, when compressed) as it arrives, kept per read (one
    frame) or in one buffer (fragments): text is decoded as it comes, so that
    invalid UTF-8 fails the connection early.
    """

    __slots__ = (
        "binary",
        "buf",
        "chunks",
        "compressed",
        "data",
        "decoder",
        "filled",
        "fin",
        "key",
        "need",
        "offset",
        "parts",
        "whole",
    )

    def __init__(
        self, binary: bool, key: bytes | None, need: int, fin: bool, compressed: bool
    ) -> None:
        self.binary = binary
        #: The message is one frame, binary and not compressed: unmasked at the end.
        self.whole = binary and fin and not compressed
        #: The message is fragmented: its payload is assembled in ``data`` (a peer
        #: sending tiny fragments must not make us keep an object per fragment).
        self.data = None if fin else bytearray()
        self.compressed = compressed
        self.buf = _take_buffer(need) if self.whole and need <= DIRECT_MAX else None
        self.filled = 0
        self.chunks: list[Any] = []
        self.parts: list[str] = []
        self.decoder = None if binary else _utf8_decoder()
        self.frame(key, need, fin)

    def frame(self, key: bytes | None, need: int, fin: bool) -> None:
        """Start the next frame of the message (the first one, or a continuation)."""
        self.key = key
        #: Payload bytes of the current frame still to come.
        self.need = need
        self.offset = 0
        self.fin = fin

    def add_whole(self, chunk: bytes | memoryview) -> None:
        """Keep a piece of a single-frame binary payload (still masked)."""
        buf = self.buf
        if buf is not None:
            filled = self.filled
            buf[filled : filled + len(chunk)] = chunk
            self.filled = filled + len(chunk)
        elif chunk:
            self.chunks.append(chunk)

    def unmask(self, chunk: bytes | memoryview) -> bytes | bytearray | memoryview:
        """Unmask the next piece of the current frame's payload."""
        key = self.key
        if key is None or not chunk:
            return chunk
        key = rotate(key, self.offset)
        self.offset += len(chunk)
        return _apply_mask(chunk, key)

    def complete(self) -> bytes:
        """The payload of a single-frame binary message, unmasked."""
        key = self.key
        buf = self.buf
        if buf is None:
            if key is None:
                return b"".join(self.chunks)
            joined = bytearray().join(self.chunks)
            _mask_into(joined, 0, key, None)
            return bytes(joined)
        self.buf = None
        length = self.filled
        if key is not None:
            _mask_into(buf, 0, key, length)
        with memoryview(buf) as view:
            payload = view[:length].tobytes()
        _give_back(buf)
        return payload

    def release(self) -> None:
        """Give the collection buffer back (the message was dropped)."""
        if self.buf is not None:
            _give_back(self.buf)
            self.buf = None


def surrogate_pending(decoder: codecs.IncrementalDecoder) -> str | None:
    """Why the bytes ``decoder`` holds back cannot start valid UTF-8, or ``None``.

    The incremental decoder rejects every invalid prefix as soon as it sees it,
    except a UTF-16 surrogate (``ED A0``-``ED BF``), which it only rejects once the
    third byte arrives. A peer must not make us wait for it.
    """
    pending = decoder.getstate()[0]
    if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
        try:
            (pending[:2] + b"\x80").decode("utf-8")
        except UnicodeDecodeError as exc:
            return str(exc)
    return None
