"""Writing through (serouter/transport/_base.py ``write_through``) on real loopback sockets:
bytes leave at once when nothing is queued, queue behind what is, keep their order, and a
connection that cannot take them falls back to Twisted's queue and its error handling.

These check the Twisted internals ``write_through`` reads (``dataBuffer``, ``offset``,
``_tempDataLen``): a Twisted release that renames them fails here, not silently in production.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from serouter.transport._base import write_through


class Collect(Protocol):
    """The far end: gathers what arrives."""

    def __init__(self) -> None:
        self.data = b""
        self.made: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.made.callback(None)

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class Near(Protocol):
    def __init__(self) -> None:
        self.made: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.made.callback(None)


def readable_now(sock: socket.socket) -> bytes:
    """What the far socket holds this instant, without a reactor turn."""
    try:
        return sock.recv(1 << 20, socket.MSG_DONTWAIT | socket.MSG_PEEK)
    except BlockingIOError:
        return b""


class WriteThroughTests(unittest.TestCase):
    timeout = 10

    async def connected(self) -> tuple[Any, Collect]:
        far = Collect()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(lambda: far))
        self.addCleanup(port.stopListening)
        near = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Near())
        await far.made
        self.addCleanup(near.transport.abortConnection)
        return near.transport, far

    async def test_bytes_leave_at_once_when_nothing_is_queued(self) -> None:
        transport, far = await self.connected()
        write_through(transport, b"hello")
        # on the far socket before any reactor turn, and no write interest left registered
        self.assertEqual(readable_now(far.transport.getHandle()), b"hello")
        self.assertNotIn(transport, reactor.getWriters())
        await task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(far.data, b"hello")

    async def test_bytes_queue_behind_what_is_queued(self) -> None:
        transport, far = await self.connected()
        transport.write(b"first,")  # Twisted's write: queued until the next turn
        write_through(transport, b"second")
        self.assertEqual(readable_now(far.transport.getHandle()), b"")
        await task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(far.data, b"first,second")

    async def test_what_the_socket_does_not_take_is_queued_in_order(self) -> None:
        transport, far = await self.connected()
        far.transport.pauseProducing()  # the far end stops reading: buffers fill up
        chunk = bytes(range(256)) * 4096  # 1 MiB, more than loopback buffers hold at once
        write_through(transport, chunk)
        self.assertGreater(transport._tempDataLen + len(transport.dataBuffer), 0)
        write_through(transport, b"tail")  # something is queued: behind it
        far.transport.resumeProducing()
        for _ in range(200):
            await task.deferLater(reactor, 0.01, lambda: None)
            if len(far.data) == len(chunk) + 4:
                break
        self.assertEqual(far.data, chunk + b"tail")

    async def test_a_closed_connection_is_left_to_twisted(self) -> None:
        transport, far = await self.connected()
        lost: defer.Deferred[None] = defer.Deferred()
        transport.protocol.connectionLost = lambda reason: lost.callback(None)
        far.transport.abortConnection()
        await task.deferLater(reactor, 0.05, lambda: None)
        write_through(transport, b"x" * 100_000)  # must not raise
        await lost

    def test_other_transports_use_their_write(self) -> None:
        transport = StringTransport()  # TLS layers and test doubles are not descriptors
        write_through(transport, b"abc")
        self.assertEqual(transport.value(), b"abc")
