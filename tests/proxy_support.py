"""Proxies for the tests: real ones (pproxy, in a subprocess) and a scripted one.

pproxy listens on 127.0.0.1 with ports the kernel picks (it prints them), one
listener per kind: HTTP with and without Basic credentials, HTTP over TLS, SOCKS5
with and without credentials, SOCKS4.

:class:`ScriptedProxy` is written here: it reads a ``CONNECT`` request, records it,
and answers as told (a status such as 407 or 502, silence, closing, garbage). It
runs in a thread, so asyncio and sync tests use it alike.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import trustme

USER, PASSWORD = "alice", "s3cret:!"
# pproxy reads credentials after '#' in its listen URI, split at the first ':'.
_PPROXY_AUTH = f"{USER}:{PASSWORD}"

_LISTENERS = [
    ("http", "http://127.0.0.1:0"),
    ("http_auth", f"http://127.0.0.1:0#{_PPROXY_AUTH}"),
    ("socks5", "socks5://127.0.0.1:0"),
    ("socks5_auth", f"socks5://127.0.0.1:0#{_PPROXY_AUTH}"),
    ("socks4", "socks4://127.0.0.1:0"),
    ("https", "http+ssl://127.0.0.1:0"),
]
_SERVING = re.compile(r"Serving on \S+ 127\.0\.0\.1:(\d+) by")


@dataclass
class PProxy:
    """A running pproxy: the port of each listener, and the CA of its TLS certificate."""

    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    ca: trustme.CA

    def url(self, kind: str, *, credentials: str | None = None, host: str = "127.0.0.1") -> str:
        scheme = {"http_auth": "http", "socks5_auth": "socks5", "https": "https"}.get(kind, kind)
        userinfo = f"{credentials}@" if credentials is not None else ""
        return f"{scheme}://{userinfo}{host}:{self.ports[kind]}"


@contextlib.contextmanager
def run_pproxy(ca: trustme.CA, timeout: float = 20.0) -> Iterator[PProxy]:
    """Start pproxy with every listener; wait until it printed all their ports."""
    with tempfile.TemporaryDirectory() as tmp:
        cert = os.path.join(tmp, "cert.pem")
        key = os.path.join(tmp, "key.pem")
        issued = ca.issue_cert("127.0.0.1", "localhost")
        issued.cert_chain_pems[0].write_to_path(cert)
        issued.private_key_pem.write_to_path(key)
        args = [sys.executable, "-u", "-m", "pproxy"]
        for _, uri in _LISTENERS:
            args += ["-l", uri]
        # --auth 0: check credentials on every connection (pproxy otherwise lets an
        # address that authenticated once in for 30 days, on every listener).
        args += ["--ssl", f"{cert},{key}", "--auth", "0"]
        # Unbuffered: the selector must see every line that was not read yet.
        process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            bufsize=0,
        )
        try:
            assert process.stdout is not None
            ports: list[int] = []
            seen: list[str] = []
            deadline = time.monotonic() + timeout
            with selectors.DefaultSelector() as selector:
                selector.register(process.stdout, selectors.EVENT_READ)
                while len(ports) < len(_LISTENERS):
                    left = deadline - time.monotonic()
                    if left <= 0 or not selector.select(left):
                        raise RuntimeError(f"pproxy did not start in {timeout} s: {seen}")
                    line = process.stdout.readline().decode(errors="replace")
                    if not line:
                        raise RuntimeError(f"pproxy exited: {seen}")
                    seen.append(line.strip())
                    match = _SERVING.search(line)
                    if match:
                        ports.append(int(match.group(1)))
            # Printed once each server listens, in the order of the -l options.
            yield PProxy(process, dict(zip((k for k, _ in _LISTENERS), ports, strict=True)), ca)
        finally:
            process.kill()
            process.wait(10)
            if process.stdout is not None:
                process.stdout.close()


@dataclass
class ScriptedProxy:
    """A proxy that answers ``CONNECT`` as scripted, in a thread.

    ``answer`` is a raw response head (bytes, sent as is), or ``"stall"`` (read the
    request, never answer), ``"close"`` (read the request, close) or ``"silent"``
    (never even read). Every request head received is kept in :attr:`requests`.
    """

    answer: bytes | str
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    #: Instead of HTTP: answer the n-th read of a connection with the n-th of these.
    socks_replies: list[bytes] | None = None

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._open.append(sock)
            threading.Thread(target=self._handle, args=(sock,), daemon=True).start()

    def _handle(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self.answer == "silent":
                self._stop.wait(30)
                return
            sock.settimeout(10)
            if self.socks_replies is not None:
                for reply in self.socks_replies:
                    self.requests.append(sock.recv(4096))
                    sock.sendall(reply)
                while sock.recv(4096):
                    pass
                return
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.requests.append(head)
            if self.answer == "stall":
                self._stop.wait(30)
            elif self.answer == "close":
                sock.close()
            else:
                assert isinstance(self.answer, bytes)
                sock.sendall(self.answer)
                # Keep the connection until the client closes it.
                while sock.recv(4096):
                    pass

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.close()
        self._thread.join(5)

    def __enter__(self) -> ScriptedProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def header_of(request: bytes, name: str) -> str | None:
    """The value of header ``name`` in a recorded request head."""
    for line in request.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


# -- shared by the asyncio and sync tests ----------------------------------------------

CREDENTIALS = f"{quote(USER)}:{quote(PASSWORD, safe='')}"

# Every pproxy listener, with the credentials its URL needs.
KINDS = {
    "http": None,
    "http_auth": CREDENTIALS,
    "https": None,
    "socks5": None,
    "socks5h": None,
    "socks5_auth": CREDENTIALS,
    "socks4": None,
}


def proxy_url(pproxy: PProxy, kind: str) -> str:
    if kind == "socks5h":
        return pproxy.url("socks5").replace("socks5://", "socks5h://")
    return pproxy.url(kind, credentials=KINDS[kind])


def port_of_kind(pproxy: PProxy, kind: str) -> int:
    return pproxy.ports["socks5" if kind == "socks5h" else kind]


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context
