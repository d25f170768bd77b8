"""Transport limits: a peer that does not read, connection caps, idle sessions."""

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from serouter.core.access import AllowAll
from serouter.core.router import Router
from serouter.serializers import JSON
from serouter.transport._flow import ListenerLimits
from serouter.transport.rawsocket import RawSocketFactory, RawSocketProtocol


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


HANDSHAKE = bytes((0x7F, 0xF1, 0, 0))
HELLO = frame(b'[1,"realm1",{"roles":{"subscriber":{},"publisher":{},"callee":{}}}]')


class Rig:
    def __init__(self, **limits: Any) -> None:
        self.clock = Clock()
        self.router = Router(["realm1"], AllowAll(), self.clock)
        self.factory = RawSocketFactory(
            self.router, self.clock, serializers=[JSON], max_message_size=1 << 20,
            handshake_timeout=5, limits=ListenerLimits(**limits),
        )

    def connect(self, *messages: bytes) -> tuple[RawSocketProtocol, StringTransport]:
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5))
        protocol.makeConnection(transport)
        protocol.dataReceived(HANDSHAKE + HELLO + b"".join(frame(m) for m in messages))
        transport.clear()
        return protocol, transport  # type: ignore[return-value]


def publish(n: int, size: int = 1000) -> bytes:
    body = b'"' + b"x" * size + b'"'
    return b"".join(frame(b'[16,%d,{},"t",[%s]]' % (i + 1, body)) for i in range(n))


def test_slow_subscriber_has_events_dropped_past_the_mark() -> None:
    """While the transport is paused, events beyond max_queued_bytes are dropped, and
    delivery resumes once the peer reads again."""
    rig = Rig(max_queued_bytes=1 << 16)
    slow, slow_t = rig.connect(b'[32,1,{},"t"]')
    _fast, fast_t = rig.connect(b'[32,1,{},"t"]')
    publisher, _ = rig.connect()
    slow_t.clear()
    fast_t.clear()
    slow.pauseProducing()  # what Twisted does when the peer's buffer is full
    publisher.dataReceived(publish(200))
    assert len(fast_t.value()) > 200_000
    assert 60_000 < len(slow_t.value()) <= 1 << 16
    assert slow.outflow.dropped > 100
    slow.resumeProducing()
    slow_t.clear()
    publisher.dataReceived(publish(1))
    assert len(slow_t.value()) > 1000 and slow.outflow.dropped == 0


def test_slow_subscriber_closed_under_close_policy() -> None:
    """With slow_consumer = close, the subscriber over the mark loses its connection."""
    rig = Rig(max_queued_bytes=1 << 16, slow_consumer="close")
    slow, slow_t = rig.connect(b'[32,1,{},"t"]')
    publisher, _ = rig.connect()
    slow.pauseProducing()
    publisher.dataReceived(publish(200))
    assert slow_t.disconnected


def test_callee_that_does_not_read_fails_calls_at_once() -> None:
    """An INVOCATION for a callee past the mark is refused: the caller gets an ERROR now."""
    rig = Rig(max_queued_bytes=1 << 16)
    callee, _callee_t = rig.connect(b'[64,1,{},"p"]')
    caller, caller_t = rig.connect()
    callee.pauseProducing()
    big = b'"' + b"y" * 70_000 + b'"'
    caller.dataReceived(frame(b'[48,1,{},"p",[%s]]' % big))
    assert b"wamp.error.no_available_callee" in caller_t.value()
    assert rig.router.realms["realm1"].dealer.pending_calls == 0


def test_connection_limit_refused_in_the_handshake() -> None:
    """Past max_connections, a RawSocket client gets handshake error 4 and is closed."""
    rig = Rig(max_connections=1)
    rig.connect()
    protocol = rig.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 6))
    protocol.makeConnection(transport)
    assert transport.value() == bytes((0x7F, 0x40, 0, 0)) and transport.disconnecting
    protocol.dataReceived(HANDSHAKE + HELLO)
    assert protocol.session is None
    protocol.connectionLost()
    assert rig.factory.connections == 1


def test_idle_session_is_told_goodbye() -> None:
    """A session that sends nothing for idle_timeout gets GOODBYE and is closed."""
    rig = Rig(idle_timeout=60)
    protocol, transport = rig.connect()
    rig.clock.advance(59)
    protocol.dataReceived(frame(b'[32,1,{},"t"]'))
    rig.clock.advance(60)
    assert b"serouter.close.idle_timeout" not in transport.value()
    rig.clock.advance(60)
    assert b'[6,{},"serouter.close.idle_timeout"]' in transport.value()
    assert transport.disconnecting
