"""The opening handshake of RFC 6455, both sides, without I/O.

This module builds and parses the HTTP/1.1 upgrade request and response, checks them
against RFC 6455 section 4, negotiates the subprotocol and permessage-deflate
(RFC 7692, through ``wsproto.extensions.PerMessageDeflate``) and hands over the bytes
that followed the handshake so that nothing received early is lost.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from wsproto.extensions import Extension, PerMessageDeflate

from .._version import __version__
from ..errors import HandshakeError, HandshakeRejected
from .deflate import Deflate
from .limits import UNSET, Unset
from .options import (
    DEFAULT_DEFLATE,
    DEFAULT_WINDOW_BITS,
    MIN_WINDOW_BITS,
    DeflateOptions,
    check_compression,
    check_header_value,
    check_subprotocols,
)

#: The ``User-Agent`` clients send unless told otherwise.
DEFAULT_USER_AGENT = (
    f"simple-websocket/{__version__} Python/{sys.version_info[0]}.{sys.version_info[1]}"
)

__all__ = [
    "DEFAULT_USER_AGENT",
    "MAX_HEAD_SIZE",
    "WSURL",
    "ClientHandshake",
    "HTTPResponse",
    "HandshakeRequest",
    "ServerHandshake",
    "accept_key",
    "accept_request",
    "build_accept_response",
    "build_reject_response",
    "check_header_conflicts",
    "choose_subprotocol",
    "deflate_answer",
    "deflate_offer",
    "negotiate_deflate",
    "normalize_headers",
    "normalize_subprotocols",
    "parse_request_head",
    "parse_url",
    "reject_response",
    "tls_failure",
    "validate_request",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: The largest HTTP head (start line and headers) accepted in either direction.
MAX_HEAD_SIZE = 16 * 1024
_MAX_HEADERS = 128

Headers = list[tuple[str, str]]
HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]] | None


def _remember_urls(parse: Callable[[str], WSURL]) -> Callable[[str], WSURL]:
    """Remember what ``parse`` returned for each string.

    A client that reconnects, or opens many connections, parses the same URL each
    time. Errors are not remembered, and anything but a ``str`` goes to ``parse`` as
    it is.
    """
    cached = functools.lru_cache(maxsize=256)(parse)

    @functools.wraps(parse)
    def remembered(url: str) -> WSURL:
        return cached(url) if type(url) is str else parse(url)

    return remembered


@dataclass(frozen=True)
class WSURL:
    """A parsed ``ws://`` or ``wss://`` URL."""

    secure: bool
    host: str
    port: int
    resource: str
    #: The value of the ``Host`` header (includes the port when it is not the default).
    host_header: str

    @property
    def display(self) -> str:
        """The URL as requested: ``ws://`` or ``wss://``, host, port and resource."""
        return f"{'wss' if self.secure else 'ws'}://{self.host_header}{self.resource}"

    def closed_early(self) -> ConnectionResetError:
        """The error for a server that closed the connection before answering."""
        message = f"{self.display}: the server closed the connection during the opening handshake"
        if not self.secure:
            message += " (a TLS server does that to plain text: if it expects TLS, use wss://)"
        return ConnectionResetError(message)


#: The punctuation kept as it is in a URL's path and query; spaces, non-ASCII
#: characters, ``"``, ``<``, ``>`` and ``\`` are percent-encoded, as browsers do.
_PATH_SAFE = "!#$%&'()*+,-./:;=?@[]^_`{|}~"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


@_remember_urls
def parse_url(url: str) -> WSURL:
    """Parse a WebSocket URL.

    ``http://`` and ``https://`` are accepted as aliases of ``ws://`` and ``wss://``,
    as simple-websocket 1.1 did. Spaces and non-ASCII characters in the path and
    query are percent-encoded (UTF-8), as browsers do: ``ws://h/a b`` requests
    ``/a%20b``. A ``%`` is kept as it is, so an already encoded URL is unchanged.

    Raises:
        TypeError: The URL is not a ``str``.
        ValueError: The URL has another scheme, has no host, has an invalid port,
            carries a fragment, or contains a control character (CR, LF, tab,
            NUL, ...) anywhere or a space or non-ASCII character in its host.
    """
    if not isinstance(url, str):
        raise TypeError(f"WebSocket URL must be a str, not {type(url).__name__} ({url!r})")
    if _has_control(url):
        raise ValueError(
            f"Invalid WebSocket URL {url!r}: control characters (CR, LF, tab, ...) are not allowed"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"Invalid WebSocket URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss", "http", "https"):
        raise ValueError(
            f"Invalid WebSocket URL {url!r}: scheme must be ws:// or wss://"
            + (f", not {parts.scheme}://" if parts.scheme else "")
        )
    if not parts.hostname:
        raise ValueError(f"Invalid WebSocket URL {url!r}: no host")
    if parts.fragment:
        raise ValueError(f"Invalid WebSocket URL {url!r}: fragments are not allowed")
    host = parts.hostname
    if " " in parts.netloc or not host.isascii():
        raise ValueError(
            f"Invalid WebSocket URL {url!r}: the host must be ASCII without spaces "
            "(encode an international name with IDNA, e.g. xn--...)"
        )
    secure = scheme in ("wss", "https")
    default_port = 443 if secure else 80
    resource = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        resource += "?" + quote(parts.query, safe=_PATH_SAFE)
    host_for_header = f"[{host}]" if ":" in host else host
    if port is None or port == default_port:
        host_header = host_for_header
    else:
        host_header = f"{host_for_header}:{port}"
    return WSURL(secure, host, port or default_port, resource, host_header)


