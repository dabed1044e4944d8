"""The checks every public entry point runs on its options, and the deflate settings.

A value of the wrong type raises :class:`TypeError`, a value of the right type out
of its range :class:`ValueError`; both name the parameter and the value given, and
both are raised before anything is opened or sent. Each entry point (the clients'
``connect()``, the servers' ``accept()`` and ``serve()``, ``Backoff``, ``typed()``,
``subscribe()``, ``receive(timeout)``) checks what it is given with these helpers,
so that the same mistake gets the same message everywhere.

:class:`DeflateOptions` holds the permessage-deflate parameters (RFC 7692) that
``compression=`` accepts besides ``True`` and ``False``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .limits import Unset, message_limits

__all__ = [
    "DEFAULT_WINDOW_BITS",
    "MIN_WINDOW_BITS",
    "Compression",
    "DeflateOptions",
    "LoggerLike",
    "check_callable",
    "check_choice",
    "check_compression",
    "check_connection_options",
    "check_count",
    "check_header_value",
    "check_instance",
    "check_logger",
    "check_receive_timeout",
    "check_seconds",
    "check_subprotocols",
    "check_unix_socket",
    "describe",
]

#: The largest LZ77 window (``2**15`` bytes), which RFC 7692 assumes by default.
DEFAULT_WINDOW_BITS: Final = 15
#: The smallest window zlib can use for raw DEFLATE data (RFC 7692 allows 8; zlib
#: does not).
MIN_WINDOW_BITS: Final = 9

#: What ``logger=`` accepts: a logger, a logger adapter, or a logger's name.
LoggerLike = logging.Logger | logging.LoggerAdapter[Any] | str


def describe(value: Any) -> str:
    """Return ``value`` as an error message shows it: its type and a short repr."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_seconds(name: str, value: Any, *, optional: bool = True, zero: bool = False) -> Any:
    """Check a duration in seconds and return it unchanged.

    Args:
        name: The parameter's name, for the error message.
        value: What was given.
        optional: ``None`` is allowed (no limit, or the feature off).
        zero: ``0`` is allowed.

    Raises:
        TypeError: Not a number (``bool`` included), nor ``None`` when allowed.
        ValueError: Negative, zero when not allowed, infinite or NaN.
    """
    if value is None and optional:
        return None
    kind = type(value)
    if (
        # The common case, checked without the numbers.Real ABC.
        (kind is int or (kind is float and math.isfinite(value)))
        and (value > 0 or (value == 0 and zero))
    ):
        return value
    if not _is_number(value):
        expected = "a number of seconds" + (" or None" if optional else "")
        raise TypeError(f"{name} must be {expected}, not {describe(value)}")
    if not math.isfinite(value):
        hint = " (None means no limit)" if optional else ""
        raise ValueError(f"{name} must be a finite number of seconds{hint}, not {value!r}")
    if value < 0 or (value == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{name} must be {bound} seconds, not {value!r}")
    return value


def check_receive_timeout(value: Any) -> Any:
    """Check ``receive(timeout)`` and return it unchanged.

    ``None`` waits as long as it takes; ``0`` or less only returns what is already
    buffered, as in simple-websocket 1.1.

    Raises:
        TypeError: Not a number or ``None``.
        ValueError: NaN.
    """
    if value is None:
        return None
    if not _is_number(value):
        raise TypeError(f"timeout must be a number of seconds or None, not {describe(value)}")
    if math.isnan(value):
        raise ValueError("timeout must be a number of seconds or None, not nan")
    return value


def check_count(name: str, value: Any, *, minimum: int = 1, optional: bool = False) -> Any:
    """Check a count (bytes, messages, connections) and return it unchanged.

    Raises:
        TypeError: Not an ``int`` (``bool`` included), nor ``None`` when allowed.
        ValueError: Below ``minimum``.
    """
    if value is None and optional:
        return None
    if type(value) is int and value >= minimum:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        expected = "an int" + (" or None" if optional else "")
        raise TypeError(f"{name} must be {expected}, not {describe(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> Any:
    """Check that ``value`` is one of ``choices`` and return it.

    Raises:
        ValueError: It is not.
    """
    allowed = tuple(choices)
    if not isinstance(value, str) or value not in allowed:
        names = ", ".join(repr(c) for c in allowed)
        raise ValueError(f"{name} must be one of {names}, not {value!r}")
    return value


def check_callable(name: str, value: Any, *, optional: bool = True) -> Any:
    """Check that ``value`` is callable (or ``None`` when allowed) and return it.

    Raises:
        TypeError: It is not.
    """
    if (value is None and optional) or callable(value):
        return value
    raise TypeError(
        f"{name} must be a callable{' or None' if optional else ''}, not {describe(value)}"
    )


def check_instance(name: str, value: Any, cls: type, what: str, *, optional: bool = True) -> Any:
    """Check that ``value`` is an instance of ``cls`` (or ``None``) and return it.

    Args:
        name: The parameter's name.
        value: What was given.
        cls: The class expected.
        what: How the message names it (``"an ssl.SSLContext"``).
        optional: ``None`` is allowed.

    Raises:
        TypeError: It is not.
    """
    if (value is None and optional) or isinstance(value, cls):
        return value
    raise TypeError(f"{name} must be {what}{' or None' if optional else ''}, not {describe(value)}")


def check_header_value(name: str, value: Any, *, optional: bool = True) -> str | None:
    """Check a string sent as an HTTP header value (``user_agent``, ``origin``).

    Raises:
        TypeError: Not a ``str`` (nor ``None`` when allowed).
        ValueError: It contains a control character (CR and LF would end the header),
            or a character outside Latin-1.
    """
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a str{' or None' if optional else ''}, not {describe(value)}"
        )
    if _HEADER_CONTROL.search(value):
        raise ValueError(f"{name} must not contain control characters: {value!r}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{name} must be Latin-1 text (an HTTP header value): {value!r}") from None
    return value


def check_subprotocols(value: Any, name: str = "subprotocols") -> list[str]:
    """Return subprotocols given as one string or a list of strings as a list.

    Raises:
        TypeError: Not a ``str``, an iterable of ``str`` or ``None``.
        ValueError: A subprotocol is empty or is not an HTTP token (it holds
            spaces, commas or other separators).
    """
    if value is None:
        return []
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, (bytes, bytearray, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a str or a list of str, not {describe(value)}")
    else:
        items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{name} must hold only str, not {describe(item)}")
        if not _TOKEN.fullmatch(item):
            raise ValueError(f"{name}: {item!r} is not a valid subprotocol name (an HTTP token)")
    return items


#: A control character other than horizontal tab (CR and LF would end a header).
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: An HTTP token (RFC 7230 3.2.6): visible ASCII except the separators.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


_LOGGER = logging.getLogger("simple_websocket")


def check_logger(value: Any) -> logging.Logger | logging.LoggerAdapter[Any]:
    """Return the logger ``logger=`` names (``None``: the ``simple_websocket`` one).

    Raises:
        TypeError: Not a ``logging.Logger``, a ``logging.LoggerAdapter``, a logger's
            name or ``None``.
    """
    if value is None:
        return _LOGGER
    if isinstance(value, str):
        return logging.getLogger(value)
    if isinstance(value, (logging.Logger, logging.LoggerAdapter)):
        return value
    raise TypeError(
        f"logger must be a logging.Logger, a LoggerAdapter, a logger name or None, "
        f"not {describe(value)}"
    )


def check_unix_socket(value: Any) -> str | None:
    """Check ``unix_socket=`` (a filesystem path, or ``None``) and return it as a str.

    Raises:
        TypeError: Not a ``str``, an ``os.PathLike`` or ``None``.
        ValueError: An empty path.
    """
    if value is None:
        return None
    fspath = getattr(value, "__fspath__", None)
    if fspath is not None:
        value = fspath()
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str):
        raise TypeError(
            f"unix_socket must be a path (str or os.PathLike) or None, not {describe(value)}"
        )
    if not value:
        raise ValueError("unix_socket must not be an empty path")
    return value


def check_connection_options(
    *,
    receive_bytes: Any = 4096,
    ping_interval: Any = None,
    ping_timeout: Any = None,
    max_message_size: Any = None,
    close_timeout: Any = 5.0,
    max_queue: Any = 16,
) -> None:
    """Check the options every connection takes, whatever opened it.

    Raises:
        TypeError: An option has the wrong type.
        ValueError: An option is out of its range: ``receive_bytes`` and
            ``max_queue`` below 1, a negative ``max_message_size``,
            ``ping_interval`` or ``close_timeout`` negative (0 turns pings off,
            as ``None`` does), ``ping_timeout`` not above 0.
    """
    # Every connection checks these: the plain values pass without a call.
    if type(receive_bytes) is not int or receive_bytes < 1:
        check_count("receive_bytes", receive_bytes)
    if ping_interval is not None:
        check_seconds("ping_interval", ping_interval, zero=True)  # 0, as None: no pings
    if ping_timeout is not None:
        check_seconds("ping_timeout", ping_timeout)
    if max_message_size is not None and not isinstance(max_message_size, Unset):
        message_limits(max_message_size)
    check_seconds("close_timeout", close_timeout, optional=False, zero=True)
    if type(max_queue) is not int or max_queue < 1:
        check_count("max_queue", max_queue)


@dataclasses.dataclass(frozen=True)
class DeflateOptions:
    """permessage-deflate parameters (RFC 7692), for ``compression=``.

    ``compression=True`` uses the defaults below; ``compression=DeflateOptions(...)``
    or a dict with the same keys changes them, on either side:

    * A client offers them: it asks the server to keep its window at most
      ``server_max_window_bits`` and to reset its compression context after each
      message (``server_no_context_takeover``), and announces its own window and
      context choice. It fails the handshake (``HandshakeError``) when the server's
      answer does not honour what it asked.
    * A server uses them to answer an offer: it compresses with a window of at most
      ``server_max_window_bits`` (the client's request may lower it further), asks
      the client for at most ``client_max_window_bits`` when the client says it can
      honour that (a client that cannot is accepted with its full window), and
      imposes the context-takeover flags set here besides those the client asked
      for.

    Smaller windows and no context takeover cost less memory per connection and
    compress less well. Sizes are powers of two: 9 is 512 bytes, 15 is 32 KiB.

    Attributes:
        server_max_window_bits: The server's LZ77 window, 9 to 15.
        client_max_window_bits: The client's LZ77 window, 9 to 15.
        server_no_context_takeover: The server compresses each message on its own.
        client_no_context_takeover: The client compresses each message on its own.

    Raises:
        TypeError: A window size that is not an ``int``, or a flag that is not a
            ``bool``.
        ValueError: A window size outside 9..15 (zlib cannot use RFC 7692's 8).
    """

    server_max_window_bits: int = DEFAULT_WINDOW_BITS
    client_max_window_bits: int = DEFAULT_WINDOW_BITS
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False

    def __post_init__(self) -> None:
        for name in ("server_max_window_bits", "client_max_window_bits"):
            bits = getattr(self, name)
            if isinstance(bits, bool) or not isinstance(bits, int):
                raise TypeError(f"compression: {name} must be an int, not {describe(bits)}")
            if not MIN_WINDOW_BITS <= bits <= DEFAULT_WINDOW_BITS:
                raise ValueError(
                    f"compression: {name} must be between {MIN_WINDOW_BITS} and "
                    f"{DEFAULT_WINDOW_BITS}, not {bits!r}"
                )
        for name in ("server_no_context_takeover", "client_no_context_takeover"):
            flag = getattr(self, name)
            if not isinstance(flag, bool):
                raise TypeError(f"compression: {name} must be a bool, not {describe(flag)}")


#: What ``compression=`` accepts: ``True`` or ``False``, settings, or a dict of them.
Compression = bool | DeflateOptions | Mapping[str, Any] | None

#: ``compression=True``: the defaults (frozen, so one instance serves every connection).
DEFAULT_DEFLATE = DeflateOptions()
_DEFLATE_KEYS = frozenset(field.name for field in dataclasses.fields(DeflateOptions))


def check_compression(value: Any) -> DeflateOptions | None:
    """Return the deflate settings ``compression=`` asks for, or ``None`` for none.

    Accepts ``True`` (the defaults), ``False`` or ``None`` (no compression), a
    :class:`DeflateOptions`, or a mapping of its fields.

    Raises:
        TypeError: Another type, or a field of the wrong type.
        ValueError: An unknown key in the mapping, or a field out of range.
    """
    if value is True:
        return DEFAULT_DEFLATE
    if value is False or value is None:
        return None
    if isinstance(value, DeflateOptions):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(str(key) for key in value if key not in _DEFLATE_KEYS)
        if unknown:
            raise ValueError(
                f"compression: unknown setting {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(_DEFLATE_KEYS))}"
            )
        return DeflateOptions(**value)
    raise TypeError(
        "compression must be True, False, a DeflateOptions or a dict of its settings, "
        f"not {describe(value)}"
    )
