"""The examples of simple-websocket 1.1's async documentation, run against real peers.

Each example is kept as written, except that the hard-coded ``localhost:8000`` is
replaced by a free port, and the custom socket server's placeholder key
``'example-key'`` (not a valid Sec-WebSocket-Key, so the server answers 400) is
replaced by a valid one. (The aiohttp example reads aiohttp's ``message.type``; our
messages are plain str/bytes, as in 1.1: it is covered by the aiohttp tests.)
"""

import asyncio
import base64
import hashlib
import os
import socket
import struct
import threading

import pytest
from websockets.asyncio.server import serve as ws_serve

import simple_websocket


@pytest.fixture
async def echo_url():
    async def handler(conn):
        async for message in conn:
            await conn.send(message)

    async with ws_serve(handler, "127.0.0.1", 0) as server:
        yield f"ws://localhost:{server.sockets[0].getsockname()[1]}/ws"


async def test_async_client_example(echo_url, capsys):
    async def client_example():
        try:
            # Connect to WebSocket server
            ws = await simple_websocket.AioClient.connect(echo_url)
            # Send message
            await ws.send("Hello, Async Server!")
            # Receive response with timeout
            response = await ws.receive(timeout=10)
            print(f"Server response: {response}")
            # Send binary data
            await ws.send(b"Binary data")
            binary_response = await ws.receive()
            print(f"Binary response: {binary_response}")
        except simple_websocket.ConnectionError as e:
            print(f"Failed to connect: {e}")
        except simple_websocket.ConnectionClosed:
            print("Server closed connection")
        except asyncio.TimeoutError:
            print("Timeout waiting for response")
        finally:
            await ws.close()

    await client_example()
    assert capsys.readouterr().out == (
        "Server response: Hello, Async Server!\nBinary response: b'Binary data'\n"
    )


async def test_async_context_manager_example(echo_url, capsys):
    class AsyncWebSocketClient:
        def __init__(self, url, **kwargs):
            self.url = url
            self.kwargs = kwargs
            self.ws = None

        async def __aenter__(self):
            self.ws = await simple_websocket.AioClient.connect(self.url, **self.kwargs)
            return self.ws

        async def __aexit__(self, exc_type, exc_val, exc_tb):
            if self.ws:
                await self.ws.close()

    async def context_manager_example():
        async with AsyncWebSocketClient(echo_url) as ws:
            await ws.send("Hello with context manager!")
            response = await ws.receive()
            print(f"Response: {response}")

    await context_manager_example()
    assert capsys.readouterr().out == "Response: Hello with context manager!\n"


def masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    head = sock.recv(2, socket.MSG_WAITALL)
    length = head[1] & 0x7F
    assert length < 126
    payload = sock.recv(length, socket.MSG_WAITALL) if length else b""
    return head[0] & 0x0F, payload


def test_custom_socket_server_example():
    key = base64.b64encode(b"seed-example-key").decode()
    server_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    outcome = {}

    async def custom_socket_server():
        # Create and bind socket
        server_sock.bind(("localhost", 0))
        server_sock.listen(1)
        outcome["port"].set_result(server_sock.getsockname()[1])
        while True:
            client_sock, addr = server_sock.accept()
            # Prepare headers dict (simplified example)
            headers = {
                "Host": "localhost:8000",
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Key": key,
                "Sec-WebSocket-Version": "13",
            }
            # Accept WebSocket with custom socket
            ws = await simple_websocket.AioServer.accept(sock=client_sock, headers=headers)
            try:
                # Handle connection
                while True:
                    message = await ws.receive(timeout=30)
                    if message is None:
                        break
                    await ws.send(f"Received: {message}")
            except simple_websocket.ConnectionClosed:
                print(f"Client {addr} disconnected")
                outcome["disconnected"] = True
            finally:
                await ws.close()

    import concurrent.futures

    outcome["port"] = concurrent.futures.Future()

    def run():
        try:
            asyncio.run(custom_socket_server())
        except OSError:
            pass  # the test closes the listening socket to stop the example

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    port = outcome["port"].result(timeout=5)
    # The example's headers stand for a request already read: the client only
    # reads the 101 and then speaks frames.
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    response = b""
    while b"\r\n\r\n" not in response:
        response += client.recv(1)
    accept = base64.b64encode(
        hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    )
    assert response.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: " + accept in response
    client.sendall(masked_frame(0x1, b"hi"))
    assert read_frame(client) == (0x1, b"Received: hi")
    client.sendall(masked_frame(0x8, struct.pack("!H", 1000)))
    assert read_frame(client) == (0x8, struct.pack("!H", 1000))
    assert client.recv(10) == b""  # the server closed TCP
    client.close()
    # shutdown() wakes the example's blocking accept() (close() alone does not).
    server_sock.shutdown(socket.SHUT_RDWR)
    server_sock.close()
    thread.join(5)
    assert not thread.is_alive()
    assert outcome.get("disconnected") is True
