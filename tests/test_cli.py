"""``python -m simple_websocket``, driven through pipes."""

import asyncio
import json
import signal
import sys

import pytest
from websockets.asyncio.server import serve as ws_serve

from simple_websocket import serve
from simple_websocket.cli import _parser, _serve_parser
from simple_websocket.testing import Script, ScriptedServer
from tests.proxy_support import ScriptedProxy

pytestmark = pytest.mark.timeout(30)


async def cli(*args, stdin=b"", keep_stdin_open=False):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simple_websocket",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if keep_stdin_open:
        # The session must end by itself, not because input ended.
        out, err = await asyncio.wait_for(
            asyncio.gather(proc.stdout.read(), proc.stderr.read()), 20
        )
        await proc.wait()
        proc.stdin.close()
    else:
        out, err = await asyncio.wait_for(proc.communicate(stdin), 20)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def echo_server():
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simple_websocket",
        "serve",
        "--echo",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert line.startswith("echo server listening on ws://127.0.0.1:"), line
        yield line.split()[-1], proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 10)


async def test_interactive_session_against_the_echo_server(echo_server):
    url, server = echo_server
    stdin = b'hello\n{"a": [1, 2]}\n/binary 00ff10\n/ping\n/nope\n/help\n'
    # --no-raw: the interactive format, though the output is a pipe here.
    code, out, err = await cli("--json", "--no-raw", url, stdin=stdin)
    assert code == 0, err
    lines = out.splitlines()
    assert any(line.startswith("< ") and line.endswith(" hello") for line in lines)
    assert '  "a": [' in out  # pretty-printed JSON
    assert "pong in " in out
    assert "<binary 3 bytes> 00ff10" in out
    assert "/ping" in out  # /help output
    assert f"connected to {url}" in err
    assert "unknown command /nope" in err
    assert "connection closed: 1000" in err
    # The server stops cleanly on SIGINT.
    server.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(server.wait(), 10) == 0


async def test_close_command_and_exit_code(echo_server):
    url, _ = echo_server
    code, _, err = await cli(url, stdin=b"/close 4000 bye\nnot sent\n")
    assert code == 0
    assert "connection closed: 4000 bye" in err


async def test_headers_and_subprotocols_are_sent():
    seen = {}

    async def handler(conn):
        seen["auth"] = conn.request.headers.get("Authorization")
        seen["subprotocol"] = conn.subprotocol
        await conn.close()

    async with ws_serve(handler, "127.0.0.1", 0, subprotocols=["v2"]) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        code, _, err = await cli(url, "-H", "Authorization: Bearer x", "-s", "v2", stdin=b"")
    assert code == 0, err
    assert seen == {"auth": "Bearer x", "subprotocol": "v2"}
    assert "(v2)" in err


async def test_abnormal_close_exits_1():
    async with ScriptedServer(Script(close_after=0, close_code=1011)) as server:
        code, _, err = await cli(server.url, keep_stdin_open=True)
    assert code == 1
    assert "connection closed: 1011" in err


async def test_refused_and_rejected_connections_exit_3():
    async with ScriptedServer(Script(refuse=403)) as server:
        code, _, err = await cli(server.url)
    assert code == 3
    assert "could not connect" in err and "403" in err
    port = server.port  # stopped now: nothing listens there
    code, _, err = await cli(f"ws://127.0.0.1:{port}/")
    assert code == 3
    assert "could not connect" in err


@pytest.mark.parametrize(
    "args",
    [["ftp://x/"], ["ws://h/", "-H", "no-colon"], [], ["serve"]],
)
async def test_usage_errors_exit_2(args):
    code, _, err = await cli(*args)
    assert code == 2
    assert err


async def test_proxy_option(echo_server, pproxy):
    url, _ = echo_server
    for proxy in (pproxy.url("http"), pproxy.url("socks5")):
        code, out, err = await cli(url, "--proxy", proxy, stdin=b"through a proxy\n/ping\n")
        assert code == 0, err
        assert "through a proxy" in out


async def test_proxy_from_the_environment_and_no_proxy(echo_server, monkeypatch):
    url, _ = echo_server
    with ScriptedProxy(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n") as scripted:
        monkeypatch.setenv("HTTP_PROXY", scripted.url)
        # Loopback servers are never proxied from the environment: a name the proxy
        # would resolve (it answers 407 first, nothing is looked up).
        code, _, err = await cli("ws://feed.example:8080/", stdin=b"x\n")
        assert code == 3
        assert "407" in err and "needs credentials" in err
        code, out, err = await cli(url, "--no-proxy", stdin=b"direct\n/ping\n")
        assert code == 0, err
        assert "direct" in out
    assert len(scripted.requests) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["ws://h/", "--proxy", "ftp://p"],
        ["ws://h/", "--proxy", "http://p:1", "--no-proxy"],
    ],
)
async def test_proxy_usage_errors_exit_2(args):
    code, _, err = await cli(*args)
    assert code == 2
    assert err


