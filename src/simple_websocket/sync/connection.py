"""The threaded engine: one WebSocket connection over a blocking socket.

:class:`Connection` (on :class:`~simple_websocket.sync.base.BaseConnection`) moves
bytes between a socket and the core's :class:`~simple_websocket.sansio.session.Session`
(the connection rules) with one background thread per connection, the reader. It
reads, feeds the session, writes what the session answers (pongs, close frames,
keepalive pings), waits until the session's next deadline, and closes the socket
at the end; ``send()`` writes from the caller's thread.

The semantics are those of the asyncio engine (:mod:`simple_websocket.asyncio`):
peer close frames are answered, ``close()`` waits for the closing handshake up to
``close_timeout``, protocol errors fail the connection with the right close code,
buffered messages are delivered before ``ConnectionClosed``, and the reader stops
reading while ``max_queue`` messages are unread (read backpressure).

The thread, event and selector classes are injectable (``thread_class``,
``event_class``, ``selector_class``) so the engine runs on eventlet or gevent as
simple-websocket 1.1 did. Locks are only held for short, non-blocking sections:
nothing waits on I/O while holding one, so the engine also works with green threads
on an unpatched standard library.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from wsproto.extensions import Extension

from ..errors import ConnectionClosed
from ..sansio.protocol import Protocol, State, check_close_code
from ..sansio.session import (
    ABORT,
    CLOSE_TRANSPORT,
    CLOSED,
    MESSAGES,
    PONG,
    WRITE,
    Message,
    Session,
)
from .base import (
    BaseConnection,
    EventFactory,
    EventLike,
    SelectorFactory,
    ThreadFactory,
)

__all__ = [
    "BaseConnection",
    "Connection",
    "EventFactory",
    "EventLike",
    "Message",
    "SelectorFactory",
    "ThreadFactory",
]


class _Writer:
    """One thread waiting for its bytes to be written by another."""

    __slots__ = ("event", "seq")

    def __init__(self, seq: int, event: EventLike) -> None:
        self.seq = seq
        self.event = event


class Connection(BaseConnection):
    """A WebSocket connection driven by the sans-I/O core over a blocking socket.

    Instances are created by the client and server entry points
    (``Client.connect``, ``Server.accept``) and attached to a socket once the
    opening handshake succeeded; attaching starts the reader thread.

    Writing: every frame, from ``send()`` in any thread or from the reader (pongs,
    the close answer, keepalive pings), is appended to one outgoing buffer in the
    order the core produced it, and whichever thread finds no write in progress
    writes the buffer. ``send()`` returns once its frame was written, so a peer that
    does not read blocks the senders (write backpressure), while the reader never
    waits for another thread's write.

    Attributes:
        sock: The socket, once attached.
        thread: The reader thread, once started.
    """

    _client = False

    def __init__(
        self,
        *,
        thread_class: ThreadFactory | None = None,
        selector_class: SelectorFactory | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._thread_class = thread_class
        self._selector_class = selector_class
        self.sock: socket.socket | None = None
        self.thread: Any = None
        self._session: Session | None = None
        # The reader stops: the server closes TCP first, or the connection failed.
        self._stop = False
        self._owns_socket = True
        self._initial_data = b""
        self._resume_event = self._event_class()
        self._pong_event = self._event_class()
        self._done = self._event_class()
        # Outgoing bytes, in the order the core produced them; see the class doc.
        self._outbuf: list[bytes] = []
        self._out_seq = 0
        self._written_seq = 0
        self._writing = False
        self._write_waiters: list[_Writer] = []
        self._write_error: BaseException | None = None

    @property
    def is_server(self) -> bool:
        """``True`` on the server side of the connection (as in simple-websocket 1.1)."""
        return not self._client

    # -- attaching -------------------------------------------------------------

    def _attach(
        self,
        sock: socket.socket,
        extensions: Sequence[Extension] = (),
        subprotocol: str | None = None,
        initial_data: bytes = b"",
        *,
        owns_socket: bool = True,
    ) -> None:
        """Start the connection on ``sock`` once the handshake is done.

        Args:
            sock: The connected socket; it is switched to blocking mode.
            extensions: The extensions negotiated in the handshake.
            subprotocol: The negotiated subprotocol.
            initial_data: Bytes already read past the handshake (the first frames).
            owns_socket: Close the socket at the end; ``False`` only shuts it down
                (for sockets a WSGI server closes itself).
        """
        sock.settimeout(None)
        self.sock = sock
        self._owns_socket = owns_socket
        proto = Protocol(
            self._client,
            extensions,
            max_message_size=self.max_message_size,
            clock=time.monotonic,
            max_inflated_size=self._max_inflated_size,
        )
        self._session = Session(
            proto,
            self._inbox,
            time.monotonic,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=self.close_timeout,
            logger=self.logger,
        )
        self.subprotocol = subprotocol
        self.connected = True
        self._initial_data = initial_data
        if self._thread_class is None:
            thread: Any = threading.Thread(
                target=self._run, name="simple_websocket.reader", daemon=True
            )
        else:
            thread = self._thread_class(target=self._run)
        self.thread = thread
        thread.start()

    @property
    def latency(self) -> float | None:
        """Round-trip time of the last answered ping in seconds, or ``None``."""
        return self._session.protocol.latency if self._session is not None else None

    @property
    def local_address(self) -> Any:
        """The local socket address, as ``socket.getsockname()``."""
        with contextlib.suppress(OSError):
            return self.sock.getsockname() if self.sock is not None else None
        return None

    @property
    def remote_address(self) -> Any:
        """The peer's socket address, as ``socket.getpeername()``."""
        with contextlib.suppress(OSError):
            return self.sock.getpeername() if self.sock is not None else None
        return None

    # -- the reader thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            self._read_loop()
        except Exception:  # pragma: no cover - a bug, not a network condition
            self.logger.exception("simple_websocket reader thread failed")
        finally:
            self._shutdown()

    def _read_loop(self) -> None:
        session = self._session
        sock = self.sock
        assert session is not None and sock is not None
        inbox = self._inbox
        if self._initial_data:
            data, self._initial_data = self._initial_data, b""
            self._process(data)
        selector: selectors.BaseSelector | None = None
        try:
            while True:
                with self._lock:
                    flags = session.tick()
                    self._step_locked(flags)
                    paused = inbox.paused
                    if paused:
                        self._resume_event.clear()
                    stalled = session.protocol.stalled
                    deadline = session.deadline()
                if flags:
                    self._wake(flags)
                if flags & ABORT or self._stop:
                    return
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                if paused:
                    self._resume_event.wait(timeout)
                    continue
                if stalled:
                    # Bytes received earlier and left unparsed while reading paused.
                    self._process(b"")
                    continue
                if timeout is not None and not _tls_pending(sock):
                    try:
                        if selector is None:
                            selector = (self._selector_class or selectors.DefaultSelector)()
                            selector.register(sock, selectors.EVENT_READ)
                        if not selector.select(timeout):
                            continue
                    except (OSError, ValueError):  # the socket is gone
                        return
                try:
                    data = sock.recv(max(self.receive_bytes, 1))
                except OSError:
                    return
                if not data:
                    return
                self._process(data)
        finally:
            if selector is not None:
                with contextlib.suppress(Exception):
                    selector.close()

    def _process(self, data: bytes) -> None:
        """Feed ``data`` to the session; deliver messages and write what it answers."""
        session = self._session
        assert session is not None
        with self._lock:
            flags = session.feed(data)
            self._step_locked(flags)
        if flags:
            self._wake(flags)

    def _step_locked(self, flags: int) -> None:
        """Do the part of a session step that needs the lock: queue its output."""
        if flags & WRITE:
            assert self._session is not None
            self._enqueue_locked(self._session.output)
        if flags & CLOSED:
            self._finished_locked()
            if flags & CLOSE_TRANSPORT:
                self._stop = True

    def _wake(self, flags: int) -> None:
        """Do the rest of a session step, without the lock: wake threads, write."""
        if flags & (MESSAGES | CLOSED):
            self._message_event.set()
        if flags & (PONG | CLOSED):
            self._pong_event.set()
        if flags & WRITE:
            self._flush()

    def _shutdown(self) -> None:
        """End of the reader: record the end, write what is left, close the socket."""
        session = self._session
        sock = self.sock
        assert session is not None and sock is not None
        with self._lock:
            # Messages that arrived before the end are still delivered.
            self._step_locked(session.lost())
        self._message_event.set()
        self._pong_event.set()
        # The close frame (or its answer) goes out before TCP is closed; a writer
        # blocked on a peer that does not read is released by close()'s abort.
        self._flush(wait=True)
        with self._lock:
            if self._write_error is None:
                self._write_error = self._inbox.closed_error()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        if self._owns_socket:
            with contextlib.suppress(OSError):
                sock.close()
        self._done.set()

    def _resume_reading(self) -> None:
        self._resume_event.set()

    # -- writing ---------------------------------------------------------------------

    def _enqueue_locked(self, data: bytes) -> int:
        """Append ``data`` to the outgoing buffer (lock held); return its number."""
        self._outbuf.append(data)
        self._out_seq += 1
        return self._out_seq

    def _flush(self, seq: int | None = None, wait: bool = False) -> bool:
        """Write the outgoing buffer, or leave it to the thread already writing.

        Args:
            seq: With ``wait``, return once the bytes numbered ``seq`` (default: all
                queued so far) were written.
            wait: Wait for another thread's write in progress instead of returning.

        Returns:
            ``False`` when writing failed (the connection is lost or closed).
        """
        with self._lock:
            if self._write_error is not None:
                return False
            if self._writing:
                if not wait:
                    return True
                target = self._out_seq if seq is None else seq
                if self._written_seq >= target:
                    return True
                waiter = _Writer(target, self._event_class())
                self._write_waiters.append(waiter)
            else:
                self._writing = True
                waiter = None
        if waiter is None:
            return self._write_loop()
        waiter.event.wait()
        with self._lock:
            return self._written_seq >= waiter.seq

    def _write_loop(self) -> bool:
        sock = self.sock
        assert sock is not None
        while True:
            with self._lock:
                if not self._outbuf or self._write_error is not None:
                    self._writing = False
                    failed = self._write_error is not None
                    waiters, self._write_waiters = self._write_waiters, []
                    break
                chunk = self._outbuf[0] if len(self._outbuf) == 1 else b"".join(self._outbuf)
                self._outbuf.clear()
                seq = self._out_seq
            try:
                sock.sendall(chunk)
            except OSError as exc:
                with self._lock:
                    if self._write_error is None:
                        self._write_error = exc
                    self._outbuf.clear()
                # The reader sees the socket end and records the loss.
                self._abort()
                continue
            with self._lock:
                self._written_seq = seq
                ready = [w for w in self._write_waiters if w.seq <= seq]
                if ready:
                    self._write_waiters = [w for w in self._write_waiters if w.seq > seq]
            for w in ready:
                w.event.set()
        for w in waiters:
            w.event.set()
        return not failed

    def _abort(self) -> None:
        """Shut the socket down: blocked reads and writes return at once."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)

    # -- the user's side -------------------------------------------------------------

    def send(self, data: Any) -> None:
        """Send a message: bytes-like data as binary, anything else as text.

        Calls from several threads are serialised: each message is written whole,
        in the order of the calls. ``send`` returns once the message was handed to
        the socket; when the peer does not read, it blocks (write backpressure).

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            data = data if isinstance(data, str) else str(data)
        with self._lock:
            session = self._session
            closed = (
                session is None
                or session.protocol.state is not State.OPEN
                or self._inbox.close_called
            )
            if not closed:
                assert session is not None
                seq = self._enqueue_locked(session.protocol.send(data))
        if closed:
            raise self._send_closed_error()
        if not self._flush(seq, wait=True):
            raise self._send_closed_error()

    def _send_closed_error(self) -> ConnectionClosed:
        if self._session is None:
            return self._inbox.closed_error()
        error = self._session.send_error(lost=self._write_error is not None)
        self._ended()
        return error

    def _ended(self) -> None:
        """On the server side, wait until the reader has shut the socket down.

        The application learns that the connection ended only then: a WSGI server
        writes its own HTTP response once the application returns, and that write
        must fail on the shut socket instead of following the close frame on the
        wire (Werkzeug writes it otherwise).
        """
        if self._client or self._session is None or self._done.is_set():
            return
        with self._lock:
            ending = self._session.protocol.state is State.CLOSED
        if ending and not self._done.wait(self.close_timeout):
            self._abort()
            self._done.wait(self.close_timeout)

    def ping(self, data: bytes | None = None) -> float:
        """Send a ping and wait for its pong.

        Returns:
            The round-trip time in seconds.

        Raises:
            ConnectionClosed: The connection closed before the pong arrived.
        """
        session = self._session
        if session is None:
            raise self._inbox.closed_error()
        with self._lock:
            # Taken before the core records its own send time, so that the result
            # is never below ``latency``.
            sent = time.monotonic()
            payload, frame = session.ping(data)
            seq = self._enqueue_locked(frame)
        self._flush(seq, wait=True)
        while True:
            with self._lock:
                if not session.ping_pending(payload):
                    return time.monotonic() - sent
                if self._inbox.finished:
                    raise self._inbox.closed_error()
                self._pong_event.clear()
            self._pong_event.wait()

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Close the connection.

        Sends a close frame (code ``reason``, 1000 by default, and ``message``),
        waits up to ``close_timeout`` for the peer's close frame and for TCP to
        close, then shuts the socket down if it is still open. Calling it again, or
        after the peer closed, is a no-op that waits for the same end.

        Raises:
            ValueError: ``reason`` is a code that may not be sent (RFC 6455 7.4);
                nothing was done.
        """
        code = check_close_code(reason)
        session = self._session
        with self._lock:
            self.connected = False
            if session is None:
                self._inbox.close_requested()
                return
            flags = session.close(code, message)
            self._step_locked(flags)
            resume = self._inbox.resumed
            self._inbox.resumed = False
        if resume:
            self._resume_event.set()
        if flags:
            # Do not wait behind a write in progress: the deadline below covers it.
            self._wake(flags)
        if not self._done.wait(self.close_timeout):
            self._abort()
            self._done.wait(self.close_timeout)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the socket is closed, without starting a close.

        Returns:
            ``True`` once closed, ``False`` if ``timeout`` passed first.
        """
        if self._session is None:
            return True
        return bool(self._done.wait(timeout))


def _tls_pending(sock: Any) -> bool:
    """``True`` when a TLS socket holds decrypted bytes a selector cannot see."""
    pending = getattr(sock, "pending", None)
    if pending is None:
        return False
    try:
        return bool(pending())
    except (OSError, ValueError):
        return False
