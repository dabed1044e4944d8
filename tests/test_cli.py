"""``python -m simple_websocket``, driven through pipes."""

import asyncio
import signal
import sys

import pytest
from websockets.asyncio.server import serve as ws_serve

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
    code, out, err = await cli("--json", url, stdin=stdin)
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
