"""Reconnect policies and the reconnecting client, with fault injection over loopback."""

import asyncio
import json
import logging
import socket

import pytest
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_fixed

import simple_websocket
from simple_websocket import AioClient, AioServer, ConnectionClosed, HandshakeRejected
from simple_websocket.reconnect import (
    Backoff,
    OutboxFull,
    ReconnectingClient,
    connections,
    is_retryable,
    retry_after,
)
from simple_websocket.testing import Script, ScriptedServer


class Sleeps:
    """An injected sleep: records each wait and returns at once."""

    def __init__(self):
        self.delays = []

    async def __call__(self, delay):
        self.delays.append(delay)
        await asyncio.sleep(0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def http_server(status: int, headers: str = ""):
    """A server that answers every request with ``status``; counts requests."""
    hits = []

    async def answer(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        hits.append(1)
        writer.write(f"HTTP/1.1 {status} X\r\n{headers}Content-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/", hits


# -- classification ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (simple_websocket.OpenTimeout(1), True),
        (HandshakeRejected(503), True),
        (HandshakeRejected(500), True),
        (HandshakeRejected(429), True),
        (HandshakeRejected(403), False),
        (HandshakeRejected(404), False),
        (simple_websocket.HandshakeError("bad accept"), False),
        (ConnectionClosed(1001), True),
        (ConnectionClosed(1006), True),
        (ConnectionClosed(1011), True),
        (ConnectionClosed(1012), True),
        (ConnectionClosed(1013), True),
        (ConnectionClosed(1014), True),
        (ConnectionClosed(1002), False),
        (ConnectionClosed(1003), False),
        (ConnectionClosed(1007), False),
        (ConnectionClosed(1008), False),
        (ConnectionClosed(1009), False),
        (ConnectionClosed(1010), False),
        (ValueError("bad url"), False),
    ],
)
def test_default_classification(exc, retry):
    assert is_retryable(exc) is retry


def test_retry_after_header():
    assert retry_after(HandshakeRejected(429, [("Retry-After", "7")])) == 7
    assert (
        retry_after(HandshakeRejected(429, [("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")]))
        is None
    )
    assert retry_after(HandshakeRejected(503)) is None
    assert retry_after(ConnectionRefusedError()) is None


def test_backoff_validation():
    with pytest.raises(ValueError):
        Backoff(multiplier=0.5)
    with pytest.raises(ValueError):
        Backoff(jitter=2)
    with pytest.raises(TypeError):
        AioClient.connect("ws://h/", reconnect="yes").start  # noqa: B018


# -- schedules with an injected sleep -----------------------------------------------------


async def test_backoff_schedule_against_a_refusing_port(caplog):
    sleeps = Sleeps()
    policy = Backoff(initial=1, multiplier=2, maximum=8, jitter=0, max_attempts=6)
    url = f"ws://127.0.0.1:{free_port()}/"
    attempts = []

    async def open_once():
        attempts.append(1)
        return await AioClient.connect(url)

    with caplog.at_level(logging.INFO, logger="simple_websocket"):
        with pytest.raises(ConnectionRefusedError):
            async for _ in connections(open_once, policy.retrying(sleep=sleeps)):
                pytest.fail("no connection can open")
    assert len(attempts) == 6
    assert sleeps.delays == [1, 2, 4, 8, 8]
    assert caplog.text.count("opening connection") == 6
    assert caplog.text.count("retrying in") == 5


async def test_jitter_stays_within_bounds():
    sleeps = Sleeps()
    policy = Backoff(initial=1, multiplier=2, maximum=4, jitter=0.5, max_attempts=8, seed=1)
    url = f"ws://127.0.0.1:{free_port()}/"
    with pytest.raises(OSError):
        await AioClient.connect(url, retry=AsyncRetrying(**_kwargs(policy, sleeps)))
    base = [1, 2, 4, 4, 4, 4, 4]
    assert len(sleeps.delays) == 7
    for delay, nominal in zip(sleeps.delays, base, strict=True):
        assert nominal / 2 <= delay <= nominal
    assert len(set(sleeps.delays)) > 1


def _kwargs(policy, sleeps):
    retrying = policy.retrying(sleep=sleeps)
    return {
        "wait": retrying.wait,
        "stop": retrying.stop,
        "retry": retrying.retry,
        "sleep": sleeps,
        "reraise": True,
    }


@pytest.mark.parametrize(("status", "retried"), [(503, True), (429, True), (403, False)])
async def test_http_status_classes(status, retried):
    server, url, hits = await http_server(status, "Retry-After: 7\r\n" if status == 429 else "")
    sleeps = Sleeps()
    policy = Backoff(initial=0.5, jitter=0, max_attempts=3)
    async with server:
        with pytest.raises(HandshakeRejected) as info:
            await AioClient.connect(url, retry=policy.retrying(sleep=sleeps))
    assert info.value.status_code == status
    if retried:
        assert len(hits) == 3
        assert sleeps.delays == ([7, 7] if status == 429 else [0.5, 1.0])
    else:
        assert len(hits) == 1
        assert sleeps.delays == []


async def test_tenacity_policy_hooks_are_honoured():
    sleeps = Sleeps()
    before_sleep_calls = []
    policy = AsyncRetrying(
        wait=wait_fixed(3),
        stop=stop_after_attempt(3),
        retry=retry_if_exception_type(OSError),
        before_sleep=lambda state: before_sleep_calls.append(state.attempt_number),
        sleep=sleeps,
        reraise=True,
    )
    url = f"ws://127.0.0.1:{free_port()}/"
    with pytest.raises(ConnectionRefusedError):
        async for _ in AioClient.connect(url, retry=policy):
            pass
    assert sleeps.delays == [3, 3]
    assert before_sleep_calls == [1, 2]


async def test_storm_guard_accept_then_close_at_once():
    """A server that accepts and closes at once is retried on the schedule."""
    opened = []

    async def slam(ws):
        opened.append(1)
        await ws.close(1011, "overloaded")

    sleeps = Sleeps()
    policy = Backoff(
        initial=0.5, multiplier=2, maximum=30, jitter=0, max_attempts=5, healthy_after=60
    )
    async with simple_websocket.serve(slam) as server:
        with pytest.raises(ConnectionClosed) as info:
            async for ws in AioClient.connect(server.url, retry=policy.retrying(sleep=sleeps)):
                with pytest.raises(ConnectionClosed):
                    await ws.receive(timeout=5)
    assert info.value.reason == 1011
    assert len(opened) == 5
    assert sleeps.delays == [0.5, 1, 2, 4]


async def test_healthy_connection_resets_the_schedule():
    async def slam(ws):
        await ws.close(1012, "restart")

    sleeps = Sleeps()
    policy = Backoff(initial=0.5, multiplier=2, jitter=0, max_attempts=3, healthy_after=0)
    async with simple_websocket.serve(slam) as server:
        count = 0
        async for ws in connections(
            lambda: AioClient.connect(server.url), policy.retrying(sleep=sleeps), healthy_after=0
        ):
            count += 1
            with pytest.raises(ConnectionClosed):
                await ws.receive(timeout=5)
            if count == 6:
                await ws.close()
    # Every connection counted as healthy: the wait never grew.
    assert sleeps.delays == [0.5] * 5


@pytest.mark.parametrize("code", [1002, 1003, 1007, 1008, 1009, 1010, 4000])
async def test_fatal_close_codes_stop_with_the_error(code):
    async def closer(ws):
        await ws.close(code)

    sleeps = Sleeps()
    async with simple_websocket.serve(closer) as server:
        with pytest.raises(ConnectionClosed) as info:
            async for ws in AioClient.connect(server.url, retry=Backoff().retrying(sleep=sleeps)):
                await ws.wait_closed()
    assert info.value.reason == code
    assert sleeps.delays == []


async def test_iteration_ends_when_the_user_closes_or_the_server_says_1000():
    async def echo(ws):
        async for message in ws:
            if message == "bye":
                await ws.close(1000)
                return
            await ws.send(message)

    async with simple_websocket.serve(echo) as server:
        seen = 0
        async for ws in AioClient.connect(server.url):
            seen += 1
            await ws.close()
        assert seen == 1
        seen = 0
        async for ws in AioClient.connect(server.url):
            seen += 1
            await ws.send("bye")
            await ws.wait_closed()
        assert seen == 1


async def test_url_and_headers_are_evaluated_per_attempt():
    tokens = []

    async def record(ws):
        tokens.append((ws.request.target, ws.request.header("Authorization")))
        await ws.close(1012)

    counter = iter(range(100))
    sleeps = Sleeps()
    async with simple_websocket.serve(record) as server:

        async def headers():
            return {"Authorization": f"Bearer {next(counter)}"}

        attempts = 0
        async for ws in AioClient.connect(
            lambda: f"{server.url}attempt",
            headers=headers,
            retry=Backoff(jitter=0).retrying(sleep=sleeps),
        ):
            attempts += 1
            await ws.wait_closed()
            if attempts == 3:
                break
    assert tokens == [("/attempt", "Bearer 0"), ("/attempt", "Bearer 1"), ("/attempt", "Bearer 2")]


# -- the reconnecting client --------------------------------------------------------------


async def wait_state(client, state, timeout=10):
    # _wait_change() registers its waiter before its first await: awaited directly
    # (not wrapped in a task) it cannot miss a change made after the check.
    deadline = asyncio.get_running_loop().time() + timeout
    while client.state != state:
        if not await client._wait_change(deadline):
            raise TimeoutError(f"state {client.state!r}, expected {state!r}")


@pytest.mark.timeout(30)
async def test_server_restart_loses_nothing_and_duplicates_nothing():
    server = await ScriptedServer(Script(echo=False)).start()
    connects, disconnects = [], []
    client = AioClient.connect(
        server.url,
        reconnect=Backoff(initial=0.01, maximum=0.05, jitter=0),
        on_connect=lambda ws: connects.append(ws),
        on_disconnect=lambda exc: disconnects.append(exc.reason),
    )
    assert isinstance(client, ReconnectingClient)
    async with client:
        for i in range(10):
            await client.send(str(i))
        await server.wait_for_messages(10)
        await server.stop()
        await wait_state(client, "reconnecting")
        # The client knows the connection is down: these go to the outbox.
        for i in range(10, 20):
            await client.send(str(i))
        assert client.outbox_depth == 10
        await server.start()
        await wait_state(client, "open")
        for i in range(20, 30):
            await client.send(str(i))
        await server.wait_for_messages(30)
        assert client.outbox_depth == 0
    assert server.received == [str(i) for i in range(30)]
    assert len(connects) == 2
    assert disconnects == [1001]
    assert client.reconnects == 1
    assert client.attempts >= 2
    assert client.state == "closed"
    await server.stop()


@pytest.mark.timeout(30)
async def test_client_streaming_through_restarts_loses_nothing():
    """A producer keeps sending while the server restarts twice."""
    server = await ScriptedServer(Script(echo=False)).start()
    client = await AioClient.connect(
        server.url, reconnect=Backoff(initial=0.005, maximum=0.02, jitter=0)
    )
    sent_while_down = []
    stop = asyncio.Event()
    count = 0

    async def produce():
        nonlocal count
        while not stop.is_set():
            down = client.state != "open"
            await client.send(str(count))
            if down:
                sent_while_down.append(str(count))
            count += 1
            await asyncio.sleep(0)  # one message per loop turn

    producer = asyncio.create_task(produce())
    for restarts in (1, 2):
        await server.wait_until(lambda n=restarts: len(server.received) > 50 * n, timeout=10)
        await server.restart()
        await wait_state(client, "open")
    stop.set()
    await producer
    await client.close()
    await server.stop()
    received = server.received
    assert client.reconnects == 2
    assert len(received) == len(set(received)), "duplicates"
    assert [int(m) for m in received] == sorted(int(m) for m in received), "order"
    assert sent_while_down, "the producer never sent during an outage"
    assert set(sent_while_down) <= set(received), "lost a message sent while down"
    # Only messages already written into a socket that then died may be missing.
    assert count - len(received) <= 2 * 64


@pytest.mark.timeout(30)
async def test_receive_and_iteration_continue_across_reconnects():
    greetings = []

    async def greet_then_drop(ws):
        greetings.append(1)
        await ws.send(f"hello {len(greetings)}")
        if len(greetings) < 3:
            await ws.close(1012, "restarting")
        else:
            await ws.send("last")
            await ws.close(1000)

    async with simple_websocket.serve(greet_then_drop) as server:
        client = await AioClient.connect(server.url, reconnect=Backoff(initial=0.01, jitter=0))
        received = [message async for message in client]
        assert received == ["hello 1", "hello 2", "hello 3", "last"]
        assert client.reconnects == 2
        assert client.state == "closed"


@pytest.mark.timeout(30)
async def test_on_connect_runs_before_queued_messages_flow():
    per_connection = []
    done = asyncio.Event()

    async def handler(ws):
        received = []
        per_connection.append(received)
        async for message in ws:
            received.append(message)
            if len(per_connection) == 1:
                await ws.close(1012)  # drop the first connection after its auth
            elif message == "direct":
                done.set()

    async with simple_websocket.serve(handler) as server:

        async def on_connect(ws):
            await ws.send("auth")

        client = await AioClient.connect(
            server.url, reconnect=Backoff(initial=0.01, jitter=0), on_connect=on_connect
        )
        await wait_state(client, "reconnecting")
        await client.send("queued")
        await wait_state(client, "open")
        await client.send("direct")
        await asyncio.wait_for(done.wait(), 10)
        await client.close()
    assert per_connection == [["auth"], ["auth", "queued", "direct"]]


@pytest.mark.parametrize("policy", ["drop_oldest", "raise"])
async def test_outbox_policies(policy):
    port = free_port()
    sleeps = Sleeps()

    async def never(delay):
        sleeps.delays.append(delay)
        await asyncio.Event().wait()

    async def greet(ws):
        await ws.close(1012)

    server = await simple_websocket.serve(greet, "127.0.0.1", port)
    client = AioClient.connect(
        f"ws://127.0.0.1:{port}/",
        reconnect=Backoff(jitter=0).retrying(sleep=never),
        outbox_size=3,
        outbox_policy=policy,
    )
    await client
    await wait_state(client, "reconnecting")
    await server.close()
    for i in range(3):
        await client.send(str(i))
    if policy == "raise":
        with pytest.raises(OutboxFull):
            await client.send("3")
        assert client.outbox_depth == 3
    else:
        await client.send("3")
        await client.send("4")
        assert list(client._outbox) == ["2", "3", "4"]
        assert client.dropped == 2
    await asyncio.wait_for(client.close(), 5)
    assert client.state == "closed"


@pytest.mark.timeout(10)
async def test_close_stops_promptly_while_waiting_to_retry():
    port = free_port()
    waiting = asyncio.Event()
    policy = AsyncRetrying(
        wait=wait_fixed(30), before_sleep=lambda state: waiting.set(), reraise=True
    )
    client = AioClient.connect(f"ws://127.0.0.1:{port}/", reconnect=policy)
    start = asyncio.get_running_loop().create_task(client.start())
    await asyncio.wait_for(waiting.wait(), 5)  # the first attempt failed; 30 s to wait
    await asyncio.wait_for(client.close(), 1)
    with pytest.raises(ConnectionClosed):
        await start
    with pytest.raises(ConnectionClosed):
        await client.send("late")
    with pytest.raises(ConnectionClosed):
        await client.receive()


async def test_giving_up_is_reported_to_every_caller():
    server, url, _ = await http_server(403)
    async with server:
        client = AioClient.connect(url, reconnect=True)
        with pytest.raises(HandshakeRejected):
            await client
        with pytest.raises(HandshakeRejected):
            await client.receive()
        assert client.state == "closed"


async def test_giving_up_says_why_the_error_is_not_retried(caplog):
    server, url, hits = await http_server(403)
    async with server:
        with caplog.at_level(logging.INFO, logger="simple_websocket"):
            client = AioClient.connect(url, reconnect=True)
            with pytest.raises(HandshakeRejected):
                await client
    assert len(hits) == 1
    (record,) = [r for r in caplog.records if "giving up" in r.getMessage()]
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert message.startswith("giving up reconnecting: not retryable: Connection error: 403")
    assert message.endswith("(HTTP 403 is not retried (only 5xx and 429 answers are))")
    assert "attempts" not in message
    assert "retrying in" not in caplog.text


async def test_giving_up_after_the_policy_stops_says_so(caplog):
    sleeps = Sleeps()
    policy = Backoff(initial=1, jitter=0, max_attempts=3)
    url = f"ws://127.0.0.1:{free_port()}/"
    with caplog.at_level(logging.INFO, logger="simple_websocket"):
        with pytest.raises(ConnectionRefusedError):
            async for _ in connections(
                lambda: AioClient.connect(url), policy.retrying(sleep=sleeps)
            ):
                pytest.fail("no connection can open")
    messages = [r.getMessage() for r in caplog.records]
    failed = [m for m in messages if m.startswith("connection attempt")]
    assert len(failed) == 2
    assert failed[0].startswith("connection attempt 1 failed (ConnectionRefusedError")
    assert failed[0].endswith("; retrying in 1.00 s")
    (gave_up,) = [m for m in messages if "giving up" in m]
    assert gave_up.startswith("giving up reconnecting: stopped after 3 attempts: ")


async def test_a_lost_connection_is_logged_as_lost_not_as_a_failed_attempt(caplog):
    async def restart(ws):
        await ws.close(1012, "restart")

    sleeps = Sleeps()
    policy = Backoff(initial=0.5, jitter=0, max_attempts=2, healthy_after=0)
    async with simple_websocket.serve(restart) as server:
        with caplog.at_level(logging.INFO, logger="simple_websocket"):
            count = 0
            async for ws in connections(
                lambda: AioClient.connect(server.url),
                policy.retrying(sleep=sleeps),
                healthy_after=0,
            ):
                count += 1
                await ws.wait_closed()
                if count == 3:
                    await ws.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for message in warnings:
        assert message.startswith("connection lost after ")
        assert "(Connection closed: 1012 restart); reconnecting in 0.50 s" in message
    assert "connection attempt" not in caplog.text


async def test_reconnecting_client_typed_and_stream():
    from aiostream import pipe, stream
    from pydantic import BaseModel

    class Tick(BaseModel):
        n: int

    async def ticks(ws):
        for n in range(3):
            await ws.send(Tick(n=n).model_dump_json())
        await ws.close(1012)

    async with simple_websocket.serve(ticks) as server:
        async with AioClient.connect(
            server.url, reconnect=Backoff(initial=0.01, jitter=0)
        ) as client:
            channel = client.typed(Tick)
            assert [(await channel.receive(timeout=5)).n for _ in range(5)] == [0, 1, 2, 0, 1]
            xs = client.stream() | pipe.take(2)
            assert await stream.list(xs) == ['{"n":2}', '{"n":0}']
            assert client.reconnects >= 1


async def test_latency_is_observable():
    async def echo(ws):
        async for m in ws:
            await ws.send(m)

    async with simple_websocket.serve(echo) as server:
        async with AioClient.connect(server.url, reconnect=True) as client:
            assert client.latency is None
            await client.connection.ping()
            assert client.latency is not None and client.latency >= 0


def test_aioserver_is_not_affected():
    assert not hasattr(AioServer, "reconnects")


# -- regressions ------------------------------------------------------------------------


class StubConnection:
    """A connection whose send() can be held, to order concurrent flushes."""

    def __init__(self, log, hold=None):
        self.log = log
        self.hold = hold
        self.connected = True
        self.close_reason = 1000
        self.close_message = None
        self.close_requested = False
        self.closed = asyncio.Event()

    async def send(self, data):
        if not self.connected:
            raise ConnectionClosed(1006)
        if self.hold is not None and data == "m3":
            await self.hold.wait()
        self.log.append(data)

    async def receive(self, timeout=None):
        await self.closed.wait()
        raise ConnectionClosed(self.close_reason)

    async def close(self, reason=None, message=None):
        self.close_requested = True
        self.drop(reason or 1000)

    def drop(self, code):
        self.connected = False
        self.close_reason = code
        self.closed.set()

    async def wait_closed(self):
        await self.closed.wait()


async def test_close_during_a_flush_sends_each_message_once():
    first_log, second_log = [], []
    hold = asyncio.Event()
    conns = [StubConnection(first_log), StubConnection(second_log, hold)]
    opened = iter(conns)
    sleeps = Sleeps()

    async def open_once():
        return next(opened)

    client = ReconnectingClient(open_once, Backoff(jitter=0).retrying(sleep=sleeps), outbox_size=2)
    await client
    conns[0].drop(1006)
    deadline = asyncio.get_running_loop().time() + 5
    while not (client.connection is conns[1] and client.state == "open"):
        assert await client._wait_change(deadline), client.state
    # A flush held on "m3" while send() and close() arrive.
    client._outbox.extend(["m1", "m2", "m3"])
    flushing = asyncio.create_task(client._flush(conns[1]))
    await asyncio.sleep(0)
    sender = asyncio.create_task(client.send("m4"))
    closer = asyncio.create_task(client.close())
    await asyncio.sleep(0)
    hold.set()
    await asyncio.wait_for(asyncio.gather(flushing, sender, closer), 5)
    assert second_log == ["m1", "m2", "m3", "m4"]


async def test_request_needs_a_correlation_field():
    from pydantic import BaseModel

    class NoId(BaseModel):
        q: str

    async with simple_websocket.serve(lambda ws: ws.wait_closed()) as server:
        async with AioClient.connect(server.url) as ws:
            with pytest.raises(TypeError, match="no field 'id'"):
                await ws.typed(dict).request(NoId(q="x"), timeout=1)


async def test_request_answer_behind_many_events_is_found():
    async def busy(ws):
        request = json.loads(await ws.receive())
        for n in range(40):
            await ws.send(json.dumps({"event": n}))
        await ws.send(json.dumps({"id": request["id"], "answer": True}))
        await ws.wait_closed()

    async with simple_websocket.serve(busy) as server:
        async with AioClient.connect(server.url) as ws:
            channel = ws.typed(dict)
            answer = await channel.request({"q": 1}, timeout=5)
            assert answer["answer"] is True
            events = [await channel.receive(timeout=5) for _ in range(40)]
            assert [e["event"] for e in events] == list(range(40))


async def test_giving_up_reports_the_last_close_code_and_raises_in_iteration():
    async def going_away(ws):
        await ws.close(1001)

    sleeps = Sleeps()
    async with simple_websocket.serve(going_away) as server:
        client = await AioClient.connect(
            server.url, reconnect=Backoff(max_attempts=3, jitter=0).retrying(sleep=sleeps)
        )
        with pytest.raises(ConnectionClosed) as info:
            async for _ in client:
                pass
    assert info.value.reason == 1001
    assert client.close_reason == 1001
    assert client.attempts == 3


@pytest.mark.parametrize(("error", "retried"), [(TimeoutError, True), (KeyError, False)])
async def test_on_connect_errors_are_classified_like_opening_errors(error, retried):
    calls = []
    sleeps = Sleeps()

    async def on_connect(ws):
        calls.append(ws)
        if len(calls) == 1:
            raise error("hook failed")

    async with simple_websocket.serve(lambda ws: ws.wait_closed()) as server:
        client = AioClient.connect(
            server.url,
            reconnect=Backoff(jitter=0).retrying(sleep=sleeps),
            on_connect=on_connect,
        )
        if retried:
            await client
            assert len(calls) == 2 and client.state == "open"
            assert calls[0].close_reason == 1011
            await client.close()
        else:
            with pytest.raises(KeyError):
                await client
            assert len(calls) == 1


async def test_cancelling_start_stops_the_client():
    waiting = asyncio.Event()
    policy = AsyncRetrying(wait=wait_fixed(30), before_sleep=lambda s: waiting.set())
    client = AioClient.connect(f"ws://127.0.0.1:{free_port()}/", reconnect=policy)
    start = asyncio.create_task(client.start())
    await asyncio.wait_for(waiting.wait(), 5)
    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await start
    await asyncio.wait({client._task}, timeout=5)
    assert client._task.done()
    assert client.state == "closed"
