"""The threaded engine: moves bytes between blocking sockets and the sans-I/O core."""

from .connection import BaseConnection, Connection
from .server import ServerConnection

__all__ = ["BaseConnection", "Connection", "ServerConnection"]
