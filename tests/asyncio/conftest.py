"""Fixtures of the asyncio engine's tests."""

from __future__ import annotations

from typing import Any

import pytest


class ReadPath:
    """Which path reads and sends take; counts those the Python path got.

    With the C extension, the reader delivers a read of whole small messages itself
    while the connection is in its plain state (the read lane, ``_speedups.c``),
    and a server's text message is written by the send lane; every other read goes
    to the connection's ``_data_received``, and every other message to
    ``Protocol.send_frame``: the Python path.
    """

    def __init__(self, lane: bool) -> None:
        #: The lanes are on (else everything takes the Python path).
        self.lane = lane
        #: Reads given to ``_data_received`` since the fixture was set up.
        self.python_reads = 0
        #: Frames built by ``Protocol.send_frame`` since then.
        self.python_sends = 0


@pytest.fixture(params=["lane", "python"])
def read_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ReadPath:
    """Run a test with the C lanes, then with them off for every connection made."""
    from simple_websocket.asyncio import connection as connection_module
    from simple_websocket.sansio import framing
    from simple_websocket.sansio.protocol import Protocol

    lane = request.param == "lane"
    if lane and framing.C_BIND_LANE is None:
        pytest.skip("the C extension is turned off (SIMPLE_WEBSOCKET_NO_EXTENSIONS)")
    path = ReadPath(lane)
    data_received = connection_module.Connection._data_received
    send_frame = Protocol.send_frame

    def counting(self: Any, data: bytes) -> None:
        path.python_reads += 1
        data_received(self, data)

    def counting_sends(self: Any, data: Any) -> Any:
        path.python_sends += 1
        return send_frame(self, data)

    # (Before any connection exists: attach() binds the reader to it.)
    monkeypatch.setattr(connection_module.Connection, "_data_received", counting)
    monkeypatch.setattr(Protocol, "send_frame", counting_sends)
    if not lane:
        monkeypatch.setattr(connection_module, "_send_lane", None)
        attach = connection_module.StreamProtocol.attach

        def attach_without_lane(self: Any, conn: Any) -> None:
            attach(self, conn)
            self._lane = None

        monkeypatch.setattr(connection_module.StreamProtocol, "attach", attach_without_lane)
    return path