def normalize_headers(headers: HeadersLike) -> Headers:
    """Return headers given as a mapping or as ``(name, value)`` pairs as a list.

    Raises:
        TypeError: ``headers`` is a string (``"Name: value"``), bytes, or not a
            mapping nor an iterable of ``(name, value)`` pairs.
        ValueError: A name or value contains CR or LF, or a name is empty or holds
            a colon.
    """
    if headers is None:
        return []
    if isinstance(headers, (str, bytes, bytearray)):
        raise TypeError(
            "headers must be a mapping or a list of (name, value) pairs, not "
            f"{type(headers).__name__} {headers!r}; for one header, write "
            "{'Name': 'value'}"
        )
    items: Iterable[Any]
    if isinstance(headers, Mapping) or callable(getattr(headers, "items", None)):
        items = headers.items()  # type: ignore[union-attr]
    elif isinstance(headers, Iterable):
        items = headers
    else:
        raise TypeError(
            "headers must be a mapping or a list of (name, value) pairs, not "
            f"{type(headers).__name__}"
        )
    result: Headers = []
    for item in items:
        if isinstance(item, (str, bytes)) or not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(
                f"headers must hold (name, value) pairs, not {type(item).__name__} {item!r}"
            )
        name, value = item
        name = str(name)
        value = str(value)
        if not name or any(c in name for c in "\r\n:") or any(c in value for c in "\r\n"):
            raise ValueError(f"Invalid HTTP header {name!r}: {value!r}")
        result.append((name, value))
    return result


def check_header_conflicts(
    names: Iterable[str], user_agent: str | Unset | None, origin: str | None
) -> None:
    """Refuse ``user_agent=`` or ``origin=`` when the headers already set that header.

    Args:
        names: The extra headers' names, in lower case.
        user_agent: ``user_agent=`` (``UNSET`` when not given).
        origin: ``origin=``.

    Raises:
        ValueError: Both give the same header.
    """
    names = set(names)
    if user_agent is not UNSET and "user-agent" in names:
        raise ValueError("User-Agent is given twice: in headers and as user_agent=; keep one")
    if origin is not None and "origin" in names:
        raise ValueError("Origin is given twice: in headers and as origin=; keep one")


def normalize_subprotocols(subprotocols: str | Iterable[str] | None) -> list[str]:
    """Return a subprotocol given as one string or as a list as a list.

    Raises:
        TypeError: Not a ``str``, an iterable of ``str`` or ``None``.
        ValueError: A name is not an HTTP token (empty, or holding spaces, commas
            or other separators).
    """
    return check_subprotocols(subprotocols)


def get_header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    """Return the first value of header ``name`` (case-insensitive), or ``None``."""
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return None


def _split_tokens(value: str, tokens: list[str]) -> None:
    """Append the non-empty, stripped, comma separated tokens of ``value`` to ``tokens``."""
    if "," in value:
        tokens += [t for t in map(str.strip, value.split(",")) if t]
    else:
        # One token: the same result as the split above, without building a list.
        token = value.strip()
        if token:
            tokens.append(token)


