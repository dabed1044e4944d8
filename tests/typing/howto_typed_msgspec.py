"""The msgspec example of docs/howto/typed.md, as a user would write it.

Checked by ``mypy --strict`` (tests/test_typing.py), never run.
"""

from __future__ import annotations

import msgspec

from simple_websocket import AioClient, MsgspecCodec


class Trade(msgspec.Struct):
    id: int
    symbol: str
    price: float


async def main(ws: AioClient) -> None:
    channel = ws.typed(Trade, codec=MsgspecCodec(Trade))  # a TypedChannel[Trade]
    async for trade in channel:
        print(trade.symbol, trade.price)
    # What the type checker sees: the codec keeps the channel's type.
    same: Trade | None = await channel.receive()
    print(same)
