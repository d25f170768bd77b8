"""Router-initiated keepalive: pings on an idle established session, dead peers closed."""

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from serouter.core.access import AllowAll
from serouter.core.router import Router
from serouter.serializers import JSON
from serouter.transport.rawsocket import RawSocketFactory

HELLO = b'[1,"realm1",{"roles":{"callee":{}}}]'
REGISTER = b'[64,1,{},"com.example.p"]'


def frame(payload: bytes, ftype: int = 0) -> bytes:
    return bytes((ftype,)) + len(payload).to_bytes(3, "big") + payload


def connected(interval: float = 30.0, timeout: float = 10.0) -> tuple[Any, Any, Clock, Router]:
    clock = Clock()
    router = Router(["realm1"], AllowAll(), clock)
    factory = RawSocketFactory(router, clock, serializers=[JSON], max_message_size=1 << 16,
                               handshake_timeout=5, keepalive=(interval, timeout))
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5))
    protocol.makeConnection(transport)
    protocol.dataReceived(bytes((0x7F, 0xF1, 0, 0)) + frame(HELLO) + frame(REGISTER))
    transport.clear()
    return protocol, transport, clock, router


def test_ping_sent_after_interval_and_pong_keeps_session() -> None:
    """After ping_interval a ping goes out; a pong keeps the session and pings continue."""
    protocol, transport, clock, _router = connected()
    clock.advance(29)
    assert transport.value() == b""
    clock.advance(1)
    assert transport.value() == frame(b"serouter", 1)
    transport.clear()
    protocol.dataReceived(frame(b"serouter", 2))
    clock.advance(10)
    assert not transport.disconnecting
    clock.advance(20)
    assert transport.value() == frame(b"serouter", 1)


def test_silent_peer_is_closed_and_its_registrations_removed() -> None:
    """No answer within ping_timeout: the connection is aborted and the session freed."""
    protocol, transport, clock, router = connected()
    clock.advance(30)
    clock.advance(9.9)
    assert not transport.disconnected
    clock.advance(0.2)
    assert transport.disconnected  # abortConnection on a StringTransport
    protocol.connectionLost()
    assert router.realms["realm1"].dealer.lookup("com.example.p") is None
    assert clock.getDelayedCalls() == []


def test_keepalive_off() -> None:
    """ping_interval 0 sends no pings and schedules nothing."""
    _, transport, clock, _ = connected(interval=0)
    assert clock.getDelayedCalls() == []
    clock.advance(1000)
    assert transport.value() == b""
