"""Bad option values are refused at the boundary, with an error naming the parameter.

One test per family of parameters (timeouts, sizes, headers, URLs, codecs and
types, policies), each run across the public entry points that take them. Every
error must be a ``TypeError`` (wrong type) or a ``ValueError`` (out of range) whose
message names the parameter, raised before anything is opened or sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel
from tenacity import AsyncRetrying

from simple_websocket import AioClient, AioServer, Backoff, Client, Server, serve
from simple_websocket.reconnect import ReconnectingClient
from simple_websocket.testing import ScriptedServer

# Nothing listens on this port: an entry point that did not refuse its options at
# once would fail later with a connection error instead, and the test would see it.
NOWHERE = "ws://127.0.0.1:9/"


async def _handler(ws: AioServer) -> None:
    await ws.close()


@contextlib.contextmanager
def _pair():
    a, b = socket.socketpair()
    try:
        yield a
    finally:
        a.close()
        b.close()


async def aio_client(**options: Any) -> None:
    AioClient.connect(NOWHERE, **options)


async def aio_reconnecting(**options: Any) -> None:
    AioClient.connect(NOWHERE, reconnect=True, **options)


async def sync_client(**options: Any) -> None:
    Client.connect(NOWHERE, **options)


async def aio_server_accept(**options: Any) -> None:
    with _pair() as sock:
        await AioServer.accept(sock=sock, headers={"Host": "h"}, **options)


async def sync_server_accept(**options: Any) -> None:
    with _pair() as sock:
        Server.accept(sock=sock, headers={"Host": "h"}, **options)


async def serve_(**options: Any) -> None:
    # Refused when the server is made, before it listens.
    serve(_handler, **options)


CONNECTION_ENTRY_POINTS = [
    aio_client,
    aio_reconnecting,
    sync_client,
    aio_server_accept,
    sync_server_accept,
    serve_,
]


def _refused(error: pytest.ExceptionInfo[BaseException], name: str) -> None:
    assert name in str(error.value), f"{error.value!r} does not name {name!r}"


# -- timeouts ---------------------------------------------------------------------------

TIMEOUTS = [
    ("ping_interval", -5, ValueError),
    ("ping_interval", "20", TypeError),
    ("ping_timeout", 0, ValueError),
    ("ping_timeout", float("nan"), ValueError),
    ("close_timeout", -5, ValueError),
    ("close_timeout", None, TypeError),
    ("close_timeout", "5", TypeError),
]


@pytest.mark.parametrize("entry", CONNECTION_ENTRY_POINTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("name", "value", "error"), TIMEOUTS, ids=repr)
async def test_timeouts(entry, name, value, error):
    with pytest.raises(error) as info:
        await entry(**{name: value})
    _refused(info, name)


@pytest.mark.parametrize(
    "entry", [aio_client, aio_reconnecting, sync_client, serve_], ids=lambda f: f.__name__
)
@pytest.mark.parametrize(
    ("value", "error"),
    [(-1, ValueError), (0, ValueError), ("10", TypeError), (float("inf"), ValueError)],
)
async def test_open_timeout(entry, value, error):
    with pytest.raises(error) as info:
        await entry(open_timeout=value)
    _refused(info, "open_timeout")


@pytest.mark.parametrize(
    ("options", "name", "error"),
    [
        ({"idle_timeout": -1}, "idle_timeout", ValueError),
        ({"idle_timeout": "5"}, "idle_timeout", TypeError),
    ],
)
async def test_reconnecting_client_timeouts(options, name, error):
    with pytest.raises(error) as info:
        AioClient.connect(NOWHERE, reconnect=True, **options)
    _refused(info, name)


async def test_receive_timeout_of_every_connection_kind():
    async with ScriptedServer(port=0) as server:
        ws = await AioClient.connect(server.url)
        client = await AioClient.connect(server.url, reconnect=True)
        channel = ws.typed(dict)
        sub = client.subscribe(dict, subscribe=None, match={"x": 1})
        receivers = [ws.receive, client.receive, channel.receive, sub.receive]
        for receive in receivers:
            with pytest.raises(TypeError, match="timeout must be a number"):
                await receive(timeout="5")
            with pytest.raises(ValueError, match="timeout"):
                await receive(timeout=float("nan"))
        # Zero and negative values keep 1.1's meaning: only what is buffered.
        assert await ws.receive(timeout=-1) is None
        assert await ws.receive(timeout=0) is None
        await ws.send("still open")
        assert await ws.receive(timeout=5) == "still open"
        await client.close()
        await ws.close()


def test_sync_receive_timeout():
    with ScriptedSyncServer() as url, Client.connect(url) as ws:
        with pytest.raises(TypeError, match="timeout must be a number"):
            ws.receive(timeout="5")
        ws.send("x")
        assert ws.receive(timeout=5) == "x"


class ScriptedSyncServer:
    """An echo server (``serve()`` in a thread's event loop) for the sync client."""

    def __enter__(self) -> str:
        import threading

        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)
        return self.url

    def _run(self) -> None:
        async def main() -> None:
            async def echo(ws: AioServer) -> None:
                async for message in ws:
                    await ws.send(message)

            async with serve(echo) as server:
                self.url = server.url
                self.stop = asyncio.Event()
                self.ready.set()
                await self.stop.wait()

        self.loop.run_until_complete(main())

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)


