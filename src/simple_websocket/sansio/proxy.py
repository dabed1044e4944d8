"""Proxies without I/O: choosing one, and the HTTP ``CONNECT`` exchange.

Both engines open a tunnel the same way:

1. :func:`select_proxy` turns the ``proxy=`` option (``True``: from the environment,
   ``None``/``False``: none, or a URL) into a :class:`ProxyURL` or ``None``. The
   environment is a mapping passed in (the engines pass ``os.environ``), read with
   the rules of :mod:`urllib.request`: see :func:`proxy_from_environment`.
2. For ``http://`` and ``https://`` proxies, the engine sends
   :func:`connect_request` and feeds what the proxy answers to a
   :class:`ConnectResponse` until it says the tunnel is open; the bytes after the
   answer's head belong to the tunnel. A refusal raises
   :class:`~simple_websocket.errors.ProxyError`.
3. SOCKS proxies are spoken to by python-socks in the engines; :func:`socks_error`
   builds the error for its failures so that both engines classify them alike.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ..errors import ProxyError
from .handshake import WSURL

__all__ = [
    "MAX_PROXY_HEAD_SIZE",
    "PROXY_SCHEMES",
    "ConnectResponse",
    "ProxyURL",
    "connect_request",
    "parse_proxy_url",
    "proxy_from_environment",
    "select_proxy",
    "socks_error",
]

#: The proxy URL schemes understood, with the port used when a URL has none.
PROXY_SCHEMES: Mapping[str, int] = {
    "http": 80,
    "https": 443,
    "socks5": 1080,
    "socks5h": 1080,
    "socks4": 1080,
}

#: The largest answer head (status line and headers) accepted from a proxy.
MAX_PROXY_HEAD_SIZE = 16 * 1024
_MAX_HEADERS = 128

#: The ``pip`` command that installs SOCKS support.
SOCKS_EXTRA = 'pip install "simple-websocket[socks]"'

# SOCKS5 replies (RFC 1928, 6) that say the proxy could not reach the server,
# which may work on a later attempt: general failure, network unreachable, host
# unreachable, connection refused, TTL expired. The others (not allowed by the
# ruleset, command or address type not supported) do not change by retrying.
_SOCKS5_TRANSIENT = frozenset({0x01, 0x03, 0x04, 0x05, 0x06})
# SOCKS4's one failure reply, "request rejected or failed", covers the server
# being down; the identd failures (0x5C, 0x5D) are configuration problems.
_SOCKS4_TRANSIENT = frozenset({0x5B})


@dataclass(frozen=True)
class ProxyURL:
    """A parsed proxy URL.

    ``repr()`` and :attr:`display` never show the password.

    Attributes:
        scheme: ``"http"``, ``"https"``, ``"socks5"``, ``"socks5h"`` or ``"socks4"``.
        host: The proxy's host name or address (IPv6 without brackets).
        port: The proxy's port.
        username: The user name, percent-decoded, or ``None``.
        password: The password, percent-decoded, or ``None``.
    """

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def is_http(self) -> bool:
        """``True`` for ``http://`` and ``https://`` proxies (tunnels by ``CONNECT``)."""
        return self.scheme in ("http", "https")

    @property
    def display(self) -> str:
        """The URL without credentials, for messages and logs."""
        return f"{self.scheme}://{_host_port(self.host, self.port)}"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_proxy_url(url: str) -> ProxyURL:
    """Parse a proxy URL.

    ``scheme://[user[:password]@]host[:port]``; credentials may be percent-encoded.
    A value without a scheme (``proxy.example:3128``, as environment variables often
    hold) is taken as ``http://``. Without a port, the scheme's usual one is used
    (80, 443, or 1080 for SOCKS).

    Raises:
        ValueError: The scheme is not one of :data:`PROXY_SCHEMES`, the URL has no
            host, or its port is invalid.
        TypeError: ``url`` is not a string.
    """
    if not isinstance(url, str):
        raise TypeError(f"proxy URL must be a str, not {type(url).__name__}")
    text = url.strip()
    if not text:
        raise ValueError("proxy URL is empty")
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid proxy URL {_redact(url)!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        raise ValueError(
            f"invalid proxy URL {_redact(url)!r}: the scheme must be one of "
            + ", ".join(f"{s}://" for s in PROXY_SCHEMES)
        )
    if not parts.hostname:
        raise ValueError(f"invalid proxy URL {_redact(url)!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"invalid proxy URL {_redact(url)!r}: a path is not allowed")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return ProxyURL(scheme, parts.hostname, port or PROXY_SCHEMES[scheme], username, password)


def _redact(url: str) -> str:
    """``url`` with the password replaced, for error messages."""
    scheme, sep, rest = url.rpartition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{hostpart}"


def _proxy_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``*_proxy`` variables by prefix, as ``urllib.request.getproxies_environment``.

    Lower-case names win over upper-case ones, an empty lower-case variable hides
    the upper-case one, and in a CGI script (``REQUEST_METHOD`` set) an upper-case
    ``HTTP_PROXY`` is ignored: a client can set it with a ``Proxy:`` header.
    """
    found: dict[str, str] = {}
    for name, value in environ.items():
        lname = name.lower()
        if value and lname.endswith("_proxy"):
            found[lname[:-6]] = value
    if "REQUEST_METHOD" in environ:
        found.pop("http", None)
    for name, value in environ.items():
        if name.endswith("_proxy"):
            key = name.lower()[:-6]
            if value:
                found[key] = value
            else:
                found.pop(key, None)
    return found


def _bypass(no_proxy: str, host: str, port: int) -> bool:
    """Whether ``no_proxy`` exempts ``host``, as ``urllib.request.proxy_bypass_environment``.

    ``*`` exempts every host. Otherwise each comma-separated entry (leading dots
    ignored, case-insensitive) matches the host itself, ``host:port``, or any name
    ending in ``.entry``. IPv6 entries may be written with or without brackets.
    """
    if no_proxy.strip() == "*":
        return True
    hostonly = host.lower().strip("[]")
    hostport = f"{hostonly}:{port}"
    bracketed = f"[{hostonly}]:{port}"
    for entry in no_proxy.split(","):
        name = entry.strip().lstrip(".").lower()
        if not name:
            continue
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        if name in (hostonly, hostport, bracketed):
            return True
        suffix = "." + name
        if hostonly.endswith(suffix) or hostport.endswith(suffix):
            return True
    return False


@functools.lru_cache(maxsize=256)
def _is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def proxy_from_environment(url: WSURL, environ: Mapping[str, str]) -> str | None:
    """The proxy URL the environment sets for ``url``, or ``None``.

    ``wss://`` uses ``https_proxy``, ``ws://`` uses ``http_proxy``, either falls back
    to ``all_proxy``; names are matched in either case, the lower-case one winning
    (see :func:`_proxy_variables` for the rest of urllib's rules). ``no_proxy``
    exempts hosts as urllib does. Unlike urllib, and like Go's HTTP client, a
    loopback destination (``localhost``, ``*.localhost``, ``127.0.0.0/8``, ``::1``)
    is always reached directly: a proxy cannot reach this machine's loopback
    interface, so proxying it could only fail.
    """
    if _is_loopback(url.host):
        return None
    variables = _proxy_variables(environ)
    no_proxy = variables.get("no")
    if no_proxy and _bypass(no_proxy, url.host, url.port):
        return None
    return variables.get("https" if url.secure else "http") or variables.get("all")


def select_proxy(
    proxy: str | bool | None, url: WSURL, environ: Mapping[str, str]
) -> ProxyURL | None:
    """Resolve the ``proxy=`` option for a connection to ``url``.

    Args:
        proxy: ``True`` to read ``environ`` (:func:`proxy_from_environment`),
            ``None`` or ``False`` for a direct connection, or a proxy URL.
        url: Where the connection goes.
        environ: The environment variables (``os.environ``).

    Returns:
        The proxy to connect through, or ``None`` to connect directly.

    Raises:
        ValueError: The URL (given or from the environment) is not a valid proxy
            URL; the message names the variable it came from.
        TypeError: ``proxy`` is of another type.
    """
    if proxy is None or proxy is False:
        return None
    if proxy is True:
        value = proxy_from_environment(url, environ)
        if value is None:
            return None
        try:
            return parse_proxy_url(value)
        except ValueError as exc:
            raise ValueError(f"{exc} (from the environment's proxy variables)") from None
    if isinstance(proxy, str):
        return parse_proxy_url(proxy)
    raise TypeError(f"proxy must be True, None or a URL string, not {type(proxy).__name__}")


def connect_request(
    host: str, port: int, proxy: ProxyURL, headers: Sequence[tuple[str, str]] = ()
) -> bytes:
    """The ``CONNECT`` request that asks ``proxy`` for a tunnel to ``host:port``.

    With credentials in the proxy URL, a ``Proxy-Authorization: Basic`` header
    carries them (RFC 7617; the user name and password are UTF-8 encoded).

    Raises:
        ValueError: ``host`` or a header contains CR, LF or a space.
    """
    target = _host_port(host, port)
    if any(c in target for c in "\r\n \t"):
        raise ValueError(f"invalid host for a proxy tunnel: {host!r}")
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.username is not None or proxy.password is not None:
        secret = f"{proxy.username or ''}:{proxy.password or ''}".encode()
        lines.append("Proxy-Authorization: Basic " + base64.b64encode(secret).decode("ascii"))
    for name, value in headers:
        if any(c in name + value for c in "\r\n") or not name:
            raise ValueError(f"invalid proxy request header {name!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class ConnectResponse:
    """Reads a proxy's answer to ``CONNECT``.

    Feed it what the proxy sends with :meth:`receive_data` until it returns
    ``True``: the tunnel is open, and :attr:`trailing_data` holds any bytes that
    came after the answer's head (they are the server's).

    Attributes:
        status_code: The answer's status, once its head arrived.
        reason: The answer's reason phrase.
        headers: The answer's headers as ``(name, value)`` pairs.
        trailing_data: Bytes received after the head.
    """

    def __init__(self, proxy: ProxyURL, host: str, port: int) -> None:
        self.proxy = proxy
        self.target = _host_port(host, port)
        self.status_code: int | None = None
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.trailing_data = b""
        self._buffer = bytearray()
        self._done = False

    def _error(self, detail: str, status_code: int | None = None) -> ProxyError:
        return ProxyError(
            f"proxy {self.proxy.display} {detail} (tunnel to {self.target})",
            status_code,
            proxy=self.proxy.display,
            headers=self.headers,
            transient=status_code is not None and (status_code >= 500 or status_code == 429),
        )

    def receive_data(self, data: bytes) -> bool:
        """Take bytes from the proxy; return ``True`` once the tunnel is open.

        Raises:
            ProxyError: The proxy refused (any status other than 2xx; ``status_code``
                is set, and ``transient`` for 5xx and 429), its answer is not HTTP,
                or its head is larger than :data:`MAX_PROXY_HEAD_SIZE`.
            RuntimeError: Called again after the tunnel opened.
        """
        if self._done:
            raise RuntimeError("the proxy's answer was already read")
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_PROXY_HEAD_SIZE:
                raise self._error("sent an answer head larger than 16 KiB")
            return False
        if end > MAX_PROXY_HEAD_SIZE:
            raise self._error("sent an answer head larger than 16 KiB")
        lines = self._buffer[:end].decode("latin-1").split("\r\n")
        self.trailing_data = bytes(self._buffer[end + 4 :])
        self._buffer.clear()
        status = lines[0].split(" ", 2)
        if (
            len(status) < 2
            or not status[0].startswith("HTTP/1.")
            or len(status[1]) != 3
            or not status[1].isdigit()
        ):
            raise self._error(f"did not answer with HTTP: {lines[0][:100]!r}")
        if len(lines) > _MAX_HEADERS:
            raise self._error("sent too many headers")
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise self._error(f"sent a malformed header line {line[:100]!r}")
            self.headers.append((name, value.strip()))
        self.status_code = int(status[1])
        self.reason = status[2] if len(status) > 2 else ""
        if not 200 <= self.status_code < 300:
            hint = ""
            if self.status_code == 407:
                hint = (
                    ": check the credentials in the proxy URL"
                    if self.proxy.username is not None
                    else ": the proxy URL needs credentials (http://user:password@host:port)"
                )
            raise self._error(
                f"refused: {self.status_code} {self.reason}".rstrip() + hint, self.status_code
            )
        self._done = True
        return True

    def closed(self) -> ProxyError:
        """The error for a proxy that closed the connection before answering.

        It is ``transient``: proxies commonly do this when they cannot reach the
        server.
        """
        error = self._error("closed the connection before answering CONNECT")
        error.transient = True
        return error


def socks_error(
    proxy: ProxyURL, host: str, port: int, message: str, reply_code: int | None, closed: bool
) -> ProxyError:
    """The :class:`~simple_websocket.errors.ProxyError` for a failed SOCKS exchange.

    Args:
        proxy: The SOCKS proxy.
        host: The server the tunnel was for.
        port: The server's port.
        message: What went wrong, as python-socks worded it.
        reply_code: The SOCKS reply code, when the proxy sent one.
        closed: The proxy closed the connection before it answered.

    The error is ``transient`` when the proxy could not reach the server (SOCKS5
    replies 1, 3, 4, 5, 6; SOCKS4's "rejected or failed") or closed the connection
    before answering; refused credentials and unsupported requests are not.
    """
    transient_codes = _SOCKS4_TRANSIENT if proxy.scheme == "socks4" else _SOCKS5_TRANSIENT
    transient = closed or (reply_code is not None and reply_code in transient_codes)
    return ProxyError(
        f"proxy {proxy.display} failed: {message} (tunnel to {_host_port(host, port)})",
        None,
        proxy=proxy.display,
        transient=transient,
    )
