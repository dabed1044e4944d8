"""Fixtures of the asyncio engine's tests."""

from __future__ import annotations

from typing import Any

import pytest


class ReadPath:
    """Which path the reads of connections take; counts those the Python path got.

    With the C extension, the reader delivers a read of whole small messages itself
    while the connection is in its plain state (the read lane, ``_speedups.c``);
    every other read goes to the connection's ``_data_received``, the Python path.
    """

    def __init__(self, lane: bool) -> None:
        #: The lane is on (else every read takes the Python path).
        self.lane = lane
        #: Reads given to ``_data_received`` since the fixture was set up.
        self.python_reads = 0


@pytest.fixture(params=["lane", "python"])
def read_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ReadPath:
    """Run a test with the read lane, then with it off for every connection made."""
    from simple_websocket.asyncio import connection as connection_module
    from simple_websocket.sansio import framing

    lane = request.param == "lane"
    if lane and framing.C_BIND_LANE is None:
        pytest.skip("the C extension is turned off (SIMPLE_WEBSOCKET_NO_EXTENSIONS)")
    path = ReadPath(lane)
    data_received = connection_module.Connection._data_received

    def counting(self: Any, data: bytes) -> None:
        path.python_reads += 1
        data_received(self, data)

    # (Before any connection exists: attach() binds the reader to it.)
    monkeypatch.setattr(connection_module.Connection, "_data_received", counting)
    if not lane:
        attach = connection_module.StreamProtocol.attach

        def attach_without_lane(self: Any, conn: Any) -> None:
            attach(self, conn)
            self._lane = None

        monkeypatch.setattr(connection_module.StreamProtocol, "attach", attach_without_lane)
    return path
