"""The ASGI WebSocket connection, at simple-websocket 1.1's import path."""

from __future__ import annotations

from .integrations.asgi import ASGIConnection

#: simple-websocket 1.1's name for the ASGI connection class.
WebSocketASGI = ASGIConnection

__all__ = ["ASGIConnection", "WebSocketASGI"]