# -- sizes ------------------------------------------------------------------------------

SIZES = [
    ("max_message_size", -1, ValueError),
    ("max_message_size", 1.5, TypeError),
    ("max_queue", 0, ValueError),
    ("max_queue", None, TypeError),
    ("receive_bytes", 0, ValueError),
    ("receive_bytes", "4096", TypeError),
]


@pytest.mark.parametrize("entry", CONNECTION_ENTRY_POINTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("name", "value", "error"), SIZES, ids=repr)
async def test_sizes(entry, name, value, error):
    with pytest.raises(error) as info:
        await entry(**{name: value})
    _refused(info, name)


@pytest.mark.parametrize(
    ("make", "name", "error"),
    [
        (
            lambda: AioClient.connect(NOWHERE, reconnect=True, outbox_size=0),
            "outbox_size",
            ValueError,
        ),
        (
            lambda: AioClient.connect(NOWHERE, reconnect=True, outbox_size=1.0),
            "outbox_size",
            TypeError,
        ),
        (lambda: serve(_handler, backlog=0), "backlog", ValueError),
        (lambda: serve(_handler, max_head_size=0), "max_head_size", ValueError),
        (lambda: serve(_handler, port=70000), "port", ValueError),
        (lambda: serve(_handler, port="8000"), "port", TypeError),
        (lambda: Backoff(max_attempts=0), "max_attempts", ValueError),
        (lambda: Backoff(max_attempts=2.5), "max_attempts", TypeError),
    ],
)
def test_counts_of_clients_servers_and_policies(make, name, error):
    with pytest.raises(error) as info:
        make()
    _refused(info, name)


async def test_typed_channel_and_subscription_sizes():
    async with ScriptedServer() as server:
        ws = await AioClient.connect(server.url)
        client = await AioClient.connect(server.url, reconnect=True)
        with pytest.raises(ValueError, match="max_inbox"):
            ws.typed(dict, max_inbox=0)
        with pytest.raises(ValueError, match="max_queue"):
            client.subscribe(dict, subscribe=None, match={"a": 1}, max_queue=0)
        with pytest.raises(ValueError, match="gap_timeout"):
            client.subscribe(dict, subscribe=None, match={"a": 1}, gap_timeout=-1)
        # A plain connection's subscriptions take the same options.
        with pytest.raises(ValueError, match="max_queue"):
            ws.subscribe(dict, subscribe=None, match={"a": 1}, max_queue=0)
        with pytest.raises(TypeError, match="receive_type must be a type"):
            ws.subscribe("dict", subscribe=None, match={"a": 1})
        await client.close()
        await ws.close()


# -- headers ----------------------------------------------------------------------------

HEADERS = [
    ("Authorization: x", TypeError, "headers must be a mapping"),
    (b"Authorization: x", TypeError, "headers must be a mapping"),
    ([("Authorization", "x", "y")], TypeError, "headers must hold"),
    (["Authorization: x"], TypeError, "headers must hold"),
    (42, TypeError, "headers must be a mapping"),
    ({"X-Token": "a\r\nInjected: 1"}, ValueError, "Invalid HTTP header"),
]


