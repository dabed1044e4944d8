"""A TCP proxy on loopback that can make a peer vanish without a FIN.

Each accepted connection is forwarded to ``127.0.0.1:upstream_port``. After
:meth:`BlackholeProxy.blackhole` the proxy keeps reading from both sides (so no
sender is ever refused or reset) but forwards nothing and never closes anything:
to each end, its peer has silently disappeared, as when a host loses power or a NAT
entry expires.
"""

from __future__ import annotations

import asyncio
import contextlib


class BlackholeProxy:
    """A forwarding proxy whose traffic can be dropped on demand."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.dropping = False
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def blackhole(self) -> None:
        """From now on, drop every byte in both directions; close nothing."""
        self.dropping = True

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if self.dropping:
                    self.dropped += len(data)
                    continue
                writer.write(data)
                await writer.drain()
            if not self.dropping and writer.can_write_eof():
                writer.write_eof()

    async def _on_client(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [client_writer, up_writer]
        for reader, writer in ((client_reader, up_writer), (up_reader, client_writer)):
            task = asyncio.create_task(self._pump(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def __aenter__(self) -> BlackholeProxy:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()
