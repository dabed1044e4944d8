"""``python -m simple_websocket``: an interactive client and an echo server.

Client::

    python -m simple_websocket ws://localhost:8000/ws [--header 'Name: value']
        [--subprotocol NAME] [--json] [--raw | --no-raw] [--count N] [--wait S]
        [--insecure] [--open-timeout S] [--proxy URL | --no-proxy]

Each line typed is sent as a text message; received messages are printed with a
timestamp. Lines starting with ``/`` are commands: ``/ping`` (round-trip time),
``/binary HEX`` (send bytes), ``/close [CODE [REASON]]``, ``/help``. End of input
closes the connection normally, at once unless ``--wait`` or ``--count`` asks to
wait for replies.

When standard output is not a terminal (a pipe, a file), or with ``--raw``, the
output holds the messages only: one per line, no timestamps (binary messages in
hexadecimal; with ``--json``, each JSON message on one line, as JSON Lines).

Server::

    python -m simple_websocket serve PORT [--echo] [--host HOST]

Exit codes: 0 closed normally; 1 the connection closed abnormally; 2 usage
error or invalid URL; 3 the connection could not be opened; 4 fewer than
``--count`` messages arrived.
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
EXIT_INCOMPLETE = 4

HELP = """commands:
  /ping                send a ping and print the round-trip time
  /binary HEX          send bytes given in hexadecimal
  /close [CODE [MSG]]  close the connection (default 1000)
  /help                this text
anything else is sent as a text message; end of input closes the connection (after
waiting for replies with --wait or --count)"""


def _stamp() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


def _format(message: str | bytes, pretty_json: bool) -> str:
    """A message as the interactive client shows it."""
    if isinstance(message, bytes):
        return f"<binary {len(message)} bytes> {message.hex()}"
    if pretty_json:
        try:
            return json.dumps(json.loads(message), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return message


def _format_raw(message: str | bytes, json_lines: bool) -> str:
    """A message as raw output shows it: as it is, binary in hex, JSON on one line."""
    if isinstance(message, bytes):
        return message.hex()
    if json_lines:
        try:
            return json.dumps(json.loads(message), ensure_ascii=False, separators=(",", ":"))
        except ValueError:
            pass
    return message


def _header(value: str) -> tuple[str, str]:
    name, sep, rest = value.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header must look like 'Name: value', not {value!r}")
    return name.strip(), rest.strip()


class _Console:
    """Where output goes: messages to ``out``, everything else to ``err``.

    In raw mode, the output of commands (``/ping``, ``/help``) also goes to
    ``err``, so that ``out`` holds messages only.
    """

    def __init__(self, out: TextIO, err: TextIO, *, raw: bool = False) -> None:
        self.out = out
        self.err = err
        self.raw = raw

    def print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def info(self, text: str) -> None:
        """Print the output of a command."""
        print(text, file=self.err if self.raw else self.out, flush=True)

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
    except (ValueError, TypeError, ImportError) as exc:
        console.error(f"error: {exc}")
        return EXIT_USAGE
    except (ConnectionError, OSError) as exc:
        console.error(f"error: could not connect to {args.url}: {exc}")
        return EXIT_CONNECT
    console.error(f"connected to {args.url}" + (f" ({ws.subprotocol})" if ws.subprotocol else ""))

    received = 0
    enough = asyncio.Event()  # --count messages arrived

    async def printer() -> None:
        nonlocal received
        async for message in ws:
            if console.raw:
                console.print(_format_raw(message, args.json))
            else:
                console.print(f"< {_stamp()} {_format(message, args.json)}")
            received += 1
            if args.count is not None and received >= args.count:
                enough.set()
                return

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
                await _wait_for_replies(args, receiving)
                closed_by_us = True
                await ws.close()
                break
            if not await _command(ws, line, console):
                closed_by_us = True
                break
        if enough.is_set():
            closed_by_us = True
            await ws.close()
        with contextlib.suppress(ConnectionClosed):
            await receiving
    except ConnectionClosed:
        pass
    finally:
        receiving.cancel()
        await ws.close()
    console.error(f"connection closed: {ws.close_reason} {ws.close_message or ''}".rstrip())
    normal = ws.close_reason in (1000, 1001) or closed_by_us
    if not normal:
        return EXIT_CLOSED
    if args.count is not None and received < args.count:
        console.error(f"error: {received} of {args.count} messages arrived")
        return EXIT_INCOMPLETE
    return EXIT_OK


async def _wait_for_replies(args: argparse.Namespace, receiving: asyncio.Task[None]) -> None:
    """At end of input, wait as ``--wait`` and ``--count`` say before closing.

    With ``--count``, until that many messages arrived (at most ``--wait``
    seconds when it is given too); with ``--wait`` alone, that many seconds. The
    wait also ends when the connection closes.
    """
    if args.wait is None and args.count is None:
        return
    await asyncio.wait({receiving}, timeout=args.wait)


async def _command(ws: AioClient, line: str, console: _Console) -> bool:
    """Handle one input line; return ``False`` when the session should end."""
    if not line.startswith("/"):
        await ws.send(line)
        return True
    name, _, rest = line[1:].partition(" ")
    if name == "ping":
        rtt = await ws.ping()
        console.info(f"  {_stamp()} pong in {rtt * 1000:.3f} ms")
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
        console.info(HELP)
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


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {value}")
    return seconds


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {port}")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simple_websocket",
        description="An interactive WebSocket client (or, with 'serve', an echo server: "
        "python -m simple_websocket serve PORT).",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help="ws:// or wss:// URL to connect to")
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        type=_header,
        metavar="'NAME: VALUE'",
        help="an extra request header; repeat for more",
    )
    parser.add_argument(
        "-s",
        "--subprotocol",
        action="append",
        metavar="NAME",
        help="a subprotocol to offer; repeat for more, in order of preference",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="pretty-print JSON messages (raw output: one compact JSON document per line)",
    )
    parser.add_argument(
        "--raw",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="print messages only, one per line, without timestamps (binary ones in "
        "hexadecimal); the default when standard output is not a terminal",
    )
    parser.add_argument(
        "-n",
        "--count",
        type=_positive,
        metavar="N",
        help="close after receiving N messages; at end of input, wait for them "
        "(exit code 4 if fewer arrive)",
    )
    parser.add_argument(
        "-w",
        "--wait",
        type=_seconds,
        metavar="S",
        help="at end of input, wait up to S seconds for replies before closing "
        "(default: close at once, or wait for --count messages)",
    )
    parser.add_argument(
        "-k", "--insecure", action="store_true", help="do not verify TLS certificates"
    )
    parser.add_argument(
        "--open-timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="seconds allowed for connecting and the handshake (default: 10)",
    )
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
        prog="python -m simple_websocket serve",
        description="A WebSocket echo server: every message received is sent back.",
    )
    parser.add_argument("port", type=_port, help="port to listen on (0: any free port)")
    parser.add_argument(
        "--echo",
        action="store_true",
        help="echo messages back (what this server does; accepted for clarity)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)"
    )
    return parser


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        return False


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command line; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = stdout or sys.stdout
    console = _Console(out, stderr or sys.stderr)
    try:
        if argv[:1] == ["serve"]:
            args = _serve_parser().parse_args(argv[1:])
            return asyncio.run(run_server(args, console))
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        code: Any = exc.code
        return code if isinstance(code, int) else EXIT_USAGE
    console.raw = args.raw if args.raw is not None else not _is_terminal(out)
    try:
        return asyncio.run(run_client(args, console, stdin or sys.stdin))
    except KeyboardInterrupt:
        return EXIT_OK
