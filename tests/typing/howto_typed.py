"""The examples of docs/howto/typed.md that are not in examples/, as a user would
write them.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from __future__ import annotations

from pydantic import BaseModel
from typed_server import (
    ClientMessage,
    Error,
    GetQuote,
    Quote,
    ServerEvent,
    Subscribe,
    Subscribed,
    Tick,
)

from simple_websocket import AioClient, JsonCodec, PydanticCodec, TypedChannel


class Trade(BaseModel):
    symbol: str
    price: float


async def what_the_type_checker_sees(ws: AioClient) -> None:
    trades = ws.typed(Trade)  # a TypedChannel[Trade]
    trade = await trades.receive(timeout=10)  # a Trade | None
    if trade is not None:
        print(trade.price)  # trade.prise would be an error
    async for trade in trades:  # each one a Trade
        print(trade.symbol)

    events: TypedChannel[Quote | Subscribed | Tick | Error] = ws.typed(ServerEvent)
    async for event in events:
        match event:
            case Tick():
                print(event.price)
            case Error():
                print(event.detail)


async def the_channel(ws: AioClient) -> None:
    channel = ws.typed(ServerEvent, send=ClientMessage)

    await channel.send(Subscribe(symbols=["ACME"]))  # only a ClientMessage
    event = await channel.receive(timeout=10)  # a ServerEvent, or None
    quote = await channel.request(GetQuote(symbol="ACME"), timeout=5)
    async for event in channel:  # ends on 1000 and 1001
        ...
    print(quote)

    reply = await channel.request(GetQuote(symbol="ACME"), timeout=5)
    match reply:
        case Quote():
            print(reply.price)
        case Error():
            print("refused:", reply.detail)


async def codecs(ws: AioClient) -> None:
    channel = TypedChannel(
        ws,
        PydanticCodec(ServerEvent, strict=True),  # receive: strict validation
        PydanticCodec(ClientMessage, exclude_none=True),
        on_invalid="skip",
        max_inbox=64,
    )
    await channel.close()
    values = ws.typed(None, codec=JsonCodec())
    print(await values.request({"op": "ping"}, timeout=5))
