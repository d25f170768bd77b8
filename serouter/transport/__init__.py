"""Transports: byte framing and handshakes between sockets and the router core.

Each transport is a Twisted protocol built on :class:`serouter.transport._base.WampProtocol`;
the framing itself lives in sans-IO codecs (``_rawsocket_codec``, ``_wscodec``) that are tested
without any transport.
"""

from serouter.transport.rawsocket import RawSocketFactory
from serouter.transport.websocket import WebSocketFactory

__all__ = ["RawSocketFactory", "WebSocketFactory"]
