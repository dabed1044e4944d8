"""Test helpers for applications built on this SDK, and a pytest plugin.

:class:`ScriptedServer` is an in-process WebSocket server on localhost whose
behaviour a test scripts with a :class:`Script`: echo, greet with messages, drop
the TCP connection after N messages, close with a code, refuse the handshake with
an HTTP status, stop answering pings, or stop reading (a slow consumer). It records
what it received and can be stopped and restarted on the same port, which is what
testing a reconnecting bot needs::

    async def test_bot_resubscribes(ws_server):
        ws_server.script = Script(
            greeting=["hello"], close_after=1, close_code=1012
        )
        ...

:class:`FaultProxy` sits between a client and a server on loopback and breaks the
network on demand: it can cut every connection, blackhole them (stop forwarding in
both directions without closing anything, as when a NAT entry expires or a host
loses power) and delay what it forwards::

    async with FaultProxy(ws_server.port) as proxy:
        client = AioClient.connect(proxy.url, reconnect=True, ping_interval=0.1)
        ...
        proxy.blackhole()        # the client's keepalive must notice

The pytest plugin (registered under the ``pytest11`` entry point, so it is active
wherever this package is installed) provides two fixtures: ``ws_server``, a started
:class:`ScriptedServer`, and ``ws_server_factory``, an async callable creating more;
all are stopped at teardown. They need pytest-asyncio (the ``testing`` extra
installs it), and nothing more: an ``async def`` test that uses them is marked as an
asyncio test unless it already has such a mark, so pytest-asyncio's default strict
mode runs it. Without pytest-asyncio, the fixtures fail and say what to install.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import inspect
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self

from .aiows import AioServer, serve
from .asyncio.server import WebSocketServer
from .errors import ConnectionClosed
from .sansio.handshake import HandshakeRequest, HTTPResponse

__all__ = ["FaultProxy", "PubSubServer", "Script", "ScriptedServer", "free_port"]


class _Watched:
    """What the test servers share: tests wait for a condition on their state."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def _bump(self) -> None:
        """Something changed: wake the waiters, who check their condition again."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``condition()`` is true; it is checked after every change.

        Raises:
            TimeoutError: ``condition`` did not become true within ``timeout``.
        """
        async with asyncio.timeout(timeout):
            while not condition():
                await self._changed.wait()


@dataclasses.dataclass
class Script:
    """What a :class:`ScriptedServer` does with each new connection.

    Attributes:
        greeting: Messages sent as soon as the connection is accepted.
        echo: Send every received message back.
        close_after: Close (with ``close_code`` and ``close_reason``) after receiving
            this many messages on the connection; 0 closes right after the greeting.
        close_code: The close code used by ``close_after``.
        close_reason: The close reason used by ``close_after``.
        drop_after: Abort the TCP connection, without a close frame, after receiving
            this many messages; 0 drops it right after the greeting.
        refuse: Answer the handshake with this HTTP status instead of accepting.
        retry_after: ``Retry-After`` header value (seconds) sent with ``refuse``.
        withhold_pongs: Stop reading once accepted: pings go unanswered (and
            nothing the client sends is received), like a frozen peer.
        slow: Do not read until :meth:`ScriptedServer.release` is called (a slow
            consumer: the client's sends eventually block).
    """

    greeting: Sequence[str | bytes] = ()
    echo: bool = True
    close_after: int | None = None
    close_code: int = 1000
    close_reason: str = ""
    drop_after: int | None = None
    refuse: int | None = None
    retry_after: float | None = None
    withhold_pongs: bool = False
    slow: bool = False


