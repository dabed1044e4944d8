"""simple_websocket: an asyncio WebSocket SDK with the simple-websocket 1.1 API.

The 1.1 names come first in ``__all__``; everything after them is new.
"""

from .aiows import AioClient, AioServer, Connect, serve
from .asyncio.connection import BaseConnection, Connection
from .asyncio.server import WebSocketServer
from .errors import (
    ConnectionClosed,
    ConnectionError,
    HandshakeError,
    HandshakeRejected,
    OpenTimeout,
    SimpleWebsocketError,
)
from .integrations.asgi import ASGIConnection
from .sansio.handshake import HandshakeRequest
from .sansio.protocol import CloseCode

__version__ = "2.0.0.dev0"

# The six names of simple-websocket 1.1 first (its sync Server and Client are not
# ported yet), then the new ones.
__all__ = [  # noqa: RUF022
    "AioClient",
    "AioServer",
    "ConnectionClosed",
    "ConnectionError",
    "ASGIConnection",
    "BaseConnection",
    "CloseCode",
    "Connect",
    "Connection",
    "HandshakeError",
    "HandshakeRejected",
    "HandshakeRequest",
    "OpenTimeout",
    "SimpleWebsocketError",
    "WebSocketServer",
    "serve",
]