# -- scripting: raw output, --count and --wait ------------------------------------------


async def status_server(handler=None):
    """A server that answers {"op": "status"} with a JSON document, then waits."""

    async def answer(ws):
        async for message in ws:
            if json.loads(message).get("op") == "status":
                await ws.send(json.dumps({"status": "ok", "load": [1, 2]}, indent=2))

    return serve(handler or answer)


async def test_piped_output_is_one_message_per_line_without_timestamps(echo_server):
    url, _ = echo_server
    # The commands first: the third message received ends the session.
    stdin = b'/help\n/ping\nhello\n{"a": [1, 2]}\n/binary 00ff10\n'
    code, out, err = await cli("--json", "--count", "3", url, stdin=stdin)
    assert code == 0, err
    # Messages only: JSON compacted to one line, binary in hexadecimal.
    assert out.splitlines() == ["hello", '{"a":[1,2]}', "00ff10"]
    # What commands print goes to standard error.
    assert "pong in " in err and "/binary HEX" in err


async def test_the_scripting_example_gets_its_answer():
    async with await status_server() as server:
        # --count 1: wait for one reply after the end of input, then close.
        code, out, err = await cli("--json", "--count", "1", server.url, stdin=b'{"op":"status"}\n')
        assert code == 0, err
        assert json.loads(out) == {"status": "ok", "load": [1, 2]}
        assert out.count("\n") == 1
        # --raw keeps the message as it came (here, indented JSON).
        code, out, err = await cli("--raw", "-n", "1", server.url, stdin=b'{"op":"status"}\n')
        assert code == 0, err
        assert json.loads(out) == {"status": "ok", "load": [1, 2]}
        assert out.count("\n") > 1


async def test_wait_ends_when_the_server_closes():
    async def answer_and_close(ws):
        message = await ws.receive()
        await ws.send(f"got {message}")
        await ws.send("bye")
        await ws.close()

    async with await status_server(answer_and_close) as server:
        started = asyncio.get_running_loop().time()
        code, out, err = await cli("--wait", "15", server.url, stdin=b"ping\n")
        elapsed = asyncio.get_running_loop().time() - started
    assert code == 0, err
    assert out.splitlines() == ["got ping", "bye"]
    assert elapsed < 15  # the close ended the wait, not the 15 s


async def test_without_wait_the_end_of_input_closes_at_once():
    async def never_answer(ws):
        await ws.wait_closed()

    async with await status_server(never_answer) as server:
        code, out, err = await cli(server.url, stdin=b"hello\n")
    assert code == 0, err
    assert out == ""
    assert "connection closed: 1000" in err


async def test_too_few_messages_for_count_exit_4():
    async def one_then_close(ws):
        await ws.send("only one")
        await ws.close()

    async with await status_server(one_then_close) as server:
        code, out, err = await cli("--count", "2", server.url, keep_stdin_open=True)
    assert code == 4, err
    assert out.splitlines() == ["only one"]
    assert "1 of 2 messages arrived" in err


@pytest.mark.parametrize(
    "args",
    [["ws://h/", "--count", "0"], ["ws://h/", "--wait", "-1"], ["ws://h/", "--wait", "x"]],
)
async def test_count_and_wait_usage_errors_exit_2(args):
    code, _, err = await cli(*args)
    assert code == 2
    assert "--count" in err or "--wait" in err


# -- serve ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["serve", "0", "--echo"], ["serve", "0"], ["serve", "--echo", "0"]]
)
async def test_serve_takes_the_port_first(args):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simple_websocket",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert line.startswith("echo server listening on ws://127.0.0.1:"), line
        code, out, err = await cli("-n", "1", line.split()[-1], stdin=b"echoed\n")
        assert (code, out) == (0, "echoed\n"), err
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


@pytest.mark.parametrize("make", [_parser, _serve_parser])
def test_every_option_has_help(make):
    parser = make()
    for action in parser._actions:
        assert action.help, action.option_strings or action.dest
        if action.help != "show this help message and exit":
            assert len(action.help) > 15, action.help


async def test_help_lists_the_options():
    code, out, _ = await cli("--help")
    assert code == 0
    for option in ("--count", "--wait", "--raw", "--no-raw", "--json", "--header"):
        assert option in out
    code, out, _ = await cli("serve", "--help")
    assert code == 0
    assert "port" in out and "--echo" in out and "--host" in out
