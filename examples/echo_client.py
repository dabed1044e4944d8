"""Echo client: connect to a WebSocket server, send messages, print the replies.

Sends ``--count`` text messages one after the other, waits for each reply,
measures a ping round trip and closes the connection with 1000. The exit status
is 0 when every message got a reply, 1 otherwise.

    python examples/echo_client.py --url ws://127.0.0.1:8000/ --count 3

Any echo server works: ``examples/echo_server.py``, ``aiohttp_server.py``,
``asgi_server.py`` or ``raw_socket_server.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import simple_websocket


async def main(
    url: str = "ws://127.0.0.1:8000/", count: int = 3, timeout: float = 10.0
) -> int:
    """Exchange ``count`` messages with the echo server at ``url``.

    Returns the exit status.
    """
    try:
        # connect() raises ValueError at once for an invalid URL; awaiting it
        # raises OSError (refused, unreachable, TLS) or
        # simple_websocket.ConnectionError (HandshakeRejected, HandshakeError,
        # OpenTimeout).
        async with simple_websocket.AioClient.connect(
            url, open_timeout=timeout
        ) as ws:
            print(f"connected to {url}")
            for i in range(1, count + 1):
                message = f"message {i}"
                await ws.send(message)
                # None when the timeout passed.
                reply = await ws.receive(timeout=timeout)
                if reply is None:
                    print(f"no reply to {message!r} within {timeout} s")
                    return 1
                print(f"sent {message!r}, received {reply!r}")
            rtt = await ws.ping()
            print(f"ping round trip: {rtt * 1000:.2f} ms")
        # Leaving the block closed the connection with 1000 and waited for the
        # server.
        print(f"closed with code {ws.close_reason}")
    except (OSError, simple_websocket.ConnectionError) as exc:
        print(f"could not connect to {url}: {exc!r}", file=sys.stderr)
        return 1
    except simple_websocket.ConnectionClosed as exc:
        print(
            f"the server closed the connection: {exc.reason} "
            f"{exc.message or ''}"
        )
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default="ws://127.0.0.1:8000/", help="(default: %(default)s)"
    )
    parser.add_argument(
        "--count", type=int, default=3, help="messages to send (default: 3)"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per step"
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.url, args.count, args.timeout)))