@pytest.mark.parametrize(
    "entry",
    [aio_client, aio_reconnecting, sync_client, aio_server_accept, sync_server_accept],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize(("headers", "error", "message"), HEADERS, ids=repr)
async def test_headers(entry, headers, error, message):
    if entry in (aio_server_accept, sync_server_accept):
        with _pair() as sock, pytest.raises(error, match=message):
            if entry is aio_server_accept:
                await AioServer.accept(sock=sock, headers=headers)
            else:
                Server.accept(sock=sock, headers=headers)
        return
    with pytest.raises(error, match=message):
        await entry(headers=headers)


@pytest.mark.parametrize("entry", CONNECTION_ENTRY_POINTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("value", "error"),
    [(42, TypeError), ([b"chat"], TypeError), (["two words"], ValueError), ([""], ValueError)],
    ids=repr,
)
async def test_subprotocols(entry, value, error):
    with pytest.raises(error) as info:
        await entry(subprotocols=value)
    _refused(info, "subprotocols")


# -- URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        ("ws://127.0.0.1:9/a\r\nX-Injected: 1", ValueError, "control characters"),
        ("ws://127.0.0.1:9/\x00", ValueError, "control characters"),
        ("ftp://127.0.0.1:9/", ValueError, "scheme must be ws:// or wss://"),
        ("ws://ex ample.com/", ValueError, "host must be ASCII"),
        (b"ws://127.0.0.1:9/", TypeError, "(?i)url must be"),
        (42, TypeError, "(?i)url must be"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("reconnect", [None, True])
async def test_urls_are_refused_before_anything_is_sent(url, error, message, reconnect):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        port = listener.getsockname()[1]
        if isinstance(url, str):
            url = url.replace(":9/", f":{port}/")
        with pytest.raises(error, match=message):
            AioClient.connect(url, reconnect=reconnect)
        if isinstance(url, (str, bytes)):
            with pytest.raises(error, match=message):
                Client.connect(url)
        # Nobody connected: nothing went on the wire.
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


async def test_a_space_in_the_path_is_percent_encoded_on_the_wire():
    seen: list[str] = []

    def record(request: Any) -> None:
        seen.append(request.target)

    def sync_connect(url: str) -> None:
        with Client.connect(url):
            pass

    async with serve(_handler, process_request=record) as server:
        ws = await AioClient.connect(server.url + "a b?q=ü")
        await ws.close()
        await asyncio.to_thread(sync_connect, server.url + "c d")
    assert seen == ["/a%20b?q=%C3%BC", "/c%20d"]


# -- codecs and types -------------------------------------------------------------------


class NotAModel:
    pass


@dataclass
class Point:
    x: int


class Tick(BaseModel):
    seq: int


async def test_types_of_typed_channels_and_subscriptions():
    async with ScriptedServer() as server:
        ws = await AioClient.connect(server.url)
        client = await AioClient.connect(server.url, reconnect=True)
        for typed in (ws.typed, client.typed):
            with pytest.raises(
                TypeError, match=r"receive_type=.*NotAModel.* is not a type pydantic"
            ):
                typed(NotAModel)
            with pytest.raises(
                TypeError, match="receive_type must be a type, not the string 'str'"
            ):
                typed("str")
            with pytest.raises(TypeError, match="send must be a type"):
                typed(Tick, send="Tick")
            with pytest.raises(TypeError, match=r"send=.*NotAModel"):
                typed(Tick, send=NotAModel)
            with pytest.raises(TypeError, match="codec must have encode"):
                typed(Tick, codec=object())
            with pytest.raises(TypeError, match="binary must be a bool"):
                typed(Tick, binary="yes")
            with pytest.raises(TypeError, match="id_field"):
                typed(Tick, id_field=None)
            # What pydantic accepts is still accepted.
            typed(Point)
            typed(list[Tick])
        error = "receive_type=.*NotAModel.* is not a type pydantic"
        with pytest.raises(TypeError, match=error) as info:
            client.subscribe(NotAModel, subscribe=None, match={"a": 1})
        # pydantic's advice about model fields does not apply; its error is the cause.
        assert "arbitrary_types_allowed" not in str(info.value)
        assert info.value.__cause__ is not None
        with pytest.raises(TypeError, match="receive_type must be a type"):
            client.subscribe("Tick", subscribe=None, match={"a": 1})
        with pytest.raises(TypeError, match="sequence must be a callable"):
            client.subscribe(Tick, subscribe=None, match={"a": 1}, sequence=5)
        await client.close()
        await ws.close()


# -- policies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "name", "error"),
    [
        (lambda: AioClient.connect(NOWHERE, reconnect="yes"), "reconnect", TypeError),
        (lambda: AioClient.connect(NOWHERE, retry=3), "retry", TypeError),
        (
            lambda: AioClient.connect(NOWHERE, reconnect=True, outbox_policy="drop"),
            "outbox_policy",
            ValueError,
        ),
        (
            lambda: AioClient.connect(NOWHERE, reconnect=True, on_connect="hook"),
            "on_connect",
            TypeError,
        ),
        (lambda: AioClient.connect(NOWHERE, on_disconnect=1), "on_disconnect", TypeError),
        (lambda: AioClient.connect(NOWHERE, compression="deflate"), "compression", TypeError),
        (lambda: AioClient.connect(NOWHERE, compression={"level": 9}), "compression", ValueError),
        (
            lambda: AioClient.connect(NOWHERE, compression={"server_max_window_bits": 8}),
            "server_max_window_bits",
            ValueError,
        ),
        (lambda: AioClient.connect(NOWHERE, ssl_context=True), "ssl_context", TypeError),
        (
            lambda: AioClient.connect(NOWHERE, proxy_ssl_context="ca.pem"),
            "proxy_ssl_context",
            TypeError,
        ),
        (lambda: Client.connect(NOWHERE, ssl_context=True), "ssl_context", TypeError),
        (
            lambda: Client.connect(NOWHERE, compression={"client_max_window_bits": 16}),
            "client_max_window_bits",
            ValueError,
        ),
        (
            lambda: serve(_handler, compression={"server_no_context_takeover": 1}),
            "server_no_context_takeover",
            TypeError,
        ),
        (lambda: serve(_handler, ssl=True), "ssl", TypeError),
        (lambda: serve("handler"), "handler", TypeError),
        (lambda: serve(_handler, process_request=1), "process_request", TypeError),
        (lambda: AioClient.connect(NOWHERE, user_agent=7), "user_agent", TypeError),
        (lambda: AioClient.connect(NOWHERE, origin="https://a\nb"), "origin", ValueError),
        (lambda: AioClient.connect(NOWHERE, unix_socket=7), "unix_socket", TypeError),
        (lambda: AioClient.connect(NOWHERE, logger=print), "logger", TypeError),
        (lambda: Client.connect(NOWHERE, user_agent="a\r\nb"), "user_agent", ValueError),
        (lambda: Client.connect(NOWHERE, logger=3), "logger", TypeError),
        (lambda: serve(_handler, logger=3), "logger", TypeError),
        (lambda: serve(_handler, unix_socket=""), "unix_socket", ValueError),
        (lambda: Backoff(initial=-1), "initial", ValueError),
        (lambda: Backoff(maximum="30"), "maximum", TypeError),
        (lambda: Backoff(multiplier=0.5), "multiplier", ValueError),
        (lambda: Backoff(jitter=2), "jitter", ValueError),
        (lambda: Backoff(max_elapsed=0), "max_elapsed", ValueError),
        (lambda: Backoff(healthy_after=-1), "healthy_after", ValueError),
        (lambda: Backoff(retry_if=True), "retry_if", TypeError),
        (lambda: ReconnectingClient(_handler, "always"), "retry policy", TypeError),
    ],
)
def test_policies(make, name, error):
    with pytest.raises(error) as info:
        make()
    _refused(info, name)


def test_policies_that_are_valid_stay_accepted():
    Backoff(initial=0, maximum=0, jitter=0, max_attempts=1, max_elapsed=0.5, healthy_after=0)
    AioClient.connect(NOWHERE, retry=AsyncRetrying())
    AioClient.connect(NOWHERE, reconnect=Backoff(), outbox_policy="drop_oldest")
    AioClient.connect(NOWHERE, compression={"client_no_context_takeover": True})
    AioClient.connect(NOWHERE, ping_interval=0)  # 0 turns pings off, as in 1.1
