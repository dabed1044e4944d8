"""The examples of docs/howto/proxies.md, as a user would write them.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from __future__ import annotations

import ssl

import simple_websocket


async def connecting() -> None:
    # The environment's proxy, if any (the default, proxy=True):
    ws = await simple_websocket.AioClient.connect("wss://stream.example.com/ws")

    # A proxy given explicitly:
    ws = await simple_websocket.AioClient.connect(
        "wss://stream.example.com/ws", proxy="http://user:secret@proxy.corp:3128"
    )

    # A direct connection, whatever the environment says:
    ws = await simple_websocket.AioClient.connect(
        "wss://stream.example.com/ws",
        proxy=None,
    )
    await ws.close()


async def through_tls() -> None:
    proxy_context = ssl.create_default_context(cafile="corp-proxy-ca.pem")
    ws = await simple_websocket.AioClient.connect(
        "wss://stream.example.com/ws",
        proxy="https://proxy.corp:8443",
        proxy_ssl_context=proxy_context,
    )
    await ws.close()


proxies = ["http://proxy-a.corp:3128", "http://proxy-b.corp:3128"]
attempt = 0


def next_proxy() -> str:
    global attempt
    attempt += 1
    return proxies[attempt % len(proxies)]


client = simple_websocket.AioClient.connect(
    "wss://stream.example.com/ws", proxy=next_proxy, reconnect=True
)