def get_tokens(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    """Return the comma separated tokens of every header called ``name``.

    Names are compared case-insensitively; the tokens of repeated headers are
    concatenated in header order. Each token is stripped of whitespace and empty
    tokens are dropped (``"a, ,b"`` gives ``["a", "b"]``).
    """
    lname = name.lower()
    tokens: list[str] = []
    for key, value in headers:
        if key.lower() == lname:
            _split_tokens(value, tokens)
    return tokens


def _index_headers(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Map each lower-cased header name to its values, in header order.

    One pass over the headers answers every lookup of a handshake: the first
    element of a list is what :func:`get_header` returns for that name, and
    :func:`_index_tokens` of it what :func:`get_tokens` returns. Callers build it for
    one operation and do not keep it, so later changes to the headers are seen.
    """
    index: dict[str, list[str]] = {}
    for name, value in headers:
        lname = name.lower()
        values = index.get(lname)
        if values is None:
            index[lname] = [value]
        else:
            values.append(value)
    return index


def _index_tokens(index: Mapping[str, list[str]], lname: str) -> list[str]:
    """Return :func:`get_tokens` of the header ``lname`` (lower case) in ``index``."""
    tokens: list[str] = []
    for value in index.get(lname, ()):
        _split_tokens(value, tokens)
    return tokens


def _has_token(index: Mapping[str, list[str]], lname: str, token: str) -> bool:
    """Whether the header ``lname`` holds ``token`` (both lower case), in any case."""
    values = index.get(lname)
    if values is None:
        return False
    if len(values) == 1 and values[0].lower() == token:
        return True  # the usual header: that one token alone
    return token in [t.lower() for t in _index_tokens(index, lname)]


def _index_first(index: Mapping[str, list[str]], lname: str) -> str | None:
    """Return :func:`get_header` of the header ``lname`` (lower case) in ``index``."""
    values = index.get(lname)
    return None if values is None else values[0]


def accept_key(key: str) -> str:
    """Return the ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key``.

    Raises:
        UnicodeEncodeError: ``key`` is not ASCII.
    """
    return _accept_key_bytes(key).decode("ascii")


def _accept_key_bytes(key: str) -> bytes:
    """Return :func:`accept_key` of ``key`` as ASCII bytes."""
    digest = hashlib.sha1(key.encode("ascii") + _GUID).digest()
    return binascii.b2a_base64(digest, newline=False)


def _is_tls_record(data: bytes | bytearray) -> bool:
    """Whether ``data`` starts like a TLS record (a handshake or an alert), not HTTP.

    Such bytes are what a TLS peer sends where plain HTTP was expected: its
    ClientHello (content type 22) on a server, or an alert (21) on a client.
    """
    return len(data) >= 2 and data[0] in (21, 22) and data[1] == 3


#: The reasons OpenSSL gives when the peer of a TLS handshake does not speak TLS
#: (it answered in plain text), or left without a word.
_PLAIN_TEXT_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)
_EOF_REASONS = frozenset({"UNEXPECTED_EOF_WHILE_READING", "EOF"})


def tls_failure(exc: BaseException, url: WSURL) -> BaseException | None:
    """Explain a failed TLS handshake with a ``wss://`` server that may not speak TLS.

    Args:
        exc: What the TLS handshake raised.
        url: The ``wss://`` URL.

    Returns:
        An exception of the same type whose message says what happened and
        suggests ``ws://`` (to raise from ``exc``), or ``None`` when ``exc`` is
        another failure (a certificate error, an alert from a real TLS server).
    """
    where = f"{url.host}:{url.port}"
    reason = getattr(exc, "reason", None)
    if reason in _PLAIN_TEXT_REASONS:
        message = (
            f"TLS handshake with {where} failed ({reason}): the server answered in "
            f"plain text, not TLS; for a plain server use ws:// instead of wss://"
        )
    elif reason in _EOF_REASONS or isinstance(exc, (ConnectionResetError, ConnectionAbortedError)):
        message = (
            f"TLS handshake with {where} failed: the server closed the connection; "
            "if it serves plain ws://, use ws:// instead of wss://"
        )
    else:
        return None
    try:
        return type(exc)(message)
    except TypeError:  # pragma: no cover - every OSError subclass takes a message
        return None


def _split_head(data: bytes | bytearray) -> tuple[list[str], bytes] | None:
    """Split a complete HTTP head off ``data``.

    Returns ``None`` while the head is incomplete, else the head's lines (start line
    first, split on CRLF only; a lone CR or LF stays in its line) decoded as Latin-1
    and the bytes after the blank line that ends the head.

    Raises:
        HandshakeError: With status 431 when the head is larger than
            ``MAX_HEAD_SIZE``.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_HEAD_SIZE:
            raise HandshakeError("HTTP head too large", 431)
        return None
    if end > MAX_HEAD_SIZE:
        raise HandshakeError("HTTP head too large", 431)
    # Latin-1 maps every byte to one character, so decoding cannot fail.
    lines = data[:end].decode("latin-1").split("\r\n")
    start = end + 4
    # Most heads arrive alone: skip the copy of an empty remainder.
    return lines, (bytes(data[start:]) if start < len(data) else b"")


def _parse_header_lines(lines: list[str]) -> Headers:
    """Parse header lines (the head without its start line) into ``(name, value)``.

    A line needs a colon and a non-empty name without whitespace around it (which
    also refuses obsolete line folding: a continuation line starts with whitespace).
    Names keep their case; values are stripped of surrounding whitespace. Repeated
    headers are kept, in order.

    Raises:
        HandshakeError: With status 431 for more than ``_MAX_HEADERS`` lines, else
            400 naming the first malformed line.
    """
    if len(lines) > _MAX_HEADERS:
        raise HandshakeError("too many HTTP headers", 431)
    headers: Headers = []
    for line in lines:
        name, sep, value = line.partition(":")
        if sep and name and name == name.strip():
            headers.append((name, value.strip()))
        else:
            raise HandshakeError(f"malformed HTTP header line {line!r}", 400)
    return headers


@dataclass
class HandshakeRequest:
    """What a client asked for in its opening handshake.

    An instance is passed to ``choose_subprotocol(request)``; like the
    ``wsproto.events.Request`` that simple-websocket 1.1 passed, it has
    ``subprotocols``, ``extensions``, ``host`` and ``target``.
    """

    target: str = "/"
    headers: Headers = field(default_factory=list)
    method: str = "GET"

    @property
    def host(self) -> str:
        """The ``Host`` header, or an empty string."""
        return get_header(self.headers, "Host") or ""

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order of preference."""
        return get_tokens(self.headers, "Sec-WebSocket-Protocol")

    @property
    def extensions(self) -> list[str]:
        """The extension offers of ``Sec-WebSocket-Extensions``, one string each."""
        return get_tokens(self.headers, "Sec-WebSocket-Extensions")

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (case-insensitive), or ``None``."""
        return get_header(self.headers, name)


def parse_request_head(data: bytes | bytearray) -> tuple[HandshakeRequest, bytes] | None:
    """Parse an HTTP/1.1 request head from the start of ``data``.

    Returns:
        ``None`` while the head is incomplete, else the request and the bytes that
        followed the head.

    Raises:
        HandshakeError: The request line or a header is malformed (status 400), or
            the head is too large (431).
    """
    if data[:1] < b" " and _is_tls_record(data):  # (an HTTP head starts with a letter)
        raise HandshakeError(
            "a TLS handshake on a plain port: the client used wss:// where ws:// is served",
            400,
        )
    split = _split_head(data)
    if split is None:
        return None
    lines, rest = split
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise HandshakeError(f"malformed HTTP request line {lines[0]!r}", 400)
    method, target, version = parts
    if version != "HTTP/1.1":
        raise HandshakeError(f"unsupported HTTP version {version}", 400)
    return HandshakeRequest(target, _parse_header_lines(lines[1:]), method), rest


def validate_request(request: HandshakeRequest) -> str:
    """Check a client's upgrade request against RFC 6455 section 4.2.1.

    Returns:
        The client's ``Sec-WebSocket-Key``.

    Raises:
        HandshakeError: With ``status_code`` 426 when the request is not a WebSocket
            upgrade at all, else 400, and a ``detail`` naming the problem.
    """
    return _validate(request)[0]


def _validate(request: HandshakeRequest) -> tuple[str, dict[str, list[str]]]:
    """Do what :func:`validate_request` does; also return the request's header index.

    The checks run in a fixed order and the first failure is raised, so a request
    with several problems is always refused for the same one.

    Returns:
        The client's ``Sec-WebSocket-Key`` and :func:`_index_headers` of the request's
        headers, for the caller's further lookups.

    Raises:
        HandshakeError: As :func:`validate_request`.
    """
    if request.method != "GET":
        raise HandshakeError(f"method must be GET, not {request.method}", 400)
    # One pass over the headers serves every lookup of the handshake.
    index = _index_headers(request.headers)
    if not _has_token(index, "upgrade", "websocket"):
        raise HandshakeError("missing 'Upgrade: websocket' header", 426)
    if not _has_token(index, "connection", "upgrade"):
        raise HandshakeError("missing 'Connection: Upgrade' header", 400)
    version = _index_first(index, "sec-websocket-version")
    if version != "13":
        raise HandshakeError(f"unsupported Sec-WebSocket-Version {version!r}", 426)
    keys = index.get("sec-websocket-key")
    if keys is None:
        raise HandshakeError("missing Sec-WebSocket-Key header", 400)
    if len(keys) > 1:
        # RFC 6455 4.2.1: exactly one key; which one to answer would be a guess.
        raise HandshakeError("more than one Sec-WebSocket-Key header", 400)
    key = keys[0]
    try:
        # What base64.b64decode(..., validate=True) does, without its wrapper.
        raw = binascii.a2b_base64(key.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:
        raise HandshakeError(f"invalid Sec-WebSocket-Key {key!r}", 400)
    if not _index_first(index, "host"):
        raise HandshakeError("missing Host header", 400)
    return key, index


def choose_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """Return the first subprotocol in the client's ``offered`` list we support."""
    for name in offered:
        if name in supported:
            return name
    return None


_DEFLATE_PARAMS = {
    # name: (a value is required, a value is allowed)
    "server_no_context_takeover": (False, False),
    "client_no_context_takeover": (False, False),
    "server_max_window_bits": (True, True),
    "client_max_window_bits": (False, True),
}


def deflate_params(element: str, *, response: bool) -> dict[str, str | None] | None:
    """Parse the parameters of one permessage-deflate offer or response (RFC 7692 7.1).

    Args:
        element: One element of ``Sec-WebSocket-Extensions``, name included.
        response: ``True`` for a server's response, where ``client_max_window_bits``
            must have a value.

    Returns:
        The parameters, or ``None`` when the element is invalid: an unknown or
        repeated parameter, a value where none is allowed, a missing value, or a
        window size outside 8..15.
    """
    found: dict[str, str | None] = {}
    for part in element.split(";")[1:]:
        name, eq, value = part.partition("=")
        name = name.strip()
        if name not in _DEFLATE_PARAMS or name in found:
            return None
        needs_value, may_have_value = _DEFLATE_PARAMS[name]
        if response and name == "client_max_window_bits":
            needs_value = True
        value = value.strip().strip('"')
        if (eq and not may_have_value) or (needs_value and not eq):
            return None
        # isdecimal(), not isdigit(): the latter also accepts digits int() refuses,
        # such as "\xb2" (superscript two), which raised ValueError here.
        if eq and not (value.isdecimal() and 8 <= int(value) <= 15 and value[0] != "0"):
            return None
        found[name] = value if eq else None
    return found


def negotiate_extensions(
    offers: Sequence[str], extensions: Sequence[Extension]
) -> tuple[list[Extension], str | None]:
    """Accept the first acceptable offer of each extension we support.

    Returns:
        The extensions now enabled, and the ``Sec-WebSocket-Extensions`` response value
        (``None`` when nothing was accepted).
    """
    accepted: list[Extension] = []
    values: list[str] = []
    for ext in extensions:
        for offer in offers:
            name = offer.split(";", 1)[0].strip()
            if name != ext.name:
                continue
            if name == PerMessageDeflate.name and deflate_params(offer, response=False) is None:
                continue  # RFC 7692 5: an invalid offer is declined
            try:
                params = ext.accept(offer)
            except ValueError:
                params = None
            if params is None or params is False:
                continue
            accepted.append(ext)
            values.append(ext.name if params is True or not params else f"{ext.name}; {params}")
            break
    return accepted, (", ".join(values) if values else None)


def deflate_offer(options: DeflateOptions) -> str:
    """Return the ``Sec-WebSocket-Extensions`` offer a client makes for ``options``.

    With the defaults it is the offer wsproto makes:
    ``permessage-deflate; client_max_window_bits=15; server_max_window_bits=15``.
    """
    params = [
        f"client_max_window_bits={options.client_max_window_bits}",
        f"server_max_window_bits={options.server_max_window_bits}",
    ]
    if options.client_no_context_takeover:
        params.append("client_no_context_takeover")
    if options.server_no_context_takeover:
        params.append("server_no_context_takeover")
    return f"{PerMessageDeflate.name}; " + "; ".join(params)


def _window(value: str | None) -> int:
    return DEFAULT_WINDOW_BITS if value is None else int(value)


def deflate_answer(params: Mapping[str, str | None], options: DeflateOptions) -> str | None:
    """Return a server's answer to one valid permessage-deflate offer, or ``None``.

    The answer honours what the client asked (its context-takeover flags and the
    window it allows the server) and adds what ``options`` impose: the server's
    own flags and smaller windows. ``client_max_window_bits`` is only answered
    when the client offered it (RFC 7692 7.1.2.2). An offer with a window of 8,
    which zlib cannot use, is declined (``None``).

    Args:
        params: :func:`deflate_params` of the offer.
        options: The server's settings.
    """
    answer: list[str] = []
    if "client_no_context_takeover" in params or options.client_no_context_takeover:
        answer.append("client_no_context_takeover")
    if "server_no_context_takeover" in params or options.server_no_context_takeover:
        answer.append("server_no_context_takeover")
    if "client_max_window_bits" in params:
        offered = _window(params["client_max_window_bits"])
        if offered < MIN_WINDOW_BITS:
            return None
        answer.append(f"client_max_window_bits={min(offered, options.client_max_window_bits)}")
    if "server_max_window_bits" in params:
        offered = _window(params["server_max_window_bits"])
        if offered < MIN_WINDOW_BITS:
            return None
        answer.append(f"server_max_window_bits={min(offered, options.server_max_window_bits)}")
    elif options.server_max_window_bits < DEFAULT_WINDOW_BITS:
        answer.append(f"server_max_window_bits={options.server_max_window_bits}")
    return "; ".join(answer)


def negotiate_deflate(
    offers: Sequence[str], options: DeflateOptions
) -> tuple[list[Extension], str | None]:
    """Accept the first acceptable permessage-deflate offer with a server's settings.

    Returns:
        The enabled extension (none when no offer was acceptable) and the
        ``Sec-WebSocket-Extensions`` response value (``None`` when nothing was
        accepted).
    """
    for offer in offers:
        if offer.split(";", 1)[0].strip() != PerMessageDeflate.name:
            continue
        params = deflate_params(offer, response=False)
        if params is None:
            continue  # RFC 7692 5: an invalid offer is declined
        answer = deflate_answer(params, options)
        if answer is None:
            continue
        value = f"{PerMessageDeflate.name}; {answer}" if answer else PerMessageDeflate.name
        ext = Deflate()
        ext.finalize(value)
        return [ext], value
    return [], None


def _deflate_response_error(
    agreed: Mapping[str, str | None], options: DeflateOptions
) -> str | None:
    """Say how a server's permessage-deflate answer breaks what the client offered."""
    if agreed.get("client_max_window_bits") == "8" or agreed.get("server_max_window_bits") == "8":
        return "a window size of 8, which zlib cannot use"
    for side in ("server", "client"):
        bits = agreed.get(f"{side}_max_window_bits")
        asked: int = getattr(options, f"{side}_max_window_bits")
        if bits is not None and int(bits) > asked:
            return f"{side}_max_window_bits={bits}, above the {asked} offered"
    if (
        "server_max_window_bits" not in agreed
        and options.server_max_window_bits < DEFAULT_WINDOW_BITS
    ):
        return f"no server_max_window_bits, though {options.server_max_window_bits} was asked"
    if options.server_no_context_takeover and "server_no_context_takeover" not in agreed:
        return "no server_no_context_takeover, though it was asked for"
    return None


# Every 101 response up to the value of its Sec-WebSocket-Accept header.
_ACCEPT_HEAD_TEXT = (
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: "
)
_ACCEPT_HEAD = _ACCEPT_HEAD_TEXT.encode("ascii")


def build_accept_response(
    key: str,
    subprotocol: str | None,
    extensions_header: str | None,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """Return the bytes of a ``101 Switching Protocols`` response.

    The headers come in this order: ``Upgrade``, ``Connection``,
    ``Sec-WebSocket-Accept``, ``Sec-WebSocket-Protocol`` (when ``subprotocol`` is
    set), ``Sec-WebSocket-Extensions`` (when ``extensions_header`` is set), then
    ``extra_headers``.

    Raises:
        UnicodeEncodeError: ``key`` is not ASCII, or a header is not Latin-1.
    """
    accept = _accept_key_bytes(key)
    if not subprotocol and not extensions_header and not extra_headers:
        # The common answer, built from bytes without formatting or encoding.
        return _ACCEPT_HEAD + accept + b"\r\n\r\n"
    head = _ACCEPT_HEAD_TEXT + accept.decode("ascii")
    if subprotocol:
        head += f"\r\nSec-WebSocket-Protocol: {subprotocol}"
    if extensions_header:
        head += f"\r\nSec-WebSocket-Extensions: {extensions_header}"
    for name, value in extra_headers:
        head += f"\r\n{name}: {value}"
    return (head + "\r\n\r\n").encode("latin-1")


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    429: "Too Many Requests",
    403: "Forbidden",
    404: "Not Found",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def build_reject_response(
    status: int, body: str = "", extra_headers: Sequence[tuple[str, str]] = ()
) -> bytes:
    """Return the bytes of an HTTP response that closes the connection.

    The body is sent as ``text/plain`` unless ``extra_headers`` has a
    ``Content-Type``.
    """
    payload = body.encode("utf-8")
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
    if not any(name.lower() == "content-type" for name, _ in extra_headers):
        lines.append("Content-Type: text/plain; charset=utf-8")
    lines += [f"Content-Length: {len(payload)}", "Connection: close"]
    if status == 426:
        lines += ["Upgrade: websocket", "Sec-WebSocket-Version: 13"]
    lines.extend(f"{name}: {value}" for name, value in extra_headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


@dataclass(frozen=True)
class HTTPResponse:
    """A plain HTTP response a server sends instead of accepting the WebSocket.

    Returned by a ``process_request`` hook to refuse a handshake (for instance
    ``HTTPResponse(401, "token expired")`` or
    ``HTTPResponse(429, headers=[("Retry-After", "5")])``).
    """

    status: int
    body: str = ""
    headers: Sequence[tuple[str, str]] = ()

    def to_bytes(self) -> bytes:
        """Return the response as sent on the wire (it closes the connection)."""
        return build_reject_response(self.status, self.body, self.headers)


class ClientHandshake:
    """The client side of the opening handshake.

    Usage: send :attr:`request` bytes, feed the response to :meth:`receive_data` until
    it returns ``True``, then read :attr:`subprotocol`, :attr:`extensions` and
    :attr:`trailing_data` (bytes that arrived after the response head: the first
    frames, which must not be lost).

    The request carries a ``User-Agent`` header (:data:`DEFAULT_USER_AGENT` unless
    ``user_agent`` says otherwise; ``None`` sends none) and, with ``origin``, an
    ``Origin`` header. A ``User-Agent`` in ``extra_headers`` replaces the default.

    Raises:
        ValueError: ``user_agent`` or ``origin`` is given and ``extra_headers`` has
            that header too, or either holds a control character.
        TypeError: ``user_agent`` or ``origin`` is not a string or ``None``.
    """

    def __init__(
        self,
        url: WSURL,
        subprotocols: Sequence[str] = (),
        extra_headers: Sequence[tuple[str, str]] = (),
        compression: bool | DeflateOptions | Mapping[str, Any] | None = True,
        key_factory: Callable[[int], bytes] = os.urandom,
        *,
        user_agent: str | Unset | None = UNSET,
        origin: str | None = None,
    ) -> None:
        names = {name.lower() for name, _ in extra_headers}
        check_header_conflicts(names, user_agent, origin)
        if user_agent is UNSET:
            user_agent = None if "user-agent" in names else DEFAULT_USER_AGENT
        self.user_agent = check_header_value("user_agent", user_agent)
        self.origin = check_header_value("origin", origin)
        self.url = url
        self.subprotocols = list(subprotocols)
        self.key = base64.b64encode(key_factory(16)).decode("ascii")
        self._deflate = check_compression(compression)
        self._offered: list[Extension] = []
        if self._deflate is not None:
            d = self._deflate
            self._offered.append(
                Deflate(
                    client_no_context_takeover=d.client_no_context_takeover,
                    client_max_window_bits=d.client_max_window_bits,
                    server_no_context_takeover=d.server_no_context_takeover,
                    server_max_window_bits=d.server_max_window_bits,
                )
            )
        self._buffer = bytearray()
        self.subprotocol: str | None = None
        self.extensions: list[Extension] = []
        self.trailing_data = b""
        self.response_headers: Headers = []
        self.request = self._build_request(extra_headers)

    def _build_request(self, extra_headers: Sequence[tuple[str, str]]) -> bytes:
        lines = [f"GET {self.url.resource} HTTP/1.1"]
        names = {name.lower() for name, _ in extra_headers}
        if "host" not in names:
            lines.append(f"Host: {self.url.host_header}")
        lines += [
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self.key}",
            "Sec-WebSocket-Version: 13",
        ]
        if self.subprotocols:
            lines.append(f"Sec-WebSocket-Protocol: {', '.join(self.subprotocols)}")
        if self._deflate is not None:
            lines.append(f"Sec-WebSocket-Extensions: {deflate_offer(self._deflate)}")
        if self.user_agent is not None:
            lines.append(f"User-Agent: {self.user_agent}")
        if self.origin is not None:
            lines.append(f"Origin: {self.origin}")
        lines.extend(f"{name}: {value}" for name, value in extra_headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def receive_data(self, data: bytes) -> bool:
        """Feed bytes of the server's response.

        Returns:
            ``True`` once the handshake completed successfully.

        Raises:
            HandshakeRejected: The server answered with a status other than 101.
            HandshakeError: The response is malformed or does not complete a valid
                WebSocket handshake for this request.
        """
        self._buffer += data
        if not self.url.secure and _is_tls_record(self._buffer):
            raise HandshakeError(
                f"the server at {self.url.display} answered with TLS: use wss:// instead of ws://"
            )
        split = _split_head(self._buffer)
        if split is None:
            return False
        lines, rest = split
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise HandshakeError(f"malformed HTTP status line {lines[0]!r}")
        status = int(parts[1])
        headers = _parse_header_lines(lines[1:])
        self.response_headers = headers
        if status != 101:
            reason = parts[2] if len(parts) > 2 else ""
            raise HandshakeRejected(
                status, headers, rest, url=self.url.display, reason_phrase=reason
            )
        self._check_response(headers)
        self.trailing_data = rest
        return True

    def _check_response(self, headers: Headers) -> None:
        def fail(detail: str) -> None:
            raise HandshakeError(detail, 101)

        # One pass over the headers serves every lookup below.
        index = _index_headers(headers)
        if not _has_token(index, "upgrade", "websocket"):
            fail("response lacks 'Upgrade: websocket'")
        if not _has_token(index, "connection", "upgrade"):
            fail("response lacks 'Connection: Upgrade'")
        if _index_first(index, "sec-websocket-accept") != accept_key(self.key):
            fail("wrong Sec-WebSocket-Accept")
        protocols = _index_tokens(index, "sec-websocket-protocol")
        if len(protocols) > 1:
            fail("more than one subprotocol selected")
        if protocols:
            if protocols[0] not in self.subprotocols:
                fail(f"server selected subprotocol {protocols[0]!r}, which was not offered")
            self.subprotocol = protocols[0]
        for accepted in _index_tokens(index, "sec-websocket-extensions"):
            name = accepted.split(";", 1)[0].strip()
            for ext in self._offered:
                if ext.name == name and ext not in self.extensions:
                    if name == PerMessageDeflate.name:
                        agreed = deflate_params(accepted, response=True)
                        if agreed is None:
                            fail(f"invalid extension parameters {accepted!r}")
                        assert agreed is not None and self._deflate is not None
                        problem = _deflate_response_error(agreed, self._deflate)
                        if problem is not None:
                            fail(f"invalid extension parameters {accepted!r}: {problem}")
                    try:
                        ext.finalize(accepted)
                    except (ValueError, IndexError):
                        fail(f"invalid extension parameters {accepted!r}")
                    self.extensions.append(ext)
                    break
            else:
                fail(f"server accepted extension {name!r}, which was not offered")


def accept_request(
    request: HandshakeRequest,
    subprotocol: str | None,
    compression: bool | DeflateOptions | None = True,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> tuple[bytes, list[Extension]]:
    """Validate a client's upgrade request and build the server's answer.

    Args:
        request: The client's request.
        subprotocol: The subprotocol chosen for this connection, or ``None``.
        compression: Accept permessage-deflate when the client offers it
            (``True``: with the default settings), with these settings, or not
            (``False``, ``None``).
        extra_headers: More headers for the 101 response.

    Returns:
        The ``101 Switching Protocols`` response bytes and the enabled extensions.

    Raises:
        HandshakeError: The request is not a valid WebSocket upgrade; its
            ``status_code`` (400 or 426) and ``detail`` say what to answer. Status
            500 when ``subprotocol`` is not one the client offered.
    """
    key, index = _validate(request)
    offered = _index_tokens(index, "sec-websocket-protocol") if subprotocol is not None else ()
    if subprotocol is not None and subprotocol not in offered:
        raise HandshakeError(f"subprotocol {subprotocol!r} was not offered by the client", 500)
    extensions: list[Extension] = []
    extensions_header: str | None = None
    options = DEFAULT_DEFLATE if compression is True else (compression or None)
    if options is not None:
        extensions, extensions_header = negotiate_deflate(
            _index_tokens(index, "sec-websocket-extensions"), options
        )
    return build_accept_response(key, subprotocol, extensions_header, extra_headers), extensions


class ServerHandshake:
    """The server side of the opening handshake, shared by the engines' connections.

    A mixin: engines call :meth:`_init_server_handshake` from their ``__init__`` and
    :meth:`_handshake_answer` when a request arrived, then write the answer.

    Attributes:
        subprotocols: The subprotocols this server supports, in its order.
        compression: Accept permessage-deflate when the client offers it.
        request: The client's request once it was read (path, headers, offered
            subprotocols), else ``None``.
    """

    subprotocols: list[str]
    compression: Any
    request: HandshakeRequest | None
    _deflate: DeflateOptions | None

    def _init_server_handshake(
        self,
        subprotocols: str | Iterable[str] | None,
        compression: bool | DeflateOptions | Mapping[str, Any] | None,
    ) -> None:
        """Check and keep the server's handshake settings.

        Raises:
            TypeError: ``subprotocols`` or ``compression`` has the wrong type.
            ValueError: A subprotocol is not a valid name, or a deflate setting is
                out of range.
        """
        self.subprotocols = normalize_subprotocols(subprotocols)
        self.compression = compression
        self._deflate = check_compression(compression)
        self.request = None

    def choose_subprotocol(self, request: HandshakeRequest) -> str | None:
        """Choose the subprotocol for this connection.

        The default picks the first subprotocol offered by the client that is in
        ``subprotocols``. Override it in a subclass for another policy; it must
        return one of ``request.subprotocols`` or ``None``.
        """
        if not self.subprotocols:
            return None  # nothing offered can match: skip parsing the offers
        return choose_subprotocol(request.subprotocols, self.subprotocols)

    def _handshake_answer(
        self, request: HandshakeRequest
    ) -> tuple[bytes, list[Extension], str | None]:
        """Return the 101 response, the enabled extensions and the subprotocol.

        Raises:
            HandshakeError: The request is not a valid upgrade; send
                :func:`reject_response` of it.
        """
        self.request = request
        subprotocol = self.choose_subprotocol(request)
        response, extensions = accept_request(request, subprotocol, self._deflate)
        return response, extensions, subprotocol


def reject_response(exc: HandshakeError) -> bytes:
    """Return the HTTP error response that answers a refused handshake."""
    return build_reject_response(exc.status_code or 400, f"{exc.detail}\n")