class ScriptedServer(_Watched):
    """A scriptable WebSocket server on localhost for tests.

    Args:
        script: The behaviour of new connections (changeable at any time through
            :attr:`script`; a connection keeps the script it started with).
        host: The interface to listen on.
        port: The port (0: a free one, kept across :meth:`restart`).
        **accept_options: Options of :meth:`AioServer.accept` (``max_queue``,
            ``ping_interval``, ``subprotocols``, ...).

    Attributes:
        received: Every message received, over all connections, in order.
        connections: Number of connections accepted so far.
        refused: Number of handshakes refused because of ``Script.refuse``.
        active: The connections currently open.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **accept_options: Any,
    ) -> None:
        self.script = script or Script()
        self.host = host
        self.port = port
        self.accept_options = accept_options
        self.received: list[str | bytes] = []
        self.connections = 0
        self.refused = 0
        self.active: set[AioServer] = set()
        self._frozen: set[AioServer] = set()
        self._server: WebSocketServer[Any] | None = None
        super().__init__()
        self._released = asyncio.Event()

    @property
    def url(self) -> str:
        """``ws://host:port/``."""
        return f"ws://{self.host}:{self.port}/"

    async def _process_request(self, request: HandshakeRequest) -> HTTPResponse | None:
        script = self.script
        if script.refuse is None:
            return None
        self.refused += 1
        self._bump()
        headers = []
        if script.retry_after is not None:
            headers.append(("Retry-After", f"{script.retry_after:g}"))
        return HTTPResponse(script.refuse, f"refused by script ({script.refuse})\n", headers)

    async def _handle(self, ws: AioServer) -> None:
        script = self.script
        self.connections += 1
        self.active.add(ws)
        self._bump()
        try:
            await self._run(ws, script)
        finally:
            self.active.discard(ws)
            self._bump()

    async def _run(self, ws: AioServer, script: Script) -> None:
        for message in script.greeting:
            await ws.send(message)
        if script.drop_after == 0:
            assert ws.transport is not None
            ws.transport.abort()
            return
        if script.close_after == 0:
            await ws.close(script.close_code, script.close_reason)
            return
        if script.withhold_pongs:
            assert ws.transport is not None
            ws.transport.pause_reading()
            self._frozen.add(ws)
            try:
                await ws.wait_closed()
            finally:
                self._frozen.discard(ws)
            return
        if script.slow:
            await self._released.wait()
        count = 0
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                count += 1
                self.received.append(message)
                self._bump()
                if script.drop_after is not None and count >= script.drop_after:
                    assert ws.transport is not None
                    ws.transport.abort()
                    return
                if script.echo:
                    await ws.send(message)
                if script.close_after is not None and count >= script.close_after:
                    await ws.close(script.close_code, script.close_reason)
                    return

    # -- control -------------------------------------------------------------------

    async def start(self) -> Self:
        """Start listening (on the same port as before after a stop)."""
        if self._server is None:
            self._server = await serve(
                self._handle,
                self.host,
                self.port,
                process_request=self._process_request,
                **self.accept_options,
            )
            self.port = self._server.port
        return self

    async def stop(self) -> None:
        """Stop listening and close every connection with 1001."""
        if self._server is not None:
            server, self._server = self._server, None
            for ws in self._frozen:
                # Read again so that the closing handshake can complete.
                if ws.transport is not None and not ws.transport.is_closing():
                    ws.transport.resume_reading()
            await server.close()

    async def restart(self) -> None:
        """Stop, then start again on the same port."""
        await self.stop()
        await self.start()

    def release(self) -> None:
        """Let ``slow`` connections start reading."""
        self._released.set()

    async def send_all(self, message: str | bytes) -> None:
        """Send ``message`` on every open connection."""
        for ws in list(self.active):
            with contextlib.suppress(ConnectionClosed):
                await ws.send(message)

    async def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[str | bytes]:
        """Wait until ``count`` messages were received in all; return them."""
        await self.wait_until(lambda: len(self.received) >= count, timeout)
        return self.received[:count]

    async def wait_for_connections(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` connections were accepted in all."""
        await self.wait_until(lambda: self.connections >= count, timeout)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class PubSubServer(_Watched):
    """A reference publish/subscribe server, to test bots that must not miss messages.

    It speaks a small JSON protocol, the one the subscriptions documentation uses:

    * ``{"op": "subscribe", "channel": C, "since": N}`` subscribes to channel ``C``;
      with ``since`` (a sequence number, or ``null``) it first replays the kept
      history after ``N``, then sends new messages. It answers
      ``{"type": "subscribed", "channel": C, "last": L}``, ``L`` being the
      channel's latest sequence number (or ``null``).
    * ``{"op": "unsubscribe", "channel": C}`` stops that.
    * ``{"op": "request", "id": I, ...}`` is a request: the server runs
      :attr:`handler` on it once per id and answers
      ``{"type": "response", "id": I, "result": R}``. A request whose id it has
      seen before (a client sending it again after a reconnect) is answered with
      the same result and not run again: requests are deduplicated by id.

    Published messages are ``{"type": "event", "channel": C, "seq": N, "data": D}``,
    with ``seq`` consecutive from 1 per channel (match them on ``type`` and
    ``channel``: the ``subscribed`` answer names the channel too). History, sequence
    numbers and the request log survive :meth:`restart`, as they would in a service
    backed by a log.

    Args:
        host: The interface to listen on.
        port: The port (0: a free one, kept across restarts).
        history: Messages kept per channel for replay.
        handler: ``(request) -> result`` (sync or async) for requests; the default
            answers with the request's ``"params"``.
        **accept_options: Options of :func:`simple_websocket.serve`.

    Attributes:
        requests: Requests received, copies sent again included.
        executed: How many times the handler ran (once per request id).
        answered: How many responses were sent (repeats included).
        subscribes: The subscribe messages received, in order.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        history: int = 100_000,
        handler: Callable[[dict[str, Any]], Any] | None = None,
        **accept_options: Any,
    ) -> None:
        self.host = host
        self.port = port
        self.history = history
        self.handler = handler or (lambda request: request.get("params"))
        self.accept_options = accept_options
        self.requests = 0
        self.executed = 0
        self.answered = 0
        self.subscribes: list[dict[str, Any]] = []
        self._log: dict[str, list[str]] = {}
        self._first: dict[str, int] = {}
        self._subscribers: dict[str, set[asyncio.Queue[str | None]]] = {}
        self._results: dict[str, asyncio.Future[Any]] = {}
        self._executions: set[asyncio.Task[None]] = set()
        self._server: WebSocketServer[Any] | None = None
        super().__init__()

    @property
    def url(self) -> str:
        """``ws://host:port/``."""
        return f"ws://{self.host}:{self.port}/"

    def last(self, channel: str) -> int | None:
        """The latest sequence number published on ``channel``, or ``None``."""
        log = self._log.get(channel)
        return self._first[channel] + len(log) - 1 if log else None

    def subscribers(self, channel: str) -> int:
        """How many connections are subscribed to ``channel`` now."""
        return len(self._subscribers.get(channel, ()))

    def publish(self, channel: str, data: Any = None) -> int:
        """Publish ``data`` on ``channel``; returns its sequence number.

        Subscribers get it in order, after anything published before.
        """
        log = self._log.setdefault(channel, [])
        first = self._first.setdefault(channel, 1)
        seq = first + len(log)
        message = json.dumps({"type": "event", "channel": channel, "seq": seq, "data": data})
        log.append(message)
        if len(log) > self.history:
            del log[0]
            self._first[channel] = first + 1
        for queue in self._subscribers.get(channel, ()):
            queue.put_nowait(message)
        return seq

    async def _handle(self, ws: AioServer) -> None:
        outbox: asyncio.Queue[str | None] = asyncio.Queue()
        channels: set[str] = set()

        async def write() -> None:
            while (message := await outbox.get()) is not None:
                await ws.send(message)

        loop = asyncio.get_running_loop()
        writer = loop.create_task(write())
        requests: set[asyncio.Task[None]] = set()
        try:
            async for raw in ws:
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(message, dict):
                    continue
                op = message.get("op")
                if op == "subscribe":
                    self._subscribe(message, outbox, channels)
                elif op == "unsubscribe":
                    channel = str(message.get("channel"))
                    channels.discard(channel)
                    self._subscribers.get(channel, set()).discard(outbox)
                elif op == "request":
                    self.requests += 1
                    # Answered in its own task: requests run concurrently.
                    task = loop.create_task(self._respond(message, outbox))
                    requests.add(task)
                    task.add_done_callback(requests.discard)
                self._bump()
        except ConnectionClosed:
            pass
        finally:
            for channel in channels:
                self._subscribers.get(channel, set()).discard(outbox)
            for task in requests:
                task.cancel()
            outbox.put_nowait(None)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer

    def _subscribe(
        self, message: dict[str, Any], outbox: asyncio.Queue[str | None], channels: set[str]
    ) -> None:
        channel = str(message.get("channel"))
        self.subscribes.append(message)
        since = message.get("since")
        log = self._log.get(channel, [])
        first = self._first.get(channel, 1)
        outbox.put_nowait(
            json.dumps({"type": "subscribed", "channel": channel, "last": self.last(channel)})
        )
        if isinstance(since, int):
            # Replay what came after ``since``, then go on live: nothing in between
            # can be published (no await), so nothing is missed or sent twice.
            for message_text in log[max(0, since + 1 - first) :]:
                outbox.put_nowait(message_text)
        channels.add(channel)
        self._subscribers.setdefault(channel, set()).add(outbox)

    async def _execute(self, request: dict[str, Any], result: asyncio.Future[Any]) -> None:
        try:
            value = self.handler(request)
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            value = {"error": str(exc)}
        result.set_result(value)

    async def _respond(self, request: dict[str, Any], outbox: asyncio.Queue[str | None]) -> None:
        outbox.put_nowait(await self._answer(request))
        self._bump()

    async def _answer(self, request: dict[str, Any]) -> str:
        key = json.dumps(request.get("id"))
        result = self._results.get(key)
        if result is None:
            # Run once, in a task of its own: the request is the server's work now,
            # whatever happens to the connection it came on. A copy that arrives
            # meanwhile (sent again after a reconnect) waits for the same result.
            loop = asyncio.get_running_loop()
            result = self._results[key] = loop.create_future()
            self.executed += 1
            self._bump()
            task = loop.create_task(self._execute(request, result))
            self._executions.add(task)
            task.add_done_callback(self._executions.discard)
        value = await asyncio.shield(result)
        self.answered += 1
        return json.dumps({"type": "response", "id": request.get("id"), "result": value})

    async def start(self) -> Self:
        """Start listening (on the same port as before after a stop)."""
        if self._server is None:
            self._server = await serve(self._handle, self.host, self.port, **self.accept_options)
            self.port = self._server.port
        return self

    async def stop(self) -> None:
        """Stop listening and close every connection with 1001 (history is kept)."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.close()

    async def restart(self) -> None:
        """Stop, then start again on the same port."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class _Direction:
    """One direction of a proxied connection: bytes written to ``sink`` in order.

    Bytes wait here while the link is held (blackholed), while the sink is not
    connected yet, and for the proxy's ``delay``. Each item is ``(due, data)``,
    where ``data`` is bytes, ``_EOF`` or ``_CLOSE``.
    """

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.sink: asyncio.Transport | None = None
        self.items: collections.deque[tuple[float, bytes | object]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None

    def push(self, data: bytes | object) -> None:
        loop = asyncio.get_running_loop()
        self.items.append((loop.time() + self.link.proxy.delay, data))
        self.drain()

    def drain(self) -> None:
        """Write every item that is due, unless the link is held; re-arm the timer."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.link.held or self.sink is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        sink = self.sink
        while self.items:
            due, data = self.items[0]
            if due > now:
                self.timer = loop.call_at(due, self.drain)
                return
            self.items.popleft()
            if sink.is_closing():
                continue
            if data is _EOF:
                if sink.can_write_eof():
                    sink.write_eof()
            elif data is _CLOSE:
                sink.close()
            else:
                assert isinstance(data, bytes)
                sink.write(data)

    def clear(self) -> None:
        self.items.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


_EOF = object()
_CLOSE = object()


class _Link:
    """One proxied connection: the client's side (``down``) and the target's (``up``)."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.held = proxy._hold_new
        self.down: asyncio.Transport | None = None
        self.up: asyncio.Transport | None = None
        self.to_up = _Direction(self)
        self.to_down = _Direction(self)
        self.task: asyncio.Task[None] | None = None
        # Ends that have finished sending (FIN received).
        self.eofs = 0

    def transports(self) -> list[asyncio.Transport]:
        return [t for t in (self.down, self.up) if t is not None]

    def set_reading(self, reading: bool) -> None:
        for transport in self.transports():
            if not transport.is_closing():
                if reading:
                    transport.resume_reading()
                else:
                    transport.pause_reading()

    def hold(self) -> None:
        self.held = True
        # Read nothing more: what the ends send stays in the kernel's buffers, as
        # behind a dead route, and the proxy's memory stays bounded.
        self.set_reading(False)

    def release(self) -> None:
        self.held = False
        if self.up is not None:
            self.set_reading(True)
        self.to_up.drain()
        self.to_down.drain()

    def abort(self) -> None:
        self.to_up.clear()
        self.to_down.clear()
        if self.task is not None:
            self.task.cancel()
        for transport in self.transports():
            transport.abort()

    async def connect_up(self) -> None:
        """Open the connection to the target, then forward what the client sent."""
        loop = asyncio.get_running_loop()
        proxy = self.proxy
        try:
            await loop.create_connection(
                lambda: _Side(self, upstream=True), proxy.target_host, proxy.target_port
            )
        except OSError:
            # The target is down: the client sees its connection closed.
            if self.down is not None:
                self.down.abort()
            return
        finally:
            self.task = None
        self.to_up.sink = self.up
        self.to_up.drain()
        if not self.held and self.down is not None and not self.down.is_closing():
            self.down.resume_reading()

    def lost(self, upstream: bool) -> None:
        """One side's TCP connection ended: close the other once its bytes are out."""
        direction = self.to_down if upstream else self.to_up
        direction.push(_CLOSE)
        if not self.transports() or all(t.is_closing() for t in self.transports()):
            self.proxy._forget(self)


class _Side(asyncio.Protocol):
    """The asyncio protocol of one side of a proxied connection."""

    def __init__(self, link: _Link, upstream: bool) -> None:
        self.link = link
        self.upstream = upstream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        link = self.link
        if self.upstream:
            link.up = transport
            if link.held:
                transport.pause_reading()
        else:
            link.down = transport
            link.to_down.sink = transport
            # Nothing to forward to until the target's side is connected.
            transport.pause_reading()
            link.proxy._adopt(link)

    def data_received(self, data: bytes) -> None:
        (self.link.to_down if self.upstream else self.link.to_up).push(data)

    def eof_received(self) -> bool:
        # Half-close: pass the FIN on and keep the other direction open, until both
        # ends have finished sending.
        link = self.link
        (link.to_down if self.upstream else link.to_up).push(_EOF)
        link.eofs += 1
        if link.eofs == 2:
            link.to_down.push(_CLOSE)
            link.to_up.push(_CLOSE)
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        self.link.lost(self.upstream)

    def pause_writing(self) -> None:
        # This side's write buffer is full: stop reading from the other side.
        other = self.link.down if self.upstream else self.link.up
        if other is not None and not other.is_closing():
            other.pause_reading()

    def resume_writing(self) -> None:
        other = self.link.down if self.upstream else self.link.up
        if other is not None and not other.is_closing() and not self.link.held:
            other.resume_reading()


class FaultProxy(_Watched):
    """A TCP proxy on loopback that breaks the network on demand, for tests.

    Every connection accepted on :attr:`port` is forwarded to
    ``target_host:target_port``, byte for byte. Then:

    * :meth:`cut` aborts every connection open now (both ends see their TCP
      connection reset or closed, without a close frame: close code 1006);
    * :meth:`blackhole` stops forwarding on every connection open now, in both
      directions, and closes nothing: no FIN, no reset, silence, as when a NAT
      entry expired, a load balancer died or a laptop went to sleep. The proxy
      stops reading too, so what the ends send waits in the kernel's buffers.
      Connections opened afterwards are forwarded normally, unless
      ``new_connections=True`` (the whole network is down);
    * :meth:`restore` forwards again, starting with what was held: nothing is
      lost, as when a route comes back and TCP retransmits;
    * :attr:`delay` (seconds, changeable at any time) holds every chunk that
      long before forwarding it, in both directions, in order.

    Use it as an async context manager, or call :meth:`start` and :meth:`close`.

    Args:
        target_port: The port to forward to.
        target_host: The host to forward to (loopback by default).
        host: The interface to listen on.
        port: The port to listen on (0: a free one, see :attr:`port`).
        delay: See :attr:`delay`.

    Attributes:
        delay: Seconds each chunk waits before it is forwarded.
        connections: Connections accepted so far.
    """

    def __init__(
        self,
        target_port: int,
        target_host: str = "127.0.0.1",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 0.0,
    ) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0, not {delay!r}")
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = port
        self.delay = delay
        self.connections = 0
        self._links: set[_Link] = set()
        self._hold_new = False
        self._server: asyncio.Server | None = None
        super().__init__()

    @property
    def url(self) -> str:
        """``ws://host:port/``: the proxy's address as a WebSocket URL."""
        return f"ws://{self.host}:{self.port}/"

    @property
    def open_connections(self) -> int:
        """Connections currently proxied (including blackholed ones)."""
        return len(self._links)

    def _adopt(self, link: _Link) -> None:
        self.connections += 1
        self._links.add(link)
        link.task = asyncio.get_running_loop().create_task(link.connect_up())
        self._bump()

    def _forget(self, link: _Link) -> None:
        if link in self._links:
            self._links.discard(link)
            self._bump()

    async def start(self) -> Self:
        """Start listening (on the same port as before after a :meth:`close`)."""
        if self._server is None:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: _Side(_Link(self), upstream=False), self.host, self.port
            )
            self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        """Stop listening and abort every connection."""
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            self.cut()
            await server.wait_closed()

    def cut(self) -> None:
        """Abort every connection open now (new ones are forwarded)."""
        for link in list(self._links):
            link.abort()

    def blackhole(self, *, new_connections: bool = False) -> None:
        """Stop forwarding on every open connection, in both directions; close nothing.

        Args:
            new_connections: Also hold the connections accepted from now on until
                :meth:`restore` (their handshakes get no answer).
        """
        self._hold_new = new_connections
        for link in self._links:
            link.hold()

    def restore(self) -> None:
        """Forward again on every connection, starting with what was held."""
        self._hold_new = False
        for link in list(self._links):
            link.release()

    async def wait_for_connections(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` connections were accepted in all."""
        await self.wait_until(lambda: self.connections >= count, timeout)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (for servers started later)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# -- pytest plugin -----------------------------------------------------------------------
# The fixtures run in the test's event loop, which pytest-asyncio provides. A test
# that asks for one of them is an asyncio test whatever pytest-asyncio's mode: the
# plugin marks it, so that a project needs no configuration (pytest-asyncio's
# default "strict" mode otherwise skips unmarked async tests as unsupported).

#: The fixtures of this plugin; an ``async def`` test using one runs with asyncio.
FIXTURES = ("ws_server", "ws_server_factory")

_MISSING_PYTEST_ASYNCIO = (
    "the {name} fixture of simple_websocket.testing runs in the test's event loop, "
    "which pytest-asyncio provides: pip install pytest-asyncio"
)

try:  # pragma: no cover - exercised through pytest's plugin loading
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

try:  # pragma: no cover - exercised through pytest's plugin loading
    import pytest_asyncio
except ImportError:  # pragma: no cover
    pytest_asyncio = None  # type: ignore[assignment]


def _uses_our_fixtures(item: Any) -> bool:
    """Whether ``item`` is an ``async def`` test asking (maybe indirectly) for a fixture here."""
    function = getattr(item, "obj", None)
    names = getattr(item, "fixturenames", ())
    return inspect.iscoroutinefunction(function) and any(name in names for name in FIXTURES)


if pytest is not None and pytest_asyncio is not None:

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_pycollect_makeitem(collector: Any, name: str, obj: object) -> Any:
        """Mark ``async def`` tests that use the fixtures here as asyncio tests.

        Runs inside pytest-asyncio's own wrapper of this hook, which then takes the
        marked tests as its own, as if the project had set ``asyncio_mode = auto``
        for them. A test that already has an ``asyncio`` mark keeps it.
        """
        outcome = yield
        result = outcome.get_result()
        items = result if isinstance(result, list) else [result]
        for item in items:
            if (
                isinstance(item, pytest.Function)
                and item.get_closest_marker("asyncio") is None
                and _uses_our_fixtures(item)
            ):
                item.add_marker(pytest.mark.asyncio)

    @pytest_asyncio.fixture
    async def ws_server() -> AsyncIterator[ScriptedServer]:
        """A started :class:`ScriptedServer` with the default script (echo)."""
        async with ScriptedServer() as server:
            yield server

    @pytest_asyncio.fixture
    async def ws_server_factory() -> AsyncIterator[Callable[..., Awaitable[ScriptedServer]]]:
        """An async callable ``(script=None, **options)`` returning started servers."""
        servers: list[ScriptedServer] = []

        async def make(script: Script | None = None, **options: Any) -> ScriptedServer:
            server = ScriptedServer(script, **options)
            servers.append(server)
            return await server.start()

        yield make
        for server in servers:
            await server.stop()

elif pytest is not None:  # pragma: no cover - pytest-asyncio is a test dependency here

    @pytest.fixture
    def ws_server() -> Any:
        """Fails with what to install: the server needs pytest-asyncio's event loop."""
        pytest.fail(_MISSING_PYTEST_ASYNCIO.format(name="ws_server"), pytrace=False)

    @pytest.fixture
    def ws_server_factory() -> Any:
        """Fails with what to install: the servers need pytest-asyncio's event loop."""
        pytest.fail(_MISSING_PYTEST_ASYNCIO.format(name="ws_server_factory"), pytrace=False)
