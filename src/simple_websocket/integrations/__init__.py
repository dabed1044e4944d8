"""Adapters that accept WebSocket connections inside web frameworks and servers."""
