"""The read path of the asyncio engine's protocol: ``get_buffer()`` / ``buffer_updated()``.

Both implementations are tested side by side: the C extension's
``_speedups.Reader`` (the base of ``StreamProtocol`` when it is built) and the
Python ``_PyReader`` (its base without the extension). Each is driven the way an
asyncio transport drives a buffered protocol; the end-to-end run over loopback
without the extension is the last test.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref
from typing import Any

import pytest

from simple_websocket.asyncio.connection import StreamProtocol, _PyReader
from simple_websocket.sansio import framing

CReader: type[Any] | None
try:
    from simple_websocket.sansio._speedups import Reader as CReader
except ImportError:  # the extension is not built: the C rows fail, not skip
    CReader = None


class PyProbe(_PyReader):
    """A reader whose ``data_received`` records what it was given."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.received.append(data)


def _c_probe() -> Any:
    if CReader is None:
        pytest.fail("the C extension is not built (pip install -e . with a C compiler)")
    base: Any = CReader

    class CProbe(base):  # type: ignore[misc]
        def __init__(self) -> None:
            self.received: list[bytes] = []

        def data_received(self, data: bytes) -> None:
            self.received.append(data)

    return CProbe()


def _py_probe() -> Any:
    return PyProbe()


IMPLEMENTATIONS = {"c": _c_probe, "python": _py_probe}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def reader(request: pytest.FixtureRequest) -> Any:
    if request.param == "c" and os.environ.get("SIMPLE_WEBSOCKET_NO_EXTENSIONS"):
        pytest.skip("the C extension is turned off (SIMPLE_WEBSOCKET_NO_EXTENSIONS)")
    probe = IMPLEMENTATIONS[request.param]()
    probe._use_buffer(memoryview(bytearray(64)))
    return probe


class Lender:
    """Stands for the connection's ``Protocol``: ``lending`` and ``receive_buffer()``."""

    def __init__(self, buffer: memoryview | None) -> None:
        self.lending = True
        self.buffer = buffer
        self.asked = 0
        self.owner: object = None

    def receive_buffer(self) -> memoryview | None:
        self.asked += 1
        return self.buffer


def _read(reader: Any, data: bytes) -> None:
    """What a transport does for one read of ``data``."""
    buf = reader.get_buffer(-1)
    buf[: len(data)] = data
    reader.buffer_updated(len(data))


def test_bytes_read_go_to_data_received_until_on_data_is_set(reader: Any) -> None:
    _read(reader, b"GET / HTTP/1.1\r\n")
    assert reader.received == [b"GET / HTTP/1.1\r\n"]
    got: list[bytes] = []
    reader._on_data = got.append
    _read(reader, b"\x81\x00")
    _read(reader, b"")
    assert got == [b"\x81\x00", b""]
    assert reader.received == [b"GET / HTTP/1.1\r\n"]


def test_each_read_is_a_copy_of_the_shared_buffer(reader: Any) -> None:
    got: list[bytes] = []
    reader._on_data = got.append
    _read(reader, b"abcdef")
    _read(reader, b"xy")
    assert got == [b"abcdef", b"xy"]
    assert all(type(data) is bytes for data in got)


def test_a_lending_protocol_gets_the_read_in_its_own_buffer(reader: Any) -> None:
    payload = bytearray(10)
    lender = Lender(memoryview(payload)[4:])
    direct: list[int] = []
    shared: list[bytes] = []
    reader._lender, reader._on_direct, reader._on_data = lender, direct.append, shared.append
    _read(reader, b"abc")
    assert direct == [3] and not shared
    assert payload == b"\0\0\0\0abc\0\0\0"
    # Lending, but nothing to lend now: the shared buffer again.
    lender.buffer = None
    _read(reader, b"zz")
    assert shared == [b"zz"] and direct == [3]
    # Not lending: the lender is not even asked.
    lender.lending = False
    asked = lender.asked
    _read(reader, b"q")
    assert lender.asked == asked and shared == [b"zz", b"q"]


def test_errors_of_the_callbacks_reach_the_transport(reader: Any) -> None:
    def fail(data: bytes) -> None:
        raise RuntimeError("bad data")

    reader._on_data = fail
    with pytest.raises(RuntimeError, match="bad data"):
        _read(reader, b"x")

    class BrokenLender(Lender):
        def receive_buffer(self) -> memoryview | None:
            raise ZeroDivisionError

    reader._lender = BrokenLender(None)
    with pytest.raises(ZeroDivisionError):
        reader.get_buffer(-1)


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_a_reader_in_a_reference_cycle_is_collected(implementation: str) -> None:
    if implementation == "c" and os.environ.get("SIMPLE_WEBSOCKET_NO_EXTENSIONS"):
        pytest.skip("the C extension is turned off (SIMPLE_WEBSOCKET_NO_EXTENSIONS)")
    reader = IMPLEMENTATIONS[implementation]()
    reader._use_buffer(memoryview(bytearray(8)))
    reader._on_data = reader.data_received  # reader -> bound method -> reader
    reader._lender = Lender(None)
    reader._lender.owner = reader  # reader -> lender -> reader
    ref = weakref.ref(reader)
    del reader
    gc.collect()
    assert ref() is None


def test_the_c_reader_refuses_what_it_cannot_lend() -> None:
    probe = _c_probe()
    with pytest.raises(RuntimeError, match="no read buffer"):
        probe.get_buffer(-1)
    with pytest.raises((TypeError, BufferError)):
        probe._use_buffer(b"read-only")
    probe._use_buffer(memoryview(bytearray(8)))
    probe.get_buffer(-1)
    with pytest.raises(ValueError, match="within the buffer"):
        probe.buffer_updated(9)
    with pytest.raises(ValueError, match="within the buffer"):
        probe.buffer_updated(-1)
    # Deleted callbacks count as unset (no crash on a NULL member).
    del probe._on_data, probe._lender
    _read(probe, b"ok")
    assert probe.received == [b"ok"]
    probe._lender = Lender(memoryview(bytearray(4)))
    del probe._on_direct
    with pytest.raises(RuntimeError, match="_on_direct is not set"):
        _read(probe, b"x")


def test_the_engine_uses_the_c_reader_when_it_is_built() -> None:
    expected = _PyReader if not framing.SPEEDUPS else CReader
    assert StreamProtocol.__mro__[1] is expected


def test_a_connection_without_the_extension_reads_through_the_python_reader() -> None:
    """Loopback echo of small messages and of a 1 MiB binary one (read into the
    frame's own buffer) with ``SIMPLE_WEBSOCKET_NO_EXTENSIONS=1``."""
    code = textwrap.dedent(
        """
        import asyncio
        import simple_websocket
        from simple_websocket.asyncio.connection import StreamProtocol, _PyReader

        assert StreamProtocol.__mro__[1] is _PyReader

        async def echo(ws):
            async for message in ws:
                await ws.send(message)

        async def main():
            async with simple_websocket.serve(echo, max_message_size=None) as server:
                url = f"ws://127.0.0.1:{server.port}/"
                async with simple_websocket.AioClient.connect(url) as ws:
                    for message in ["hello", b"bytes", "é" * 300, bytes(1 << 20)]:
                        await ws.send(message)
                        assert await ws.receive(timeout=10) == message

        asyncio.run(main())
        """
    )
    env = {**os.environ, "SIMPLE_WEBSOCKET_NO_EXTENSIONS": "1"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
