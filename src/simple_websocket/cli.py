"""``python -m simple_websocket``: an interactive client and an echo server.

Client::

    python -m simple_websocket ws://localhost:8000/ws [--header 'Name: value']
        [--subprotocol NAME] [--json] [--insecure] [--open-timeout S]
        [--proxy URL | --no-proxy]

Each line typed is sent as a text message; received messages are printed with a
timestamp. Lines starting with ``/`` are commands: ``/ping`` (round-trip time),
``/binary HEX`` (send bytes), ``/close [CODE [REASON]]``, ``/help``. End of input
closes the connection normally.

Server::

    python -m simple_websocket serve --echo PORT [--host HOST]

Exit codes: 0 closed normally; 1 the connection closed abnormally; 2 usage
error or invalid URL; 3 the connection could not be opened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

from .aiows import AioClient, AioServer, serve
from .errors import ConnectionClosed, ConnectionError

__all__ = ["main"]

EXIT_OK = 0
EXIT_CLOSED = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3

HELP = """commands:
  /ping                send a ping and print the round-trip time
  /binary HEX          send bytes given in hexadecimal
  /close [CODE [MSG]]  close the connection (default 1000)
  /help                this text
anything else is sent as a text message; end of input closes the connection"""


def _stamp() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


def _format(message: str | bytes, pretty_json: bool) -> str:
    if isinstance(message, bytes):
        return f"<binary {len(message)} bytes> {message.hex()}"
    if pretty_json:
        try:
            return json.dumps(json.loads(message), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return message


def _header(value: str) -> tuple[str, str]:
    name, sep, rest = value.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header must look like 'Name: value', not {value!r}")
    return name.strip(), rest.strip()


class _Console:
    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err

    def print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def error(self, text: str) -> None:
        print(text, file=self.err, flush=True)


def _read_lines(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None], stdin: TextIO
) -> None:
    """Read input lines in a daemon thread: a blocked read must not keep the process alive."""
    for line in iter(stdin.readline, ""):
        loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def run_client(args: argparse.Namespace, console: _Console, stdin: TextIO) -> int:
    """Run the interactive client; return the exit code."""
    context = None
    if args.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        ws = await AioClient.connect(
            args.url,
            subprotocols=args.subprotocol or None,
            headers=args.header or None,
            ssl_context=context,
            open_timeout=args.open_timeout,
            proxy=None if args.no_proxy else (args.proxy or True),
        )
    except (ValueError, ImportError) as exc:
        console.error(f"error: {exc}")
        return EXIT_USAGE
    except (ConnectionError, OSError) as exc:
        console.error(f"error: could not connect to {args.url}: {exc}")
        return EXIT_CONNECT
    console.error(f"connected to {args.url}" + (f" ({ws.subprotocol})" if ws.subprotocol else ""))

    async def printer() -> None:
        async for message in ws:
            console.print(f"< {_stamp()} {_format(message, args.json)}")

    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(
        target=_read_lines, args=(asyncio.get_running_loop(), lines, stdin), daemon=True
    ).start()
    receiving = asyncio.create_task(printer())
    closed_by_us = False
    try:
        while not receiving.done():
            getter = asyncio.create_task(lines.get())
            await asyncio.wait({getter, receiving}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            line = getter.result()
            if line is None:
                closed_by_us = True
                await ws.close()
                break
            if not await _command(ws, line, console):
                closed_by_us = True
                break
        with contextlib.suppress(ConnectionClosed):
            await receiving
    except ConnectionClosed:
        pass
    finally:
        receiving.cancel()
        await ws.close()
    console.error(f"connection closed: {ws.close_reason} {ws.close_message or ''}".rstrip())
    normal = ws.close_reason in (1000, 1001) or closed_by_us
    return EXIT_OK if normal else EXIT_CLOSED


async def _command(ws: AioClient, line: str, console: _Console) -> bool:
    """Handle one input line; return ``False`` when the session should end."""
    if not line.startswith("/"):
        await ws.send(line)
        return True
    name, _, rest = line[1:].partition(" ")
    if name == "ping":
        rtt = await ws.ping()
        console.print(f"  {_stamp()} pong in {rtt * 1000:.3f} ms")
    elif name == "binary":
        try:
            data = bytes.fromhex(rest)
        except ValueError:
            console.error("error: /binary needs hexadecimal digits")
        else:
            await ws.send(data)
    elif name == "close":
        code_text, _, reason = rest.partition(" ")
        try:
            code = int(code_text) if code_text else 1000
        except ValueError:
            console.error("error: /close needs a numeric code")
            return True
        await ws.close(code, reason or None)
        return False
    elif name in ("help", "?"):
        console.print(HELP)
    else:
        console.error(f"error: unknown command /{name} (try /help)")
    return True


async def run_server(args: argparse.Namespace, console: _Console) -> int:
    """Run the echo server until interrupted; return the exit code."""

    async def echo(ws: AioServer) -> None:
        async for message in ws:
            await ws.send(message)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        server = await serve(echo, args.host, args.port)
    except OSError as exc:
        console.error(f"error: cannot listen on {args.host}:{args.port}: {exc}")
        return EXIT_CONNECT
    console.print(f"echo server listening on {server.url}")
    try:
        await stop.wait()
    finally:
        await server.close()
    console.error("server stopped")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simple_websocket",
        description="An interactive WebSocket client (or, with 'serve', an echo server).",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help="ws:// or wss:// URL to connect to")
    parser.add_argument(
        "-H", "--header", action="append", type=_header, help="extra header 'Name: value'"
    )
    parser.add_argument("-s", "--subprotocol", action="append", help="subprotocol to offer")
    parser.add_argument("--json", action="store_true", help="pretty-print JSON messages")
    parser.add_argument(
        "-k", "--insecure", action="store_true", help="do not verify TLS certificates"
    )
    parser.add_argument("--open-timeout", type=float, default=10.0, help="seconds (10)")
    proxy = parser.add_mutually_exclusive_group()
    proxy.add_argument(
        "--proxy",
        metavar="URL",
        help="connect through this proxy: http://[user:pass@]host:port, https://, socks5://,"
        " socks5h://, socks4:// (default: the https_proxy/http_proxy/all_proxy variables)",
    )
    proxy.add_argument(
        "--no-proxy", action="store_true", help="connect directly, whatever the environment says"
    )
    return parser


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simple_websocket serve", description="A WebSocket echo server."
    )
    parser.add_argument("--echo", metavar="PORT", type=int, required=True, dest="port")
    parser.add_argument("--host", default="127.0.0.1")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command line; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    console = _Console(stdout or sys.stdout, stderr or sys.stderr)
    try:
        if argv[:1] == ["serve"]:
            args = _serve_parser().parse_args(argv[1:])
            return asyncio.run(run_server(args, console))
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        code: Any = exc.code
        return code if isinstance(code, int) else EXIT_USAGE
    try:
        return asyncio.run(run_client(args, console, stdin or sys.stdin))
    except KeyboardInterrupt:
        return EXIT_OK
