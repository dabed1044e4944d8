"""Typed client: pydantic models over a WebSocket, with request/response.

Talks to ``typed_server.py`` (whose models it imports): asks for quotes with
``channel.request()``, which sends a request with a fresh ``id`` and returns the
event that carries the same ``id``; subscribes to ticks; shows that an object of
the wrong type is refused before anything is sent; sends one raw invalid
message, which the server answers with an ``Error`` event; then receives
``--ticks`` ticks (a discriminated union decoded into the right model) and
closes with 1000. The exit status is 0 when everything was answered, 1
otherwise.

    python examples/typed_server.py --port 8000 &
    python examples/typed_client.py --url ws://127.0.0.1:8000/ --ticks 6
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from typed_server import (
    ClientMessage,
    Error,
    GetQuote,
    Quote,
    ServerEvent,
    Subscribe,
    Tick,
)

import simple_websocket
from simple_websocket import EncodeError, RequestTimeout


# --8<-- [start:main]
async def main(
    url: str = "ws://127.0.0.1:8000/", ticks: int = 6, timeout: float = 10.0
) -> int:
    """Talk to the quote server at ``url``; return an exit status."""
    try:
        async with simple_websocket.AioClient.connect(
            url, open_timeout=timeout
        ) as ws:
            print(f"connected to {url}")
            # Received messages are decoded as ServerEvent (the "type" field
            # picks the model); send() only accepts ClientMessage objects.
            channel = ws.typed(ServerEvent, send=ClientMessage)

            # request() sets a fresh id on a copy of the message (id is None
            # here), sends it and returns the event whose id matches, whatever
            # its type.
            reply = await channel.request(
                GetQuote(symbol="ACME"), timeout=timeout
            )
            match reply:
                case Quote(symbol=symbol, price=price, id=request_id):
                    print(f"quote {symbol} = {price} (request id {request_id})")
                case Error(detail=detail, id=request_id):
                    print(f"error for request {request_id}: {detail}")
                    return 1

            reply = await channel.request(
                GetQuote(symbol="NOPE"), timeout=timeout
            )
            if isinstance(reply, Error):
                print(f"error for request {reply.id}: {reply.detail}")

            # A server event is not a ClientMessage: refused, nothing is sent.
            try:
                await channel.send(Tick(symbol="ACME", seq=0, price=1.0))
            except EncodeError as exc:
                print(
                    "refused before sending: EncodeError for a "
                    f"{type(exc.obj).__name__}"
                )

            subscribed = await channel.request(
                Subscribe(symbols=["ACME", "GLOBEX"]), timeout=timeout
            )
            print(
                f"subscribed to {subscribed.symbols} (request id "
                f"{subscribed.id})"
            )
            # Ticks now flow. Those that arrive while this request waits for its
            # answer stay queued, in order, for the loop below.
            reply = await channel.request(
                GetQuote(symbol="GLOBEX"), timeout=timeout
            )
            print(
                f"quote {reply.symbol} = {reply.price} (request id {reply.id})"
            )

            await ws.send("hello?")  # a raw message the server cannot decode

            received, complaint = 0, False
            # Ends quietly if the server closes normally.
            async for event in channel:
                match event:
                    case Tick(seq=seq, symbol=symbol, price=price):
                        received += 1
                        print(f"tick {seq} {symbol} {price}")
                    case Error(id=None, detail=detail):
                        complaint = True
                        print(f"server says: {detail}")
                if received >= ticks and complaint:
                    break
        # Leaving the block closed the connection with 1000.
        print(f"received {received} ticks; closed with code {ws.close_reason}")
        if received < ticks or not complaint:
            print("the server closed the connection too early", file=sys.stderr)
            return 1
    except (OSError, simple_websocket.ConnectionError) as exc:
        print(f"could not connect to {url}: {exc!r}", file=sys.stderr)
        return 1
    except RequestTimeout as exc:
        print(f"no answer: {exc}", file=sys.stderr)
        return 1
    except simple_websocket.ConnectionClosed as exc:
        print(
            f"the server closed the connection: {exc.reason} "
            f"{exc.message or ''}"
        )
        return 1
    return 0


# --8<-- [end:main]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default="ws://127.0.0.1:8000/", help="(default: %(default)s)"
    )
    parser.add_argument(
        "--ticks", type=int, default=6, help="ticks to receive (default: 6)"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per step"
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.url, args.ticks, args.timeout)))
