"""The protocol core: handshake and framing logic over wsproto, with no I/O.

Nothing in this package imports asyncio, threading, socket, ssl or time; engines feed
it bytes and pass time in.
"""

from .handshake import ClientHandshake, HandshakeRequest, parse_url
from .protocol import CloseCode, Protocol, State

__all__ = ["ClientHandshake", "CloseCode", "HandshakeRequest", "Protocol", "State", "parse_url"]
