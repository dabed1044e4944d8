"""The asyncio engine: moves bytes between asyncio transports and the sans-I/O core."""

from .connection import BaseConnection, Connection
from .server import ServerConnection, WebSocketServer, serve

__all__ = ["BaseConnection", "Connection", "ServerConnection", "WebSocketServer", "serve"]
