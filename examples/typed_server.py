"""Typed server: a small quote service whose messages are pydantic models.

Clients send ``ClientMessage`` objects (a discriminated union of ``GetQuote``
and ``Subscribe``); the server answers with ``ServerEvent`` objects (a
discriminated union of ``Quote``, ``Subscribed``, ``Tick`` and ``Error``).
Requests carry an ``id`` and their answer carries the same ``id``, which is what
``TypedChannel.request()`` on the client side waits for. A message that is not
valid JSON, or not a valid ``ClientMessage``, is answered with an ``Error``
event and the connection stays open.

The models are defined here and imported by ``typed_client.py``. The first line
of output is the server's URL.

    python examples/typed_server.py                   # ws://127.0.0.1:8000/
    python examples/typed_server.py --port 0 --once   # free port, one client

Try it with ``python examples/typed_client.py --url ws://127.0.0.1:8000/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationError

import simple_websocket
from simple_websocket import ConnectionClosed, DecodeError


# --8<-- [start:models]
# -- what clients send ---------------------------------------------------------
class GetQuote(BaseModel):
    """Request: the price of one symbol, answered by ``Quote`` or ``Error``."""

    type: Literal["get_quote"] = "get_quote"
    id: int | None = None  # request() sets a fresh id when it is None
    symbol: str


class Subscribe(BaseModel):
    """Request: ticks for these symbols from now on; answer: ``Subscribed``."""

    type: Literal["subscribe"] = "subscribe"
    id: int | None = None
    symbols: list[str]


ClientMessage = Annotated[GetQuote | Subscribe, Field(discriminator="type")]


# -- what the server sends -----------------------------------------------------
class Quote(BaseModel):
    """The answer to ``GetQuote``."""

    type: Literal["quote"] = "quote"
    id: int | None = None  # the id of the request
    symbol: str
    price: float


class Subscribed(BaseModel):
    """The answer to ``Subscribe``."""

    type: Literal["subscribed"] = "subscribed"
    id: int | None = None
    symbols: list[str]


class Tick(BaseModel):
    """A price update for a subscribed symbol (not an answer: it has no id)."""

    type: Literal["tick"] = "tick"
    symbol: str
    seq: int
    price: float


class Error(BaseModel):
    """A refused request (``id`` set) or an invalid message (``id`` None)."""

    type: Literal["error"] = "error"
    id: int | None = None
    detail: str


ServerEvent = Annotated[
    Quote | Subscribed | Tick | Error, Field(discriminator="type")
]
# --8<-- [end:models]

#: The symbols the service knows, with their opening price.
PRICES = {"ACME": 12.5, "GLOBEX": 101.0, "INITECH": 3.75}


def describe(exc: DecodeError) -> str:
    """A one-line description of why a message was invalid."""
    if isinstance(exc.error, ValidationError):
        first = exc.error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    return str(exc.error)


# --8<-- [start:handler]
async def serve_client(ws: simple_websocket.AioServer, interval: float) -> None:
    """Answer one client's requests; send ticks of the symbols it follows."""
    peer = "{}:{}".format(*ws.remote_address[:2])
    # Received messages are decoded as ClientMessage; send() refuses anything
    # that is not a ServerEvent with EncodeError, before writing.
    channel = ws.typed(ClientMessage, send=ServerEvent)
    symbols: list[str] = []  # shared with the ticker task

    async def ticker() -> None:
        seq = 0
        with contextlib.suppress(ConnectionClosed):  # the client left
            while True:
                await asyncio.sleep(interval)
                for symbol in list(symbols):
                    seq += 1
                    price = PRICES[symbol] + seq * 0.25
                    await channel.send(
                        Tick(symbol=symbol, seq=seq, price=price)
                    )

    ticks = asyncio.create_task(ticker())
    try:
        while True:
            try:
                async for message in channel:  # ends quietly on 1000 and 1001
                    match message:
                        case GetQuote(id=request_id, symbol=symbol) if (
                            symbol in PRICES
                        ):
                            print(
                                f"{peer} get_quote {symbol} (id {request_id})"
                            )
                            await channel.send(
                                Quote(
                                    id=request_id,
                                    symbol=symbol,
                                    price=PRICES[symbol],
                                )
                            )
                        case GetQuote(id=request_id, symbol=symbol):
                            print(
                                f"{peer} get_quote {symbol} (id "
                                f"{request_id}): unknown"
                            )
                            await channel.send(
                                Error(
                                    id=request_id,
                                    detail=f"unknown symbol {symbol!r}",
                                )
                            )
                        case Subscribe(id=request_id, symbols=wanted):
                            known = [s for s in wanted if s in PRICES]
                            symbols.extend(s for s in known if s not in symbols)
                            print(f"{peer} subscribe {known} (id {request_id})")
                            await channel.send(
                                Subscribed(id=request_id, symbols=known)
                            )
                break
            except DecodeError as exc:
                # The connection stays open: answer, then iterate again.
                print(f"{peer} invalid message {exc.data!r}: {describe(exc)}")
                await channel.send(
                    Error(detail=f"invalid message: {describe(exc)}")
                )
        print(f"{peer} closed with code {ws.close_reason}")
    finally:
        ticks.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticks


# --8<-- [end:handler]


async def main(
    host: str = "127.0.0.1",
    port: int = 8000,
    once: bool = False,
    interval: float = 0.1,
) -> None:
    """Serve on ``host``:``port`` until cancelled (``once``: one client)."""
    finished = asyncio.Event()

    async def handler(ws: simple_websocket.AioServer) -> None:
        try:
            await serve_client(ws, interval)
        finally:
            if once:
                finished.set()

    async with simple_websocket.serve(handler, host, port) as server:
        print(f"listening on {server.url}", flush=True)
        await finished.wait()  # never set without --once: serve until Ctrl+C
    print("server stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="0 picks a free port"
    )
    parser.add_argument(
        "--once", action="store_true", help="exit after the first connection"
    )
    parser.add_argument(
        "--interval", type=float, default=0.1, help="seconds between ticks"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.host, args.port, args.once, args.interval))
