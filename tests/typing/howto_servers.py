"""The examples of docs/howto/servers.md that are not in examples/, as a user would
write them.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

import simple_websocket
from simple_websocket import AioClient, AioServer, MessageHandler, serve


class PreferV2(simple_websocket.AioServer):
    def choose_subprotocol(
        self,
        request: simple_websocket.HandshakeRequest,
    ) -> str | None:
        # request.subprotocols is the client's list, in its order of preference.
        for name in ("v2", "v1"):  # the server's order wins
            if name in request.subprotocols:
                return name
        return None  # no subprotocol


async def handler(ws: PreferV2) -> None:
    print(ws.subprotocol)


async def main() -> None:
    async with simple_websocket.serve(handler, server_class=PreferV2) as server:
        ...
    print(server.port)


async def settings_and_unix_sockets(handler: Callable[[AioServer], Awaitable[None]]) -> None:
    settings = {"server_max_window_bits": 11, "client_no_context_takeover": True}
    async with serve(handler, compression=settings) as server:
        ...
    print(server.url)

    async with serve(handler, unix_socket="/run/app/ws.sock") as server:
        ws = await AioClient.connect(server.url, unix_socket="/run/app/ws.sock")
        await ws.close()


class Echo(MessageHandler[AioServer]):
    def on_open(self, ws: AioServer) -> None:
        print("open:", ws.remote_address)

    def on_message(self, ws: AioServer, message: str | bytes) -> None:
        ws.send_nowait(message)

    def on_close(self, ws: AioServer) -> None:
        print("closed:", ws.close_reason, ws.close_message)


async def run_echo_server() -> None:
    server = await serve(Echo(), port=8000)
    print(server.url)
    await server.serve_forever()


echo = Echo()


async def websocket(request: web.Request) -> web.Response:
    ws = await AioServer.accept(aiohttp=request)
    await echo(ws)
    return web.Response()
