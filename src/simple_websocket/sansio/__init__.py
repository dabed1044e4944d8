"""The protocol core, with no I/O: handshake, frames, and the connection rules.

Nothing in this package imports asyncio, threading, socket, ssl or time; engines feed
it bytes and pass time in. :class:`Protocol` turns bytes into messages and messages
into frames; :class:`Session` and :class:`Inbox` hold the rules every engine shares
(flow control, keepalive, the closing handshake's deadlines).
"""

from .framing import CloseCode
from .handshake import ClientHandshake, HandshakeRequest, parse_url
from .protocol import Protocol, State
from .session import Inbox, Session

__all__ = [
    "ClientHandshake",
    "CloseCode",
    "HandshakeRequest",
    "Inbox",
    "Protocol",
    "Session",
    "State",
    "parse_url",
]
