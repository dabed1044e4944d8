"""A WebSocket connection over the ASGI WebSocket interface.

The ASGI server (uvicorn, hypercorn, daphne, ...) speaks the protocol; this adapter
turns its ``receive``/``send`` events into the same connection interface as every
other async connection: ``send``, ``receive(timeout)``, ``close``, ``async for``,
``async with``. A reader task moves events into the bounded message queue and stops
taking events while the queue is full, so a slow consumer pushes back on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from ..asyncio.connection import BaseConnection
from ..errors import ConnectionClosed, HandshakeError
from ..sansio.handshake import HandshakeRequest, choose_subprotocol, normalize_subprotocols
from ..sansio.protocol import CloseCode, check_close_code
from ..sansio.session import too_big, too_big_reason

__all__ = ["ASGIConnection"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ASGIConnection(BaseConnection):
    """A WebSocket connection accepted through ASGI.

    Create it with :meth:`accept` (or ``AioServer.accept(asgi=(scope, receive,
    send))``).
    """

    #: Always the server side (as simple-websocket 1.1's attribute says).
    is_server = True

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        subprotocols: str | Sequence[str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if scope.get("type") != "websocket":
            raise ValueError(f"ASGI scope type must be 'websocket', not {scope.get('type')!r}")
        self.scope = scope
        self._asgi_receive = receive
        self._asgi_send = send
        self.subprotocols = normalize_subprotocols(subprotocols)
        self._reader: asyncio.Task[None] | None = None
        self._can_read = asyncio.Event()
        self._can_read.set()
        self._closed_event = asyncio.Event()
        self._close_sent = False
        # The code and reason of the close this side started, if it did.
        self._sent_close: tuple[int, str | None] | None = None
        self._close_sender: asyncio.Task[None] | None = None

    @property
    def request(self) -> HandshakeRequest:
        """The client's request as a :class:`HandshakeRequest` (path, headers)."""
        path = self.scope.get("path", "/")
        query = self.scope.get("query_string", b"")
        target = path + ("?" + query.decode("latin-1") if query else "")
        headers = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in self.scope.get("headers", [])
        ]
        if self.scope.get("subprotocols") and not any(
            k.lower() == "sec-websocket-protocol" for k, _ in headers
        ):
            headers.append(("Sec-WebSocket-Protocol", ", ".join(self.scope["subprotocols"])))
        return HandshakeRequest(target, headers)

    def choose_subprotocol(self, request: HandshakeRequest) -> str | None:
        """Pick the first offered subprotocol that is in ``subprotocols``."""
        return choose_subprotocol(self.scope.get("subprotocols") or [], self.subprotocols)

    @classmethod
    async def accept(
        cls,
        scope: Scope,
        receive: Receive,
        send: Send,
        subprotocols: str | Sequence[str] | None = None,
        *,
        headers: Any = None,
        chooser: Callable[[HandshakeRequest], str | None] | None = None,
        **options: Any,
    ) -> ASGIConnection:
        """Accept the WebSocket of an ASGI ``websocket`` scope.

        Args:
            scope: The ASGI scope.
            receive: The ASGI receive callable.
            send: The ASGI send callable.
            subprotocols: Subprotocols this server supports.
            headers: Extra response headers (mapping or pairs), sent with the accept.
            chooser: Replaces :meth:`choose_subprotocol`.
            **options: Connection options (``max_message_size``, ``max_queue``, ...).

        Raises:
            HandshakeError: The client disconnected before the handshake, or the
                server sent something other than ``websocket.connect``.
        """
        ws = cls(scope, receive, send, subprotocols, **options)
        event = await receive()
        if event["type"] == "websocket.disconnect":
            raise HandshakeError("the client disconnected before the handshake")
        if event["type"] != "websocket.connect":
            raise HandshakeError(f"expected websocket.connect, got {event['type']!r}")
        choose = chooser or ws.choose_subprotocol
        ws.subprotocol = choose(ws.request)
        accept: dict[str, Any] = {"type": "websocket.accept", "subprotocol": ws.subprotocol}
        if headers:
            items = headers.items() if hasattr(headers, "items") else headers
            accept["headers"] = [(str(k).encode(), str(v).encode()) for k, v in items]
        await send(accept)
        ws.connected = True
        ws._reader = asyncio.get_running_loop().create_task(ws._read())
        return ws

    async def _read(self) -> None:
        try:
            while True:
                await self._can_read.wait()
                event = await self._asgi_receive()
                kind = event["type"]
                if kind == "websocket.receive":
                    text = event.get("text")
                    message = text if text is not None else bytes(event.get("bytes") or b"")
                    if too_big(message, self.max_message_size):
                        # The ASGI server assembled it already; refuse it as the
                        # engine does (the server's own limit may be larger), and
                        # read on until the server reports the disconnect.
                        self.connected = False
                        self._start_close(
                            CloseCode.MESSAGE_TOO_BIG, too_big_reason(self.max_message_size)
                        )
                        continue
                    if not self._close_sent:
                        self._deliver([message])
                elif kind == "websocket.disconnect":
                    if self._sent_close is not None:
                        # Servers report the end of a close this side started
                        # differently (the client's echo, 1000, 1005): keep ours.
                        self._finish(*self._sent_close)
                    else:
                        self._finish(
                            int(event.get("code", CloseCode.NORMAL_CLOSURE)),
                            event.get("reason") or None,
                        )
                    break
        except Exception as exc:  # the server's receive failed: the connection is gone
            self._finish(CloseCode.ABNORMAL_CLOSURE, str(exc) or None)
        finally:
            self._closed_event.set()

    def _pause_reading(self) -> None:
        self._can_read.clear()

    def _resume_reading(self) -> None:
        self._can_read.set()

    async def send(self, data: Any) -> None:
        """Send a message: bytes-like data as binary, anything else as text.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        if self._inbox.finished:
            raise self._inbox.closed_error()
        if self._sent_close is not None:
            raise ConnectionClosed(*self._sent_close)
        if isinstance(data, (bytes, bytearray, memoryview)):
            event: dict[str, Any] = {"type": "websocket.send", "bytes": bytes(data)}
        else:
            event = {"type": "websocket.send", "text": data if isinstance(data, str) else str(data)}
        try:
            await self._asgi_send(event)
        except Exception as exc:
            # Servers raise their own exception types once the client is gone.
            self._finish(CloseCode.ABNORMAL_CLOSURE, None)
            raise ConnectionClosed(self.close_reason, self.close_message) from exc
        # Some servers (hypercorn) drop messages for a client that is gone without
        # suspending the sender: yield, so that the reader takes the disconnect
        # and a send loop ends with ConnectionClosed instead of spinning forever.
        await asyncio.sleep(0)

    async def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Close the connection with ``reason`` (1000) and wait for the client.

        Waits up to ``close_timeout`` in all (sending the close included) for the
        server to report the disconnect. Idempotent: a second call, or a call after
        the client closed, waits for the same end.

        Raises:
            ValueError: ``reason`` is a code that may not be sent (RFC 6455 7.4).
        """
        code = check_close_code(reason)
        self._inbox.close_called = True
        self.connected = False
        if self._inbox.finished and not self._close_sent:
            # The client is gone (a disconnect, or a failed send): nothing to close.
            if self._reader is not None and not self._reader.done():
                self._reader.cancel()
            return
        # Let the reader see the disconnect even if the queue is full.
        self._can_read.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.close_timeout
        self._start_close(code, message)
        sender = self._close_sender
        try:
            if sender is not None and not sender.done():
                await asyncio.wait_for(asyncio.shield(sender), max(0.0, deadline - loop.time()))
            if not self._closed_event.is_set():
                await asyncio.wait_for(self._closed_event.wait(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            if sender is not None:
                sender.cancel()
            if self._reader is not None:
                self._reader.cancel()
            self._finish(*(self._sent_close or (code, message)))

    def _start_close(self, code: int, message: str | None) -> None:
        """Send the close event (once), without waiting for it."""
        if self._close_sent:
            return
        self._close_sent = True
        self._sent_close = (code, message)
        event: dict[str, Any] = {"type": "websocket.close", "code": code}
        if message:
            event["reason"] = message
        # In a task of its own: some servers' send of a close waits for the closing
        # handshake and does not give up when cancelled, so close() keeps its
        # deadline by not awaiting it past close_timeout.
        self._close_sender = asyncio.get_running_loop().create_task(self._send_close(event))

    async def _send_close(self, event: dict[str, Any]) -> None:
        # A server that reports the client gone by raising: the reader sees it too.
        with contextlib.suppress(Exception):
            await self._asgi_send(event)
