"""simple_websocket: an asyncio WebSocket SDK with the simple-websocket 1.1 API.

The 1.1 names come first in ``__all__``; everything after them is new. The
extension names (typed channels, codecs, reconnect) are imported on first access, so
``import simple_websocket`` does not import pydantic, tenacity or aiostream.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__
from .aiows import AioClient, AioServer, Connect, MessageHandler, serve
from .asyncio.connection import BaseConnection, Connection
from .asyncio.server import WebSocketServer
from .errors import (
    ConnectionClosed,
    ConnectionError,
    DecodeError,
    Disconnected,
    EncodeError,
    GapError,
    HandshakeError,
    HandshakeRejected,
    IdleTimeout,
    OpenTimeout,
    OutboxFull,
    ProxyError,
    RequestTimeout,
    SimpleWebsocketError,
)
from .integrations.asgi import ASGIConnection
from .sansio.handshake import HandshakeRequest, HTTPResponse
from .sansio.options import DeflateOptions
from .sansio.protocol import CloseCode
from .ws import Client, Server

if TYPE_CHECKING:  # pragma: no cover
    from .channels import TypedChannel
    from .codecs import Codec, JsonCodec, MsgspecCodec, PydanticCodec
    from .reconnect import Backoff, ReconnectingClient
    from .subscriptions import Subscription

_LAZY = {
    "Backoff": "reconnect",
    "ReconnectingClient": "reconnect",
    "TypedChannel": "channels",
    "Codec": "codecs",
    "JsonCodec": "codecs",
    "MsgspecCodec": "codecs",
    "PydanticCodec": "codecs",
    "Subscription": "subscriptions",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'simple_websocket' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


# The six names of simple-websocket 1.1 first, then the new ones.
__all__ = [  # noqa: RUF022
    "Server",
    "Client",
    "AioClient",
    "AioServer",
    "ConnectionClosed",
    "ConnectionError",
    "ASGIConnection",
    "Backoff",
    "BaseConnection",
    "CloseCode",
    "Codec",
    "Connect",
    "Connection",
    "DecodeError",
    "DeflateOptions",
    "Disconnected",
    "EncodeError",
    "GapError",
    "HandshakeError",
    "HandshakeRejected",
    "HandshakeRequest",
    "HTTPResponse",
    "IdleTimeout",
    "JsonCodec",
    "MessageHandler",
    "MsgspecCodec",
    "OpenTimeout",
    "OutboxFull",
    "ProxyError",
    "PydanticCodec",
    "ReconnectingClient",
    "RequestTimeout",
    "SimpleWebsocketError",
    "Subscription",
    "TypedChannel",
    "WebSocketServer",
    "serve",
]
