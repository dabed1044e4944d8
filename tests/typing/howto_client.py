"""The examples of docs/howto/client.md, as a user would write them.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from __future__ import annotations

import logging
import ssl

import simple_websocket
from simple_websocket import AioClient, DeflateOptions


async def open_and_close() -> None:
    ws = await simple_websocket.AioClient.connect("ws://127.0.0.1:8000/")
    try:
        await ws.send("hello")
        print(await ws.receive(timeout=10))
    finally:
        await ws.close()

    # or, closing automatically:
    async with simple_websocket.AioClient.connect("ws://127.0.0.1:8000/") as ws:
        await ws.send("hello")
        print(await ws.receive(timeout=10))


async def tls() -> None:
    context = ssl.create_default_context(cafile="my-ca.pem")
    # For a client certificate:
    # context.load_cert_chain("client.pem", "client.key")
    ws = await AioClient.connect("wss://localhost:8443/", ssl_context=context)
    await ws.close()


async def options(url: str) -> None:
    await AioClient.connect(url, headers={"Authorization": "Bearer abc"})
    await AioClient.connect(url, headers=[("Cookie", "a=1"), ("Cookie", "b=2")])

    async with AioClient.connect(url, subprotocols=["v2.chat", "v1.chat"]) as ws:
        print(ws.subprotocol)

    ws = await AioClient.connect(url, ping_interval=20, ping_timeout=10)

    rtt = await ws.ping()
    print(f"{rtt * 1000:.1f} ms; last known: {ws.latency}")

    async for message in ws:
        print(message)
    print("closed with", ws.close_reason, ws.close_message)


async def unix_socket() -> None:
    ws = await AioClient.connect(
        "ws://localhost/feed",
        unix_socket="/run/app/ws.sock",
    )
    await ws.close()


async def logging_and_compression(url: str) -> None:
    log = logging.LoggerAdapter(logging.getLogger("bot.feed"), {"account": "a-17"})
    client = AioClient.connect(url, reconnect=True, logger=log)
    await client.close()

    ws = await AioClient.connect(
        url,
        compression=DeflateOptions(
            server_max_window_bits=10,
            client_max_window_bits=10,
            server_no_context_takeover=True,
        ),
    )
    await ws.close()
