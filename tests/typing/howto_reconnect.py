"""The examples of docs/howto/reconnect.md, as a user would write them.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from __future__ import annotations

import json
import logging

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_fixed,
)

from simple_websocket import AioClient, Backoff, ConnectionClosed, Disconnected
from simple_websocket.reconnect import is_retryable

log = logging.getLogger(__name__)
token = "secret"
topics = ["prices"]
subscribe_message = json.dumps({"op": "subscribe", "topics": topics})


class Tokens:
    async def fresh(self) -> str:
        return token


tokens = Tokens()


def handle(message: str | bytes) -> None:
    print(message)


policy = Backoff(initial=0.5, maximum=30, max_attempts=10)


def any_tenacity_policy() -> AsyncRetrying:
    policy = AsyncRetrying(
        wait=wait_fixed(2),
        stop=stop_after_attempt(5),
        # tenacity's default retries every error:
        retry=retry_if_exception(is_retryable),
        reraise=True,  # raise the last error, not tenacity.RetryError
    )
    return policy


async def retrying_the_opening(url: str) -> None:
    ws = await AioClient.connect(url, retry=Backoff(max_attempts=5))
    await ws.close()


async def retrying_the_opening_of_a_block(url: str) -> None:
    async with AioClient.connect(url, retry=Backoff(max_elapsed=60)) as ws:
        ...
        print(ws.subprotocol)


async def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {await tokens.fresh()}"}


async def with_headers(url: str) -> None:
    ws = await AioClient.connect(
        url,
        headers=auth_headers,
        retry=Backoff(max_attempts=5),
    )
    await ws.close()


async def a_loop_of_connections(url: str) -> None:
    async for ws in AioClient.connect(url, retry=Backoff(initial=1, maximum=60)):
        await ws.send(subscribe_message)
        try:
            async for message in ws:  # ends quietly on 1000 and 1001
                handle(message)
        except ConnectionClosed:  # 1006, 1011, 1012, ...: the loop decides
            pass


async def resubscribe(ws: AioClient) -> None:
    await ws.send(json.dumps({"op": "login", "token": token}))
    reply = await ws.receive(timeout=10)  # the answer to the login
    await ws.send(json.dumps({"op": "subscribe", "topics": topics}))
    print(reply)


def report(exc: Disconnected) -> None:
    log.warning("connection lost: %s (code %s)", exc.cause, exc.reason)


async def the_reconnecting_client(url: str) -> None:
    client = AioClient.connect(
        url,
        reconnect=Backoff(initial=0.5, maximum=10),
        on_connect=resubscribe,
        on_disconnect=report,
    )
    async with client:  # waits for the first connection
        await client.send("hello")  # sent now, or after the reconnect
        async for message in client:  # continues across reconnects
            ...


async def keepalive_and_idle(url: str) -> None:
    client = AioClient.connect(
        url,
        reconnect=True,
        ping_interval=10,  # notice a vanished server within 10 + 20 s
        idle_timeout=30,  # and a feed that stopped for 30 s
        on_disconnect=report,
    )
    await client.close()
